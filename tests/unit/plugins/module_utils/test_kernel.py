# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The real kernel-access layer under a redirected root, and how it hands bytes to finit_module."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils import _kernel
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import Kernel, LoadResult

F_GET_SEALS = getattr(fcntl, 'F_GET_SEALS', 1034)


class Image:
    def __init__(self, path, data):
        self.path = path
        self.data = data


@pytest.fixture
def kernel(tmp_path):
    base = tmp_path / 'sys' / 'kernel' / 'livepatch'
    for name, transition in (('a', '0'), ('b', '1')):
        (base / name).mkdir(parents=True)
        (base / name / 'enabled').write_text('1\n')
        (base / name / 'transition').write_text(transition + '\n')
    return Kernel(str(tmp_path))


def test_reads_and_lists_under_the_root(kernel):
    assert kernel.read('sys/kernel/livepatch', 'a', 'enabled') == '1'
    assert kernel.read('sys/kernel/livepatch', 'zz', 'enabled') is None
    assert kernel.listdir('sys/kernel/livepatch') == ['a', 'b']
    assert kernel.listdir('sys/kernel/nothere') == []
    assert kernel.exists('sys/kernel/livepatch', 'b') and not kernel.exists('sys/kernel/livepatch', 'c')
    assert kernel.transition_patch() == 'b'


@pytest.mark.parametrize('parts, expected', [
    (('sys/kernel/livepatch', 'a', 'enabled'), None),
    (('sys/kernel/livepatch', 'gone', 'enabled'), 'ENOENT'),   # a patch freed meanwhile
    (('sys/kernel/livepatch', 'a'), 'EISDIR'),
])
def test_writes_return_the_errno_name_and_never_raise(kernel, parts, expected):
    assert kernel.write('0', *parts) == expected


def test_the_kernel_reads_a_sealed_read_only_copy_of_the_verified_bytes(monkeypatch, tmp_path):
    """finit_module gets a descriptor that holds exactly image.data, sealed, not the file on disk."""
    path = tmp_path / 'a.ko'
    path.write_bytes(b'on disk: something else')
    data = b'\x7fELF' + os.urandom(100000)
    seen = {}

    def fake_finit(fd):
        seen['data'] = os.pread(fd, len(data) + 10, 0)
        seen['seals'] = fcntl.fcntl(fd, F_GET_SEALS)
        seen['flags'] = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        seen['cloexec'] = fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        seen['link'] = os.readlink('/proc/self/fd/%d' % fd)
        with pytest.raises(OSError):
            os.write(fd, b'x')
        return 'EEXIST'
    monkeypatch.setattr(_kernel, '_finit_module', fake_finit)
    monkeypatch.setattr(_kernel, '_syscall', lambda index: (None, 313))
    result = Kernel(str(tmp_path)).load_module(Image(str(path), data))
    assert result == LoadResult(errno='EEXIST', message='File exists', kernel_messages=())
    assert seen['data'] == data
    assert seen['seals'] == 0xF  # seal, shrink, grow, write
    assert seen['flags'] == os.O_RDONLY and seen['cloexec']
    assert seen['link'].startswith('/memfd:kernelops-livepatch')


def test_without_memfd_the_copy_is_private_and_gone_before_the_load(monkeypatch, tmp_path):
    data = b'\x7fELF' + os.urandom(1000)
    seen = {}

    def fake_finit(fd):
        seen['data'] = os.pread(fd, len(data) + 10, 0)
        seen['link'] = os.readlink('/proc/self/fd/%d' % fd)
        return None
    monkeypatch.delattr(_kernel.os, 'memfd_create')
    monkeypatch.setattr(_kernel, '_finit_module', fake_finit)
    monkeypatch.setattr(_kernel, '_syscall', lambda index: (None, 313))
    result = Kernel(str(tmp_path)).load_module(Image('/x/a.ko', data))
    assert result.errno is None and seen['data'] == data
    assert seen['link'].startswith('/run/kernelops-livepatch-') and seen['link'].endswith(' (deleted)')
    assert not [n for n in os.listdir('/run') if n.startswith('kernelops-livepatch-')]


def test_without_a_syscall_number_the_load_is_refused_not_done_by_path(monkeypatch, tmp_path):
    monkeypatch.setattr(_kernel, '_syscall', lambda index: None)
    monkeypatch.setattr(_kernel.os, 'uname', lambda: os.uname_result(('Linux', 'h', 'r', 'v', 'vax')))
    result = Kernel(str(tmp_path)).load_module(Image('/x/a.ko', b'\x7fELF'))
    assert result.errno == 'ENOSYS' and 'refusing to load by path' in result.message


@pytest.mark.skipif(os.uname().machine != 'x86_64' or ctypes.sizeof(ctypes.c_void_p) != 8, reason='x86_64 only')
def test_syscall_numbers_of_this_host():
    assert _kernel._syscall(0)[1] == 313 and _kernel._syscall(1)[1] == 176


def test_errno_names():
    assert _kernel.errno_name(errno.EBUSY) == 'EBUSY'
    assert _kernel.errno_name(errno.EWOULDBLOCK) == 'EAGAIN'
    assert _kernel.errno_name(4095) == 'E4095'
