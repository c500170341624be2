# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The planner's exact output, as a table: era x live stack x desired stack x options -> steps or refusal.

Notation: a patch is ``name`` or ``name@build`` (build ``v1`` when not given); a name starting with
``R`` is a replace patch. ``disabled`` are patches still listed but disabled (before 5.1), and
``leftovers`` are ``name:refcnt`` modules off the list (0: retired, 1: forced). ``ours`` lists the
patches this collection loaded (``name`` alone: build unknown); without it everything is ours.
"""

from __future__ import annotations

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    Leftover, Patch, Snapshot, capabilities_for,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import (
    ForeignPatch, Plan, Step, Wanted, foreign_patches, plan_stack, same_build,
)

RELEASE = {'7.2': '7.2.13+deb14-amd64', '6.1': '6.1.0-50-amd64', '4.19': '4.19.0-27-amd64', '4.9': '4.9.0-19-amd64'}


def parse(spec, default='v1'):
    name, sep, build = spec.partition('@')
    return name, (build or None) if sep else default


def snap(version='7.2', live=(), disabled=(), leftovers=(), supported=True):
    patches = [Patch(name=name, enabled=True, build_id=build) for name, build in map(parse, live)]
    patches += [Patch(name=name, enabled=False, build_id=build) for name, build in map(parse, disabled)]
    gone = []
    for spec in leftovers:
        name, _sep, refcnt = spec.partition(':')
        gone.append(Leftover(name=name, refcnt=int(refcnt), build_id='v1'))
    return Snapshot(root='/', kernel_release=RELEASE[version], livepatch_supported=supported,
                    capabilities=capabilities_for(RELEASE[version], set()), stack=patches,
                    order_source='proc_modules', transition=None, leftovers=gone, taint=None, warnings=[])


def want(*specs, requires=None):
    result = []
    for spec in specs:
        name, build = parse(spec)
        result.append(Wanted(name=name, path='/lp/%s.ko' % spec, build_id=build, replace=name.startswith('R'),
                             requires=(requires or {}).get(name, ())))
    return result


def ours_of(specs):
    if specs is None:
        return None
    return [(spec.partition('@')[0], spec.partition('@')[2] or None) for spec in specs]


def refused(rule, *patches):
    return ('refused', rule, list(patches))


def steps(plan):
    return ['%s %s' % (step.action, step.patch) for step in plan.steps]


# id, era, kernel state, desired stack, options, expected
CASES = [
    # --- 5.1+ (free): pop = disable + unload, replace retires atomically ---
    ('push onto empty', '7.2', {}, ['a', 'b', 'c'], {}, ['load a', 'load b', 'load c']),
    ('same stack: empty plan', '7.2', {'live': ['a', 'b']}, ['a', 'b'], {}, []),
    ('pop to one then push two', '7.2', {'live': ['a', 'b', 'c']}, ['a', 'd', 'e'], {},
     ['disable c', 'unload c', 'disable b', 'unload b', 'load d', 'load e']),
    ('pop everything', '6.1', {'live': ['a', 'b']}, [], {}, ['disable b', 'unload b', 'disable a', 'unload a']),
    ('rebuilt bottom pops everything', '7.2', {'live': ['a', 'b']}, ['a@v2', 'b'], {},
     ['disable b', 'unload b', 'disable a', 'unload a', 'load a', 'load b']),
    ('rebuilt middle keeps the bottom', '6.1', {'live': ['a', 'b', 'c']}, ['a', 'b@v2', 'c'], {},
     ['disable c', 'unload c', 'disable b', 'unload b', 'load b', 'load c']),
    ('reorder pops from the divergence', '7.2', {'live': ['a', 'b', 'c']}, ['a', 'c', 'b'], {},
     ['disable c', 'unload c', 'disable b', 'unload b', 'load c', 'load b']),
    ('unknown build kept by name', '7.2', {'live': ['a@']}, ['a'], {}, []),
    ('replace over a live stack needs no pops', '7.2', {'live': ['a', 'b']}, ['R1', 'c'], {},
     ['load R1', 'unload b', 'unload a', 'load c']),
    ('replace over a live stack, retired kept loaded', '7.2', {'live': ['a', 'b']}, ['R1'],
     {'unload_retired': False}, ['load R1']),
    ('replace with the live name pops first', '7.2', {'live': ['R1', 'b']}, ['R1@v2'], {},
     ['disable b', 'unload b', 'disable R1', 'unload R1', 'load R1']),
    ('replace must be at the bottom', '7.2', {}, ['a', 'R1'], {}, refused('replace_not_at_bottom', 'R1', 'a')),
    ('duplicate names', '7.2', {}, ['a', 'b', 'a@v2'], {}, refused('duplicate_name', 'a')),
    ('requires a patch that is missing', '7.2', {}, ['a', 'b'], {'requires': {'b': ('c',)}},
     refused('requires', 'b', 'c')),
    ('requires a patch that is below', '7.2', {}, ['a', 'b'], {'requires': {'b': ('a',)}}, ['load a', 'load b']),
    ('requires a patch that is above', '7.2', {}, ['b', 'a'], {'requires': {'b': ('a',)}},
     refused('requires', 'b', 'a')),
    ('no livepatch support', '7.2', {'supported': False}, ['a'], {}, refused('no_livepatch')),
    ('retired leftover with a pushed name is unloaded first', '7.2', {'leftovers': ['a:0']}, ['a'],
     {'unload_retired': False}, ['unload a', 'load a']),
    ('retired leftovers cleaned up', '7.2', {'live': ['a'], 'leftovers': ['old:0']}, ['a'], {}, ['unload old']),
    ('retired leftovers kept when asked', '7.2', {'live': ['a'], 'leftovers': ['old:0']}, ['a'],
     {'unload_retired': False}, []),
    ('disabled patch leaving is unloaded', '6.1', {'live': ['a'], 'disabled': ['b']}, ['a'], {}, ['unload b']),
    ('forced leftover cannot be pushed again', '7.2', {'leftovers': ['a:1']}, ['a'], {},
     refused('forced_module', 'a')),
    ('forced leftover left alone', '7.2', {'leftovers': ['x:1']}, ['a'], {}, ['load a']),
    ('bad foreign policy', '7.2', {}, ['a'], {'foreign': 'ignore'}, refused('bad_input')),
    # --- 4.12-5.0 (stacked): only the top enabled patch may be disabled; disabled ones stay listed ---
    ('stacked: pop without unloading until all are disabled', '4.19', {'live': ['a', 'b', 'c']}, ['a', 'd'], {},
     ['disable c', 'disable b', 'unload c', 'unload b', 'load d']),
    ('stacked: re-enable a disabled patch', '4.19', {'live': ['a'], 'disabled': ['b', 'c']}, ['a', 'b'], {},
     ['enable b', 'unload c']),
    ('stacked: re-enable only from the first disabled', '4.19', {'live': ['a'], 'disabled': ['b', 'c']}, ['a', 'c'],
     {}, ['unload c', 'unload b', 'load c']),
    ('stacked: rebuilt disabled patch reloaded', '4.19', {'live': ['a'], 'disabled': ['b']}, ['a', 'b@v2'], {},
     ['unload b', 'load b']),
    ('stacked: replace unsupported', '4.19', {}, ['R1'], {}, refused('replace_unsupported', 'R1')),
    # --- 4.0-4.11 (immediate): no transitions, modules never unload ---
    ('immediate: pop only disables', '4.9', {'live': ['a', 'b']}, ['a'], {}, ['disable b']),
    ('immediate: push above a disabled patch refused', '4.9', {'live': ['a', 'b']}, ['a', 'c'], {},
     refused('no_unload', 'b')),
    ('immediate: re-enable instead of reload', '4.9', {'live': ['a'], 'disabled': ['b']}, ['a', 'b'], {},
     ['enable b']),
    ('immediate: a listed name cannot be loaded again', '4.9', {'disabled': ['a']}, ['a@v2'], {},
     refused('no_unload', 'a')),
    # --- foreign patches (not loaded by this collection), 5.1+ ---
    ('foreign refuse: a pop would remove it', '7.2', {'live': ['f']}, ['a', 'b'], {'foreign': 'refuse', 'ours': []},
     refused('foreign_patch', 'f')),
    ('foreign keep: the stack is built above it', '7.2', {'live': ['f']}, ['a', 'b'],
     {'foreign': 'keep', 'ours': []}, ['load a', 'load b']),
    ('foreign pop: removed like any other', '7.2', {'live': ['f']}, ['a', 'b'], {'foreign': 'pop', 'ours': []},
     ['disable f', 'unload f', 'load a', 'load b']),
    ('foreign refuse: listed at its position', '7.2', {'live': ['f', 'a']}, ['f', 'a', 'b'],
     {'foreign': 'refuse', 'ours': ['a']}, ['load b']),
    ('foreign refuse: above ours', '6.1', {'live': ['a', 'f']}, ['a', 'b'], {'foreign': 'refuse', 'ours': ['a']},
     refused('foreign_patch', 'f')),
    ('foreign keep: above ours would need a pop of it', '6.1', {'live': ['a', 'f']}, ['a', 'b'],
     {'foreign': 'keep', 'ours': ['a']}, refused('foreign_patch', 'f')),
    ('foreign keep: ours above it popped', '7.2', {'live': ['f', 'a', 'b']}, ['c'],
     {'foreign': 'keep', 'ours': ['a', 'b']}, ['disable b', 'unload b', 'disable a', 'unload a', 'load c']),
    ('foreign refuse: replace would retire it', '7.2', {'live': ['f', 'a']}, ['R1'],
     {'foreign': 'refuse', 'ours': ['a']}, refused('foreign_patch', 'f')),
    ('foreign keep: replace would retire it', '7.2', {'live': ['f', 'a']}, ['R1'],
     {'foreign': 'keep', 'ours': ['a']}, refused('foreign_patch', 'R1', 'f')),
    ('foreign pop: replace retires it', '7.2', {'live': ['f', 'a']}, ['R1'], {'foreign': 'pop', 'ours': ['a']},
     ['load R1', 'unload a', 'unload f']),
    ('foreign: same name, other build than ours', '7.2', {'live': ['a@v1']}, ['a@v2'],
     {'foreign': 'refuse', 'ours': ['a@v2']}, refused('foreign_patch', 'a')),
    ('foreign: same name and build as ours', '7.2', {'live': ['a@v1']}, ['a@v2'],
     {'foreign': 'refuse', 'ours': ['a@v1']}, ['disable a', 'unload a', 'load a']),
    ('foreign: our build unknown compares by name', '7.2', {'live': ['a@v1']}, ['a@v2'],
     {'foreign': 'refuse', 'ours': ['a']}, ['disable a', 'unload a', 'load a']),
    ('foreign: ours not given means all are ours', '7.2', {'live': ['f']}, ['a'], {'foreign': 'refuse'},
     ['disable f', 'unload f', 'load a']),
    ('foreign refuse: untouched foreign below is fine', '7.2', {'live': ['f', 'a']}, ['f', 'a'],
     {'foreign': 'refuse', 'ours': ['a']}, []),
    ('foreign refuse: retired foreign module left alone', '7.2', {'live': ['a'], 'leftovers': ['old:0']}, ['a'],
     {'foreign': 'refuse', 'ours': ['a']}, []),
    ('foreign pop: retired foreign module cleaned up', '7.2', {'live': ['a'], 'leftovers': ['old:0']}, ['a'],
     {'foreign': 'pop', 'ours': ['a']}, ['unload old']),
    ('foreign refuse: retired foreign module in the way of a push', '7.2', {'leftovers': ['a:0']}, ['a'],
     {'foreign': 'refuse', 'ours': []}, refused('foreign_patch', 'a')),
    # --- foreign patches, 4.12-5.0 ---
    ('stacked foreign refuse: pop everything', '4.19', {'live': ['f', 'a']}, [],
     {'foreign': 'refuse', 'ours': ['a']}, refused('foreign_patch', 'f')),
    ('stacked foreign keep: pop ours only', '4.19', {'live': ['f', 'a']}, [], {'foreign': 'keep', 'ours': ['a']},
     ['disable a', 'unload a']),
    ('stacked foreign refuse: disabled foreign stays listed', '4.19', {'live': ['a'], 'disabled': ['d']}, ['a'],
     {'foreign': 'refuse', 'ours': ['a']}, []),
    ('stacked foreign pop: disabled foreign unloaded', '4.19', {'live': ['a'], 'disabled': ['d']}, ['a'],
     {'foreign': 'pop', 'ours': ['a']}, ['unload d']),
    ('stacked foreign refuse: disabled foreign blocks a push', '4.19', {'live': ['a'], 'disabled': ['d']},
     ['a', 'b'], {'foreign': 'refuse', 'ours': ['a']}, refused('foreign_patch', 'd')),
    # --- foreign patches, 4.0-4.11 ---
    ('immediate foreign refuse: a pop would disable it', '4.9', {'live': ['f', 'a']}, [],
     {'foreign': 'refuse', 'ours': ['a']}, refused('foreign_patch', 'f')),
    ('immediate foreign keep: disable ours only', '4.9', {'live': ['f', 'a']}, [],
     {'foreign': 'keep', 'ours': ['a']}, ['disable a']),
    ('immediate foreign keep: push above it', '4.9', {'live': ['f']}, ['a'], {'foreign': 'keep', 'ours': []},
     ['load a']),
]


@pytest.mark.parametrize('era, state, desired, options, expected', [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_plan_table(era, state, desired, options, expected):
    options = dict(options)
    requires = options.pop('requires', None)
    if 'ours' in options:
        options['ours'] = ours_of(options['ours'])
    snapshot = snap(era, **state)
    wanted = want(*desired, requires=requires)
    if isinstance(expected, tuple):
        with pytest.raises(LivepatchError) as info:
            plan_stack(snapshot, wanted, **options)
        _refused, rule, patches = expected
        assert info.value.rule == rule, info.value.message
        if patches:
            assert info.value.patches == patches
        return
    plan = plan_stack(snapshot, wanted, **options)
    assert steps(plan) == expected
    # What the plan says the stack becomes: the desired stack (with a kept foreign bottom).
    foreign = [p.name for p in plan.foreign] if options.get('foreign') == 'keep' else []
    assert list(plan.after) == foreign + [w.name for w in wanted if w.name not in foreign]
    assert plan.changes == bool(expected)


def test_kept_counts_the_common_bottom():
    assert plan_stack(snap(live=['a', 'b', 'c']), want('a', 'd')).kept == 1
    assert plan_stack(snap(live=['a', 'b']), want('a', 'b')).kept == 2
    assert plan_stack(snap(live=['a', 'b']), want('a@v2', 'b')).kept == 0


def test_unknown_build_is_noted():
    plan = plan_stack(snap(live=['a@']), want('a'))
    assert 'could not compare builds of a' in plan.notes[0]


def test_immediate_era_notes_what_stays_loaded():
    plan = plan_stack(snap('4.9', live=['a', 'b']), want('a'))
    assert 'cannot unload' in plan.notes[0] and 'b' in plan.notes[0]


def test_replace_step_names_what_it_retires():
    plan = plan_stack(snap(live=['a', 'b']), want('R1'))
    assert plan.steps[0].retires == ('a', 'b')
    assert plan.steps[0].as_dict()['retires'] == ['a', 'b']


def test_foreign_patches_positions_count_from_the_bottom():
    live = snap(live=['f', 'a', 'g@v2', 'b']).live_stack
    assert foreign_patches(live, [('a', None), ('b', 'v1'), ('g', 'v1')]) == [
        ForeignPatch(name='f', build_id='v1', position=1), ForeignPatch(name='g', build_id='v2', position=3)]
    assert foreign_patches(live, None) == []
    assert foreign_patches(live, [('a', None), ('b', None), ('f', None), ('g', None)]) == []


def test_foreign_names_are_compared_as_the_kernel_names_modules():
    live = snap(live=['lp_a']).live_stack
    assert foreign_patches(live, [('lp-a', None)]) == []


def test_foreign_refusal_says_where_and_what_to_do():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(live=['a', 'f@v9', 'b']), want('a'), foreign='refuse', ours=[('a', 'v1'), ('b', 'v1')])
    message = info.value.message
    assert 'f (position 2 from the bottom of the live stack, build v9: would be disabled and unloaded)' in message
    assert 'foreign: keep' in message and 'foreign: pop' in message and 'list them in the stack' in message
    assert info.value.patches == ['f']
    assert info.value.detail == {'foreign': [{'name': 'f', 'build_id': 'v9', 'position': 2}]}


def test_foreign_replace_refusal_says_retired():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(live=['f', 'a']), want('R1'), foreign='refuse', ours=[('a', None)])
    assert 'retired by replace patch R1' in info.value.message


def test_foreign_keep_plan_reports_the_kept_bottom():
    plan = plan_stack(snap(live=['f']), want('a'), foreign='keep', ours=[])
    assert [w.name for w in plan.wanted] == ['f', 'a']
    assert plan.wanted[0].path is None and plan.wanted[0].build_id == 'v1'
    assert 'f (position 1)' in plan.notes[0]
    assert plan.as_dict()['foreign'] == [{'name': 'f', 'build_id': 'v1', 'position': 1}]


def test_foreign_keep_of_an_already_converged_stack_is_empty():
    """keep is idempotent: planning again from the result changes nothing."""
    plan = plan_stack(snap(live=['f', 'a']), want('a'), foreign='keep', ours=[('a', None)])
    assert plan.steps == () and list(plan.after) == ['f', 'a']


def test_wanted_defaults_and_normalised_fields():
    wanted = Wanted(name='a')
    assert (wanted.path, wanted.build_id, wanted.srcversion, wanted.replace, wanted.requires) == (
        None, None, None, False, ())
    given = Wanted(name='b', path='/lp/b.ko', build_id='v1', replace=1, requires=['a'])
    assert given.replace is True and given.requires == ('a',)
    assert Wanted(name='c', requires=None).requires == ()
    assert given.as_dict() == {'name': 'b', 'path': '/lp/b.ko', 'build_id': 'v1', 'replace': True, 'requires': ['a']}


def test_values_are_frozen():
    with pytest.raises(AttributeError):
        Wanted(name='a').path = '/elsewhere.ko'  # type: ignore[misc]
    plan = plan_stack(snap(), want('a'))
    with pytest.raises(AttributeError):
        plan.kept = 3  # type: ignore[misc]
    with pytest.raises(AttributeError):
        plan.steps[0].patch = 'b'  # type: ignore[misc]


def test_step_as_dict_names_path_and_retires_only_when_there_are_some():
    plan = plan_stack(snap(live=['a', 'b']), want('R1'))
    assert [step.as_dict() for step in plan.steps] == [
        {'action': 'load', 'patch': 'R1', 'reason': 'replace patch: retires a, b atomically', 'path': '/lp/R1.ko',
         'retires': ['a', 'b']},
        {'action': 'unload', 'patch': 'b', 'reason': 'retired by replace patch R1'},
        {'action': 'unload', 'patch': 'a', 'reason': 'retired by replace patch R1'}]
    assert repr(plan.steps[1]) == 'Step(unload b)'


def test_plan_as_dict():
    plan = plan_stack(snap(live=['a', 'b']), want('a', 'c'))
    assert plan.as_dict() == {
        'steps': [step.as_dict() for step in plan.steps], 'stack_before': ['a', 'b'], 'stack_after': ['a', 'c'],
        'kept': 1, 'notes': [], 'foreign': []}
    assert [step.reason for step in plan.steps] == [
        'pop: not in the desired stack at this position', 'pop: a disabled patch can never be enabled again (5.1+)',
        'push']
    assert plan.before == ('a', 'b') and plan.wanted == tuple(want('a', 'c'))


@pytest.mark.parametrize('era, state, desired, reasons', [
    ('4.19', {'live': ['a', 'b']}, ['a'], [
        'pop: not in the desired stack at this position',
        'disabled and not wanted; a disabled patch on the list blocks new patches before 5.1']),
    ('4.19', {'live': ['a'], 'disabled': ['b']}, ['a', 'b'], [
        'registered but disabled; enabled again instead of reloaded (before 5.1)']),
    ('7.2', {'live': ['a'], 'leftovers': ['old:0']}, ['a'], ['retired module (disabled or replaced), refcnt 0']),
    ('7.2', {'leftovers': ['a:0']}, ['a'], ['retired module (disabled or replaced), refcnt 0', 'push']),
], ids=['stacked pop', 'stacked re-enable', 'clean-up', 'reload of a retired name'])
def test_step_reasons(era, state, desired, reasons):
    assert [step.reason for step in plan_stack(snap(era, **state), want(*desired)).steps] == reasons


def test_reason_for_unloading_a_retired_name_before_loading_it():
    plan = plan_stack(snap(leftovers=['a:0']), want('a'), unload_retired=False)
    assert [step.reason for step in plan.steps] == [
        'still loaded as a retired module; must be unloaded before it is loaded again', 'push']


@pytest.mark.parametrize('era, state, desired, rule, words', [
    ('7.2', {}, ['a', 'b', 'a@v2'], 'duplicate_name',
     'patch a appears twice in the desired stack (positions 1 and 3); the kernel holds one module per name'),
    ('4.19', {}, ['R1'], 'replace_unsupported',
     'patch R1 is a replace patch, but atomic replace needs kernel 5.1 or later and this kernel follows the '
     '4.12-5.0 rules'),
    ('7.2', {}, ['a', 'b', 'R1'], 'replace_not_at_bottom',
     'patch R1 is a replace patch at position 3: when its transition completes it retires every patch below it '
     '(a, b), so it may only stand at the bottom of the stack'),
    ('7.2', {'leftovers': ['a:1']}, ['a'], 'forced_module',
     'patch a is still loaded from a forced transition (refcnt 1) and can never be unloaded until reboot'),
    ('4.9', {'live': ['a', 'b']}, ['c'], 'no_unload', 'patches a, b would stay registered and disabled: kernels '
     'before 4.12 can never unload a patch module, and a new patch cannot be enabled above a disabled one'),
    ('7.2', {'supported': False}, ['a'], 'no_livepatch',
     'this kernel (7.2.13+deb14-amd64) has no /sys/kernel/livepatch'),
    ('7.2', {}, ['a'], 'bad_input', "foreign must be one of refuse, keep, pop, not 'never'"),
], ids=['duplicate', 'replace before 5.1', 'replace above', 'forced', 'no unload', 'no livepatch', 'bad policy'])
def test_refusal_messages(era, state, desired, rule, words):
    options = {'foreign': 'never'} if rule == 'bad_input' else {}
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(era, **state), want(*desired), **options)
    assert info.value.rule == rule and words in info.value.message, info.value.message


def test_notes():
    assert plan_stack(snap(live=['a@']), want('a')).notes == (
        'could not compare builds of a (no build ID or srcversion on one side); kept by name',)
    assert plan_stack(snap('4.19', live=['a@']), want('a')).notes == ('could not compare builds of a; kept by name',)
    assert plan_stack(snap('4.9', live=['a', 'b']), want('a')).notes == (
        'kernels before 4.12 cannot unload patch modules: b stay loaded and disabled',)


def test_same_build_falls_back_to_srcversion_then_name():
    live = Patch(name='a', enabled=True, build_id=None, srcversion='S1')
    assert same_build(live, Wanted(name='a', srcversion='S1')) == (True, True)
    assert same_build(live, Wanted(name='a', srcversion='S2')) == (False, True)
    assert same_build(live, Wanted(name='a')) == (True, False)
    assert same_build(live, Wanted(name='b', srcversion='S1')) == (False, True)
    built = Patch(name='a', enabled=True, build_id='B1', srcversion='S1')
    assert same_build(built, Wanted(name='a', build_id='B2', srcversion='S1')) == (False, True)


def test_foreign_keep_refusal_says_why_keep_is_not_enough():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(live=['a', 'f']), want('a', 'b'), foreign='keep', ours=[('a', None)])
    assert ('f (position 2 from the bottom of the live stack, build v1: would be disabled and unloaded)'
            in info.value.message)
    assert 'with foreign: keep they stay at the bottom, and this plan would still have to touch them' in (
        info.value.message)
    assert info.value.detail == {'foreign': [{'name': 'f', 'build_id': 'v1', 'position': 2}]}


def test_foreign_module_that_is_not_live_is_named_as_such():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap('4.19', live=['a'], disabled=['d']), want('a', 'b'), foreign='refuse', ours=[('a', None)])
    assert 'd (not live: disabled or retired; would be unloaded)' in info.value.message
    assert info.value.patches == ['d'] and info.value.detail == {'foreign': []}


def test_foreign_keep_refuses_a_replace_patch_over_them():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(live=['f', 'g', 'a']), want('R1'), foreign='keep', ours=[('a', None)])
    assert info.value.message == (
        'replace patch R1 would retire the patches not loaded by this collection (f at position 1, g at position 2) '
        'when its transition completes; with foreign: keep they stay. Set foreign: pop to replace them too')
    assert info.value.patches == ['R1', 'f', 'g']
    assert [p['name'] for p in info.value.detail['foreign']] == ['f', 'g']


def test_foreign_keep_of_a_replace_patch_without_foreign_patches():
    plan = plan_stack(snap(live=['a']), want('R1'), foreign='keep', ours=[('a', None)])
    assert [step.action for step in plan.steps] == ['load', 'unload']


def test_a_live_build_unknown_is_ours_by_name():
    live = snap(live=['a@', 'b@']).live_stack
    assert foreign_patches(live, [('a', 'v1')]) == [ForeignPatch(name='b', build_id=None, position=2)]


def test_foreign_refusal_without_a_build_does_not_name_one():
    with pytest.raises(LivepatchError) as info:
        plan_stack(snap(live=['f@']), want('a'), foreign='refuse', ours=[])
    assert 'f (position 1 from the bottom of the live stack: would be disabled and unloaded)' in info.value.message


def test_plan_and_step_normalise_sequences_to_tuples():
    step = Step(action='load', patch='R1', reason='push', retires=['a'])
    assert step.retires == ('a',) and step.path is None
    plan = Plan(steps=[step], before=['a'], after=['R1'], kept=0)
    assert (plan.steps, plan.before, plan.after, plan.notes, plan.wanted, plan.foreign) == (
        (step,), ('a',), ('R1',), (), (), ())
    with pytest.raises(TypeError):
        Step('load', 'R1', 'push')  # pylint: disable=too-many-function-args
