# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Property tests: any current stack × any desired stack, planned and executed on the kernel model.

For every era the plan, run by the real executor against the model, must reach the desired
stack, never disable a patch while one above it is live, never start a transition while one
runs (the model counts EBUSY), pop only the divergent suffix, and leave nothing to do.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.kernelops.livepatch.plugins.module_utils._act import Executor, converge
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import read_kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Refusal, Wanted, plan_stack, same_build

from kernel_model import KernelModel, RELEASES
from kofactory import make_ko

NAMES = ['a', 'b', 'c', 'd', 'e']
BUILDS = ['v1', 'v2']
ERAS = ['4.9', '4.19', '6.1', '6.12', '7.2']


@pytest.fixture(scope='module')
def kofiles():
    """One file per (era, name, build), plus replace patches R (5.1+ only)."""
    directory = tempfile.mkdtemp(prefix='kofiles-')
    files = {}
    for version in ERAS:
        for name in NAMES + ['R']:
            for build in BUILDS:
                path = os.path.join(directory, '%s-%s-%s.ko' % (version, name, build))
                make_ko(path, name, release=RELEASES[version], build=build, replace=(name == 'R'))
                kofile = read_kofile(path)
                files[(version, name, build)] = Wanted(name, path, kofile.build_id, replace=(name == 'R'))
    yield files
    shutil.rmtree(directory)


def stack_strategy(min_size=0):
    return st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(BUILDS)), max_size=4, min_size=min_size,
                    unique_by=lambda item: item[0])


def settle(model):
    model.clock.sleep(0.01)
    model.tick()


def build_current(model, files, version, current, retired):
    """Bring the model to ``current`` by hand (as an operator would with insmod), then retire some."""
    for name, build in current:
        rc, _out, err = model.insmod(files[(version, name, build)].path)
        assert rc == 0, err
        settle(model)
    for name, build in retired:
        if model.era != '5.1+' or model._module(name) is not None:
            continue
        rc, _out, _err = model.insmod(files[(version, name, build)].path)
        assert rc == 0
        settle(model)
        model.write_enabled(name, '0')
        settle(model)


def run(model, wanted):
    snapshot = model.observe()
    plan = plan_stack(snapshot, wanted)
    executor = Executor(model, snapshot.capabilities, timeout=5.0, clock=model.clock)
    outcome = converge(model, wanted, plan, executor, snapshot.live_stack)
    return snapshot, plan, outcome


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from(ERAS), current=stack_strategy(), desired=stack_strategy(),
       retired=st.lists(st.tuples(st.sampled_from(['d', 'e']), st.sampled_from(BUILDS)), max_size=1),
       replace_bottom=st.booleans(), replace_build=st.sampled_from(BUILDS))
def test_plan_reaches_desired_stack_on_every_era(
        kofiles, version, current, desired, retired, replace_bottom, replace_build):
    root = tempfile.mkdtemp(prefix='model-')
    try:
        model = KernelModel(root, version)
        retired = [item for item in retired if item[0] not in [name for name, _build in current]]
        build_current(model, kofiles, version, current, retired)
        wanted = [kofiles[(version, name, build)] for name, build in desired]
        if replace_bottom and version not in ('4.9', '4.19'):
            wanted = [kofiles[(version, 'R', replace_build)]] + wanted
        before = model.observe()
        try:
            snapshot, plan, outcome = run(model, wanted)
        except Refusal as refusal:
            # Only the kernels that can never unload a module refuse a reachable stack.
            assert version == '4.9' and refusal.rule == 'no_unload', refusal.message
            return
        final = outcome['snapshot']
        assert not outcome['failed'], outcome['error']
        assert final.names() == [w.name for w in wanted]
        assert all(same_build(live, w)[0] for live, w in zip(final.live_stack, wanted))
        assert model.violations == [], 'a patch was disabled while a patch above it was live'
        assert model.ebusy == 0, 'a transition was started while another one ran'
        # Only the divergent suffix is popped.
        kept = plan.kept
        for patch, want in zip(before.live_stack, wanted):
            if not same_build(patch, want)[0]:
                break
        disabled = [step.patch for step in plan.steps if step.action == 'disable']
        assert disabled == [p.name for p in reversed(before.live_stack[kept:])] or (
            plan.steps and plan.steps[0].retires and not disabled)
        assert plan.kept == len([1 for p, w in zip(before.live_stack, wanted) if same_build(p, w)[0]][:kept])
        # Nothing left to do: the plan from the stack to itself is empty.
        assert plan_stack(model.observe(), wanted).steps == ()
        if version != '4.9':
            assert final.leftovers == (), [leftover.as_dict() for leftover in final.leftovers]
    finally:
        shutil.rmtree(root)


@settings(max_examples=30, deadline=None)
@given(version=st.sampled_from(ERAS), current=stack_strategy())
def test_plan_from_a_stack_to_itself_is_empty(version, current):
    root = tempfile.mkdtemp(prefix='model-')
    files_dir = tempfile.mkdtemp(prefix='ko-')
    try:
        model = KernelModel(root, version)
        wanted = []
        for name, build in current:
            path = os.path.join(files_dir, '%s-%s.ko' % (name, build))
            make_ko(path, name, release=model.release, build=build)
            model.insmod(path)
            settle(model)
            wanted.append(Wanted(name, path, read_kofile(path).build_id))
        assert plan_stack(model.observe(), wanted).steps == ()
    finally:
        shutil.rmtree(root)
        shutil.rmtree(files_dir)
