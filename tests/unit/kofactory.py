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

import gzip
import hashlib
import io
import lzma
import struct
import zlib

# include/linux/module_signature.h
MODULE_SIG_STRING = b'~Module signature appended~\n'


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


def signature(sig=b'\x30' * 32):
    """What scripts/sign-file appends: the PKCS#7 blob, ``struct module_signature``, the marker."""
    # algo, hash, id_type (2 = PKEY_ID_PKCS7), signer_len, key_id_len, pad[3], sig_len (big endian)
    return sig + struct.pack('>BBBBB3xI', 0, 0, 2, 0, 0, len(sig)) + MODULE_SIG_STRING


def compress(data, how):
    if how == 'xz':
        return lzma.compress(data, format=lzma.FORMAT_XZ)
    if how == 'gz':
        return gzip.compress(data)
    assert how is None, how
    return data


def make_ko(path, name, release='6.12.0-test-amd64', livepatch=True, build=None, replace=False, states=None,
            pre_patch=0, block=False, compress=None, extra=None, signed=False):
    """Write a fake module file; ``build`` is any string that makes the build ID differ."""
    data, build_id = ko_bytes(name, release=release, livepatch=livepatch, build=build, replace=replace, states=states,
                              pre_patch=pre_patch, block=block, how=compress, extra=extra, signed=signed)
    with open(path, 'wb') as handle:
        handle.write(data)
    return build_id


def ko_bytes(name, release='6.12.0-test-amd64', livepatch=True, build=None, replace=False, states=None,
             pre_patch=0, block=False, how=None, extra=None, signed=False):
    """(file bytes, build ID) of a fake module; ``how``: None, 'xz' or 'gz'."""
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
    if signed:
        data += signature()
    return compress(data, how), build_id


def _crc32(data):
    return struct.pack('<I', zlib.crc32(data) & 0xffffffff)


def _varint(value):
    out = b''
    while value >= 0x80:
        out += bytes([value & 0x7f | 0x80])
        value >>= 7
    return out + bytes([value])


def xz_bomb(total, block=1 << 20):
    """A valid single-stream .xz file of ``total`` zero bytes (a multiple of ``block``), built in
    milliseconds: one LZMA2 block of ``block`` zeros, repeated (xz blocks are independent; xz -T
    writes multi-block files the same way). 1 GiB gives about 250 KB (``xz`` of 1 GiB of zeros: 156 KB, but 35 s to make).
    Layout from the .xz file format specification 1.1.0 (stream header, blocks, index, footer).
    """
    assert total % block == 0
    count = total // block
    flags = b'\x00\x01'  # check type 1: CRC32
    header = b'\xfd7zXZ\x00' + flags + _crc32(flags)
    packed = lzma.compress(b'\x00' * block, format=lzma.FORMAT_RAW,
                           filters=[{'id': lzma.FILTER_LZMA2, 'dict_size': 1 << 20}])
    # block header: size/4-1, flags (one filter, no sizes), filter 0x21 LZMA2, 1 property byte:
    # dictionary size 1 MiB = 2 << 19, encoded as 16; padded to 8 bytes, then its CRC32
    head = bytes([0x02, 0x00, 0x21, 0x01, 16]) + b'\x00' * 3
    head += _crc32(head)
    unpadded = len(head) + len(packed) + 4
    one = head + packed + b'\x00' * ((4 - len(packed) % 4) % 4) + _crc32(b'\x00' * block)
    index = b'\x00' + _varint(count) + (_varint(unpadded) + _varint(block)) * count
    index += b'\x00' * ((4 - len(index) % 4) % 4)
    index += _crc32(index)
    backward = struct.pack('<I', len(index) // 4 - 1)
    footer = _crc32(backward + flags) + backward + flags + b'YZ'
    return header + one * count + index + footer


# --- mutations for the fuzz tests (tests/unit/.../test_kofile_fuzz.py, benchmarks/fuzz_kofile.py) ---

def _header_fields(elf):
    """(offset, width) of every ELF64 header and section header field a reader trusts."""
    fields = [(4, 1), (5, 1), (0x10, 2), (0x28, 8), (0x3A, 2), (0x3C, 2), (0x3E, 2)]
    if len(elf) >= 64 and elf[:4] == b'\x7fELF':
        shoff, = struct.unpack_from('<Q', elf, 0x28)
        shnum, = struct.unpack_from('<H', elf, 0x3C)
        for index in range(min(shnum, 16)):
            base = shoff + index * 64
            fields += [(base, 4), (base + 4, 4), (base + 0x18, 8), (base + 0x20, 8)]
    return fields


def extremes(width, size):
    """Values a careless reader mishandles, for a field of ``width`` bytes in a file of ``size``."""
    top = (1 << (8 * width)) - 1
    return sorted({0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1, size & top, (size + 1) & top, (size - 1) & top})


def mutate(data, ops):
    """Apply mutation ops; each is a tuple, integers are reduced modulo the current length.

    ('flip', pos, xor) | ('truncate', pos) | ('splice', start, stop, insert) |
    ('copy', start, stop, dest) | ('field', which, value_index)
    """
    data = bytearray(data)
    for op in ops:
        size = max(len(data), 1)
        kind = op[0]
        if kind == 'flip' and data:
            data[op[1] % size] ^= op[2] or 1
        elif kind == 'truncate':
            del data[op[1] % size:]
        elif kind == 'splice':
            start, stop = sorted((op[1] % size, op[2] % size))
            data[start:stop] = op[3]
        elif kind == 'copy':
            start, stop = sorted((op[1] % size, op[2] % size))
            dest = op[3] % size
            data[dest:dest + (stop - start)] = data[start:stop]
        elif kind == 'field':
            fields = _header_fields(bytes(data))
            offset, width = fields[op[1] % len(fields)]
            values = extremes(width, len(data))
            value = values[op[2] % len(values)]
            if offset + width <= len(data):
                data[offset:offset + width] = value.to_bytes(width, 'little')
    return bytes(data)


def elftools_view(data):
    """(name, vermagic, build ID) of an ELF image read by pyelftools, a reader independent of ours
    (a test library, imported here only). Name and vermagic are None when ``.modinfo`` lacks them,
    the build ID is the first GNU build-ID note's; a malformed image raises what pyelftools raises."""
    from elftools.elf.elffile import ELFFile  # pylint: disable=import-outside-toplevel
    elf = ELFFile(io.BytesIO(data))
    section = elf.get_section_by_name('.modinfo')
    modinfo = dict(item.split(b'=', 1) for item in (section.data() if section is not None else b'').split(b'\x00')
                   if b'=' in item)
    build_id = None
    notes = elf.get_section_by_name('.note.gnu.build-id')
    for note in notes.iter_notes() if notes is not None else ():
        if note['n_type'] == 'NT_GNU_BUILD_ID':
            build_id = note['n_desc']
            break
    name, vermagic = modinfo.get(b'name'), modinfo.get(b'vermagic')
    return (name.decode().replace('-', '_') if name else None), (vermagic.decode() if vermagic else None), build_id
