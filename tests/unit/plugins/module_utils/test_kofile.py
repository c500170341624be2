# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import gzip

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import (
    KoFileError, module_name_from_path, parse_build_id_note, read_kofile,
)

from kofactory import build_id_note, make_ko


def test_reads_name_vermagic_livepatch_and_build_id(tmp_path):
    path = str(tmp_path / 'lab-a.ko')
    build_id = make_ko(path, 'lab_a', release='6.1.0-50-amd64')
    ko = read_kofile(path)
    assert (ko.name, ko.release, ko.livepatch, ko.build_id) == ('lab_a', '6.1.0-50-amd64', True, build_id)
    assert ko.as_dict()['vermagic'].startswith('6.1.0-50-amd64 SMP')


def test_plain_module_is_not_a_livepatch(tmp_path):
    path = str(tmp_path / 'plain.ko')
    make_ko(path, 'plain', livepatch=False)
    assert read_kofile(path).livepatch is False


@pytest.mark.parametrize('compress', ['xz', 'gz'])
def test_compressed_modules(tmp_path, compress):
    path = str(tmp_path / ('a.ko.' + compress))
    if compress == 'xz':
        build_id = make_ko(path, 'a', compress='xz')
    else:
        raw = str(tmp_path / 'a.ko')
        build_id = make_ko(raw, 'a')
        with open(raw, 'rb') as source, gzip.open(path, 'wb') as target:
            target.write(source.read())
    assert read_kofile(path).build_id == build_id


@pytest.mark.parametrize('content, words', [
    (b'hello', 'not an ELF file'),
    (b'\x7fELF\x02\x01\x01' + b'\x00' * 9, 'truncated'),
    (b'\x28\xb5\x2f\xfd' + b'\x00' * 10, 'zstd'),
    (b'\xfd7zXZ\x00garbage', 'broken xz'),
])
def test_not_a_module(tmp_path, content, words):
    path = tmp_path / 'bad.ko'
    path.write_bytes(content)
    with pytest.raises(KoFileError, match=words):
        read_kofile(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(KoFileError, match='cannot read'):
        read_kofile(str(tmp_path / 'none.ko'))


def test_build_id_note_parsing():
    assert parse_build_id_note(build_id_note('ab' * 20)) == 'ab' * 20
    assert parse_build_id_note(b'\x00' * 5) is None


@pytest.mark.parametrize('path, name', [
    ('/x/livepatch-foo.ko', 'livepatch_foo'), ('/x/lab_a.ko.xz', 'lab_a'), ('b.ko.gz', 'b'), ('c', 'c'),
])
def test_module_name_from_path(path, name):
    assert module_name_from_path(path) == name
