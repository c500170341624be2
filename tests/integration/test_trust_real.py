# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 10 on real kernels: other tools' patches are left alone (``foreign: refuse`` and
``foreign: keep``).

Every scenario drives ``livepatch_stack`` through the real ``ansible`` command, as a user does,
and reads the kernel with plain shell: which patches are enabled, in which order, and the exact
GNU build-ID note of each (``/sys/module/NAME/notes/.note.gnu.build-id``, the bytes of the
module's own note section: docs/developer.md §9.7), never with the collection's own reader.

All scenarios of one kernel share its lab VM (``lab_vm``); each starts from an empty stack.
"""

from __future__ import annotations

import re
import time

import pytest

from drive import SYSFS, live_patches, loaded_livepatch_modules, loop_until, patch, reset, run_module, sh

TRUST_DIR = '/root/klp-trust'   # root-owned, 0755, below /root (0700): a directory the collection must accept
NOTE = 'notes/.note.gnu.build-id'


@pytest.fixture
def vm(lab_vm):
    reset(lab_vm)
    sh(lab_vm, 'rm -rf %s /run/kernelops-livepatch && install -d -m 0755 -o root -g root %s' % (TRUST_DIR, TRUST_DIR))
    start = time.monotonic()
    yield lab_vm
    print('%s: %.1f s' % (lab_vm.kernel, time.monotonic() - start))


def stack(vm, names, **extra):
    args = {'stack': [patch(vm, name) if isinstance(name, str) else name for name in names]}
    args.update(extra)
    return args


def note_blob(vm, name):
    """The bytes of the live module's build-ID note as the kernel shows them (hex)."""
    return sh(vm, 'od -An -v -tx1 /sys/module/%s/%s | tr -d " \\n"' % (name, NOTE)).strip()


def kernel_state(vm):
    """[(name, build-ID note hex)] of the enabled patches, bottom first, and the livepatch
    modules loaded (enabled or not): what "the kernel is unchanged" compares."""
    return [(name, note_blob(vm, name)) for name in live_patches(vm)], loaded_livepatch_modules(vm)


def raw_insmod(vm, name):
    """Load a patch the way another tool would (not through the collection); wait for its transition."""
    sh(vm, 'insmod %s/%s.ko' % (vm.patch_dir, name))
    loop_until(vm, '[ "$(cat %s/%s/transition 2>/dev/null)" = 0 ]' % (SYSFS, name), '%s enabled' % name)


def enabling_count(vm, name):
    """How often the kernel logged enabling ``name`` since boot (a reload would log it again)."""
    return int(sh(vm, "dmesg | grep -c \"livepatch: enabling patch '%s'\" || true" % name).strip() or 0)


def assert_refused(result, rule, *names):
    assert result.get('failed'), result
    assert result.get('rule') == rule, result
    assert result.get('changed') is False, result
    for name in names:
        assert name in result['msg'], result['msg']


# -- b, c. patches this collection did not load (docs/developer.md §10.4) ------------------------

def test_foreign_refuse_names_the_patch_and_its_position_and_changes_nothing(vm):
    ours, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b']))
    assert not ours.get('failed'), ours
    enabled_before = enabling_count(vm, 'lab_d')  # earlier tests on this VM may have loaded it too
    raw_insmod(vm, 'lab_d')  # another tool's patch, on top: position 3 from the bottom
    before = kernel_state(vm)
    assert [name for name, _note in before[0]] == ['lab_a', 'lab_b', 'lab_d']

    refused, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c'], foreign='refuse'))
    assert_refused(refused, 'foreign_patch', 'lab_d')
    assert 'lab_d' in refused['patches'] and 'lab_a' not in refused['patches'], refused
    assert re.search(r'lab_d \(position 3\b', refused['msg']), refused['msg']
    assert kernel_state(vm) == before

    # refuse is the default: the same run without the option is refused the same way
    default, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c']))
    assert_refused(default, 'foreign_patch', 'lab_d')
    assert kernel_state(vm) == before
    assert enabling_count(vm, 'lab_d') == enabled_before + 1


def test_foreign_keep_converges_above_it_and_refuses_to_pop_it(vm):
    enabled_before = {name: enabling_count(vm, name) for name in ('lab_d', 'lab_e')}
    raw_insmod(vm, 'lab_d')  # another tool's patch at the bottom
    foreign_note = note_blob(vm, 'lab_d')
    kept, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b'], foreign='keep'))
    assert not kept.get('failed') and kept['changed'] is True, kept
    assert [(s['action'], s['patch']) for s in kept['steps']] == [('load', 'lab_a'), ('load', 'lab_b')]
    assert live_patches(vm) == ['lab_d', 'lab_a', 'lab_b']
    assert note_blob(vm, 'lab_d') == foreign_note and enabling_count(vm, 'lab_d') == enabled_before['lab_d'] + 1

    # another foreign patch on top of ours: reaching [lab_d, lab_e, lab_a, lab_b, lab_c] would pop it
    raw_insmod(vm, 'lab_e')
    before = kernel_state(vm)
    popping, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b', 'lab_c'], foreign='keep'))
    assert_refused(popping, 'foreign_patch', 'lab_e')
    assert re.search(r'lab_e \(position 4\b', popping['msg']), popping['msg']
    assert kernel_state(vm) == before

    # a replace patch would retire them when its transition completes
    retiring, _wall = run_module(vm, 'livepatch_stack', stack(
        vm, [dict(patch(vm, 'lab_replace'), replace=True)], foreign='keep'))
    assert_refused(retiring, 'foreign_patch', 'lab_replace')
    assert kernel_state(vm) == before
    assert {name: enabling_count(vm, name) - count for name, count in enabled_before.items()} == {'lab_d': 1, 'lab_e': 1}
