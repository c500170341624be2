# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Runs in a lab guest (never on a managed host): module runs and shell commands for the
integration tests, one request per line on stdin, one answer per line on stdout (JSON).

Why: under TCG a module run through ``ansible`` costs ~14 s, of which the module's own work is
one or two; the rest is the controller starting ``ansible`` and, in the guest, Python importing
``ansible.module_utils.basic`` and our module_utils again for every run. This process imports
them once and forks a child per module run; the child runs the module the way AnsiballZ does
(``ansible.module_utils._internal._ansiballz._loader.run_module``: the arguments in
``basic._ANSIBLE_ARGS``, the module executed as ``__main__``), with its stdin from /dev/null
and its stdout and stderr in files, and exits. Each run is its own process, as under Ansible;
the parent runs no module code. Shell commands run with ``/bin/sh -c`` (plain shell, as over ssh).

Requests: ``{"module": FQCN, "params": JSON text}`` or ``{"sh": SCRIPT, "input": TEXT, "timeout": S}``.
Answers: ``{"rc", "stdout", "stderr", "seconds"}``; the first line is ``{"ready": ..., "python": ...}``.
Standard library only; Python >= 3.9.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WARM = ('ansible.module_utils.basic', 'ansible.module_utils._internal._ansiballz._loader')


def warm_up(modules):
    """Import what every module run imports (ansible.module_utils.basic, our module_utils), once,
    before any fork."""
    import importlib
    for name in WARM + tuple(modules):
        importlib.import_module(name)


def run_module(module, params):
    """Fork; the child runs ``module`` with ``params`` (JSON text); (exit status, stdout, stderr)."""
    from ansible.module_utils._internal._ansiballz import _loader
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            status = 70
            try:
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                try:
                    _loader.run_module(json_params=params.encode('utf-8'), profile='legacy', module_fqn=module,
                                       modlib_path=HERE, extensions={})
                except SystemExit as exc:
                    status = exc.code if isinstance(exc.code, int) else 1
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(status)
        _pid, wait_status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(wait_status)
        texts = []
        for handle in (out, err):
            handle.seek(0)
            texts.append(handle.read().decode('utf-8', 'replace'))
        return rc, texts[0], texts[1]


def run_shell(script, stdin_text, timeout):
    try:
        done = subprocess.run(['/bin/sh', '-c', script], input=(stdin_text or '').encode('utf-8'),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return 124, (exc.stdout or b'').decode('utf-8', 'replace'), 'timed out after %s s' % timeout
    return done.returncode, done.stdout.decode('utf-8', 'replace'), done.stderr.decode('utf-8', 'replace')


def main():
    sys.path.insert(0, HERE)
    started = time.monotonic()
    warm_up(sys.argv[1:])
    answer({'ready': True, 'python': sys.version.split()[0], 'seconds': time.monotonic() - started})
    for line in sys.stdin:
        request = json.loads(line)
        started = time.monotonic()
        if 'module' in request:
            rc, out, err = run_module(request['module'], request['params'])
        else:
            rc, out, err = run_shell(request['sh'], request.get('input'), request.get('timeout', 180))
        answer({'rc': rc, 'stdout': out, 'stderr': err, 'seconds': time.monotonic() - started})


def answer(data):
    sys.stdout.write(json.dumps(data) + '\n')
    sys.stdout.flush()


if __name__ == '__main__':
    main()
