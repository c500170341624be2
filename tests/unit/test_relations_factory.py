# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write ELF64 relocatable images shaped like a livepatch module built from C.

What gcc and modpost put in a ``.ko`` that the relations reader looks at: ``klp_patch``,
``klp_object``, ``klp_func`` and ``klp_state`` in ``.data`` with their pointers as ``R_X86_64_64``
relocations (against section symbols, as gas writes them), strings in ``.rodata.str1.1``,
``__this_module`` in ``.gnu.linkonce.this_module``, undefined symbols, ``.klp.sym.*`` symbols,
``.klp.rela.*`` sections and ``__ksymtab_NAME`` symbols. The struct strides are deliberately not
the kernel's, so a reader that assumed a struct size would fail here.
"""

from __future__ import annotations

import struct

R_X86_64_64 = 1
SHN_LIVEPATCH = 0xff20
OBJECT_STRIDE = 72  # not sizeof(struct klp_object) on any kernel
FUNC_STRIDE = 56  # not sizeof(struct klp_func) either


def _section_header(name_off, sh_type, flags, offset, size, link=0, info=0, align=8, entsize=0):
    return struct.pack('<IIQQQQIIQQ', name_off, sh_type, flags, 0, offset, size, link, info, align, entsize)


def klp_image(name, funcs=(('vmlinux', 'old_fn', 0),), states=(), undefined=(), exports=(), klp_syms=(),
              klp_rela_objects=(), depends=(), symtab=True, machine=62, build_id=None,
              release='6.12.0'):
    """``funcs``: (object, old_name, old_sympos); object 'vmlinux' is written as a NULL name."""
    objects = []
    for obj, old_name, sympos in funcs:
        if not objects or objects[-1][0] != obj:
            objects.append((obj, []))
        objects[-1][1].append((old_name, sympos))
    strings = b'\x00'
    string_at = {}

    def intern(text):
        nonlocal strings
        if text not in string_at:
            string_at[text] = len(strings)
            strings += text.encode() + b'\x00'
        return string_at[text]

    text = b'\x90' * 16 * len(funcs)  # one new function of 16 bytes per klp_func
    relocs = []  # (offset in .data, section symbol index, addend); 1 .text, 2 .rodata.str1.1, 3 .data, 4 this_module
    objs_at = 64
    funcs_at = objs_at + OBJECT_STRIDE * (len(objects) + 1)
    data = bytearray(funcs_at)
    relocs.append((0, 'this_module', 0))
    relocs.append((8, 3, objs_at))
    new_index = 0
    for index, (obj, entries) in enumerate(objects):
        at = objs_at + index * OBJECT_STRIDE
        if obj != 'vmlinux':
            relocs.append((at, 2, intern(obj)))
        array = len(data)
        relocs.append((at + 8, 3, array))
        data += bytes(FUNC_STRIDE * (len(entries) + 1))
        for position, (old_name, sympos) in enumerate(entries):
            entry = array + position * FUNC_STRIDE
            relocs.append((entry, 2, intern(old_name)))
            relocs.append((entry + 8, 1, new_index * 16))
            struct.pack_into('<Q', data, entry + 16, sympos)
            new_index += 1
    if states:
        relocs.append((16, 3, len(data)))
        for state_id in states:
            data += struct.pack('<QIIQ', state_id, 1, 0, 0)
        data += bytes(24)
    modinfo = b'name=%s\x00livepatch=Y\x00depends=%s\x00vermagic=%s SMP mod_unload\x00' % (
        name.encode(), ','.join(depends).encode(), release.encode())

    symbols = [(0, 0, 0, 0)]  # (name offset, info, shndx, value)
    symstr = b'\x00'

    def add_symbol(sym_name, info, shndx, value=0):
        nonlocal symstr
        symbols.append((len(symstr), info, shndx, value))
        symstr += sym_name.encode() + b'\x00'
        return len(symbols) - 1

    sections = [('.text', 1, 0x6, bytes(text)), ('.rodata.str1.1', 1, 0x32, strings), ('.data', 1, 0x3, bytes(data)),
                ('.gnu.linkonce.this_module', 1, 0x3, bytes(64)), ('.modinfo', 1, 0x2, modinfo)]
    if build_id:
        desc = bytes.fromhex(build_id)
        sections.append(('.note.gnu.build-id', 7, 0x2, struct.pack('<III', 4, len(desc), 3) + b'GNU\x00' + desc))
    if exports:
        sections.append(('__ksymtab_gpl', 1, 0x2, bytes(12 * len(exports))))
    for obj in klp_rela_objects:
        sections.append(('.klp.rela.%s.text' % obj, 4, 0x100000 | 0x40, b''))
    for index in (1, 2, 3):
        add_symbol('', 3, index)  # STT_SECTION, STB_LOCAL
    for position, sym_name in enumerate(exports):
        add_symbol('__ksymtab_' + sym_name, 0, 7 if build_id else 6, 12 * position)
    first_global = len(symbols)
    this_module = add_symbol('__this_module', (1 << 4) | 1, 4)
    for sym_name in undefined:
        add_symbol(sym_name, 1 << 4, 0)
    for sym_name in klp_syms:
        add_symbol(sym_name, 1 << 4, SHN_LIVEPATCH)
    rela = b''.join(struct.pack('<QQq', offset, ((this_module if sym == 'this_module' else sym) << 32) | R_X86_64_64,
                                addend) for offset, sym, addend in relocs)
    symtab_index = len(sections) + 2  # after .rela.data
    sections.append(('.rela.data', 4, 0x40, rela, symtab_index, 3, 24))
    if symtab:
        blob = b''.join(struct.pack('<IBBHQQ', off, info, 0, shndx, value, 0) for off, info, shndx, value in symbols)
        sections.append(('.symtab', 2, 0, blob, symtab_index + 1, first_global, 24))
        sections.append(('.strtab', 3, 0, symstr))
    return _write(sections, machine)


def _write(sections, machine):
    shstr = b'\x00'
    offsets = []
    for entry in sections + [('.shstrtab',)]:
        offsets.append(len(shstr))
        shstr += entry[0].encode() + b'\x00'
    body = b''
    headers = [bytes(64)]
    cursor = 64
    for position, entry in enumerate(sections + [('.shstrtab', 3, 0, shstr)]):
        sec_name, sh_type, flags, blob = entry[:4]
        link, info, entsize = (entry[4:7] + (0, 0, 0))[:3] if len(entry) > 4 else (0, 0, 0)
        pad = (8 - cursor % 8) % 8
        body += bytes(pad)
        cursor += pad
        headers.append(_section_header(offsets[position], sh_type, flags, cursor, len(blob), link, info, 8, entsize))
        body += blob
        cursor += len(blob)
        del sec_name
    pad = (8 - cursor % 8) % 8
    body += bytes(pad)
    shoff = cursor + pad
    shnum = len(headers)
    header = b'\x7fELF' + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack('<HHIQQQIHHHHHH', 1, machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64, shnum, shnum - 1)
    return header + body + b''.join(headers)
