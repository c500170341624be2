# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Converge: run a plan, and when it fails, try to put the stack back as it was (rollback).

PRIVATE: this module_util may change at any time.

The promise (docs/developer.md §8): after any failure the stack is as before, or exactly as
reported. So:

* ``changed`` is whether any step's write or load succeeded (``StepRecord.kernel_changed``),
  not whether a step finished; rollback is tried exactly when something changed.
* A popped patch comes back only from a file whose build is the one that was live: the file is
  opened again with the run's trust rules (``open_image``) and its build ID compared before it
  is loaded; a mismatch means that patch cannot be restored, and nothing is loaded.
* The way back is planned with the run's own policy (``planner``, e.g. ``unload_retired`` and
  the foreign-patch policy bound in), not a hard-coded one.
* "As before" is said only when name *and* build of every live patch equal the stack before
  the run; otherwise the result carries the exact stack.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import ActError, StallError
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['RollbackReport', 'ConvergeResult', 'converge', 'stack_identity']


def stack_identity(patches: Sequence[Any]) -> Tuple[Tuple[str, Optional[str]], ...]:
    """(name, build ID) of each patch, bottom first: what "the same stack" means."""
    return tuple((patch.name, patch.build_id) for patch in patches)


@value_object
class RollbackReport:
    """What the rollback did. ``mismatched``: patches whose file now holds another build."""

    attempted: bool
    reason: str = ''
    succeeded: bool = False
    as_before: bool = False
    steps: int = 0
    missing_files: Tuple[str, ...] = ()
    mismatched: Tuple[str, ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {'attempted': self.attempted, 'succeeded': self.succeeded,
                                  'as_before': self.as_before}
        if self.reason:
            result['reason'] = self.reason
        if self.attempted:
            result['steps'] = self.steps
        if self.missing_files:
            result['missing_files'] = list(self.missing_files)
        if self.mismatched:
            result['mismatched'] = list(self.mismatched)
        return result


@value_object
class ConvergeResult:
    """The outcome of one converge: JSON-able through :meth:`as_dict`."""

    failed: bool
    changed: bool
    snapshot: Any                       # the kernel after everything (an _observe Snapshot)
    before: Tuple[Tuple[str, Optional[str]], ...]
    error: Optional[LivepatchError] = None
    rollback: Optional[RollbackReport] = None

    @property
    def message(self) -> str:
        """The error and what the stack is now, in words; '' when nothing failed."""
        if not self.failed or self.error is None:
            return ''
        stack = ', '.join(self.snapshot.names()) or 'empty'
        if self.rollback is not None and self.rollback.as_before:
            return '%s. Rolled back: the stack is as before the run (%s).' % (self.error.message, stack)
        reason = ''
        if self.rollback is not None and self.rollback.reason:
            reason = '; %s: %s' % ('rollback failed' if self.rollback.attempted else 'not rolled back',
                                   self.rollback.reason)
        elif self.rollback is not None and self.rollback.attempted:
            reason = '; rolled back, but the stack is not as before the run (%s)' % (
                ', '.join(name for name, _build in self.before) or 'empty')
        return '%s. The stack is now (bottom first): %s%s.' % (self.error.message, stack, reason)

    def as_dict(self) -> Dict[str, Any]:
        result: Dict[str, Any] = {'failed': self.failed, 'changed': self.changed,
                                  'stack': [patch.as_dict() for patch in self.snapshot.stack]}
        if self.error is not None:
            result.update({'msg': self.message, 'rule': self.error.rule, 'error_detail': dict(self.error.detail)})
        if self.rollback is not None:
            result['rollback'] = self.rollback.as_dict()
        return result


def converge(kernel: Any, plan: Any, executor: Any, *, images: Mapping[str, Any], original: Sequence[Any],
             rollback: bool = True, planner: Optional[Callable[[Any, Sequence[Any]], Any]] = None,
             known_files: Optional[Mapping[str, Mapping[str, Any]]] = None,
             open_image: Optional[Callable[[str], Any]] = None) -> ConvergeResult:
    """Run ``plan`` with ``executor``; on failure try to return to ``original``.

    ``images``: patch name -> verified ModuleImage for the plan's loads. ``original``: the live
    stack (observe ``Patch`` objects) the plan was made from. ``planner(snapshot, wanted)``: the
    run's planner with its policy bound. ``known_files``: name -> {'path', 'build_id',
    'replace'} from the journal and the boot record. ``open_image(path)``: open a file with the
    run's trust rules (``_kofile.open_module`` with the run's ``FileTrust``).
    """
    before = stack_identity(original)
    error: Optional[ActError] = None
    report: Optional[RollbackReport] = None
    try:
        executor.wait_idle()
        executor.run(plan.steps, images)
    except ActError as exc:
        error = exc
    changed = any(record.kernel_changed for record in executor.records)
    if error is not None:
        settled = not isinstance(error, StallError) or error.detail.get('reversed') \
            or executor.kernel.transition_patch() is None
        if not changed:
            report = RollbackReport(attempted=False, reason='nothing had been changed', as_before=True)
        elif not rollback:
            report = RollbackReport(attempted=False, reason='rollback=false')
        elif not settled:
            report = RollbackReport(attempted=False, reason='a transition is still running (on_stall=%s); '
                                    'nothing more was changed' % executor.on_stall)
        elif planner is None:
            report = RollbackReport(attempted=False, reason='no planner was given for the way back')
        else:
            report = _roll_back(kernel, executor, original, images, planner, known_files or {}, open_image)
        changed = any(record.kernel_changed for record in executor.records)
    snapshot = kernel.observe()
    if report is not None and report.attempted:
        same = stack_identity(snapshot.live_stack) == before
        report = RollbackReport(attempted=True, reason=report.reason, succeeded=report.succeeded and same,
                                as_before=same, steps=report.steps, missing_files=report.missing_files,
                                mismatched=report.mismatched)
    return ConvergeResult(failed=error is not None, changed=changed, snapshot=snapshot, before=before,
                          error=error, rollback=report)


def _file_for(patch: Any, images: Mapping[str, Any], known_files: Mapping[str, Mapping[str, Any]],
              open_image: Optional[Callable[[str], Any]]) -> Tuple[Optional[Any], str]:
    """The verified image of exactly the build of ``patch`` that was live, or (None, why not)."""
    image = images.get(patch.name)
    if image is not None and (not patch.build_id or image.info.build_id == patch.build_id):
        return image, ''  # the bytes this run verified and holds: nothing to re-open
    entry = known_files.get(patch.name) or {}
    path = entry.get('path')
    if not path or open_image is None:
        return None, 'missing'
    expected = patch.build_id or entry.get('build_id')
    if entry.get('build_id') and patch.build_id and entry.get('build_id') != patch.build_id:
        return None, 'missing'  # the journal knows another build of that name
    try:
        image = open_image(path)
    except LivepatchError:
        return None, 'missing'
    if expected and image.info.build_id != expected:
        return None, 'mismatched'
    return image, ''


def _roll_back(kernel: Any, executor: Any, original: Sequence[Any], images: Mapping[str, Any],
               planner: Callable[[Any, Sequence[Any]], Any], known_files: Mapping[str, Mapping[str, Any]],
               open_image: Optional[Callable[[str], Any]]) -> RollbackReport:
    back_images: Dict[str, Any] = {}
    wanted = []
    missing = []
    mismatched = []
    for patch in original:
        image, why = _file_for(patch, images, known_files, open_image)
        if image is not None:
            back_images[patch.name] = image
        elif why == 'mismatched':
            mismatched.append(patch.name)
        else:
            missing.append(patch.name)
        entry = known_files.get(patch.name) or {}
        wanted.append(Wanted(name=patch.name, path=image.path if image is not None else None,
                             build_id=patch.build_id, srcversion=getattr(patch, 'srcversion', None),
                             replace=bool(patch.replace if patch.replace is not None else entry.get('replace'))))
    try:
        executor.wait_idle()
        back_plan = planner(kernel.observe(), wanted)
    except LivepatchError as exc:
        return RollbackReport(attempted=False, reason='cannot plan the way back: %s' % exc.message,
                              missing_files=tuple(missing), mismatched=tuple(mismatched))
    unloadable = [step.patch for step in back_plan.steps if step.action == 'load' and step.patch not in back_images]
    if unloadable:
        why = []
        gone = [name for name in unloadable if name not in mismatched]
        changed = [name for name in unloadable if name in mismatched]
        if gone:
            why.append('no file is known for %s (popped earlier in this run)' % ', '.join(gone))
        if changed:
            why.append('the file of %s now holds another build than the one that was live, so it was not loaded'
                       % ', '.join(changed))
        return RollbackReport(attempted=False, reason='%s; the stack cannot be restored and is reported as it is now'
                              % '; '.join(why), missing_files=tuple(gone), mismatched=tuple(changed))
    try:
        executor.run(back_plan.steps, back_images, phase='rollback')
    except ActError as exc:
        return RollbackReport(attempted=True, reason=exc.message, steps=len(back_plan.steps),
                              missing_files=tuple(missing), mismatched=tuple(mismatched))
    return RollbackReport(attempted=True, succeeded=True, steps=len(back_plan.steps),
                          missing_files=tuple(missing), mismatched=tuple(mismatched))
