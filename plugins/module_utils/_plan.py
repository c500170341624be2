# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Plan: from what is live to what is wanted, as ordered steps, or a refusal naming the rule.

PRIVATE: this module_util may change at any time.

Pure: no files, no Ansible. Input is a :class:`Snapshot` (observe layer), the desired stack
bottom to top, and the policy. The rules come from ``livepatch-kernel.md`` §2-§5 and §8:

* LIFO: keep the longest common prefix of the live and the desired stack (same name *and* same
  build), pop the divergent suffix topmost first, then push the rest bottom first (§8 rule 5).
  The kernel stopped enforcing this in 5.1; patches may still depend on the ones below them.
* One transition at a time (§8 rule 2) is the act layer's job: it waits before every step.
* 5.1+: a disabled patch is freed and cannot come back; pushing it again means rmmod, then
  load (§2.1). 4.12-5.0: a disabled patch stays listed and may be enabled again, and only the
  first disabled patch can be enabled, so disabled patches above the kept prefix must be
  re-enabled in order or unloaded before anything new is loaded (§2.2, §3.1). 4.0-4.11: patch
  modules can never be unloaded, so popping only disables (§2.2).
* A replace patch retires every patch below it when its transition completes (§3.4): it may
  only stand at the bottom of a desired stack, and pushing it over a live stack needs no pops.
"""

from __future__ import annotations

from typing import Collection, FrozenSet, List, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    ERA_FREE, ERA_IMMEDIATE, ERA_STACKED,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['Wanted', 'Step', 'Plan', 'ForeignPatch', 'Refusal', 'plan_stack', 'check_wanted', 'same_build',
           'foreign_patches', 'FOREIGN_POLICIES']

# Transitional alias: the planner raises LivepatchError; Refusal goes once no caller imports it.
Refusal = LivepatchError

FOREIGN_POLICIES = ('refuse', 'keep', 'pop')


class Wanted(object):
    """One patch of the desired stack: its name, the ``.ko`` path on the host, and its build."""

    __slots__ = ('name', 'path', 'build_id', 'srcversion', 'replace', 'requires', 'release', 'livepatch')

    def __init__(self, name, path=None, build_id=None, srcversion=None, replace=False, requires=(),
                 release=None, livepatch=True):
        self.name = name
        self.path = path
        self.build_id = build_id
        self.srcversion = srcversion
        self.replace = bool(replace)
        self.requires = tuple(requires or ())
        self.release = release
        self.livepatch = livepatch

    def as_dict(self):
        return {'name': self.name, 'path': self.path, 'build_id': self.build_id, 'replace': self.replace,
                'requires': list(self.requires)}


class Step(object):
    """One action on the kernel. ``action`` is ``disable``, ``enable``, ``unload`` or ``load``."""

    __slots__ = ('action', 'patch', 'path', 'reason', 'retires')

    def __init__(self, action, patch, reason, path=None, retires=()):
        self.action = action
        self.patch = patch
        self.reason = reason
        self.path = path
        self.retires = tuple(retires)

    def as_dict(self):
        result = {'action': self.action, 'patch': self.patch, 'reason': self.reason}
        if self.path is not None:
            result['path'] = self.path
        if self.retires:
            result['retires'] = list(self.retires)
        return result

    def __repr__(self):
        return 'Step(%s %s)' % (self.action, self.patch)


class Plan(object):
    """Ordered steps plus what the stack will be afterwards (bottom to top)."""

    def __init__(self, steps, before, after, kept, notes=(), wanted=(), foreign=()):
        self.wanted = tuple(wanted)    # the desired stack as planned (with a kept foreign bottom)
        self.foreign = tuple(foreign)  # ForeignPatch: live patches this collection did not load
        self.steps = tuple(steps)
        self.before = tuple(before)
        self.after = tuple(after)
        self.kept = kept
        self.notes = tuple(notes)

    @property
    def changes(self):
        return bool(self.steps)

    def as_dict(self):
        return {
            'steps': [step.as_dict() for step in self.steps],
            'stack_before': list(self.before),
            'stack_after': list(self.after),
            'kept': self.kept,
            'notes': list(self.notes),
            'foreign': [patch.as_dict() for patch in self.foreign],
        }


def same_build(live, wanted):
    """Is the live patch this very build? Compare GNU build IDs, else srcversion, else trust the name.

    A rebuilt patch keeps its module name, so the name alone cannot tell (lab-notes.md).
    Returns (same, certain).
    """
    if live.name != wanted.name:
        return False, True
    if live.build_id and wanted.build_id:
        return live.build_id == wanted.build_id, True
    if live.srcversion and wanted.srcversion:
        return live.srcversion == wanted.srcversion, True
    return True, False


def check_wanted(wanted, capabilities):
    """Refuse a desired stack that no kernel of this era could hold in that order."""
    seen = {}
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
            raise LivepatchError('replace_unsupported', 'patch %s is a replace patch, but atomic replace needs kernel 5.1 or '
                          'later and this kernel follows the %s rules' % (patch.name, capabilities.era), [patch.name])
        if index != 0:
            below = [p.name for p in wanted[:index]]
            raise LivepatchError('replace_not_at_bottom', 'patch %s is a replace patch at position %d: when its transition '
                          'completes it retires every patch below it (%s), so it may only stand at the bottom of the '
                          'stack' % (patch.name, index + 1, ', '.join(below)), [patch.name] + below)
    for index, patch in enumerate(wanted):
        below = set(p.name for p in wanted[:index])
        missing = [name for name in patch.requires if name not in below]
        if missing:
            raise LivepatchError('requires', 'patch %s requires %s below it in the stack, which the desired stack does not '
                          'have' % (patch.name, ', '.join(missing)), [patch.name] + missing)


def _common_prefix(live, wanted):
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


def _leaving(snapshot):
    """5.1+: patches still listed but not enabled are on their way out: being unpatched, or
    already off the kernel's list with their directory not yet freed (§2.1). Once freed they are
    retired modules with refcnt 0, like the leftovers."""
    return [p.name for p in snapshot.stack if not p.enabled] + [
        leftover.name for leftover in snapshot.leftovers if leftover.state == 'retired']


def _pre_load_steps(snapshot, patch, unloaded):
    """A name still loaded as a retired module must be unloaded before it can be loaded (EEXIST, §2.5)."""
    if patch.name in unloaded:
        return []
    leftover = snapshot.leftover(patch.name)
    if leftover is not None and leftover.state == 'forced':
        raise LivepatchError('forced_module', 'patch %s is still loaded from a forced transition (refcnt %s) and can '
                      'never be unloaded until reboot, so it cannot be loaded again' % (patch.name, leftover.refcnt),
                      [patch.name])
    if patch.name not in _leaving(snapshot):
        return []
    unloaded.add(patch.name)
    return [Step('unload', patch.name, 'still loaded as a retired module; must be unloaded before it is loaded again')]


def _load_step(patch, retires=()):
    if retires:
        reason = 'replace patch: retires %s atomically' % ', '.join(retires)
    else:
        reason = 'push'
    return Step('load', patch.name, reason, path=patch.path, retires=retires)


def _plan_free(snapshot, wanted, unload_retired, spare=frozenset()):
    """5.1+ rules: pop = disable then unload; nothing is re-enabled. ``spare``: retired modules
    the optional clean-up leaves alone (not ours)."""
    live = list(snapshot.live_stack)
    kept, uncertain = _common_prefix(live, wanted)
    steps = []
    notes = []
    unloaded = set()
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
                steps.append(Step('unload', name, 'retired by replace patch %s' % bottom.name))
                unloaded.add(name)
    else:
        for patch in reversed(live[kept:]):
            steps.append(Step('disable', patch.name, 'pop: not in the desired stack at this position'))
            steps.append(Step('unload', patch.name, 'pop: a disabled patch can never be enabled again (5.1+)'))
            unloaded.add(patch.name)
    if unload_retired:
        for name in _leaving(snapshot):
            if name not in unloaded and name not in spare:
                steps.append(Step('unload', name, 'retired module (disabled or replaced), refcnt 0'))
                unloaded.add(name)
    for patch in pushes:
        steps.extend(_pre_load_steps(snapshot, patch, unloaded))
        steps.append(_load_step(patch))
    if uncertain:
        notes.append('could not compare builds of %s (no build ID or srcversion on one side); kept by name'
                     % ', '.join(uncertain))
    return steps, kept, notes


def _plan_registered(snapshot, wanted, can_unload, spare=frozenset()):
    """Before 5.1 disabled patches stay on the list, in order, behind the enabled ones (§3.1).
    ``spare``: disabled patches that are not ours stay registered when nothing is pushed."""
    listed = list(snapshot.stack)
    live = [p for p in listed if p.enabled]
    disabled_suffix = [p for p in listed if not p.enabled]
    kept, uncertain = _common_prefix(live, wanted)
    steps = []
    notes = []
    popped = live[kept:]
    for patch in reversed(popped):
        steps.append(Step('disable', patch.name, 'pop: not in the desired stack at this position'))
    # Only the first disabled patch can be enabled (EBUSY otherwise, §2.2): walk the disabled
    # patches in list order and re-enable while they match what is wanted next.
    disabled = popped + disabled_suffix
    position = kept
    reenabled = 0
    for patch in disabled:
        if position >= len(wanted) or not same_build(patch, wanted[position])[0]:
            break
        steps.append(Step('enable', patch.name, 'registered but disabled; enabled again instead of reloaded (before 5.1)'))
        position += 1
        reenabled += 1
    remaining = disabled[reenabled:]
    pushes = list(wanted[position:])
    if not pushes:
        # Nothing new goes above them, so a disabled patch that is not ours may stay listed.
        remaining = [patch for patch in remaining if patch.name not in spare]
    if remaining and can_unload:
        for patch in reversed(remaining):
            steps.append(Step('unload', patch.name, 'disabled and not wanted; a disabled patch on the list blocks '
                                                    'new patches before 5.1'))
    elif remaining and pushes:
        raise LivepatchError('no_unload', 'patches %s would stay registered and disabled: kernels before 4.12 can never '
                      'unload a patch module, and a new patch cannot be enabled above a disabled one; reboot to '
                      'clear the stack' % ', '.join(p.name for p in remaining), [p.name for p in remaining])
    elif remaining:
        notes.append('kernels before 4.12 cannot unload patch modules: %s stay loaded and disabled'
                     % ', '.join(p.name for p in remaining))
    listed_names = set(p.name for p in listed)
    for patch in pushes:
        if patch.name in listed_names and not can_unload:
            raise LivepatchError('no_unload', 'patch %s is registered already and cannot be unloaded before 4.12'
                          % patch.name, [patch.name])
        steps.append(_load_step(patch))
    if uncertain:
        notes.append('could not compare builds of %s; kept by name' % ', '.join(uncertain))
    return steps, kept, notes


@value_object
class ForeignPatch:
    """A live patch this collection did not load: ``position`` counts from the bottom (1)."""

    name: str
    build_id: Optional[str]
    position: int

    def as_dict(self):
        return {'name': self.name, 'build_id': self.build_id, 'position': self.position}


def _normalise(name):
    # The kernel names a patch after its module, with '-' read as '_' (docs/developer.md §2.5).
    # TODO: use _kofile.normalise_name once the kofile helper lands it (the one place for it).
    return (name or '').replace('-', '_')


def _is_ours(name, build_id, ours):
    """Same name and same build as an entry of ``ours``; a build unknown on either side compares by name."""
    if ours is None:
        return True
    name = _normalise(name)
    for our_name, our_build in ours:
        if _normalise(our_name) == name and (not our_build or not build_id or our_build == build_id):
            return True
    return False


def foreign_patches(live_stack, ours):
    # type: (Sequence, Optional[Collection[Tuple[str, Optional[str]]]]) -> List[ForeignPatch]
    """The live patches that are not ours, bottom first. ``ours`` None: everything is ours."""
    return [ForeignPatch(name=patch.name, build_id=patch.build_id, position=position)
            for position, patch in enumerate(live_stack, 1)
            if not _is_ours(patch.name, patch.build_id, ours)]


def _foreign_elsewhere(snapshot, ours):
    """Names of not-live patches and retired modules that are not ours (disabled, or leaving)."""
    listed = [(p.name, p.build_id) for p in snapshot.stack if not p.live]
    retired = [(m.name, m.build_id) for m in snapshot.leftovers]
    return frozenset(name for name, build in listed + retired if not _is_ours(name, build, ours))


def _touched(steps):
    """What each patch would go through: disabled, unloaded, or retired by a replace patch."""
    touched = {}
    for step in steps:
        if step.action in ('disable', 'unload'):
            touched.setdefault(step.patch, []).append({'disable': 'disabled', 'unload': 'unloaded'}[step.action])
        for name in step.retires:
            touched.setdefault(name, []).append('retired by replace patch %s' % step.patch)
    return touched


def _refuse_foreign(steps, foreign, foreign_elsewhere, policy):
    """Refuse a plan that would touch a patch this collection did not load (docs/developer.md §8)."""
    touched = _touched(steps)
    hit = [patch for patch in foreign if patch.name in touched]
    hit_elsewhere = sorted(name for name in foreign_elsewhere if name in touched)
    if not hit and not hit_elsewhere:
        return
    described = ['%s (position %d from the bottom of the live stack%s: would be %s)' % (
        patch.name, patch.position, ', build %s' % patch.build_id[:12] if patch.build_id else '',
        ' and '.join(touched[patch.name])) for patch in hit]
    described += ['%s (not live: disabled or retired, would be %s)' % (name, ' and '.join(touched[name]))
                  for name in hit_elsewhere]
    if policy == 'keep':
        advice = ('with foreign: keep they stay at the bottom of the stack, and this plan would still have to touch '
                  'them (a patch of yours below them, or a replace patch above them); put them in the stack at '
                  'their position, or set foreign: pop to remove them')
    else:
        advice = ('set foreign: keep to leave them at the bottom and build the stack above them, list them in the '
                  'stack at their position, or set foreign: pop to remove them')
    names = [patch.name for patch in hit] + hit_elsewhere
    raise LivepatchError(
        'foreign_patch',
        'not loaded by this collection (not in its journal since boot or its boot record): %s. Nothing was changed; '
        '%s' % ('; '.join(described), advice),
        names, detail={'foreign': [patch.as_dict() for patch in foreign]})


def _keep_foreign(snapshot, wanted, foreign):
    """``foreign: keep``: the foreign live patches, in live order, form a fixed bottom."""
    live = dict((patch.name, patch) for patch in snapshot.live_stack)
    bottom = [Wanted(patch.name, None, live[patch.name].build_id, live[patch.name].srcversion,
                     bool(live[patch.name].replace)) for patch in foreign]
    names = set(patch.name for patch in foreign)
    replace = [w.name for w in wanted if w.replace and w.name not in names]
    if replace:
        raise LivepatchError(
            'foreign_patch',
            'replace patch %s would retire the patches not loaded by this collection (%s) when its transition '
            'completes (docs/developer.md §3.4); with foreign: keep they must stay. Set foreign: pop to replace them '
            'too' % (', '.join(replace), ', '.join('%s at position %d' % (p.name, p.position) for p in foreign)),
            replace + sorted(names), detail={'foreign': [patch.as_dict() for patch in foreign]})
    return bottom + [w for w in wanted if w.name not in names]


def plan_stack(snapshot, wanted, *, unload_retired=True, foreign='pop', ours=None):
    """Return the :class:`Plan` that turns the live stack into ``wanted`` (bottom to top).

    ``foreign`` decides what happens to live patches this collection did not load, that is not
    in ``ours`` ((name, build ID) pairs from the journal and the boot record; None: all are
    ours): ``pop`` treats them like any other, ``refuse`` refuses a plan that disables, unloads
    or retires one, ``keep`` plans above them and refuses if that still touches one.
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
    spare = frozenset() if foreign == 'pop' else _foreign_elsewhere(snapshot, ours)
    notes = []
    if foreign == 'keep' and foreign_live:
        wanted = _keep_foreign(snapshot, wanted, foreign_live)
        notes.append('kept the patches not loaded by this collection at the bottom: %s'
                     % ', '.join('%s (position %d)' % (p.name, p.position) for p in foreign_live))
    before = [p.name for p in snapshot.live_stack]
    if caps.era == ERA_FREE:
        steps, kept, era_notes = _plan_free(snapshot, wanted, unload_retired, spare)
    elif caps.era == ERA_STACKED:
        steps, kept, era_notes = _plan_registered(snapshot, wanted, can_unload=True, spare=spare)
    elif caps.era == ERA_IMMEDIATE:
        steps, kept, era_notes = _plan_registered(snapshot, wanted, can_unload=False, spare=spare)
    else:  # pragma: no cover - the observe layer only knows these three eras
        raise LivepatchError('unknown_era', 'unknown kernel era %s' % caps.era)
    if foreign != 'pop':
        _refuse_foreign(steps, foreign_live, spare, foreign)
    return Plan(steps, before, [p.name for p in wanted], kept, notes + era_notes, wanted, foreign_live)
