# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Guest side of ``benchmarks/converge_cost.py`` (not a test; copied into a lab guest, run with its python3).

Subcommands (each prints one JSON object on stdout):

``floor OP...``
    The thinnest tool: from an already running process, ``+/path/x.ko`` = insmod, then poll the
    patch's ``transition`` every 2 ms until 0; ``-name`` = write 0 to ``enabled``, poll until the
    sysfs directory is gone, rmmod. Times only the work, not its own start.
``wrapper SRC DST ARGS_JSON``
    Copy a kept AnsiballZ wrapper with other module arguments (``_ansible_*`` keys kept).
``payload SRC DST``
    Write the wrapper's zipped module payload to DST (for ``import ansible.module_utils.basic``
    from the same zip, and for ``timed``).
``timed WRAPPER``
    Run the module of WRAPPER from its payload (as the wrapper does) and attribute the time,
    outermost first, to: imports, file checks (``_kofile`` reads), observe (``_observe.observe``),
    lock, steps (the executor's load/unload/enable/disable), the rest. The module's own JSON result
    goes to stdout as usual; the split goes to ``$KLP_BENCH_SPLIT`` (a file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

T0 = time.perf_counter()
SYSFS = '/sys/kernel/livepatch'


def read(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return None


def poll(predicate, timeout=120.0, every=0.002):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit('floor: timed out')
        time.sleep(every)


def floor(ops):
    start = time.perf_counter()
    done = []
    for op in ops:
        t = time.perf_counter()
        if op.startswith('+'):
            name = os.path.basename(op[1:])[:-3].replace('-', '_')
            subprocess.run(['insmod', op[1:]], check=True)
            poll(lambda: read('%s/%s/transition' % (SYSFS, name)) == '0')
        else:
            name = op[1:]
            with open('%s/%s/enabled' % (SYSFS, name), 'w') as handle:
                handle.write('0')
            poll(lambda: not os.path.exists('%s/%s' % (SYSFS, name)))
            poll(lambda: subprocess.run(['rmmod', name], stderr=subprocess.DEVNULL, check=False).returncode == 0, every=0.005)
        done.append([op, round(time.perf_counter() - t, 4)])
    return {'wall_s': round(time.perf_counter() - start, 4), 'ops': done}


def wrapper_params(text):
    """(start, end, params dict) of the ``params=...,`` line the AnsiballZ wrapper ends with."""
    import ast
    start = text.index('\nparams=') + 1
    end = text.index('\n', start)
    return start, end, json.loads(ast.literal_eval(text[start + len('params='):end].rstrip(',')))


def wrapper(src, dst, args):
    with open(src) as handle:
        text = handle.read()
    start, end, params = wrapper_params(text)
    module_args = dict((k, v) for k, v in params['ANSIBLE_MODULE_ARGS'].items() if k.startswith('_ansible_'))
    module_args['_ansible_check_mode'] = False
    module_args['_ansible_diff'] = False
    module_args.update(json.loads(args))
    params['ANSIBLE_MODULE_ARGS'] = module_args
    with open(dst, 'w') as handle:
        handle.write(text[:start] + 'params=%r,' % json.dumps(params) + text[end:])
    return {'wrote': dst}


def wrapper_fields(src):
    import ast
    with open(src) as handle:
        text = handle.read()
    fields = {}
    for key in ('zip_data', 'module_fqn', 'profile', 'params'):
        start = text.index('\n%s=' % key) + 1
        end = text.index('\n', start)
        fields[key] = ast.literal_eval(text[start + len(key) + 1:end].rstrip(','))
    return fields


def payload(src, dst):
    import base64
    with open(dst, 'wb') as handle:
        handle.write(base64.b64decode(wrapper_fields(src)['zip_data']))
    return {'wrote': dst}


class Split(object):
    """Time per category, the outermost active category owning the time (steps include their waits)."""

    def __init__(self):
        self.active = None
        self.since = 0.0
        self.totals = {}
        self.counts = {}

    def wrap(self, category, function):
        split = self

        def timed(*args, **kwargs):
            if split.active is not None:
                return function(*args, **kwargs)
            split.active, split.since = category, time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                split.totals[category] = split.totals.get(category, 0.0) + time.perf_counter() - split.since
                split.counts[category] = split.counts.get(category, 0) + 1
                split.active = None
        timed.__wrapped__ = function
        return timed


# What to time, by module-name suffix: module-level functions and (class, method) pairs. The names
# of the module_utils are being reorganised; anything missing is skipped.
FILE_FUNCTIONS = ('read_kofile', 'open_module')
OBSERVE_FUNCTIONS = ('observe',)
STEP_METHODS = ('load', 'unload', 'enable', 'disable')
LOCK_CLASSES = ('HostLock',)


def timed(wrapper_path):
    import importlib
    import importlib._bootstrap as bootstrap  # pylint: disable=import-outside-toplevel
    fields = wrapper_fields(wrapper_path)
    zip_path = os.environ['KLP_BENCH_ZIP']
    sys.path.insert(0, zip_path)
    split = Split()
    bootstrap._find_and_load = split.wrap('imports', bootstrap._find_and_load)
    prefix = 'ansible_collections.kernelops.livepatch.plugins.module_utils.'
    import zipfile
    names = sorted(n[:-3].replace('/', '.') for n in zipfile.ZipFile(zip_path).namelist()
                   if n.startswith(prefix.replace('.', '/')) and n.endswith('.py') and not n.endswith('__init__.py'))
    patched = []
    # _kofile first, then _observe, so that later 'from ... import observe' binds the timed one.
    order = sorted(names, key=lambda n: (not n.endswith('_kofile'), not n.endswith('_observe'), n))
    for name in order:
        module = importlib.import_module(name)
        for attr in FILE_FUNCTIONS + OBSERVE_FUNCTIONS:
            function = module.__dict__.get(attr)
            if callable(function) and getattr(function, '__module__', None) == name:
                setattr(module, attr, split.wrap('file checks' if attr in FILE_FUNCTIONS else 'observe', function))
                patched.append('%s.%s' % (name.rsplit('.', 1)[-1], attr))
        for cls in list(module.__dict__.values()):
            if not isinstance(cls, type) or cls.__module__ != name:
                continue
            if cls.__name__ in LOCK_CLASSES and '__enter__' in cls.__dict__:
                cls.__enter__ = split.wrap('lock', cls.__dict__['__enter__'])
                patched.append('%s.__enter__' % cls.__name__)
            if 'Executor' in cls.__name__:
                for method in STEP_METHODS:
                    if method in cls.__dict__:
                        setattr(cls, method, split.wrap('steps', cls.__dict__[method]))
                        patched.append('%s.%s' % (cls.__name__, method))
    from ansible.module_utils._internal._ansiballz import _loader  # pylint: disable=import-outside-toplevel

    def report():
        total = time.perf_counter() - T0
        out = dict((k, round(v, 4)) for k, v in split.totals.items())
        out['rest'] = round(total - sum(split.totals.values()), 4)
        out['total_in_process'] = round(total, 4)
        out['counts'] = split.counts
        out['patched'] = patched
        with open(os.environ['KLP_BENCH_SPLIT'], 'w') as handle:
            json.dump(out, handle)
    import atexit
    atexit.register(report)
    _loader.run_module(json_params=fields['params'].encode(), profile=fields['profile'],
                       module_fqn=fields['module_fqn'], modlib_path=zip_path, extensions={})


def main(argv):
    command = argv[0]
    if command == 'floor':
        result = floor(argv[1:])
    elif command == 'wrapper':
        result = wrapper(*argv[1:4])
    elif command == 'payload':
        result = payload(*argv[1:3])
    elif command == 'timed':
        return timed(argv[1])
    else:
        raise SystemExit('unknown command %r' % command)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
