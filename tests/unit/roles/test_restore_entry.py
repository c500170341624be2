# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's entry point, laid out as the role installs it, run by a Python without Ansible.

Issue 11: the boot restore is the collection's module_utils (standard library only) behind a
thin entry point. ``python3 -I -S`` has no site-packages, so an import of ``ansible`` anywhere in
what ``_restore`` imports fails here.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
ENTRY = os.path.join(CHECKOUT, 'roles', 'livepatch_stack', 'files', 'livepatch_restore.py')


def install(script_dir):
    """What tasks/persist.yml puts on the host."""
    target = os.path.join(script_dir, 'ansible_collections', 'kernelops', 'livepatch', 'plugins', 'module_utils')
    os.makedirs(target)
    for path in glob.glob(os.path.join(CHECKOUT, 'plugins', 'module_utils', '*.py')):
        shutil.copy(path, target)
    shutil.copy(ENTRY, script_dir)
    return os.path.join(script_dir, 'livepatch_restore.py')


def run(script, *args):
    return subprocess.run([sys.executable, '-I', '-S', script] + list(args), capture_output=True, text=True,
                          check=False, timeout=60)


def test_the_entry_point_runs_without_ansible_and_reports(tmp_path):
    script = install(str(tmp_path / 'libexec'))
    root = tmp_path / 'root'
    (root / 'proc' / 'sys' / 'kernel').mkdir(parents=True)
    (root / 'proc' / 'sys' / 'kernel' / 'osrelease').write_text('6.12.117+deb13-amd64\n')
    (root / 'proc' / 'cmdline').write_text('ro quiet\n')
    state = tmp_path / 'state' / '6.12.117+deb13-amd64'
    state.mkdir(parents=True)
    (state / 'stack.json').write_text('{"schema": 2, "kernel_release": "6.12.117+deb13-amd64", "stack": {}}')
    done = run(script, '--root', str(root), '--dir', str(tmp_path / 'state'), '--timeout', '1')
    assert done.returncode == 1, done
    assert 'No module named' not in done.stderr and 'Traceback' not in done.stderr, done.stderr
    assert done.stderr.startswith('<3>') and 'bad_record' in done.stderr
    report = json.loads((state / 'restore.json').read_text())
    assert (report['status'], report['rule']) == ('failed', 'bad_record')


def test_the_restore_imports_nothing_from_ansible(tmp_path):
    """_restore and every module_util it imports, by a Python without site-packages."""
    script_dir = str(tmp_path / 'libexec')
    install(script_dir)
    code = ('import sys; sys.path.insert(0, %r); '
            'import ansible_collections.kernelops.livepatch.plugins.module_utils._restore; '
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "ansible"))' % script_dir)
    done = subprocess.run([sys.executable, '-I', '-S', '-c', code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, '[]'), done.stderr


def test_the_entry_point_shares_no_code_with_module_utils():
    """It only puts its directory on sys.path and calls _restore.main (issue 11)."""
    with open(ENTRY) as handle:
        code = [line for line in handle.read().split('"""')[-1].splitlines() if line.strip()]
    assert len(code) <= 6, code
