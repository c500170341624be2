# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Write minimal but real ELF64 relocatable files that look like kernel modules to our reader.

Sections: ``.modinfo`` (NUL-separated key=value) and ``.note.gnu.build-id``. The kernel model
reads its own extra keys (``x_replace``, ``x_states``, ``x_pre_patch``, ``x_block``) from
``.modinfo`` to know how the fake patch behaves.
"""

from __future__ import annotations

import hashlib
import lzma
import struct


def build_id_note(build_id_hex):
    desc = bytes.fromhex(build_id_hex)
    return struct.pack('<III', 4, len(desc), 3) + b'GNU\x00' + desc


def elf_bytes(sections):
    """``sections``: list of (name, bytes). Returns a little-endian ELF64 ET_REL image."""
    names = [b''] + [name.encode() for name, _data in sections] + [b'.shstrtab']
    shstrtab = b'\x00'
    offsets = [0]
    for name in names[1:]:
        offsets.append(len(shstrtab))
        shstrtab += name + b'\x00'
    body = b''
    placed = []
    cursor = 64
    for _name, data in sections + [('.shstrtab', shstrtab)]:
        placed.append((cursor, len(data)))
        body += data
        cursor += len(data)
    pad = (8 - cursor % 8) % 8
    body += b'\x00' * pad
    shoff = cursor + pad
    shnum = len(names)
    header = b'\x7fELF' + bytes([2, 1, 1, 0]) + b'\x00' * 8
    header += struct.pack('<HHIQQQIHHHHHH', 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, shnum, shnum - 1)
    table = b'\x00' * 64
    for index, (offset, size) in enumerate(placed, 1):
        sh_type = 3 if index == shnum - 1 else (7 if names[index].startswith(b'.note') else 1)
        table += struct.pack('<IIQQQQIIQQ', offsets[index], sh_type, 0, 0, offset, size, 0, 0, 1, 0)
    return header + body + table


def make_ko(path, name, release='6.12.0-test-amd64', livepatch=True, build=None, replace=False, states=None,
            pre_patch=0, block=False, compress=None, extra=None):
    """Write a fake module file; ``build`` is any string that makes the build ID differ."""
    info = ['name=%s' % name, 'vermagic=%s SMP preempt mod_unload modversions ' % release, 'license=GPL']
    if livepatch:
        info.append('livepatch=Y')
    if replace:
        info.append('x_replace=1')
    if states:
        info.append('x_states=%s' % ','.join('%d:%d' % item for item in states))
    if pre_patch:
        info.append('x_pre_patch=%d' % pre_patch)
    if block:
        info.append('x_block=1')
    for key, value in (extra or {}).items():
        info.append('%s=%s' % (key, value))
    modinfo = b'\x00'.join(item.encode() for item in info) + b'\x00'
    build_id = hashlib.sha1(('%s/%s/%s' % (name, build, release)).encode()).hexdigest()
    data = elf_bytes([('.modinfo', modinfo), ('.note.gnu.build-id', build_id_note(build_id))])
    if compress == 'xz':
        data = lzma.compress(data, format=lzma.FORMAT_XZ)
    with open(path, 'wb') as handle:
        handle.write(data)
    return build_id
