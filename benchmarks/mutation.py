# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark-style run (not a test): mutation testing of the planner with mutmut; prints the score.

mutmut changes one thing at a time in the code under test (an operator, a constant, a condition,
a returned value) and runs the unit tests that cover it; a mutant the tests do not notice
*survives*. The score is killed / (killed + survived + timed out). It runs on a copy of the
checkout (mutmut edits files in place), so the checkout is never touched.

By default mutmut's own operators make each mutant and the fast tests run on it in this process
(mutmut's ``run`` starts a new process per mutant, which on a loaded machine costs more than the
tests); ``--subprocess`` uses ``mutmut run`` itself.

mutmut is a test tool, not a dependency of the collection: install the pinned version into the
venv first (it is not in tests/requirements-dev.txt, whose constraints are locked per Python)::

    .venv/bin/python -m pip install mutmut==2.5.1

Usage (CPU-heavy: low priority, one process)::

    nice -n 19 .venv/bin/python benchmarks/mutation.py [--paths FILE ...] [--tests TEST ...]
        [--show-survivors] [--keep DIR]

Defaults: the planner (``_plan.py``, ``_foreign.py``) against the table of ``test_plan.py``
(run without pytest's start-up: a fraction of a second per mutant); each mutant that survives it is run again against ``--deep-tests``
(default ``test_plan_properties.py``: plan and execute on the kernel model, a minute per mutant).
Pass ``--paths plugins/module_utils/_executor.py --tests tests/unit/plugins/module_utils/test_executor.py
--deep-tests ...`` for the executor.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTMUT_PIN = 'mutmut==2.5.1'
DEFAULT_PATHS = ['plugins/module_utils/_plan.py', 'plugins/module_utils/_foreign.py']
DEFAULT_TESTS = ['tests/unit/plugins/module_utils/test_plan.py']
DEFAULT_DEEP_TESTS = ['tests/unit/plugins/module_utils/test_plan_properties.py']


def mutmut_command():
    mutmut = os.path.join(os.path.dirname(sys.executable), 'mutmut')
    if not os.path.exists(mutmut):
        sys.exit('mutmut is not installed in this venv: %s -m pip install %s' % (sys.executable, MUTMUT_PIN))
    return mutmut


def copy_checkout(target):
    """Copy the files git knows (tracked and untracked, not ignored): what a clone would hold plus local edits."""
    listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT, check=True,
                            stdout=subprocess.PIPE).stdout.decode().split('\0')
    for relative in filter(None, listed):
        source = os.path.join(ROOT, relative)
        if not os.path.isfile(source) or os.path.islink(source):
            continue
        destination = os.path.join(target, relative)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        shutil.copy2(source, destination)


class _Raises:
    def __init__(self, kind):
        self.kind = kind
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, _traceback):
        if kind is None or not issubclass(kind, self.kind):
            raise AssertionError('did not raise %s' % self.kind.__name__)
        self.value = value
        return True


class _Mark:
    @staticmethod
    def parametrize(names, values, ids=None):  # pylint: disable=unused-argument
        def mark(function):
            function.parametrized = ([name.strip() for name in names.split(',')], list(values))
            return function
        return mark


def run_plain_tests(paths):
    """Run test functions that need no fixtures, in one process and without pytest's start-up cost.

    Mutation testing starts the tests once per mutant; on a shared machine pytest's start-up is
    most of that. This understands what ``test_plan.py`` uses: ``pytest.raises`` and
    ``pytest.mark.parametrize``. Exit status 1 at the first failure, like ``pytest -x``.
    """
    stub = type(sys)('pytest')
    stub.raises = _Raises
    stub.mark = _Mark
    sys.modules['pytest'] = stub
    sys.path[:0] = [os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tests', 'unit')]
    from collection_tree import collection_tree, importable  # pylint: disable=import-outside-toplevel
    if not importable():
        sys.path.insert(0, collection_tree())
    count = 0
    for path in paths:
        sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
        module = __import__(os.path.splitext(os.path.basename(path))[0])
        for name, function in sorted(vars(module).items()):
            if not name.startswith('test_') or not callable(function):
                continue
            names, values = getattr(function, 'parametrized', ([], [()]))
            for value in values:
                function(*(value if len(names) > 1 else (value,) if names else ()))
                count += 1
    print('%d tests passed' % count)
    return 0


def _plain_test_functions(module):
    for name, function in sorted(vars(module).items()):
        if name.startswith('test_') and callable(function):
            names, values = getattr(function, 'parametrized', ([], [()]))
            for value in values:
                yield function, (value if len(names) > 1 else (value,) if names else ())


class _Timeout(Exception):
    pass


def in_process(paths, tests, show_survivors):
    """Generate every mutant with mutmut's own operators and run the plain tests on it, in this process.

    One process instead of one per mutant: on a loaded machine, start-up is most of the cost.
    A mutant is loaded as the module itself (and the modules under test that import it are loaded
    again on top of it); the test modules are imported afresh for each mutant.
    """
    import difflib  # pylint: disable=import-outside-toplevel
    import signal  # pylint: disable=import-outside-toplevel
    import types  # pylint: disable=import-outside-toplevel
    import mutmut  # pylint: disable=import-outside-toplevel
    stub = type(sys)('pytest')
    stub.raises = _Raises
    stub.mark = _Mark
    sys.modules['pytest'] = stub
    sys.path[:0] = [os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tests', 'unit')]
    from collection_tree import collection_tree, importable  # pylint: disable=import-outside-toplevel
    if not importable():
        sys.path.insert(0, collection_tree())
    package = 'ansible_collections.kernelops.livepatch.plugins.module_utils.'
    names = dict((path, package + os.path.splitext(os.path.basename(path))[0]) for path in paths)
    sources = {}
    for path in paths:
        with open(os.path.join(ROOT, path)) as handle:
            sources[path] = handle.read()

    def load(path, source):
        module = types.ModuleType(names[path])
        module.__file__ = os.path.join(ROOT, path)
        sys.modules[names[path]] = module
        exec(compile(source, module.__file__, 'exec'), module.__dict__)  # pylint: disable=exec-used

    def load_all(mutated_path=None, mutated_source=None):
        # dependencies first: a module that names another module under test is loaded after it
        def imports(path):
            return sum(names[other].rsplit('.', 1)[1] in sources[path] for other in paths if other != path)
        order = sorted(paths, key=imports)
        for path in order:
            load(path, mutated_source if path == mutated_path else sources[path])
        # modules not under test that import one under test (the planner imports _foreign) load again
        short = [names[path].rsplit('.', 1)[1] for path in paths]
        for name, module in sorted(sys.modules.items()):
            filename = getattr(module, '__file__', None) or ''
            if name.startswith(package) and name not in names.values() and filename.endswith('.py'):
                with open(filename) as handle:
                    text = handle.read()
                if any(word in text for word in short):
                    relative = os.path.relpath(filename, ROOT)
                    names[relative], sources[relative] = name, text
                    load(relative, text)
                    del names[relative], sources[relative]

    def run_tests():
        for test in tests:
            sys.path.insert(0, os.path.dirname(os.path.abspath(os.path.join(ROOT, test))))
            name = os.path.splitext(os.path.basename(test))[0]
            sys.modules.pop(name, None)
            module = __import__(name)
            for function, arguments in _plain_test_functions(module):
                function(*arguments)

    def alarm(_signum, _frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, alarm)
    load_all()
    run_tests()  # the tests must pass on the code as it is
    counts = {'killed': 0, 'survived': 0, 'timeout': 0}
    survivors = []
    start = time.monotonic()
    for path in paths:
        for mutation_id in mutmut.list_mutations(mutmut.Context(source=sources[path], filename=path)):
            mutated, _count = mutmut.mutate(mutmut.Context(source=sources[path], mutation_id=mutation_id,
                                                           filename=path))
            signal.alarm(30)
            try:
                load_all(path, mutated)
                run_tests()
                counts['survived'] += 1
                survivors.append((path, mutation_id.line_number + 1, mutated))
            except _Timeout:
                counts['timeout'] += 1
            except Exception:  # pylint: disable=broad-except
                counts['killed'] += 1  # any failure or exception: the tests noticed
            finally:
                signal.alarm(0)
    load_all()
    total = sum(counts.values())
    print('mutants: %d; killed %d, survived %d, timed out %d (%.0f s)' % (
        total, counts['killed'], counts['survived'], counts['timeout'], time.monotonic() - start))
    score = 100.0 * counts['killed'] / total if total else 0.0
    print('score: %.1f%% killed (%d of %d)' % (score, counts['killed'], total))
    for path, line, mutated in survivors:
        print('survived: %s:%d' % (path, line))
        if show_survivors:
            diff = difflib.unified_diff(sources[path].splitlines(), mutated.splitlines(), lineterm='', n=0)
            print('    ' + '\n    '.join(text for text in diff if text[:1] in '-+' and text[:3] not in ('---', '+++')))
    return 0 if not counts['survived'] and not counts['timeout'] else 2


def mutmut_run(mutmut, paths, tests, mutant_id=None, plain=False):
    if plain:
        runner = '%s %s --run-plain-tests %s' % (shlex.quote(sys.executable), 'benchmarks/mutation.py',
                                                 ' '.join(shlex.quote(test) for test in tests))
    else:  # -x: a killed mutant stops at its first failing test.
        runner = '%s -m pytest -x -q -p no:cacheprovider %s' % (
            shlex.quote(sys.executable), ' '.join(shlex.quote(test) for test in tests))
    command = [mutmut, 'run', '--paths-to-mutate', ','.join(paths), '--runner', runner, '--tests-dir', 'tests/unit',
               '--test-time-multiplier', '10', '--test-time-base', '60', '--simple-output', '--no-progress']
    if mutant_id is not None:
        command.append(str(mutant_id))
    print('  ' + ' '.join(shlex.quote(part) for part in command))
    sys.stdout.flush()
    return command


def statuses(workdir):
    """mutmut's cache (a SQLite file): id, status, source file, line for every mutant."""
    with sqlite3.connect(os.path.join(workdir, '.mutmut-cache')) as db:
        return db.execute('SELECT Mutant.id, Mutant.status, SourceFile.filename, Line.line_number '
                          'FROM Mutant JOIN Line ON Mutant.line = Line.id '
                          'JOIN SourceFile ON Line.sourcefile = SourceFile.id ORDER BY Mutant.id').fetchall()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--paths', nargs='+', default=DEFAULT_PATHS, help='files to mutate (relative to the checkout)')
    parser.add_argument('--tests', nargs='+', default=DEFAULT_TESTS, help='fast test files that cover them')
    parser.add_argument('--deep-tests', nargs='*', default=DEFAULT_DEEP_TESTS,
                        help='slower tests, run only on the mutants that survive --tests')
    parser.add_argument('--show-survivors', action='store_true', help='print the diff of every surviving mutant')
    parser.add_argument('--keep', help='work in this directory and keep it (to inspect mutants with mutmut show)')
    parser.add_argument('--subprocess', action='store_true',
                        help='let mutmut run the tests in a new process per mutant (slow), then --deep-tests on '
                             'the survivors; by default mutants are made by mutmut and tested in this process')
    parser.add_argument('--run-plain-tests', nargs='+', metavar='TEST', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_plain_tests:  # the runner mutmut starts for each mutant
        return run_plain_tests(args.run_plain_tests)
    mutmut = mutmut_command()
    if not args.subprocess:
        return in_process(args.paths, args.tests, args.show_survivors)
    workdir = args.keep or tempfile.mkdtemp(prefix='kernelops-mutation-')
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1', PYTHONPATH='')
    env.pop('ANSIBLE_COLLECTIONS_PATH', None)  # tests/collection_tree.py points the import at the copy
    try:
        copy_checkout(workdir)
        print('in %s:' % workdir)
        start = time.monotonic()
        subprocess.run(mutmut_run(mutmut, args.paths, args.tests, plain=True), cwd=workdir, env=env, check=False,
                       stdout=subprocess.DEVNULL)
        fast = dict((row[0], row[1]) for row in statuses(workdir))
        if args.deep_tests:
            for mutant_id, status, _file, _line in statuses(workdir):
                if status in ('bad_survived', 'bad_timeout'):
                    subprocess.run(mutmut_run(mutmut, args.paths, args.tests + args.deep_tests, mutant_id),
                                   cwd=workdir, env=env, check=False, stdout=subprocess.DEVNULL)
        elapsed = time.monotonic() - start
        rows = statuses(workdir)
        by_deep = [row[0] for row in rows if fast.get(row[0]) == 'bad_survived' and row[1] == 'ok_killed']
        print('killed only by %s: %d' % (' '.join(args.deep_tests), len(by_deep)))
        counts = {}
        for _id, status, _file, _line in rows:
            counts[status] = counts.get(status, 0) + 1
        killed = counts.get('ok_killed', 0)
        survived = counts.get('bad_survived', 0)
        timeout = counts.get('bad_timeout', 0)
        suspicious = counts.get('ok_suspicious', 0)
        judged = killed + survived + timeout + suspicious
        print('mutants: %d; killed %d, survived %d, timed out %d, suspicious %d, not run %d (%.0f s)' % (
            len(rows), killed, survived, timeout, suspicious, len(rows) - judged, elapsed))
        score = 100.0 * (killed + suspicious) / judged if judged else 0.0
        print('score: %.1f%% killed (%d of %d)' % (score, killed + suspicious, judged))
        for mutant_id, status, filename, line in rows:
            if status in ('bad_survived', 'bad_timeout'):
                print('%s: %s:%d (mutant %d)' % ('survived' if status == 'bad_survived' else 'timed out',
                                                 filename, line + 1, mutant_id))
                if args.show_survivors:
                    diff = subprocess.run([mutmut, 'show', str(mutant_id)], cwd=workdir, env=env, check=False,
                                          stdout=subprocess.PIPE).stdout.decode()
                    print('    ' + '\n    '.join(line for line in diff.splitlines() if line.startswith(('-', '+'))
                                                 and not line.startswith(('---', '+++'))))
        return 0 if judged and not survived and not timeout else 2
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
