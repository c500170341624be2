# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Open and read a kernel module file (``.ko``, ``.ko.xz``, ``.ko.gz``) without running kmod.

PRIVATE: this module_util may change at any time.

Two jobs, kept apart:

* :func:`open_module` opens a patch file the way the collection will LOAD it: once, with no
  symlink as its last component, regular files only, owned by a trusted user and in directories
  only a trusted user can change (like OpenSSH's StrictModes, docs/developer.md §10.1). It returns
  a :class:`ModuleImage` holding exactly the bytes that were checked; ``_kernel.py`` loads those
  bytes, never the path again, so nothing can be swapped between the check and the load (§10.2).
* :func:`parse_module` reads what a module says about itself (:class:`KoFile`): ``name`` (the
  name of ``/sys/kernel/livepatch/<name>``; dashes become underscores, docs/developer.md §1.1),
  ``livepatch`` (``livepatch=Y`` in ``.modinfo``, without which the kernel refuses to enable it,
  §2.5 and §4.3), ``vermagic`` (its first word is the kernel release), ``build_id`` (the GNU build
  ID note, equal to ``/sys/module/<name>/notes/.note.gnu.build-id`` once loaded, §9.7) and
  ``signed`` (the kernel's appended-signature marker, §10.3). It is total: any malformed input, however
  large its header fields, becomes ``KoFileError('not_a_module', ...)`` after work bounded by the
  file's size.
"""

from __future__ import annotations

import errno
import lzma
import os
import posixpath
import stat
import struct
import zlib
from typing import Dict, FrozenSet, List, Optional, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = [
    'FileTrust', 'KoFile', 'KoFileError', 'ModuleImage', 'open_module', 'read_kofile', 'parse_module',
    'read_modinfo', 'module_name_from_path', 'parse_build_id_note', 'normalise_name', 'MAX_MODULE_BYTES',
]

# Rules (listed in the docs' rule table).
RELATIVE_PATH = 'relative_path'
MISSING_FILE = 'missing_file'
NOT_REGULAR_FILE = 'not_regular_file'
UNSAFE_PATH = 'unsafe_path'
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
_CHUNK = 1024 * 1024
_MAX_SYMLINKS = 40  # the kernel's own limit on symlinks followed in one path walk (MAXSYMLINKS)


class KoFileError(LivepatchError):
    """The file is missing, unsafe to trust, too large, or not a kernel module."""


@value_object
class FileTrust:
    """Who may own a patch file and every directory above it.

    ``trusted_dirs``: these directories and their ancestors are not checked (tests run in a
    private directory under the sticky, world-writable ``/tmp``). The default trusts nothing.
    """

    owners: FrozenSet[int] = frozenset({0})
    trusted_dirs: Tuple[str, ...] = ()


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


@value_object
class ModuleImage:
    """Exactly the bytes that were verified, ready to load."""

    path: str  # absolute, normalised
    data: bytes  # decompressed ELF image, with any appended signature: what gets loaded
    info: KoFile
    identity: Tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns) of the file read


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


# --- files -------------------------------------------------------------------------------------

def _os_error(path: str, exc: OSError) -> KoFileError:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return KoFileError(MISSING_FILE, 'patch file %s does not exist' % path)
    return KoFileError(MISSING_FILE, 'cannot read %s: %s' % (path, exc.strerror or exc))


def _unsafe(path: str, what: str, where: str, st: os.stat_result, trust: FileTrust) -> Optional[KoFileError]:
    """The StrictModes check of the file or of one directory above it (``where``): a trusted owner,
    not writable by group or others (docs/developer.md §10.1). Returns the refusal of ``path``, or None.

    A sticky world-writable directory (``/tmp``, mode 1777) is refused too, as OpenSSH does: the
    sticky bit only stops others from renaming or deleting what they do not own; anyone can still
    create a name there before the trusted writer does, or (with ``fs.protected_hardlinks=0``)
    hard-link another root-owned module under the expected name, so what the path names is not
    decided by the trusted owners alone.
    """
    problems = []
    if st.st_uid not in trust.owners:
        problems.append('owned by uid %d, not by %s' % (st.st_uid, _owners(trust)))
    if st.st_mode & 0o022:
        problems.append('writable by %s' % ' and '.join(
            who for who, bit in (('its group', 0o020), ('others', 0o002)) if st.st_mode & bit))
    if not problems:
        return None
    mode = stat.S_IMODE(st.st_mode)
    return KoFileError(UNSAFE_PATH, 'refusing %s: %s %s is %s (mode %04o, owner uid %d); a patch is loaded only from a '
                       'file, and directories above it, that no one but %s can change' % (
                           path, what, where, ' and '.join(problems), mode, st.st_uid, _owners(trust)),
                       detail={'unsafe_path': where, 'owner': st.st_uid, 'mode': '%04o' % mode})


def _owners(trust: FileTrust) -> str:
    return ', '.join('uid %d' % uid for uid in sorted(trust.owners)) or 'nobody'


def _exempt(directory: str, trusted: Tuple[str, ...]) -> bool:
    """``directory`` is one of the trusted directories or an ancestor of one."""
    for top in trusted:
        if directory == top or top.startswith(directory.rstrip('/') + '/'):
            return True
    return False


def _open_parent(path: str, trust: FileTrust) -> Tuple[int, str]:
    """Walk from ``/`` to the directory holding ``path``, checking each directory on its own fd.

    Each component is opened with ``O_NOFOLLOW`` relative to the fd of the directory already
    checked, so a directory cannot be swapped between its check and its use. A symlink among the
    parents (``/lib`` -> ``usr/lib`` with merged /usr) is followed by hand: it sits in a checked
    directory, so only a trusted owner can have put it there. Returns (fd, resolved dir path).
    """
    trusted = tuple(posixpath.normpath(os.path.realpath(top)) for top in trust.trusted_dirs)
    todo = [part for part in path.split('/')[:-1] if part]
    stack: List[Tuple[int, str]] = []
    links = 0

    def push(fd: int, where: str) -> None:
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise _os_error(path, exc)
        stack.append((fd, where))
        problem = None if _exempt(where, trusted) else _unsafe(path, 'directory', where, st, trust)
        if problem is not None:
            raise problem

    def reset_to_root() -> None:
        while stack:
            os.close(stack.pop()[0])
        push(os.open('/', os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), '/')

    try:
        reset_to_root()
        while todo:
            part = todo.pop(0)
            if part == '.':
                continue
            if part == '..':
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            fd, where = stack[-1]
            here = posixpath.join(where, part)
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise _os_error(path, exc)
                try:
                    target = os.readlink(part, dir_fd=fd)
                except OSError:
                    raise KoFileError(MISSING_FILE, 'patch file %s does not exist: %s is not a directory' % (path, here))
                links += 1
                if links > _MAX_SYMLINKS:
                    raise KoFileError(MISSING_FILE, 'cannot read %s: too many levels of symbolic links' % path)
                todo[:0] = [item for item in target.split('/') if item]
                if target.startswith('/'):
                    reset_to_root()
                continue
            push(child, here)
        fd, where = stack.pop()
        return fd, where
    finally:
        for fd, _where in stack:
            os.close(fd)


def _read_fd(fd: int, path: str, max_bytes: int) -> bytes:
    chunks = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(_CHUNK, max_bytes + 1 - total))
        except OSError as exc:
            raise KoFileError(MISSING_FILE, 'cannot read %s: %s' % (path, exc.strerror or exc))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > max_bytes:
            raise KoFileError(TOO_LARGE, '%s is larger than %d bytes; not a patch module' % (path, max_bytes))
    return b''.join(chunks)


def _identity(st: os.stat_result) -> Tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _read_open_file(fd: int, path: str, max_bytes: int, trust: Optional[FileTrust]) -> Tuple[bytes, tuple]:
    """fstat the opened file (regular only, StrictModes when ``trust``), read it once."""
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise KoFileError(NOT_REGULAR_FILE, '%s is not a regular file (%s); a patch must be a .ko file' % (
            path, _file_kind(before.st_mode)))
    if trust is not None:
        problem = _unsafe(path, 'the file', path, before, trust)
        if problem is not None:
            raise problem
    if before.st_size > max_bytes:
        raise KoFileError(TOO_LARGE, '%s is %d bytes, larger than %d; not a patch module' % (
            path, before.st_size, max_bytes))
    raw = _read_fd(fd, path, max_bytes)
    after = os.fstat(fd)
    if _identity(before) != _identity(after) or len(raw) != after.st_size:
        raise KoFileError(NOT_A_MODULE, '%s changed while it was read; run again once it is no longer being written' % path)
    return raw, _identity(after)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, 'a directory'), (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISLNK, 'a symbolic link')):
        if test(mode):
            return kind
    return 'mode %o' % mode


def open_module(path: str, trust: FileTrust = FileTrust(), max_bytes: int = MAX_MODULE_BYTES) -> ModuleImage:
    """Open ``path`` once, check who can change it, read and parse its bytes; see the module docstring."""
    if not isinstance(path, str) or not path.startswith('/'):
        raise KoFileError(RELATIVE_PATH, 'patch path %r is not absolute; give the full path of the .ko file on the '
                          'host (it is recorded for boot and opened from /)' % (path,))
    path = posixpath.normpath(path)
    if path.startswith('//'):
        path = '/' + path.lstrip('/')
    if '\x00' in path:
        raise KoFileError(MISSING_FILE, 'patch path %r contains a NUL byte' % (path,))
    name = posixpath.basename(path)
    if not name or name in ('.', '..'):
        raise KoFileError(NOT_REGULAR_FILE, '%s is a directory, not a .ko file' % path)
    dir_fd, _where = _open_parent(path, trust)
    try:
        try:
            # lstat first: a device node is refused before it is opened (opening one can act).
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as exc:
            raise _os_error(path, exc)
        if stat.S_ISLNK(st.st_mode):
            raise KoFileError(NOT_REGULAR_FILE, '%s is a symbolic link; give the path of the file itself (the link '
                              'could be changed between the check and the load)' % path)
        if not stat.S_ISREG(st.st_mode):
            raise KoFileError(NOT_REGULAR_FILE, '%s is not a regular file (%s); a patch must be a .ko file' % (
                path, _file_kind(st.st_mode)))
        try:
            # O_NOFOLLOW: a symlink swapped in after the lstat fails (ELOOP); O_NONBLOCK: a FIFO
            # swapped in does not block the open; fstat below decides on what was opened.
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise KoFileError(NOT_REGULAR_FILE, '%s is a symbolic link; give the path of the file itself' % path)
            raise _os_error(path, exc)
    finally:
        os.close(dir_fd)
    try:
        raw, identity = _read_open_file(fd, path, max_bytes, trust)
    finally:
        os.close(fd)
    data = _decompress(path, raw, max_bytes)
    info = parse_module(data, path)
    return ModuleImage(path=path, data=data, info=info, identity=identity)


def read_kofile(path: str, max_bytes: int = MAX_MODULE_BYTES) -> KoFile:
    """Read ``path`` only to report on it (``livepatch_info``): regular files only, no owner check.

    Never load what this returns: use :func:`open_module`, which checks who can change the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except (OSError, TypeError, ValueError) as exc:
        if isinstance(exc, OSError):
            raise _os_error(path, exc)
        raise KoFileError(MISSING_FILE, 'cannot read %r: %s' % (path, exc))
    try:
        raw, _identity_ = _read_open_file(fd, path, max_bytes, None)
    finally:
        os.close(fd)
    return parse_module(_decompress(path, raw, max_bytes), path)


def _read_bytes(path: str) -> bytes:
    """Decompressed bytes of ``path`` (kept for tests/unit/kernel_model.py; use open_module)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(path, exc)
    try:
        raw, _identity_ = _read_open_file(fd, path, MAX_MODULE_BYTES, None)
    finally:
        os.close(fd)
    return _decompress(path, raw, MAX_MODULE_BYTES)


# --- decompression -----------------------------------------------------------------------------

def _decompress(path: str, data: bytes, max_bytes: int = MAX_MODULE_BYTES) -> bytes:
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
            chunk = dec.decompress(pending, _CHUNK)
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
                    chunk = dec.decompress(b'', _CHUNK)
                else:
                    tail = dec.unconsumed_tail
                    chunk = dec.decompress(tail, _CHUNK)
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
        for index in range(e_shnum):
            fields = self._unpack(shdr, e_shoff + index * shdr_size)
            # name offset, type, flags, addr, offset, size (same positions in both classes)
            name_off, sh_type, offset, length = fields[0], fields[1], fields[4], fields[5]
            if sh_type != SHT_NOBITS and (offset > size or length > size - offset):
                raise self._bad('is truncated: section %d (offset %d, %d bytes) ends past its %d bytes' % (
                    index, offset, length, size))
            headers.append((name_off, sh_type, offset, length))
        str_offset, str_size = headers[e_shstrndx][2], headers[e_shstrndx][3]
        if headers[e_shstrndx][1] == SHT_NOBITS:
            raise self._bad('has no section name table')
        names = self.data[str_offset:str_offset + str_size]
        sections: Dict[str, bytes] = {}
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
