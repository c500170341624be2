# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``livepatch_stack`` and ``livepatch`` on real kernels: the workflows of issue 4.

What the module says is compared with what the kernel shows (effects of the patches, sysfs and
/proc/modules read with shell), and every scenario runs again on the kernel model with the same
calls and the same ``.ko`` files (``drive.on_kernel_and_model``): the same assertions hold on
both, and both must report the same steps, outcomes, errors and stack.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from drive import SYSFS, livepatch_modules, on_kernel_and_model, patch, reads, reset, run_module, sh, stack, wait_script


@pytest.fixture
def vm(lab_vm):
    reset(lab_vm)
    return lab_vm


def actions(steps):
    return [(step['action'], step['patch']) for step in steps]


def effects(target):
    """The patches whose effect shows in the guest (the model has no effects: the stack stands in)."""
    return sorted(target.vm.live_effects()) if not target.is_model else None


def push_pop_to_n_push_and_idempotence(t):
    first = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c']))
    assert first['changed'] is True, first
    assert actions(first['steps']) == [('load', 'lab_a'), ('load', 'lab_b'), ('load', 'lab_c')]
    assert t.live() == ['lab_a', 'lab_b', 'lab_c'] and effects(t) in (None, ['lab_a', 'lab_b', 'lab_c'])
    again = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c']))
    assert again['changed'] is False and again['plan'] == []

    # check mode predicts exactly what the real run then does
    args = {'pop_to': 1, 'push': [patch(t, 'lab_d'), patch(t, 'lab_e')]}
    predicted = t.run('livepatch_stack', args, check=True)
    assert t.live() == ['lab_a', 'lab_b', 'lab_c']
    real = t.run('livepatch_stack', args)
    assert real['changed'] is True
    assert actions(real['steps']) == actions(predicted['plan']) == [
        ('disable', 'lab_c'), ('unload', 'lab_c'), ('disable', 'lab_b'), ('unload', 'lab_b'),
        ('load', 'lab_d'), ('load', 'lab_e')]
    assert real['stack_after'] == predicted['stack_after'] == ['lab_a', 'lab_d', 'lab_e']
    live, loaded = t.state()
    assert live == ['lab_a', 'lab_d', 'lab_e'] and effects(t) in (None, ['lab_a', 'lab_d', 'lab_e'])
    assert loaded == ['lab_a', 'lab_d', 'lab_e']
    assert all(step['outcome'] == 'ok' for step in real['steps'])
    if not t.is_model:
        print('%s: pop-2/push-2 steps: %s' % (t.kernel, ', '.join(
            '%s %s %.0f ms' % (s['action'], s['patch'], s['duration_ms']) for s in real['steps'])))
    return [first, again, predicted, real]


def test_push_pop_to_n_push_and_idempotence(lab, vm):
    # through the real ``ansible`` command on every kernel (the other scenarios use the guest
    # runner: drive.py's docstring)
    on_kernel_and_model(lab, vm, push_pop_to_n_push_and_idempotence, via='ansible')


def bug_at_the_bottom(t):
    first = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b']))
    fixed = t.run('livepatch_stack', stack(t, ['v2/lab_a', 'lab_b']))
    assert actions(fixed['steps']) == [('disable', 'lab_b'), ('unload', 'lab_b'), ('disable', 'lab_a'),
                                       ('unload', 'lab_a'), ('load', 'lab_a'), ('load', 'lab_b')]
    assert effects(t) in (None, ['lab_a_v2', 'lab_b']) and t.live() == ['lab_a', 'lab_b']
    again = t.run('livepatch_stack', stack(t, ['v2/lab_a', 'lab_b']))
    assert again['changed'] is False
    return [first, fixed, again]


def test_bug_at_the_bottom_pop_everything_push_the_fixed_stack(lab, vm):
    real, _model = on_kernel_and_model(lab, vm, bug_at_the_bottom)
    # the model and the kernel agree on the build now live (same stack entries): v2's build ID
    assert real[1]['stack'][0]['build_id'] != real[0]['stack'][0]['build_id']


def replace_retires_the_old_stack(t):
    first = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b']))
    result = t.run('livepatch_stack', stack(t, [dict(patch(t, 'lab_replace'), replace=True)]))
    assert result['changed'] is True and 'msg' not in result, result
    assert actions(result['steps']) == [('load', 'lab_replace'), ('unload', 'lab_b'), ('unload', 'lab_a')]
    assert result['steps'][0]['retires'] == ['lab_a', 'lab_b']
    assert t.state() == (['lab_replace'], ['lab_replace'])
    assert effects(t) in (None, ['lab_replace'])
    return [first, result]


def test_replace_patch_retires_and_unloads_the_old_stack(lab, vm):
    on_kernel_and_model(lab, vm, replace_retires_the_old_stack)


def replace_not_at_the_bottom(t):
    result = t.run('livepatch_stack', stack(t, ['lab_a', dict(patch(t, 'lab_replace'), replace=True)]))
    assert result.get('failed') and result['rule'] == 'replace_not_at_bottom'
    assert t.live() == []
    return [result]


def test_replace_patch_not_at_the_bottom_is_refused(lab, vm):
    on_kernel_and_model(lab, vm, replace_not_at_the_bottom)


def blocked_transition_reversed(t):
    first = t.run('livepatch_stack', stack(t, ['lab_a']))
    t.block()
    start = time.monotonic()
    result = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_block'], timeout=4))
    elapsed = time.monotonic() - start
    assert result.get('failed'), result
    assert 'stalled while patching' in result['msg'] and 'reversed' in result['msg'] and 'Rolled back' in result['msg']
    blockers = result['error_detail']['blockers']
    assert any(b['comm'].startswith('lab_busy') and any('lab_busy_sleep' in f for f in b['stack']) for b in blockers)
    assert result['steps'][0]['outcome'] == 'reversed'
    live, loaded = t.state()
    assert live == ['lab_a'] and effects(t) in (None, ['lab_a'])
    assert 'lab_block' not in loaded
    assert elapsed < 60, 'the stall should be handled within the timeout plus the reversal'
    return [first, result]


def test_blocked_transition_is_reversed_with_its_blockers_reported(lab, vm):
    """The model's lab_busy is a task it renders blocked in lab_busy_sleep() (kernel_model.py)."""
    on_kernel_and_model(lab, vm, blocked_transition_reversed)


def failed_insmod_rolled_back(t):
    first = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c']))
    result = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_d', 'lab_fail_pre']))
    assert result.get('failed')
    assert 'No such device' in result['msg'] and 'pre-patch callback failed' in result['msg']
    assert result['rollback']['succeeded'] is True
    live, loaded = t.state()
    assert live == ['lab_a', 'lab_b', 'lab_c'] and effects(t) in (None, ['lab_a', 'lab_b', 'lab_c'])
    assert 'lab_d' not in loaded
    again = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c']))
    assert again['changed'] is False
    return [first, result, again]


def test_failed_insmod_in_the_middle_is_rolled_back(lab, vm):
    on_kernel_and_model(lab, vm, failed_insmod_rolled_back)


def incompatible_klp_state(t):
    first = t.run('livepatch_stack', stack(t, ['lab_state_v2']))
    result = t.run('livepatch_stack', stack(t, ['lab_state_v2', 'lab_state_v1']))
    assert result.get('failed')
    assert 'is not compatible with the already installed livepatches' in result['msg']
    assert result['error_detail']['errno'] == 'EINVAL'
    assert t.live() == ['lab_state_v2']
    return [first, result]


def test_incompatible_klp_state_is_refused_with_the_kernel_message(lab, vm):
    on_kernel_and_model(lab, vm, incompatible_klp_state)


def test_bad_modules_are_refused_with_nothing_changed(lab, vm):
    other = [k for k in ('bookworm', 'trixie', 'sid') if k != vm.kernel][0]
    foreign = os.path.join(str(lab.cache), 'patches', other, 'lab_b.ko')
    if not os.path.exists(foreign):
        lab.build([other])
    with open(foreign, 'rb') as source:
        other_build = source.read()

    def bad_modules(t):
        first = t.run('livepatch_stack', stack(t, ['lab_a']))
        plain = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_plain']))
        assert plain.get('failed') and plain['rule'] == 'not_livepatch'
        # a root-owned 0755 directory: the file trust rule refuses anything under /tmp (1777)
        t.put('/opt/other-kernel/lab_b.ko', other_build)
        wrong = t.run('livepatch_stack', stack(t, ['lab_a', {'path': '/opt/other-kernel/lab_b.ko'}]))
        assert wrong.get('failed') and wrong['rule'] == 'release_mismatch' and t.release in wrong['msg']
        missing = t.run('livepatch_stack', stack(t, ['lab_a', {'path': '/nonexistent.ko'}]))
        assert missing.get('failed') and missing['rule'] == 'missing_file'
        assert t.state() == (['lab_a'], ['lab_a'])
        return [first, plain, wrong, missing]
    on_kernel_and_model(lab, vm, bad_modules)


def lock_held_by_another_run(t):
    t.hold_lock()
    try:
        blocked = t.run('livepatch_stack', stack(t, ['lab_a'], lock_timeout=1))
    finally:
        t.free_lock()
    assert blocked.get('failed') and 'another livepatch run holds' in blocked['msg'], blocked
    assert blocked['changed'] is False
    assert t.live() == []
    return [blocked]


def test_two_runs_are_serialised_by_the_host_lock(lab, vm):
    """The model compares the run refused while another holds the lock; two runs at once are the
    guest's alone (the model runs modules in this process, one at a time)."""
    on_kernel_and_model(lab, vm, lock_held_by_another_run)
    results = {}

    def converge_in_thread(key, names):
        results[key] = run_module(vm, 'livepatch_stack', stack(vm, names))
    threads = [threading.Thread(target=converge_in_thread, args=(key, names))
               for key, names in (('one', ['lab_a']), ('two', ['lab_a', 'lab_b']))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for key in ('one', 'two'):
        assert not results[key][0].get('failed'), results[key][0]
    assert sh(vm, 'ls %s' % SYSFS).split() in (['lab_a'], ['lab_a', 'lab_b'])


def single_patch_module(t):
    pushed = t.run('livepatch', patch(t, 'lab_a'))
    assert pushed['changed'] is True and t.live() == ['lab_a']
    second = t.run('livepatch', patch(t, 'lab_b'))
    refused = t.run('livepatch', {'name': 'lab_a', 'state': 'absent'})
    assert refused.get('failed') and refused['rule'] == 'not_on_top' and refused['patches'] == ['lab_b']
    popped = t.run('livepatch', {'name': 'lab_b', 'state': 'absent'})
    assert popped['changed'] and t.live() == ['lab_a']
    again = t.run('livepatch', {'name': 'lab_b', 'state': 'absent'})
    assert again['changed'] is False
    if t.is_model:
        loaded = t.loaded()
    else:
        # sysfs, then the wait for lab_b to leave /proc/modules, then the modules loaded: one command
        got = reads(t.vm, sysfs='ls %s' % SYSFS, lab_b_unloaded=wait_script("! grep -q '^lab_b ' /proc/modules"),
                    modules='cat /proc/modules')
        assert got['sysfs'].split() == ['lab_a']
        loaded = livepatch_modules(got['modules'])
    assert loaded == ['lab_a']
    return [pushed, second, refused, popped, again]


def test_single_patch_module(lab, vm):
    on_kernel_and_model(lab, vm, single_patch_module)
