# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Relations between patches: the ELF evidence reader (checked against pyelftools), sysfs, pairs."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from ansible_collections.kernelops.livepatch.plugins.module_utils._elf import KoFileError, parse_module
from ansible_collections.kernelops.livepatch.plugins.module_utils._klp_elf import (
    Function, parse_klp_symbol, read_module_evidence,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._relations import (
    KINDS, PatchEvidence, evidence_for_plan, gather, read_live, relations,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError

from test_relations_factory import klp_image  # pylint: disable=import-error

LAB_CACHE = Path(os.path.expanduser('~/.cache/kernelops-livepatch-lab/patches'))


def evidence(name, **kwargs):
    return read_module_evidence(klp_image(name, **kwargs), '/lib/modules/%s.ko' % name)


def kinds(found, source='file'):
    return sorted(set((rel.lower, rel.upper, rel.kind) for rel in found if rel.source == source))


# --- the reader ---------------------------------------------------------------------------------

READER_CASES = [
    # (id, factory arguments, expected functions, states, exports, shadow, klp symbols)
    ('one-vmlinux', {}, ['vmlinux:old_fn,1'], (), (), (), ()),
    ('sympos-kept', {'funcs': (('vmlinux', 'dup', 2), ('vmlinux', 'other', 0))},
     ['vmlinux:dup,2', 'vmlinux:other,1'], (), (), (), ()),
    ('two-objects', {'funcs': (('vmlinux', 'a', 0), ('ext4', 'ext4_fn', 0), ('ext4', 'ext4_gn', 3))},
     ['ext4:ext4_fn,1', 'ext4:ext4_gn,3', 'vmlinux:a,1'], (), (), (), ()),
    ('states', {'states': (7, 1)}, ['vmlinux:old_fn,1'], (1, 7), (), (), ()),
    ('exports', {'exports': ('lp_helper', 'lp_value')}, ['vmlinux:old_fn,1'], (), ('lp_helper', 'lp_value'), (), ()),
    ('shadow', {'undefined': ('klp_shadow_get', 'printk')}, ['vmlinux:old_fn,1'], (), (), ('klp_shadow_get',), ()),
    ('klp-sym', {'klp_syms': ('.klp.sym.vmlinux.foo.isra.0,2', '.klp.sym.ext4.bar,0')},
     ['vmlinux:old_fn,1'], (), (), (), ('ext4:bar,1', 'vmlinux:foo.isra.0,2')),
]


@pytest.mark.parametrize('args,functions,states,exports,shadow,klp', [case[1:] for case in READER_CASES],
                         ids=[case[0] for case in READER_CASES])
def test_reader(args, functions, states, exports, shadow, klp):
    found = evidence('lp', **args)
    assert [func.key() for func in found.functions] == functions
    assert found.states == states
    assert found.exports == exports
    assert found.shadow == shadow
    assert tuple(sym.key() for sym in found.klp_symbols) == klp
    assert found.problems == ()


def test_reader_klp_rela_objects_and_depends():
    found = evidence('lp', klp_rela_objects=('vmlinux', 'ext4'), depends=('lp_base',))
    assert found.klp_objects == ('ext4', 'vmlinux')
    assert found.depends == ('lp_base',)


@pytest.mark.parametrize('args,problem', [
    ({'symtab': False}, 'stripped'),
    ({'funcs': ()}, 'no klp_func'),
    ({'machine': 3}, 'ELF machine 3'),
], ids=['stripped', 'no-funcs', 'i386'])
def test_reader_reports_what_it_cannot_read(args, problem):
    found = evidence('lp', **args)
    assert any(problem in line for line in found.problems), found.problems


@pytest.mark.parametrize('text,expected', [
    ('.klp.sym.vmlinux.cmdline_proc_show,0', ('vmlinux', 'cmdline_proc_show', 0)),
    ('.klp.sym.ext4.ext4_fn.cold,12', ('ext4', 'ext4_fn.cold', 12)),
    ('.klp.sym.vmlinux,0', None), ('.klp.sym.vmlinux.f,x', None), ('.klp.sym..f,1', None), ('printk', None),
])
def test_parse_klp_symbol(text, expected):
    sym = parse_klp_symbol(text)
    assert (sym and (sym.object_name, sym.name, sym.sympos)) == expected


def pyelftools_evidence(data):
    """An independent reading of the same facts with pyelftools: undefined symbols, exports, klp_funcs."""
    elf = ELFFile(io.BytesIO(data))
    symtab = elf.get_section_by_name('.symtab')
    symbols = list(symtab.iter_symbols())
    undefined = sorted(set(sym.name for sym in symbols if sym.name and sym['st_shndx'] == 'SHN_UNDEF'))
    exports = sorted(sym.name[len('__ksymtab_'):] for sym in symbols if sym.name.startswith('__ksymtab_'))
    pointers = {}
    for section in elf.iter_sections():
        if not isinstance(section, RelocationSection) or section['sh_link'] != elf.get_section_index('.symtab'):
            continue
        target = elf.get_section(section['sh_info'])
        if target['sh_flags'] & 0x4 or not target['sh_flags'] & 0x2:
            continue
        for rel in section.iter_relocations():
            if rel['r_info_type'] == 1:
                sym = symbols[rel['r_info_sym']]
                pointers[(target.name, rel['r_offset'])] = (sym['st_shndx'], sym['st_value'] + rel['r_addend'])
    names = set()
    for (target, offset), (shndx, value) in pointers.items():
        code = pointers.get((target, offset + 8))
        if not isinstance(shndx, int) or code is None or not isinstance(code[0], int):
            continue
        strings, text = elf.get_section(shndx), elf.get_section(code[0])
        if strings['sh_flags'] & 0x5 or not text['sh_flags'] & 0x4:
            continue
        blob = strings.data()
        names.add(blob[value:blob.index(b'\x00', value)].decode())
    return undefined, exports, sorted(names)


def lab_modules():
    if not LAB_CACHE.is_dir():
        return []
    return sorted(LAB_CACHE.glob('*/lab_*.ko'))


@pytest.mark.parametrize('args', [case[1] for case in READER_CASES], ids=[case[0] for case in READER_CASES])
def test_reader_agrees_with_pyelftools_on_factory_images(args):
    data = klp_image('lp', **args)
    found = read_module_evidence(data)
    undefined, exports, names = pyelftools_evidence(data)
    assert list(found.undefined) == undefined
    assert list(found.exports) == exports
    assert sorted(set(func.name for func in found.functions)) == names


@pytest.mark.skipif(not lab_modules(), reason='no lab build in ~/.cache/kernelops-livepatch-lab')
def test_reader_agrees_with_pyelftools_on_lab_builds():
    for path in lab_modules():
        data = path.read_bytes()
        found = read_module_evidence(data, str(path))
        undefined, exports, names = pyelftools_evidence(data)
        assert (list(found.undefined), list(found.exports)) == (undefined, exports), path
        assert sorted(set(func.name for func in found.functions)) == names, path
        # every lab patch patches exactly one function; the ordinary modules and lab_fail_pre (an empty
        # klp_func array, which gcc puts in .bss) none, and they say so: their relations are unknown
        none = ('lab_busy.ko', 'lab_plain.ko', 'lab_target.ko', 'lab_rel_lib.ko', 'lab_fail_pre.ko')
        assert len(found.functions) == (0 if path.name in none else 1), path
        assert bool(found.problems) == (path.name in none), path


def test_reader_is_total_on_damaged_images():
    rng = random.Random(13)
    seed = klp_image('lp', funcs=(('vmlinux', 'a', 0), ('ext4', 'b', 1)), states=(1,), exports=('x',),
                     klp_syms=('.klp.sym.vmlinux.c,0',), undefined=('klp_shadow_get',))
    outcomes = {'read': 0, 'refused': 0}
    for _round in range(400):
        data = bytearray(seed)
        for _flip in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.2:
            data = data[:rng.randrange(len(data))]
        try:
            read_module_evidence(bytes(data))
            outcomes['read'] += 1
        except KoFileError as exc:
            assert exc.rule == 'not_a_module'
            outcomes['refused'] += 1
    assert outcomes['read'] and outcomes['refused']


# --- relations between files -------------------------------------------------------------------

def fn(name, obj='vmlinux', pos=0):
    return (obj, name, pos)


PAIR_CASES = [
    # (id, lower factory args, upper factory args, expected kinds)
    ('unrelated', {'funcs': (fn('a'),)}, {'funcs': (fn('b'),)}, []),
    ('same-function', {'funcs': (fn('a'),)}, {'funcs': (fn('a'),)}, ['same_function']),
    ('same-function-sympos-0-is-1', {'funcs': (fn('a', pos=0),)}, {'funcs': (fn('a', pos=1),)}, ['same_function']),
    ('other-sympos', {'funcs': (fn('a', pos=1),)}, {'funcs': (fn('a', pos=2),)}, []),
    ('other-object', {'funcs': (fn('a', 'ext4'),)}, {'funcs': (fn('a', 'xfs'),)}, []),
    ('calls-by-undefined', {'funcs': (fn('a'),)}, {'funcs': (fn('b'),), 'undefined': ('a',)}, ['calls_patched']),
    ('calls-by-klp-sym', {'funcs': (fn('a', 'ext4', 2),)},
     {'funcs': (fn('b'),), 'klp_syms': ('.klp.sym.ext4.a,2',)}, ['calls_patched']),
    ('klp-sym-other-pos', {'funcs': (fn('a', 'ext4', 2),)},
     {'funcs': (fn('b'),), 'klp_syms': ('.klp.sym.ext4.a,3',)}, []),
    ('lower-calls-upper', {'funcs': (fn('a'),), 'undefined': ('b',)}, {'funcs': (fn('b'),)}, ['calls_patched']),
    ('uses-export', {'funcs': (fn('a'),), 'exports': ('helper',)},
     {'funcs': (fn('b'),), 'undefined': ('helper',)}, ['uses_symbol']),
    ('depends-only', {'funcs': (fn('a'),)}, {'funcs': (fn('b'),), 'depends': ('low',)}, ['uses_symbol']),
    ('export-unused', {'funcs': (fn('a'),), 'exports': ('helper',)}, {'funcs': (fn('b'),)}, []),
    ('state-in-common', {'funcs': (fn('a'),), 'states': (1, 2)}, {'funcs': (fn('b'),), 'states': (2,)},
     ['shared_state']),
    ('states-disjoint', {'funcs': (fn('a'),), 'states': (1,)}, {'funcs': (fn('b'),), 'states': (2,)}, []),
    ('shadow-both', {'funcs': (fn('a'),), 'undefined': ('klp_shadow_alloc',)},
     {'funcs': (fn('b'),), 'undefined': ('klp_shadow_get',)}, ['shared_state']),
    ('shadow-one', {'funcs': (fn('a'),), 'undefined': ('klp_shadow_alloc',)}, {'funcs': (fn('b'),)}, []),
    ('stripped-upper', {'funcs': (fn('a'),)}, {'funcs': (fn('b'),), 'symtab': False}, ['unknown']),
    ('everything', {'funcs': (fn('a'),), 'exports': ('h',), 'states': (5,), 'undefined': ('klp_shadow_get',)},
     {'funcs': (fn('a'), fn('c')), 'undefined': ('h', 'klp_shadow_free'), 'states': (5,), 'depends': ('low',)},
     ['same_function', 'shared_state', 'uses_symbol']),
]


@pytest.mark.parametrize('lower,upper,expected', [case[1:] for case in PAIR_CASES], ids=[case[0] for case in PAIR_CASES])
def test_pair(lower, upper, expected):
    low = PatchEvidence(name='low', module=evidence('low', **lower))
    up = PatchEvidence(name='up', module=evidence('up', **upper))
    found = relations([low, up])
    assert sorted(rel.kind for rel in found) == expected
    assert all(rel.lower == 'low' and rel.upper == 'up' and rel.evidence and rel.kind in KINDS for rel in found)


def test_missing_file_is_unknown_never_independent():
    found = relations([PatchEvidence(name='a', module=evidence('a')), PatchEvidence(name='b')])
    assert [(rel.kind, rel.evidence) for rel in found] == [
        ('unknown', ('b: no file for b, so its references, exports and states cannot be read',))]


def test_every_pair_in_stack_order():
    mods = [PatchEvidence(name=name, module=evidence(name, funcs=(fn('same'),))) for name in ('p1', 'p2', 'p3')]
    assert kinds(relations(mods)) == [('p1', 'p2', 'same_function'), ('p1', 'p3', 'same_function'),
                                      ('p2', 'p3', 'same_function')]


# --- sysfs and gather --------------------------------------------------------------------------

def live_tree(root, name, functions, holders=()):
    for obj, func in functions:
        os.makedirs(os.path.join(root, 'sys/kernel/livepatch', name, obj, func))
    for path in ('enabled', 'transition'):
        Path(root, 'sys/kernel/livepatch', name, path).write_text('1\n')
    os.makedirs(os.path.join(root, 'sys/module', name, 'holders'))
    for holder in holders:
        os.symlink('../../%s' % holder, os.path.join(root, 'sys/module', name, 'holders', holder))


def test_read_live(tmp_path):
    live_tree(str(tmp_path), 'lp', [('vmlinux', 'cmdline_proc_show,1'), ('ext4', 'ext4_fn,2')], holders=['lp_up'])
    found = read_live(str(tmp_path), 'lp')
    assert [func.key() for func in found.functions] == ['ext4:ext4_fn,2', 'vmlinux:cmdline_proc_show,1']
    assert found.holders == ('lp_up',)
    assert read_live(str(tmp_path), 'gone') is None


class _Image(object):
    def __init__(self, path, data):
        self.path, self.data = path, data
        self.info = parse_module(data, path)


def test_gather_files_and_sysfs_agree(tmp_path):
    root = str(tmp_path)
    live_tree(root, 'low', [('vmlinux', 'a,1')], holders=['up'])
    live_tree(root, 'up', [('vmlinux', 'a,1')])
    images = {'/p/low.ko': klp_image('low', funcs=(fn('a'),), exports=('h',)),
              '/p/up.ko': klp_image('up', funcs=(fn('a'),), undefined=('h',), depends=('low',)),
              '/p/new.ko': klp_image('new', funcs=(fn('z'),))}

    def open_module(path):
        if path not in images:
            raise LivepatchError('missing_file', '%s does not exist' % path)
        return _Image(path, images[path])

    patches = gather(root, ['low', 'up'], ['/p/new.ko', '/p/up.ko', '/p/low.ko', '/p/gone.ko'], open_module)
    assert [patch.name for patch in patches] == ['low', 'up', 'new', 'gone']
    found = relations(patches)
    assert kinds(found, 'file') == sorted([('low', 'up', 'same_function'), ('low', 'up', 'uses_symbol')] + [
        (name, 'gone', 'unknown') for name in ('low', 'up', 'new')])
    assert kinds(found, 'sysfs') == [('low', 'up', 'same_function'), ('low', 'up', 'uses_symbol')]
    gone = [rel for rel in found if rel.upper == 'gone'][0]
    assert 'missing_file' in gone.evidence[0]


def test_as_dict():
    found = relations([PatchEvidence(name=name, module=evidence(name)) for name in ('a', 'b')])
    assert [rel.as_dict() for rel in found] == [{'lower': 'a', 'upper': 'b', 'kind': 'same_function',
                                                 'evidence': ['vmlinux:old_fn,1'], 'source': 'file'}]
    assert Function(object_name='vmlinux', name='f', sympos=1).key() == 'vmlinux:f,1'


def test_gather_refuses_evidence_of_another_build(tmp_path):
    root = str(tmp_path)
    live_tree(root, 'low', [('vmlinux', 'a,1')])
    live_tree(root, 'up', [('vmlinux', 'b,1')])
    images = {'/p/low.ko': klp_image('low', funcs=(fn('a'),)), '/p/up.ko': klp_image('up', funcs=(fn('b'),), build_id='beef'),
              '/p/up2.ko': klp_image('up', funcs=(fn('a'),))}
    builds = {'low': None, 'up': 'feed'}  # the live up is another build than /p/up.ko
    found = relations(gather(root, ['low', 'up'], ['/p/low.ko', '/p/up.ko', '/p/up2.ko'],
                             lambda path: _Image(path, images[path]), builds))
    assert kinds(found) == [('low', 'up', 'unknown')] and kinds(found, 'sysfs') == []
    assert 'build ID' in found[0].evidence[0]
    with_same_build = relations(gather(root, ['low', 'up'], ['/p/low.ko', '/p/up.ko'],
                                       lambda path: _Image(path, images[path]), {'low': None, 'up': 'beef'}))
    assert with_same_build == []


class _Live(object):
    def __init__(self, name, build_id=None):
        self.name, self.build_id = name, build_id


class _Want(object):
    def __init__(self, name, path=None):
        self.name, self.path = name, path


PLAN_EVIDENCE_CASES = [
    # (id, desired [(name, file or None)], expected unrelated pairs)
    ('rebuilt-b-checked-as-both-builds', [('a', 'a'), ('b', 'b2'), ('c', 'c')], ['a-b', 'b-c']),
    ('new-build-related', [('a', 'a'), ('b', 'b_calls_a'), ('c', 'c')], ['b-c']),
    ('kept-without-file', [('a', 'a'), ('b', 'b2'), ('c', None)], ['a-b']),
    ('removed', [('a', 'a'), ('c', 'c')], ['a-b', 'b-c']),
    ('other-name', [('a', 'a'), ('n', 'n'), ('c', 'c')], ['a-b', 'a-n', 'b-c', 'c-n']),
]


@pytest.mark.parametrize('desired,expected', [case[1:] for case in PLAN_EVIDENCE_CASES],
                         ids=[case[0] for case in PLAN_EVIDENCE_CASES])
def test_evidence_for_plan(tmp_path, desired, expected):
    """Live a, b, c (a and c related: same function); which pairs a plan may treat as unrelated."""
    images = {'a': klp_image('a', funcs=(fn('f'), fn('a'))), 'b': klp_image('b', funcs=(fn('b'),)),
              'c': klp_image('c', funcs=(fn('f'),)), 'b2': klp_image('b', funcs=(fn('b'), fn('b_more'))),
              'b_calls_a': klp_image('b', funcs=(fn('b'),), undefined=('a',)), 'n': klp_image('n', funcs=(fn('n'),))}
    journal = dict((name, {'path': '/p/%s.ko' % name}) for name in 'abc')
    unrelated, found = evidence_for_plan(str(tmp_path), [_Live(name) for name in 'abc'], journal,
                                         [_Want(name, file and '/p/%s.ko' % file) for name, file in desired],
                                         lambda path: _Image(path, images[path[3:-3]]))
    assert sorted('-'.join(sorted(pair)) for pair in unrelated) == expected
    assert ('a', 'c', 'same_function') in kinds(found)
