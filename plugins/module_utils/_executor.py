# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The executor: run a plan's steps one at a time, waiting on the kernel's observable state.

PRIVATE: this module_util may change at any time.

It only runs steps; deciding them is the planner's job and undoing them is ``_converge``'s.
Rules it keeps:

* one transition at a time, system-wide: wait until no ``transition`` reads 1 before every write
  or load, and treat EBUSY as "wait, then retry" within the deadline (docs/developer.md §8);
* a write to ``enabled`` returns when the transition *starts*: poll until it ends
  (docs/developer.md §2.1, §5.1);
* disabled is done when the directory is gone and ``refcnt`` reads 0 (docs/developer.md §5.5);
* never ``force``, never a forced unload, unless the user asked (docs/developer.md §5.4); a
  stalled transition is reversed by writing the opposite value to ``enabled`` (§2.3);
* a step changed the kernel the moment its write or load succeeded (``StepRecord.kernel_changed``),
  whatever happens after.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import POLL_MAX, poll_until
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import ERA_FREE, LIVEPATCH_DIR

__all__ = ['ActError', 'StallError', 'StepRecord', 'Executor', 'ON_STALL']

# Rule names (listed in the docs' rule table).
TRANSITION_STALLED = 'transition_stalled'   # our transition did not end within timeout
TRANSITION_RUNNING = 'transition_running'   # someone else's transition did not end within timeout
WRITE_FAILED = 'write_failed'               # the kernel refused a write to enabled/force
LOAD_FAILED = 'load_failed'                 # finit_module failed, or the module is no livepatch
UNLOAD_FAILED = 'unload_failed'             # delete_module failed
MODULE_IN_USE = 'module_in_use'             # refcnt did not drop to 0 (in use, or forced)
PATCH_NOT_FREED = 'patch_not_freed'         # the sysfs directory of a finished patch stayed
NO_FILE = 'no_file'                         # a load step without verified bytes
UNKNOWN_STEP = 'unknown_step'

ON_STALL = ('reverse', 'fail', 'force')
_DIRECTION = {True: 'patching', False: 'unpatching'}


class ActError(LivepatchError):
    """A step failed; ``detail`` carries what the kernel said (errno, kernel messages, blockers)."""


class StallError(ActError):
    """A transition did not finish within the timeout."""


class StepRecord:
    """What happened to one step; filled in while it runs (so not a frozen value)."""

    def __init__(self, step: Any, phase: str = 'apply') -> None:
        self.step = step
        self.phase = phase
        self.outcome = 'pending'
        self.duration = 0.0
        self.detail: Dict[str, Any] = {}
        # Set True the moment a write or load that changes the kernel succeeded.
        self.kernel_changed = False

    @property
    def changed_kernel(self) -> bool:  # the name _common.py reads until the runner moves
        return self.kernel_changed

    def as_dict(self) -> Dict[str, Any]:
        result = self.step.as_dict()
        result.update({'phase': self.phase, 'outcome': self.outcome, 'kernel_changed': self.kernel_changed,
                       'duration_ms': round(self.duration * 1000.0, 3)})
        result.update(self.detail)
        return result


class Executor:
    """Runs steps against one kernel (``_kernel.Kernel`` or the test model); one per module run.

    ``on_loaded(step, image)`` is called right after a module loaded (the runner records it in
    the journal); ``warn(text)`` receives warnings for the user.
    """

    def __init__(self, kernel: Any, capabilities: Any, *, timeout: float = 60.0, on_stall: str = 'reverse',
                 clock: Any = None, warn: Optional[Callable[[str], None]] = None,
                 on_loaded: Optional[Callable[[Any, Any], None]] = None) -> None:
        if on_stall not in ON_STALL:
            raise ValueError('on_stall must be one of %s' % (ON_STALL,))
        self.kernel = kernel
        self.capabilities = capabilities
        self.timeout = float(timeout)
        self.on_stall = on_stall
        self.clock = clock or kernel.clock
        self.warn = warn or (lambda message: None)
        self.on_loaded = on_loaded
        self.records: List[StepRecord] = []
        self.forced: List[str] = []
        self._record: Optional[StepRecord] = None

    # -- waiting on the kernel -------------------------------------------------------------
    def wait_idle(self, timeout: Optional[float] = None) -> float:
        """Block until no patch is in transition (§8); StallError(transition_running) on timeout."""
        timeout = self.timeout if timeout is None else timeout
        idle, waited = poll_until(lambda: self.kernel.transition_patch() is None, timeout, self.clock)
        if idle:
            return waited
        name = self.kernel.transition_patch()  # re-read: it may have ended just now
        if name is None:
            return waited
        detail = self._stall_detail(name, waited)
        raise StallError(TRANSITION_RUNNING, 'patch %s has been in transition (%s) for %.1f s, longer than the '
                         'timeout, and this run did not start that transition'
                         % (name, detail['direction'], waited), [name], detail)

    def _in_transition(self, name: str) -> bool:
        return self.kernel.read(LIVEPATCH_DIR, name, 'transition') == '1'

    def _wait_transition_end(self, name: str, target: bool) -> float:
        """Wait for the transition this step started (``target``: True = patching)."""
        caps = self.capabilities
        signal = bool(getattr(caps, 'signal', False))
        ended, waited = poll_until(lambda: not self._in_transition(name),
                                   self.timeout / 2.0 if signal else self.timeout, self.clock)
        if not ended and signal:
            # 4.15-5.0: the kernel does not signal blocking tasks by itself; write `signal`
            # once before giving up (docs/developer.md §2.4, §5.2). 5.1+ does it every 15 s.
            self.kernel.write('1', LIVEPATCH_DIR, name, 'signal')
            ended, more = poll_until(lambda: not self._in_transition(name), self.timeout / 2.0, self.clock)
            waited += more
        if not ended:
            self._stalled(name, target, waited)
        return waited

    def _stall_detail(self, name: str, waited: float, target: Optional[bool] = None) -> Dict[str, Any]:
        try:
            transition = self.kernel.observe(blocker_stacks=True).transition
        except Exception:  # pylint: disable=broad-except
            transition = None  # the blockers are a report; failing to read them must not hide the stall
        if target is None:
            direction = transition.direction if transition is not None else None
        else:
            direction = _DIRECTION[target]
        blockers = [dict(b) for b in transition.blockers] if transition is not None else []
        return {'stalled_patch': name, 'direction': direction, 'blockers': blockers, 'waited_s': round(waited, 3)}

    def _stalled(self, name: str, target: bool, waited: float) -> None:
        """Our transition did not end: reverse, leave or force it, as ``on_stall`` says.

        The direction is the step's, never re-derived from a fresh read (a transition that just
        ended reads as none). ``transition`` is re-read right before acting: one that ended in
        the meantime is a success, not something to reverse (docs/developer.md §2.3).
        """
        if not self._in_transition(name):
            return
        detail = self._stall_detail(name, waited, target)
        direction = detail['direction']
        if self.on_stall == 'force':
            error = self.kernel.write('1', LIVEPATCH_DIR, name, 'force')
            if error is not None:
                if not self._in_transition(name):
                    return
                raise ActError(WRITE_FAILED, 'forcing the transition of %s failed: %s' % (name, error), [name],
                               dict(detail, errno=error))
            self.forced.append(name)
            self.warn('transition of %s was forced after %.1f s: plan a reboot; its module can never be '
                      'unloaded and no more patches should be applied (docs/developer.md §5.4)' % (name, waited))
            done, _more = poll_until(lambda: not self._in_transition(name), max(self.timeout, 5.0), self.clock)
            if not done:
                raise StallError(TRANSITION_STALLED, 'patch %s did not finish its transition even after force'
                                 % name, [name], detail)
            return
        if self.on_stall == 'fail':
            raise StallError(TRANSITION_STALLED, 'patch %s stalled while %s after %.1f s; left running '
                             '(on_stall=fail)' % (name, direction, waited), [name], detail)
        if not self._in_transition(name):
            return
        # Writing the opposite value to the patch in transition reverses it (§2.3).
        error = self.kernel.write('0' if target else '1', LIVEPATCH_DIR, name, 'enabled')
        if error is not None:
            if not self._in_transition(name):
                return  # it ended between the read and the write: the step succeeded
            raise ActError(WRITE_FAILED, 'reversing the stalled transition of %s failed: %s' % (name, error),
                           [name], dict(detail, errno=error))
        reversed_done, more = poll_until(lambda: not self._in_transition(name), self.timeout, self.clock)
        detail.update({'reversed': bool(reversed_done), 'reverse_s': round(more, 3)})
        if not reversed_done:
            raise StallError(TRANSITION_STALLED, 'patch %s stalled while %s after %.1f s; the reverse transition did '
                             'not finish within %.1f s either and is still running'
                             % (name, direction, waited, self.timeout), [name], detail)
        if target and getattr(self.capabilities, 'era', None) == ERA_FREE:
            # A reversed enable ends unpatched and is freed like any disabled patch (§2.3):
            # wait for its directory to go so its module can be unloaded.
            self._wait_gone(name)
        raise StallError(TRANSITION_STALLED, 'patch %s stalled while %s after %.1f s; the transition was reversed'
                         % (name, direction, waited), [name], detail)

    def _wait_gone(self, name: str) -> None:
        """5.1+: the directory of a disabled or replaced patch goes away from a workqueue (§2.1)."""
        gone, waited = poll_until(lambda: not self.kernel.exists(LIVEPATCH_DIR, name), self.timeout, self.clock)
        if not gone:
            raise ActError(PATCH_NOT_FREED, 'patch %s finished its transition but its sysfs directory is still there '
                           'after %.1f s' % (name, waited), [name])

    def _wait_refcnt_zero(self, name: str) -> None:
        zero, waited = poll_until(lambda: self.kernel.read('sys', 'module', name, 'refcnt') in ('0', None),
                                  self.timeout, self.clock)
        if not zero:
            raise ActError(MODULE_IN_USE, 'module %s still has refcnt %s after %.1f s; it is in use (or was forced) '
                           'and cannot be unloaded' % (name, self.kernel.read('sys', 'module', name, 'refcnt'),
                                                       waited), [name])

    def _retry_busy(self, operation: Callable[[], Optional[str]]) -> Optional[str]:
        """Run ``operation`` (an errno name or None); EBUSY means wait for idle and retry (§8)."""
        start = self.clock.monotonic()
        while True:
            self.wait_idle()
            error = operation()
            if error != 'EBUSY' or self.clock.monotonic() - start >= self.timeout:
                return error
            self.clock.sleep(POLL_MAX)

    def _changed(self) -> None:
        if self._record is not None:
            self._record.kernel_changed = True

    # -- the four actions ------------------------------------------------------------------
    def _write_enabled(self, step: Any, value: str) -> None:
        def write() -> Optional[str]:
            if value == '0' and self.kernel.read(LIVEPATCH_DIR, step.patch, 'enabled') == '0':
                return None  # never write the value a file already holds: EINVAL (§2.1)
            error = self.kernel.write(value, LIVEPATCH_DIR, step.patch, 'enabled')
            if error is None:
                self._changed()
            return error
        error = self._retry_busy(write)
        if error:
            raise ActError(WRITE_FAILED, '%s patch %s failed: %s' % (
                'disabling' if value == '0' else 'enabling', step.patch, error), [step.patch], {'errno': error})
        self._wait_transition_end(step.patch, value == '1')

    def disable(self, step: Any) -> None:
        self._write_enabled(step, '0')
        if getattr(self.capabilities, 'era', None) == ERA_FREE:
            self._wait_gone(step.patch)

    def enable(self, step: Any) -> None:
        self._write_enabled(step, '1')

    def unload(self, step: Any) -> None:
        self._wait_refcnt_zero(step.patch)
        error = self.kernel.unload_module(step.patch)
        if error is not None:
            if error == 'ENOENT' and not self.kernel.exists('sys', 'module', step.patch):
                return  # already gone: someone else unloaded it, and we changed nothing
            raise ActError(UNLOAD_FAILED, 'unloading module %s failed: %s' % (step.patch, error), [step.patch],
                           {'errno': error})
        self._changed()
        gone, _waited = poll_until(lambda: not self.kernel.exists('sys', 'module', step.patch), self.timeout,
                                   self.clock)
        if not gone:
            raise ActError(UNLOAD_FAILED, 'module %s is still present after it was unloaded' % step.patch,
                           [step.patch])

    def load(self, step: Any, image: Any) -> List[str]:
        attempts: List[Any] = []

        def load() -> Optional[str]:
            result = self.kernel.load_module(image)
            attempts.append(result)
            if result.errno is None:
                self._changed()
            return result.errno
        error = self._retry_busy(load)
        messages = list(attempts[-1].kernel_messages) if attempts else []
        if error:
            detail = {'errno': error, 'kernel_messages': messages}
            raise ActError(LOAD_FAILED, 'loading patch %s from %s failed: %s%s' % (
                step.patch, image.path, attempts[-1].message or error, _kernel_reason(messages)), [step.patch], detail)
        if self.on_loaded is not None:
            try:
                self.on_loaded(step, image)
            except (OSError, LivepatchError) as exc:
                # The module is in the kernel whatever the journal says; carry on, but say so.
                self.warn('patch %s was loaded but could not be noted in the journal: %s' % (step.patch, exc))
        if not self.kernel.exists(LIVEPATCH_DIR, step.patch):
            # We loaded it, so we take it out again: no patch depends on a module that is none.
            unloaded = self.kernel.unload_module(step.patch)
            raise ActError(LOAD_FAILED, 'module %s loaded but /sys/kernel/livepatch/%s did not appear: it is not a '
                           'livepatch module; %s' % (step.patch, step.patch, 'unloaded it again' if unloaded is None
                                                     else 'unloading it again failed: %s' % unloaded),
                           [step.patch], {'kernel_messages': messages, 'unload_errno': unloaded})
        self._wait_transition_end(step.patch, True)
        for name in step.retires:
            self._wait_gone(name)
        return messages

    # -- driving a plan --------------------------------------------------------------------
    def run(self, steps: Sequence[Any], images: Mapping[str, Any], phase: str = 'apply') -> None:
        """Execute ``steps`` in order; ``images``: patch name -> verified ModuleImage for loads.

        On failure raise the ActError, with ``self.records`` telling what ran and what changed.
        """
        for step in steps:
            record = StepRecord(step, phase)
            self.records.append(record)
            self._record = record
            start = self.clock.monotonic()
            try:
                self._run_one(step, record, images)
            except ActError as exc:
                if exc.detail.get('reversed'):
                    record.outcome = 'reversed'
                elif isinstance(exc, StallError) and exc.detail.get('stalled_patch') == step.patch:
                    record.outcome = 'stalled'
                else:
                    record.outcome = 'failed'
                record.duration = self.clock.monotonic() - start
                record.detail.update(exc.detail)
                record.detail['error'] = exc.message
                record.detail['rule'] = exc.rule
                raise
            finally:
                self._record = None
            if record.outcome == 'pending':
                record.outcome = 'ok'
            record.duration = self.clock.monotonic() - start

    def _run_one(self, step: Any, record: StepRecord, images: Mapping[str, Any]) -> None:
        if step.action == 'disable':
            self.disable(step)
        elif step.action == 'enable':
            self.enable(step)
        elif step.action == 'unload' and step.patch in self.forced:
            # Its unpatching was forced: the kernel keeps its module reference for good (§5.4).
            record.outcome = 'skipped'
            record.detail['error'] = 'forced: its module can never be unloaded until reboot'
        elif step.action == 'unload':
            self.unload(step)
        elif step.action == 'load':
            image = images.get(step.patch)
            if image is None:
                raise ActError(NO_FILE, 'no verified file is known for patch %s, so it cannot be loaded' % step.patch,
                               [step.patch])
            messages = self.load(step, image)
            if messages:
                record.detail['kernel_messages'] = messages
        else:
            raise ActError(UNKNOWN_STEP, 'unknown step %s' % step.action, [step.patch])


def _kernel_reason(messages: Sequence[str]) -> str:
    relevant = [m for m in messages if 'livepatch' in m or 'not compatible' in m or 'callback' in m]
    return ('; kernel: ' + ' / '.join(relevant[-4:])) if relevant else ''
