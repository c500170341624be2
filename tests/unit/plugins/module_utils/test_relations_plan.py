# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Option skip_unrelated of the planner: a table of plans, and properties on the kernel model.

Off (``unrelated=None``) and on without evidence (an empty set) the plans must be exactly the
stack's; on, executed on the model, no patch may ever be disabled under a live patch it is
related to, and the final stack may differ from the desired order only between unrelated pairs.
Both are computed from the inputs and from what the model saw, not from the plan.
"""

from __future__ import annotations

import ast
import itertools
import shutil

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils import _plan
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import plan_stack
from ansible_collections.kernelops.livepatch.plugins.module_utils._relations import popped_again

from kernel_model import KernelModel
from test_plan import snap, steps, want  # pylint: disable=import-error
from test_plan_properties import (  # pylint: disable=import-error,unused-import
    FREE, NAMES, build_current, check_case, execute, kofiles, live_and_desired, scratch_dir,
)


def pairs(*texts):
    return frozenset(frozenset(text.split('-')) for text in texts)


ALL = pairs(*('%s-%s' % pair for pair in itertools.combinations('abcdefn', 2)))

PLAN_CASES = [
    # (id, live, desired, unrelated, expected steps, expected stack after)
    ('middle-removed', ('a', 'b', 'c'), ('a', 'c'), pairs('b-c'),
     ['disable b', 'unload b'], ['a', 'c']),
    ('middle-removed-related', ('a', 'b', 'c'), ('a', 'c'), pairs('a-c'),
     ['disable c', 'unload c', 'disable b', 'unload b', 'load c'], ['a', 'c']),
    ('middle-rebuilt', ('a', 'b', 'c', 'd'), ('a', 'b@v2', 'c', 'd'), pairs('b-c', 'b-d'),
     ['disable b', 'unload b', 'load b'], ['a', 'c', 'd', 'b']),
    ('middle-rebuilt-one-related', ('a', 'b', 'c', 'd'), ('a', 'b@v2', 'c', 'd'), pairs('b-c'),
     ['disable d', 'unload d', 'disable c', 'unload c', 'disable b', 'unload b', 'load b', 'load c', 'load d'],
     ['a', 'b', 'c', 'd']),
    ('middle-swapped-for-other', ('a', 'b', 'c'), ('a', 'n', 'c'), pairs('b-c', 'n-c'),
     ['disable b', 'unload b', 'load n'], ['a', 'c', 'n']),
    ('already-on-top', ('a', 'c', 'n'), ('a', 'n', 'c'), pairs('n-c'), [], ['a', 'c', 'n']),
    ('top-changes-as-always', ('a', 'b'), ('a', 'b@v2'), ALL, ['disable b', 'unload b', 'load b'], ['a', 'b']),
    ('push-only', ('a',), ('a', 'b'), ALL, ['load b'], ['a', 'b']),
    ('two-changes-fall-back', ('a', 'b', 'c'), ('a', 'b@v2', 'c@v2'), ALL,
     ['disable c', 'unload c', 'disable b', 'unload b', 'load b', 'load c'], ['a', 'b', 'c']),
    ('new-required-above-it', ('a', 'b', 'c'), ('a', 'b@v2', 'c'), pairs('b-c'),
     ['disable c', 'unload c', 'disable b', 'unload b', 'load b', 'load c'], ['a', 'b', 'c']),
    ('bottom-replace-patch-not-skipped', ('a', 'b'), ('R', 'b'), ALL,
     ['load R', 'unload b', 'unload a', 'load b'], ['R', 'b']),
]


@pytest.mark.parametrize('live,desired,unrelated,expected,after', [case[1:] for case in PLAN_CASES],
                         ids=[case[0] for case in PLAN_CASES])
def test_skip_unrelated_table(live, desired, unrelated, expected, after):
    requires = {'c': ('b',)} if live == ('a', 'b', 'c') and desired == ('a', 'b@v2', 'c') else None
    plan = plan_stack(snap(live=live), want(*desired, requires=requires), unrelated=unrelated)
    assert steps(plan) == expected
    assert list(plan.after) == after
    skipped = any('rule skip_unrelated' in note for note in plan.notes)
    assert skipped == (expected != steps(plan_stack(snap(live=live), want(*desired, requires=requires))))


@pytest.mark.parametrize('version', ['4.19', '6.1', '7.2'])
@pytest.mark.parametrize('live,desired,_unrelated,_expected,_after', [case[1:] for case in PLAN_CASES],
                         ids=[case[0] for case in PLAN_CASES])
def test_without_evidence_the_plan_is_the_stack(version, live, desired, _unrelated, _expected, _after):
    def outcome(**option):
        try:
            plan = plan_stack(snap(version, live=live), want(*desired), **option)
        except LivepatchError as exc:
            return exc.rule
        return plan.as_dict(), plan.after
    assert outcome() == outcome(unrelated=None) == outcome(unrelated=frozenset())


def check_unrelated_case(files, version, current, desired, unrelated, planner_unrelated=None):
    """Plan with the option, run on the model; every disable under a live patch needs evidence."""
    wanted = [files[(version, name, build)] for name, build in desired]
    root = scratch_dir('model-')
    try:
        model = KernelModel(root, version)
        build_current(model, files, version, current, [])
        before = model.observe()
        plan = plan_stack(before, wanted, unrelated=unrelated if planner_unrelated is None else planner_unrelated)
        execute(model, before, plan)
        for violation in model.violations:  # 'disabled X while [...] live above it', by the model
            _word, name, _while, rest = violation.split(' ', 3)
            for above in ast.literal_eval(rest[:rest.index(']') + 1]):
                assert frozenset((name, above)) in unrelated, '%s disabled under related %s' % (name, above)
        final = [(p.name, p.build_id) for p in model.observe().live_stack]
        expect = [(w.name, w.build_id) for w in wanted]
        assert sorted(final) == sorted(expect)
        for (low, _b1), (high, _b2) in itertools.combinations(final, 2):
            if [name for name, _b in expect].index(low) > [name for name, _b in expect].index(high):
                assert frozenset((low, high)) in unrelated, 'related %s, %s out of order' % (low, high)
        assert not plan_stack(model.observe(), wanted, unrelated=unrelated).steps, 'not idempotent'
        return bool(model.violations)
    finally:
        shutil.rmtree(root)


@st.composite
def unrelated_sets(draw):
    chosen = draw(st.lists(st.sampled_from(list(itertools.combinations(NAMES, 2))), unique=True))
    return frozenset(frozenset(pair) for pair in chosen)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(version=st.sampled_from(FREE), stacks=live_and_desired(), unrelated=unrelated_sets())
def test_no_patch_leaves_from_under_a_related_one(kofiles, version, stacks, unrelated):  # pylint: disable=redefined-outer-name
    check_unrelated_case(kofiles, version, stacks[0], stacks[1], unrelated)


def test_the_property_sees_a_skip(kofiles):  # pylint: disable=redefined-outer-name
    """Not vacuous: a middle removal with evidence disables under a live patch; a planner that
    skipped without that evidence (a mutant: it is told b-c unrelated, the check knows better) fails."""
    current = [('a', 'v1'), ('b', 'v1'), ('c', 'v1')]
    assert check_unrelated_case(kofiles, '7.2', current, [('a', 'v1'), ('c', 'v1')], pairs('b-c')) is True
    with pytest.raises(AssertionError, match='disabled under related'):
        check_unrelated_case(kofiles, '7.2', current, [('a', 'v1'), ('c', 'v1')], pairs('a-c'),
                             planner_unrelated=pairs('b-c'))


POPPED_AGAIN = [
    # (id, era, live, desired, unrelated, the patches not live for a while although in both stacks)
    ('middle-rebuilt', '7.2', ('a', 'b', 'c', 'd'), ('a', 'b@v2', 'c', 'd'), None, ['c', 'd']),
    ('middle-rebuilt-skipped', '7.2', ('a', 'b', 'c', 'd'), ('a', 'b@v2', 'c', 'd'), pairs('b-c', 'b-d'), []),
    ('top-rebuilt', '7.2', ('a', 'b'), ('a', 'b@v2'), None, []),
    ('middle-removed', '6.1', ('a', 'b', 'c'), ('a', 'c'), None, ['c']),
    ('push-only', '7.2', ('a',), ('a', 'b'), None, []),
    ('replace-retires-b-and-b-comes-back', '7.2', ('a', 'b'), ('R', 'b'), None, ['b']),
    ('before-5.1-enabled-again', '4.19', ('a', 'b', 'c'), ('a', 'c'), None, ['c']),
]


@pytest.mark.parametrize('version,live,desired,unrelated,expected', [case[1:] for case in POPPED_AGAIN],
                         ids=[case[0] for case in POPPED_AGAIN])
def test_popped_again_names_the_patches_in_both_stacks_that_go_off(version, live, desired, unrelated, expected):
    before = snap(version, live=live)
    assert popped_again(before.live_stack, plan_stack(before, want(*desired), unrelated=unrelated)) == expected


def test_the_off_property_fails_on_a_planner_that_skips_without_the_option(kofiles, monkeypatch):  # pylint: disable=redefined-outer-name
    """Off, plans are exactly the stack's: test_plan_properties' property (every live patch above
    the common bottom disabled topmost first, no disable under a live patch, by the model) runs
    with the option off, and fails on a mutant whose planner skips as if every pair were unrelated."""
    plan_free, skip = _plan._plan_free, _plan._skip_unrelated  # pylint: disable=protected-access

    def leaky(snapshot, wanted, *args):
        skipped = skip(snapshot, wanted, ALL | pairs(*('%s-%s' % p for p in itertools.combinations(NAMES, 2))))
        return skipped[:3] if skipped is not None else plan_free(snapshot, wanted, *args)
    assert check_case(kofiles, '7.2', [('a', 'v1'), ('b', 'v1'), ('c', 'v1')], [('a', 'v1'), ('c', 'v1')]) == 'executed'
    monkeypatch.setattr(_plan, '_plan_free', leaky)
    with pytest.raises(AssertionError, match='disabled'):
        check_case(kofiles, '7.2', [('a', 'v1'), ('b', 'v1'), ('c', 'v1')], [('a', 'v1'), ('c', 'v1')])
