# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Glue shared by the ``livepatch`` and ``livepatch_stack`` modules.

PRIVATE: this module_util may change at any time.

observe → resolve the wanted patches (read each ``.ko``) → plan → (check mode stops here) →
take the host lock → wait for the kernel to be idle → observe and plan again → act → observe.
"""

from __future__ import annotations

import json
import os

from ansible_collections.kernelops.livepatch.plugins.module_utils._act import (
    ActError, Executor, HostKernel, HostLock, Journal, converge, write_json_atomically,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import (
    KoFileError, module_name_from_path, read_kofile,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import ObserveError
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import (
    Refusal, Wanted, plan_stack, same_build,
)

__all__ = ['transition_argument_spec', 'patch_spec', 'resolve', 'Runner', 'wanted_from_live', 'BadInput']


def transition_argument_spec():
    """Options every changing module takes (documented in the doc fragment ``transitions``)."""
    return dict(
        timeout=dict(type='float', default=60.0),
        on_stall=dict(type='str', default='reverse', choices=['reverse', 'fail', 'force']),
        rollback=dict(type='bool', default=True),
        wait=dict(type='bool', default=True),
        lock_timeout=dict(type='float', default=60.0),
        unload_retired=dict(type='bool', default=True),
    )


def patch_spec():
    """One patch of a stack: the file on the managed host, and what the kernel cannot tell us."""
    return dict(
        path=dict(type='path', required=True),
        name=dict(type='str'),
        replace=dict(type='bool', default=False),
        requires=dict(type='list', elements='str', default=[]),
    )


class BadInput(Exception):
    """The input is wrong; nothing was changed."""

    def __init__(self, message, patches=(), rule='bad_input'):
        super(BadInput, self).__init__(message)
        self.message = message
        self.patches = list(patches)
        self.rule = rule


def resolve(entry, release, check_mode=False):
    """Read the ``.ko`` named by ``entry`` and check it before anything changes.

    It must exist, be a livepatch module (``livepatch=Y`` in ``.modinfo``, §2.5), be built for
    the running kernel (first word of ``vermagic``), and carry the module name the user gave.
    """
    path = entry['path']
    if not os.path.exists(path) and check_mode:
        # In check mode the role has not copied the file yet: plan with the name alone and
        # count it as a new build (a real run reads the file and compares builds).
        name = (entry.get('name') or module_name_from_path(path)).replace('-', '_')
        return Wanted(name, path, build_id='not-on-host-yet', replace=entry.get('replace', False),
                      requires=entry.get('requires') or ())
    if not os.path.exists(path):
        raise BadInput('patch file %s does not exist on the host' % path, [entry.get('name') or path], 'missing_file')
    try:
        kofile = read_kofile(path)
    except KoFileError as exc:
        raise BadInput(str(exc), [entry.get('name') or path], 'not_a_module')
    name = entry.get('name') or kofile.name or module_name_from_path(path)
    if not kofile.livepatch:
        raise BadInput('%s (module %s) is not a livepatch module: its .modinfo lacks livepatch=Y, and the kernel would '
                       'refuse to enable it' % (path, kofile.name), [name], 'not_livepatch')
    if name.replace('-', '_') != kofile.name:
        raise BadInput('%s is module %s, not %s: the kernel names the patch after the module '
                       '(/sys/kernel/livepatch/%s)' % (path, kofile.name, name, kofile.name), [name], 'name_mismatch')
    if release and kofile.release != release:
        raise BadInput('%s was built for kernel %s (vermagic "%s"), but the running kernel is %s'
                       % (path, kofile.release, kofile.vermagic, release), [name], 'release_mismatch')
    return Wanted(kofile.name, path, kofile.build_id, kofile.srcversion, entry.get('replace', False),
                  entry.get('requires') or (), kofile.release, kofile.livepatch)


def wanted_from_live(patch):
    """A live patch that is simply kept: no file needed."""
    return Wanted(patch.name, None, patch.build_id, patch.srcversion, bool(patch.replace))


def describe_stack(patches):
    """One line per patch, bottom first, for Ansible's diff view."""
    lines = []
    for position, patch in enumerate(patches, 1):
        build = (patch.build_id or '')[:12]
        lines.append('%d. %s%s%s' % (position, patch.name, ' (build %s)' % build if build else '',
                                     ' [replace]' if getattr(patch, 'replace', False) else ''))
    return '\n'.join(lines) + ('\n' if lines else '')


class Runner(object):
    """One run of a changing module: ``decide`` (pure given a snapshot) then ``apply``."""

    def __init__(self, module, kernel=None, lock=None, journal=None):
        self.module = module
        self.params = module.params
        self.kernel = kernel or HostKernel(module)
        self.lock = lock or HostLock(timeout=self.params['lock_timeout'])
        self.journal = journal or Journal()
        self.result = {'changed': False}
        self.wanted = []
        self.release = None

    def fail(self, message, **extra):
        self.result.update(extra)
        self.module.fail_json(msg=message, **self.result)

    def observe(self):
        try:
            snapshot = self.kernel.observe()
        except ObserveError as exc:
            self.fail(str(exc))
        if not snapshot.livepatch_supported:
            self.fail('kernel %s has no livepatch support (/sys/kernel/livepatch is missing: CONFIG_LIVEPATCH is not set)'
                      % snapshot.kernel_release, rule='no_livepatch')
        for warning in snapshot.warnings:
            self.module.warn(warning)
        return snapshot

    def run(self, decide):
        """``decide(snapshot)`` returns the wanted stack (list of Wanted) or raises BadInput/Refusal."""
        snapshot = self.observe()
        plan, wanted = self._plan(snapshot, decide)
        self.result.update(self._plan_result(snapshot, plan, wanted))
        if self.module.check_mode or not plan.changes:
            # What is loaded now matters even when nothing will change (a forced module from an
            # earlier run still needs a reboot).
            self.result.update({'stack': _stack_dicts(snapshot),
                                'leftovers': [leftover.as_dict() for leftover in snapshot.leftovers],
                                'reboot_required': snapshot.reboot_required})
            if snapshot.transition is not None and plan.changes:
                self.module.warn('patch %s is in transition (%s); the plan assumes it completes'
                                 % (snapshot.transition.patch, snapshot.transition.direction))
            self._record()
            self.module.exit_json(**self.result)
        # From here on, "changed" is what was done, not what was planned.
        self.result['changed'] = False
        if os.geteuid() != 0:
            self.fail('changing the livepatch stack needs root (become: true); the plan is in "plan"', rule='not_root')
        if snapshot.transition is not None and not self.params['wait']:
            self.fail('patch %s is in transition (%s) and wait=false; nothing was changed'
                      % (snapshot.transition.patch, snapshot.transition.direction), rule='transition_running')
        try:
            with self.lock:
                self._apply(decide, snapshot.capabilities)
        except ActError as exc:  # the lock could not be taken
            self.fail(exc.message, **exc.detail)
        self._record()
        self.module.exit_json(**self.result)

    def _record(self):
        """Write the applied stack where boot-time restore (the role's unit) reads it.

        Kept patches carry no path of their own; it comes from the previous record or the
        journal when the build matches.
        """
        path = self.params.get('record')
        if not path or self.module.check_mode:
            return
        previous = _read_json(path)
        known = dict((entry.get('name'), entry) for entry in (previous or {}).get('stack', []) if isinstance(entry, dict))
        journal = self.journal.read()
        stack = []
        for want in self.wanted:
            entry = {'name': want.name, 'path': want.path, 'build_id': want.build_id, 'replace': want.replace}
            if not entry['path']:
                for source in (known.get(want.name), journal.get(want.name)):
                    if source and source.get('path') and (not want.build_id or source.get('build_id') == want.build_id):
                        entry['path'] = source['path']
                        break
            stack.append(entry)
        data = {'kernel_release': self.release, 'stack': stack}
        if previous != data:
            write_json_atomically(path, data)
            self.result['changed'] = True
        self.result['record'] = path
        missing = [entry['name'] for entry in stack if not entry['path']]
        if missing:
            self.module.warn('no file is known for %s, so the boot-time restore cannot load it' % ', '.join(missing))

    def _plan(self, snapshot, decide):
        try:
            wanted = decide(snapshot)
            self.wanted, self.release = wanted, snapshot.kernel_release
            return plan_stack(snapshot, wanted, unload_retired=self.params['unload_retired']), wanted
        except BadInput as exc:
            self.fail(exc.message, rule=exc.rule, patches=exc.patches, stack=_stack_dicts(snapshot))
        except Refusal as exc:
            self.fail(exc.message, rule=exc.rule, patches=exc.patches, stack=_stack_dicts(snapshot))
        return None, None  # not reached: fail_json exits

    def _plan_result(self, snapshot, plan, wanted):
        by_name = dict((w.name, w) for w in wanted)
        after = [by_name[name] for name in plan.after]
        result = {
            'changed': plan.changes,
            'plan': [step.as_dict() for step in plan.steps],
            'stack_before': [p.name for p in snapshot.live_stack],
            'stack_after': list(plan.after),
            'kept': plan.kept,
        }
        if plan.notes:
            result['notes'] = list(plan.notes)
        if self.module._diff:
            result['diff'] = {'before': describe_stack(snapshot.live_stack), 'after': describe_stack(after),
                              'before_header': 'livepatch stack (bottom first)',
                              'after_header': 'livepatch stack (bottom first)'}
        return result

    def _apply(self, decide, capabilities):
        executor = Executor(self.kernel, capabilities, timeout=self.params['timeout'], on_stall=self.params['on_stall'],
                            journal=self.journal, clock=self.kernel.clock, warn=self.module.warn)
        if not self.params['wait'] and self.kernel.transition_patch() is not None:
            self.fail('a transition started while waiting for the lock and wait=false; nothing was changed',
                      rule='transition_running')
        try:
            executor.wait_idle()
        except ActError as exc:
            self.fail(exc.message, rule='transition_running', **exc.detail)
        # The state may have moved since the first look (another run held the lock): plan again.
        snapshot = self.observe()
        executor.caps = snapshot.capabilities
        plan, wanted = self._plan(snapshot, decide)
        self.result.update(self._plan_result(snapshot, plan, wanted))
        outcome = converge(self.kernel, wanted, plan, executor, snapshot.live_stack,
                           rollback=self.params['rollback'], journal_entries=self.journal.read())
        final = outcome['snapshot']
        self.result.update({
            'steps': [record.as_dict() for record in executor.records],
            'stack': _stack_dicts(final),
            'leftovers': [leftover.as_dict() for leftover in final.leftovers],
            'reboot_required': final.reboot_required or bool(executor.forced),
            'changed': any(r.changed_kernel or r.phase == 'rollback' for r in executor.records),
        })
        if executor.forced:
            self.result['forced'] = list(executor.forced)
        if self.module._diff:
            self.result['diff']['after'] = describe_stack(final.live_stack)
        if outcome['failed']:
            self.result['rollback'] = outcome['rollback']
            self.fail(outcome['error'] + _final_words(final, outcome['rollback']), error_detail=outcome['error_detail'])
        unexpected = [p.name for p in final.live_stack]
        if unexpected != list(plan.after) or not _builds_match(final.live_stack, wanted):
            self.fail('the stack after the run is %s, not the planned %s (a replace patch not declared with '
                      'replace=true retires the patches below it)' % (unexpected, list(plan.after)),
                      rule='unexpected_result')


def _read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (IOError, OSError, ValueError):
        return None


def _builds_match(live, wanted):
    return all(same_build(patch, want)[0] for patch, want in zip(live, wanted))


def _final_words(final, rollback):
    stack = ', '.join(final.names()) or 'empty'
    if rollback and rollback.get('attempted') and rollback.get('succeeded'):
        return '. Rolled back: the stack is as before the run (%s).' % stack
    reason = (rollback or {}).get('reason')
    return '. The stack is now (bottom first): %s%s.' % (stack, '; not rolled back: %s' % reason if reason else '')


def _stack_dicts(snapshot):
    return [patch.as_dict() for patch in snapshot.stack]
