# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""tests/integration/guest_runner.py, run here on the payload the integration tests send to a
lab guest (``drive.payload``), with this machine's ``python3``: module runs give the module's own
output and exit status, each in its own process, and shell commands give theirs."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

INTEGRATION = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           'integration')
sys.path.insert(0, INTEGRATION)

import drive  # noqa: E402  pylint: disable=wrong-import-position

MODULE = 'ansible_collections.kernelops.livepatch.plugins.modules.'


@pytest.fixture(scope='module')
def runner(tmp_path_factory):
    base = tmp_path_factory.mktemp('runner')
    data, warm = drive.payload()
    with tarfile.open(fileobj=io.BytesIO(data), mode='r:gz') as tar:
        tar.extractall(base, filter='data') if hasattr(tarfile, 'data_filter') else tar.extractall(base)
    python = shutil.which('python3') or sys.executable
    # -I: nothing from this test process's paths: only the payload can be imported
    proc = subprocess.Popen([python, '-I', '-u', str(base / 'guest_runner.py')] + list(warm), cwd=str(base),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(request):
        proc.stdin.write(json.dumps(request) + '\n')
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())
    ready = json.loads(proc.stdout.readline())
    yield ready, ask, proc.pid
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def module_args(**args):
    return json.dumps({'ANSIBLE_MODULE_ARGS': args})


def test_ready_names_the_python(runner):
    ready, _ask, _pid = runner
    assert ready['ready'] is True and ready['python'].count('.') == 2


def test_a_module_run_prints_the_module_result(runner, tmp_path):
    _ready, ask, _pid = runner
    root = tmp_path / 'empty-root'
    (root / 'proc' / 'sys' / 'kernel').mkdir(parents=True)
    (root / 'proc' / 'sys' / 'kernel' / 'osrelease').write_text('6.1.0-test\n')
    done = ask({'module': MODULE + 'livepatch_info', 'params': module_args(root=str(root))})
    result = json.loads(done['stdout'])
    assert done['rc'] == 0, done
    assert (result['changed'], result['root'], result['kernel_release']) == (False, str(root), '6.1.0-test'), result


def test_bad_arguments_fail_the_run_with_the_module_message(runner):
    _ready, ask, _pid = runner
    done = ask({'module': MODULE + 'livepatch_stack', 'params': module_args(stack=5)})
    result = json.loads(done['stdout'])
    assert done['rc'] == 1 and result['failed'] is True and "'stack'" in result['msg'], done
    assert done['stderr'] == ''


def test_shell_commands_give_status_output_and_input(runner):
    _ready, ask, pid = runner
    done = ask({'sh': 'cat; echo err >&2; echo $PPID; exit 3', 'input': 'in\n'})
    out = done['stdout'].split()
    assert (done['rc'], out[0], done['stderr']) == (3, 'in', 'err\n')
    assert int(out[1]) == pid   # the runner itself forked the shell
    assert ask({'sh': 'sleep 5', 'timeout': 0.5})['rc'] == 124
