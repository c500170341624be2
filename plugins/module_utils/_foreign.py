# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ours and foreign patches: what the planner may touch (docs/developer.md §10.4).

PRIVATE: this module_util may change at any time.

"Ours" is what this collection loaded: (name, build ID) pairs from its journal since boot and
its boot record. Every other live patch is foreign (a vendor's kpatch package, Canonical's
Livepatch, a patch loaded by hand). Pure: the planner calls these on its snapshot and steps.
"""

from __future__ import annotations

from typing import Any, Collection, Dict, FrozenSet, List, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import normalise_name
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['FOREIGN_POLICIES', 'ForeignPatch', 'Ours', 'foreign_patches', 'foreign_elsewhere', 'is_ours',
           'refuse_replace_over', 'refuse_touching']

FOREIGN_POLICIES = ('refuse', 'keep', 'pop')

Ours = Optional[Collection[Tuple[str, Optional[str]]]]


@value_object
class ForeignPatch:
    """A live patch this collection did not load: ``position`` counts from the bottom (1)."""

    name: str
    build_id: Optional[str]
    position: int

    def as_dict(self) -> Dict[str, Any]:
        return {'name': self.name, 'build_id': self.build_id, 'position': self.position}


def is_ours(name: str, build_id: Optional[str], ours: Ours) -> bool:
    """Same name and same build as an entry of ``ours``; a build unknown on either side compares by name.

    ``ours`` None: everything is ours (the caller has no journal or record to go by).
    """
    if ours is None:
        return True
    # The kernel reads '-' in a module name as '_' (docs/developer.md §1.1).
    name = normalise_name(name)
    return any(normalise_name(our_name) == name and (not our_build or not build_id or our_build == build_id)
               for our_name, our_build in ours)


def foreign_patches(live_stack: Sequence[Any], ours: Ours) -> List[ForeignPatch]:
    """The live patches that are not ours, bottom first."""
    return [ForeignPatch(name=patch.name, build_id=patch.build_id, position=position)
            for position, patch in enumerate(live_stack, 1)
            if not is_ours(patch.name, patch.build_id, ours)]


def foreign_elsewhere(snapshot: Any, ours: Ours) -> FrozenSet[str]:
    """Names of patches listed but not live (disabled, leaving) and retired modules that are not ours."""
    listed = [(patch.name, patch.build_id) for patch in snapshot.stack if not patch.live]
    retired = [(module.name, module.build_id) for module in snapshot.leftovers]
    return frozenset(name for name, build in listed + retired if not is_ours(name, build, ours))


def _touched(steps: Sequence[Any]) -> Dict[str, List[str]]:
    """What each patch would go through: disabled, unloaded, or retired by a replace patch."""
    touched: Dict[str, List[str]] = {}
    for step in steps:
        if step.action == 'disable':
            touched.setdefault(step.patch, []).append('disabled')
        elif step.action == 'unload':
            touched.setdefault(step.patch, []).append('unloaded')
        for name in step.retires:
            touched.setdefault(name, []).append('retired by replace patch %s' % step.patch)
    return touched


def _detail(foreign: Sequence[ForeignPatch]) -> Dict[str, Any]:
    return {'foreign': [patch.as_dict() for patch in foreign]}


def refuse_touching(steps: Sequence[Any], foreign: Sequence[ForeignPatch], elsewhere: FrozenSet[str],
                    policy: str) -> None:
    """Refuse, before anything changes, steps that would disable, unload or retire a foreign patch."""
    touched = _touched(steps)
    hit = [patch for patch in foreign if patch.name in touched]
    hit_elsewhere = sorted(name for name in elsewhere if name in touched)
    if not hit and not hit_elsewhere:
        return
    described = ['%s (position %d from the bottom of the live stack%s: would be %s)' % (
        patch.name, patch.position, ', build %s' % patch.build_id[:12] if patch.build_id else '',
        ' and '.join(touched[patch.name])) for patch in hit]
    described += ['%s (not live: disabled or retired; would be %s)' % (name, ' and '.join(touched[name]))
                  for name in hit_elsewhere]
    if policy == 'keep':
        advice = ('with foreign: keep they stay at the bottom, and this plan would still have to touch them (a patch '
                  'of yours below them); list them in the stack at their position, or set foreign: pop to remove them')
    else:
        advice = ('set foreign: keep to leave them at the bottom and build the stack above them, list them in the '
                  'stack at their position, or set foreign: pop to remove them')
    raise LivepatchError(
        'foreign_patch',
        'not loaded by this collection (not in its journal since boot or its boot record): %s. Nothing was '
        'changed; %s' % ('; '.join(described), advice),
        [patch.name for patch in hit] + hit_elsewhere, detail=_detail(foreign))


def refuse_replace_over(wanted: Sequence[Any], foreign: Sequence[ForeignPatch]) -> None:
    """``foreign: keep``: a replace patch above kept foreign patches would retire them (docs/developer.md §3.4)."""
    names = set(patch.name for patch in foreign)
    replace = [w.name for w in wanted if w.replace and w.name not in names]
    if foreign and replace:
        raise LivepatchError(
            'foreign_patch',
            'replace patch %s would retire the patches not loaded by this collection (%s) when its transition '
            'completes; with foreign: keep they stay. Set foreign: pop to replace them too'
            % (', '.join(replace), ', '.join('%s at position %d' % (p.name, p.position) for p in foreign)),
            replace + sorted(names), detail=_detail(foreign))
