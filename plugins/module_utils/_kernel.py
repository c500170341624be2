# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Kernel access: the one place that reads and writes the kernel's files and loads modules.

PRIVATE: this module_util may change at any time.

Everything the executor, the boot restore and the observe layer need from a kernel goes
through :class:`Kernel`; the kernel model of the unit tests implements the same methods. No
method raises for something the kernel said: writes and loads return the errno *name*
(``'EBUSY'``) or ``None``, and the caller decides what it means (docs/developer.md §2, §8).

Loading a module (docs/developer.md §2.5, §10.2): the bytes that were verified (a
``ModuleImage`` from ``_kofile.open_module``) are written into an anonymous ``memfd``, the
memfd is sealed against any change, and the kernel reads the module from that descriptor with
``finit_module(fd, "", 0)``. So the kernel loads exactly what was checked: no path is opened
again after the checks (a file swapped on disk in the meantime does not matter), no other
process can reach the memfd, and no kmod binary is needed.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, Callable, List, Optional, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import LIVEPATCH_DIR, observe
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

try:
    import ctypes
except ImportError:  # a Python built without ctypes: loading is refused, see _load_fd()
    ctypes = None  # type: ignore[assignment]

try:
    import fcntl
except ImportError:  # not on Linux: nothing here works anyway
    fcntl = None  # type: ignore[assignment]

__all__ = ['Clock', 'Kernel', 'KmsgCursor', 'LoadResult', 'errno_name', 'poll_until']

# First poll after 0.5 ms, doubling up to 20 ms: an idle transition ends in ~1.5 ms, a busy one
# in 1-2 s (docs/developer.md §5.1, §9); never sleep whole seconds like the kpatch CLI does.
POLL_FIRST = 0.0005
POLL_MAX = 0.02

# fcntl names exist from Python 3.8 (F_ADD_SEALS) / 3.9 (F_SEAL_*) on Linux; the values are
# the kernel's ABI (include/uapi/linux/fcntl.h), the same on every architecture.
_F_ADD_SEALS = getattr(fcntl, 'F_ADD_SEALS', 1033)
_SEALS = (getattr(fcntl, 'F_SEAL_SEAL', 0x1) | getattr(fcntl, 'F_SEAL_SHRINK', 0x2)
          | getattr(fcntl, 'F_SEAL_GROW', 0x4) | getattr(fcntl, 'F_SEAL_WRITE', 0x8))
_MFD_CLOEXEC = getattr(os, 'MFD_CLOEXEC', 0x1)
_MFD_ALLOW_SEALING = getattr(os, 'MFD_ALLOW_SEALING', 0x2)

# System call numbers of finit_module and delete_module (arch/*/…/syscall*.tbl and
# include/uapi/asm-generic/unistd.h). glibc has no finit_module() wrapper (it exports
# init_module and delete_module only), so the raw syscall() is the portable way; the table is
# keyed by the *process's* word size too, because a 32-bit Python on a 64-bit kernel uses the
# 32-bit numbers.
_SYSCALLS = {
    ('x86_64', 64): (313, 176), ('x86_64', 32): (350, 129), ('i386', 32): (350, 129),
    ('i686', 32): (350, 129), ('aarch64', 64): (273, 106), ('aarch64', 32): (379, 129),
    ('armv7l', 32): (379, 129), ('armv6l', 32): (379, 129), ('riscv64', 64): (273, 106),
    ('ppc64le', 64): (353, 129), ('ppc64', 64): (353, 129), ('s390x', 64): (344, 129),
    ('loongarch64', 64): (273, 106),
}


def errno_name(code: Optional[int]) -> str:
    """``11`` -> ``'EAGAIN'``; an unknown number keeps its digits."""
    return errno.errorcode.get(code or 0, 'E%s' % code)


class Clock:
    """Time, injectable so tests of the kernel model do not sleep."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


def poll_until(predicate: Callable[[], Any], timeout: float, clock: Any = Clock) -> Tuple[Any, float]:
    """Call ``predicate`` until it returns a true value or ``timeout`` seconds pass.

    Returns (last value, seconds waited); the value is the last (false) result on timeout.
    """
    start = clock.monotonic()
    delay = POLL_FIRST
    while True:
        value = predicate()
        waited = clock.monotonic() - start
        if value or waited >= timeout:
            return value, waited
        clock.sleep(min(delay, max(0.0, timeout - waited)))
        delay = min(delay * 2, POLL_MAX)


@value_object
class LoadResult:
    """What one attempt to load a module gave: ``errno`` is None on success."""

    errno: Optional[str]
    message: str = ''
    kernel_messages: Tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.errno is None


class KmsgCursor:
    """Kernel log records written after this cursor was made (reads /dev/kmsg, no dmesg binary)."""

    def __init__(self, path: str) -> None:
        self.fd: Optional[int] = None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.close()

    def messages(self) -> List[str]:
        lines: List[str] = []
        while self.fd is not None:
            try:
                record = os.read(self.fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # records overwritten while we read: keep reading
                    continue
                break
            if not record:
                break
            text = record.decode('utf-8', 'replace')
            _header, sep, message = text.partition(';')
            lines.append(message.split('\n', 1)[0] if sep else text.strip())
        self.close()
        return lines

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Kernel:
    """The running kernel, seen through the files under ``root`` (``/`` on a host)."""

    def __init__(self, root: str = '/', clock: Any = Clock) -> None:
        self.root = root
        self.clock = clock

    # -- files -----------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def read(self, *parts: str) -> Optional[str]:
        """A sysfs/procfs attribute, stripped; None when it cannot be read (gone, no permission)."""
        try:
            with open(self.path(*parts)) as handle:
                return handle.read().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def exists(self, *parts: str) -> bool:
        return os.path.exists(self.path(*parts))

    def listdir(self, *parts: str) -> List[str]:
        try:
            return sorted(os.listdir(self.path(*parts)))
        except OSError:
            return []

    def write(self, value: str, *parts: str) -> Optional[str]:
        """Write one attribute in a single write(2); the errno name the kernel gave, or None.

        The kernel's store functions report refusals as the write's errno (EINVAL, EBUSY,
        docs/developer.md §2.1); a patch freed in the meantime gives ENOENT at open.
        """
        try:
            fd = os.open(self.path(*parts), os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            return errno_name(exc.errno)
        try:
            os.write(fd, value.encode('ascii'))
        except OSError as exc:
            return errno_name(exc.errno)
        finally:
            os.close(fd)
        return None

    def transition_patch(self) -> Optional[str]:
        """The patch whose ``transition`` reads 1, or None: a cheap read for polling."""
        for name in self.listdir(LIVEPATCH_DIR):
            if self.read(LIVEPATCH_DIR, name, 'transition') == '1':
                return name
        return None

    def kmsg_cursor(self) -> KmsgCursor:
        return KmsgCursor(self.path('dev', 'kmsg'))

    def observe(self, blocker_stacks: bool = False) -> Any:
        return observe(self.root, blocker_stacks=blocker_stacks)

    # -- modules ---------------------------------------------------------------------------
    def load_module(self, image: Any) -> LoadResult:
        """Load ``image.data`` (the verified bytes of ``image.path``); never re-opens the path."""
        cursor = self.kmsg_cursor()
        try:
            error, message = _load_bytes(image.data)
        finally:
            messages = tuple(cursor.messages())
        return LoadResult(errno=error, message=message, kernel_messages=messages)

    def unload_module(self, name: str) -> Optional[str]:
        """``delete_module(name, O_NONBLOCK)``: never forced (no O_TRUNC), docs/developer.md §5.4, §5.5."""
        syscall = _syscall(1)
        if syscall is None:
            return 'ENOSYS'
        call, number = syscall
        result = call(ctypes.c_long(number), ctypes.c_char_p(name.encode('ascii')), ctypes.c_long(os.O_NONBLOCK))
        return errno_name(ctypes.get_errno()) if result != 0 else None


def _libc() -> Any:
    """The C library of this process (errno kept per call), or None without ctypes."""
    if ctypes is None:
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _syscall(index: int) -> Optional[Tuple[Callable[..., int], int]]:
    """libc's syscall() and the number of finit_module (0) or delete_module (1), or None."""
    libc = _libc()
    if libc is None:
        return None
    bits = ctypes.sizeof(ctypes.c_void_p) * 8
    numbers = _SYSCALLS.get((os.uname().machine, bits))
    if numbers is None or not hasattr(libc, 'syscall'):
        return None
    call = libc.syscall
    call.restype = ctypes.c_long
    return call, numbers[index]


def _finit_module(fd: int) -> Optional[str]:
    syscall = _syscall(0)
    if syscall is not None:
        call, number = syscall
        # syscall() reads every argument as a long: pass longs, not ints of unknown upper bits.
        result = call(ctypes.c_long(number), ctypes.c_long(fd), ctypes.c_char_p(b''), ctypes.c_long(0))
        return errno_name(ctypes.get_errno()) if result != 0 else None
    libc = _libc()
    if libc is not None:
        # An architecture missing from the table: a libc that has a finit_module() symbol (glibc
        # has none; it exports init_module and delete_module only) can still do it.
        if hasattr(libc, 'finit_module'):
            result = libc.finit_module(ctypes.c_int(fd), ctypes.c_char_p(b''), ctypes.c_int(0))
            return errno_name(ctypes.get_errno()) if result != 0 else None
    return 'ENOSYS'


def _load_bytes(data: bytes) -> Tuple[Optional[str], str]:
    """Hand ``data`` to the kernel through a sealed memfd; (errno name or None, message).

    Fallback when memfd_create is missing (a Python built against glibc < 2.27): the same
    bytes go into a 0600 file in a fresh 0700 directory under /run (root only, tmpfs), which is
    opened read-only and unlinked before finit_module reads it; still the verified bytes, not
    the user's path. Without ctypes (or on an architecture we have no syscall number for) the
    load is refused with ENOSYS and a message: running insmod on a path instead would load
    whatever is at that path by then, which is what this layer exists to prevent.
    """
    if _syscall(0) is None and not hasattr(_libc(), 'finit_module'):
        return 'ENOSYS', ('cannot call finit_module on this host (no ctypes, or an unknown architecture %s); '
                          'refusing to load by path' % os.uname().machine)
    try:
        fd = _sealed_copy(data)
    except OSError as exc:
        return errno_name(exc.errno), 'cannot stage the verified module bytes: %s' % (exc.strerror or exc)
    try:
        error = _finit_module(fd)
    finally:
        os.close(fd)
    return error, (os.strerror(getattr(errno, error, 0)) if error else '')


def _sealed_copy(data: bytes) -> int:
    """A read-only descriptor holding exactly ``data`` that no other process can change."""
    if hasattr(os, 'memfd_create'):
        fd = os.memfd_create('kernelops-livepatch', _MFD_CLOEXEC | _MFD_ALLOW_SEALING)
        try:
            _write_all(fd, data)
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
            # A read-only descriptor of the same sealed memfd; the writable one is closed (the
            # finally below) before the kernel reads: kernel_read_file() refuses a file open
            # for writing with ETXTBSY (deny_write_access, fs/kernel_read_file.c;
            # docs/developer.md §10.2). On the lab's 6.1 and 6.12 kernels a writable memfd
            # was accepted too (a memfd's own descriptor does not count as a writer); the
            # read-only one does not depend on that.
            try:
                return os.open('/proc/self/fd/%d' % fd, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                fd, keep = -1, fd
                return keep
        finally:
            if fd >= 0:
                os.close(fd)
    import tempfile
    directory = tempfile.mkdtemp(prefix='kernelops-livepatch-', dir='/run')  # mode 0700
    path = os.path.join(directory, 'module.ko')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(directory)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
