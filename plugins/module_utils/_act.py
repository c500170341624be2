# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Act: perform a plan's steps one at a time, waiting on the kernel's observable state.

PRIVATE: this module_util may change at any time.

Rules this layer keeps (``livepatch-kernel.md``):

* one transition at a time, system-wide: wait until no ``transition`` reads 1 before every write
  or load, and treat EBUSY as "wait, then retry" within the deadline (§8 rule 2);
* a write to ``enabled`` returns when the transition *starts*: poll until it ends (§2.1). Polls
  are in milliseconds: a transition takes ~1.5 ms on an idle host and 1-2 s on a busy one, where
  the kernel retries once a second (lab-notes.md);
* disabled is done when the directory is gone and ``refcnt`` reads 0 (§8 rule 4);
* never ``force`` and never ``rmmod -f`` unless the user asked (§5.4, §8 rule 8); a stalled
  transition is reversed by writing the opposite value to ``enabled`` (§2.3).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time

from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    LIVEPATCH_DIR, ERA_FREE, observe,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import (
    Refusal, Wanted, plan_stack,
)

__all__ = ['ActError', 'StallError', 'LockError', 'HostKernel', 'HostLock', 'Journal', 'Executor',
           'errno_from_message', 'write_json_atomically']

LOCK_PATH = '/run/kernelops-livepatch.lock'
JOURNAL_DIR = '/run/kernelops-livepatch'

# First poll after 0.5 ms, doubling up to 20 ms: an idle transition ends in ~1.5 ms, a busy one
# in 1-2 s (lab-notes.md); never sleep whole seconds like the kpatch CLI does.
POLL_FIRST = 0.0005
POLL_MAX = 0.02

_STRERROR = dict((os.strerror(code), errno.errorcode[code]) for code in errno.errorcode)
# kmod's insmod prints its own words for some errors instead of strerror() (mod_strerror in
# tools/insmod.c); seen on the lab's 6.1 guest: EINVAL from a klp_state refusal reads
# "Invalid parameters".
_KMOD_WORDS = {
    'Invalid module format': 'ENOEXEC',
    'Unknown symbol in module': 'ENOENT',
    'Module has wrong symbol version': 'ESRCH',
    'Invalid parameters': 'EINVAL',
}


def errno_from_message(message):
    """The errno name behind kmod's message ("... could not insert module X: Device or resource busy")."""
    tail = message.strip().splitlines()[-1] if message.strip() else ''
    detail = tail.rsplit(': ', 1)[-1]
    for words, name in _KMOD_WORDS.items():
        if detail.startswith(words):
            return name
    best = None
    for text, name in _STRERROR.items():
        if text and tail.endswith(text) and (best is None or len(text) > len(best[0])):
            best = (text, name)
    return best[1] if best else None


class ActError(Exception):
    """A step failed; ``detail`` carries what the kernel said."""

    def __init__(self, message, detail=None):
        super(ActError, self).__init__(message)
        self.message = message
        self.detail = detail or {}


class StallError(ActError):
    """A transition did not finish within the timeout."""


class LockError(ActError):
    """Another run holds the host lock."""


class Clock(object):
    """Time, injectable so tests of a model kernel do not sleep."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


def poll_until(predicate, timeout, clock=Clock, what='condition'):
    """Call ``predicate`` until it returns a true value or ``timeout`` seconds pass.

    Returns (value, seconds waited); value is the last (false) result on timeout.
    """
    start = clock.monotonic()
    delay = POLL_FIRST
    while True:
        value = predicate()
        waited = clock.monotonic() - start
        if value or waited >= timeout:
            return value, waited
        clock.sleep(min(delay, max(0.0, timeout - waited)))
        delay = min(delay * 2, POLL_MAX)


class HostLock(object):
    """flock on a file under /run, so two runs (two AWX jobs) never interleave on one host."""

    def __init__(self, path=LOCK_PATH, timeout=60.0, clock=Clock):
        self.path = path
        self.timeout = timeout
        self.clock = clock
        self.handle = None

    def _try(self):
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (IOError, OSError) as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise

    def __enter__(self):
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory)
        self.handle = open(self.path, 'a')
        taken, waited = poll_until(self._try, self.timeout, self.clock, 'host lock')
        if not taken:
            self.handle.close()
            self.handle = None
            raise LockError('another livepatch run holds %s; gave up after %.1f s (lock_timeout)' % (self.path, waited),
                            {'lock': self.path, 'waited': round(waited, 3)})
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write('%d\n' % os.getpid())
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        return False


class Journal(object):
    """What this collection loaded since boot: name → path and build ID, kept under /run (tmpfs).

    The kernel does not remember where a module came from; to re-push a popped patch on
    rollback we need its file. Entries are only trusted when the file's build ID still matches.
    """

    def __init__(self, directory=JOURNAL_DIR):
        self.directory = directory
        self.path = os.path.join(directory, 'journal.json')

    def read(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (IOError, OSError, ValueError):
            return {}

    def record(self, wanted):
        data = self.read()
        data[wanted.name] = {'path': wanted.path, 'build_id': wanted.build_id, 'replace': wanted.replace}
        write_json_atomically(self.path, data)


def write_json_atomically(path, data):
    """Temp file in the same directory, fsync, rename, fsync the directory: never a torn file."""
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, sort_keys=True, indent=1)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class HostKernel(object):
    """The real kernel: sysfs writes, insmod and rmmod through ``module.run_command``."""

    def __init__(self, module, root='/', clock=Clock):
        self.module = module
        self.root = root
        self.clock = clock
        self._insmod = None
        self._rmmod = None

    def observe(self, blocker_stacks=False):
        return observe(self.root, blocker_stacks=blocker_stacks)

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, *parts):
        try:
            with open(self.path(*parts)) as handle:
                return handle.read().strip()
        except (IOError, OSError):
            return None

    def exists(self, *parts):
        return os.path.exists(self.path(*parts))

    def write(self, value, *parts):
        """Write one sysfs attribute; raises OSError with the kernel's errno."""
        fd = os.open(self.path(*parts), os.O_WRONLY)
        try:
            os.write(fd, value.encode('ascii'))
        finally:
            os.close(fd)

    def transition_patch(self):
        """The patch whose ``transition`` reads 1, or None: a cheap read for polling."""
        base = self.path(LIVEPATCH_DIR)
        try:
            names = os.listdir(base)
        except OSError:
            return None
        for name in names:
            if self.read(LIVEPATCH_DIR, name, 'transition') == '1':
                return name
        return None

    def kmsg_cursor(self):
        return KmsgCursor(self.path('dev', 'kmsg'))

    def _binary(self, name):
        path = self.module.get_bin_path(name, required=False, opt_dirs=['/usr/sbin', '/sbin'])
        if not path:
            raise ActError('%s not found on the host: install kmod' % name)
        return path

    def insmod(self, path):
        if self._insmod is None:
            self._insmod = self._binary('insmod')
        return self.module.run_command([self._insmod, path], environ_update={'LC_ALL': 'C', 'LANGUAGE': 'C'})

    def rmmod(self, name):
        if self._rmmod is None:
            self._rmmod = self._binary('rmmod')
        return self.module.run_command([self._rmmod, name], environ_update={'LC_ALL': 'C', 'LANGUAGE': 'C'})


class KmsgCursor(object):
    """Kernel log records written after this cursor was made (reads /dev/kmsg, no dmesg binary)."""

    def __init__(self, path):
        self.fd = None
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            self.close()

    def messages(self):
        lines = []
        if self.fd is None:
            return lines
        while True:
            try:
                record = os.read(self.fd, 8192)
            except OSError as exc:
                if exc.errno == errno.EPIPE:  # overwritten records: keep reading
                    continue
                break
            if not record:
                break
            text = record.decode('utf-8', 'replace')
            header, _sep, message = text.partition(';')
            lines.append(message.split('\n', 1)[0] if _sep else text.strip())
        self.close()
        return lines

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class StepRecord(object):
    def __init__(self, step, phase='apply'):
        self.step = step
        self.phase = phase
        self.outcome = 'pending'
        self.duration = 0.0
        self.detail = {}

    @property
    def changed_kernel(self):
        """Whether the step got as far as changing the kernel (a refused step did not)."""
        return self.outcome != 'failed'

    def as_dict(self):
        result = self.step.as_dict()
        result.update({'phase': self.phase, 'outcome': self.outcome,
                       'duration_ms': round(self.duration * 1000.0, 3)})
        result.update(self.detail)
        return result


class Executor(object):
    """Runs steps against a kernel; one instance per module run."""

    def __init__(self, kernel, capabilities, timeout=60.0, on_stall='reverse', journal=None, clock=Clock,
                 warn=None):
        self.kernel = kernel
        self.caps = capabilities
        self.timeout = float(timeout)
        self.on_stall = on_stall
        self.journal = journal
        self.clock = clock
        self.records = []
        self.forced = []
        self.warn = warn or (lambda message: None)

    # -- waiting on the kernel -------------------------------------------------------------
    def wait_idle(self, timeout=None):
        """Block until no patch is in transition (§8 rule 2); StallError on timeout."""
        timeout = self.timeout if timeout is None else timeout
        idle, waited = poll_until(lambda: self.kernel.transition_patch() is None, timeout, self.clock)
        if not idle:
            self._stalled(self.kernel.transition_patch(), waited, own=False)
        return waited

    def _transition_over(self, name):
        return self.kernel.read(LIVEPATCH_DIR, name, 'transition') != '1'

    def _wait_transition_end(self, name):
        def ended():
            return self._transition_over(name)
        done, waited = poll_until(ended, self.timeout / 2.0 if self.caps.signal else self.timeout, self.clock)
        if not done and self.caps.signal:
            # 4.15-5.0: the kernel does not signal blocking tasks by itself; write `signal`
            # once before giving up (§2.4, §5.2). 5.1+ signals every 15 s on its own.
            self._write_quiet('1', LIVEPATCH_DIR, name, 'signal')
            done, more = poll_until(ended, self.timeout / 2.0, self.clock)
            waited += more
        if not done:
            self._stalled(name, waited, own=True)
        return waited

    def _stalled(self, name, waited, own):
        """A transition did not finish: report blockers, then reverse, leave, or force it."""
        snapshot = self.kernel.observe(blocker_stacks=True)
        transition = snapshot.transition
        blockers = [dict(b) for b in transition.blockers] if transition else []
        direction = transition.direction if transition else None
        detail = {'stalled_patch': name, 'direction': direction, 'blockers': blockers, 'waited_s': round(waited, 3)}
        if not own:
            raise StallError('patch %s has been in transition (%s) for %.1f s, longer than the timeout, and this run '
                             'did not start that transition' % (name, direction, waited), detail)
        if self.on_stall == 'force':
            # Only on explicit request (on_stall=force): breaks the consistency model, and the
            # forced module can never be unloaded (§5.4).
            self.kernel.write('1', LIVEPATCH_DIR, name, 'force')
            self.forced.append(name)
            self.warn('transition of %s was forced after %.1f s: plan a reboot; its module can never be '
                      'unloaded and no more patches should be applied (livepatch.rst)' % (name, waited))
            done, _more = poll_until(lambda: self._transition_over(name),
                                     max(self.timeout, 5.0), self.clock)
            if not done:
                raise StallError('patch %s did not finish its transition even after force' % name, detail)
            return
        if self.on_stall == 'reverse':
            target = '0' if direction == 'patching' else '1'
            # Writing the opposite value to the patch in transition reverses it (§2.3).
            self.kernel.write(target, LIVEPATCH_DIR, name, 'enabled')
            reversed_done, more = poll_until(
                lambda: self._transition_over(name), self.timeout, self.clock)
            detail['reversed'] = bool(reversed_done)
            detail['reverse_s'] = round(more, 3)
            if not reversed_done:
                raise StallError('patch %s stalled while %s after %.1f s; the reverse transition did not finish within '
                                 '%.1f s either and is still running' % (name, direction, waited, self.timeout), detail)
            if direction == 'patching' and self.caps.era == ERA_FREE:
                # A reversed enable ends unpatched and the patch is freed like any disabled
                # one (§2.3): wait for its directory to go so the module can be unloaded.
                self._wait_gone(name)
            raise StallError('patch %s stalled while %s after %.1f s; the transition was reversed'
                             % (name, direction, waited), detail)
        raise StallError('patch %s stalled while %s after %.1f s; left running (on_stall=fail)'
                         % (name, direction, waited), detail)

    def _write_quiet(self, value, *parts):
        try:
            self.kernel.write(value, *parts)
        except OSError:
            pass

    def _wait_gone(self, name):
        """5.1+: the directory of a disabled or replaced patch goes away from a workqueue (§2.1)."""
        gone, waited = poll_until(lambda: not self.kernel.exists(LIVEPATCH_DIR, name), self.timeout, self.clock)
        if not gone:
            raise ActError('patch %s finished its transition but its sysfs directory is still there after %.1f s'
                           % (name, waited))

    def _wait_refcnt_zero(self, name):
        zero, waited = poll_until(lambda: self.kernel.read('sys', 'module', name, 'refcnt') in ('0', None),
                                  self.timeout, self.clock)
        if not zero:
            raise ActError('module %s still has refcnt %s after %.1f s; it is in use (or was forced) and cannot be '
                           'unloaded' % (name, self.kernel.read('sys', 'module', name, 'refcnt'), waited))

    def _retry_busy(self, operation):
        """Run ``operation`` (returns an errno name or None); EBUSY means wait for idle and retry (§8 rule 2)."""
        start = self.clock.monotonic()
        while True:
            self.wait_idle()
            error = operation()
            if error != 'EBUSY' or self.clock.monotonic() - start >= self.timeout:
                return error
            self.clock.sleep(POLL_MAX)

    # -- the four actions ------------------------------------------------------------------
    def disable(self, step):
        def write():
            if self.kernel.read(LIVEPATCH_DIR, step.patch, 'enabled') == '0':
                return None  # never write the value a file already holds: EINVAL (§2.1)
            try:
                self.kernel.write('0', LIVEPATCH_DIR, step.patch, 'enabled')
            except OSError as exc:
                return errno.errorcode.get(exc.errno, str(exc.errno))
            return None
        error = self._retry_busy(write)
        if error:
            raise ActError('disabling patch %s failed: %s' % (step.patch, error), {'errno': error})
        self._wait_transition_end(step.patch)
        if self.caps.era == ERA_FREE:
            self._wait_gone(step.patch)

    def enable(self, step):
        def write():
            try:
                self.kernel.write('1', LIVEPATCH_DIR, step.patch, 'enabled')
            except OSError as exc:
                return errno.errorcode.get(exc.errno, str(exc.errno))
            return None
        error = self._retry_busy(write)
        if error:
            raise ActError('enabling patch %s failed: %s' % (step.patch, error), {'errno': error})
        self._wait_transition_end(step.patch)

    def unload(self, step):
        self._wait_refcnt_zero(step.patch)
        rc, out, err = self.kernel.rmmod(step.patch)
        if rc != 0:
            message = (err or out).strip()
            if not self.kernel.exists('sys', 'module', step.patch):
                return  # already gone: someone else unloaded it
            raise ActError('rmmod %s failed: %s' % (step.patch, message), {'rc': rc, 'stderr': err})
        gone, _waited = poll_until(lambda: not self.kernel.exists('sys', 'module', step.patch), self.timeout, self.clock)
        if not gone:
            raise ActError('module %s is still present after rmmod' % step.patch)

    def load(self, step, wanted):
        attempt = {}

        def insmod():
            if attempt.get('cursor') is not None:
                attempt['cursor'].close()
            attempt['cursor'] = self.kernel.kmsg_cursor()
            rc, out, err = self.kernel.insmod(step.path)
            if rc == 0:
                return None
            attempt['rc'] = rc
            attempt['stderr'] = (err or out).strip()
            return errno_from_message(attempt['stderr']) or 'rc=%d' % rc
        error = self._retry_busy(insmod)
        messages = attempt['cursor'].messages() if attempt.get('cursor') is not None else []
        if error:
            detail = {'rc': attempt.get('rc'), 'stderr': attempt.get('stderr'), 'errno': error,
                      'kernel_messages': messages}
            raise ActError('loading patch %s from %s failed: %s%s' % (
                step.patch, step.path, attempt.get('stderr') or error, _kernel_reason(messages)), detail)
        if self.journal is not None and wanted is not None:
            self.journal.record(wanted)
        if not self.kernel.exists(LIVEPATCH_DIR, step.patch):
            raise ActError('module %s loaded but /sys/kernel/livepatch/%s did not appear: it is not a livepatch '
                           'module' % (step.patch, step.patch), {'kernel_messages': messages})
        self._wait_transition_end(step.patch)
        for name in step.retires:
            self._wait_gone(name)
        return messages

    # -- driving a plan --------------------------------------------------------------------
    def run(self, steps, wanted_by_name, phase='apply'):
        """Execute ``steps`` in order; on failure raise with ``self.records`` telling what ran."""
        for step in steps:
            record = StepRecord(step, phase)
            self.records.append(record)
            start = self.clock.monotonic()
            try:
                if step.action == 'disable':
                    self.disable(step)
                elif step.action == 'enable':
                    self.enable(step)
                elif step.action == 'unload' and step.patch in self.forced:
                    # Its unpatching was forced: the kernel keeps its module reference for good (§5.4).
                    record.outcome = 'skipped'
                    record.detail['error'] = 'forced: its module can never be unloaded until reboot'
                    continue
                elif step.action == 'unload':
                    self.unload(step)
                elif step.action == 'load':
                    if not step.path:
                        raise ActError('no file is known for patch %s, so it cannot be loaded' % step.patch)
                    messages = self.load(step, wanted_by_name.get(step.patch))
                    if messages:
                        record.detail['kernel_messages'] = messages
                else:
                    raise ActError('unknown step %s' % step.action)
            except ActError as exc:
                # A stall means the write or the load happened: the kernel was changed even though
                # the step failed ('stalled' when left running, 'reversed' when turned back).
                if exc.detail.get('reversed'):
                    record.outcome = 'reversed'
                elif isinstance(exc, StallError) and exc.detail.get('stalled_patch') == step.patch:
                    record.outcome = 'stalled'
                else:
                    record.outcome = 'failed'
                record.duration = self.clock.monotonic() - start
                record.detail.update(exc.detail)
                record.detail['error'] = exc.message
                raise
            record.outcome = 'ok'
            record.duration = self.clock.monotonic() - start


def _kernel_reason(messages):
    relevant = [m for m in messages if 'livepatch' in m or 'not compatible' in m or 'callback' in m]
    return ('; kernel: ' + ' / '.join(relevant[-4:])) if relevant else ''


def rollback_wanted(original, desired, journal_entries):
    """The stack as it was, as a desired stack with the file for each patch where one is known.

    A patch's file is known when the desired stack or the journal names a file whose build
    matches the live one. Returns (wanted, missing names).
    """
    by_name = dict((w.name, w) for w in desired)
    wanted = []
    missing = []
    for patch in original:
        candidate = by_name.get(patch.name)
        if candidate is None or (candidate.build_id and patch.build_id and candidate.build_id != patch.build_id):
            entry = journal_entries.get(patch.name) or {}
            build_ok = not (entry.get('build_id') and patch.build_id) or entry.get('build_id') == patch.build_id
            if entry.get('path') and build_ok:
                candidate = Wanted(patch.name, entry['path'], entry.get('build_id'), replace=entry.get('replace', False))
            else:
                candidate = None
        if candidate is None:
            missing.append(patch.name)
            candidate = Wanted(patch.name, None, patch.build_id, replace=bool(patch.replace))
        wanted.append(candidate)
    return wanted, missing


def converge(kernel, wanted, plan, executor, original, rollback=True, journal_entries=None):
    """Run ``plan``; on failure try to return to ``original`` (the live stack before the run).

    Returns a dict: ``failed``, ``error``, ``rollback`` and the final snapshot.
    """
    wanted_by_name = dict((w.name, w) for w in wanted)
    outcome = {'failed': False, 'error': None, 'error_detail': None, 'rollback': None}
    try:
        executor.wait_idle()
        executor.run(plan.steps, wanted_by_name)
    except ActError as exc:
        outcome.update({'failed': True, 'error': exc.message, 'error_detail': exc.detail})
        changed_something = any(record.changed_kernel for record in executor.records)
        settled = not isinstance(exc, StallError) or exc.detail.get('reversed')
        if not changed_something:
            outcome['rollback'] = {'attempted': False, 'reason': 'nothing had been changed'}
        elif rollback and settled:
            outcome['rollback'] = _roll_back(kernel, executor, original, wanted, journal_entries or {})
        elif rollback:
            outcome['rollback'] = {'attempted': False, 'reason': 'a transition is still running (on_stall=%s); '
                                   'nothing more was changed' % executor.on_stall}
    outcome['snapshot'] = kernel.observe()
    return outcome


def _roll_back(kernel, executor, original, desired, journal_entries):
    back, missing = rollback_wanted(original, desired, journal_entries)
    try:
        executor.wait_idle()
        snapshot = kernel.observe()
        back_plan = plan_stack(snapshot, back)
    except (ActError, Refusal) as exc:
        return {'attempted': False, 'reason': 'cannot plan the way back: %s' % exc}
    loads_missing = [s.patch for s in back_plan.steps if s.action == 'load' and not s.path]
    if loads_missing:
        return {'attempted': False, 'missing_files': loads_missing,
                'reason': 'no file is known for %s (popped earlier in this run), so the stack cannot be restored; '
                          'the stack is reported as it is now' % ', '.join(loads_missing)}
    try:
        executor.run(back_plan.steps, dict((w.name, w) for w in back), phase='rollback')
    except ActError as exc:
        return {'attempted': True, 'succeeded': False, 'reason': exc.message, 'missing_files': missing}
    return {'attempted': True, 'succeeded': True, 'steps': len(back_plan.steps)}
