# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark-style run (not a test): mutation testing of the planner and the executor with mutmut; prints the score.

mutmut changes one thing at a time in the code under test (an operator, a constant, a condition,
a returned value) and runs the unit tests that cover it; a mutant the tests do not notice
*survives*. The score is killed / (killed + survived + timed out).

By default mutmut's own operators make each mutant and the tests run on it in this process
(mutmut's ``run`` starts a new process per mutant, which on a loaded machine costs more than the
tests); ``--subprocess`` uses ``mutmut run`` itself, on a copy of the checkout (mutmut edits
files in place), so the checkout is never touched either way.

mutmut is a test tool, not a dependency of the collection: install the pinned version into the
venv first (it is not in tests/requirements-dev.txt, whose constraints are locked per Python)::

    .venv/bin/python -m pip install -r benchmarks/requirements.txt

Usage (CPU-heavy: low priority, one process)::

    nice -n 19 .venv/bin/python benchmarks/mutation.py [--paths FILE ...] [--tests TEST ...]
        [--deep-tests TEST ...] [--show-survivors] [--keep DIR] [--subprocess]

Defaults: the planner and the executor (``_plan.py``, ``_foreign.py``, ``_executor.py``,
``_converge.py``) against ``test_plan.py`` (the planner's table), ``test_executor_reports.py``,
``test_converge_reports.py``, ``test_executor.py``, ``test_converge.py`` and ``test_act.py`` (the
executor on the kernel model), run without pytest's start-up; each mutant of the planner
(``--deep-paths``) that survives them runs again against ``--deep-tests`` (default
``test_plan_properties.py``: random plans executed on the kernel model, and
``test_relations_plan.py``: the planner's opt-in ``skip_unrelated``). At the end the
pop-one-too-many planner mutant of issue 14 runs against the property tests alone, to show that
they kill it without the hand-written examples.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import os
import pathlib
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join('benchmarks', 'requirements.txt')
PACKAGE = 'ansible_collections.kernelops.livepatch.plugins.module_utils.'
UNIT = 'tests/unit/plugins/module_utils/'
DEFAULT_PATHS = ['plugins/module_utils/_plan.py', 'plugins/module_utils/_foreign.py',
                 'plugins/module_utils/_executor.py', 'plugins/module_utils/_converge.py']
# fastest first: a mutant is killed by the first file that fails
DEFAULT_TESTS = [UNIT + 'test_plan.py', UNIT + 'test_plan_messages.py', UNIT + 'test_executor_reports.py', UNIT + 'test_converge_reports.py',
                 UNIT + 'test_executor.py', UNIT + 'test_converge.py', UNIT + 'test_act.py']
DEFAULT_DEEP_TESTS = [UNIT + 'test_plan_properties.py', UNIT + 'test_relations_plan.py']
DEFAULT_DEEP_PATHS = ['plugins/module_utils/_plan.py', 'plugins/module_utils/_foreign.py']


def mutmut_command():
    mutmut = os.path.join(os.path.dirname(sys.executable), 'mutmut')
    if not os.path.exists(mutmut):
        sys.exit('mutmut is not installed in this venv: %s -m pip install -r %s' % (sys.executable, REQUIREMENTS))
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
    def __init__(self, kind, match=None):
        self.kind = kind
        self.match = match
        self.value = None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, _traceback):
        if kind is None or not issubclass(kind, self.kind):
            raise AssertionError('did not raise %s' % self.kind.__name__)
        if self.match is not None and not re.search(self.match, str(value)):
            raise AssertionError('%r does not match %r' % (str(value), self.match))
        self.value = value
        return True


class _Mark:
    @staticmethod
    def parametrize(names, values, ids=None):  # pylint: disable=unused-argument
        def mark(function):
            # stacked decorators: every combination, like pytest
            function.parametrized = getattr(function, 'parametrized', []) + [
                ([name.strip() for name in names.split(',')], list(values))]
            return function
        return mark


def _fixture(function=None, scope='function'):
    def mark(inner):
        inner.fixture_scope = scope
        return inner
    return mark(function) if function is not None else mark


class _MonkeyPatch:
    def __init__(self):
        self.undo = []

    def setattr(self, target, name, value):
        self.undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def close(self):
        for target, name, value in reversed(self.undo):
            setattr(target, name, value)


class _Capsys:
    def __init__(self, stack):
        self.out, self.err = io.StringIO(), io.StringIO()
        stack.enter_context(contextlib.redirect_stdout(self.out))
        stack.enter_context(contextlib.redirect_stderr(self.err))

    def readouterr(self):
        result = types.SimpleNamespace(out=self.out.getvalue(), err=self.err.getvalue())
        for stream in (self.out, self.err):
            stream.seek(0)
            stream.truncate()
        return result


def test_harness():
    """Make the test files importable and runnable without pytest: a ``pytest`` that knows what
    our unit tests use (``raises``, ``mark.parametrize``, ``fixture``), the test directories and
    the collection on ``sys.path``, hypothesis without its example database (same examples
    every run)."""
    stub = types.ModuleType('pytest')
    stub.raises = _Raises
    stub.mark = _Mark
    stub.fixture = _fixture
    sys.modules['pytest'] = stub
    sys.path[:0] = [os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tests', 'unit')]
    from collection_tree import collection_tree, importable  # pylint: disable=import-outside-toplevel
    if not importable():
        sys.path.insert(0, collection_tree())
    from hypothesis import settings  # pylint: disable=import-outside-toplevel
    settings.register_profile('mutation', database=None, derandomize=True)
    settings.load_profile('mutation')


def _fixture_value(module, name, stack, shared):
    """``tmp_path``, ``monkeypatch``, ``capsys`` or a fixture of the test module. Module-scoped
    fixtures are made once per run (``shared``): ours build test files that no mutant changes."""
    if name == 'tmp_path':
        # in memory where possible: the kernel model renders its sysfs tree on every change
        shm = '/dev/shm' if os.access('/dev/shm', os.W_OK) else None
        directory = tempfile.mkdtemp(prefix='mutation-', dir=shm)
        stack.callback(shutil.rmtree, directory, True)
        return pathlib.Path(directory)
    if name == 'monkeypatch':
        patcher = _MonkeyPatch()
        stack.callback(patcher.close)
        return patcher
    if name == 'capsys':
        return _Capsys(stack)
    function = getattr(module, name)
    key = (module.__name__, name)
    if function.fixture_scope == 'module' and key in shared:
        return shared[key]
    value = function(**dict((arg, _fixture_value(module, arg, stack, shared))
                            for arg in inspect.signature(function).parameters))
    if inspect.isgenerator(value):
        generator, value = value, next(value)
        if function.fixture_scope != 'module':
            stack.callback(next, generator, None)
    if function.fixture_scope == 'module':
        shared[key] = value
    return value


def _test_calls(module):
    """(test function, parameter values) for every test of ``module``, parametrizations expanded."""
    for name, function in sorted(vars(module).items()):
        if not name.startswith('test_') or not callable(function):
            continue
        combos = [{}]
        for names, values in getattr(function, 'parametrized', []):
            combos = [dict(combo, **dict(zip(names, value if len(names) > 1 else (value,))))
                      for combo in combos for value in values]
        for combo in combos:
            yield function, combo


def run_test_file(path, shared):
    """Import the test file afresh and run every test in it; the first failure raises."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(os.path.join(ROOT, path))))
    name = os.path.splitext(os.path.basename(path))[0]
    sys.modules.pop(name, None)
    module = __import__(name)
    count = 0
    for function, values in _test_calls(module):
        with contextlib.ExitStack() as stack:
            function(**dict((arg, values[arg] if arg in values else _fixture_value(module, arg, stack, shared))
                            for arg in inspect.signature(function).parameters))
        count += 1
    return count


def run_plain_tests(paths):
    """Run the tests of ``paths`` in this process, without pytest's start-up (the runner mutmut
    starts per mutant with --subprocess). Exit status 1 at the first failure, like ``pytest -x``."""
    test_harness()
    shared = {}
    count = sum(run_test_file(path, shared) for path in paths)
    print('%d tests passed' % count)
    return 0


class _Timeout(Exception):
    pass


_IMPORT = re.compile(r'^\s*from\s+ansible_collections\.kernelops\.livepatch\.plugins\.module_utils(?:\.(\w+))?'
                     r'\s+import\s+(\([^)]*\)|[^\n]*)', re.M)


def _imported(text):
    """Short names of the collection's module_utils a source file imports."""
    for module, names in _IMPORT.findall(text):
        if module:
            yield module
        else:
            for name in names.strip('()').split(','):
                yield name.split(' as ')[0].strip()


class Mutants:
    """The modules under test, loaded as they are or with one mutant, in this process.

    A mutant is loaded as the module itself, and the modules not under test that import one under
    test (the runner, the modules) are loaded again on top of it.
    """

    def __init__(self, paths):
        self.paths = paths
        self.names = dict((path, PACKAGE + os.path.splitext(os.path.basename(path))[0]) for path in paths)
        self.sources = {}
        for path in paths:
            with open(os.path.join(ROOT, path)) as handle:
                self.sources[path] = handle.read()

    def _load(self, name, filename, source):
        module = types.ModuleType(name)
        module.__file__ = filename
        sys.modules[name] = module
        # ``from ...module_utils import _converge`` reads the package's attribute: point it here too,
        # or a test holds the module as first imported while the code under test uses this one
        setattr(importlib.import_module(PACKAGE.rstrip('.')), name.rsplit('.', 1)[1], module)
        exec(compile(source, filename, 'exec'), module.__dict__)  # pylint: disable=exec-used

    def load(self, mutated_path=None, mutated_source=None):
        """Load the modules under test (one of them mutated) and every module of the collection
        that imports one of them, each after the modules it imports."""
        texts = dict((self.names[path], (os.path.join(ROOT, path), self.sources[path])) for path in self.paths)
        if mutated_path is not None:
            texts[self.names[mutated_path]] = (os.path.join(ROOT, mutated_path), mutated_source)
        for name, module in list(sys.modules.items()):
            filename = getattr(module, '__file__', None) or ''
            if name.startswith(PACKAGE) and name not in texts and filename.endswith('.py'):
                with open(filename) as handle:
                    texts[name] = (filename, handle.read())
        imports = dict((name, set(PACKAGE + short for short in _imported(text)) & set(texts))
                       for name, (_filename, text) in texts.items())
        affected = set(self.names.values())
        while True:
            more = set(name for name, used in imports.items() if used & affected) - affected
            if not more:
                break
            affected |= more
        done = set()
        while affected - done:
            for name in sorted(affected - done):
                if not (imports[name] & affected) - done:
                    self._load(name, *texts[name])
                    done.add(name)

    def each(self, mutmut):
        """(path, line, mutated source) of every mutant mutmut's operators make."""
        for path in self.paths:
            for mutation_id in mutmut.list_mutations(mutmut.Context(source=self.sources[path], filename=path)):
                mutated, _count = mutmut.mutate(mutmut.Context(source=self.sources[path], mutation_id=mutation_id,
                                                               filename=path))
                yield path, mutation_id.line_number + 1, mutated


def killed_by(tests, shared, seconds=60):
    """The first test file whose tests fail on the code as loaded now, 'timeout', or None."""
    def alarm(_signum, _frame):
        raise _Timeout()
    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        for test in tests:
            with open(os.devnull, 'w') as sink, contextlib.redirect_stdout(sink):
                run_test_file(test, shared)
        return None
    except _Timeout:
        return 'timeout'
    except Exception:  # pylint: disable=broad-except
        return test  # any failure or exception: the tests noticed
    finally:
        signal.alarm(0)


def _changed_lines(source, mutated):
    import difflib  # pylint: disable=import-outside-toplevel
    diff = difflib.unified_diff(source.splitlines(), mutated.splitlines(), lineterm='', n=0)
    return [text for text in diff if text[:1] in '-+' and text[:3] not in ('---', '+++')]


# The mutant of issue 14: the planner keeps one patch fewer of the common bottom (pops one too many).
POP_ONE_TOO_MANY = ('plugins/module_utils/_plan.py', '    return kept, uncertain\n',
                    '    return max(kept - 1, 0), uncertain\n')


def pop_one_too_many(mutants, property_tests, shared):
    """Show that the property tests alone (no hand-written example) kill the pop-one-too-many mutant."""
    path, before, after = POP_ONE_TOO_MANY
    if path not in mutants.sources or mutants.sources[path].count(before) != 1:
        print('pop-one-too-many mutant: %s has no single %r to change' % (path, before.strip()))
        return False
    mutants.load(path, mutants.sources[path].replace(before, after))
    verdict = killed_by(property_tests, shared, seconds=600)
    mutants.load()
    print('pop-one-too-many mutant (%s: %s -> %s) against %s alone: %s' % (
        path, before.strip(), after.strip(), ' '.join(property_tests),
        'killed by %s' % verdict if verdict not in (None, 'timeout') else 'NOT KILLED (%s)' % verdict))
    return verdict not in (None, 'timeout')


def in_process(paths, tests, deep_tests, show_survivors, deep_paths=None):
    """Make every mutant with mutmut's own operators and run the tests on it, in this process.

    One process instead of one per mutant: on a loaded machine, start-up is most of the cost.
    ``tests`` run on every mutant (stopping at the first file that fails); ``deep_tests`` only on
    the mutants of ``deep_paths`` (default: all) that survive them.
    """
    import mutmut  # pylint: disable=import-outside-toplevel
    test_harness()
    mutants = Mutants(paths)
    shared = {}
    mutants.load()
    for test in tests + deep_tests:  # the tests must pass on the code as it is
        print('%s: %d tests pass on the code as it is' % (test, run_test_file(test, shared)))
    counts = {'killed': 0, 'survived': 0, 'timeout': 0}
    by_file = {}
    survivors = []
    start = time.monotonic()
    for number, (path, line, mutated) in enumerate(mutants.each(mutmut), 1):
        if number % 25 == 0:
            print('  %d mutants, %d killed, %.0f s' % (number - 1, counts['killed'], time.monotonic() - start))
            sys.stdout.flush()
        mutants.load(path, mutated)
        verdict = killed_by(tests, shared)
        if verdict is None and deep_tests and (deep_paths is None or path in deep_paths):
            verdict = killed_by(deep_tests, shared, seconds=600)
        if verdict in ('timeout', None):
            status = 'timed out' if verdict else 'survived'
            counts['timeout' if verdict else 'survived'] += 1
            survivors.append((path, line, mutated, status))
            # as it happens: a long run can be read before it ends
            print('  %s: %s:%d %s' % (status, path, line, ' | '.join(_changed_lines(mutants.sources[path], mutated))
                                      if show_survivors else ''))
            sys.stdout.flush()
        else:
            counts['killed'] += 1
            by_file[verdict] = by_file.get(verdict, 0) + 1
    mutants.load()
    total = sum(counts.values())
    print('mutants: %d; killed %d, survived %d, timed out %d (%.0f s)' % (
        total, counts['killed'], counts['survived'], counts['timeout'], time.monotonic() - start))
    print('killed first by: %s' % ', '.join('%s %d' % item for item in sorted(by_file.items())))
    score = 100.0 * counts['killed'] / total if total else 0.0
    print('score: %.1f%% killed (%d of %d) over %s' % (score, counts['killed'], total, ' '.join(paths)))
    for path, line, mutated, status in survivors:
        print('%s: %s:%d' % (status, path, line))
        if show_survivors:
            print('    ' + '\n    '.join(_changed_lines(mutants.sources[path], mutated)))
    shown = pop_one_too_many(mutants, [test for test in tests + deep_tests if 'properties' in test] or deep_tests,
                             shared)
    return 0 if not counts['survived'] and not counts['timeout'] and shown else 2


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
    parser.add_argument('--deep-paths', nargs='*', default=DEFAULT_DEEP_PATHS,
                        help='files whose surviving mutants run --deep-tests (the property tests check the planner; '
                             'on a loaded machine they take a minute per mutant)')
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
        return in_process(args.paths, args.tests, args.deep_tests, args.show_survivors, args.deep_paths)
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
