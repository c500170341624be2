# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Property tests: any live stack x any desired stack x foreign policy, planned and executed on the kernel model.

Every expectation is computed here from the inputs (names and build labels), never from the plan
under test: the longest common bottom by name and build, which live patches must be popped, which
refusal (if any) the rules require, and the stack the kernel must hold afterwards. The plan is then
run by the real executor against the model, which counts what a correct tool never causes (a
transition started while one runs; a patch disabled below a live one).

``check_case`` is shared with ``benchmarks/plan_properties.py``, which runs it on >= 10,000 random
cases per era; here hypothesis runs a few dozen (the CI profile stays fast).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.kernelops.livepatch.plugins.module_utils import _plan
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import Executor
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import read_kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack

import kernel_model
from kernel_model import KernelModel, RELEASES
from kofactory import make_ko

NAMES = ['a', 'b', 'c', 'd', 'e']
BUILDS = ['v1', 'v2']
ERAS = ['4.9', '4.19', '6.1', '6.12', '7.2']
FREE = ('6.1', '6.12', '7.2')
POLICIES = ['pop', 'refuse', 'keep']


def scratch_dir(prefix):
    """A fresh directory, in memory where possible: the model renders its sysfs tree on every change."""
    shm = '/dev/shm'
    return tempfile.mkdtemp(prefix=prefix, dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)


def make_files(directory):
    """One file per (era, name, build), plus replace patches R: {(era, name, build): Wanted}."""
    files = {}
    for version in ERAS:
        for name in NAMES + ['R']:
            for build in BUILDS:
                path = os.path.join(directory, '%s-%s-%s.ko' % (version, name, build))
                make_ko(path, name, release=RELEASES[version], build=build, replace=(name == 'R'))
                files[(version, name, build)] = Wanted(name=name, path=path, build_id=read_kofile(path).build_id,
                                                       replace=(name == 'R'))
    return files


@pytest.fixture(scope='module')
def kofiles():
    directory = scratch_dir('kofiles-')
    yield make_files(directory)
    shutil.rmtree(directory)


def settle(model):
    model.clock.sleep(0.01)
    model.tick()


def build_current(model, files, version, current, retired):
    """Bring the model to ``current`` by hand (as an operator would with insmod), then retire some (5.1+)."""
    for name, build in current:
        rc, _out, err = model.insmod(files[(version, name, build)].path)
        assert rc == 0, err
        settle(model)
    for name, build in retired:
        rc, _out, err = model.insmod(files[(version, name, build)].path)
        assert rc == 0, err
        settle(model)
        model.write_enabled(name, '0')
        settle(model)


def execute(model, snapshot, plan):
    """Run the plan's steps with the real executor against the model."""
    executor = Executor(model, snapshot.capabilities, timeout=5.0, clock=model.clock)
    executor.wait_idle()
    if hasattr(kernel_model, 'model_image'):  # the executor loads verified images (issue 10)
        loads = dict((w.name, kernel_model.model_image(w.path)) for w in plan.wanted if w.path)
    else:
        loads = dict((w.name, w) for w in plan.wanted)
    executor.run(plan.steps, loads)


def common_bottom(live, desired):
    """Length of the longest common prefix by name AND build: computed from the inputs alone."""
    count = 0
    for have, want in zip(live, desired):
        if have != want:
            break
        count += 1
    return count


def expected_outcome(version, current, retired, wanted, ours, policy):
    """What the rules require, from the inputs: (desired stack, refusal rule or None, foreign retired names)."""
    if ours is None or policy == 'pop':
        foreign, foreign_retired = [], []
    else:
        def mine(spec):
            return any(name == spec[0] and build in (None, spec[1]) for name, build in ours)
        foreign = [spec for spec in current if not mine(spec)]
        foreign_retired = [spec[0] for spec in retired if not mine(spec)]
    desired = list(wanted)
    if policy == 'keep' and foreign:
        if any(name == 'R' for name, _build in wanted):
            return desired, 'foreign_patch', foreign_retired   # a replace patch would retire them
        names = set(name for name, _build in foreign)
        desired = foreign + [spec for spec in wanted if spec[0] not in names]
    kept = common_bottom(current, desired)
    atomic = version in FREE and kept == 0 and current and desired and desired[0][0] == 'R'
    popped = current if atomic else current[kept:]
    if version == '4.9' and current[kept:] and desired[kept:]:
        return desired, 'no_unload', foreign_retired   # a disabled patch can never leave before 4.12
    if any(spec in foreign for spec in popped):
        return desired, 'foreign_patch', foreign_retired
    if any(name in foreign_retired for name, _build in desired[kept:]):
        return desired, 'foreign_patch', foreign_retired   # a retired foreign module would have to be unloaded
    return desired, None, foreign_retired


def check_case(files, version, current, desired, retired=(), replace=None, ours=None, policy='pop',
               new_model=KernelModel):
    """Plan and execute one case on a fresh model; raise AssertionError on any broken invariant.

    ``current``/``desired``/``retired``: (name, build label) lists; ``replace``: the build of a
    replace patch R put at the bottom of the desired stack (5.1+), or None; ``ours``: (name, build
    label or None) pairs this collection loaded, or None for "everything is ours". Returns
    'executed' or 'refused'.
    """
    current, retired = list(current), [spec for spec in retired if spec[0] not in dict(current)]
    if version not in FREE:
        retired = []
    wanted_specs = ([('R', replace)] if replace and version in FREE else []) + list(desired)
    wanted = [files[(version, name, build)] for name, build in wanted_specs]
    ours_ids = None if ours is None else [
        (name, files[(version, name, build)].build_id if build else None) for name, build in ours]
    expect_stack, expect_rule, foreign_retired = expected_outcome(version, current, retired, wanted_specs, ours, policy)
    kept = common_bottom(current, expect_stack)
    root = scratch_dir('model-')
    try:
        model = new_model(root, version)
        build_current(model, files, version, current, retired)
        before = model.observe()
        assert [(p.name, p.build_id) for p in before.live_stack] == [
            (name, files[(version, name, build)].build_id) for name, build in current]
        try:
            plan = plan_stack(before, wanted, foreign=policy, ours=ours_ids)
        except LivepatchError as refusal:
            assert refusal.rule == expect_rule, 'refused %s, expected %s: %s' % (
                refusal.rule, expect_rule, refusal.message)
            return 'refused:' + refusal.rule
        assert expect_rule is None, 'planned %s, expected refusal %s' % (list(plan.steps), expect_rule)
        # Only the divergent suffix is popped: no step touches the common bottom, every live
        # patch above it is disabled topmost first, or retired by a replace patch pushed over all.
        kept_names = set(name for name, _build in current[:kept])
        above = [name for name, _build in current[kept:]]
        for step in plan.steps:
            assert step.action == 'load' or step.patch not in kept_names, 'step %r touches kept %s' % (step, step.patch)
            assert not kept_names.intersection(step.retires), 'step %r retires a kept patch' % (step,)
        disabled = [step.patch for step in plan.steps if step.action == 'disable']
        retires = [name for step in plan.steps for name in step.retires]
        assert disabled == list(reversed(above)) or (retires == above and not disabled and kept == 0), (
            'live %s, common bottom %d: disabled %s, retired %s' % (current, kept, disabled, retires))
        assert plan.kept == kept
        # Executed on the model: the desired stack, with those builds, and nothing the kernel forbids.
        execute(model, before, plan)
        final = model.observe()
        assert [(p.name, p.build_id) for p in final.live_stack] == [
            (name, files[(version, name, build)].build_id) for name, build in expect_stack]
        assert model.violations == [], 'a patch was disabled while a patch above it was live'
        assert model.ebusy == 0, 'a transition was started while another one ran'
        # Planned again, with what this run loaded now ours (the journal records each load).
        ours_after = None if ours_ids is None else ours_ids + [
            (step.patch, files[(version, step.patch, dict(wanted_specs)[step.patch])].build_id)
            for step in plan.steps if step.action == 'load']
        again = plan_stack(final, wanted, foreign=policy, ours=ours_after)
        assert again.steps == (), 'not idempotent: %r' % (list(again.steps),)
        # Retired modules: ours are cleaned up, foreign ones left alone unless foreign: pop.
        assert set(leftover.name for leftover in final.leftovers) <= set(foreign_retired), final.leftovers
        return 'executed'
    finally:
        shutil.rmtree(root)


def stack_strategy():
    return st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(BUILDS)), max_size=4, unique_by=lambda s: s[0])


@st.composite
def live_and_desired(draw):
    """A live stack and a desired stack that often share a bottom (the case where popping too much shows)."""
    current = draw(stack_strategy())
    keep = draw(st.integers(0, len(current)))
    tail = draw(stack_strategy())
    bottom = current[:keep]
    return current, bottom + [spec for spec in tail if spec[0] not in dict(bottom)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from(ERAS), stacks=live_and_desired(),
       retired=st.lists(st.tuples(st.sampled_from(['d', 'e']), st.sampled_from(BUILDS)), max_size=1),
       replace=st.one_of(st.none(), st.sampled_from(BUILDS)))
def test_plan_reaches_desired_stack_on_every_era(kofiles, version, stacks, retired, replace):
    check_case(kofiles, version, stacks[0], stacks[1], retired, replace)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from(ERAS), stacks=live_and_desired(),
       retired=st.lists(st.tuples(st.sampled_from(['d', 'e']), st.sampled_from(BUILDS)), max_size=1),
       replace=st.one_of(st.none(), st.sampled_from(BUILDS)), policy=st.sampled_from(POLICIES),
       ours=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(BUILDS + [None])), max_size=5,
                     unique_by=lambda s: s[0]))
def test_foreign_patches_are_never_touched_unless_popped(kofiles, version, stacks, retired, replace, policy, ours):
    check_case(kofiles, version, stacks[0], stacks[1], retired, replace, ours, policy)


def test_the_oracle_can_fail(kofiles):
    """The checks above are not vacuous: a planned pop of the common bottom is caught."""
    assert common_bottom([('a', 'v1'), ('b', 'v1')], [('a', 'v1'), ('b', 'v2')]) == 1
    refuse = expected_outcome('7.2', [('f', 'v1')], [], [('a', 'v1')], [], 'refuse')
    assert refuse[:2] == ([('a', 'v1')], 'foreign_patch')
    keep = expected_outcome('7.2', [('f', 'v1')], [], [('a', 'v1')], [], 'keep')
    assert keep[:2] == ([('f', 'v1'), ('a', 'v1')], None)
    assert expected_outcome('4.9', [('a', 'v1')], [], [('b', 'v1')], None, 'pop')[1] == 'no_unload'
    assert check_case(kofiles, '6.12', [('a', 'v1'), ('b', 'v1')], [('a', 'v1'), ('c', 'v1')]) == 'executed'
    assert check_case(kofiles, '7.2', [('e', 'v1')], [('a', 'v1')], ours=[], policy='refuse') == 'refused:foreign_patch'


def test_the_properties_fail_on_a_planner_that_pops_one_too_many(kofiles, monkeypatch):
    """Issue 14: the mutant that keeps one patch fewer of the common bottom breaks the property
    "only the divergent suffix is popped", computed from the inputs (benchmarks/mutation.py shows
    the same with the mutant made in the source)."""
    common_prefix = _plan._common_prefix  # pylint: disable=protected-access

    def one_too_many(live, wanted):
        kept, uncertain = common_prefix(live, wanted)
        return max(kept - 1, 0), uncertain
    monkeypatch.setattr(_plan, '_common_prefix', one_too_many)
    for version in ERAS:
        with pytest.raises(AssertionError, match='touches kept|kept a'):
            check_case(kofiles, version, [('a', 'v1'), ('b', 'v1')], [('a', 'v1'), ('b', 'v1'), ('c', 'v2')])


@settings(max_examples=20, deadline=None)
@given(version=st.sampled_from(ERAS), current=stack_strategy())
def test_plan_from_a_stack_to_itself_is_empty(version, current):
    root = scratch_dir('model-')
    files_dir = scratch_dir('ko-')
    try:
        model = KernelModel(root, version)
        wanted = []
        for name, build in current:
            path = os.path.join(files_dir, '%s-%s.ko' % (name, build))
            make_ko(path, name, release=model.release, build=build)
            model.insmod(path)
            settle(model)
            wanted.append(Wanted(name=name, path=path, build_id=read_kofile(path).build_id))
        assert plan_stack(model.observe(), wanted).steps == ()
    finally:
        shutil.rmtree(root)
        shutil.rmtree(files_dir)
