# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Relations between the patches of a stack, from what their files and sysfs show.

PRIVATE: this module_util may change at any time.

For every pair of patches, ``lower`` below ``upper`` in stack order, :func:`relations` lists the
structural evidence that ties them (docs/developer.md §11):

- ``same_function``: both patch the same ``(object, name, sympos)``;
- ``calls_patched``: one references (undefined symbol, ``.klp.sym.*``) a function the other
  replaces; the evidence says which way;
- ``uses_symbol``: one uses a symbol the other exports (a module dependency: ``.modinfo``
  ``depends=``, ``/sys/module/<lower>/holders/<upper>``);
- ``shared_state``: ``klp_state`` ids in common, or both call the shadow-variable API;
- ``unknown``: the evidence of one of them could not be read (no file for a live patch, a
  stripped module, a layout we do not know). Missing evidence never counts as independence.

This is structural evidence, not proof of semantic independence: two patches with no relation
here may still depend on each other through data or behaviour no symbol shows.
"""

from __future__ import annotations

import itertools
import os
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._elf import module_name_from_path
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._klp_elf import (
    Function, ModuleEvidence, read_module_evidence,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import open_module
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import same_build
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['KINDS', 'LiveEvidence', 'PatchEvidence', 'Relation', 'read_live', 'relations', 'gather', 'evidence_for_plan',
           'plan_evidence', 'popped_again', 'plan_report']

SAME_FUNCTION = 'same_function'
CALLS_PATCHED = 'calls_patched'
USES_SYMBOL = 'uses_symbol'
SHARED_STATE = 'shared_state'
UNKNOWN = 'unknown'
KINDS = (SAME_FUNCTION, CALLS_PATCHED, USES_SYMBOL, SHARED_STATE, UNKNOWN)
MAX_SYSFS_ENTRIES = 4096


@value_object
class LiveEvidence:
    """What sysfs shows of a live patch: its functions and the modules holding it."""

    functions: Tuple[Function, ...]
    holders: Tuple[str, ...]


@value_object
class PatchEvidence:
    """One patch of the stack: the evidence of its file and of sysfs, as far as each was read."""

    name: str
    module: Optional[ModuleEvidence] = None
    live: Optional[LiveEvidence] = None
    problems: Tuple[str, ...] = ()

    def unreadable(self) -> Tuple[str, ...]:
        """Why this patch's file evidence is incomplete (empty when it is complete)."""
        if self.module is None:
            return self.problems or ('no file for %s, so its references, exports and states cannot be read'
                                     % self.name,)
        return self.problems + self.module.problems


@value_object
class Relation:
    """``upper`` (above ``lower`` in the stack) is tied to ``lower`` by ``kind``, as ``evidence`` shows."""

    lower: str
    upper: str
    kind: str
    evidence: Tuple[str, ...]
    source: str  # 'file' or 'sysfs'

    def as_dict(self) -> Dict[str, object]:
        return {'lower': self.lower, 'upper': self.upper, 'kind': self.kind, 'evidence': list(self.evidence),
                'source': self.source}


def _entries(path: str) -> List[str]:
    try:
        names = sorted(entry.name for entry in os.scandir(path) if entry.is_dir(follow_symlinks=False))
    except OSError:
        return []
    return names[:MAX_SYSFS_ENTRIES]


def read_live(root: str, name: str) -> Optional[LiveEvidence]:
    """``/sys/kernel/livepatch/<name>/<object>/<function,sympos>`` and ``/sys/module/<name>/holders``.

    kernel/livepatch/core.c (6.1-7.2) names each function directory ``"%s,%lu"`` with old_sympos 0
    shown as 1, and each object directory by the module name or ``vmlinux``. None when the patch
    has no sysfs directory (not live, or gone while read).
    """
    patch_dir = os.path.join(root, 'sys/kernel/livepatch', name)
    if not os.path.isdir(patch_dir):
        return None
    functions = []
    for obj in _entries(patch_dir):
        for entry in _entries(os.path.join(patch_dir, obj)):
            func, comma, pos = entry.rpartition(',')
            if comma and func and pos.isdigit():
                functions.append(Function(object_name=obj, name=func, sympos=int(pos) or 1))
    holders_dir = os.path.join(root, 'sys/module', name, 'holders')
    try:
        holders = sorted(os.listdir(holders_dir))[:MAX_SYSFS_ENTRIES]
    except OSError:
        holders = []
    return LiveEvidence(functions=tuple(sorted(set(functions), key=lambda item: item.key())),
                        holders=tuple(holders))


def _common_functions(lower: Sequence[Function], upper: Sequence[Function]) -> List[str]:
    keys = set(func.key() for func in upper)
    return sorted(func.key() for func in lower if func.key() in keys)


def _calls(caller: ModuleEvidence, callee: ModuleEvidence) -> List[str]:
    """What ``caller`` references among the functions ``callee`` replaces."""
    found = []
    for func in callee.functions:
        if func.name in caller.undefined:
            found.append('%s references %s, which %s replaces (%s)' % (caller.name, func.name, callee.name, func.key()))
        for sym in caller.klp_symbols:
            if sym.key() == func.key():
                found.append('%s has .klp.sym.%s.%s,%d, which %s replaces' % (
                    caller.name, sym.object_name, sym.name, sym.sympos, callee.name))
    return found


def _uses(user: ModuleEvidence, owner: ModuleEvidence) -> List[str]:
    found = ['%s uses symbol %s exported by %s' % (user.name, sym, owner.name)
             for sym in owner.exports if sym in user.undefined]
    if owner.name in user.depends:
        found.append('%s depends on %s (.modinfo depends=)' % (user.name, owner.name))
    return found


def _file_relations(lower: ModuleEvidence, upper: ModuleEvidence) -> List[Tuple[str, List[str]]]:
    shared = ['klp_state id %d' % state for state in sorted(set(lower.states) & set(upper.states))]
    if lower.shadow and upper.shadow:
        shared.append('both use the shadow-variable API (%s: %s; %s: %s)' % (
            lower.name, ', '.join(lower.shadow), upper.name, ', '.join(upper.shadow)))
    return [
        (SAME_FUNCTION, _common_functions(lower.functions, upper.functions)),
        (CALLS_PATCHED, _calls(upper, lower) + _calls(lower, upper)),
        (USES_SYMBOL, _uses(upper, lower) + _uses(lower, upper)),
        (SHARED_STATE, shared),
    ]


def _live_relations(lower: PatchEvidence, lower_live: LiveEvidence, upper: PatchEvidence,
                    upper_live: LiveEvidence) -> List[Tuple[str, List[str]]]:
    holders = ['/sys/module/%s/holders/%s' % (low.name, up.name)
               for (low, low_live), up in (((lower, lower_live), upper), ((upper, upper_live), lower))
               if up.name in low_live.holders]
    return [
        (SAME_FUNCTION, _common_functions(lower_live.functions, upper_live.functions)),
        (USES_SYMBOL, holders),
    ]


def relations(patches: Sequence[PatchEvidence]) -> List[Relation]:
    """Every relation between every pair of ``patches`` (stack order, bottom first), file and sysfs."""
    found: List[Relation] = []
    for low_index, lower in enumerate(patches):
        for upper in patches[low_index + 1:]:
            pair = []
            if lower.module is not None and upper.module is not None:
                pair.extend((kind, evidence, 'file') for kind, evidence in _file_relations(lower.module, upper.module))
            if lower.live is not None and upper.live is not None:
                pair.extend((kind, evidence, 'sysfs')
                            for kind, evidence in _live_relations(lower, lower.live, upper, upper.live))
            missing = ['%s: %s' % (patch.name, why) for patch in (lower, upper) for why in patch.unreadable()]
            pair.append((UNKNOWN, missing, 'file'))
            found.extend(Relation(lower=lower.name, upper=upper.name, kind=kind, evidence=tuple(evidence),
                                  source=source) for kind, evidence, source in pair if evidence)
    return found


def gather(root: str, live: Sequence[str], files: Sequence[str], open_module,
           builds: Optional[Dict[str, Optional[str]]] = None,
           names: Optional[Dict[str, str]] = None) -> List[PatchEvidence]:
    """The evidence of the ``live`` patches (stack order) and of the module ``files``.

    A file names its patch (its module name); a file whose patch is live joins that patch's sysfs
    evidence, any other file is placed above the live stack in the order given. ``open_module``
    is ``_kofile.open_module`` (trust checks and one read); a file it refuses becomes a problem of
    that patch, so its relations are ``unknown``, never absent; so does a file of another build than
    the live patch (``builds``: the live build IDs, sysfs ``notes/.note.gnu.build-id``).
    ``names`` gives the patch of a path known from the journal or the record, for a file that
    cannot be read; otherwise the name comes from the file name.
    """
    modules: Dict[str, Tuple[Optional[ModuleEvidence], Tuple[str, ...]]] = {}
    order: List[str] = []
    for path in files:
        try:
            image = open_module(path)
            evidence = read_module_evidence(image.data, image.path)
            name = evidence.name
            entry: Tuple[Optional[ModuleEvidence], Tuple[str, ...]] = (evidence, ())
            live_build = (builds or {}).get(name)
            if name in live and live_build and image.info.build_id and live_build != image.info.build_id:
                entry = (None, ('file %s has build ID %s, the live %s has %s' % (
                    path, image.info.build_id, name, live_build),))
        except LivepatchError as exc:
            name = (names or {}).get(path) or module_name_from_path(path)
            entry = (None, ('file %s could not be read (%s): %s' % (path, exc.rule, exc.message),))
        if name not in modules:  # the first file of a name wins: the caller's files come first
            order.append(name)
            modules[name] = entry
    stack = list(live) + [name for name in order if name not in live]
    result = []
    for name in stack:
        module, problems = modules.get(name, (None, ()))
        result.append(PatchEvidence(name=name, module=module, problems=problems,
                                    live=read_live(root, name) if name in live else None))
    return result


def evidence_for_plan(root: str, live_stack: Sequence[Any], journal: Mapping[str, Mapping[str, Any]],
                      wanted: Sequence[Any], open_module) -> Tuple[FrozenSet[FrozenSet[str]], List[Relation]]:
    """For option ``skip_unrelated``: the name pairs checked and found unrelated, and every relation seen.

    Checked twice: the live stack (sysfs, and the files the journal says were loaded, same build
    only) and the desired stack (its files). A pair counts as unrelated only if, in every one of
    the two stacks that holds both names, both files were read and no relation of any kind
    (``unknown`` included) was found: a patch replaced by a new build is checked as both builds.
    """
    live = [patch.name for patch in live_stack]
    live_paths = dict((entry['path'], name) for name, entry in journal.items()
                      if name in live and isinstance(entry.get('path'), str))
    builds = dict((patch.name, patch.build_id) for patch in live_stack)
    wanted_paths = dict((want.path, want.name) for want in wanted if want.path)
    found: List[Relation] = []
    checks = []  # per stack: the pairs of its patches, and those checked and found unrelated
    for names, patches in ((live, gather(root, live, list(live_paths), open_module, builds, live_paths)),
                           ([want.name for want in wanted],
                            gather(root, [], list(wanted_paths), open_module, None, wanted_paths))):
        seen = relations(patches)
        found.extend(seen)
        related = set(frozenset((rel.lower, rel.upper)) for rel in seen)
        # a desired patch given without a file is in no checked pair, so never unrelated
        checked = set(frozenset(pair) for pair in itertools.combinations([p.name for p in patches], 2))
        checks.append((set(frozenset(pair) for pair in itertools.combinations(names, 2)), checked - related))
    # unrelated: clean in every stack that holds both (old and new builds of a replaced patch alike)
    candidates = checks[0][0] | checks[1][0]
    return frozenset(pair for pair in candidates if all(pair in clean for pairs, clean in checks if pair in pairs)), found


def plan_evidence(result: Dict[str, Any], snapshot: Any, journal: Mapping[str, Mapping[str, Any]],
                  wanted: Sequence[Any], trust: Any) -> Tuple[FrozenSet[FrozenSet[str]], List[Relation]]:
    """:func:`evidence_for_plan` for ``livepatch_stack`` with ``skip_unrelated``: every file opened
    with the run's trust checks (docs/developer.md §10.1), the relations seen put in ``result``."""
    unrelated, seen = evidence_for_plan(snapshot.root, snapshot.live_stack, journal, wanted,
                                        lambda path: open_module(path, trust))
    result['relations'] = [relation.as_dict() for relation in seen]
    return unrelated, seen


def popped_again(live_stack: Sequence[Any], plan: Any) -> List[str]:
    """The live patches ``plan`` takes off the stack (disabled, or retired by a replace patch) and
    puts back as they are (same name and build), bottom first: not live from their disable to
    their load (or enable, before 5.1). These are what the stack discipline costs (issue 13)."""
    wanted = dict((want.name, want) for want in plan.wanted)
    off = set(step.patch for step in plan.steps if step.action == 'disable')
    off.update(name for step in plan.steps for name in step.retires)
    return [patch.name for patch in live_stack
            if patch.name in off and patch.name in wanted and same_build(patch, wanted[patch.name])[0]]


def plan_report(result: Dict[str, Any], snapshot: Any, journal: Mapping[str, Mapping[str, Any]], plan: Any,
                trust: Any, seen: Optional[Sequence[Relation]] = None) -> None:
    """Say in ``result`` what ties each patch the plan pops and pushes again to the patches it changes.

    ``seen``: the relations :func:`plan_evidence` found for option ``skip_unrelated`` (all already
    in ``result``); the notes then also name, for each patch popped and pushed again, the
    relations that kept the rule from applying. None (the option off, in check mode): the
    evidence is read here, and ``relations`` holds only the pairs of a patch popped and pushed
    again with a patch removed, replaced or added above the kept bottom. Nothing when no patch is
    popped and pushed again.
    """
    live_stack = snapshot.live_stack
    again = popped_again(live_stack, plan)
    if not again:
        return
    option = seen is not None
    if seen is None:
        seen = evidence_for_plan(snapshot.root, live_stack, journal, plan.wanted, lambda path: open_module(path, trust))[1]
    changed = (set(plan.before[plan.kept:]) | set(plan.after[plan.kept:])) - set(again)
    ties: List[Relation] = []
    for rel in seen:
        if set((rel.lower, rel.upper)) & set(again) and set((rel.lower, rel.upper)) & changed and rel not in ties:
            ties.append(rel)
    if not option:
        result['relations'] = [rel.as_dict() for rel in ties]
        return
    why = []
    for name in again:
        kinds = sorted(set('%s with %s' % (rel.kind, rel.upper if rel.lower == name else rel.lower)
                           for rel in ties if name in (rel.lower, rel.upper)))
        why.append('%s (%s)' % (name, ', '.join(kinds) or 'none seen; popped with a patch below it'))
    if not ties:
        why = ['%s (no relation seen, but the change is not one patch removed or replaced in the middle of the stack '
               'on 5.1 or later)' % ', '.join(again)]
    result['notes'] = list(plan.notes) + ['rule skip_unrelated not applied: popped and pushed again: %s'
                                          % '; '.join(why)]
