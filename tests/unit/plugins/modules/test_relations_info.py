# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""livepatch_info's ``relations``: from the journal's files, from O(files), refused files are unknown."""

from __future__ import annotations

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import open_module
from ansible_collections.kernelops.livepatch.plugins.modules import livepatch_info

from test_modules import Host, run, stack  # pylint: disable=import-error
from test_relations_factory import klp_image  # pylint: disable=import-error


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def pairs(result):
    return sorted((rel['lower'], rel['upper'], rel['kind'], rel['source']) for rel in result['relations'])


def test_files_under_tmp_are_refused_so_every_pair_is_unknown(host, capsys):
    stack(host, capsys, ['a', 'b'])
    result = run(livepatch_info, capsys, root=host.model.root)
    assert pairs(result) == [('a', 'b', 'unknown', 'file')]
    assert all('unsafe_path' in line for line in result['relations'][0]['evidence'])


def test_files_given_are_read_and_placed_above_the_live_stack(host, capsys, monkeypatch):
    monkeypatch.setattr(livepatch_info, 'open_module', lambda path: open_module(path, host.trust))
    stack(host, capsys, ['a', 'b'])
    files = []
    for name, args in (('a', {'funcs': (('vmlinux', 'f', 0),), 'exports': ('h',)}),
                       ('b', {'funcs': (('vmlinux', 'g', 0),), 'undefined': ('h',)}),
                       ('c', {'funcs': (('vmlinux', 'f', 1),)})):
        path = host.dir / ('rel-%s.ko' % name)
        path.write_bytes(klp_image(name, **args))
        files.append(str(path))
    result = run(livepatch_info, capsys, root=host.model.root, files=files)
    assert pairs(result) == [('a', 'b', 'uses_symbol', 'file'), ('a', 'c', 'same_function', 'file')]
    # without the files, the journal's (kofactory modules without a symbol table) say nothing for sure
    bare = run(livepatch_info, capsys, root=host.model.root)
    assert pairs(bare) == [('a', 'b', 'unknown', 'file')]
    assert any('stripped' in line for line in bare['relations'][0]['evidence'])
