# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The snapshot: what observe read at one moment, as frozen, typed, keyword-only values.

PRIVATE: this module_util may change at any time.

Built by :func:`_observe.observe` (and by tests); read by the planner, the executor and the
modules. Also the kernel eras and what each era's interface offers.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = [
    'Patch', 'Leftover', 'Transition', 'Snapshot', 'Capabilities', 'ModuleSignatures',
    'capabilities_for', 'parse_release', 'ERA_IMMEDIATE', 'ERA_STACKED', 'ERA_FREE',
]

# The kernel eras whose rules differ (docs/developer.md §0, §3, §8).
ERA_IMMEDIATE = '4.0-4.11'   # no transitions, patch modules can never be unloaded
ERA_STACKED = '4.12-5.0'     # consistency model, enforced stacking, disabled patches stay listed
ERA_FREE = '5.1+'            # no enforced order, disabled patches are freed, atomic replace


def parse_release(release: Optional[str]) -> Optional[Tuple[int, int]]:
    """``6.12.117+deb13-amd64`` → ``(6, 12)``; None when it does not start with two numbers."""
    match = re.match(r'^(\d+)\.(\d+)', release or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


@value_object
class Capabilities:
    """What this kernel's livepatch interface offers, and which era's rules apply."""

    era: str
    source: str   # 'attributes' (seen on a loaded patch) or 'release' (the version alone)
    transition: bool = False
    signal: bool = False
    force: bool = False
    replace: bool = False
    stack_order: bool = False
    patched: bool = False
    atomic_replace: bool = False
    reenable: bool = False
    unload: bool = False
    enforced_stacking: bool = False
    klp_state: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def for_era(cls, era: str, source: str, version: Optional[Tuple[int, int]] = None) -> 'Capabilities':
        """Capabilities implied by an era; ``version`` refines the attributes added later (§0)."""
        version = version or {ERA_IMMEDIATE: (4, 0), ERA_STACKED: (4, 12), ERA_FREE: (5, 1)}[era]
        free = era == ERA_FREE
        return cls(
            era=era, source=source,
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


def capabilities_for(release: Optional[str], attributes_seen: Sequence[str]) -> Capabilities:
    """Decide the era from the attributes the kernel shows, falling back to the release.

    Attributes are per patch, so they are only visible while a patch is loaded. They win over
    the release because distribution kernels backport (a RHEL 4.18 kernel has 5.1 semantics):
    ``signal`` exists only on 4.15-5.0 and ``transition`` only from 4.12 (docs/developer.md §8).
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
        seen = dict((attribute, True) for attribute in ('replace', 'stack_order', 'patched', 'force', 'signal')
                    if attribute in attributes_seen)
        return dataclasses.replace(caps, **seen)
    if version >= (5, 1):
        era = ERA_FREE
    elif version >= (4, 12):
        era = ERA_STACKED
    else:
        era = ERA_IMMEDIATE
    return Capabilities.for_era(era, 'release', version if version >= (4, 0) else None)


@value_object
class Patch:
    """One directory of ``/sys/kernel/livepatch``: a patch on the kernel's list."""

    name: str
    enabled: Optional[bool]         # None: unreadable or garbage (a warning says which)
    transition: bool = False
    replace: Optional[bool] = None  # None: the kernel has no ``replace`` attribute (before 6.11)
    stack_order: Optional[int] = None
    objects: Tuple[Mapping[str, Any], ...] = ()
    refcnt: Optional[int] = None
    taint: Optional[str] = None
    build_id: Optional[str] = None
    srcversion: Optional[str] = None
    attributes: Tuple[str, ...] = ()  # the attribute files seen: they tell the era

    def __post_init__(self) -> None:
        object.__setattr__(self, 'objects', tuple(self.objects))
        object.__setattr__(self, 'attributes', tuple(self.attributes))

    @property
    def live(self) -> bool:
        """On the stack: enabled, or being patched. A patch being unpatched is on its way out."""
        return bool(self.enabled)

    def as_dict(self) -> dict:
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


@value_object
class Leftover:
    """A loaded livepatch module that is not on the kernel's list any more.

    ``retired``: disabled or replaced, refcnt 0, ``rmmod`` removes it. ``forced``: refcnt stuck
    at 1 after a forced transition; only a reboot removes it (docs/developer.md §5.4, §5.5, §8).
    """

    name: str
    refcnt: Optional[int]
    taint: Optional[str] = None
    build_id: Optional[str] = None

    @property
    def state(self) -> str:
        return 'forced' if self.refcnt else 'retired'

    @property
    def reboot_required(self) -> bool:
        return self.state == 'forced'

    def as_dict(self) -> dict:
        return {'name': self.name, 'refcnt': self.refcnt, 'taint': self.taint, 'build_id': self.build_id,
                'state': self.state, 'reboot_required': self.reboot_required}


@value_object
class Transition:
    """The one transition the kernel runs at a time (docs/developer.md §5.1)."""

    patch: str
    direction: str                               # 'patching' or 'unpatching'
    blockers: Tuple[Mapping[str, Any], ...] = ()  # tasks not yet switched: pid, tid, comm[, stack]

    def __post_init__(self) -> None:
        object.__setattr__(self, 'blockers', tuple(self.blockers))

    def as_dict(self) -> dict:
        return {'patch': self.patch, 'direction': self.direction, 'blockers': [dict(b) for b in self.blockers]}


@value_object
class ModuleSignatures:
    """Whether the kernel loads only signed modules, and what was read to decide (docs/developer.md §10.3)."""

    enforced: bool
    reason: str

    def as_dict(self) -> dict:
        return {'enforced': self.enforced, 'reason': self.reason}


@value_object
class Snapshot:
    """Everything observed at one moment. ``stack`` is bottom to top."""

    root: str
    kernel_release: Optional[str]
    livepatch_supported: bool
    capabilities: Capabilities
    stack: Tuple[Patch, ...] = ()
    order_source: str = 'proc_modules'   # 'stack_order', 'proc_modules' or 'unknown' (§4)
    transition: Optional[Transition] = None
    leftovers: Tuple[Leftover, ...] = ()
    taint: Optional[Mapping[str, Any]] = None
    module_signatures: ModuleSignatures = ModuleSignatures(enforced=False, reason='not read')
    warnings: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for field in ('stack', 'leftovers', 'warnings'):
            object.__setattr__(self, field, tuple(getattr(self, field)))

    def leftover(self, name: str) -> Optional[Leftover]:
        for leftover in self.leftovers:
            if leftover.name == name:
                return leftover
        return None

    @property
    def live_stack(self) -> Tuple[Patch, ...]:
        """The patches that are in effect or being patched, bottom to top."""
        return tuple(patch for patch in self.stack if patch.live)

    def names(self) -> List[str]:
        return [patch.name for patch in self.live_stack]

    @property
    def reboot_required(self) -> bool:
        return any(leftover.reboot_required for leftover in self.leftovers)

    def as_dict(self) -> dict:
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
            'module_signatures': self.module_signatures.as_dict(),
            'reboot_required': self.reboot_required,
            'warnings': list(self.warnings),
        }
