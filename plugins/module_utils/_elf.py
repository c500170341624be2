# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What a kernel module image says about itself: decompression, ELF sections, ``.modinfo``.

PRIVATE: this module_util may change at any time.

:func:`parse_module` reads what a module says about itself (:class:`KoFile`): ``name`` (the
name of ``/sys/kernel/livepatch/<name>``; dashes become underscores, docs/developer.md §1.1),
``livepatch`` (``livepatch=Y`` in ``.modinfo``, without which the kernel refuses to enable it,
§2.5 and §4.3), ``vermagic`` (its first word is the kernel release), ``build_id`` (the GNU build
ID note, equal to ``/sys/module/<name>/notes/.note.gnu.build-id`` once loaded, §9.7) and
``signed`` (the kernel's appended-signature marker, §10.3). It is total: any malformed input,
however large its header fields, becomes ``KoFileError('not_a_module', ...)`` after work bounded
by the input's size. :func:`decompress` streams xz and gzip with the cap applied to the output.
Opening files, and who may own them, is ``_kofile.py``'s job.
"""

from __future__ import annotations

import os
import struct
from typing import Dict, List, Optional, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = [
    'KoFile', 'KoFileError', 'decompress', 'parse_module', 'read_modinfo', 'parse_modinfo', 'module_name_from_path',
    'parse_build_id_note', 'normalise_name', 'MAX_MODULE_BYTES', 'TOO_LARGE', 'NOT_A_MODULE',
]

# Rules (listed in the docs' rule table).
TOO_LARGE = 'too_large'
NOT_A_MODULE = 'not_a_module'

ELF_MAGIC = b'\x7fELF'
XZ_MAGIC = b'\xfd7zXZ\x00'
GZIP_MAGIC = b'\x1f\x8b'
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
NT_GNU_BUILD_ID = 3
ET_REL = 1
SHT_NOBITS = 8
# include/linux/module_signature.h: MODULE_SIG_STRING, the last bytes of a signed module
# (kernel/module/signing.c module_sig_check() looks for it at the very end of the image).
MODULE_SIG_STRING = b'~Module signature appended~\n'
# include/linux/module.h: MODULE_NAME_LEN is 64 - sizeof(unsigned long), the name plus its NUL.
MODULE_NAME_MAX = 55
# A patch module is a few hundred KB, a few MB with debug info. The cap applies to the file AND to
# the decompressed image, and bounds the memory one read can take (about twice the cap at most).
MAX_MODULE_BYTES = 64 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


class KoFileError(LivepatchError):
    """The file is missing, unsafe to trust, too large, or not a kernel module."""


@value_object
class KoFile:
    """What a module file says about itself."""

    name: str
    vermagic: Optional[str]
    livepatch: bool
    srcversion: Optional[str]
    build_id: Optional[str]
    license: Optional[str]
    depends: Tuple[str, ...]
    signed: bool
    path: Optional[str] = None

    @property
    def release(self) -> Optional[str]:
        """The kernel release the module was built for: the first word of vermagic."""
        words = self.vermagic.split() if self.vermagic else []
        return words[0] if words else None

    def as_dict(self) -> Dict[str, object]:
        return {
            'path': self.path,
            'name': self.name,
            'vermagic': self.vermagic,
            'release': self.release,
            'livepatch': self.livepatch,
            'srcversion': self.srcversion,
            'build_id': self.build_id,
            'signed': self.signed,
        }


def normalise_name(name: str) -> str:
    """The kernel's name for a module: ``-`` becomes ``_`` (docs/developer.md §1.1). The one place."""
    return name.replace('-', '_')


def module_name_from_path(path: str) -> str:
    """The module name kmod would derive from a file name: strip ``.ko*``, dashes become underscores."""
    base = os.path.basename(path)
    for suffix in ('.ko.xz', '.ko.gz', '.ko.zst', '.ko'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    return normalise_name(base)


# --- decompression -----------------------------------------------------------------------------

def decompress(path: str, data: bytes, max_bytes: int = MAX_MODULE_BYTES) -> bytes:
    """The ELF image inside ``data``; the cap applies to the OUTPUT, which is produced in chunks."""
    if data[:6] == XZ_MAGIC:
        return _inflate(path, data, max_bytes, 'xz')
    if data[:2] == GZIP_MAGIC:
        return _inflate(path, data, max_bytes, 'gzip')
    if data[:4] == ZSTD_MAGIC:
        raise KoFileError(NOT_A_MODULE, '%s is zstd-compressed, which Python cannot read before 3.14; decompress it '
                          'first (unzstd)' % path)
    return data


def _inflate(path: str, data: bytes, max_bytes: int, kind: str) -> bytes:
    # Imported here: most patch files are not compressed, and the boot-time restore (no Ansible,
    # which imports both anyway) should not pay for them.
    import lzma
    import zlib
    out: List[bytes] = []
    total = 0
    pending = data
    streams = 0
    try:
        while pending:
            streams += 1
            if streams > 64:
                raise KoFileError(NOT_A_MODULE, '%s: more than 64 concatenated %s streams; not a module' % (path, kind))
            if kind == 'xz':
                dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            else:
                dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = dec.decompress(pending, CHUNK_BYTES)
            while True:
                total += len(chunk)
                if total > max_bytes:
                    raise KoFileError(TOO_LARGE, '%s decompresses to more than %d bytes; not a patch module' % (
                        path, max_bytes))
                out.append(chunk)
                if dec.eof:
                    break
                if kind == 'xz':
                    if dec.needs_input:
                        raise KoFileError(NOT_A_MODULE, '%s: truncated xz data' % path)
                    chunk = dec.decompress(b'', CHUNK_BYTES)
                else:
                    tail = dec.unconsumed_tail
                    chunk = dec.decompress(tail, CHUNK_BYTES)
                    if not chunk and not dec.eof and dec.unconsumed_tail == tail:
                        # no output and no input consumed: the data ends before the stream does
                        raise KoFileError(NOT_A_MODULE, '%s: truncated gzip data' % path)
            pending = dec.unused_data
            if pending and pending[:len(XZ_MAGIC if kind == 'xz' else GZIP_MAGIC)] != (
                    XZ_MAGIC if kind == 'xz' else GZIP_MAGIC):
                raise KoFileError(NOT_A_MODULE, '%s: %d bytes of trailing garbage after the %s data' % (
                    path, len(pending), kind))
    except (lzma.LZMAError, zlib.error, EOFError, ValueError, MemoryError) as exc:
        raise KoFileError(NOT_A_MODULE, '%s: broken %s data: %s' % (path, kind, exc))
    return b''.join(out)


# --- ELF ---------------------------------------------------------------------------------------

class _Elf(object):
    """Just enough ELF to find sections by name; checks what the kernel's loader checks first.

    Bounds as in kernel/module/main.c ``elf_validity_check()`` (6.1-7.2): ET_REL, a section header
    size equal to the class's, the section table and every section with bytes inside the file.
    """

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data
        if data[:4] != ELF_MAGIC:
            raise self._bad('is not an ELF file')
        ei_class, ei_data = data[4:5], data[5:6]
        if ei_class not in (b'\x01', b'\x02') or ei_data not in (b'\x01', b'\x02'):
            raise self._bad('has an unknown ELF class or byte order')
        self.is64 = ei_class == b'\x02'
        self.endian = '<' if ei_data == b'\x01' else '>'
        self.sections = self._read_sections()

    def _bad(self, what: str) -> KoFileError:
        return KoFileError(NOT_A_MODULE, '%s %s, so it is not a kernel module' % (self.path, what))

    def _unpack(self, fmt: str, offset: int) -> tuple:
        try:
            return struct.unpack_from(self.endian + fmt, self.data, offset)
        except (struct.error, OverflowError, ValueError):
            raise self._bad('is a truncated ELF file')

    def _read_sections(self) -> Dict[str, bytes]:
        size = len(self.data)
        e_type, = self._unpack('H', 0x10)
        if self.is64:
            e_shoff, = self._unpack('Q', 0x28)
            e_shentsize, e_shnum, e_shstrndx = self._unpack('HHH', 0x3A)
            shdr, shdr_size = 'IIQQQQIIQQ', 64
        else:
            e_shoff, = self._unpack('I', 0x20)
            e_shentsize, e_shnum, e_shstrndx = self._unpack('HHH', 0x2E)
            shdr, shdr_size = 'IIIIIIIIII', 40
        if e_type != ET_REL:
            raise self._bad('is not a relocatable object (ELF type %d)' % e_type)
        if e_shentsize != shdr_size:
            raise self._bad('has section headers of %d bytes, not %d' % (e_shentsize, shdr_size))
        if e_shoff == 0 or e_shnum == 0 or e_shstrndx >= e_shnum:
            raise self._bad('has no usable section table')
        if e_shoff >= size or e_shnum * shdr_size > size - e_shoff:
            raise self._bad('is truncated: its section table (offset %d, %d entries) ends past its %d bytes' % (
                e_shoff, e_shnum, size))
        headers = []
        # Every header's raw fields by index, for readers of symbols and relocations (_klp_elf.py).
        self.table: List[tuple] = []
        for index in range(e_shnum):
            fields = self._unpack(shdr, e_shoff + index * shdr_size)
            # name offset, type, flags, addr, offset, size, link, info, addralign, entsize (same positions
            # in both classes)
            name_off, sh_type, offset, length = fields[0], fields[1], fields[4], fields[5]
            if sh_type != SHT_NOBITS and (offset > size or length > size - offset):
                raise self._bad('is truncated: section %d (offset %d, %d bytes) ends past its %d bytes' % (
                    index, offset, length, size))
            headers.append((name_off, sh_type, offset, length))
            self.table.append(fields)
        str_offset, str_size = headers[e_shstrndx][2], headers[e_shstrndx][3]
        if headers[e_shstrndx][1] == SHT_NOBITS:
            raise self._bad('has no section name table')
        names = self.data[str_offset:str_offset + str_size]
        sections: Dict[str, bytes] = {}
        self.names: List[str] = [''] * len(headers)
        for index, (name_off, sh_type, offset, length) in enumerate(headers):
            if index == 0 or sh_type == SHT_NOBITS:  # SHN_UNDEF; SHT_NOBITS has no bytes in the file
                continue
            if name_off >= len(names):
                raise self._bad('names section %d at offset %d, outside its %d-byte name table' % (
                    index, name_off, len(names)))
            end = names.find(b'\x00', name_off)
            if end < 0:
                raise self._bad('has a section name without its terminating NUL')
            name = names[name_off:end].decode('ascii', 'replace')
            self.names[index] = name
            # The first section of a name wins, as in the kernel's find_sec().
            sections.setdefault(name, self.data[offset:offset + length])
        return sections

    def section(self, name: str) -> Optional[bytes]:
        return self.sections.get(name)


def parse_modinfo(blob: bytes) -> Dict[str, List[str]]:
    """``.modinfo`` is a sequence of NUL-terminated ``key=value`` strings; keys may repeat."""
    info: Dict[str, List[str]] = {}
    for item in blob.split(b'\x00'):
        if b'=' not in item:
            continue
        key, value = item.split(b'=', 1)
        info.setdefault(key.decode('ascii', 'replace'), []).append(value.decode('utf-8', 'replace'))
    return info


def read_modinfo(data: bytes, path: str = '<bytes>') -> Dict[str, List[str]]:
    """Every ``.modinfo`` key of the ELF image ``data`` (e.g. ``ModuleImage.data``), values in order."""
    blob = _Elf(path, data).section('.modinfo')
    if blob is None:
        raise KoFileError(NOT_A_MODULE, '%s has no .modinfo section, so it is not a kernel module' % path)
    return parse_modinfo(blob)


def parse_build_id_note(blob: bytes, endian: str = '<') -> Optional[str]:
    """Return the hex GNU build ID from the bytes of a ``.note.gnu.build-id`` note, or None.

    Layout: 4-byte namesz, 4-byte descsz, 4-byte type (3), the name ``GNU\\0`` padded to 4,
    then descsz bytes of ID (docs/developer.md §9.7, measured on 6.1 and 7.2). Total: anything else
    (it also reads ``/sys/module/<name>/notes/``) gives None; every loop step advances >= 12 bytes.
    """
    if not isinstance(blob, (bytes, bytearray)) or endian not in ('<', '>'):
        return None
    offset = 0
    while offset + 12 <= len(blob):
        namesz, descsz, n_type = struct.unpack_from(endian + 'III', blob, offset)
        name_start = offset + 12
        desc_start = name_start + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > len(blob):
            return None
        if n_type == NT_GNU_BUILD_ID and blob[name_start:name_start + namesz].rstrip(b'\x00') == b'GNU':
            return bytes(blob[desc_start:desc_end]).hex() if descsz else None
        offset = desc_start + ((descsz + 3) & ~3)
    return None


def _valid_name(name: str) -> bool:
    # The name becomes a path component under /sys/kernel/livepatch and /sys/module.
    return 0 < len(name) <= MODULE_NAME_MAX and all(
        char.isascii() and (char.isalnum() or char in '_-') for char in name)


def parse_module(data: bytes, path: str = '<bytes>') -> KoFile:
    """What the (decompressed) module image ``data`` says about itself; total, see the module docstring."""
    try:
        return _parse_module(data, path)
    except KoFileError:
        raise
    except (struct.error, OverflowError, ValueError, IndexError, TypeError, UnicodeError, MemoryError) as exc:
        # Not expected (the reader checks every bound first); a refusal all the same, never a traceback.
        raise KoFileError(NOT_A_MODULE, '%s is not a kernel module we can read (%s: %s)' % (
            path, type(exc).__name__, exc))


def _parse_module(data: bytes, path: str) -> KoFile:
    elf = _Elf(path, data)
    modinfo_blob = elf.section('.modinfo')
    if modinfo_blob is None:
        raise KoFileError(NOT_A_MODULE, '%s has no .modinfo section, so it is not a kernel module' % path)
    info = parse_modinfo(modinfo_blob)

    def first(key: str) -> Optional[str]:
        values = info.get(key)
        return values[0] if values else None

    note = elf.section('.note.gnu.build-id')
    build_id = parse_build_id_note(note, elf.endian) if note else None
    name = normalise_name(first('name') or module_name_from_path(path))
    if not _valid_name(name):
        raise KoFileError(NOT_A_MODULE, '%s has module name %r, which is not a kernel module name (letters, digits, '
                          '"_" and "-", at most %d)' % (path, name, MODULE_NAME_MAX))
    return KoFile(
        path=None if path == '<bytes>' else path,
        name=name,
        vermagic=first('vermagic'),
        livepatch=(first('livepatch') or '').upper() == 'Y',
        srcversion=first('srcversion'),
        build_id=build_id,
        license=first('license'),
        depends=tuple(dep for dep in (first('depends') or '').split(',') if dep),
        signed=data.endswith(MODULE_SIG_STRING),
    )
