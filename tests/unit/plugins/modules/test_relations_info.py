# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""livepatch_info's ``relations``: from the journal's files, from O(files), refused files are unknown."""

from __future__ import annotations

import hashlib
import json

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import open_module
from ansible_collections.kernelops.livepatch.plugins.modules import livepatch_info, livepatch_stack

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


def write(host, name, build, **args):
    """A klp_image for the model's kernel, with a build ID of its own (so builds compare for sure)."""
    path = host.dir / ('rel-%s-%s.ko' % (name, build))
    build_id = hashlib.sha1(('%s%s' % (name, build)).encode()).hexdigest()  # 20 bytes, as the model renders
    path.write_bytes(klp_image(name, release=host.model.release, build_id=build_id, **args))
    return {'path': str(path)}


def rel_stack(host, capsys, monkeypatch, entries, **extra):
    monkeypatch.setattr(livepatch_info, 'open_module', lambda path: open_module(path, host.trust))
    return run(livepatch_stack, capsys, stack=entries, **extra)


def test_skip_unrelated_replaces_a_middle_patch_without_popping(host, capsys, monkeypatch):
    a, b, c = (write(host, name, 'v1', funcs=(('vmlinux', 'f_' + name, 0),)) for name in 'abc')
    b2 = write(host, 'b', 'v2', funcs=(('vmlinux', 'f_b', 0),))
    assert rel_stack(host, capsys, monkeypatch, [a, b, c])['stack_after'] == ['a', 'b', 'c']
    check = rel_stack(host, capsys, monkeypatch, [a, b2, c], skip_unrelated=True, check=True)
    assert [(s['action'], s['patch']) for s in check['plan']] == [('disable', 'b'), ('unload', 'b'), ('load', 'b')]
    assert any('rule skip_unrelated' in note for note in check['notes'])
    assert check['relations'] == []  # every pair checked (files of a, b, c, b v2; sysfs), nothing found
    done = rel_stack(host, capsys, monkeypatch, [a, b2, c], skip_unrelated=True)
    assert done['changed'] and done['stack_after'] == ['a', 'c', 'b']
    assert [p.name for p in host.model.observe().live_stack] == ['a', 'c', 'b']
    again = rel_stack(host, capsys, monkeypatch, [a, b2, c], skip_unrelated=True)
    assert again['changed'] is False
    # off again: the stack discipline puts b back below c
    off = rel_stack(host, capsys, monkeypatch, [a, b2, c])
    assert [(s['action'], s['patch']) for s in off['plan']][:2] == [('disable', 'b'), ('unload', 'b')]
    assert off['stack_after'] == ['a', 'b', 'c']


def test_skip_unrelated_pops_a_related_patch_and_says_why(host, capsys, monkeypatch):
    a = write(host, 'a', 'v1', funcs=(('vmlinux', 'f_a', 0),))
    b, b2 = (write(host, 'b', build, funcs=(('vmlinux', 'f_b', 0),)) for build in ('v1', 'v2'))
    c = write(host, 'c', 'v1', funcs=(('vmlinux', 'f_c', 0),), undefined=('f_b',))
    rel_stack(host, capsys, monkeypatch, [a, b, c])
    result = rel_stack(host, capsys, monkeypatch, [a, b2, c], skip_unrelated=True, check=True)
    assert [(s['action'], s['patch']) for s in result['plan']] == [
        ('disable', 'c'), ('unload', 'c'), ('disable', 'b'), ('unload', 'b'), ('load', 'b'), ('load', 'c')]
    assert result['notes'] == ['rule skip_unrelated not applied: popped and pushed again: c (calls_patched with b)']
    assert sorted(set((r['lower'], r['upper'], r['kind']) for r in result['relations'])) == [
        ('b', 'c', 'calls_patched')]


def related_stack(host, capsys, monkeypatch):
    """Live a, b, c, d; c calls the function b replaces, d patches one of its own. Returns the
    entries of a, b v2, c, d."""
    a, b, d = (write(host, name, 'v1', funcs=(('vmlinux', 'f_' + name, 0),)) for name in 'abd')
    b2 = write(host, 'b', 'v2', funcs=(('vmlinux', 'f_b', 0),))
    c = write(host, 'c', 'v1', funcs=(('vmlinux', 'f_c', 0),), undefined=('f_b',))
    rel_stack(host, capsys, monkeypatch, [a, b, c, d])
    return [a, b2, c, d]


def test_check_mode_names_the_relations_of_the_patches_popped_and_pushed_again(host, capsys, monkeypatch):
    """Option off: the plan is the stack's, and check mode shows what ties c and d to b (issue 13)."""
    entries = related_stack(host, capsys, monkeypatch)
    check = rel_stack(host, capsys, monkeypatch, entries, check=True)
    assert [(s['action'], s['patch']) for s in check['plan']][:2] == [('disable', 'd'), ('unload', 'd')]
    assert 'notes' not in check
    # c and d are popped and pushed again; b (both builds) is what changes; a is kept and not asked about
    assert [(r['lower'], r['upper'], r['kind'], r['source']) for r in check['relations']] == [
        ('b', 'c', 'calls_patched', 'file')]
    assert check['relations'][0]['evidence'] == ['c references f_b, which b replaces (vmlinux:f_b,1)']
    # a real run with the option off does not read the evidence, and says nothing new
    done = rel_stack(host, capsys, monkeypatch, entries)
    assert done['changed'] and 'relations' not in done and 'notes' not in done
    # nothing popped and pushed again (one patch pushed on top): nothing to say
    e = write(host, 'e', 'v1', funcs=(('vmlinux', 'f_e', 0),))
    assert 'relations' not in rel_stack(host, capsys, monkeypatch, entries + [e], check=True)


def test_check_mode_counts_a_popped_patch_without_evidence_as_unknown(host, capsys, monkeypatch):
    """The journal points the live d at a file that is gone: its pairs in the live stack are unknown."""
    entries = related_stack(host, capsys, monkeypatch)
    with open(host.journal.path) as handle:
        journal = json.load(handle)
    journal['d']['path'] = str(host.dir / 'gone.ko')
    with open(host.journal.path, 'w') as handle:
        json.dump(journal, handle)
    check = rel_stack(host, capsys, monkeypatch, entries, check=True)
    assert sorted((r['lower'], r['upper'], r['kind']) for r in check['relations']) == [
        ('b', 'c', 'calls_patched'), ('b', 'd', 'unknown')]
    unknown = [r for r in check['relations'] if r['kind'] == 'unknown'][0]
    assert any('gone.ko could not be read (missing_file)' in line for line in unknown['evidence'])


def test_skip_unrelated_names_each_patch_popped_again_with_its_relations(host, capsys, monkeypatch):
    entries = related_stack(host, capsys, monkeypatch)
    result = rel_stack(host, capsys, monkeypatch, entries, skip_unrelated=True, check=True)
    assert result['notes'] == ['rule skip_unrelated not applied: popped and pushed again: c (calls_patched with b); '
                               'd (none seen; popped with a patch below it)']
