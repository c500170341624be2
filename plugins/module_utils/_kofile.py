# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read a kernel module file (``.ko``, ``.ko.xz``, ``.ko.gz``) without running kmod.

PRIVATE: this module_util may change at any time.

What the planner needs to know about a patch before it is loaded:

* ``name``: the module name the kernel will use, which is also the name of the directory
  ``/sys/kernel/livepatch/<name>`` (``livepatch-kernel.md`` §1.1: dashes become underscores);
* ``livepatch``: whether ``.modinfo`` says ``livepatch=Y`` (the kernel refuses to enable a patch
  module without it, §2.5);
* ``vermagic``: its first word is the kernel release the module was built for;
* ``build_id``: the GNU build ID note. The kernel exposes the loaded module's note under
  ``/sys/module/<name>/notes/.note.gnu.build-id``, so comparing the two tells whether the live
  patch *is this file* (lab-notes.md, "Telling two builds of the same patch apart": srcversion is
  absent on Debian kernels for modules without MODULE_VERSION()).
"""

from __future__ import annotations

import gzip
import io
import lzma
import os
import struct

__all__ = ['KoFile', 'KoFileError', 'read_kofile', 'module_name_from_path', 'parse_build_id_note']

ELF_MAGIC = b'\x7fELF'
NT_GNU_BUILD_ID = 3
# A patch module is small; refuse to read something absurdly large into memory.
MAX_MODULE_BYTES = 256 * 1024 * 1024


class KoFileError(Exception):
    """The file is missing, unreadable, or not a kernel module."""


class KoFile(object):
    """What a ``.ko`` file says about itself."""

    __slots__ = ('path', 'name', 'vermagic', 'livepatch', 'srcversion', 'build_id', 'license', 'depends')

    def __init__(self, path, name, vermagic, livepatch, srcversion, build_id, license_, depends):
        self.path = path
        self.name = name
        self.vermagic = vermagic
        self.livepatch = livepatch
        self.srcversion = srcversion
        self.build_id = build_id
        self.license = license_
        self.depends = depends

    @property
    def release(self):
        """The kernel release the module was built for: the first word of vermagic."""
        return self.vermagic.split()[0] if self.vermagic else None

    def as_dict(self):
        return {
            'path': self.path,
            'name': self.name,
            'vermagic': self.vermagic,
            'release': self.release,
            'livepatch': self.livepatch,
            'srcversion': self.srcversion,
            'build_id': self.build_id,
        }


def module_name_from_path(path):
    """The module name kmod would derive from a file name: strip ``.ko*``, dashes become underscores."""
    base = os.path.basename(path)
    for suffix in ('.ko.xz', '.ko.gz', '.ko.zst', '.ko'):
        if base.endswith(suffix):
            base = base[:-len(suffix)]
            break
    return base.replace('-', '_')


def _read_bytes(path):
    try:
        with open(path, 'rb') as handle:
            data = handle.read(MAX_MODULE_BYTES + 1)
    except (IOError, OSError) as exc:
        raise KoFileError('cannot read %s: %s' % (path, exc.strerror or exc))
    if len(data) > MAX_MODULE_BYTES:
        raise KoFileError('%s is larger than %d bytes; not a patch module' % (path, MAX_MODULE_BYTES))
    return _decompress(path, data)


def _decompress(path, data):
    if data[:6] == b'\xfd7zXZ\x00':
        try:
            return lzma.decompress(data)
        except lzma.LZMAError as exc:
            raise KoFileError('%s: broken xz data: %s' % (path, exc))
    if data[:2] == b'\x1f\x8b':
        try:
            return gzip.GzipFile(fileobj=io.BytesIO(data)).read()
        except (IOError, OSError, EOFError) as exc:
            raise KoFileError('%s: broken gzip data: %s' % (path, exc))
    if data[:4] == b'\x28\xb5\x2f\xfd':
        raise KoFileError('%s is zstd-compressed, which Python cannot read before 3.14; decompress it first (unzstd)' % path)
    return data


class _Elf(object):
    """Just enough ELF to find sections by name."""

    def __init__(self, path, data):
        if data[:4] != ELF_MAGIC:
            raise KoFileError('%s is not an ELF file, so not a kernel module' % path)
        ei_class = data[4:5]
        ei_data = data[5:6]
        if ei_class not in (b'\x01', b'\x02') or ei_data not in (b'\x01', b'\x02'):
            raise KoFileError('%s has an unknown ELF class or byte order' % path)
        self.path = path
        self.data = data
        self.is64 = ei_class == b'\x02'
        self.endian = '<' if ei_data == b'\x01' else '>'
        self.sections = self._read_sections()

    def _unpack(self, fmt, offset):
        try:
            return struct.unpack_from(self.endian + fmt, self.data, offset)
        except struct.error:
            raise KoFileError('%s: truncated ELF file' % self.path)

    def _read_sections(self):
        if self.is64:
            e_shoff, = self._unpack('Q', 0x28)
            e_shentsize, e_shnum, e_shstrndx = self._unpack('HHH', 0x3A)
            shdr = 'IIQQQQIIQQ'
        else:
            e_shoff, = self._unpack('I', 0x20)
            e_shentsize, e_shnum, e_shstrndx = self._unpack('HHH', 0x2E)
            shdr = 'IIIIIIIIII'
        if e_shoff == 0 or e_shnum == 0 or e_shstrndx >= e_shnum:
            raise KoFileError('%s has no section table, so not a kernel module' % self.path)
        headers = []
        for index in range(e_shnum):
            fields = self._unpack(shdr, e_shoff + index * e_shentsize)
            # name offset, type, flags, addr, offset, size (same positions in both classes)
            headers.append((fields[0], fields[1], fields[4], fields[5]))
        str_offset, str_size = headers[e_shstrndx][2], headers[e_shstrndx][3]
        names = self.data[str_offset:str_offset + str_size]
        sections = {}
        for name_off, sh_type, offset, size in headers:
            end = names.find(b'\x00', name_off)
            name = names[name_off:end if end >= 0 else None].decode('ascii', 'replace')
            if sh_type != 8:  # SHT_NOBITS has no bytes in the file
                sections[name] = self.data[offset:offset + size]
        return sections

    def section(self, name):
        return self.sections.get(name)


def parse_modinfo(blob):
    """``.modinfo`` is a sequence of NUL-terminated ``key=value`` strings; keys may repeat."""
    info = {}
    for item in blob.split(b'\x00'):
        if b'=' not in item:
            continue
        key, value = item.split(b'=', 1)
        info.setdefault(key.decode('ascii', 'replace'), []).append(value.decode('utf-8', 'replace'))
    return info


def parse_build_id_note(blob, endian='<'):
    """Return the hex GNU build ID from the bytes of a ``.note.gnu.build-id`` note, or None.

    Layout: 4-byte namesz, 4-byte descsz, 4-byte type (3), the name ``GNU\\0`` padded to 4,
    then descsz bytes of ID (lab-notes.md, measured on 6.1 and 7.2).
    """
    offset = 0
    while offset + 12 <= len(blob):
        namesz, descsz, n_type = struct.unpack_from(endian + 'III', blob, offset)
        name_start = offset + 12
        desc_start = name_start + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > len(blob):
            return None
        if n_type == NT_GNU_BUILD_ID and blob[name_start:name_start + namesz].rstrip(b'\x00') == b'GNU':
            return blob[desc_start:desc_end].hex() if descsz else None
        offset = desc_start + ((descsz + 3) & ~3)
    return None


def read_kofile(path):
    """Read ``path`` and return a :class:`KoFile`; raise :class:`KoFileError` when it is not a module."""
    data = _read_bytes(path)
    elf = _Elf(path, data)
    modinfo_blob = elf.section('.modinfo')
    if modinfo_blob is None:
        raise KoFileError('%s has no .modinfo section, so it is not a kernel module' % path)
    info = parse_modinfo(modinfo_blob)

    def first(key):
        values = info.get(key)
        return values[0] if values else None

    note = elf.section('.note.gnu.build-id')
    build_id = parse_build_id_note(note, elf.endian) if note else None
    name = first('name') or module_name_from_path(path)
    depends = [dep for dep in (first('depends') or '').split(',') if dep]
    return KoFile(
        path=path,
        name=name.replace('-', '_'),
        vermagic=first('vermagic'),
        livepatch=(first('livepatch') or '').upper() == 'Y',
        srcversion=first('srcversion'),
        build_id=build_id,
        license_=first('license'),
        depends=depends,
    )
