# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The planner's refusals and notes word for word: what a user reads when a plan is refused or
kept something by name (benchmarks/mutation.py found these words unchecked)."""

from __future__ import annotations

import dataclasses

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack

from test_plan import snap, want


@pytest.mark.parametrize('version, live, wanted, options, rule, message, patches', [
    ('7.2', ['a'], want('a', 'b', requires={'b': ('c', 'd')}), {}, 'requires',
     'patch b requires c, d below it in the stack, which the desired stack does not have', ['b', 'c', 'd']),
    ('4.9', ['a', 'b'], want('a', 'c'), {}, 'no_unload',
     'patches b would stay registered and disabled: kernels before 4.12 can never unload a patch module, and a new '
     'patch cannot be enabled above a disabled one; reboot to clear the stack', ['b']),
    ('7.2', ['a'], want('a'), {'foreign': 'maybe'}, 'bad_input',
     "foreign must be one of refuse, keep, pop, not 'maybe'", []),
])
def test_refusals_word_for_word(version, live, wanted, options, rule, message, patches):
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(version, live=live), wanted, **options)
    assert (info.value.rule, info.value.message, info.value.patches) == (rule, message, patches)


def test_a_kernel_without_livepatch_or_of_an_unknown_era_is_refused():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(live=[], supported=False), want('a'))
    assert (info.value.rule, info.value.message) == (
        'no_livepatch', 'this kernel (7.2.13+deb14-amd64) has no /sys/kernel/livepatch: it was built without '
        'CONFIG_LIVEPATCH')
    odd = snap(live=['a'])
    odd = dataclasses.replace(odd, capabilities=dataclasses.replace(odd.capabilities, era='3.x'))
    with pytest.raises(LivepatchError) as info:
        plan_stack(odd, want('a'))
    assert (info.value.rule, info.value.message) == ('unknown_era', 'unknown kernel era 3.x')


@pytest.mark.parametrize('version, live, wanted, options, notes', [
    ('7.2', ['a@', 'b@'], want('a', 'b'), {},
     ('could not compare builds of a, b (no build ID or srcversion on one side); kept by name',)),
    ('4.19', ['a@', 'b@'], want('a', 'b', 'c'), {}, ('could not compare builds of a, b; kept by name',)),
    ('4.9', ['a', 'b', 'c'], want('a'), {}, ('kernels before 4.12 cannot unload patch modules: b, c stay loaded and '
                                             'disabled',)),
    ('7.2', ['f', 'g', 'a'], want('a', 'b'), {'foreign': 'keep', 'ours': [('a', None)]},
     ('kept the patches not loaded by this collection at the bottom: f (position 1), g (position 2)',)),
])
def test_notes_word_for_word(version, live, wanted, options, notes):
    assert plan_stack(snap(version, live=live), wanted, **options).notes == notes


def test_wanted_defaults():
    plain = Wanted(name='a', path='/lp/a.ko')
    assert (plain.build_id, plain.replace, plain.requires) == (None, False, ())


@pytest.mark.parametrize('live, leftovers', [(['a@', 'b', 'c'], []), (['a', 'b', 'c'], ['x:0'])])
def test_skip_unrelated_keeps_the_stack_discipline_when_a_build_is_uncertain_or_a_module_is_leaving(live, leftovers):
    """Only a certain stack with nothing leaving may skip a pop (docs/developer.md §11)."""
    plan = plan_stack(snap(live=live, leftovers=leftovers), want('a', 'c'), unrelated=frozenset([frozenset('bc')]))
    assert [(step.action, step.patch) for step in plan.steps][:4] == [
        ('disable', 'c'), ('unload', 'c'), ('disable', 'b'), ('unload', 'b')]
    assert not any('skip_unrelated' in note for note in plan.notes)


def unrelated(*texts):
    return frozenset(frozenset(text.split('-')) for text in texts)


@pytest.mark.parametrize('desired, pairs, reasons, note', [
    (('a', 'c', 'd'), ('b-c', 'b-d'),
     ['rule skip_unrelated: disabled under c, d, which stay live', 'rule skip_unrelated: removed without popping c, d'],
     'rule skip_unrelated: b removed without popping c, d (no relation found between them in the files and sysfs '
     'checked)'),
    (('a', 'n', 'c', 'd'), ('b-c', 'b-d', 'n-c', 'n-d'),
     ['rule skip_unrelated: disabled under c, d, which stay live', 'rule skip_unrelated: replaced by n without popping c, d',
      'push'],
     'rule skip_unrelated: b replaced by n without popping c, d (no relation found between them in the files and '
     'sysfs checked)'),
    (('a', 'b@v2', 'c', 'd'), ('b-c', 'b-d'),
     ['rule skip_unrelated: disabled under c, d, which stay live',
      'rule skip_unrelated: replaced by its new build without popping c, d', 'push'],
     'rule skip_unrelated: b replaced by its new build without popping c, d (no relation found between them in the '
     'files and sysfs checked)'),
])
def test_skip_unrelated_says_what_it_skipped(desired, pairs, reasons, note):
    plan = plan_stack(snap(live=['a', 'b', 'c', 'd']), want(*desired), unrelated=unrelated(*pairs))
    assert [step.reason for step in plan.steps] == reasons and plan.notes == (note,)


def test_skip_unrelated_accepts_the_kernels_order_and_says_why():
    plan = plan_stack(snap(live=['a', 'c', 'd', 'n']), want('a', 'n', 'c', 'd'), unrelated=unrelated('n-c', 'n-d'))
    assert plan.steps == () and list(plan.after) == ['a', 'c', 'd', 'n']
    assert plan.notes == ("rule skip_unrelated: n stands above c, d in the kernel's order, which the evidence allows "
                          "(no relation between them)",)
