# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the collection's modules against a lab guest with the real ``ansible`` command, and read
the guest's state with plain shell (never with our own code, so the two can disagree).

Helpers are named like the kernel selftests' functions.sh and wait on the kernel's observable
state, polling every 10 ms in the guest.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from collection_tree import collection_tree, importable  # noqa: E402  pylint: disable=wrong-import-position

if not importable():
    sys.path.insert(0, collection_tree())

SYSFS = '/sys/kernel/livepatch'


def ansible_bin(name):
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


def inventory(vm, directory):
    path = os.path.join(directory, 'inventory.json')
    with open(path, 'w') as handle:
        json.dump({'all': {'hosts': {'lab': dict(vm.ansible_vars)}}}, handle)
    return path


def run_module(vm, module, args=None, check=False, diff=False, timeout=600, env=None):
    """Run ``kernelops.livepatch.<module>`` on the guest; return (result dict, wall seconds).

    ``env``: more environment for ``ansible`` (the benchmark keeps the AnsiballZ file with it)."""
    with tempfile.TemporaryDirectory(prefix='klp-run-') as directory:
        tree = os.path.join(directory, 'tree')
        env_extra, env = env, dict(os.environ)
        env.update({
            'ANSIBLE_COLLECTIONS_PATH': collection_tree(),
            'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
            'ANSIBLE_CALLBACKS_ENABLED': 'ansible.builtin.tree',
            'ANSIBLE_CALLBACK_TREE_DIR': tree,
            'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.minimal',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_PIPELINING': 'True',
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        })
        env.update(env_extra or {})
        argv = [ansible_bin('ansible'), 'lab', '-i', inventory(vm, directory), '-m', 'kernelops.livepatch.' + module]
        if args:
            argv += ['-a', json.dumps(args)]
        if check:
            argv.append('--check')
        if diff:
            argv.append('--diff')
        vm.check_not_crashed()
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    # A crashed guest hangs (panic=0): fail now, with the kernel's own words.
                    if vm.panic_message() or time.monotonic() - start > timeout:
                        proc.kill()
                        proc.communicate()
                        vm.check_not_crashed()
                        raise AssertionError('ansible %s did not finish within %d s' % (module, timeout))
        finally:
            if proc.poll() is None:
                proc.kill()
        wall = time.monotonic() - start
        result_file = os.path.join(tree, 'lab')
        if not os.path.exists(result_file):
            raise AssertionError('ansible produced no result (rc %d):\n%s\n%s' % (proc.returncode, stdout, stderr))
        with open(result_file) as handle:
            result = json.load(handle)
        # The tree callback keeps the module's keys but not Ansible's own verdict: take it from
        # the exit status (2: a host failed).
        result['failed'] = proc.returncode != 0
        return result, wall


def sh(vm, script, check=True, timeout=180):
    return vm.ssh(script, check=check, timeout=timeout).stdout


def loop_until(vm, condition, what, timeout_ms=20000):
    tries = timeout_ms // 10
    script = 'i=0; until %s; do i=$((i + 1)); if [ $i -ge %d ]; then exit 1; fi; sleep 0.01; done' % (condition, tries)
    proc = vm.ssh(script, check=False, timeout=timeout_ms / 1000 + 60)
    assert proc.returncode == 0, '%s: %s not observed within %d ms' % (vm.kernel, what, timeout_ms)


def live_patches(vm):
    """Names with a sysfs directory and enabled=1, in the kernel's order where it tells
    (stack_order), else as /proc/modules lists them reversed: plain shell, not our reader."""
    script = r'''
cd /sys/kernel/livepatch || exit 0
for p in */; do p=${p%/}; [ -d "$p" ] || continue
  [ "$(cat $p/enabled 2>/dev/null)" = 1 ] || continue
  if [ -r $p/stack_order ]; then echo "$(cat $p/stack_order) $p"
  else echo "$(tac /proc/modules | grep -n "^$p " | cut -d: -f1) $p"; fi
done | sort -n | cut -d' ' -f2
'''
    return [line for line in sh(vm, script).split() if line]


def loaded_livepatch_modules(vm):
    """Loaded modules carrying the livepatch taint K, from /proc/modules."""
    return sorted(line.split()[0] for line in sh(vm, 'cat /proc/modules').splitlines()
                  if line.rstrip().endswith(')') and 'K' in line.rsplit('(', 1)[-1])


def reset(vm):
    """Bring the guest back to an empty stack with no test modules, the way an operator would:
    wait for transitions, disable top-down, rmmod, unblock the busy target."""
    script = r'''
set -u
pkill -f 'flock -o /run/kernelops-livepatch.loc[k]' || true
echo 0 > /sys/module/lab_busy/parameters/block 2>/dev/null || true
idle() { ! grep -qs 1 /sys/kernel/livepatch/*/transition; }
i=0; until idle; do i=$((i+1)); [ $i -lt 3000 ] || exit 3; sleep 0.01; done
for p in $(ls -1 /sys/kernel/livepatch 2>/dev/null | tac); do
  [ "$(cat /sys/kernel/livepatch/$p/enabled 2>/dev/null)" = 1 ] && echo 0 > /sys/kernel/livepatch/$p/enabled
  i=0; until idle; do i=$((i+1)); [ $i -lt 3000 ] || exit 4; sleep 0.01; done
done
i=0; while [ -n "$(ls /sys/kernel/livepatch)" ]; do i=$((i+1)); [ $i -lt 3000 ] || exit 5; sleep 0.01; done
for m in $(awk '$NF ~ /K/ {print $1}' /proc/modules) lab_busy lab_target lab_plain; do
  grep -q "^$m " /proc/modules || continue
  i=0; until [ "$(cat /sys/module/$m/refcnt)" = 0 ]; do i=$((i+1)); [ $i -lt 3000 ] || exit 6; sleep 0.01; done
  rmmod $m
done
rm -f /run/kernelops-livepatch/journal.json
'''
    sh(vm, script, timeout=240)
    assert live_patches(vm) == []
    assert loaded_livepatch_modules(vm) == []


def patch(vm, name):
    return {'path': '%s/%s.ko' % (vm.patch_dir, name)}


def dmesg_mark(vm, text):
    sh(vm, 'echo %s > /dev/kmsg' % shlex.quote('klp-test: ' + text))


RECORD_SCRIPT = r'''
import json, os, re
files = {}
def add(path):
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError:
        return
    try:
        files[path.lstrip('/')] = data.decode('ascii')
    except UnicodeDecodeError:
        files[path.lstrip('/')] = {'hex': data.hex()}
for path in ('/proc/sys/kernel/osrelease', '/proc/sys/kernel/tainted', '/proc/modules'):
    add(path)
base = '/sys/kernel/livepatch'
files['sys/kernel/livepatch'] = None
for top, dirs, names in os.walk(base):
    for d in dirs:
        files[os.path.join(top, d).lstrip('/')] = None
    for n in names:
        if n in ('force', 'signal'):
            files[os.path.join(top, n).lstrip('/')] = ''
        else:
            add(os.path.join(top, n))
for line in open('/proc/modules'):
    m = re.search(r'\(([A-Z]+)\)\s*$', line)
    if m and 'K' in m.group(1):
        mod = line.split()[0]
        for leaf in ('refcnt', 'taint', 'srcversion', 'notes/.note.gnu.build-id'):
            add('/sys/module/%s/%s' % (mod, leaf))
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    try:
        tids = os.listdir('/proc/%s/task' % pid)
    except OSError:
        continue
    for tid in tids:
        try:
            state = open('/proc/%s/task/%s/patch_state' % (pid, tid)).read().strip()
        except OSError:
            continue
        if state != '-1':
            for leaf in ('patch_state', 'comm', 'stack'):
                add('/proc/%s/task/%s/%s' % (pid, tid, leaf))
print(json.dumps(files))
'''


def record_tree(vm):
    """The files our observe layer reads, copied from the guest as JSON path → text."""
    return json.loads(sh(vm, 'python3 -c %s' % shlex.quote(RECORD_SCRIPT)))
