# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark-style run (not a test): many random plan-and-execute cases per kernel era on the kernel model.

Each case is checked by ``check_case`` from ``tests/unit/plugins/module_utils/test_plan_properties.py``
(the same invariants the unit tests check with a few dozen hypothesis examples): a random live
stack (by hand, as insmod would leave it), a random desired stack (sometimes over a replace patch,
5.1+), a random retired module (5.1+), a random set of patches counted as ours and a random
``foreign`` policy. Expectations come from the inputs alone: the common bottom by name and build,
the patches that must be popped, the refusal the rules require, the final stack. The plan is run
by the real executor against the model, which counts concurrent transitions and patches disabled
below a live one. Any failed expectation or unexpected exception is an invariant break.

Prints per era: cases, executed, refused (by rule), breaks (expected 0), seconds. Exit status 1
if anything broke. The model renders its sysfs tree only when something reads it here (the files
are a function of the model's state, so what the executor and observe read is the same), and
its root is in /dev/shm when there is one: the run is CPU-bound, not disk-bound.

Usage: ``nice -n 19 .venv/bin/python benchmarks/plan_properties.py [--cases 10000] [--seed 1]
[--eras 4.9 4.19 6.1 6.12 7.2] [--json FILE]``
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tests', 'unit'),
                os.path.join(ROOT, 'tests', 'unit', 'plugins', 'module_utils')]

from collection_tree import collection_tree, importable  # noqa: E402  pylint: disable=wrong-import-position

if not importable():
    sys.path.insert(0, collection_tree())

import kernel_model  # noqa: E402  pylint: disable=wrong-import-position
import test_plan_properties as props  # noqa: E402  pylint: disable=wrong-import-position


class _Capture:
    """Stands in for the kernel model's ``os`` and ``shutil`` while it renders: records instead of writing."""

    def __init__(self):
        self.files = {}
        self.dirs = set()
        self.path = os.path

    def makedirs(self, path, exist_ok=False):  # pylint: disable=unused-argument
        self.dirs.add(path)

    def rmtree(self, path, ignore_errors=False):  # pylint: disable=unused-argument
        pass

    def write(self, path, data):
        self.files[path] = data


def _with_parents(paths, root):
    dirs = set()
    for path in paths:
        while path.startswith(root + os.sep) and path not in dirs:
            dirs.add(path)
            path = os.path.dirname(path)
    return dirs


def fast_model(root, version):
    """The kernel model, rendering its tree only before something reads it, and only the files that changed.

    The model's own ``render`` decides every file and its content; here it writes into a dict, and
    the differences with the previous tree are applied to the directory: the same files, a fraction
    of the writes.
    """
    model = kernel_model.KernelModel(root, version)
    real_render = model.render
    on_disk = {'files': {}, 'dirs': set()}

    def render():
        capture = _Capture()
        names = ('os', 'shutil', '_write_bytes')
        saved = dict((name, getattr(kernel_model, name)) for name in names)
        kernel_model.os, kernel_model.shutil, kernel_model._write_bytes = capture, capture, capture.write
        try:
            real_render()
        finally:
            for name, value in saved.items():
                setattr(kernel_model, name, value)
        if not capture.files and not capture.dirs:
            return  # the state did not change: nothing rendered
        dirs = _with_parents(list(capture.dirs) + [os.path.dirname(path) for path in capture.files], root)
        for path in set(on_disk['files']) - set(capture.files):
            os.unlink(path)
        for path in sorted(on_disk['dirs'] - dirs, key=len, reverse=True):
            os.rmdir(path)
        for path in sorted(dirs - on_disk['dirs'], key=len):
            os.mkdir(path)
        for path, data in capture.files.items():
            if on_disk['files'].get(path) != data:
                with open(path, 'wb') as handle:
                    handle.write(data)
        on_disk['files'], on_disk['dirs'] = capture.files, dirs

    model.render = lambda: None  # tick() and every entry point call it; reads below render instead

    def before_read(method):
        def read(*args, **kwargs):
            model.tick()
            render()
            return method(*args, **kwargs)
        return read
    for name in ('observe', 'read', 'exists', 'listdir', 'transition_patch'):
        method = getattr(model, name, None)
        if method is not None:
            setattr(model, name, before_read(method))
    shutil.rmtree(os.path.join(root, 'sys'), ignore_errors=True)
    shutil.rmtree(os.path.join(root, 'proc'), ignore_errors=True)
    model._rendered = None  # pylint: disable=protected-access
    render()
    return model


def random_stack(rng, names, size):
    return [(name, rng.choice(props.BUILDS)) for name in rng.sample(names, rng.randint(0, size))]


def random_case(rng, version):
    ours = None
    if rng.random() < 0.8:
        ours = [(name, rng.choice(props.BUILDS + [None])) for name in rng.sample(props.NAMES, rng.randint(0, 5))]
    current = random_stack(rng, props.NAMES, 4)
    desired = random_stack(rng, props.NAMES, 4)
    if rng.random() < 0.6:  # a shared bottom, where popping one too many would show
        bottom = current[:rng.randint(0, len(current))]
        desired = bottom + [spec for spec in desired if spec[0] not in dict(bottom)]
    return dict(
        version=version,
        current=current,
        desired=desired,
        retired=[(rng.choice(['d', 'e']), rng.choice(props.BUILDS))] if rng.random() < 0.3 else [],
        replace=rng.choice(props.BUILDS) if rng.random() < 0.25 else None,
        ours=ours,
        policy=rng.choice(props.POLICIES),
    )


def run_era(files, version, cases, rng, show):
    counts = collections.Counter()
    start = time.monotonic()
    for index in range(cases):
        if index and index % 1000 == 0:
            print('  %s: %d cases, %d breaks, %.0f s' % (version, index, counts['breaks'], time.monotonic() - start))
            sys.stdout.flush()
        case = random_case(rng, version)
        try:
            outcome = props.check_case(files, new_model=fast_model, **case)
            counts[outcome] += 1
        except props.LivepatchError as exc:  # a refusal check_case did not expect to see raised
            counts['breaks'] += 1
            show(case, 'unexpected refusal %s: %s' % (exc.rule, exc.message))
        except AssertionError as exc:
            counts['breaks'] += 1
            show(case, 'invariant broken: %s' % exc)
        except Exception:  # pylint: disable=broad-except
            counts['breaks'] += 1
            show(case, 'exception: %s' % traceback.format_exc(limit=4))
    counts['seconds'] = round(time.monotonic() - start, 1)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--cases', type=int, default=10000, help='random cases per era (default 10000)')
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--eras', nargs='+', default=props.ERAS, choices=props.ERAS)
    parser.add_argument('--json', help='also write the counts to this file')
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    files_dir = props.scratch_dir('kofiles-')
    shown = []

    def show(case, text):
        if len(shown) < 20:
            shown.append(case)
            print('BREAK %r\n  %s' % (case, text.strip().replace('\n', '\n  ')))

    results = {}
    try:
        files = props.make_files(files_dir)
        print('%-6s %8s %9s %8s %7s %8s  %s' % ('era', 'cases', 'executed', 'refused', 'breaks', 'seconds', 'rules'))
        for version in args.eras:
            counts = run_era(files, version, args.cases, rng, show)
            rules = dict((key.split(':', 1)[1], value) for key, value in counts.items() if key.startswith('refused:'))
            refused = sum(rules.values())
            results[version] = {'cases': args.cases, 'executed': counts['executed'], 'refused': refused,
                                'breaks': counts['breaks'], 'seconds': counts['seconds'], 'rules': rules}
            by_rule = ', '.join('%s %d' % item for item in sorted(rules.items()))
            print('%-6s %8d %9d %8d %7d %8.1f  %s' % (
                version, args.cases, counts['executed'], refused, counts['breaks'], counts['seconds'], by_rule))
            sys.stdout.flush()
    finally:
        shutil.rmtree(files_dir)
    total_breaks = sum(result['breaks'] for result in results.values())
    print('invariant breaks: %d in %d cases (seed %d)' % (total_breaks, args.cases * len(args.eras), args.seed))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump({'seed': args.seed, 'cases_per_era': args.cases, 'eras': results}, handle, indent=2)
    return 1 if total_breaks else 0


if __name__ == '__main__':
    sys.exit(main())
