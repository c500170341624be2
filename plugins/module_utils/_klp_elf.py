# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a livepatch module's ELF image shows about the functions it patches and the symbols it uses.

PRIVATE: this module_util may change at any time.

:func:`read_module_evidence` reads, from the decompressed image (``ModuleImage.data``):

- the functions it patches, ``(object, name, sympos)``, from its ``klp_func`` / ``klp_object``
  arrays. These are initialised data: each pointer in them is a relocation of the data section
  (``.rela.data``), so ``klp_func.old_name`` is a relocation to a string and ``new_func`` one to
  code, ``klp_object.funcs`` one to the first ``klp_func`` and ``klp_object.name`` a string or
  nothing (NULL: vmlinux). Layouts of include/linux/livepatch.h, the same in 6.1, 6.12 and 7.2:
  ``klp_func {old_name, new_func, old_sympos, ...}``, ``klp_object {name, funcs, ...}``,
  ``klp_patch {mod, objs, states, replace, ...}``, ``klp_state {id, version, data}``;
- its ``klp_state`` ids (``klp_patch.states``, the ``klp_patch`` found by its relocation to
  ``__this_module``);
- its undefined symbols (what the module loader resolves against vmlinux and other modules'
  exports), its ``.klp.sym.OBJ.NAME,POS`` symbols and the objects of its ``.klp.rela.OBJ.SEC``
  sections (the kernel's Documentation/livepatch/module-elf-format.rst: references to symbols
  the loader cannot resolve, resolved by livepatch when OBJ is loaded), the symbols it exports
  (``__ksymtab_NAME``, 6.1-7.2) and the shadow-variable API it calls (``klp_shadow_*``).

What cannot be read becomes a line in ``problems`` instead of an exception: a stripped module, a
machine whose pointer relocation we do not know, no ``klp_func`` array (kpatch-build keeps its
functions in ``.kpatch.funcs`` and builds the kernel's structures at load time). The caller must
treat a module with problems as related to everything (``_relations.py``), never as independent.
Work is bounded by the image size: one pass over the symbol table and each relocation section.
"""

from __future__ import annotations

import struct
from typing import Dict, List, Optional, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._elf import KoFileError, _Elf, parse_module
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['Function', 'KlpSymbol', 'ModuleEvidence', 'read_module_evidence', 'parse_klp_symbol']

SHT_SYMTAB, SHT_RELA, SHT_REL = 2, 4, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHN_UNDEF, SHN_LORESERVE = 0, 0xff00
STB_LOCAL = 0
KLP_SYM_PREFIX = '.klp.sym.'
KLP_RELA_PREFIX = '.klp.rela.'
KSYMTAB_PREFIX = '__ksymtab_'
SHADOW_PREFIX = 'klp_shadow_'
# The relocation that stores a whole pointer, by e_machine (each architecture's ELF psABI):
# x86_64 R_X86_64_64, arm64 R_AARCH64_ABS64, ppc64 R_PPC64_ADDR64, s390x R_390_64, riscv R_RISCV_64.
POINTER_RELOCATION = {62: 1, 183: 257, 21: 38, 22: 22, 243: 2}
MAX_STATES = 4096
MAX_STRING = 512


@value_object
class Function:
    """A patched function as sysfs names it: ``<patch>/<object>/<name>,<sympos>``."""

    object_name: str  # 'vmlinux' or a module name
    name: str
    sympos: int  # kernel/livepatch/core.c shows old_sympos 0 (the only one) as 1, so 0 is stored as 1

    def key(self) -> str:
        return '%s:%s,%d' % (self.object_name, self.name, self.sympos)


@value_object
class KlpSymbol:
    """A ``.klp.sym.OBJ.NAME,POS`` symbol: a reference livepatch resolves in OBJ at load time."""

    object_name: str
    name: str
    sympos: int  # as written; 0 means the only symbol of that name, as 1 does in sysfs

    def key(self) -> str:
        return '%s:%s,%d' % (self.object_name, self.name, self.sympos or 1)


@value_object
class ModuleEvidence:
    """What one module file shows; ``problems`` lists what could not be read."""

    name: str
    path: Optional[str]
    functions: Tuple[Function, ...]
    undefined: Tuple[str, ...]
    klp_symbols: Tuple[KlpSymbol, ...]
    klp_objects: Tuple[str, ...]
    exports: Tuple[str, ...]
    depends: Tuple[str, ...]
    states: Tuple[int, ...]
    shadow: Tuple[str, ...]
    problems: Tuple[str, ...]


def parse_klp_symbol(name: str) -> Optional[KlpSymbol]:
    """``.klp.sym.OBJ.NAME,POS`` (module-elf-format.rst); OBJ is a module name, so it has no dot."""
    if not name.startswith(KLP_SYM_PREFIX):
        return None
    rest = name[len(KLP_SYM_PREFIX):]
    obj, dot, tail = rest.partition('.')
    sym, comma, pos = tail.rpartition(',')
    if not obj or not dot or not comma or not sym or not pos.isdigit():
        return None
    return KlpSymbol(object_name=obj, name=sym, sympos=int(pos))


class _Image(object):
    """Sections by index, the symbol table, and the pointer relocations of allocated data."""

    def __init__(self, elf: _Elf) -> None:
        self.elf = elf
        self.ptr = 8 if elf.is64 else 4
        machine, = elf._unpack('H', 0x12)  # pylint: disable=protected-access
        self.pointer_type = POINTER_RELOCATION.get(machine)
        self.machine = machine
        self.symbols: List[Tuple[str, int, int, int]] = []  # name, bind, shndx, value
        # (section, offset) -> (section or None when undefined, offset, symbol name) it points to
        self.pointers: Dict[Tuple[int, int], Tuple[Optional[int], int, str]] = {}
        symtab = [index for index, fields in enumerate(elf.table) if fields[1] == SHT_SYMTAB]
        if symtab:
            self._read_symbols(symtab[0])
            for index, fields in enumerate(elf.table):
                if fields[1] in (SHT_RELA, SHT_REL) and fields[6] == symtab[0]:
                    self._read_relocations(index, fields)

    def bytes_of(self, index: int) -> bytes:
        fields = self.elf.table[index]
        if fields[1] == 8:  # SHT_NOBITS
            return b''
        return self.elf.data[fields[4]:fields[4] + fields[5]]

    def flags(self, index: int) -> int:
        return self.elf.table[index][2] if 0 < index < len(self.elf.table) else 0

    def _read_symbols(self, index: int) -> None:
        fields = self.elf.table[index]
        link = fields[6]
        strings = self.bytes_of(link) if 0 < link < len(self.elf.table) else b''
        blob = self.bytes_of(index)
        size, fmt = (24, 'IBBHQQ') if self.elf.is64 else (16, 'IIIBBH')
        for start in range(0, len(blob) - size + 1, size):
            entry = struct.unpack_from(self.elf.endian + fmt, blob, start)
            if self.elf.is64:
                name_off, info, shndx, value = entry[0], entry[1], entry[3], entry[4]
            else:
                name_off, value, info, shndx = entry[0], entry[1], entry[3], entry[5]
            end = strings.find(b'\x00', name_off) if name_off < len(strings) else -1
            name = strings[name_off:end].decode('ascii', 'replace') if end >= 0 else ''
            self.symbols.append((name, info >> 4, shndx, value))

    def _read_relocations(self, index: int, fields: tuple) -> None:
        target = fields[7]
        if self.pointer_type is None or not 0 < target < len(self.elf.table):
            return
        if self.flags(target) & SHF_ALLOC == 0 or self.flags(target) & SHF_EXECINSTR:
            return  # only initialised data holds the klp structures
        rela = fields[1] == SHT_RELA
        if self.elf.is64:
            size, fmt = (24, 'QQq') if rela else (16, 'QQ')
        else:
            size, fmt = (12, 'IIi') if rela else (8, 'II')
        blob = self.bytes_of(index)
        data = self.bytes_of(target)
        for start in range(0, len(blob) - size + 1, size):
            entry = struct.unpack_from(self.elf.endian + fmt, blob, start)
            offset, info = entry[0], entry[1]
            sym, kind = (info >> 32, info & 0xffffffff) if self.elf.is64 else (info >> 8, info & 0xff)
            if kind != self.pointer_type or sym >= len(self.symbols):
                continue
            addend = entry[2] if rela else self.word(data, offset)
            if addend is None:
                continue
            name, _bind, shndx, value = self.symbols[sym]
            if shndx == SHN_UNDEF or shndx >= SHN_LORESERVE:
                self.pointers[(target, offset)] = (None, addend, name)
            else:
                self.pointers[(target, offset)] = (shndx, value + addend, name)

    def word(self, data: bytes, offset: int) -> Optional[int]:
        if offset < 0 or offset + self.ptr > len(data):
            return None
        return struct.unpack_from(self.elf.endian + ('Q' if self.ptr == 8 else 'I'), data, offset)[0]

    def string(self, target: Tuple[Optional[int], int, str]) -> Optional[str]:
        section, offset = target[0], target[1]
        if section is None or self.flags(section) & (SHF_EXECINSTR | SHF_WRITE):
            return None
        data = self.bytes_of(section)
        end = data.find(b'\x00', offset, offset + MAX_STRING) if 0 <= offset < len(data) else -1
        if end <= offset:
            return None
        return data[offset:end].decode('ascii', 'replace')

    def is_code(self, target: Optional[Tuple[Optional[int], int, str]]) -> bool:
        return target is not None and target[0] is not None and bool(self.flags(target[0]) & SHF_EXECINSTR)


def _functions(image: _Image) -> Tuple[List[Function], Dict[Tuple[int, int], str], List[str]]:
    """Every ``klp_func`` (a string pointer followed by a code pointer), grouped by its ``klp_object``."""
    ptr = image.ptr
    entries: Dict[Tuple[int, int], Tuple[str, int]] = {}
    for (section, offset), target in image.pointers.items():
        name = image.string(target)
        if name is not None and image.is_code(image.pointers.get((section, offset + ptr))):
            sympos = image.word(image.bytes_of(section), offset + 2 * ptr)
            entries[(section, offset)] = (name, sympos or 1)
    objects: Dict[Tuple[int, int], str] = {}  # where a funcs array starts -> the object's name
    object_at: Dict[Tuple[int, int], str] = {}  # where a klp_object starts -> its name
    for (section, offset), target in image.pointers.items():
        if target[0] is not None and (target[0], target[1]) in entries and (section, offset - ptr) not in entries:
            name_target = image.pointers.get((section, offset - ptr))
            obj = image.string(name_target) if name_target else 'vmlinux'
            if obj is not None:
                objects[(target[0], target[1])] = obj
                object_at[(section, offset - ptr)] = obj
    functions = []
    problems = []
    for (section, offset), (name, sympos) in sorted(entries.items()):
        starts = [start for start in objects if start[0] == section and start[1] <= offset]
        if not starts:
            problems.append('a klp_func for %s belongs to no klp_object we could read' % name)
            continue
        functions.append(Function(object_name=objects[max(starts)], name=name, sympos=sympos))
    return functions, object_at, problems


def _states(image: _Image, object_at: Dict[Tuple[int, int], str]) -> Optional[List[int]]:
    """The ``klp_state`` ids of the ``klp_patch`` ({mod, objs, states}); None when no patch was found."""
    ptr = image.ptr
    for (section, offset), target in sorted(image.pointers.items(), key=lambda item: repr(item[0])):
        objs = image.pointers.get((section, offset + ptr))
        if target[2] != '__this_module' or target[1] != 0 or objs is None or (objs[0], objs[1]) not in object_at:
            continue
        states = image.pointers.get((section, offset + 2 * ptr))
        if states is None:
            return []
        if states[0] is None:
            return None
        data = image.bytes_of(states[0])
        ids = []
        for index in range(MAX_STATES):
            state_id = image.word(data, states[1] + index * 3 * ptr)
            if not state_id:  # the terminating { } entry, or the end of the section
                break
            ids.append(state_id)
        return ids
    return None


def read_module_evidence(data: bytes, path: str = '<bytes>') -> ModuleEvidence:
    """The evidence in the (decompressed) image ``data``; KoFileError only when it is no module at all."""
    info = parse_module(data, path)
    try:
        return _read(data, path, info.name, info.depends)
    except KoFileError:
        raise
    except (struct.error, OverflowError, ValueError, IndexError, TypeError, UnicodeError, MemoryError) as exc:
        return _empty(info.name, path, info.depends, 'the module could not be read (%s: %s)' % (
            type(exc).__name__, exc))


def _empty(name: str, path: str, depends: Tuple[str, ...], problem: str) -> ModuleEvidence:
    return ModuleEvidence(name=name, path=None if path == '<bytes>' else path, functions=(), undefined=(),
                          klp_symbols=(), klp_objects=(), exports=(), depends=depends, states=(), shadow=(),
                          problems=(problem,))


def _read(data: bytes, path: str, name: str, depends: Tuple[str, ...]) -> ModuleEvidence:
    image = _Image(_Elf(path, data))
    if not image.symbols:
        return _empty(name, path, depends, 'it has no symbol table (stripped), so its references cannot be read')
    problems: List[str] = []
    if image.pointer_type is None:
        problems.append('ELF machine %d is not one whose pointer relocations we read' % image.machine)
    functions, object_at, unassigned = _functions(image)
    problems.extend(unassigned)
    if not functions:
        problems.append('no klp_func array found (a module built by kpatch-build creates them at load time)')
    states = _states(image, object_at)
    if states is None:
        problems.append('no klp_patch structure found, so its klp_state ids are unknown')
    undefined = sorted(set(sym for sym, _bind, shndx, _value in image.symbols if sym and shndx == SHN_UNDEF))
    klp_symbols = sorted(set(filter(None, (parse_klp_symbol(sym) for sym, _b, _s, _v in image.symbols))),
                         key=lambda item: item.key())
    exports = sorted(set(sym[len(KSYMTAB_PREFIX):] for sym, bind, shndx, _v in image.symbols
                         if sym.startswith(KSYMTAB_PREFIX) and bind == STB_LOCAL and shndx != SHN_UNDEF))
    klp_objects = sorted(set(section[len(KLP_RELA_PREFIX):].split('.', 1)[0] for section in image.elf.names
                             if section.startswith(KLP_RELA_PREFIX)))
    return ModuleEvidence(
        name=name, path=None if path == '<bytes>' else path,
        functions=tuple(sorted(set(functions), key=lambda item: item.key())),
        undefined=tuple(undefined), klp_symbols=tuple(klp_symbols), klp_objects=tuple(klp_objects),
        exports=tuple(exports), depends=depends, states=tuple(sorted(set(states or ()))),
        shadow=tuple(sym for sym in undefined if sym.startswith(SHADOW_PREFIX)), problems=tuple(problems))
