# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""lab/klab/payload_bytecode.py (the test guests' bytecode cache for AnsiballZ payload zips), run
here in a separate Python on zips built by the test: the modules import with their own values and
file names, zipimport compiles nothing, a second zip of the same sources compiles nothing and names
its own file in tracebacks, a changed source is compiled again, and without the cache directory
the hook is not installed at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import pytest

KLAB = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))),
                    'lab', 'klab')

# Imports the zip's modules with the hook (cache directory argv[1]) and reports what a caller sees;
# zipimport's own compiles are counted by wrapping its private _compile_source where it has one.
DRIVER = textwrap.dedent('''
    import json, sys, traceback, zipimport
    sys.path.insert(0, %(klab)r)
    import payload_bytecode
    payload_bytecode.CACHE = sys.argv[1]
    payload_bytecode.install()
    compiled = []
    original = getattr(zipimport, '_compile_source', None)
    if original is not None:
        zipimport._compile_source = lambda path, source: compiled.append(path) or original(path, source)
    sys.path.insert(0, sys.argv[2])
    import pkg.mod, pkg.sub.leaf, nspace.part
    try:
        pkg.mod.fail()
    except ValueError:
        frames = [frame.filename for frame in traceback.extract_tb(sys.exc_info()[2])]
    print(json.dumps({'hooked': payload_bytecode.path_hook in sys.path_hooks,
                      'values': [pkg.mod.VALUE, pkg.sub.leaf.VALUE, nspace.part.VALUE],
                      'files': [pkg.__file__, pkg.mod.__file__, pkg.sub.leaf.__file__, nspace.part.__file__],
                      'loader': type(pkg.mod.__loader__).__name__, 'frames': frames[1:],
                      'zip_compiles': compiled if original is not None else None}))
''') % {'klab': KLAB}

SOURCES = {
    'pkg/__init__.py': 'PKG = 1\n',
    'pkg/mod.py': 'VALUE = "mod-1"\n\n\ndef fail():\n    raise ValueError("here")\n',
    'pkg/sub/__init__.py': '',
    'pkg/sub/leaf.py': 'from pkg.mod import VALUE as _M\nVALUE = "leaf+" + _M\n',
    'nspace/part.py': 'VALUE = "ns"\n',  # no __init__.py: a namespace package
}


def make_zip(path, sources):
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('nspace/', '')  # zipimport finds a namespace portion by its directory entry
        for name, text in sources.items():
            archive.writestr(name, text)
    return str(path)


def run(tmp_path, cache, archive):
    python = shutil.which('python3') or sys.executable
    script = tmp_path / 'driver.py'
    script.write_text(DRIVER)
    done = subprocess.run([python, '-I', str(script), str(cache), archive], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def cache(tmp_path):
    path = tmp_path / 'cache'
    path.mkdir()
    return path


def test_first_import_fills_the_cache_and_zipimport_compiles_nothing(tmp_path, cache):
    archive = make_zip(tmp_path / 'ansible_one_payload.zip', SOURCES)
    seen = run(tmp_path, cache, archive)
    assert seen['hooked'] and seen['loader'] == 'PayloadLoader'
    assert seen['values'] == ['mod-1', 'leaf+mod-1', 'ns']
    assert seen['files'] == [os.path.join(archive, name) for name in
                             ('pkg/__init__.py', 'pkg/mod.py', 'pkg/sub/leaf.py', 'nspace/part.py')]
    assert seen['frames'] == [os.path.join(archive, 'pkg/mod.py')]
    # every module with a source, the namespace package's too, is compiled once, by the hook (the
    # namespace package itself, a directory without __init__.py, is zipimport's and has no code)
    assert len(os.listdir(cache)) == len(SOURCES)
    if seen['zip_compiles'] is not None:
        assert seen['zip_compiles'] == []


def test_the_same_sources_in_another_zip_compile_nothing_and_name_that_zip(tmp_path, cache):
    run(tmp_path, cache, make_zip(tmp_path / 'ansible_one_payload.zip', SOURCES))
    entries = sorted(os.listdir(cache))
    other = make_zip(tmp_path / 'ansible_two_payload.zip', SOURCES)
    seen = run(tmp_path, cache, other)
    assert sorted(os.listdir(cache)) == entries
    assert seen['values'] == ['mod-1', 'leaf+mod-1', 'ns']
    assert seen['frames'] == [os.path.join(other, 'pkg/mod.py')]


def test_a_changed_source_is_compiled_again(tmp_path, cache):
    run(tmp_path, cache, make_zip(tmp_path / 'ansible_one_payload.zip', SOURCES))
    before = set(os.listdir(cache))
    changed = dict(SOURCES, **{'pkg/mod.py': SOURCES['pkg/mod.py'].replace('mod-1', 'mod-2')})
    seen = run(tmp_path, cache, make_zip(tmp_path / 'ansible_three_payload.zip', changed))
    assert seen['values'] == ['mod-2', 'leaf+mod-2', 'ns']
    assert len(set(os.listdir(cache)) - before) == 1


def test_a_damaged_cache_entry_is_compiled_again(tmp_path, cache):
    archive = make_zip(tmp_path / 'ansible_one_payload.zip', SOURCES)
    run(tmp_path, cache, archive)
    for entry in os.listdir(cache):
        (cache / entry).write_bytes(b'not marshal data')
    assert run(tmp_path, cache, archive)['values'] == ['mod-1', 'leaf+mod-1', 'ns']


def test_without_the_cache_directory_nothing_is_hooked(tmp_path):
    seen = run(tmp_path, tmp_path / 'absent', make_zip(tmp_path / 'ansible_one_payload.zip', SOURCES))
    assert not seen['hooked'] and seen['loader'] == 'zipimporter'
    assert seen['values'] == ['mod-1', 'leaf+mod-1', 'ns']
    assert not (tmp_path / 'absent').exists()


def test_a_zip_that_is_not_a_payload_is_left_to_zipimport(tmp_path, cache):
    seen = run(tmp_path, cache, make_zip(tmp_path / 'other.zip', SOURCES))
    assert seen['hooked'] and seen['loader'] == 'zipimporter'
    assert seen['values'] == ['mod-1', 'leaf+mod-1', 'ns'] and os.listdir(cache) == []
