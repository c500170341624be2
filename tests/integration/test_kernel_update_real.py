# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A kernel update for real (issue 11): the role stages the stack of an installed kernel, the
guest reboots into it, and that kernel comes up with its stack live, with no playbook in between.

One guest boots the selected lab kernel (``--lab-kernels``); the next lab kernel
(bookworm -> trixie -> sid -> bookworm) is installed in it (``VM.install_modules``), the role
runs with a stack for each release, and ``VM.reboot(kernel=...)`` boots the same disk with the
other kernel. The kernel's state is read with plain shell, the build IDs with pyelftools on the
controller, never with the collection's own readers.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
import time

import pytest
from elftools.elf.elffile import ELFFile

from drive import ansible_bin, collection_tree, inventory, live_patches, loop_until, sh

import klab

NEXT = {'bookworm': 'trixie', 'trixie': 'sid', 'sid': 'bookworm'}
ROLE_DIR = '/var/lib/kernelops-livepatch'
GONE = '0.0.0-kernelops-removed'


def selected(config):
    raw = config.getoption('--lab-kernels') or os.environ.get('KERNELOPS_LAB_KERNELS') or ','.join(klab.KERNELS)
    return [name.strip() for name in raw.split(',') if name.strip()]


def build_id(path):
    """The GNU build ID of a .ko, read with pyelftools (an independent ELF reader)."""
    with open(path, 'rb') as handle:
        section = ELFFile(handle).get_section_by_name('.note.gnu.build-id')
        return next(note['n_desc'] for note in section.iter_notes() if note['n_type'] == 'NT_GNU_BUILD_ID')


def patch_entry(lab, kernel, name):
    path = os.path.join(str(lab.cache), 'patches', kernel, name + '.ko')
    with open(path, 'rb') as handle:
        return {'src': path, 'sha256': hashlib.sha256(handle.read()).hexdigest()}


def run_role(vm, stacks, check=False):
    """ansible-playbook with the role on the guest; returns (the role's facts, seconds)."""
    with tempfile.TemporaryDirectory(prefix='klp-update-') as directory:
        out = os.path.join(directory, 'facts.json')
        facts = ['livepatch_stack_status', 'livepatch_stack_rule', 'livepatch_stack_message', 'livepatch_stack_after',
                 'livepatch_stack_staged', 'livepatch_stack_boot_restore']
        play = [{'hosts': 'all', 'gather_facts': False, 'become': True, 'tasks': [
            {'ansible.builtin.include_role': {'name': 'kernelops.livepatch.livepatch_stack'},
             'vars': {'livepatch_stack_stacks': stacks, 'livepatch_stack_fail_host': False}},
            {'ansible.builtin.copy': {'content': '{{ %s | to_json }}' % ('{' + ', '.join(
                "'%s': %s" % (fact, fact) for fact in facts) + '}'), 'dest': out, 'mode': '0600'},
             'delegate_to': 'localhost', 'become': False, 'check_mode': False}]}]
        with open(os.path.join(directory, 'play.yml'), 'w') as handle:
            json.dump(play, handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_tree(), ANSIBLE_HOST_KEY_CHECKING='False',
                   ANSIBLE_PIPELINING='True', ANSIBLE_NOCOLOR='1')
        argv = [ansible_bin('ansible-playbook'), '-i', inventory(vm, directory), 'play.yml'] + (['--check'] if check else [])
        start = time.monotonic()
        done = subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True, check=False, timeout=1200)
        took = time.monotonic() - start
        assert done.returncode == 0 and os.path.exists(out), done.stdout[-4000:] + done.stderr[-2000:]
        with open(out) as handle:
            return json.load(handle), took


def sysfs_build(vm, name):
    """The build ID of a loaded module as the kernel shows it (desc of its note, after the 16-byte header)."""
    return ''.join(sh(vm, 'od -An -v -tx1 -j16 /sys/module/%s/notes/.note.gnu.build-id' % name).split())


@pytest.mark.parametrize('kernel', klab.KERNELS)
def test_staged_stack_is_live_after_booting_the_updated_kernel(request, lab, kernel):
    if kernel not in selected(request.config):
        pytest.skip('kernel %s not selected' % kernel)
    other = NEXT[kernel]
    lab.build([kernel, other])  # cached: the other kernel and its lab patches
    with lab.boot(kernel) as vm:
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

        planned, took_check = run_role(vm, stacks, check=True)
        assert planned['livepatch_stack_status'] == 'planned', planned
        assert planned['livepatch_stack_staged'] == [
            {'release': installed, 'stack': ['lab_a', 'lab_b'], 'status': 'staged'},
            {'release': GONE, 'stack': ['lab_x'], 'status': 'removed'}]
        assert sh(vm, 'ls %s' % ROLE_DIR).split() == [GONE]  # check mode changed nothing

        done, took_run = run_role(vm, stacks)
        assert done['livepatch_stack_status'] == 'converged', done
        assert done['livepatch_stack_after'] == ['lab_a'] and live_patches(vm) == ['lab_a']
        assert done['livepatch_stack_staged'] == planned['livepatch_stack_staged']
        assert sorted(sh(vm, 'ls %s' % ROLE_DIR).split()) == sorted([running, installed])
        record = json.loads(sh(vm, 'cat %s/%s/stack.json' % (ROLE_DIR, installed)))
        assert record['kernel_release'] == installed
        assert [entry['name'] for entry in record['stack']] == ['lab_a', 'lab_b']
        assert [entry['build_id'] for entry in record['stack']] == [
            build_id(patch_entry(lab, other, name)['src']) for name in ('lab_a', 'lab_b')]
        modes = sh(vm, 'stat -c "%%U %%a" %s' % ' '.join(entry['path'] for entry in record['stack'])).split('\n')
        assert [line for line in modes if line] == ['root 644', 'root 644']

        again, took_again = run_role(vm, stacks)
        assert again['livepatch_stack_status'] == 'unchanged', again
        assert again['livepatch_stack_staged'] == [{'release': installed, 'stack': ['lab_a', 'lab_b'],
                                                    'status': 'unchanged'}]

        start = time.monotonic()
        vm.reboot(kernel=other)
        took_reboot = time.monotonic() - start
        assert vm.release == installed == sh(vm, 'uname -r').strip()
        loop_until(vm, 'test "$(cat /sys/kernel/livepatch/lab_b/enabled 2>/dev/null)" = 1', 'lab_b restored at boot',
                   timeout_ms=120000)
        assert live_patches(vm) == ['lab_a', 'lab_b']
        assert [sysfs_build(vm, name) for name in ('lab_a', 'lab_b')] == [entry['build_id'] for entry in record['stack']]
        assert {'lab_a', 'lab_b'} <= vm.live_effects()
        print('\nkernel update %s %s -> %s %s: check %.1f s, run %.1f s, re-run %.1f s, reboot into %s %.1f s'
              % (kernel, running, other, installed, took_check, took_run, took_again, other, took_reboot))
