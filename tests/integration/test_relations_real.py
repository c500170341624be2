# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``livepatch_info``'s relations on real kernels: the lab_rel_* patches (lab/patches/README.md).

All ten are loaded by hand above ``lab_rel_lib``; livepatch_info must report exactly the four
relations they were built to have, from the files and from sysfs (which shows only
``same_function`` and ``uses_symbol``), and nothing between ``lab_rel_free1`` and ``lab_rel_free2``.
The shell reads the kernel's own view independently: function directories, holders, and
``/proc/lab_rel_lib`` to see each replacement run.
"""

from __future__ import annotations

import pytest

from drive import SYSFS, insmod_steps, live_patches, reads, reset, run_module, sh, steps

ORDER = ['lab_rel_same1', 'lab_rel_same2', 'lab_rel_callee', 'lab_rel_caller', 'lab_rel_export', 'lab_rel_import',
         'lab_rel_shadow1', 'lab_rel_shadow2', 'lab_rel_free1', 'lab_rel_free2']
BUILT = {
    ('lab_rel_same1', 'lab_rel_same2', 'same_function'),
    ('lab_rel_callee', 'lab_rel_caller', 'calls_patched'),
    ('lab_rel_export', 'lab_rel_import', 'uses_symbol'),
    ('lab_rel_shadow1', 'lab_rel_shadow2', 'shared_state'),
}
SYSFS_KINDS = ('same_function', 'uses_symbol')


@pytest.fixture
def vm(lab_vm):
    reset(lab_vm)  # also unloads lab_rel_lib; the test after it starts with a reset too (each file's first test does)
    return lab_vm


def load_all(vm):
    """lab_rel_lib, then the ten patches one by one, each transition waited for: one guest command."""
    steps(vm, [('insmod lab_rel_lib', 'insmod %s/lab_rel_lib.ko' % vm.patch_dir)] + insmod_steps(vm.patch_dir, ORDER),
          timeout=300)
    assert live_patches(vm) == ORDER


def triples(relations, source, kinds=None):
    return set((rel['lower'], rel['upper'], rel['kind']) for rel in relations
               if rel['source'] == source and (kinds is None or rel['kind'] in kinds))


def test_relations_from_files_and_sysfs(vm):
    load_all(vm)
    # the kernel's own view: each replacement runs (lab/patches/README.md "Relations")
    got = reads(vm, values='cat /proc/lab_rel_lib',
                functions='ls %s/lab_rel_same1/lab_rel_lib %s/lab_rel_same2/lab_rel_lib' % (SYSFS, SYSFS),
                holders='ls /sys/module/lab_rel_export/holders')
    values = dict(line.split(': ') for line in got['values'].split('\n') if line)
    assert (values['same'], values['called'], values['caller'], values['importer'], values['free1'],
            values['free2']) == ('2', '10', '110', '21', '31', '32')
    assert got['functions'].count('lab_rel_lib_same,1') == 2
    assert got['holders'].split() == ['lab_rel_import']

    files = ['%s/%s.ko' % (vm.patch_dir, name) for name in ORDER]
    info, _wall = run_module(vm, 'livepatch_info', {'files': files})
    relations = info['relations']
    assert triples(relations, 'file') == BUILT
    assert triples(relations, 'sysfs') == set(t for t in BUILT if t[2] in SYSFS_KINDS)
    assert not [rel for rel in relations if {rel['lower'], rel['upper']} == {'lab_rel_free1', 'lab_rel_free2'}]
    same = [rel for rel in relations if rel['kind'] == 'same_function']
    assert all(rel['evidence'] == ['lab_rel_lib:lab_rel_lib_same,1'] for rel in same)

    # without the files only sysfs speaks, and every pair is unknown: never counted as independent
    bare, _wall = run_module(vm, 'livepatch_info')
    assert triples(bare['relations'], 'sysfs') == triples(relations, 'sysfs')
    unknown = triples(bare['relations'], 'file', ('unknown',))
    assert len(unknown) == len(ORDER) * (len(ORDER) - 1) // 2


def stack_args(vm, names, **extra):
    return dict({'stack': [{'path': '%s/%s.ko' % (vm.patch_dir, name)} for name in names]}, **extra)


def actions(result):
    return [(step['action'], step['patch']) for step in result['plan']]


def test_skip_unrelated_on_a_real_kernel(vm):
    """Removed and replaced in the middle with only unrelated patches above; popped when related."""
    sh(vm, 'insmod %s/lab_rel_lib.ko' % vm.patch_dir)
    first, _wall = run_module(vm, 'livepatch_stack', stack_args(vm, ['lab_rel_free1', 'lab_rel_same1', 'lab_rel_free2']))
    assert first['stack_after'] == live_patches(vm) == ['lab_rel_free1', 'lab_rel_same1', 'lab_rel_free2']
    # lab_rel_same1 replaced by lab_rel_callee (another name): lab_rel_free2 is never disabled
    swap, _wall = run_module(vm, 'livepatch_stack', stack_args(
        vm, ['lab_rel_free1', 'lab_rel_callee', 'lab_rel_free2'], skip_unrelated=True))
    assert actions(swap) == [('disable', 'lab_rel_same1'), ('unload', 'lab_rel_same1'), ('load', 'lab_rel_callee')]
    assert any('rule skip_unrelated' in note for note in swap['notes'])
    assert live_patches(vm) == ['lab_rel_free1', 'lab_rel_free2', 'lab_rel_callee'] == swap['stack_after']
    again, _wall = run_module(vm, 'livepatch_stack', stack_args(
        vm, ['lab_rel_free1', 'lab_rel_callee', 'lab_rel_free2'], skip_unrelated=True))
    assert again['changed'] is False
    # lab_rel_caller calls what lab_rel_callee replaces: removing lab_rel_free2 under it is fine,
    # but replacing lab_rel_callee under lab_rel_caller pops lab_rel_caller and says why
    run_module(vm, 'livepatch_stack', stack_args(vm, ['lab_rel_free1', 'lab_rel_callee', 'lab_rel_caller']))
    related, _wall = run_module(vm, 'livepatch_stack', stack_args(
        vm, ['lab_rel_free1', 'lab_rel_same2', 'lab_rel_caller'], skip_unrelated=True))
    assert actions(related)[:2] == [('disable', 'lab_rel_caller'), ('unload', 'lab_rel_caller')]
    assert ('lab_rel_callee', 'lab_rel_caller', 'calls_patched') in triples(related['relations'], 'file')
    assert related['notes'] == ['rule skip_unrelated not applied: popped and pushed again: lab_rel_caller '
                                '(calls_patched with lab_rel_callee)']
    assert live_patches(vm) == ['lab_rel_free1', 'lab_rel_same2', 'lab_rel_caller']
