# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A kernel update for real (issue 11): the role stages the stack of an installed kernel, the
guest reboots into it, and that kernel comes up with its stack live, with no playbook in between.

The test runs on the session's guest of the selected kernel (``lab_vm``), after every other test
of that kernel (``lab_last``: it leaves the guest on another kernel). The next lab kernel
(bookworm -> trixie -> sid -> bookworm) is installed in it (``VM.install_modules``), the role
runs with a stack for each release, and ``VM.reboot(kernel=...)`` boots the same disk with the
other kernel. The kernel's state is read with plain shell, the build IDs with pyelftools on the
controller, never with the collection's own readers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
from elftools.elf.elffile import ELFFile

from drive import LIVE_SCRIPT, live_names, reads, reset, run_role, sh, steps, wait_script

NEXT = {'bookworm': 'trixie', 'trixie': 'sid', 'sid': 'bookworm'}
ROLE_DIR = '/var/lib/kernelops-livepatch'
GONE = '0.0.0-kernelops-removed'


def build_id(path):
    """The GNU build ID of a .ko, read with pyelftools (an independent ELF reader)."""
    with open(path, 'rb') as handle:
        section = ELFFile(handle).get_section_by_name('.note.gnu.build-id')
        return next(note['n_desc'] for note in section.iter_notes() if note['n_type'] == 'NT_GNU_BUILD_ID')


def patch_entry(lab, kernel, name):
    path = os.path.join(str(lab.cache), 'patches', kernel, name + '.ko')
    with open(path, 'rb') as handle:
        return {'src': path, 'sha256': hashlib.sha256(handle.read()).hexdigest()}


def sysfs_build_script(name):
    """Shell printing the build ID of a loaded module as the kernel shows it (desc of its note,
    after the 16-byte header), as hex with blanks."""
    return 'od -An -v -tx1 -j16 /sys/module/%s/notes/.note.gnu.build-id' % name


@pytest.mark.lab_last
def test_staged_stack_is_live_after_booting_the_updated_kernel(lab, lab_vm):
    vm, kernel = lab_vm, lab_vm.kernel
    other = NEXT[kernel]
    lab.build([kernel, other])  # cached: the other kernel and its lab patches
    # What earlier tests of this guest left: an empty stack, and no record of the role's
    # (the boot-restore unit the restore tests installed may stay: the role keeps it as it is).
    reset(vm, 'rm -rf %s' % ROLE_DIR)
    running = vm.release
    installed = vm.install_modules(other)
    assert installed == lab.release(other) and installed != running
    # A directory the role staged for a kernel since removed: the role removes it.
    sh(vm, 'mkdir -p %s/%s && echo \'{"schema": 2, "kernel_release": "%s", "stack": [{"name": "lab_x", '
           '"path": null, "build_id": null, "replace": false}]}\' > %s/%s/stack.json'
           % (ROLE_DIR, GONE, GONE, ROLE_DIR, GONE))
    stacks = [{'release': running, 'patches': [patch_entry(lab, kernel, 'lab_a')]},
              {'release': installed, 'patches': [patch_entry(lab, other, 'lab_a'), patch_entry(lab, other, 'lab_b')]},
              {'release': '0.0.0-kernelops-not-installed', 'patches': [patch_entry(lab, other, 'lab_c')]}]

    planned, _recap, took_check = run_role(vm, {'livepatch_stack_stacks': stacks}, check=True)
    assert planned['livepatch_stack_status'] == 'planned', planned
    assert planned['livepatch_stack_staged'] == [
        {'release': installed, 'stack': ['lab_a', 'lab_b'], 'status': 'staged'},
        {'release': GONE, 'stack': ['lab_x'], 'status': 'removed'}]
    assert sh(vm, 'ls %s' % ROLE_DIR).split() == [GONE]  # check mode changed nothing

    done, _recap, took_run = run_role(vm, {'livepatch_stack_stacks': stacks})
    assert done['livepatch_stack_status'] == 'converged', done
    got = reads(vm, live=LIVE_SCRIPT, staged='ls %s' % ROLE_DIR, record='cat %s/%s/stack.json' % (ROLE_DIR, installed))
    assert done['livepatch_stack_after'] == ['lab_a'] and live_names(got['live']) == ['lab_a']
    assert done['livepatch_stack_staged'] == planned['livepatch_stack_staged']
    assert sorted(got['staged'].split()) == sorted([running, installed])
    record = json.loads(got['record'])
    assert record['kernel_release'] == installed
    assert [entry['name'] for entry in record['stack']] == ['lab_a', 'lab_b']
    assert [entry['build_id'] for entry in record['stack']] == [
        build_id(patch_entry(lab, other, name)['src']) for name in ('lab_a', 'lab_b')]
    modes = sh(vm, 'stat -c "%%U %%a" %s' % ' '.join(entry['path'] for entry in record['stack'])).split('\n')
    assert [line for line in modes if line] == ['root 644', 'root 644']

    again, recap, took_again = run_role(vm, {'livepatch_stack_stacks': stacks})
    assert again['livepatch_stack_status'] == 'unchanged', again
    assert again['livepatch_stack_staged'] == [{'release': installed, 'stack': ['lab_a', 'lab_b'],
                                                'status': 'unchanged'}]
    # a no-op run of the role changes nothing at all (files, records, unit): the recap says so
    assert 'changed=0' in recap and 'failed=0' in recap, recap

    start = time.monotonic()
    vm.reboot(kernel=other, append='')  # no words a test before left (kernelops.livepatch=0 would skip)
    took_reboot = time.monotonic() - start
    # the wait for the restore, then the release, the stack and the builds live in one command
    steps(vm, [('lab_b restored at boot not observed within 120000 ms',
                wait_script('test "$(cat /sys/kernel/livepatch/lab_b/enabled 2>/dev/null)" = 1', 120000))],
          timeout=180)
    got = reads(vm, release='uname -r', live=LIVE_SCRIPT, lab_a=sysfs_build_script('lab_a'),
                lab_b=sysfs_build_script('lab_b'))
    assert vm.release == installed == got['release'].strip()
    assert live_names(got['live']) == ['lab_a', 'lab_b']
    assert [''.join(got[name].split()) for name in ('lab_a', 'lab_b')] == [entry['build_id'] for entry in record['stack']]
    assert {'lab_a', 'lab_b'} <= vm.live_effects()
    print('\nkernel update %s %s -> %s %s: check %.1f s, run %.1f s, re-run %.1f s, reboot into %s %.1f s'
          % (kernel, running, other, installed, took_check, took_run, took_again, other, took_reboot))
