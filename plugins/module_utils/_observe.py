# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Observe: read a host's livepatch state from sysfs and procfs into an immutable snapshot.

PRIVATE: this module_util may change at any time.

Everything is read below a ``root`` path (``/`` on a host; a fixture tree in tests), with no
external command. The kernel removes patch directories asynchronously (docs/developer.md §2.1,
§3.4), so every read tolerates a file vanishing and says so in ``warnings`` instead of failing.
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import parse_build_id_note
# The values live in _snapshot; importing them from here keeps the callers' imports working.
from ansible_collections.kernelops.livepatch.plugins.module_utils._snapshot import (  # noqa: F401
    ERA_FREE, ERA_IMMEDIATE, ERA_STACKED, Capabilities, Leftover, ModuleSignatures, Patch, Snapshot, Transition,
    capabilities_for, parse_release,
)

__all__ = [
    'ObserveError', 'Patch', 'Leftover', 'Transition', 'Snapshot', 'Capabilities', 'ModuleSignatures',
    'observe', 'capabilities_for', 'parse_release', 'decode_taint', 'in_transition', 'transition_patch',
    'LIVEPATCH_DIR', 'ERA_IMMEDIATE', 'ERA_STACKED', 'ERA_FREE',
]

LIVEPATCH_DIR = 'sys/kernel/livepatch'

# Letters of /proc/sys/kernel/tainted by bit (kernel/panic.c taint_flags). Bit 15 is
# TAINT_LIVEPATCH, 'K' (docs/developer.md §1.4).
TAINT_LETTERS = 'PFSRMBUDAWCIOELKXTNJ'
TAINT_LIVEPATCH_BIT = 15

# Where the kernel says whether it enforces module signatures (docs/developer.md §10.3).
SIG_ENFORCE = ('sys', 'module', 'module', 'parameters', 'sig_enforce')
LOCKDOWN = ('sys', 'kernel', 'security', 'lockdown')


class ObserveError(LivepatchError):
    """The root cannot be read at all."""

    def __init__(self, message: str) -> None:
        super().__init__('bad_root', message)


def in_transition(text: Optional[str]) -> bool:
    """A patch's ``transition`` file reads 1 while the kernel runs its transition (docs/developer.md §5.1).

    The one place that decides "is a transition running": :func:`observe` and the executor's
    cheap polling read (:func:`transition_patch`) both use it.
    """
    return (text or '').strip() == '1'


def transition_patch(listdir: Callable[..., Sequence[str]], read: Callable[..., Optional[str]]) -> Optional[str]:
    """The patch in transition, or None. ``listdir(*parts)`` and ``read(*parts)`` read below the root.

    A cheap read for polling (one small file per patch): the kernel runs one transition at a
    time (docs/developer.md §5.1, §8).
    """
    for name in listdir(LIVEPATCH_DIR):
        if in_transition(read(LIVEPATCH_DIR, name, 'transition')):
            return name
    return None


class _Reader:
    """Reads small sysfs/procfs files, turning races and garbage into warnings."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.warnings: List[str] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def text(self, *parts: str) -> Optional[str]:
        """Stripped file content, or None if the file does not exist (or vanished)."""
        try:
            with open(self.path(*parts), 'rb') as handle:
                return handle.read().decode('utf-8', 'replace').strip()
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ESRCH):
                return None
            if exc.errno == errno.EACCES:
                self.warnings.append('cannot read %s: permission denied (run as root)' % self.path(*parts))
                return None
            self.warnings.append('cannot read %s: %s' % (self.path(*parts), exc.strerror or exc))
            return None

    def raw(self, *parts: str) -> Optional[bytes]:
        try:
            with open(self.path(*parts), 'rb') as handle:
                return handle.read()
        except OSError:
            return None

    def integer(self, *parts: str) -> Optional[int]:
        value = self.text(*parts)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            self.warnings.append('unexpected content %r in %s' % (value[:40], self.path(*parts)))
            return None

    def boolean(self, *parts: str) -> Optional[bool]:
        value = self.integer(*parts)
        if value is None:
            return None
        if value not in (0, 1):
            self.warnings.append('unexpected value %d in %s' % (value, self.path(*parts)))
            return None
        return value == 1

    def listdir(self, *parts: str) -> List[str]:
        try:
            return sorted(os.listdir(self.path(*parts)))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                self.warnings.append('cannot list %s: %s' % (self.path(*parts), exc.strerror or exc))
            return []

    def isdir(self, *parts: str) -> bool:
        return os.path.isdir(self.path(*parts))

    def scan(self, *parts: str) -> Tuple[List[str], List[str]]:
        """(subdirectories, other entries) of a directory, each sorted.

        One directory read: sysfs gives each entry's type with its name (kernfs fills d_type),
        so no stat per entry, which is most of an observe's system calls.
        """
        dirs, others = [], []
        try:
            with os.scandir(self.path(*parts)) as entries:
                for entry in entries:
                    try:
                        is_dir = entry.is_dir()
                    except OSError:
                        is_dir = False
                    (dirs if is_dir else others).append(entry.name)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                self.warnings.append('cannot list %s: %s' % (self.path(*parts), exc.strerror or exc))
        return sorted(dirs), sorted(others)


def decode_taint(value: Optional[int]) -> Optional[Dict[str, Any]]:
    if value is None:
        return None
    letters = ''.join(letter for bit, letter in enumerate(TAINT_LETTERS) if value & (1 << bit))
    unknown = value >> len(TAINT_LETTERS)
    return {
        'value': value,
        'letters': letters + ('?' if unknown else ''),
        'livepatch': bool(value & (1 << TAINT_LIVEPATCH_BIT)),
    }


def _read_proc_modules(reader: _Reader) -> List[Dict[str, Any]]:
    """``/proc/modules`` rows, newest module first (docs/developer.md §4.2)."""
    content = reader.text('proc', 'modules')
    rows = []
    for line in (content or '').splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        taint_match = re.search(r'\(([A-Z]+)\)\s*$', line)
        try:
            refcnt = int(fields[2])
        except ValueError:
            refcnt = None
        rows.append({'name': fields[0], 'refcnt': refcnt, 'state': fields[4],
                     'taint': taint_match.group(1) if taint_match else ''})
    return rows


def _read_objects(reader: _Reader, name: str, entries: Iterable[str]) -> List[Dict[str, Any]]:
    """The patch's object directories ``entries`` and the function directories in each."""
    objects = []
    for entry in entries:
        functions = reader.scan(LIVEPATCH_DIR, name, entry)[0]
        objects.append({
            'name': entry,
            'patched': reader.boolean(LIVEPATCH_DIR, name, entry, 'patched'),
            'functions': functions,
        })
    return objects


def _read_build_id(reader: _Reader, name: str) -> Optional[str]:
    blob = reader.raw('sys', 'module', name, 'notes', '.note.gnu.build-id')
    return parse_build_id_note(blob) if blob else None


def _read_patch(reader: _Reader, name: str) -> Optional[Patch]:
    """Read one patch directory; None when it vanished while being read (docs/developer.md §2.1)."""
    object_dirs, attributes = reader.scan(LIVEPATCH_DIR, name)
    enabled = reader.boolean(LIVEPATCH_DIR, name, 'enabled')
    if enabled is None and not reader.isdir(LIVEPATCH_DIR, name):
        reader.warnings.append('patch %s vanished while it was read (the kernel frees patches asynchronously)' % name)
        return None
    transition = in_transition(reader.text(LIVEPATCH_DIR, name, 'transition')) if 'transition' in attributes else False
    return Patch(
        name=name,
        enabled=enabled,
        transition=transition,
        replace=reader.boolean(LIVEPATCH_DIR, name, 'replace') if 'replace' in attributes else None,
        stack_order=reader.integer(LIVEPATCH_DIR, name, 'stack_order') if 'stack_order' in attributes else None,
        objects=_read_objects(reader, name, object_dirs),
        refcnt=reader.integer('sys', 'module', name, 'refcnt'),
        taint=reader.text('sys', 'module', name, 'taint'),
        build_id=_read_build_id(reader, name),
        srcversion=reader.text('sys', 'module', name, 'srcversion'),
        attributes=attributes,
    )


def _order(patches: List[Patch], module_rows: List[Dict[str, Any]],
           has_stack_order: bool) -> Tuple[List[Patch], str]:
    """Bottom-to-top order and how it was found (docs/developer.md §4.1, §4.2)."""
    if not patches:
        return [], 'stack_order' if has_stack_order else 'proc_modules'
    orders = [patch.stack_order for patch in patches]
    if all(order is not None for order in orders) and len(set(orders)) == len(orders):
        return sorted(patches, key=lambda patch: patch.stack_order), 'stack_order'
    oldest_first = [row['name'] for row in reversed(module_rows)]
    position = dict((name, index) for index, name in enumerate(oldest_first))
    if all(patch.name in position for patch in patches):
        return sorted(patches, key=lambda patch: position[patch.name]), 'proc_modules'
    return sorted(patches, key=lambda patch: patch.name), 'unknown'


def _blocking_tasks(reader: _Reader, target: int, with_stacks: bool) -> List[Dict[str, Any]]:
    """Tasks whose ``patch_state`` differs from the transition's target (docs/developer.md §5.3)."""
    blockers = []
    for pid in reader.listdir('proc'):
        if not pid.isdigit():
            continue
        for tid in reader.listdir('proc', pid, 'task'):
            state = reader.integer('proc', pid, 'task', tid, 'patch_state')
            if state is None or state == -1 or state == target:
                continue
            blocker = {'pid': int(pid), 'tid': int(tid), 'comm': reader.text('proc', pid, 'task', tid, 'comm')}
            if with_stacks:
                blocker['stack'] = (reader.text('proc', pid, 'task', tid, 'stack') or '').splitlines()
            blockers.append(blocker)
    return blockers


def _first_known(*values: Optional[int]) -> Optional[int]:
    for value in values:
        if value is not None:
            return value
    return None


def _module_signatures(reader: _Reader) -> ModuleSignatures:
    """Does the kernel refuse unsigned modules? ``sig_enforce`` first, then lockdown (docs/developer.md §10.3).

    kernel/module/signing.c module_sig_check(): an unsigned module is rejected when
    ``sig_enforce`` is set (EKEYREJECTED), else when lockdown is not ``none`` (EPERM).
    """
    sig_enforce = reader.text(*SIG_ENFORCE)
    if sig_enforce == 'Y':
        return ModuleSignatures(enforced=True, reason='module.sig_enforce is Y (/%s)' % '/'.join(SIG_ENFORCE))
    lockdown_text = reader.text(*LOCKDOWN)
    match = re.search(r'\[(\w+)\]', lockdown_text or '')
    lockdown = match.group(1) if match else None
    if lockdown is not None and lockdown != 'none':
        return ModuleSignatures(enforced=True,
                                reason='the kernel is locked down (%s, /%s)' % (lockdown, '/'.join(LOCKDOWN)))
    if sig_enforce is None and lockdown is None:
        # A kernel without CONFIG_MODULE_SIG has no sig_enforce, and lockdown needs securityfs.
        return ModuleSignatures(enforced=False, reason='neither /%s nor /%s could be read' % (
            '/'.join(SIG_ENFORCE), '/'.join(LOCKDOWN)))
    return ModuleSignatures(enforced=False, reason='module.sig_enforce is %s and lockdown is %s' % (
        sig_enforce or 'not present', lockdown or 'not present'))


def observe(root: str = '/', blocker_stacks: bool = False) -> Snapshot:
    """Read the livepatch state below ``root`` into a :class:`Snapshot`."""
    if not os.path.isdir(root):
        raise ObserveError('root %s does not exist or is not a directory' % root)
    reader = _Reader(root)
    release = reader.text('proc', 'sys', 'kernel', 'osrelease')
    if release is None and os.path.realpath(root) == '/':
        release = os.uname()[2]
    if release is None:
        reader.warnings.append('kernel release unknown: %s is missing' % reader.path('proc', 'sys', 'kernel', 'osrelease'))
    supported = reader.isdir(LIVEPATCH_DIR)
    names = reader.scan(LIVEPATCH_DIR)[0]
    patches = [patch for patch in (_read_patch(reader, name) for name in names) if patch is not None]
    attributes_seen = set()  # type: set
    for patch in patches:
        attributes_seen.update(patch.attributes)
        for obj in patch.objects:
            if obj['patched'] is not None:
                attributes_seen.add('patched')
    capabilities = capabilities_for(release, attributes_seen)
    module_rows = _read_proc_modules(reader)
    stack, order_source = _order(patches, module_rows, capabilities.stack_order)

    transition = None
    moving = [patch for patch in stack if patch.transition]
    if len(moving) > 1:
        reader.warnings.append('more than one patch reads transition=1: %s' % ', '.join(p.name for p in moving))
    if moving:
        patch = moving[0]
        direction = 'patching' if patch.enabled else 'unpatching'
        blockers = _blocking_tasks(reader, 1 if patch.enabled else 0, blocker_stacks)
        transition = Transition(patch=patch.name, direction=direction, blockers=blockers)

    on_list = set(patch.name for patch in stack)
    leftovers = [
        Leftover(name=row['name'], refcnt=_first_known(reader.integer('sys', 'module', row['name'], 'refcnt'),
                                                       row['refcnt']),
                 taint=row['taint'], build_id=_read_build_id(reader, row['name']))
        for row in module_rows
        if 'K' in row['taint'] and row['name'] not in on_list and row['state'] == 'Live'
    ]
    taint = decode_taint(reader.integer('proc', 'sys', 'kernel', 'tainted'))
    return Snapshot(
        root=root,
        kernel_release=release,
        livepatch_supported=supported,
        capabilities=capabilities,
        stack=stack,
        order_source=order_source,
        transition=transition,
        leftovers=leftovers,
        taint=taint,
        module_signatures=_module_signatures(reader),
        warnings=reader.warnings,
    )
