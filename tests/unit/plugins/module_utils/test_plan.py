# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The planner's exact output for the workflows users run, per kernel era."""

from __future__ import annotations

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    Leftover, Patch, Snapshot, capabilities_for,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Refusal, Wanted, plan_stack

RELEASE = {'7.2': '7.2.13+deb14-amd64', '6.1': '6.1.0-50-amd64', '4.19': '4.19.0-27-amd64', '4.9': '4.9.0-19-amd64'}


def snap(version='7.2', live=(), disabled=(), leftovers=(), supported=True):
    patches = [Patch(name, True, build_id=build) for name, build in live]
    patches += [Patch(name, False, build_id=build) for name, build in disabled]
    return Snapshot('/', RELEASE[version], supported, capabilities_for(RELEASE[version], set()), patches,
                    'proc_modules', None, [Leftover(name, refcnt) for name, refcnt in leftovers], None, [], [])


def want(*specs):
    result = []
    for spec in specs:
        name, _sep, build = spec.partition('@')
        replace = name.startswith('R')
        result.append(Wanted(name, '/lp/%s.ko' % spec, build or 'v1', replace=replace))
    return result


def steps(plan):
    return ['%s %s' % (step.action, step.patch) for step in plan.steps]


def test_push_onto_empty_stack():
    plan = plan_stack(snap(), want('a', 'b', 'c'))
    assert steps(plan) == ['load a', 'load b', 'load c']
    assert plan.after == ('a', 'b', 'c') and plan.kept == 0


def test_same_stack_is_an_empty_plan():
    plan = plan_stack(snap(live=[('a', 'v1'), ('b', 'v1')]), want('a', 'b'))
    assert steps(plan) == [] and not plan.changes and plan.kept == 2


def test_pop_to_one_then_push_two():
    plan = plan_stack(snap(live=[('a', 'v1'), ('b', 'v1'), ('c', 'v1')]), want('a', 'd', 'e'))
    assert steps(plan) == ['disable c', 'unload c', 'disable b', 'unload b', 'load d', 'load e']
    assert plan.kept == 1


def test_bug_at_the_bottom_pops_everything():
    """A rebuilt bottom patch (same name, new build) counts as different (lab-notes.md)."""
    plan = plan_stack(snap(live=[('a', 'v1'), ('b', 'v1')]), want('a@v2', 'b'))
    assert steps(plan) == ['disable b', 'unload b', 'disable a', 'unload a', 'load a', 'load b']


def test_unknown_build_is_kept_by_name_with_a_note():
    plan = plan_stack(snap(live=[('a', None)]), want('a'))
    assert steps(plan) == []
    assert 'could not compare builds of a' in plan.notes[0]


def test_replace_patch_over_a_live_stack_needs_no_pops():
    plan = plan_stack(snap(live=[('a', 'v1'), ('b', 'v1')]), want('R1', 'c'))
    assert steps(plan) == ['load R1', 'unload b', 'unload a', 'load c']
    assert plan.steps[0].retires == ('a', 'b')


def test_replace_patch_with_the_same_name_as_the_live_one_pops_first():
    plan = plan_stack(snap(live=[('R1', 'v1'), ('b', 'v1')]), want('R1@v2'))
    assert steps(plan) == ['disable b', 'unload b', 'disable R1', 'unload R1', 'load R1']


def test_replace_patch_must_be_at_the_bottom():
    with pytest.raises(Refusal) as info:
        plan_stack(snap(), want('a', 'R1'))
    assert info.value.rule == 'replace_not_at_bottom'
    assert info.value.patches == ['R1', 'a']


def test_replace_needs_5_1():
    with pytest.raises(Refusal) as info:
        plan_stack(snap('4.19'), want('R1'))
    assert info.value.rule == 'replace_unsupported'


def test_duplicate_names_refused():
    with pytest.raises(Refusal) as info:
        plan_stack(snap(), want('a', 'b', 'a@v2'))
    assert info.value.rule == 'duplicate_name' and 'positions 1 and 3' in info.value.message


def test_requires_checked():
    wanted = want('a', 'b')
    wanted[1].requires = ('c',)
    with pytest.raises(Refusal) as info:
        plan_stack(snap(), wanted)
    assert info.value.rule == 'requires' and info.value.patches == ['b', 'c']
    wanted[1].requires = ('a',)
    assert steps(plan_stack(snap(), wanted)) == ['load a', 'load b']


def test_no_livepatch_support_refused():
    with pytest.raises(Refusal) as info:
        plan_stack(snap(supported=False), want('a'))
    assert info.value.rule == 'no_livepatch'


def test_retired_leftover_with_a_pushed_name_is_unloaded_first():
    plan = plan_stack(snap(leftovers=[('a', 0)]), want('a'), unload_retired=False)
    assert steps(plan) == ['unload a', 'load a']


def test_retired_leftovers_are_cleaned_up():
    plan = plan_stack(snap(live=[('a', 'v1')], leftovers=[('old', 0)]), want('a'))
    assert steps(plan) == ['unload old']
    assert steps(plan_stack(snap(live=[('a', 'v1')], leftovers=[('old', 0)]), want('a'), unload_retired=False)) == []


def test_forced_leftover_cannot_be_pushed_again():
    with pytest.raises(Refusal) as info:
        plan_stack(snap(leftovers=[('a', 1)]), want('a'))
    assert info.value.rule == 'forced_module'


def test_forced_leftover_is_left_alone():
    assert steps(plan_stack(snap(leftovers=[('x', 1)]), want('a'))) == ['load a']


def test_stacked_era_pops_without_unloading_until_all_are_disabled():
    """4.12-5.0: the kernel only lets the top enabled patch be disabled (§3.1)."""
    plan = plan_stack(snap('4.19', live=[('a', 'v1'), ('b', 'v1'), ('c', 'v1')]), want('a', 'd'))
    assert steps(plan) == ['disable c', 'disable b', 'unload c', 'unload b', 'load d']


def test_stacked_era_re_enables_a_disabled_patch():
    plan = plan_stack(snap('4.19', live=[('a', 'v1')], disabled=[('b', 'v1'), ('c', 'v1')]), want('a', 'b'))
    assert steps(plan) == ['enable b', 'unload c']


def test_immediate_era_pop_only_disables():
    plan = plan_stack(snap('4.9', live=[('a', 'v1'), ('b', 'v1')]), want('a'))
    assert steps(plan) == ['disable b']
    assert 'cannot unload' in plan.notes[0]


def test_immediate_era_refuses_a_push_above_a_disabled_patch():
    with pytest.raises(Refusal) as info:
        plan_stack(snap('4.9', live=[('a', 'v1'), ('b', 'v1')]), want('a', 'c'))
    assert info.value.rule == 'no_unload' and info.value.patches == ['b']
