# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One run of a module that changes the livepatch stack.

PRIVATE: this module_util may change at any time.

observe -> resolve the wanted patches (each file read and checked once) -> plan -> (check mode
stops here) -> take the host lock -> observe and plan again (another run may have held the
lock) -> wait for the kernel to be idle -> observe and plan again -> converge -> write the boot
record -> result. Every refusal is a :class:`LivepatchError`, turned into ``fail_json`` in one
place (:meth:`Runner.run`); anything else still ends in a JSON result (rule ``internal_error``).
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import (
    BootRecord, HostLock, Journal, RecordEntry, ours_from, read_record, write_record,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import Kernel
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import (
    MISSING_FILE, FileTrust, KoFileError, ModuleImage, module_name_from_path, normalise_name, open_module,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack, same_build
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['Host', 'real_host', 'Runner', 'same_build', 'patch_name_of', 'check_image']


def patch_name_of(name: Optional[str], path: Optional[str]) -> str:
    """The patch a ``name`` or a file ``path`` stands for, without reading the file."""
    return normalise_name(name or module_name_from_path(path or ''))


@value_object
class Host:
    """Where a run acts: the kernel, the host lock, the journal, whether we are root, whose files to trust."""

    kernel: Any
    lock: Any
    journal: Any
    is_root: bool
    trust: FileTrust = FileTrust()


def real_host(module: Any) -> Host:
    """The managed host itself. Tests replace this function with one returning a kernel model.

    Patch files and every directory above them must be root's and not writable by others
    (``FileTrust()``, docs/developer.md §10.1): no option weakens that.
    """
    return Host(kernel=Kernel(), lock=HostLock(timeout=module.params['lock_timeout']),
                journal=Journal(), is_root=os.geteuid() == 0, trust=FileTrust())


def check_image(image: ModuleImage, name: str, release: Optional[str]) -> None:
    """Refuse a file that is no livepatch module (``livepatch=Y``, §2.5), is another module than
    ``name``, or was built for another kernel than ``release`` (first word of ``vermagic``).

    The modules and the boot-time restore (``_restore``) check every file they load this way.
    """
    info, path = image.info, image.path
    if not info.livepatch:
        raise LivepatchError('not_livepatch', '%s (module %s) is not a livepatch module: its .modinfo lacks '
                             'livepatch=Y, and the kernel would refuse to enable it' % (path, info.name), [name])
    if normalise_name(name) != info.name:
        raise LivepatchError('name_mismatch', '%s is module %s, not %s: the kernel names the patch after the module '
                             '(/sys/kernel/livepatch/%s)' % (path, info.name, name, info.name), [name])
    if release and info.release != release:
        raise LivepatchError('release_mismatch', '%s was built for kernel %s (vermagic "%s"), but the running '
                             'kernel is %s' % (path, info.release, info.vermagic, release), [name])


def check_signatures(signatures: Any, images: Sequence[ModuleImage]) -> None:
    """Refuse loads the kernel would refuse for want of a signature, before anything changes
    (docs/developer.md §10.3): the kernel would only say so at load time, after the pops, or at
    boot after the patches below were loaded. The modules and the boot-time restore both call it.
    """
    unsigned = [image for image in images if not image.info.signed]
    if signatures.enforced and unsigned:
        raise LivepatchError('unsigned_module', '%s carr%s no module signature, and this kernel loads only signed '
                             'modules (%s); sign %s with the key the kernel trusts'
                             % (', '.join(image.path for image in unsigned), 'ies' if len(unsigned) == 1 else 'y',
                                signatures.reason, 'it' if len(unsigned) == 1 else 'them'),
                             [image.info.name for image in unsigned], {'module_signatures': signatures.as_dict()})


def wanted_from_live(patch: Any) -> Wanted:
    """A live patch that is simply kept: no file needed."""
    return Wanted(name=patch.name, path=None, build_id=patch.build_id, srcversion=patch.srcversion,
                  replace=bool(patch.replace))


def describe_stack(patches: Sequence[Any]) -> str:
    """One line per patch, bottom first, for Ansible's diff view."""
    lines = []
    for position, patch in enumerate(patches, 1):
        build = (patch.build_id or '')[:12]
        lines.append('%d. %s%s%s' % (position, patch.name, ' (build %s)' % build if build else '',
                                     ' [replace]' if getattr(patch, 'replace', False) else ''))
    return '\n'.join(lines) + ('\n' if lines else '')


def _stack_dicts(snapshot: Any) -> List[Dict[str, Any]]:
    return [patch.as_dict() for patch in snapshot.stack]


class Runner:
    """One run: ``desired(runner, snapshot)`` returns the wanted stack, bottom first."""

    def __init__(self, module: Any, host: Optional[Host] = None) -> None:
        self.module = module
        self.params = module.params
        self.host = host or real_host(module)
        self.result: Dict[str, Any] = {'changed': False}
        self.snapshot: Any = None
        self._resolved: Dict[Any, Wanted] = {}
        # name -> the verified bytes of each patch file this run read: what gets loaded.
        self.images: Dict[str, ModuleImage] = {}
        self._replace: Dict[str, bool] = {}

    # -- the one place a failure becomes a result --------------------------------------------
    def run(self, desired: Callable[['Runner', Any], List[Wanted]]) -> None:
        try:
            self._run(desired)
        except LivepatchError as exc:
            self._fail(exc)
        except Exception as exc:  # pylint: disable=broad-except
            # A bug must still leave a JSON result and the stack as it is now, never a traceback.
            trace = traceback.format_exc()
            error = LivepatchError('internal_error', 'internal error (%s: %s); please report it'
                                   % (type(exc).__name__, exc))
            try:
                self.snapshot = self.host.kernel.observe()
                self.result['stack'] = _stack_dicts(self.snapshot)  # what is live now, not what was planned
            except Exception:  # pylint: disable=broad-except
                pass
            self._fail(error, exception=trace)
        self.module.exit_json(**self.result)

    def _fail(self, exc: LivepatchError, **extra: Any) -> None:
        self.result.update(exc.detail)
        self.result.update(extra)
        if self.snapshot is not None and 'stack' not in self.result:
            self.result['stack'] = _stack_dicts(self.snapshot)
        self.module.fail_json(msg=exc.message, rule=exc.rule, patches=exc.patches, **self.result)

    # -- reading --------------------------------------------------------------------------
    def observe(self) -> Any:
        snapshot = self.host.kernel.observe()  # ObserveError('bad_root') when the tree cannot be read
        self.snapshot = snapshot
        if not snapshot.livepatch_supported:
            raise LivepatchError('no_livepatch', 'kernel %s has no livepatch support (/sys/kernel/livepatch is missing: '
                                 'CONFIG_LIVEPATCH is not set)' % snapshot.kernel_release)
        for warning in snapshot.warnings:
            self.module.warn(warning)
        return snapshot

    def resolve(self, entry: Mapping[str, Any]) -> Wanted:
        """The wanted patch a ``path`` entry names, its file opened, read and checked once per run.

        ``open_module`` checks who can change the file (docs/developer.md §10.1) and parses it;
        here: it must be a livepatch module (``livepatch=Y``, §2.5), built for the running
        kernel (first word of ``vermagic``) and carry the name given. The image is kept: those
        bytes, and no others, are loaded (docs/developer.md §10.2).
        """
        key = (entry['path'], entry.get('name'), bool(entry.get('replace')), tuple(entry.get('requires') or ()))
        if key not in self._resolved:
            self._resolved[key] = self._resolve(entry)
        return self._resolved[key]

    def _resolve(self, entry: Mapping[str, Any]) -> Wanted:
        path, given = entry['path'], entry.get('name')
        label = given or path
        if not os.path.isabs(path):
            # The boot unit and the module run from different directories: only an absolute
            # path names the same file for both.
            raise LivepatchError('relative_path', 'patch file %s is a relative path; give the absolute path of the '
                                 'file on the managed host' % path, [label])
        replace, requires = bool(entry.get('replace')), tuple(entry.get('requires') or ())
        try:
            image = open_module(path, self.host.trust)
        except KoFileError as exc:
            if exc.rule == MISSING_FILE and self.module.check_mode:
                # In check mode the role has not copied the file yet: plan with the name alone
                # and count it as a new build (a real run reads the file and compares builds).
                return Wanted(name=patch_name_of(given, path), path=os.path.normpath(path),
                              build_id='not-on-host-yet', replace=replace, requires=requires)
            raise LivepatchError(exc.rule, exc.message, [label], exc.detail)
        info, path = image.info, image.path
        check_image(image, given or info.name, self.snapshot.kernel_release)
        self.images[info.name] = image
        return Wanted(name=info.name, path=path, build_id=info.build_id, srcversion=info.srcversion,
                      replace=replace, requires=requires)

    def read_record(self) -> Optional[BootRecord]:
        path = self.params.get('record')
        if not path:
            return None
        if not os.path.isabs(path):
            raise LivepatchError('relative_path', 'record %s is a relative path; give an absolute path' % path)
        return read_record(os.path.normpath(path))

    # -- deciding -------------------------------------------------------------------------
    def look(self, desired: Callable[['Runner', Any], List[Wanted]]) -> Any:
        """Observe, decide the wanted stack, plan; the result reports this (latest) plan."""
        snapshot = self.observe()
        wanted = list(desired(self, snapshot))
        # Ours: what the journal says this collection loaded since boot, and the boot record
        # (the restore at boot loaded those); read and validated before anything changes.
        ours = ours_from(self.host.journal.read(), self.read_record())
        unrelated, seen = None, None
        if self.params.get('skip_unrelated'):  # issue 13: off by default, and in the module livepatch
            from ansible_collections.kernelops.livepatch.plugins.module_utils._relations import plan_evidence
            unrelated, seen = plan_evidence(self.result, snapshot, self.host.journal.read(), wanted, self.host.trust)
        plan = plan_stack(snapshot, wanted, unload_retired=self.params['unload_retired'],
                          foreign=self.params['foreign'], ours=ours, unrelated=unrelated)
        self._check_signatures(snapshot, plan)
        # With foreign: keep the planner puts the foreign live patches at the bottom of the stack.
        wanted = list(plan.wanted)
        by_name = dict((want.name, want) for want in wanted)
        self.result.update({
            'changed': plan.changes,
            'plan': [step.as_dict() for step in plan.steps],
            'stack_before': [patch.name for patch in snapshot.live_stack],
            'stack_after': list(plan.after),
            'kept': plan.kept,
            'foreign': [patch.as_dict() for patch in plan.foreign],
        })
        if plan.notes:
            self.result['notes'] = list(plan.notes)
        if (seen is not None or self.module.check_mode) and any(s.action == 'disable' or s.retires for s in plan.steps):
            from ansible_collections.kernelops.livepatch.plugins.module_utils._relations import plan_report  # issue 13
            plan_report(self.result, snapshot, self.host.journal.read(), plan, self.host.trust, seen)
        if self.module._diff:
            self.result['diff'] = {'before': describe_stack(snapshot.live_stack),
                                   'after': describe_stack([by_name[name] for name in plan.after]),
                                   'before_header': 'livepatch stack (bottom first)',
                                   'after_header': 'livepatch stack (bottom first)'}
        return snapshot, plan, wanted

    def _check_signatures(self, snapshot: Any, plan: Any) -> None:
        """A patch that stays live is not loaded, so its file need not be signed."""
        loads = [step.patch for step in plan.steps if step.action == 'load' and step.patch in self.images]
        check_signatures(snapshot.module_signatures, [self.images[name] for name in loads])

    def _report_state(self, snapshot: Any) -> None:
        self.result.update({'stack': _stack_dicts(snapshot),
                            'leftovers': [leftover.as_dict() for leftover in snapshot.leftovers],
                            'reboot_required': snapshot.reboot_required})

    # -- acting ---------------------------------------------------------------------------
    def _run(self, desired: Callable[['Runner', Any], List[Wanted]]) -> None:
        if self.params.get('record') and self.host.is_root and not self.module.check_mode:
            # This run takes the lock whatever the plan (the record is written under it), so it
            # looks once, under the lock: a look before it would be read again right away.
            with self.host.lock:
                self._converge_locked(desired)
            return
        snapshot, plan, _wanted = self.look(desired)
        if self.module.check_mode or (not plan.changes and not self.params.get('record')):
            # What is loaded now matters even when nothing will change (a forced module from an
            # earlier run still needs a reboot).
            self._report_state(snapshot)
            if snapshot.transition is not None and plan.changes:
                self.module.warn('patch %s is in transition (%s); the plan assumes it completes'
                                 % (snapshot.transition.patch, snapshot.transition.direction))
            return
        self.result['changed'] = False  # from here on, "changed" is what was done, not what was planned
        if not self.host.is_root:
            raise LivepatchError('not_root', 'changing the livepatch stack or its boot record needs root '
                                 '(become: true); the plan is in "plan"')
        if plan.changes and snapshot.transition is not None and not self.params['wait']:
            raise LivepatchError('transition_running', 'patch %s is in transition (%s) and wait=false; nothing was '
                                 'changed' % (snapshot.transition.patch, snapshot.transition.direction))
        with self.host.lock:
            # Everything from here to the record is done holding the lock (docs/developer.md §10.5):
            # another run may have changed the stack while we waited for it.
            self._converge_locked(desired)

    def _converge_locked(self, desired: Callable[['Runner', Any], List[Wanted]]) -> None:
        kernel = self.host.kernel
        snapshot, plan, wanted = self.look(desired)
        if plan.changes:
            moving = kernel.transition_patch()
            if moving is not None and not self.params['wait']:
                raise LivepatchError('transition_running', 'patch %s is in transition and wait=false; nothing was '
                                     'changed' % moving)
            if moving is not None or snapshot.transition is not None:
                self._executor(snapshot).wait_idle()  # LivepatchError('transition_running') on timeout
                # Only a transition can have moved the stack since the look above, which was
                # made under the lock; without one, another look would read the same.
                snapshot, plan, wanted = self.look(desired)
        self.result['changed'] = False  # from here on, "changed" is what was done, not what was planned
        if plan.changes:
            final = self._converge(snapshot, plan)
        else:
            final = snapshot
            self._report_state(final)
        live = [patch.name for patch in final.live_stack]
        builds_match = all(same_build(patch, want)[0] for patch, want in zip(final.live_stack, wanted))
        if live != list(plan.after) or not builds_match:
            raise LivepatchError('unexpected_result', 'the stack after the run is %s, not the planned %s (a replace '
                                 'patch not declared with replace=true retires the patches below it)'
                                 % (live, list(plan.after)))
        self._write_record(wanted, set(patch.name for patch in plan.foreign))

    def _executor(self, snapshot: Any) -> Any:
        # Imported when a run acts: a no-op or check-mode run never compiles the executor.
        from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import Executor
        journal = self.host.journal

        def loaded(step: Any, image: Any) -> None:
            # Noted the moment the kernel took it: rollback and the foreign check rely on it.
            journal.record(name=step.patch, path=image.path, build_id=image.info.build_id,
                           replace=self._replace.get(step.patch, False))
        return Executor(self.host.kernel, snapshot.capabilities, timeout=self.params['timeout'],
                        on_stall=self.params['on_stall'], clock=self.host.kernel.clock, warn=self.module.warn,
                        on_loaded=loaded)

    def _known_files(self) -> Dict[str, Dict[str, Any]]:
        """name -> path, build and replace of the files the journal and the boot record know."""
        record = self.read_record()
        known = dict((entry.name, entry.as_dict()) for entry in (record.stack if record else ()))
        known.update(self.host.journal.read())
        return known

    def _plan_back(self, snapshot: Any, wanted: Sequence[Wanted]) -> Any:
        """The way back after a failure, with this run's policy and what is ours now."""
        ours = ours_from(self.host.journal.read(), self.read_record())
        return plan_stack(snapshot, wanted, unload_retired=self.params['unload_retired'],
                          foreign=self.params['foreign'], ours=ours)

    def _converge(self, snapshot: Any, plan: Any) -> Any:
        from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge
        self._replace = dict((want.name, want.replace) for want in plan.wanted)
        executor = self._executor(snapshot)
        trust = self.host.trust
        outcome = converge(self.host.kernel, plan, executor, images=self.images, original=snapshot.live_stack,
                           rollback=self.params['rollback'], planner=self._plan_back,
                           known_files=self._known_files(), open_image=lambda path: open_module(path, trust))
        final = outcome.snapshot
        self.snapshot = final
        self._report_state(final)
        self.result.update({
            'steps': [record.as_dict() for record in executor.records],
            'reboot_required': final.reboot_required or bool(executor.forced),
            'changed': outcome.changed,
        })
        if executor.forced:
            self.result['forced'] = list(executor.forced)
        if self.module._diff:
            self.result['diff']['after'] = describe_stack(final.live_stack)
        if outcome.failed:
            if outcome.rollback is not None:
                self.result['rollback'] = outcome.rollback.as_dict()
            error = outcome.error
            raise LivepatchError(error.rule, outcome.message, error.patches, {'error_detail': dict(error.detail)})
        return final

    def _write_record(self, wanted: List[Wanted], foreign: Set[str]) -> None:
        """Write the stack where the boot-time restore reads it, still holding the host lock.

        Kept patches carry no path of their own; it comes from the previous record or the
        journal when the build matches. A foreign patch merely kept is left out: its own tool
        loads it at boot, and a record entry would make it count as ours.
        """
        path = self.params.get('record')
        if not path:
            return
        path = os.path.normpath(path)
        previous = self.read_record()
        known = dict((entry.name, entry.as_dict()) for entry in (previous.stack if previous else ()))
        journal = self.host.journal.read()
        stack = []
        for want in wanted:
            if want.name in foreign and not want.path:
                continue
            file_path = want.path
            if not file_path:
                for source in (known.get(want.name), journal.get(want.name)):
                    candidate = (source or {}).get('path')
                    if (isinstance(candidate, str) and os.path.isabs(candidate)
                            and (not want.build_id or source.get('build_id') == want.build_id)):
                        file_path = os.path.normpath(candidate)
                        break
            stack.append(RecordEntry(name=want.name, path=file_path, build_id=want.build_id, replace=want.replace))
        if write_record(path, BootRecord(kernel_release=self.snapshot.kernel_release, stack=tuple(stack))):
            self.result['changed'] = True
        self.result['record'] = path
        missing = [entry.name for entry in stack if not entry.path]
        if missing:
            self.module.warn('no file is known for %s, so the boot-time restore cannot load it' % ', '.join(missing))
