# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Plan: from what is live to what is wanted, as ordered steps, or a refusal naming the rule.

PRIVATE: this module_util may change at any time.

Pure: no files, no Ansible. Input is a :class:`Snapshot` (observe layer), the desired stack
bottom to top, and the policy. The rules are those of docs/developer.md §2-§5 and §8:

* LIFO: keep the longest common prefix of the live and the desired stack (same name *and* same
  build), pop the divergent suffix topmost first, then push the rest bottom first (§8).
  The kernel stopped enforcing this in 5.1; patches may still depend on the ones below them.
* One transition at a time (§8) is the executor's job: it waits before every step.
* 5.1+: a disabled patch is freed and cannot come back; pushing it again means unload, then
  load (§2.1). 4.12-5.0: a disabled patch stays listed and may be enabled again, and only the
  first disabled patch can be enabled, so disabled patches above the kept prefix must be
  re-enabled in order or unloaded before anything new is loaded (§2.2, §3.1). 4.0-4.11: patch
  modules can never be unloaded, so popping only disables (§2.2).
* A replace patch retires every patch below it when its transition completes (§3.4): it may
  only stand at the bottom of a desired stack, and pushing it over a live stack needs no pops.
* Patches this collection did not load are touched only under ``foreign: pop`` (§10.4).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._foreign import (
    FOREIGN_POLICIES, ForeignPatch, Ours, foreign_elsewhere, foreign_patches, refuse_replace_over, refuse_touching,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._snapshot import (
    ERA_FREE, ERA_IMMEDIATE, ERA_STACKED, Capabilities, Snapshot,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

# Pairs of patch names checked and found unrelated (option skip_unrelated); None: the option is off.
Unrelated = Optional[FrozenSet[FrozenSet[str]]]

__all__ = ['Wanted', 'Step', 'Plan', 'ForeignPatch', 'FOREIGN_POLICIES', 'plan_stack', 'check_wanted',
           'same_build', 'foreign_patches']


# Wanted is still built positionally by tests/integration/test_stack_real.py; it becomes a
# @value_object (keyword-only) once that calls it by keyword.
@dataclasses.dataclass(frozen=True)
class Wanted:
    """One patch of the desired stack: its name, the ``.ko`` path on the host, and its build."""

    name: str
    path: Optional[str] = None        # None: a live patch kept as it is (no file needed)
    build_id: Optional[str] = None
    srcversion: Optional[str] = None
    replace: bool = False
    requires: Tuple[str, ...] = ()    # names that must stand below this patch

    def __post_init__(self) -> None:
        object.__setattr__(self, 'replace', bool(self.replace))
        object.__setattr__(self, 'requires', tuple(self.requires or ()))

    def as_dict(self) -> Dict[str, Any]:
        return {'name': self.name, 'path': self.path, 'build_id': self.build_id, 'replace': self.replace,
                'requires': list(self.requires)}


@value_object
class Step:
    """One action on the kernel. ``action`` is ``disable``, ``enable``, ``unload`` or ``load``."""

    action: str
    patch: str
    reason: str
    path: Optional[str] = None
    retires: Tuple[str, ...] = ()     # load of a replace patch: the patches it retires

    def __post_init__(self) -> None:
        object.__setattr__(self, 'retires', tuple(self.retires))

    def as_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {'action': self.action, 'patch': self.patch, 'reason': self.reason}
        if self.path is not None:
            result['path'] = self.path
        if self.retires:
            result['retires'] = list(self.retires)
        return result

    def __repr__(self) -> str:
        return 'Step(%s %s)' % (self.action, self.patch)


@value_object
class Plan:
    """Ordered steps plus what the stack will be afterwards (bottom to top)."""

    steps: Tuple[Step, ...]
    before: Tuple[str, ...]
    after: Tuple[str, ...]
    kept: int                               # patches of the common bottom left as they are
    notes: Tuple[str, ...] = ()
    wanted: Tuple[Wanted, ...] = ()         # the desired stack as planned (with a kept foreign bottom)
    foreign: Tuple[ForeignPatch, ...] = ()  # live patches this collection did not load

    def __post_init__(self) -> None:
        for field in ('steps', 'before', 'after', 'notes', 'wanted', 'foreign'):
            object.__setattr__(self, field, tuple(getattr(self, field)))

    @property
    def changes(self) -> bool:
        return bool(self.steps)

    def as_dict(self) -> Dict[str, Any]:
        return {
            'steps': [step.as_dict() for step in self.steps],
            'stack_before': list(self.before),
            'stack_after': list(self.after),
            'kept': self.kept,
            'notes': list(self.notes),
            'foreign': [patch.as_dict() for patch in self.foreign],
        }


def same_build(live: Any, wanted: Any) -> Tuple[bool, bool]:
    """Is the live patch this very build? Compare GNU build IDs, else srcversion, else trust the name.

    A rebuilt patch keeps its module name, so the name alone cannot tell (docs/developer.md §9.7).
    Returns (same, certain).
    """
    if live.name != wanted.name:
        return False, True
    if live.build_id and wanted.build_id:
        return live.build_id == wanted.build_id, True
    if live.srcversion and wanted.srcversion:
        return live.srcversion == wanted.srcversion, True
    return True, False


def check_wanted(wanted: Sequence[Wanted], capabilities: Capabilities) -> None:
    """Refuse a desired stack that no kernel of this era could hold in that order."""
    seen: Dict[str, int] = {}
    for index, patch in enumerate(wanted):
        if patch.name in seen:
            raise LivepatchError('duplicate_name', 'patch %s appears twice in the desired stack (positions %d and %d); '
                                 'the kernel holds one module per name' % (patch.name, seen[patch.name] + 1, index + 1),
                                 [patch.name])
        seen[patch.name] = index
    for index, patch in enumerate(wanted):
        if not patch.replace:
            continue
        if not capabilities.atomic_replace:
            raise LivepatchError('replace_unsupported', 'patch %s is a replace patch, but atomic replace needs kernel '
                                 '5.1 or later and this kernel follows the %s rules' % (patch.name, capabilities.era),
                                 [patch.name])
        if index != 0:
            below = [p.name for p in wanted[:index]]
            raise LivepatchError('replace_not_at_bottom', 'patch %s is a replace patch at position %d: when its '
                                 'transition completes it retires every patch below it (%s), so it may only stand at '
                                 'the bottom of the stack' % (patch.name, index + 1, ', '.join(below)),
                                 [patch.name] + below)
    for index, patch in enumerate(wanted):
        below_names = set(p.name for p in wanted[:index])
        missing = [name for name in patch.requires if name not in below_names]
        if missing:
            raise LivepatchError('requires', 'patch %s requires %s below it in the stack, which the desired stack does '
                                 'not have' % (patch.name, ', '.join(missing)), [patch.name] + missing)


def _common_prefix(live: Sequence[Any], wanted: Sequence[Wanted]) -> Tuple[int, List[str]]:
    kept = 0
    uncertain = []
    for current, want in zip(live, wanted):
        same, certain = same_build(current, want)
        if not same:
            break
        if not certain:
            uncertain.append(current.name)
        kept += 1
    return kept, uncertain


def _leaving(snapshot: Snapshot) -> List[str]:
    """5.1+: patches still listed but not enabled are on their way out: being unpatched, or
    already off the kernel's list with their directory not yet freed (§2.1). Once freed they are
    retired modules with refcnt 0, like the leftovers."""
    return [p.name for p in snapshot.stack if not p.enabled] + [
        leftover.name for leftover in snapshot.leftovers if leftover.state == 'retired']


def _pre_load_steps(snapshot: Snapshot, patch: Wanted, unloaded: Set[str]) -> List[Step]:
    """A name still loaded as a retired module must be unloaded before it can be loaded (EEXIST, §2.5)."""
    if patch.name in unloaded:
        return []
    leftover = snapshot.leftover(patch.name)
    if leftover is not None and leftover.state == 'forced':
        raise LivepatchError('forced_module', 'patch %s is still loaded from a forced transition (refcnt %s) and can '
                             'never be unloaded until reboot, so it cannot be loaded again'
                             % (patch.name, leftover.refcnt), [patch.name])
    if patch.name not in _leaving(snapshot):
        return []
    unloaded.add(patch.name)
    return [Step(action='unload', patch=patch.name,
                 reason='still loaded as a retired module; must be unloaded before it is loaded again')]


def _load_step(patch: Wanted, retires: Sequence[str] = ()) -> Step:
    reason = 'replace patch: retires %s atomically' % ', '.join(retires) if retires else 'push'
    return Step(action='load', patch=patch.name, reason=reason, path=patch.path, retires=tuple(retires))


def _pop(name: str) -> Step:
    return Step(action='disable', patch=name, reason='pop: not in the desired stack at this position')


def _plan_free(snapshot: Snapshot, wanted: List[Wanted], unload_retired: bool,
               spare: FrozenSet[str]) -> Tuple[List[Step], int, List[str]]:
    """5.1+ rules: pop = disable then unload; nothing is re-enabled. ``spare``: retired modules
    the optional clean-up leaves alone (not ours)."""
    live = list(snapshot.live_stack)
    kept, uncertain = _common_prefix(live, wanted)
    steps: List[Step] = []
    notes: List[str] = []
    unloaded: Set[str] = set()
    pushes = list(wanted[kept:])
    atomic = (kept == 0 and live and pushes and pushes[0].replace
              and not any(p.name == pushes[0].name for p in live))
    if atomic:
        # A replace patch pushed over the live stack retires all of it when its transition
        # completes (§3.4): no pops, and no moment without the old patches.
        bottom = pushes.pop(0)
        steps.extend(_pre_load_steps(snapshot, bottom, unloaded))
        retired = [p.name for p in live]
        steps.append(_load_step(bottom, retired))
        if unload_retired:
            for name in reversed(retired):
                steps.append(Step(action='unload', patch=name, reason='retired by replace patch %s' % bottom.name))
                unloaded.add(name)
    else:
        for patch in reversed(live[kept:]):
            steps.append(_pop(patch.name))
            steps.append(Step(action='unload', patch=patch.name,
                              reason='pop: a disabled patch can never be enabled again (5.1+)'))
            unloaded.add(patch.name)
    if unload_retired:
        for name in _leaving(snapshot):
            if name not in unloaded and name not in spare:
                steps.append(Step(action='unload', patch=name, reason='retired module (disabled or replaced), refcnt 0'))
                unloaded.add(name)
    for patch in pushes:
        steps.extend(_pre_load_steps(snapshot, patch, unloaded))
        steps.append(_load_step(patch))
    if uncertain:
        notes.append('could not compare builds of %s (no build ID or srcversion on one side); kept by name'
                     % ', '.join(uncertain))
    return steps, kept, notes


def _skip_unrelated(snapshot: Snapshot, wanted: List[Wanted],
                    unrelated: FrozenSet[FrozenSet[str]]) -> Optional[Tuple[List[Step], int, List[str], List[Wanted]]]:
    """Rule ``skip_unrelated`` (docs/developer.md §11): one patch ``m`` in the middle is removed or
    replaced by ``n``, and every patch above it stays, in order, each unrelated to ``m`` and ``n``
    by the evidence the caller checked (a pair is in ``unrelated`` only when both files were read
    and no relation of any kind, ``unknown`` included, was found). Since 5.1 any patch may be
    disabled (§3.2); a loaded ``n`` goes on top of the kernel's order, which is why a live stack
    with ``n`` above unrelated patches it should stand below already satisfies the rule; the
    desired stack is returned in that order (the kernel's, which the record keeps). Any other
    change: None, and the stack discipline plans it.
    """
    live = list(snapshot.live_stack)
    kept, uncertain = _common_prefix(live, wanted)
    if uncertain or _leaving(snapshot) or any(want.replace for want in wanted[kept:]):
        return None
    above_live, rest = live[kept + 1:], wanted[kept:]

    def checked(names: Sequence[str], others: Sequence[str]) -> bool:
        return all(frozenset((name, other)) in unrelated for name in names for other in others)

    def same(lives: Sequence[Any], wants: Sequence[Wanted]) -> bool:
        return len(lives) == len(wants) and all(same_build(a, b) == (True, True) for a, b in zip(lives, wants))

    above = [p.name for p in above_live]
    # removed (the rest is what was above it) or replaced by n (a new build or another name), loaded on top
    removed = same(above_live, rest)
    # n goes on top: not when a patch meant to stand above it requires it below (check_wanted's rule)
    new = None if removed or not rest or any(rest[0].name in want.requires for want in rest[1:]) else rest[0]
    if above and (removed or (new is not None and same(above_live, rest[1:]) and new.name not in above)):
        old = live[kept]
        if not checked([old.name] + ([new.name] if new else []), above):
            return None
        what = ('replaced by %s' % ('its new build' if new.name == old.name else new.name)) if new else 'removed'
        return ([Step(action='disable', patch=old.name, reason='rule skip_unrelated: disabled under %s, which stay live'
                      % ', '.join(above)),
                 Step(action='unload', patch=old.name, reason='rule skip_unrelated: %s without popping %s'
                      % (what, ', '.join(above)))] + ([_load_step(new)] if new else []),
                kept, ['rule skip_unrelated: %s %s without popping %s (no relation found between them in the files '
                       'and sysfs checked)' % (old.name, what, ', '.join(above))],
                wanted[:kept] + (rest[1:] + [new] if new else rest))
    if new is not None and len(rest) > 1 and same(live[kept:], rest[1:] + rest[:1]):
        top, above = rest[0], [w.name for w in rest[1:]]
        if checked([top.name], above):  # n already loaded above patches it is unrelated to
            return [], len(live), ['rule skip_unrelated: %s stands above %s in the kernel\'s order, which the '
                                   'evidence allows (no relation between them)' % (top.name, ', '.join(above))], \
                wanted[:kept] + rest[1:] + rest[:1]
    return None


def _plan_registered(snapshot: Snapshot, wanted: List[Wanted], can_unload: bool,
                     spare: FrozenSet[str]) -> Tuple[List[Step], int, List[str]]:
    """Before 5.1 disabled patches stay on the list, in order, behind the enabled ones (§3.1).
    ``spare``: disabled patches that are not ours stay listed when nothing is pushed."""
    listed = list(snapshot.stack)
    live = [p for p in listed if p.enabled]
    disabled_suffix = [p for p in listed if not p.enabled]
    kept, uncertain = _common_prefix(live, wanted)
    steps: List[Step] = []
    notes: List[str] = []
    popped = live[kept:]
    for patch in reversed(popped):
        steps.append(_pop(patch.name))
    # Only the first disabled patch can be enabled (EBUSY otherwise, §2.2): walk the disabled
    # patches in list order and re-enable while they match what is wanted next.
    disabled = popped + disabled_suffix
    position = kept
    for patch in disabled:
        if position >= len(wanted) or not same_build(patch, wanted[position])[0]:
            break
        steps.append(Step(action='enable', patch=patch.name,
                          reason='registered but disabled; enabled again instead of reloaded (before 5.1)'))
        position += 1
    remaining = disabled[position - kept:]
    pushes = list(wanted[position:])
    if not pushes:
        # Nothing new goes above them, so a disabled patch that is not ours may stay listed.
        remaining = [patch for patch in remaining if patch.name not in spare]
    if remaining and can_unload:
        for patch in reversed(remaining):
            steps.append(Step(action='unload', patch=patch.name,
                              reason='disabled and not wanted; a disabled patch on the list blocks new patches before 5.1'))
    elif remaining and pushes:
        raise LivepatchError('no_unload', 'patches %s would stay registered and disabled: kernels before 4.12 can '
                             'never unload a patch module, and a new patch cannot be enabled above a disabled one; '
                             'reboot to clear the stack' % ', '.join(p.name for p in remaining),
                             [p.name for p in remaining])
    elif remaining:
        notes.append('kernels before 4.12 cannot unload patch modules: %s stay loaded and disabled'
                     % ', '.join(p.name for p in remaining))
    # A pushed name cannot still be listed here: kept and re-enabled names are not pushed again,
    # and every other listed patch was unloaded above, or refused before 4.12.
    steps.extend(_load_step(patch) for patch in pushes)
    if uncertain:
        notes.append('could not compare builds of %s; kept by name' % ', '.join(uncertain))
    return steps, kept, notes


def plan_stack(snapshot: Snapshot, wanted: Sequence[Wanted], *, unload_retired: bool = True, foreign: str = 'pop',
               ours: Ours = None, unrelated: Unrelated = None) -> Plan:
    """Return the :class:`Plan` that turns the live stack into ``wanted`` (bottom to top).

    ``foreign`` decides what happens to the live patches this collection did not load, those not
    in ``ours`` ((name, build ID) pairs from its journal and boot record; None: all are ours):
    ``pop`` treats them like any other, ``refuse`` refuses a plan that disables, unloads or
    retires one, ``keep`` builds the desired stack above them and refuses if that still touches
    one (docs/developer.md §10.4). ``unrelated`` (option ``skip_unrelated``; None: off, plans are
    exactly the stack's) lets a 5.1+ plan leave the patches above a removed or replaced one live,
    see :func:`_skip_unrelated`.
    """
    if foreign not in FOREIGN_POLICIES:
        raise LivepatchError('bad_input', 'foreign must be one of %s, not %r' % (', '.join(FOREIGN_POLICIES), foreign))
    if not snapshot.livepatch_supported:
        raise LivepatchError('no_livepatch', 'this kernel (%s) has no /sys/kernel/livepatch: it was built without '
                             'CONFIG_LIVEPATCH' % snapshot.kernel_release)
    caps = snapshot.capabilities
    wanted = list(wanted)
    check_wanted(wanted, caps)
    foreign_live = foreign_patches(snapshot.live_stack, ours)
    spare = frozenset() if foreign == 'pop' else foreign_elsewhere(snapshot, ours)
    notes = []
    if foreign == 'keep' and foreign_live:
        refuse_replace_over(wanted, foreign_live)
        live = dict((patch.name, patch) for patch in snapshot.live_stack)
        bottom = [Wanted(name=p.name, path=None, build_id=p.build_id, srcversion=live[p.name].srcversion,
                         replace=bool(live[p.name].replace)) for p in foreign_live]
        wanted = bottom + [w for w in wanted if w.name not in set(p.name for p in foreign_live)]
        notes.append('kept the patches not loaded by this collection at the bottom: %s'
                     % ', '.join('%s (position %d)' % (p.name, p.position) for p in foreign_live))
    skipped = _skip_unrelated(snapshot, wanted, unrelated) if caps.era == ERA_FREE and unrelated is not None else None
    if skipped is not None:
        steps, kept, era_notes, wanted = skipped
    elif caps.era == ERA_FREE:
        steps, kept, era_notes = _plan_free(snapshot, wanted, unload_retired, spare)
    elif caps.era in (ERA_STACKED, ERA_IMMEDIATE):
        steps, kept, era_notes = _plan_registered(snapshot, wanted, caps.era == ERA_STACKED, spare)
    else:  # pragma: no cover - the observe layer only knows these three eras
        raise LivepatchError('unknown_era', 'unknown kernel era %s' % caps.era)
    if foreign != 'pop':
        refuse_touching(steps, foreign_live, spare, foreign)
    return Plan(steps=steps, before=[p.name for p in snapshot.live_stack], after=[p.name for p in wanted], kept=kept,
                notes=notes + era_notes, wanted=wanted, foreign=foreign_live)
