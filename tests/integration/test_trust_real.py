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
Each also runs on the kernel model with the same calls and the same ``.ko`` files
(``drive.on_kernel_and_model``): both must report the same steps, errors and stack, build IDs
included. What only the guest can show (build-ID notes in sysfs, the kernel's log) is checked
on the guest alone.
"""

from __future__ import annotations

import os
import re
import shlex
import time

import pytest

from drive import (LIVE_SCRIPT, live_names, livepatch_modules, on_kernel_and_model, patch, reads, reboot_pending, reset, sh,
                   stack)

TRUST_DIR = '/root/klp-trust'   # root-owned, 0755, below /root (0700): a directory the collection must accept
NOTE = 'notes/.note.gnu.build-id'


def trust_dir(target, then=''):
    """The root-owned 0755 directory every scenario's files go in (empty), then the shell ``then``
    (the scenario's files), in one command."""
    target.shell('rm -rf {g}%s && install -d -m 0755 -o root -g root {g}%s' % (TRUST_DIR, TRUST_DIR)
                 + (' && ' + then if then else ''))


@pytest.fixture
def vm(lab_vm):
    reset(lab_vm, 'rm -rf /run/kernelops-livepatch')
    start = time.monotonic()
    yield lab_vm
    print('%s: %.1f s' % (lab_vm.kernel, time.monotonic() - start))


def note_blob(vm, name):
    """The bytes of the live module's build-ID note as the kernel shows them (hex)."""
    return sh(vm, 'od -An -v -tx1 /sys/module/%s/%s | tr -d " \\n"' % (name, NOTE)).strip()


# "name hex" of the build-ID note of every patch with a sysfs directory (``note_blob`` of each)
NOTES_SCRIPT = r'''
cd /sys/kernel/livepatch || exit 0
for p in *; do [ -d "$p" ] || continue; echo "$p $(od -An -v -tx1 /sys/module/$p/%s | tr -d ' \n')"; done
''' % NOTE


def build_id_of_note(blob):
    """The build ID inside an ELF note (little endian: namesz, descsz, type, name padded to 4, desc)."""
    raw = bytes.fromhex(blob)
    namesz, descsz = int.from_bytes(raw[0:4], 'little'), int.from_bytes(raw[4:8], 'little')
    start = 12 + (namesz + 3) // 4 * 4
    return raw[start:start + descsz].hex()


def kernel_state(target):
    """[(name, build ID)] of the enabled patches, bottom first, and the livepatch modules loaded
    (enabled or not): what "the kernel is unchanged" compares. On the guest the build IDs are
    the kernel's own notes, on the model what it loaded."""
    if target.is_model:
        return target.model.live_builds(), target.loaded()
    vm = target.vm
    got = reads(vm, live=LIVE_SCRIPT, notes=NOTES_SCRIPT, modules='cat /proc/modules')  # one snapshot, one command
    notes = dict(line.partition(' ')[::2] for line in got['notes'].splitlines() if line)
    live = live_names(got['live'])
    for name in live:
        assert notes.get(name), '%s: no build-ID note read for the live patch %s: %r' % (vm.kernel, name, got['notes'])
    return [(name, build_id_of_note(notes[name])) for name in live], livepatch_modules(got['modules'])


def file_bytes(target, *paths):
    """The bytes of each file in the guest (hex over ssh, so no text decoding touches them; one
    command) or the model's mirror: one bytes object for one path, else a list."""
    if target.is_model:
        found = []
        for path in paths:
            with open(target.prefix + path, 'rb') as handle:
                found.append(handle.read())
    else:
        got = reads(target.vm, dict(('file%d' % number, 'od -An -v -tx1 %s | tr -d " \\n"' % shlex.quote(path))
                                    for number, path in enumerate(paths)))
        found = [bytes.fromhex(got['file%d' % number].strip()) for number in range(len(paths))]
    return found[0] if len(paths) == 1 else found


def enabling_count(target, name):
    """How often the kernel logged enabling ``name`` (since boot on the guest; the model's log)."""
    return enabling_counts(target, name)[name]


def enabling_counts(target, *names):
    """``enabling_count`` of each name, read in one command: name -> count."""
    if target.is_model:
        return dict((name, sum("enabling patch '%s'" % name in line for line in target.model.kmsg)) for name in names)
    got = reads(target.vm, dict((name, "dmesg | grep -c \"livepatch: enabling patch '%s'\" || true" % name)
                                for name in names))
    return dict((name, int(got[name].strip() or 0)) for name in names)


def assert_refused(result, rule, *names):
    assert result.get('failed'), result
    assert result.get('rule') == rule, result
    assert result.get('changed') is False, result
    for name in names:
        assert name in result['msg'], result['msg']


# -- a. the file is swapped while the stack is popped: the verified build is the one loaded --

SWAPPER = r"""
set -u
i=0
until [ "$(cat /sys/kernel/livepatch/lab_block/transition 2>/dev/null)" = 1 ]; do
  i=$((i + 1)); [ $i -lt 30000 ] || { echo timeout > {dir}/swap.status; exit 1; }; sleep 0.01
done
mv -f {dir}/.lab_a.v2 {dir}/lab_a.ko
if grep -q '^lab_a ' /proc/modules; then echo late; else echo swapped; fi > {dir}/swap.status
sleep 0.5
echo 0 > /sys/module/lab_busy/parameters/block
"""


def start_swapper(target, src):
    """When lab_block's transition starts (lab_a popped, not loaded again yet): replace lab_a.ko by
    the v2 build, then let lab_busy's kthread go. In the guest a watcher script does it; in the
    model the same acts run on the model's 'start' event of lab_block."""
    if not target.is_model:
        sh(target.vm, 'setsid -f sh -c %s </dev/null >/dev/null 2>&1' % shlex.quote(SWAPPER.replace('{dir}', src)))
        return

    def swap(model):
        os.replace(target.prefix + src + '/.lab_a.v2', target.prefix + src + '/lab_a.ko')
        with open(target.prefix + src + '/swap.status', 'w') as handle:
            handle.write('late\n' if model._module('lab_a') else 'swapped\n')  # pylint: disable=protected-access
        model.blocked = False
        model.finish_transition()
    target.model.on_event(swap, 'start', 'lab_block', True)


def swapped_during_the_pops(t):
    src = '%s/swap' % TRUST_DIR
    trust_dir(t, 'install -d -m 0755 {g}%s && cp {g}{p}/lab_a.ko {g}{d}/lab_a.ko && cp {g}{p}/v2/lab_a.ko {g}{d}/.lab_a.v2'
              .replace('{p}', t.patch_dir).replace('{d}', src) % src)
    v1_bytes, v2_bytes = file_bytes(t, src + '/lab_a.ko', src + '/.lab_a.v2')
    first = t.run('livepatch_stack', stack(t, [{'path': src + '/lab_a.ko'}, 'lab_b']))
    assert not first.get('failed'), first
    v1_build = dict(kernel_state(t)[0])['lab_a']
    if not t.is_model:
        v1_note = bytes.fromhex(note_blob(t.vm, 'lab_a'))
        assert v1_note in v1_bytes and v1_note not in v2_bytes

    t.block()
    start_swapper(t, src)
    result = t.run('livepatch_stack', stack(t, ['lab_block', {'path': src + '/lab_a.ko'}, 'lab_b'], timeout=120))
    status = t.shell('cat {g}%s/swap.status 2>/dev/null || echo none' % src).strip()
    assert status == 'swapped', 'the file was not swapped between the checks and the load of lab_a: %s' % status
    assert file_bytes(t, src + '/lab_a.ko') == v2_bytes

    live = kernel_state(t)[0]
    where = ' (model)' if t.is_model else ''
    print('%s%s: failed=%s msg=%r; live %s' % (t.kernel, where, result.get('failed'), result.get('msg'), live))
    # whatever the outcome, the result never says "as before" about another build
    if 'as before' in (result.get('msg') or ''):
        assert [name for name, _build in live] == ['lab_a', 'lab_b'] and dict(live)['lab_a'] == v1_build
    # the build verified at the start is the one live, never the file's new content
    assert not result.get('failed'), result
    assert [name for name, _build in live] == ['lab_block', 'lab_a', 'lab_b'], live
    assert dict(live)['lab_a'] == v1_build, 'lab_a is live with another build than the one verified'
    if not t.is_model:
        shown = t.vm.live_effects()
        assert 'lab_a_v2' not in shown and 'lab_a' in shown, shown
    # ... and the result says exactly what is live (names and build IDs)
    reported = [(entry['name'], entry.get('build_id')) for entry in result['stack']]
    assert reported == live, reported
    return [first, result]


def test_file_swapped_during_the_pops_is_not_what_gets_loaded(lab, vm):
    """docs/developer.md §10.2: a module is loaded from the bytes that were checked, not by path again.

    Live [lab_a, lab_b]; desired [lab_block, lab_a, lab_b], so lab_a is popped and pushed again.
    lab_block patches lab_busy_sleep(), where lab_busy's kthread sleeps while block=1: its
    transition waits until lab_a.ko has been replaced by the v2 build (same module name, other
    build ID) and then block is cleared. So the file changes after every check and before lab_a
    is loaded again. On the guest a watcher script swaps the file; the model swaps it at the
    start of lab_block's transition (its own event), which is the same moment.
    """
    on_kernel_and_model(lab, vm, swapped_during_the_pops)


# -- b, c. patches this collection did not load (docs/developer.md §10.4) ------------------------

def foreign_refuse(t):
    ours = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b']))
    assert not ours.get('failed'), ours
    enabled_before = enabling_count(t, 'lab_d')  # earlier tests on this VM may have loaded it too
    t.insmod('lab_d')  # another tool's patch, on top: position 3 from the bottom
    before = kernel_state(t)
    assert [name for name, _note in before[0]] == ['lab_a', 'lab_b', 'lab_d']

    refused = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c'], foreign='refuse'))
    assert_refused(refused, 'foreign_patch', 'lab_d')
    assert 'lab_d' in refused['patches'] and 'lab_a' not in refused['patches'], refused
    assert re.search(r'lab_d \(position 3\b', refused['msg']), refused['msg']
    assert kernel_state(t) == before

    # refuse is the default: the same run without the option is refused the same way
    default = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c']))
    assert_refused(default, 'foreign_patch', 'lab_d')
    assert kernel_state(t) == before
    assert enabling_count(t, 'lab_d') == enabled_before + 1
    return [ours, refused, default]


def test_foreign_refuse_names_the_patch_and_its_position_and_changes_nothing(lab, vm):
    on_kernel_and_model(lab, vm, foreign_refuse)


def foreign_keep(t):
    enabled_before = enabling_counts(t, 'lab_d', 'lab_e')
    t.insmod('lab_d')  # another tool's patch at the bottom
    foreign_build = kernel_state(t)[0][0]
    kept = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b'], foreign='keep'))
    assert not kept.get('failed') and kept['changed'] is True, kept
    assert [(s['action'], s['patch']) for s in kept['steps']] == [('load', 'lab_a'), ('load', 'lab_b')]
    live = kernel_state(t)[0]
    assert [name for name, _build in live] == ['lab_d', 'lab_a', 'lab_b']
    assert live[0] == foreign_build and enabling_count(t, 'lab_d') == enabled_before['lab_d'] + 1

    # another foreign patch on top of ours: reaching [lab_d, lab_e, lab_a, lab_b, lab_c] would pop it
    t.insmod('lab_e')
    before = kernel_state(t)
    popping = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b', 'lab_c'], foreign='keep'))
    assert_refused(popping, 'foreign_patch', 'lab_e')
    assert re.search(r'lab_e \(position 4\b', popping['msg']), popping['msg']
    assert kernel_state(t) == before

    # a replace patch would retire them when its transition completes
    retiring = t.run('livepatch_stack', stack(t, [dict(patch(t, 'lab_replace'), replace=True)], foreign='keep'))
    assert_refused(retiring, 'foreign_patch', 'lab_replace')
    assert kernel_state(t) == before
    enabled = enabling_counts(t, *enabled_before)
    assert {name: enabled[name] - count for name, count in enabled_before.items()} == {'lab_d': 1, 'lab_e': 1}
    return [kept, popping, retiring]


def test_foreign_keep_converges_above_it_and_refuses_to_pop_it(lab, vm):
    on_kernel_and_model(lab, vm, foreign_keep)


# -- d. files anyone but root could have written (docs/developer.md §10.1) ---------------------

UNSAFE = {
    # case: shell that puts lab_b.ko at DIR/lab_b.ko ({g}: the guest's root, or the model's mirror)
    'owned by nobody': 'install -d -m 0755 {g}{d} && cp {g}{p}/lab_b.ko {g}{d}/ && chown nobody {g}{d}/lab_b.ko',
    'mode 0666': 'install -d -m 0755 {g}{d} && cp {g}{p}/lab_b.ko {g}{d}/ && chmod 0666 {g}{d}/lab_b.ko',
    'group-writable': 'install -d -m 0755 {g}{d} && cp {g}{p}/lab_b.ko {g}{d}/ && chmod 0664 {g}{d}/lab_b.ko',
    'in a 1777 directory': 'install -d -m 1777 {g}{d} && cp {g}{p}/lab_b.ko {g}{d}/ && chmod 0644 {g}{d}/lab_b.ko',
    'in a directory owned by nobody': 'install -d -m 0755 -o nobody {g}{d} && cp {g}{p}/lab_b.ko {g}{d}/',
}


def unsafe_files(t):
    # every case's file, the FIFO and the accepted file below are made first, in one command: each
    # run names only its own path
    cases = sorted(UNSAFE.items())
    trust_dir(t, ' && '.join(
        [script.replace('{d}', '%s/case%d' % (TRUST_DIR, number)).replace('{p}', t.patch_dir)
         for number, (_case, script) in enumerate(cases)]
        + ['install -d -m 0755 {g}%s/fifo && mkfifo -m 0600 {g}%s/fifo/lab_b.ko' % (TRUST_DIR, TRUST_DIR),
           'install -d -m 0755 {g}%s/ok && cp {g}%s/lab_b.ko {g}%s/ok/ && chmod 0644 {g}%s/ok/lab_b.ko' % (
               TRUST_DIR, t.patch_dir, TRUST_DIR, TRUST_DIR)]))
    results = [t.run('livepatch_stack', stack(t, ['lab_a']))]
    before = kernel_state(t)
    for number, (case, _script) in enumerate(cases):
        where = '%s/case%d' % (TRUST_DIR, number)
        result = t.run('livepatch_stack', stack(t, ['lab_a', {'path': where + '/lab_b.ko'}]))
        assert result.get('rule') == 'unsafe_path', (case, result)
        assert_refused(result, 'unsafe_path')
        assert kernel_state(t) == before, case
        results.append(result)

    # a FIFO never hangs the module: refused (the ansible run is bounded by run_module's timeout)
    fifo = t.run('livepatch_stack', stack(t, ['lab_a', {'path': TRUST_DIR + '/fifo/lab_b.ko'}]), timeout=180)
    assert_refused(fifo, 'not_regular_file')
    assert kernel_state(t) == before

    # the same file, root-owned 0644 in a root-owned 0755 directory, is accepted: the refusals
    # above were about who could write it, nothing else
    accepted = t.run('livepatch_stack', stack(t, ['lab_a', {'path': TRUST_DIR + '/ok/lab_b.ko'}]))
    assert not accepted.get('failed'), accepted
    assert t.live() == ['lab_a', 'lab_b']
    return results + [fifo, accepted]


def test_unsafe_files_are_refused_with_nothing_changed(lab, vm):
    """The model's mirror gets the same files, owners and modes from the same scripts (run here as root)."""
    on_kernel_and_model(lab, vm, unsafe_files)


# -- e. module signatures enforced by the kernel (docs/developer.md §10.3) -----------------------

def unsigned_under_sig_enforce(t):
    """Runs once the target enforces signatures (the guest rebooted, the model told)."""
    if t.is_model:
        raw = t.model.insmod('%s%s/lab_a.ko' % (t.prefix, t.patch_dir))[0]
        live = t.live()
    else:
        # the kernel log's lines since just before the insmod, the insmod's own words and status, and
        # the stack after: one command
        got = reads(t.vm, insmod='m=$(dmesg | wc -l); insmod %s/lab_a.ko 2>&1; echo "@@exit $?"; '
                                 'dmesg | tail -n +$((m + 1))' % t.patch_dir, live=LIVE_SCRIPT)
        said, _sep, rest = got['insmod'].partition('@@exit ')
        raw, _nl, kernel_said = rest.partition('\n')
        raw = int(raw)
        print('%s: raw insmod exit %d: %s | dmesg: %s' % (t.kernel, raw, said.strip(), kernel_said.strip()))
        live = live_names(got['live'])
    assert raw != 0 and live == []

    mark = int(sh(t.vm, 'dmesg | wc -l').strip()) if not t.is_model else len(t.model.kmsg)
    result = t.run('livepatch_stack', stack(t, ['lab_a', 'lab_b']))
    assert_refused(result, 'unsigned_module', 'lab_a', 'sig_enforce')
    assert t.state() == ([], [])
    # refused before any load was tried: the kernel logged no rejection during the run
    said = sh(t.vm, 'dmesg | tail -n +%d' % (mark + 1)) if not t.is_model else '\n'.join(t.model.kmsg[mark:])
    assert 'rejected' not in said, 'a load was tried'
    return [result]


@pytest.mark.lab_order(-2)
def test_unsigned_patch_is_refused_when_the_kernel_enforces_signatures(lab, vm):
    """Turn on ``module.sig_enforce`` (one way only: the parameter is ``bool_enable_only``,
    kernel/module/signing.c); a reboot without it is the only way back.

    The switch is the running kernel's own parameter file (``echo 1 >``), the same variable
    ``module.sig_enforce=1`` on the command line sets; a kernel whose file refuses the write
    gets the word on the command line instead (a restart). The test runs first on its guest
    (``lab_order``), and the lab self-test's reboot right after it (test_lab_selftest.py, which
    asserts ``sig_enforce`` is ``N`` after it) is the reboot back: no reboot of its own.

    The model is a kernel booted with the same parameter (``sig_enforce``): it renders the
    parameter the modules read and rejects an unsigned module with EKEYREJECTED, as
    kernel/module/signing.c does.
    """
    modes = dict(sig='cat /sys/module/module/parameters/sig_enforce', lockdown='cat /sys/kernel/security/lockdown')
    got = reads(vm, modes)
    default_sig, default_lockdown = got['sig'].strip(), got['lockdown'].strip()
    assert default_sig == 'N'
    try:
        switched = vm.ssh('echo 1 > /sys/module/module/parameters/sig_enforce', check=False)
        how = 'echo 1 > sig_enforce'
        if switched.returncode != 0:
            how = 'module.sig_enforce=1 on the command line (the write said: %s)' % switched.stderr.strip()
            vm.reboot(append='module.sig_enforce=1')
            assert sh(vm, 'cat /proc/cmdline').split()[-1] == 'module.sig_enforce=1'
        got = reads(vm, modes)
        sig, lockdown = got['sig'].strip(), got['lockdown'].strip()
        print('%s %s: %s: sig_enforce %r -> %r, lockdown %r -> %r' % (
            vm.kernel, vm.release, how, default_sig, sig, default_lockdown, lockdown))
        assert sig == 'Y'

        def enforcing(t):
            if t.is_model:
                t.model.sig_enforce = True
                t.model.render()
            return unsigned_under_sig_enforce(t)
        on_kernel_and_model(lab, vm, enforcing)
    finally:
        reboot_pending(vm, 'module.sig_enforce is on')
