# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``livepatch_info`` on real kernels, checked against the kernel's own files read with shell.

Patches are loaded by hand (insmod, echo to sysfs), as an operator would. With
``KERNELOPS_RECORD_FIXTURES=1`` each scenario's tree is saved under ``tests/unit/fixtures/``
together with what the shell saw, and the unit tests replay it.
"""

from __future__ import annotations

import json
import os

import pytest

from drive import SYSFS, live_patches, loop_until, record_tree, reset, run_module, sh

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit', 'fixtures')
EXPECT = {
    # kernel: (era, replace attribute, stack_order attribute, order source with patches loaded)
    'bookworm': ('5.1+', False, False, 'proc_modules'),
    'trixie': ('5.1+', True, False, 'proc_modules'),
    'sid': ('5.1+', True, True, 'stack_order'),
}


@pytest.fixture
def vm(lab_vm):
    reset(lab_vm)
    return lab_vm


def insmod(vm, name):
    sh(vm, 'insmod %s/%s.ko' % (vm.patch_dir, name))


def wait_idle(vm):
    loop_until(vm, "! grep -qs 1 %s/*/transition" % SYSFS, 'no transition')


def maybe_record(vm, scenario, expected):
    if os.environ.get('KERNELOPS_RECORD_FIXTURES') != '1':
        return
    os.makedirs(FIXTURES, exist_ok=True)
    data = {'kernel': vm.kernel, 'release': vm.release, 'scenario': scenario, 'expected': expected,
            'files': record_tree(vm)}
    with open(os.path.join(FIXTURES, '%s-%s.json' % (vm.kernel, scenario)), 'w') as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.write('\n')


def test_three_patches(vm):
    for name in ('lab_a', 'lab_b', 'lab_c'):
        insmod(vm, name)
        wait_idle(vm)
    info, _wall = run_module(vm, 'livepatch_info')
    era, has_replace, has_stack_order, order_source = EXPECT[vm.kernel]
    assert info['kernel_release'] == vm.release
    assert info['livepatch_supported'] is True
    assert [p['name'] for p in info['stack']] == live_patches(vm) == ['lab_a', 'lab_b', 'lab_c']
    assert info['order_source'] == order_source
    caps = info['capabilities']
    assert (caps['era'], caps['replace'], caps['stack_order'], caps['patched'], caps['source']) == (
        era, has_replace, has_stack_order, True, 'attributes')
    for patch in info['stack']:
        name = patch['name']
        assert patch['enabled'] is True and patch['transition'] is False
        assert patch['refcnt'] == int(sh(vm, 'cat /sys/module/%s/refcnt' % name))
        assert 'K' in patch['taint']
        note = "print(open('/sys/module/%s/notes/.note.gnu.build-id', 'rb').read()[16:].hex())" % name
        assert patch['build_id'] and patch['build_id'] == sh(vm, 'python3 -c "%s"' % note).strip()
        assert patch['objects'][0]['name'] == 'vmlinux' and patch['objects'][0]['patched'] is True
        assert patch['replace'] is (False if has_replace else None)
    if has_stack_order:
        assert [p['stack_order'] for p in info['stack']] == [1, 2, 3]
    assert info['taint']['livepatch'] is True
    assert info['transition'] is None and info['leftovers'] == []
    maybe_record(vm, 'three', {'names': ['lab_a', 'lab_b', 'lab_c'], 'order_source': order_source,
                               'transition': None, 'leftovers': []})


def test_disable_middle_leaves_a_retired_module(vm):
    for name in ('lab_a', 'lab_b', 'lab_c'):
        insmod(vm, name)
        wait_idle(vm)
    sh(vm, 'echo 0 > %s/lab_b/enabled' % SYSFS)
    loop_until(vm, '[ ! -d %s/lab_b ]' % SYSFS, 'lab_b freed')
    loop_until(vm, '[ "$(cat /sys/module/lab_b/refcnt)" = 0 ]', 'lab_b refcnt 0')
    info, _wall = run_module(vm, 'livepatch_info')
    assert [p['name'] for p in info['stack']] == ['lab_a', 'lab_c']
    if EXPECT[vm.kernel][2]:
        assert [p['stack_order'] for p in info['stack']] == [1, 2]  # renumbered (§4.1)
    assert [(x['name'], x['state'], x['refcnt']) for x in info['leftovers']] == [('lab_b', 'retired', 0)]
    maybe_record(vm, 'disabled-middle', {'names': ['lab_a', 'lab_c'], 'transition': None,
                                         'leftovers': [['lab_b', 'retired']]})


def test_stalled_transition_with_its_blocker(vm):
    insmod(vm, 'lab_a')
    wait_idle(vm)
    insmod(vm, 'lab_busy')
    sh(vm, 'echo 1 > /sys/module/lab_busy/parameters/block; sleep 0.2')
    insmod(vm, 'lab_block')
    sh(vm, 'sleep 2')
    assert sh(vm, 'cat %s/lab_block/transition' % SYSFS).strip() == '1'
    blocker_pids = sh(vm, "grep -l '^0' /proc/[0-9]*/task/[0-9]*/patch_state | cut -d/ -f5 | sort -n").split()
    info, _wall = run_module(vm, 'livepatch_info', {'blocker_stacks': True})
    transition = info['transition']
    assert transition['patch'] == 'lab_block' and transition['direction'] == 'patching'
    assert sorted(str(b['tid']) for b in transition['blockers']) == blocker_pids
    busy = [b for b in transition['blockers'] if b['comm'].startswith('lab_busy')]
    assert busy, transition['blockers']
    assert any('lab_busy_sleep' in frame for frame in busy[0]['stack'])
    assert [p['name'] for p in info['stack']] == ['lab_a', 'lab_block']
    assert info['stack'][1]['objects'][0]['name'] == 'lab_busy'
    maybe_record(vm, 'stalled', {'names': ['lab_a', 'lab_block'], 'transition': 'lab_block',
                                 'blocker_comms': sorted(b['comm'] for b in transition['blockers']), 'leftovers': []})
    # reverse by hand, as the kernel documents (§2.3)
    sh(vm, 'echo 0 > %s/lab_block/enabled' % SYSFS)
    loop_until(vm, '[ ! -d %s/lab_block ]' % SYSFS, 'lab_block reversed and freed')


def test_replace_retires_the_patches_below(vm):
    for name in ('lab_a', 'lab_b'):
        insmod(vm, name)
        wait_idle(vm)
    insmod(vm, 'lab_replace')
    wait_idle(vm)
    loop_until(vm, '[ ! -d %s/lab_a ] && [ ! -d %s/lab_b ]' % (SYSFS, SYSFS), 'replaced patches freed')
    loop_until(vm, '[ "$(cat /sys/module/lab_a/refcnt)" = 0 ] && [ "$(cat /sys/module/lab_b/refcnt)" = 0 ]',
               'replaced modules released')
    info, _wall = run_module(vm, 'livepatch_info')
    assert [p['name'] for p in info['stack']] == ['lab_replace']
    assert info['stack'][0]['replace'] is (True if EXPECT[vm.kernel][1] else None)
    assert sorted((x['name'], x['state']) for x in info['leftovers']) == [('lab_a', 'retired'), ('lab_b', 'retired')]
    maybe_record(vm, 'replaced', {'names': ['lab_replace'], 'transition': None,
                                  'leftovers': [['lab_a', 'retired'], ['lab_b', 'retired']]})


def test_empty(vm):
    info, _wall = run_module(vm, 'livepatch_info')
    assert info['stack'] == [] and info['transition'] is None and info['leftovers'] == []
    assert info['capabilities']['source'] == 'release'
    assert info['capabilities']['stack_order'] is EXPECT[vm.kernel][2]
    maybe_record(vm, 'empty', {'names': [], 'transition': None, 'leftovers': []})
