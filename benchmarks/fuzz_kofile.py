# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark-style fuzz run of the module reader (not a test): many mutated files through open_module().

Seeds: fake modules from tests/unit/kofactory.py and, when the lab cache exists, the lab's real
patch modules and a signed Debian module of each lab kernel; each as .ko, .ko.gz and .ko.xz.
Every file gets 1-4 mutations (byte flips, truncations, splices, copies, header fields set to
extreme values), applied to the compressed file or to the ELF image before compressing. Each
mutated file is written under a temporary directory and opened with ``open_module``.

Prints the number of files, the outcomes (accepted, refusals by rule) and every exception other
than KoFileError by type (the run fails if there is one); accepted images are also read by
pyelftools, when installed, and disagreements on name or build ID are counted. Then the
decompression bomb: 1 GiB of zeros compressed by ``lzma`` (about 156 KB), opened in a child
process whose peak RSS (``resource.getrusage``) is printed next to that of a child that only
imports the module.

Usage: ``.venv/bin/python benchmarks/fuzz_kofile.py [--count 20000] [--seed 1] [--quick-bomb]``
(``--quick-bomb`` builds the bomb from repeated xz blocks in milliseconds instead of ~30 s).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import lzma
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'tests', 'unit'), os.path.join(ROOT, 'tests')]

from collection_tree import collection_tree, importable  # noqa: E402  pylint: disable=wrong-import-position

if not importable():
    sys.path.insert(0, collection_tree())

import kofactory  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.kernelops.livepatch.plugins.module_utils import _elf, _kofile  # noqa: E402  pylint: disable=wrong-import-position

LAB = os.path.expanduser('~/.cache/kernelops-livepatch-lab')


def seeds():
    """(label, ELF bytes) of every seed module."""
    found = [('fake', kofactory.ko_bytes('lab-a')[0]), ('fake-signed', kofactory.ko_bytes('b', signed=True)[0])]
    real = sorted(glob.glob(os.path.join(LAB, 'patches', '*', 'lab_[ab].ko')))
    real += sorted(glob.glob(os.path.join(LAB, 'kernels', '*', '*lib', 'modules', '*', 'kernel', 'net', 'key',
                                          'af_key.ko*')))
    for path in real:
        with open(path, 'rb') as handle:
            data = handle.read()
        if path.endswith('.xz'):
            data = lzma.decompress(data)
        found.append((os.path.relpath(path, LAB), data))
    return found


def random_ops(rng, size):
    ops = []
    for _step in range(rng.randint(1, 4)):
        kind = rng.choice(('flip', 'flip', 'truncate', 'splice', 'copy', 'field', 'field'))
        where = rng.randrange(max(size, 1))
        if kind == 'flip':
            ops.append(('flip', where, rng.randrange(1, 256)))
        elif kind == 'truncate':
            ops.append(('truncate', where))
        elif kind == 'splice':
            insert = bytes(rng.randrange(256) for _byte in range(rng.randrange(33)))
            ops.append(('splice', where, where + rng.randrange(64), insert))
        elif kind == 'copy':
            ops.append(('copy', where, rng.randrange(max(size, 1)), rng.randrange(max(size, 1))))
        else:
            ops.append(('field', rng.randrange(200), rng.randrange(20)))
    return ops


def elftools_view(data):
    """(name, build ID) read by pyelftools, or None when pyelftools cannot read it."""
    try:
        name, _vermagic, build_id = kofactory.elftools_view(data)
    except Exception:  # pylint: disable=broad-except
        return None
    return name, build_id


def fuzz(count, seed, directory):
    rng = random.Random(seed)
    trust = _kofile.FileTrust(trusted_dirs=(directory,))
    pool = seeds()
    outcomes = collections.Counter()
    escaped = collections.Counter()
    examples = {}
    compared = disagreements = 0
    path = os.path.join(directory, 'm.ko')
    packed = dict(((label, how), kofactory.compress(elf, how)) for label, elf in pool for how in (None, 'gz', 'xz'))
    inner = 0
    for number in range(count):
        label, elf = rng.choice(pool)
        how = rng.choice((None, 'gz', 'xz'))
        if how and rng.random() < 0.15:
            # damage inside the compression: the ELF reader sees it (fast levels: compressing is the cost)
            inner += 1
            mutated = kofactory.mutate(elf, random_ops(rng, len(elf)))
            raw = gzip.compress(mutated, 1) if how == 'gz' else lzma.compress(mutated, preset=0)
        else:
            outer = packed[(label, how)]
            raw = kofactory.mutate(outer, random_ops(rng, len(outer)))
        with open(path, 'wb') as handle:
            handle.write(raw)
        try:
            image = _kofile.open_module(path, trust)
        except _kofile.KoFileError as exc:
            outcomes['refused: ' + exc.rule] += 1
            continue
        except Exception as exc:  # pylint: disable=broad-except
            escaped[type(exc).__name__] += 1
            examples.setdefault(type(exc).__name__, (number, label, how, repr(exc)))
            keep = os.path.join(directory, 'escaped-%d.ko' % number)
            os.rename(path, keep)
            continue
        outcomes['accepted'] += 1
        other = elftools_view(image.data)
        if other is not None and other[0] is not None:
            compared += 1
            if other != (image.info.name, image.info.build_id):
                disagreements += 1
                note = _elf._Elf(path, image.data).section('.note.gnu.build-id')
                examples['disagreement %d' % disagreements] = (
                    number, label, how, 'pyelftools %r, ours %r; note %s' % (
                        other, (image.info.name, image.info.build_id), note.hex() if note else None))
    return {'files': count, 'inside_compression': inner, 'seeds': [label for label, _elf in pool], 'outcomes': dict(outcomes),
            'exceptions': dict(escaped), 'examples': examples, 'pyelftools_compared': compared,
            'pyelftools_disagreements': disagreements}


CHILD = '''
import resource, sys
sys.path[:0] = %r
from ansible_collections.kernelops.livepatch.plugins.module_utils import _kofile as k
rule = None
if %r:
    try:
        k.open_module(%r, k.FileTrust(trusted_dirs=(%r,)))
        rule = 'accepted'
    except k.KoFileError as exc:
        rule = exc.rule
# VmHWM: this process's own peak (a new mm at exec); ru_maxrss is kept across execve on Linux,
# so it also covers the parent's size at fork time: an upper bound.
hwm = [line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')][0]
print(rule, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm)
'''


def peak_rss(path, directory, really):
    code = CHILD % (sys.path, really, path, directory)
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    rule, kib, hwm = done.stdout.split()
    return rule, int(kib), int(hwm)


def bomb(directory, quick):
    path = os.path.join(directory, 'bomb.ko.xz')
    started = time.monotonic()
    if quick:
        data = kofactory.xz_bomb(1 << 30)
    else:
        compressor = lzma.LZMACompressor(format=lzma.FORMAT_XZ)
        zeros = b'\x00' * (1 << 20)
        data = b''.join([compressor.compress(zeros) for _mib in range(1024)] + [compressor.flush()])
    made = time.monotonic() - started
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, 0o644)
    started = time.monotonic()
    rule, kib, hwm = peak_rss(path, directory, True)
    took = time.monotonic() - started
    _none, base, base_hwm = peak_rss(path, directory, False)
    return {'bytes': len(data), 'inflates_to': 1 << 30, 'made_in_s': round(made, 1), 'rule': rule,
            'peak_rss_kib': kib, 'baseline_rss_kib': base, 'vmhwm_kib': hwm, 'baseline_vmhwm_kib': base_hwm,
            'refused_in_s': round(took, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--count', type=int, default=20000)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--quick-bomb', action='store_true')
    parser.add_argument('--json')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='fuzz-kofile-') as directory:
        directory = os.path.realpath(directory)
        started = time.monotonic()
        result = fuzz(args.count, args.seed, directory)
        result['fuzz_seconds'] = round(time.monotonic() - started, 1)
        result['bomb'] = bomb(directory, args.quick_bomb)
        if result['exceptions']:
            kept = os.path.join(tempfile.gettempdir(), 'fuzz-kofile-escaped')
            os.makedirs(kept, exist_ok=True)
            for name in glob.glob(os.path.join(directory, 'escaped-*.ko')):
                os.rename(name, os.path.join(kept, os.path.basename(name)))
            result['escaped_files'] = kept
    print('files: %d in %.1f s (seed %d; %d damaged inside the compression)' % (
        result['files'], result['fuzz_seconds'], args.seed, result['inside_compression']))
    print('seeds: %s' % ', '.join(result['seeds']))
    for outcome, number in sorted(result['outcomes'].items()):
        print('  %-28s %6d' % (outcome, number))
    print('exceptions other than KoFileError: %s' % (result['exceptions'] or 'none'))
    print('pyelftools: %d accepted images compared, %d disagreements' % (
        result['pyelftools_compared'], result['pyelftools_disagreements']))
    for kind, example in result['examples'].items():
        print('  example %s: %s' % (kind, example))
    b = result['bomb']
    print('bomb: %d bytes -> 1 GiB (made in %.1f s), %s in %.2f s; peak RSS (getrusage) %.1f MB, VmHWM %.1f MB; '
          'a child that only imports: %.1f MB, %.1f MB' % (
              b['bytes'], b['made_in_s'], b['rule'], b['refused_in_s'], b['peak_rss_kib'] / 1024.0,
              b['vmhwm_kib'] / 1024.0, b['baseline_rss_kib'] / 1024.0, b['baseline_vmhwm_kib'] / 1024.0))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(result, handle, indent=2, sort_keys=True)
    return 1 if result['exceptions'] or b['rule'] != 'too_large' else 0


if __name__ == '__main__':
    sys.exit(main())
