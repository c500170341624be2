# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""_kofile: opening a patch file safely, and reading what it says about itself.

The values a valid module must give (name, vermagic, build ID) are checked against pyelftools,
an ELF reader that shares no code with ours, on fake modules and on the lab's real ones.
"""

from __future__ import annotations

import glob
import gzip
import os
import socket
import stat
import struct
import subprocess
import sys
import threading

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import (
    FileTrust, KoFileError, ModuleImage, module_name_from_path, normalise_name, open_module, parse_build_id_note,
    parse_module, read_kofile, read_modinfo,
)

import kofactory
from kofactory import build_id_note, elftools_view, ko_bytes, make_ko, xz_bomb

IS_ROOT = os.geteuid() == 0
NOBODY = 65534
LAB = os.path.expanduser('~/.cache/kernelops-livepatch-lab')


@pytest.fixture
def trust(tmp_path):
    """Trust tmp_path and what is above it (/tmp is 1777, which the default refuses)."""
    return FileTrust(trusted_dirs=(str(tmp_path),))


def write(path, data, mode=0o644):
    with open(str(path), 'wb') as handle:
        handle.write(data)
    os.chmod(str(path), mode)
    return str(path)


# --- valid modules ------------------------------------------------------------------------------

@pytest.mark.parametrize('how', [None, 'gz', 'xz'])
@pytest.mark.parametrize('signed', [False, True])
def test_valid_module_agrees_with_pyelftools(tmp_path, trust, how, signed):
    data, build_id = ko_bytes('lab-a', release='6.1.0-50-amd64', how=how, signed=signed)
    path = write(tmp_path / 'lab-a.ko', data)
    image = open_module(path, trust)
    assert isinstance(image, ModuleImage)
    assert image.path == path
    st = os.stat(path)
    assert image.identity == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    plain, _same = ko_bytes('lab-a', release='6.1.0-50-amd64', signed=signed)
    assert image.data == plain  # the decompressed image, signature included: what will be loaded
    info = image.info
    assert (info.name, info.vermagic, info.build_id) == elftools_view(image.data)
    assert (info.name, info.release, info.livepatch, info.build_id, info.signed) == (
        'lab_a', '6.1.0-50-amd64', True, build_id, signed)
    assert read_kofile(path) == info


def lab_modules():
    """A few real modules built by the lab: its livepatch modules and signed Debian modules."""
    found = sorted(glob.glob(os.path.join(LAB, 'patches', '*', 'lab_a.ko')))
    found += sorted(glob.glob(os.path.join(LAB, 'kernels', '*', '*lib', 'modules', '*', 'kernel', 'net', 'key',
                                           'af_key.ko*')))
    return found


@pytest.mark.skipif(not lab_modules(), reason='no lab cache (%s): run lab/labctl.py build first' % LAB)
@pytest.mark.parametrize('path', lab_modules() or ['none'])
def test_real_modules_agree_with_pyelftools(path):
    info = read_kofile(path)
    with open(path, 'rb') as handle:
        raw = handle.read()
    data = __import__('lzma').decompress(raw) if path.endswith('.xz') else raw
    assert (info.name, info.vermagic, info.build_id) == elftools_view(data)
    # Debian signs its own modules (scripts/sign-file); the lab's patch modules are unsigned.
    assert info.signed == ('/kernels/' in path)
    assert info.livepatch == ('/patches/' in path)


def test_plain_module_is_not_a_livepatch(tmp_path):
    path = str(tmp_path / 'plain.ko')
    make_ko(path, 'plain', livepatch=False)
    assert read_kofile(path).livepatch is False


# --- refusals -----------------------------------------------------------------------------------

def _valid(tmp_path, name='a.ko'):
    return write(tmp_path / name, ko_bytes('a')[0])


def _symlink(tmp_path):
    target = _valid(tmp_path)
    os.symlink(target, str(tmp_path / 'link.ko'))
    return str(tmp_path / 'link.ko')


def _fifo(tmp_path):
    os.mkfifo(str(tmp_path / 'fifo.ko'))
    return str(tmp_path / 'fifo.ko')


def _directory(tmp_path):
    os.mkdir(str(tmp_path / 'dir.ko'))
    return str(tmp_path / 'dir.ko')


def _device(tmp_path):
    if not IS_ROOT:
        return '/dev/null'
    os.mknod(str(tmp_path / 'null.ko'), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return str(tmp_path / 'null.ko')


def _socket(tmp_path):
    path = str(tmp_path / 's.ko')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.close()
    return path


def _mode(mode, name='a.ko'):
    def make(tmp_path):
        path = _valid(tmp_path, name)
        os.chmod(path, mode)
        return path
    return make


def _chown(uid, mode=0o644):
    def make(tmp_path):
        path = _valid(tmp_path)
        os.chown(path, uid, -1)
        os.chmod(path, mode)
        return path
    return make


def _in_dir(dir_mode, dir_uid=0, file_uid=0, file_mode=0o644):
    def make(tmp_path):
        directory = tmp_path / 'd'
        directory.mkdir()
        path = _valid(directory)
        os.chown(path, file_uid, -1)
        os.chmod(path, file_mode)
        os.chown(str(directory), dir_uid, -1)
        os.chmod(str(directory), dir_mode)
        return path
    return make


def _bytes(data, name='bad.ko'):
    return lambda tmp_path: write(tmp_path / name, data)


def _huge_field(offset, fmt, value):
    data = bytearray(ko_bytes('a')[0])
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


VALID = ko_bytes('a')[0]
SHOFF = struct.unpack_from('<Q', VALID, 0x28)[0]  # section 1 is .modinfo; sh_offset at +0x18, sh_size at +0x20
NEEDS_ROOT = pytest.mark.skipif(not IS_ROOT, reason='chown to uid 65534 needs root (tests run as root in CI)')

REFUSALS = [
    # id, make(tmp_path) -> path, rule, words in the message
    ('relative', lambda tmp_path: 'lab_a.ko', 'relative_path', 'not absolute'),
    ('relative-dot', lambda tmp_path: './lab_a.ko', 'relative_path', 'not absolute'),
    ('missing', lambda tmp_path: str(tmp_path / 'none.ko'), 'missing_file', 'does not exist'),
    ('missing-parent', lambda tmp_path: str(tmp_path / 'no' / 'a.ko'), 'missing_file', 'does not exist'),
    ('symlink', _symlink, 'not_regular_file', 'symbolic link'),
    ('fifo', _fifo, 'not_regular_file', 'FIFO'),
    ('directory', _directory, 'not_regular_file', 'directory'),
    ('device', _device, 'not_regular_file', 'character device'),
    ('socket', _socket, 'not_regular_file', 'socket'),
    ('group-writable', _mode(0o664), 'unsafe_path', 'writable by its group'),
    ('other-writable', _mode(0o646), 'unsafe_path', 'writable by others'),
    pytest.param('nobody-owner', _chown(NOBODY), 'unsafe_path', 'owned by uid 65534', marks=NEEDS_ROOT, id='nobody-owner'),
    pytest.param('nobody-0666-in-1777', _in_dir(0o1777, file_uid=NOBODY, file_mode=0o666), 'unsafe_path',
                 r'directory .*/d is writable by its group and others \(mode 1777', marks=NEEDS_ROOT,
                 id='nobody-0666-in-1777'),
    ('root-file-in-1777', _in_dir(0o1777), 'unsafe_path', r'directory .*/d is writable by its group and others'),
    ('group-writable-parent', _in_dir(0o775), 'unsafe_path', r'directory .*/d is writable by its group \(mode 0775'),
    pytest.param('nobody-parent', _in_dir(0o755, dir_uid=NOBODY), 'unsafe_path', r'directory .*/d is owned by uid 65534',
                 marks=NEEDS_ROOT, id='nobody-parent'),
    ('zlib-corrupt-gz', _bytes(gzip.compress(VALID)[:20] + b'\xff' * 40 + gzip.compress(VALID)[60:], 'a.ko.gz'),
     'not_a_module', 'broken gzip'),
    ('truncated-gz', _bytes(gzip.compress(VALID)[:-12], 'a.ko.gz'), 'not_a_module', 'truncated gzip'),
    ('truncated-xz', _bytes(kofactory.compress(VALID, 'xz')[:-30], 'a.ko.xz'), 'not_a_module', 'xz'),
    ('garbage-after-gz', _bytes(gzip.compress(VALID) + b'junk', 'a.ko.gz'), 'not_a_module', 'trailing garbage'),
    ('broken-xz', _bytes(b'\xfd7zXZ\x00garbage'), 'not_a_module', 'broken xz'),
    ('zstd', _bytes(b'\x28\xb5\x2f\xfd' + b'\x00' * 10), 'not_a_module', 'zstd'),
    ('not-elf', _bytes(b'hello'), 'not_a_module', 'not an ELF file'),
    ('empty', _bytes(b''), 'not_a_module', 'not an ELF file'),
    ('header-only', _bytes(b'\x7fELF\x02\x01\x01' + b'\x00' * 9), 'not_a_module', 'truncated'),
    ('truncated-64', _bytes(VALID[:64]), 'not_a_module', 'truncated'),
    ('truncated-half', _bytes(VALID[:len(VALID) // 2]), 'not_a_module', 'truncated'),
    ('truncated-1', _bytes(VALID[:-1]), 'not_a_module', 'truncated'),
    ('huge-e_shoff', _bytes(_huge_field(0x28, '<Q', 2 ** 64 - 1)), 'not_a_module', 'section table'),
    ('e_shoff-2**62', _bytes(_huge_field(0x28, '<Q', 2 ** 62)), 'not_a_module', 'section table'),
    ('huge-e_shnum', _bytes(_huge_field(0x3C, '<H', 0xffff)), 'not_a_module', 'section table'),
    ('section-past-end', _bytes(_huge_field(SHOFF + 64 + 0x20, '<Q', 2 ** 64 - 1)), 'not_a_module',
     'section 1 .* ends past'),
    ('section-offset-past-end', _bytes(_huge_field(SHOFF + 64 + 0x18, '<Q', len(VALID) + 1)), 'not_a_module',
     'section 1 .* ends past'),
    ('e_shentsize-0', _bytes(_huge_field(0x3A, '<H', 0)), 'not_a_module', 'section headers of 0 bytes'),
    ('e_shstrndx-out', _bytes(_huge_field(0x3E, '<H', 0xfff0)), 'not_a_module', 'no usable section table'),
    ('not-ET_REL', _bytes(_huge_field(0x10, '<H', 2)), 'not_a_module', 'not a relocatable object'),
    ('no-modinfo', _bytes(kofactory.elf_bytes([('.text', b'\x90')])), 'not_a_module', 'no .modinfo'),
    ('name-traversal', _bytes(kofactory.elf_bytes([('.modinfo', b'name=../../x\x00')])), 'not_a_module',
     'not a kernel module name'),
    ('file-too-large', _bytes(VALID + b'\x00' * (2 << 20)), 'too_large', 'larger than'),
    ('gz-bomb', _bytes(gzip.compress(b'\x00' * (3 << 20), 1), 'bomb.ko.gz'), 'too_large', 'decompresses to more'),
    ('xz-bomb', _bytes(xz_bomb(3 << 20), 'bomb.ko.xz'), 'too_large', 'decompresses to more'),
]


@pytest.mark.parametrize('case, make, rule, words', [
    case if hasattr(case, 'marks') else pytest.param(*case, id=case[0]) for case in REFUSALS])
def test_refusals(tmp_path, trust, case, make, rule, words):
    path = make(tmp_path)
    result = {}

    def call():
        try:
            open_module(path, trust, max_bytes=2 << 20)
        except Exception as exc:  # pylint: disable=broad-except
            result['exc'] = exc

    # A FIFO or device must never block: run in a thread and give up waiting after a second.
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(1.0)
    assert not worker.is_alive(), '%s: open_module(%s) still running after 1 s' % (case, path)
    exc = result.get('exc')
    assert isinstance(exc, KoFileError), '%s: %r' % (case, exc)
    assert exc.rule == rule, exc.message
    assert __import__('re').search(words, exc.message), exc.message


def test_unsafe_path_names_the_directory_its_owner_and_mode(tmp_path, trust):
    path = _in_dir(0o775)(tmp_path)
    with pytest.raises(KoFileError) as info:
        open_module(path, trust)
    assert info.value.detail == {'unsafe_path': str(tmp_path / 'd'), 'owner': 0, 'mode': '0775'}
    assert info.value.message.startswith('refusing %s: directory %s ' % (path, tmp_path / 'd'))


def test_default_trust_refuses_a_file_under_tmp(tmp_path):
    # pytest's tmp_path is under /tmp (1777): with nothing trusted, that directory is refused.
    path = _valid(tmp_path)
    with pytest.raises(KoFileError) as info:
        open_module(path)
    assert info.value.rule == 'unsafe_path'
    assert info.value.detail['unsafe_path'] == '/tmp'


def test_symlinked_parent_in_a_checked_directory_is_followed(tmp_path, trust):
    real = tmp_path / 'real'
    real.mkdir()
    os.chmod(str(real), 0o755)
    path = _valid(real)
    os.symlink('real', str(tmp_path / 'alias'))
    assert open_module(str(tmp_path / 'alias' / 'a.ko'), trust).info.name == 'a'
    # the same link inside a group-writable directory is refused: others could re-point it
    shared = tmp_path / 'shared'
    shared.mkdir()
    os.chmod(str(shared), 0o775)
    os.symlink(str(real), str(shared / 'alias'))
    with pytest.raises(KoFileError) as info:
        open_module(str(shared / 'alias' / 'a.ko'), trust)
    assert (info.value.rule, info.value.detail['unsafe_path']) == ('unsafe_path', str(shared))
    assert os.path.exists(path)


def test_dotdot_and_double_slash_are_normalised(tmp_path, trust):
    path = _valid(tmp_path)
    image = open_module('/' + str(tmp_path / 'x' / '..' / 'a.ko'), trust)
    assert image.path == path


@pytest.mark.parametrize('reader', ['read_kofile', 'open_module'])
def test_fifo_does_not_hang_either_reader(tmp_path, trust, reader):
    path = _fifo(tmp_path)
    code = ('import sys; sys.path[:0] = %r\n'
            'from ansible_collections.kernelops.livepatch.plugins.module_utils import _kofile as k\n'
            'try:\n    k.%s(%r%s)\nexcept k.KoFileError as exc:\n    print(exc.rule)\n'
            % (sys.path, reader, path, ', k.FileTrust(trusted_dirs=(%r,))' % str(tmp_path) if reader == 'open_module'
               else ''))
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=20, check=False)
    assert done.stdout.strip() == 'not_regular_file', done.stderr


def test_xz_bomb_of_1_gib_is_refused_with_bounded_memory(tmp_path, trust):
    """The issue's bomb: 1 GiB of zeros in a ~250 KB .ko.xz, opened with the default cap.

    The child's own peak RSS is VmHWM (resource.getrusage's ru_maxrss is kept across execve on
    Linux, so it would include pytest's size at fork); 300 MB is the bound the issue sets for a
    1 GiB bomb (the cap is 64 MiB: about 64 MiB of output is held before the refusal).
    """
    path = write(tmp_path / 'bomb.ko.xz', xz_bomb(1 << 30))
    code = ('import sys; sys.path[:0] = %r\n'
            'from ansible_collections.kernelops.livepatch.plugins.module_utils import _kofile as k\n'
            'try:\n    k.open_module(%r, k.FileTrust(trusted_dirs=(%r,)))\n'
            'except k.KoFileError as exc:\n    print(exc.rule)\n'
            'print([line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")][0])\n'
            % (sys.path, path, str(tmp_path)))
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60, check=False)
    rule, peak_kib = done.stdout.split()
    assert rule == 'too_large', done.stderr
    assert int(peak_kib) < 300 * 1000, 'peak RSS %s KiB' % peak_kib


def test_signed_needs_the_marker_at_the_very_end():
    assert parse_module(ko_bytes('a', signed=True)[0]).signed is True
    assert parse_module(ko_bytes('a', signed=True)[0] + b'\x00').signed is False
    assert parse_module(ko_bytes('a')[0]).signed is False


def test_normalise_name():
    assert normalise_name('livepatch-foo-bar') == 'livepatch_foo_bar'
    assert normalise_name('lab_a') == 'lab_a'


def test_missing_file_read_kofile(tmp_path):
    with pytest.raises(KoFileError) as info:
        read_kofile(str(tmp_path / 'none.ko'))
    assert info.value.rule == 'missing_file'


@pytest.mark.parametrize('blob, expected', [
    (build_id_note('ab' * 20), 'ab' * 20),
    (b'\x00' * 5, None),
    (b'', None),
    (struct.pack('<III', 0xffffffff, 4, 3) + b'GNU\x00', None),   # name size past the end
    (struct.pack('<III', 4, 0xffffffff, 3) + b'GNU\x00', None),   # desc size past the end
    (struct.pack('<III', 4, 0, 3) + b'GNU\x00', None),            # empty ID
    (struct.pack('<III', 4, 2, 1) + b'GNU\x00ab\x00\x00' + build_id_note('cd' * 20), 'cd' * 20),  # second note
    ('not bytes', None),
])
def test_build_id_note_parsing(blob, expected):
    assert parse_build_id_note(blob) == expected


@pytest.mark.parametrize('path, name', [
    ('/x/livepatch-foo.ko', 'livepatch_foo'), ('/x/lab_a.ko.xz', 'lab_a'), ('b.ko.gz', 'b'), ('c', 'c'),
])
def test_module_name_from_path(path, name):
    assert module_name_from_path(path) == name


def test_read_modinfo_gives_every_key_of_an_image():
    data = ko_bytes('lab-a', replace=True, extra={'depends': 'x,y'})[0]
    info = read_modinfo(data)
    assert (info['name'], info['x_replace'], info['depends'], info['livepatch']) == (['lab-a'], ['1'], ['x,y'], ['Y'])
    assert parse_module(data).depends == ('x', 'y')
    with pytest.raises(KoFileError) as refused:
        read_modinfo(kofactory.elf_bytes([('.text', b'\x90')]))
    assert refused.value.rule == 'not_a_module'
