# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``livepatch_stack`` and ``livepatch`` on real kernels: the workflows of issue 4.

What the module says is compared with what the kernel shows (effects of the patches, sysfs and
/proc/modules read with shell), and with what the kernel model predicts for the same scenario.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time

import pytest

from drive import (
    SYSFS, live_patches, loaded_livepatch_modules, loop_until, patch, reset, run_module, sh,
)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit'))

from kernel_model import KernelModel  # noqa: E402  pylint: disable=wrong-import-position
from kernel_model import model_image  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import Executor  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import read_kofile  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture
def vm(lab_vm):
    reset(lab_vm)
    return lab_vm


def stack(vm, names, **extra):
    args = {'stack': [patch(vm, name) if isinstance(name, str) else name for name in names]}
    args.update(extra)
    return args


def actions(steps):
    return [(step['action'], step['patch']) for step in steps]


def effects(vm):
    return sorted(vm.live_effects())


def model_plan(lab, kernel, current, desired):
    """The steps the kernel model plans and executes for the same scenario, with the lab's own .ko files."""
    files = os.path.join(str(lab.cache), 'patches', kernel)
    root = tempfile.mkdtemp(prefix='model-')
    try:
        version = {'bookworm': '6.1', 'trixie': '6.12', 'sid': '7.2'}[kernel]
        model = KernelModel(root, version)
        model.release = read_kofile(os.path.join(files, 'lab_a.ko')).release
        model.render()

        def wanted(name):
            path = os.path.join(files, name + '.ko')
            info = read_kofile(path)
            return Wanted(name=info.name, path=path, build_id=info.build_id)
        for name in current:
            model.insmod(wanted(name).path)
            model.clock.sleep(0.01)
            model.tick()
        want = [wanted(name) for name in desired]
        snapshot = model.observe()
        plan = plan_stack(snapshot, want)
        executor = Executor(model, snapshot.capabilities, clock=model.clock)
        result = converge(model, plan, executor, images={w.name: model_image(w.path) for w in want},
                          original=snapshot.live_stack, planner=plan_stack)
        return [(s.action, s.patch) for s in plan.steps], result.snapshot.names()
    finally:
        shutil.rmtree(root)


def test_push_pop_to_n_push_and_idempotence(lab, vm):
    first, wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c']))
    assert first['changed'] is True, first
    assert actions(first['steps']) == [('load', 'lab_a'), ('load', 'lab_b'), ('load', 'lab_c')]
    assert live_patches(vm) == ['lab_a', 'lab_b', 'lab_c'] and effects(vm) == ['lab_a', 'lab_b', 'lab_c']
    again, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c']))
    assert again['changed'] is False and again['plan'] == []

    # check mode predicts exactly what the real run then does
    args = {'pop_to': 1, 'push': [patch(vm, 'lab_d'), patch(vm, 'lab_e')]}
    predicted, _wall = run_module(vm, 'livepatch_stack', args, check=True)
    assert live_patches(vm) == ['lab_a', 'lab_b', 'lab_c']
    real, wall = run_module(vm, 'livepatch_stack', args)
    assert real['changed'] is True
    assert actions(real['steps']) == actions(predicted['plan']) == [
        ('disable', 'lab_c'), ('unload', 'lab_c'), ('disable', 'lab_b'), ('unload', 'lab_b'),
        ('load', 'lab_d'), ('load', 'lab_e')]
    assert real['stack_after'] == predicted['stack_after'] == ['lab_a', 'lab_d', 'lab_e']
    assert live_patches(vm) == ['lab_a', 'lab_d', 'lab_e'] and effects(vm) == ['lab_a', 'lab_d', 'lab_e']
    assert loaded_livepatch_modules(vm) == ['lab_a', 'lab_d', 'lab_e']
    assert all(step['outcome'] == 'ok' for step in real['steps'])
    # the model plans the same steps for the same scenario and ends in the same stack
    assert model_plan(lab, vm.kernel, ['lab_a', 'lab_b', 'lab_c'], ['lab_a', 'lab_d', 'lab_e']) == (
        actions(real['steps']), live_patches(vm))
    print('%s: pop-2/push-2 took %.1f s wall (%s)' % (vm.kernel, wall, ', '.join(
        '%s %s %.0f ms' % (s['action'], s['patch'], s['duration_ms']) for s in real['steps'])))


def test_bug_at_the_bottom_pop_everything_push_the_fixed_stack(vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b']))
    fixed, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['v2/lab_a', 'lab_b']))
    assert actions(fixed['steps']) == [('disable', 'lab_b'), ('unload', 'lab_b'), ('disable', 'lab_a'),
                                       ('unload', 'lab_a'), ('load', 'lab_a'), ('load', 'lab_b')]
    assert effects(vm) == ['lab_a_v2', 'lab_b'] and live_patches(vm) == ['lab_a', 'lab_b']
    again, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['v2/lab_a', 'lab_b']))
    assert again['changed'] is False


def test_replace_patch_retires_and_unloads_the_old_stack(vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b']))
    result, _wall = run_module(vm, 'livepatch_stack', stack(vm, [dict(patch(vm, 'lab_replace'), replace=True)]))
    assert result['changed'] is True and 'msg' not in result, result
    assert actions(result['steps']) == [('load', 'lab_replace'), ('unload', 'lab_b'), ('unload', 'lab_a')]
    assert result['steps'][0]['retires'] == ['lab_a', 'lab_b']
    assert live_patches(vm) == ['lab_replace'] and loaded_livepatch_modules(vm) == ['lab_replace']
    assert effects(vm) == ['lab_replace']


def test_replace_patch_not_at_the_bottom_is_refused(vm):
    result, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', dict(patch(vm, 'lab_replace'), replace=True)]))
    assert result.get('failed') and result['rule'] == 'replace_not_at_bottom'
    assert live_patches(vm) == []


def test_blocked_transition_is_reversed_with_its_blockers_reported(vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_a']))
    sh(vm, 'insmod %s/lab_busy.ko && echo 1 > /sys/module/lab_busy/parameters/block && sleep 0.2' % vm.patch_dir)
    start = time.monotonic()
    result, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_block'], timeout=4))
    elapsed = time.monotonic() - start
    assert result.get('failed'), result
    assert 'stalled while patching' in result['msg'] and 'reversed' in result['msg'] and 'Rolled back' in result['msg']
    blockers = result['error_detail']['blockers']
    assert any(b['comm'].startswith('lab_busy') and any('lab_busy_sleep' in f for f in b['stack']) for b in blockers)
    assert result['steps'][0]['outcome'] == 'reversed'
    assert live_patches(vm) == ['lab_a'] and effects(vm) == ['lab_a']
    assert 'lab_block' not in loaded_livepatch_modules(vm)
    assert elapsed < 60, 'the stall should be handled within the timeout plus the reversal'


def test_failed_insmod_in_the_middle_is_rolled_back(vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c']))
    result, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_d', 'lab_fail_pre']))
    assert result.get('failed')
    assert 'No such device' in result['msg'] and 'pre-patch callback failed' in result['msg']
    assert result['rollback']['succeeded'] is True
    assert live_patches(vm) == ['lab_a', 'lab_b', 'lab_c'] and effects(vm) == ['lab_a', 'lab_b', 'lab_c']
    assert 'lab_d' not in loaded_livepatch_modules(vm)
    again, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c']))
    assert again['changed'] is False


def test_incompatible_klp_state_is_refused_with_the_kernel_message(vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_state_v2']))
    result, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_state_v2', 'lab_state_v1']))
    assert result.get('failed')
    assert 'is not compatible with the already installed livepatches' in result['msg']
    assert result['error_detail']['errno'] == 'EINVAL'
    assert live_patches(vm) == ['lab_state_v2']


def test_bad_modules_are_refused_with_nothing_changed(lab, vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_a']))
    plain, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_plain']))
    assert plain.get('failed') and plain['rule'] == 'not_livepatch'
    other = [k for k in ('bookworm', 'trixie', 'sid') if k != vm.kernel][0]
    foreign = os.path.join(str(lab.cache), 'patches', other, 'lab_b.ko')
    if not os.path.exists(foreign):
        lab.build([other])
    with open(foreign, 'rb') as source:
        # a root-owned 0755 directory: the file trust rule refuses anything under /tmp (1777)
        vm.ssh('install -d -m 0755 /opt/other-kernel && cat > /opt/other-kernel/lab_b.ko', input_data=source.read())
    wrong, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', {'path': '/opt/other-kernel/lab_b.ko'}]))
    assert wrong.get('failed') and wrong['rule'] == 'release_mismatch' and vm.release in wrong['msg']
    missing, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', {'path': '/nonexistent.ko'}]))
    assert missing.get('failed') and missing['rule'] == 'missing_file'
    assert live_patches(vm) == ['lab_a'] and loaded_livepatch_modules(vm) == ['lab_a']


def test_two_runs_are_serialised_by_the_host_lock(vm):
    # Another run holds the lock until this test lets it go.
    sh(vm, 'setsid -f flock -o /run/kernelops-livepatch.lock sleep 600 </dev/null >/dev/null 2>&1; sleep 0.3')
    assert vm.ssh('flock -n /run/kernelops-livepatch.lock true', check=False).returncode != 0, 'lock not held'
    blocked, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a'], lock_timeout=1))
    assert blocked.get('failed') and 'another livepatch run holds' in blocked['msg'], blocked
    assert blocked['changed'] is False
    assert live_patches(vm) == []
    sh(vm, "pkill -f 'flock -o /run/kernelops-livepatch.loc[k]'; true")
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
    assert live_patches(vm) in (['lab_a'], ['lab_a', 'lab_b'])


def test_single_patch_module(vm):
    pushed, _wall = run_module(vm, 'livepatch', patch(vm, 'lab_a'))
    assert pushed['changed'] is True and live_patches(vm) == ['lab_a']
    run_module(vm, 'livepatch', patch(vm, 'lab_b'))
    refused, _wall = run_module(vm, 'livepatch', {'name': 'lab_a', 'state': 'absent'})
    assert refused.get('failed') and refused['rule'] == 'not_on_top' and refused['patches'] == ['lab_b']
    popped, _wall = run_module(vm, 'livepatch', {'name': 'lab_b', 'state': 'absent'})
    assert popped['changed'] and live_patches(vm) == ['lab_a']
    again, _wall = run_module(vm, 'livepatch', {'name': 'lab_b', 'state': 'absent'})
    assert again['changed'] is False
    assert sh(vm, 'ls %s' % SYSFS).split() == ['lab_a']
    loop_until(vm, "! grep -q '^lab_b ' /proc/modules", 'lab_b unloaded')
