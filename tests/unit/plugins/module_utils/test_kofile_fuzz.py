# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fuzz the module reader: a refusal (KoFileError) or a valid result, never another exception.

Mutated .ko, .ko.gz and .ko.xz files: byte flips, truncations, splices, copies and header fields
overwritten with extreme values, applied to the compressed file or to the ELF image inside it
(then recompressed, so the ELF reader sees the damage too). A bounded number of examples keeps
the unit suite fast; benchmarks/fuzz_kofile.py runs tens of thousands.
"""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings, strategies as st

from ansible_collections.kernelops.livepatch.plugins.module_utils import _elf, _kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust, KoFile, KoFileError

import kofactory

CAP = 1 << 20
SEEDS = [kofactory.ko_bytes(name, signed=signed)[0] for name, signed in (('lab-a', False), ('b', True))]
INDEX = st.integers(min_value=0, max_value=1 << 16)
OPS = st.lists(st.one_of(
    st.tuples(st.just('flip'), INDEX, st.integers(min_value=1, max_value=255)),
    st.tuples(st.just('truncate'), INDEX),
    st.tuples(st.just('splice'), INDEX, INDEX, st.binary(max_size=32)),
    st.tuples(st.just('copy'), INDEX, INDEX, INDEX),
    st.tuples(st.just('field'), st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=20)),
), min_size=1, max_size=4)
RULES = {'not_a_module', 'too_large'}


def read_bytes(raw):
    """What open_module does after reading the file: decompress with the cap, parse."""
    return _elf.parse_module(_elf.decompress('/fuzz.ko', raw, CAP), '/fuzz.ko')


def check(raw):
    try:
        info = read_bytes(raw)
    except KoFileError as exc:
        assert exc.rule in RULES, exc.rule
        return
    # A valid result: the fields a caller relies on have their types and shapes.
    assert isinstance(info, KoFile)
    assert re.match(r'^[A-Za-z0-9_]{1,55}$', info.name), info.name
    assert info.build_id is None or re.match(r'^[0-9a-f]+$', info.build_id)
    assert isinstance(info.livepatch, bool) and isinstance(info.signed, bool)
    assert all(isinstance(dep, str) for dep in info.depends)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(SEEDS), how=st.sampled_from([None, 'gz', 'xz']), inner=st.booleans(), ops=OPS)
def test_mutated_modules_are_refused_or_read(seed, how, inner, ops):
    if inner:
        raw = kofactory.compress(kofactory.mutate(seed, ops), how)
    else:
        raw = kofactory.mutate(kofactory.compress(seed, how), ops)
    check(raw)


@settings(max_examples=40, deadline=None, database=None)
@given(how=st.sampled_from([None, 'gz', 'xz']), ops=OPS)
def test_mutated_files_through_open_module(tmp_path_factory, how, ops):
    directory = tmp_path_factory.mktemp('fuzz')
    path = str(directory / 'm.ko')
    with open(path, 'wb') as handle:
        handle.write(kofactory.mutate(kofactory.compress(SEEDS[0], how), ops))
    os.chmod(path, 0o644)
    try:
        image = _kofile.open_module(path, FileTrust(trusted_dirs=(str(directory),)), max_bytes=CAP)
    except KoFileError as exc:
        assert exc.rule in RULES, exc.rule
    else:
        assert isinstance(image.info, KoFile) and len(image.data) <= CAP


def test_the_mutations_do_mutate():
    # A fuzz test whose mutations change nothing cannot fail: check that they reach the reader.
    assert kofactory.mutate(SEEDS[0], [('field', 3, 0)]) != SEEDS[0]
    assert kofactory.mutate(SEEDS[0], [('truncate', 10)]) == SEEDS[0][:10]
    assert read_bytes(SEEDS[0]).name == 'lab_a'
