# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Issue 10 on real kernels: what is loaded is what was verified, other tools' patches are left
alone, unsafe files and unsigned modules are refused before anything changes.

Every scenario drives ``livepatch_stack`` through the real ``ansible`` command, as a user does,
and reads the kernel with plain shell: which patches are enabled, in which order, and the exact
GNU build-ID note of each (``/sys/module/NAME/notes/.note.gnu.build-id``, the bytes of the
module's own note section: docs/developer.md §9.7). A build is identified by finding those bytes in
one ``.ko`` file and not in the other, never with the collection's ELF reader.

All scenarios of one kernel share its lab VM (``lab_vm``); each starts from an empty stack.
"""

from __future__ import annotations

import re
import shlex
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


def build_id_of_note(blob):
    """The build ID inside an ELF note (little endian: namesz, descsz, type, name padded to 4, desc)."""
    raw = bytes.fromhex(blob)
    namesz, descsz = int.from_bytes(raw[0:4], 'little'), int.from_bytes(raw[4:8], 'little')
    start = 12 + (namesz + 3) // 4 * 4
    return raw[start:start + descsz].hex()


def kernel_state(vm):
    """[(name, build-ID note hex)] of the enabled patches, bottom first, and the livepatch
    modules loaded (enabled or not): what "the kernel is unchanged" compares."""
    return [(name, note_blob(vm, name)) for name in live_patches(vm)], loaded_livepatch_modules(vm)


def guest_file(vm, path):
    """The bytes of a file in the guest (hex over ssh, so no text decoding touches them)."""
    return bytes.fromhex(sh(vm, 'od -An -v -tx1 %s | tr -d " \\n"' % shlex.quote(path)).strip())


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


# -- a. the file is swapped while the stack is popped: the verified build is the one loaded --

SWAPPER = r'''
set -u
i=0
until [ "$(cat /sys/kernel/livepatch/lab_block/transition 2>/dev/null)" = 1 ]; do
  i=$((i + 1)); [ $i -lt 30000 ] || { echo timeout > {dir}/swap.status; exit 1; }; sleep 0.01
done
mv -f {dir}/.lab_a.v2 {dir}/lab_a.ko
if grep -q '^lab_a ' /proc/modules; then echo late; else echo swapped; fi > {dir}/swap.status
sleep 0.5
echo 0 > /sys/module/lab_busy/parameters/block
'''


def test_file_swapped_during_the_pops_is_not_what_gets_loaded(vm):
    """docs/developer.md §10.2: a module is loaded from the bytes that were checked, not by path again.

    Live [lab_a, lab_b]; desired [lab_block, lab_a, lab_b], so lab_a is popped and pushed again.
    lab_block patches lab_busy_sleep(), where lab_busy's kthread sleeps while block=1: its
    transition waits until a watcher in the guest has replaced lab_a.ko by the v2 build (same
    module name, other build ID) and then cleared block. So the file changes after every check
    and before lab_a is loaded again.
    """
    src = '%s/swap' % TRUST_DIR
    sh(vm, 'install -d -m 0755 {d} && cp {p}/lab_a.ko {d}/lab_a.ko && cp {p}/v2/lab_a.ko {d}/.lab_a.v2'.format(
        d=src, p=vm.patch_dir))
    v1_bytes, v2_bytes = guest_file(vm, src + '/lab_a.ko'), guest_file(vm, src + '/.lab_a.v2')
    first, _wall = run_module(vm, 'livepatch_stack', stack(vm, [{'path': src + '/lab_a.ko'}, 'lab_b']))
    assert not first.get('failed'), first
    v1_note = note_blob(vm, 'lab_a')
    assert bytes.fromhex(v1_note) in v1_bytes and bytes.fromhex(v1_note) not in v2_bytes

    sh(vm, 'insmod %s/lab_busy.ko && echo 1 > /sys/module/lab_busy/parameters/block' % vm.patch_dir)
    sh(vm, 'setsid -f sh -c %s </dev/null >/dev/null 2>&1' % shlex.quote(SWAPPER.replace('{dir}', src)))
    result, wall = run_module(vm, 'livepatch_stack', stack(
        vm, ['lab_block', {'path': src + '/lab_a.ko'}, 'lab_b'], timeout=120))
    status = sh(vm, 'cat %s/swap.status 2>/dev/null || echo none' % src).strip()
    assert status == 'swapped', 'the file was not swapped between the checks and the load of lab_a: %s' % status

    live = live_patches(vm)
    notes = dict((name, note_blob(vm, name)) for name in live)
    print('%s: swap run took %.1f s; failed=%s msg=%r; live %s' % (
        vm.kernel, wall, result.get('failed'), result.get('msg'), live))
    # whatever the outcome, the result never says "as before" about another build
    if 'as before' in (result.get('msg') or ''):
        assert live == ['lab_a', 'lab_b'] and notes['lab_a'] == v1_note, (live, result['msg'])
    # the build verified at the start is the one live, never the file's new content
    assert not result.get('failed'), result
    assert live == ['lab_block', 'lab_a', 'lab_b'], live
    assert notes['lab_a'] == v1_note, 'lab_a is live with another build than the one verified'
    assert 'lab_a_v2' not in vm.live_effects() and 'lab_a' in vm.live_effects()
    # ... and the result says exactly what is live (names and build IDs)
    reported = [(entry['name'], entry.get('build_id')) for entry in result['stack']]
    assert reported == [(name, build_id_of_note(notes[name])) for name in live], reported


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


# -- d. files anyone but root could have written (docs/developer.md §10.1) ---------------------

UNSAFE = {
    # case: shell that puts lab_b.ko at DIR/lab_b.ko
    'owned by nobody': 'install -d -m 0755 {d} && cp {p}/lab_b.ko {d}/ && chown nobody {d}/lab_b.ko',
    'mode 0666': 'install -d -m 0755 {d} && cp {p}/lab_b.ko {d}/ && chmod 0666 {d}/lab_b.ko',
    'group-writable': 'install -d -m 0755 {d} && cp {p}/lab_b.ko {d}/ && chmod 0664 {d}/lab_b.ko',
    'in a 1777 directory': 'install -d -m 1777 {d} && cp {p}/lab_b.ko {d}/ && chmod 0644 {d}/lab_b.ko',
    'in a directory owned by nobody': 'install -d -m 0755 -o nobody {d} && cp {p}/lab_b.ko {d}/',
}


def test_unsafe_files_are_refused_with_nothing_changed(vm):
    run_module(vm, 'livepatch_stack', stack(vm, ['lab_a']))
    before = kernel_state(vm)
    for number, (case, script) in enumerate(sorted(UNSAFE.items())):
        where = '%s/case%d' % (TRUST_DIR, number)
        sh(vm, script.format(d=where, p=vm.patch_dir))
        result, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', {'path': where + '/lab_b.ko'}]))
        assert result.get('rule') == 'unsafe_path', (case, result)
        assert_refused(result, 'unsafe_path')
        assert kernel_state(vm) == before, case

    # a FIFO never hangs the module: refused (the ansible run is bounded by run_module's timeout)
    sh(vm, 'install -d -m 0755 {d}/fifo && mkfifo -m 0600 {d}/fifo/lab_b.ko'.format(d=TRUST_DIR))
    fifo, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', {'path': TRUST_DIR + '/fifo/lab_b.ko'}]),
                             timeout=180)
    assert_refused(fifo, 'not_regular_file')
    assert kernel_state(vm) == before

    # the same file, root-owned 0644 in a root-owned 0755 directory, is accepted: the refusals
    # above were about who could write it, nothing else
    sh(vm, 'install -d -m 0755 {d}/ok && cp {p}/lab_b.ko {d}/ok/ && chmod 0644 {d}/ok/lab_b.ko'.format(
        d=TRUST_DIR, p=vm.patch_dir))
    accepted, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', {'path': TRUST_DIR + '/ok/lab_b.ko'}]))
    assert not accepted.get('failed'), accepted
    assert live_patches(vm) == ['lab_a', 'lab_b']


# -- e. module signatures enforced by the kernel (docs/developer.md §10.3) -----------------------

def test_unsigned_patch_is_refused_when_the_kernel_enforces_signatures(vm):
    """Boot with module.sig_enforce=1 (a cold restart of this kernel's VM), then back without."""
    default_sig = sh(vm, 'cat /sys/module/module/parameters/sig_enforce').strip()
    default_lockdown = sh(vm, 'cat /sys/kernel/security/lockdown').strip()
    start = time.monotonic()
    vm.reboot(append='module.sig_enforce=1')
    try:
        print('%s: restart with module.sig_enforce=1 took %.1f s' % (vm.kernel, time.monotonic() - start))
        assert sh(vm, 'cat /proc/cmdline').split()[-1] == 'module.sig_enforce=1'
        sig = sh(vm, 'cat /sys/module/module/parameters/sig_enforce').strip()
        lockdown = sh(vm, 'cat /sys/kernel/security/lockdown').strip()
        print('%s %s: sig_enforce %r -> %r, lockdown %r -> %r' % (
            vm.kernel, vm.release, default_sig, sig, default_lockdown, lockdown))
        assert sig == 'Y'

        # what the kernel itself says to a raw insmod of our unsigned patch (for the docs)
        mark = int(sh(vm, 'dmesg | wc -l').strip())
        raw = vm.ssh('insmod %s/lab_a.ko' % vm.patch_dir, check=False)
        said = sh(vm, 'dmesg | tail -n +%d' % (mark + 1)).strip()
        print('%s: raw insmod exit %d: %s | dmesg: %s' % (vm.kernel, raw.returncode, raw.stderr.strip(), said))
        assert raw.returncode != 0 and live_patches(vm) == []

        mark = int(sh(vm, 'dmesg | wc -l').strip())
        result, _wall = run_module(vm, 'livepatch_stack', stack(vm, ['lab_a', 'lab_b']))
        assert_refused(result, 'unsigned_module', 'lab_a', 'sig_enforce')
        assert live_patches(vm) == [] and loaded_livepatch_modules(vm) == []
        # refused before any load was tried: the kernel logged no rejection during the run
        assert 'rejected' not in sh(vm, 'dmesg | tail -n +%d' % (mark + 1)), 'a load was tried'
    finally:
        start = time.monotonic()
        vm.reboot(append='')
        print('%s: restart without extra words took %.1f s' % (vm.kernel, time.monotonic() - start))
    assert sh(vm, 'cat /sys/module/module/parameters/sig_enforce').strip() == default_sig
