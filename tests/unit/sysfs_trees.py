# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Hand-written sysfs/procfs trees of what each kernel era exposes (``docs/developer.md`` §1, §7).

Each tree is a dict path → content (str, bytes, or None for an empty directory). Trees recorded
from the lab's real kernels live in ``fixtures/`` and are loaded by ``load_recorded``.
"""

from __future__ import annotations

import json
import os
import struct

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


def note(build_id_hex):
    return struct.pack('<III', 4, len(build_id_hex) // 2, 3) + b'GNU\x00' + bytes.fromhex(build_id_hex)


def write_tree(root, tree):
    for path, content in tree.items():
        full = os.path.join(root, path)
        if content is None:
            os.makedirs(full, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'wb') as handle:
            handle.write(content if isinstance(content, bytes) else content.encode())
    return root


def patch_files(name, enabled='1', transition='0', extra=None, objects=('vmlinux',), patched=None, refcnt='1',
                build_id=None, funcs=None):
    """The files of one patch directory and its /sys/module entry."""
    base = 'sys/kernel/livepatch/%s/' % name
    tree = {base + 'enabled': enabled + '\n'}
    if transition is not None:
        tree[base + 'transition'] = transition + '\n'
    for key, value in (extra or {}).items():
        tree[base + key] = value
    for obj in objects:
        for func in (funcs or ['%s_func,1' % name]):
            tree[base + obj + '/' + func] = None
        if patched is not None:
            tree[base + obj + '/patched'] = patched + '\n'
    tree['sys/module/%s/refcnt' % name] = refcnt + '\n'
    tree['sys/module/%s/taint' % name] = 'OEK\n'
    if build_id:
        tree['sys/module/%s/notes/.note.gnu.build-id' % name] = note(build_id)
    return tree


def proc_modules(rows):
    """``rows``: (name, refcnt, taint) newest first, as /proc/modules lists them."""
    lines = ['%s 16384 %s - Live 0xffffffffc0a00000 (%s)' % (name, refcnt, taint) for name, refcnt, taint in rows]
    lines.append('virtio_net 65536 0 - Live 0xffffffffc0900000')
    return {'proc/modules': '\n'.join(lines) + '\n'}


def base(release, tainted='45056'):
    return {'proc/sys/kernel/osrelease': release + '\n', 'proc/sys/kernel/tainted': tainted + '\n',
            'sys/kernel/livepatch': None}


def load_recorded(name):
    """A tree recorded from a real kernel by the lab (``tests/integration``), as JSON path → text."""
    with open(os.path.join(FIXTURES, name + '.json')) as handle:
        data = json.load(handle)
    tree = {}
    for path, content in data['files'].items():
        if content is None:
            tree[path] = None
        elif isinstance(content, dict) and 'hex' in content:
            tree[path] = bytes.fromhex(content['hex'])
        else:
            tree[path] = content
    return data, tree
