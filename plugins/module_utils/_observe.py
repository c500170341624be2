# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Observe: read a host's livepatch state from sysfs and procfs into an immutable snapshot.

PRIVATE: this module_util may change at any time.

Everything is read below a ``root`` path (``/`` on a host; a fixture tree in tests), with no
external command. The kernel removes patch directories asynchronously (``livepatch-kernel.md``
§2.1, §3.4), so every read tolerates a file vanishing and says so in ``warnings`` instead of
failing.
"""

from __future__ import annotations

import errno
import os
import re

from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import parse_build_id_note

__all__ = [
    'ObserveError', 'Patch', 'Leftover', 'Transition', 'Snapshot', 'Capabilities',
    'observe', 'capabilities_for', 'parse_release', 'decode_taint', 'livepatch_dir',
]

LIVEPATCH_DIR = 'sys/kernel/livepatch'

# Letters of /proc/sys/kernel/tainted by bit (kernel/panic.c taint_flags). Bit 15 is
# TAINT_LIVEPATCH, 'K' (livepatch-kernel.md §1.4).
TAINT_LETTERS = 'PFSRMBUDAWCIOELKXTNJ'
TAINT_LIVEPATCH_BIT = 15

# The kernel eras whose rules differ (livepatch-kernel.md §0, §3, §8 rule 1).
ERA_IMMEDIATE = '4.0-4.11'   # no transitions, patch modules can never be unloaded
ERA_STACKED = '4.12-5.0'     # consistency model, enforced stacking, disabled patches stay listed
ERA_FREE = '5.1+'            # no enforced order, disabled patches are freed, atomic replace


class ObserveError(Exception):
    """The root cannot be read at all."""


def livepatch_dir(root):
    return os.path.join(root, LIVEPATCH_DIR)


def parse_release(release):
    """``6.12.117+deb13-amd64`` → ``(6, 12)``; None when it does not start with two numbers."""
    match = re.match(r'^(\d+)\.(\d+)', release or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


class Capabilities(object):
    """What this kernel's livepatch interface offers, and which era's rules apply."""

    FIELDS = ('transition', 'signal', 'force', 'replace', 'stack_order', 'patched',
              'atomic_replace', 'reenable', 'unload', 'enforced_stacking', 'klp_state')

    def __init__(self, era, source, **flags):
        self.era = era
        self.source = source
        for field in self.FIELDS:
            setattr(self, field, bool(flags.get(field, False)))

    def as_dict(self):
        result = dict((field, getattr(self, field)) for field in self.FIELDS)
        result['era'] = self.era
        result['source'] = self.source
        return result

    @classmethod
    def for_era(cls, era, source, version=None):
        """Capabilities implied by an era; ``version`` refines the attributes added later (§0)."""
        version = version or {ERA_IMMEDIATE: (4, 0), ERA_STACKED: (4, 12), ERA_FREE: (5, 1)}[era]
        free = era == ERA_FREE
        return cls(
            era, source,
            transition=era != ERA_IMMEDIATE,
            signal=era == ERA_STACKED and version >= (4, 15),
            force=era != ERA_IMMEDIATE and version >= (4, 15),
            replace=free and version >= (6, 11),
            stack_order=free and version >= (6, 14),
            patched=free and version >= (6, 1),
            atomic_replace=free,
            reenable=not free,
            unload=era != ERA_IMMEDIATE,
            enforced_stacking=not free,
            klp_state=free and version >= (5, 5),
        )


def capabilities_for(release, attributes_seen):
    """Decide the era from the attributes the kernel shows, falling back to the release.

    Attributes are per patch, so they are only visible while a patch is loaded. They win over
    the release because distribution kernels backport (a RHEL 4.18 kernel has 5.1 semantics):
    ``signal`` exists only on 4.15-5.0 and ``transition`` only from 4.12 (§8 rule 1).
    """
    version = parse_release(release) or (0, 0)
    if attributes_seen:
        if 'signal' in attributes_seen:
            era = ERA_STACKED
        elif 'transition' not in attributes_seen:
            era = ERA_IMMEDIATE
        elif version >= (5, 1) or 'force' in attributes_seen:
            # transition without signal: 4.12-4.14 (no force either) or 5.1+ (force, no signal)
            era = ERA_FREE
        else:
            era = ERA_STACKED
        caps = Capabilities.for_era(era, 'attributes', version if era == ERA_FREE and version >= (5, 1) else None)
        # Newer read-only attributes are facts when seen; a backport may have them early.
        for attribute in ('replace', 'stack_order', 'patched', 'force', 'signal'):
            if attribute in attributes_seen:
                setattr(caps, attribute, True)
        return caps
    if version >= (5, 1):
        era = ERA_FREE
    elif version >= (4, 12):
        era = ERA_STACKED
    else:
        era = ERA_IMMEDIATE
    return Capabilities.for_era(era, 'release', version if version >= (4, 0) else None)


class _Reader(object):
    """Reads small sysfs/procfs files, turning races and garbage into warnings."""

    def __init__(self, root):
        self.root = root
        self.warnings = []

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def text(self, *parts):
        """Stripped file content, or None if the file does not exist (or vanished)."""
        try:
            with open(self.path(*parts), 'rb') as handle:
                return handle.read().decode('utf-8', 'replace').strip()
        except (IOError, OSError) as exc:
            if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ESRCH):
                return None
            if exc.errno == errno.EACCES:
                self.warnings.append('cannot read %s: permission denied (run as root)' % self.path(*parts))
                return None
            self.warnings.append('cannot read %s: %s' % (self.path(*parts), exc.strerror or exc))
            return None

    def raw(self, *parts):
        try:
            with open(self.path(*parts), 'rb') as handle:
                return handle.read()
        except (IOError, OSError):
            return None

    def integer(self, *parts):
        value = self.text(*parts)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            self.warnings.append('unexpected content %r in %s' % (value[:40], self.path(*parts)))
            return None

    def boolean(self, *parts):
        value = self.integer(*parts)
        if value is None:
            return None
        if value not in (0, 1):
            self.warnings.append('unexpected value %d in %s' % (value, self.path(*parts)))
            return None
        return value == 1

    def listdir(self, *parts):
        try:
            return sorted(os.listdir(self.path(*parts)))
        except (IOError, OSError) as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                self.warnings.append('cannot list %s: %s' % (self.path(*parts), exc.strerror or exc))
            return []

    def isdir(self, *parts):
        return os.path.isdir(self.path(*parts))


class Patch(object):
    """One directory of ``/sys/kernel/livepatch``: a patch on the kernel's list."""

    __slots__ = ('name', 'enabled', 'transition', 'replace', 'stack_order', 'objects',
                 'refcnt', 'taint', 'build_id', 'srcversion', 'attributes')

    def __init__(self, name, enabled, transition=False, replace=None, stack_order=None, objects=(),
                 refcnt=None, taint=None, build_id=None, srcversion=None, attributes=()):
        self.name = name
        self.enabled = enabled
        self.transition = transition
        self.replace = replace
        self.stack_order = stack_order
        self.objects = tuple(objects)
        self.refcnt = refcnt
        self.taint = taint
        self.build_id = build_id
        self.srcversion = srcversion
        self.attributes = tuple(attributes)

    @property
    def live(self):
        """On the stack: enabled, or being patched. A patch being unpatched is on its way out."""
        return bool(self.enabled)

    def as_dict(self):
        return {
            'name': self.name,
            'enabled': self.enabled,
            'transition': self.transition,
            'replace': self.replace,
            'stack_order': self.stack_order,
            'objects': [dict(obj) for obj in self.objects],
            'refcnt': self.refcnt,
            'taint': self.taint,
            'build_id': self.build_id,
            'srcversion': self.srcversion,
        }


class Leftover(object):
    """A loaded livepatch module that is not on the kernel's list any more.

    ``retired``: disabled or replaced, refcnt 0, ``rmmod`` removes it. ``forced``: refcnt stuck
    at 1 after a forced transition; only a reboot removes it (§5.4, §5.5, §8 rule 8).
    """

    __slots__ = ('name', 'refcnt', 'taint', 'build_id', 'state')

    def __init__(self, name, refcnt, taint=None, build_id=None):
        self.name = name
        self.refcnt = refcnt
        self.taint = taint
        self.build_id = build_id
        self.state = 'forced' if refcnt else 'retired'

    @property
    def reboot_required(self):
        return self.state == 'forced'

    def as_dict(self):
        return {'name': self.name, 'refcnt': self.refcnt, 'taint': self.taint, 'build_id': self.build_id,
                'state': self.state, 'reboot_required': self.reboot_required}


class Transition(object):
    """The one transition the kernel runs at a time (§5.1)."""

    __slots__ = ('patch', 'direction', 'blockers')

    def __init__(self, patch, direction, blockers=()):
        self.patch = patch
        self.direction = direction
        self.blockers = tuple(blockers)

    def as_dict(self):
        return {'patch': self.patch, 'direction': self.direction, 'blockers': [dict(b) for b in self.blockers]}


class Snapshot(object):
    """Everything observed at one moment. ``stack`` is bottom to top."""

    def __init__(self, root, kernel_release, livepatch_supported, capabilities, stack, order_source,
                 transition, leftovers, taint, loaded_modules, warnings):
        self.root = root
        self.kernel_release = kernel_release
        self.livepatch_supported = livepatch_supported
        self.capabilities = capabilities
        self.stack = tuple(stack)
        self.order_source = order_source
        self.transition = transition
        self.leftovers = tuple(leftovers)
        self.taint = taint
        self.loaded_modules = frozenset(loaded_modules)
        self.warnings = tuple(warnings)

    def patch(self, name):
        for patch in self.stack:
            if patch.name == name:
                return patch
        return None

    def leftover(self, name):
        for leftover in self.leftovers:
            if leftover.name == name:
                return leftover
        return None

    @property
    def live_stack(self):
        """The patches that are in effect or being patched, bottom to top."""
        return tuple(patch for patch in self.stack if patch.live)

    def names(self):
        return [patch.name for patch in self.live_stack]

    @property
    def reboot_required(self):
        return any(leftover.reboot_required for leftover in self.leftovers)

    def as_dict(self):
        return {
            'root': self.root,
            'kernel_release': self.kernel_release,
            'livepatch_supported': self.livepatch_supported,
            'capabilities': self.capabilities.as_dict(),
            'stack': [patch.as_dict() for patch in self.stack],
            'order_source': self.order_source,
            'transition': self.transition.as_dict() if self.transition else None,
            'leftovers': [leftover.as_dict() for leftover in self.leftovers],
            'taint': self.taint,
            'reboot_required': self.reboot_required,
            'warnings': list(self.warnings),
        }


def decode_taint(value):
    if value is None:
        return None
    letters = ''.join(letter for bit, letter in enumerate(TAINT_LETTERS) if value & (1 << bit))
    unknown = value >> len(TAINT_LETTERS)
    return {
        'value': value,
        'letters': letters + ('?' if unknown else ''),
        'livepatch': bool(value & (1 << TAINT_LIVEPATCH_BIT)),
    }


def _read_proc_modules(reader):
    """``/proc/modules`` rows, newest module first (livepatch-kernel.md §4.2)."""
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


def _read_objects(reader, name, entries):
    objects = []
    for entry in entries:
        if not reader.isdir(LIVEPATCH_DIR, name, entry):
            continue
        functions = [func for func in reader.listdir(LIVEPATCH_DIR, name, entry)
                     if reader.isdir(LIVEPATCH_DIR, name, entry, func)]
        objects.append({
            'name': entry,
            'patched': reader.boolean(LIVEPATCH_DIR, name, entry, 'patched'),
            'functions': functions,
        })
    return objects


def _read_build_id(reader, name):
    blob = reader.raw('sys', 'module', name, 'notes', '.note.gnu.build-id')
    return parse_build_id_note(blob) if blob else None


def _read_patch(reader, name):
    """Read one patch directory; None when it vanished while being read (§2.1)."""
    entries = reader.listdir(LIVEPATCH_DIR, name)
    enabled = reader.boolean(LIVEPATCH_DIR, name, 'enabled')
    if enabled is None and not reader.isdir(LIVEPATCH_DIR, name):
        reader.warnings.append('patch %s vanished while it was read (the kernel frees patches asynchronously)' % name)
        return None
    attributes = [entry for entry in entries if not reader.isdir(LIVEPATCH_DIR, name, entry)]
    transition = reader.boolean(LIVEPATCH_DIR, name, 'transition') if 'transition' in attributes else False
    return Patch(
        name=name,
        enabled=enabled,
        transition=bool(transition),
        replace=reader.boolean(LIVEPATCH_DIR, name, 'replace') if 'replace' in attributes else None,
        stack_order=reader.integer(LIVEPATCH_DIR, name, 'stack_order') if 'stack_order' in attributes else None,
        objects=_read_objects(reader, name, entries),
        refcnt=reader.integer('sys', 'module', name, 'refcnt'),
        taint=reader.text('sys', 'module', name, 'taint'),
        build_id=_read_build_id(reader, name),
        srcversion=reader.text('sys', 'module', name, 'srcversion'),
        attributes=attributes,
    )


def _order(patches, module_rows, has_stack_order):
    """Bottom-to-top order and how it was found (§4.1, §4.2)."""
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


def _blocking_tasks(reader, target, with_stacks):
    """Tasks whose ``patch_state`` differs from the transition's target (§5.3)."""
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


def _first_known(*values):
    for value in values:
        if value is not None:
            return value
    return None


def read_kernel_release(root):
    reader = _Reader(root)
    release = reader.text('proc', 'sys', 'kernel', 'osrelease')
    if release is None and os.path.realpath(root) == '/':
        release = os.uname()[2]
    return release


def observe(root='/', blocker_stacks=False):
    """Read the livepatch state below ``root`` into a :class:`Snapshot`."""
    if not os.path.isdir(root):
        raise ObserveError('root %s does not exist or is not a directory' % root)
    reader = _Reader(root)
    release = read_kernel_release(root)
    if release is None:
        reader.warnings.append('kernel release unknown: %s is missing' % reader.path('proc', 'sys', 'kernel', 'osrelease'))
    supported = reader.isdir(LIVEPATCH_DIR)
    names = [name for name in reader.listdir(LIVEPATCH_DIR) if reader.isdir(LIVEPATCH_DIR, name)]
    patches = [patch for patch in (_read_patch(reader, name) for name in names) if patch is not None]
    attributes_seen = set()
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
        transition = Transition(patch.name, direction, blockers)

    on_list = set(patch.name for patch in stack)
    leftovers = [
        Leftover(row['name'], _first_known(reader.integer('sys', 'module', row['name'], 'refcnt'), row['refcnt']),
                 row['taint'], _read_build_id(reader, row['name']))
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
        loaded_modules=[row['name'] for row in module_rows],
        warnings=reader.warnings,
    )
