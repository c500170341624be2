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
* :func:`parse_module` (``_elf.py``, re-exported here) reads what a module says about itself
  (:class:`KoFile`); it is total: any malformed input becomes ``KoFileError('not_a_module', ...)``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from typing import FrozenSet, List, Optional, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._elf import (
    CHUNK_BYTES, MAX_MODULE_BYTES, NOT_A_MODULE, TOO_LARGE, KoFile, KoFileError, decompress, module_name_from_path,
    normalise_name, parse_build_id_note, parse_module, read_modinfo,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = [
    'FileTrust', 'KoFile', 'KoFileError', 'ModuleImage', 'open_module', 'read_kofile', 'parse_module',
    'read_modinfo', 'module_name_from_path', 'parse_build_id_note', 'normalise_name', 'MAX_MODULE_BYTES',
]

# Rules (listed in the docs' rule table); too_large and not_a_module come from _elf.py.
RELATIVE_PATH = 'relative_path'
MISSING_FILE = 'missing_file'
NOT_REGULAR_FILE = 'not_regular_file'
UNSAFE_PATH = 'unsafe_path'
_MAX_SYMLINKS = 40  # the kernel's own limit on symlinks followed in one path walk (MAXSYMLINKS)


@value_object
class FileTrust:
    """Who may own a patch file and every directory above it.

    ``trusted_dirs``: these directories and their ancestors are not checked (tests run in a
    private directory under the sticky, world-writable ``/tmp``). The default trusts nothing.
    """

    owners: FrozenSet[int] = frozenset({0})
    trusted_dirs: Tuple[str, ...] = ()


@value_object
class ModuleImage:
    """Exactly the bytes that were verified, ready to load."""

    path: str  # absolute, normalised
    data: bytes  # decompressed ELF image, with any appended signature: what gets loaded
    info: KoFile
    identity: Tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns) of the file read


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
            chunk = os.read(fd, min(CHUNK_BYTES, max_bytes + 1 - total))
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
    data = decompress(path, raw, max_bytes)
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
    return parse_module(decompress(path, raw, max_bytes), path)


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
    return decompress(path, raw, MAX_MODULE_BYTES)
