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

from drive import SYSFS, insmod_steps, live_patches, reads, record_tree, reset, run_module, steps, wait_script

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


def load(vm, names, *more):
    """insmod each lab patch and wait until no transition is left, then the ``more`` steps: one command."""
    steps(vm, insmod_steps(vm.patch_dir, names) + list(more), timeout=240)


def wait(condition, what):
    """The step that waits for ``condition`` (``what``)."""
    return '%s not observed within 20000 ms' % what, wait_script(condition)


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
    load(vm, ('lab_a', 'lab_b', 'lab_c'))
    info, _wall = run_module(vm, 'livepatch_info')
    era, has_replace, has_stack_order, order_source = EXPECT[vm.kernel]
    assert info['kernel_release'] == vm.release
    assert info['livepatch_supported'] is True
    assert [p['name'] for p in info['stack']] == live_patches(vm) == ['lab_a', 'lab_b', 'lab_c']
    assert info['order_source'] == order_source
    # each patch's refcnt and build ID as the kernel shows them, read in one command
    kernel = reads(vm, dict(item for patch in info['stack'] for item in (
        ('refcnt-' + patch['name'], 'cat /sys/module/%s/refcnt' % patch['name']),
        ('build_id-' + patch['name'], 'python3 -c "%s"' % (
            "print(open('/sys/module/%s/notes/.note.gnu.build-id', 'rb').read()[16:].hex())" % patch['name'])))))
    caps = info['capabilities']
    assert (caps['era'], caps['replace'], caps['stack_order'], caps['patched'], caps['source']) == (
        era, has_replace, has_stack_order, True, 'attributes')
    for patch in info['stack']:
        name = patch['name']
        assert patch['enabled'] is True and patch['transition'] is False
        assert patch['refcnt'] == int(kernel['refcnt-' + name])
        assert 'K' in patch['taint']
        assert patch['build_id'] and patch['build_id'] == kernel['build_id-' + name].strip()
        assert patch['objects'][0]['name'] == 'vmlinux' and patch['objects'][0]['patched'] is True
        assert patch['replace'] is (False if has_replace else None)
    if has_stack_order:
        assert [p['stack_order'] for p in info['stack']] == [1, 2, 3]
    assert info['taint']['livepatch'] is True
    assert info['transition'] is None and info['leftovers'] == []
    maybe_record(vm, 'three', {'names': ['lab_a', 'lab_b', 'lab_c'], 'order_source': order_source,
                               'transition': None, 'leftovers': []})


def test_disable_middle_leaves_a_retired_module(vm):
    load(vm, ('lab_a', 'lab_b', 'lab_c'), ('echo 0 > lab_b/enabled', 'echo 0 > %s/lab_b/enabled' % SYSFS),
         wait('[ ! -d %s/lab_b ]' % SYSFS, 'lab_b freed'),
         wait('[ "$(cat /sys/module/lab_b/refcnt)" = 0 ]', 'lab_b refcnt 0'))
    info, _wall = run_module(vm, 'livepatch_info')
    assert [p['name'] for p in info['stack']] == ['lab_a', 'lab_c']
    if EXPECT[vm.kernel][2]:
        assert [p['stack_order'] for p in info['stack']] == [1, 2]  # renumbered (§4.1)
    assert [(x['name'], x['state'], x['refcnt']) for x in info['leftovers']] == [('lab_b', 'retired', 0)]
    maybe_record(vm, 'disabled-middle', {'names': ['lab_a', 'lab_c'], 'transition': None,
                                         'leftovers': [['lab_b', 'retired']]})


def test_stalled_transition_with_its_blocker(vm):
    load(vm, ('lab_a',), ('insmod lab_busy', 'insmod %s/lab_busy.ko' % vm.patch_dir),
         ('block lab_busy', 'echo 1 > /sys/module/lab_busy/parameters/block; sleep 0.2'),
         ('insmod lab_block', 'insmod %s/lab_block.ko' % vm.patch_dir), ('sleep', 'sleep 2'))
    kernel = reads(vm, transition='cat %s/lab_block/transition' % SYSFS,
                   blockers="grep -l '^0' /proc/[0-9]*/task/[0-9]*/patch_state | cut -d/ -f5 | sort -n")
    assert kernel['transition'].strip() == '1'
    blocker_pids = kernel['blockers'].split()
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
    steps(vm, [('echo 0 > lab_block/enabled', 'echo 0 > %s/lab_block/enabled' % SYSFS),
               wait('[ ! -d %s/lab_block ]' % SYSFS, 'lab_block reversed and freed')])


def test_replace_retires_the_patches_below(vm):
    load(vm, ('lab_a', 'lab_b', 'lab_replace'),
         wait('[ ! -d %s/lab_a ] && [ ! -d %s/lab_b ]' % (SYSFS, SYSFS), 'replaced patches freed'),
         wait('[ "$(cat /sys/module/lab_a/refcnt)" = 0 ] && [ "$(cat /sys/module/lab_b/refcnt)" = 0 ]',
              'replaced modules released'))
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
