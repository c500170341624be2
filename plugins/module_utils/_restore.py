# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot-time restore: load the recorded stack again with the modules' own code.

PRIVATE: this module_util may change at any time.

Run at boot by the role's systemd unit through the thin ``livepatch_restore.py``; standard
library only (it imports nothing from ``ansible``). The steps (docs/developer.md §10.6):

1. ``kernelops.livepatch=0`` on the kernel command line: load nothing (status
   ``skipped_by_switch``).
2. Read ``DIR/RELEASE/stack.json`` with :func:`_host.read_record` (a record of another shape is
   refused, ``bad_record``).
3. The crash-loop guard: a ``restore.marker`` left by an earlier boot (or a report still saying
   ``skipped_after_crash``) names the patch whose load never finished; that patch and every
   patch above it in the record are not loaded until the operator clears the guard.
4. Under the host lock: observe, plan from the live stack to the record with
   :func:`_plan.plan_stack` (foreign patches kept at the bottom). At boot the plan must be a pure
   push: one that would disable or unload anything is refused (``restore_would_pop``).
5. Open every file to load with :func:`_kofile.open_module` (the modules' file trust) and refuse
   one whose build ID is not the recorded one (``build_changed``), or an unsigned one when the
   kernel enforces signatures (``unsigned_module``), before anything is loaded.
6. Converge with the modules' executor, without rollback (nothing loaded at boot is taken out
   again: what stands is a bottom part of the record). Each load writes the marker first and
   clears it once its transition completed, and is noted in the journal, so a later module run
   counts the restored patches as ours.
7. Write ``restore.json`` (every path), log one line per action with a syslog priority prefix.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import Executor
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import (
    JOURNAL_DIR, LOCK_PATH, MARKER_NAME, REPORT_NAME, HostLock, Journal, clear_marker, ours_from, read_marker,
    read_record, read_report, write_marker, write_report,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import Kernel
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust, open_module
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack, same_build
from ansible_collections.kernelops.livepatch.plugins.module_utils._runner import check_image, check_signatures

__all__ = ['main', 'SKIP_SWITCH', 'DEFAULT_DIR']

SKIP_SWITCH = 'kernelops.livepatch=0'
DEFAULT_DIR = '/var/lib/kernelops-livepatch'
# Rules (listed in the docs' rule table).
BUILD_CHANGED = 'build_changed'                          # the file holds another build than the record
RESTORE_WOULD_POP = 'restore_would_pop'                  # the boot plan would disable or unload a patch
RESTORE_SKIPPED_AFTER_CRASH = 'restore_skipped_after_crash'
# Syslog priorities journald reads from a "<N>" prefix (sd-daemon(3)).
ERR, WARNING, NOTICE, INFO = 3, 4, 5, 6


def log(priority: int, message: str) -> None:
    """One line on stderr; the unit's output goes to the journal with that priority."""
    sys.stderr.write('<%d>%s\n' % (priority, message.replace('\n', ' ')))
    sys.stderr.flush()


def _now() -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def _under(root: str, absolute: str) -> str:
    return os.path.join(root, absolute.lstrip('/'))


def _read_first_line(path: str) -> str:
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return handle.readline().strip()
    except OSError:
        return ''


class Outcome(Exception):
    """The end of a restore: status, rule and message for the report (raised to stop early)."""

    def __init__(self, status: str, message: str, rule: str = '', patch: Optional[str] = None,
                 time_text: str = '') -> None:
        super().__init__(message)
        self.status, self.message, self.rule, self.patch = status, message, rule, patch
        self.time_text = time_text or _now()


class BootExecutor(Executor):
    """The modules' executor, with the crash marker written before each load and cleared after.

    The load step returns once the patch's transition completed (and the patches it replaces are
    gone). The marker is also cleared when the step failed: a failure the restore saw is reported
    as ``failed``; only a boot that died mid-load leaves the marker behind.
    """

    def __init__(self, *args: Any, marker: str, builds: Dict[str, Optional[str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.marker = marker
        self.builds = builds

    def load(self, step: Any, image: Any) -> List[str]:
        write_marker(self.marker, patch=step.patch, build_id=self.builds.get(step.patch), started=_now())
        log(INFO, '%s: loading build %s from %s' % (step.patch, self.builds.get(step.patch), image.path))
        start = self.clock.monotonic()
        try:
            messages = super().load(step, image)
        except Exception:
            clear_marker(self.marker)  # a failure seen and reported; not a crash
            raise
        clear_marker(self.marker)
        log(INFO, '%s: live (%.0f ms)' % (step.patch, (self.clock.monotonic() - start) * 1000.0))
        return messages


class Restore:
    """One boot-time restore of release ``release`` from ``directory``."""

    def __init__(self, *, root: str, directory: str, release: str, timeout: float, kernel: Any,
                 trust: FileTrust) -> None:
        self.root = root
        self.release_dir = os.path.join(directory, release)
        self.release = release
        self.timeout = timeout
        self.kernel = kernel
        self.trust = trust
        self.record_path = os.path.join(self.release_dir, 'stack.json')
        self.marker_path = os.path.join(self.release_dir, MARKER_NAME)
        self.report_path = os.path.join(self.release_dir, REPORT_NAME)
        self.journal = Journal(_under(root, JOURNAL_DIR))
        self.loaded: List[str] = []

    # -- the crash-loop guard ----------------------------------------------------------------
    def crashed(self) -> Optional[Dict[str, Any]]:
        """The patch an earlier boot did not finish loading (marker, or a report not cleared yet)."""
        marker = read_marker(self.marker_path)
        if marker is not None:
            return {'patch': marker.get('patch'), 'time': marker.get('started') or '',
                    'why': 'marker %s left by a boot that did not finish loading it%s'
                           % (self.marker_path, ': %s' % marker['damaged'] if marker.get('damaged') else '')}
        # The marker of a crash is overwritten by the loads of the patches below it; the report
        # keeps the guard until the operator clears it.
        report = read_report(self.report_path)
        if report is not None and report.get('status') == 'skipped_after_crash':
            return {'patch': report.get('patch'), 'time': report.get('time') or '',
                    'why': 'reported in %s by an earlier boot and not cleared yet' % self.report_path}
        return None

    def run(self) -> Outcome:
        record = read_record(self.record_path)  # LivepatchError('bad_record') for another shape
        if record is None:
            return Outcome('nothing_recorded', 'no stack recorded for kernel %s (%s): nothing to do'
                           % (self.release, self.record_path))
        if record.kernel_release != self.release:
            raise LivepatchError('release_mismatch', '%s records kernel %s, not the running %s; nothing loaded'
                                 % (self.record_path, record.kernel_release, self.release))
        entries = list(record.stack)
        crash = self.crashed()
        skipped: Optional[Outcome] = None
        if crash is not None:
            names = [entry.name for entry in entries]
            cut = names.index(crash['patch']) if crash['patch'] in names else 0
            above = names[cut:]
            skipped = Outcome('skipped_after_crash', 'the restore of %s started at %s did not finish (%s); '
                              'not loading %s, restoring only %s; clear it with the role variable '
                              'livepatch_stack_restore_crash_seen=true once the cause is understood'
                              % (crash['patch'] or 'an unknown patch', crash['time'] or 'an unknown time', crash['why'], ', '.join(above) or 'nothing',
                                 ', '.join(names[:cut]) or 'nothing'),
                              RESTORE_SKIPPED_AFTER_CRASH, crash['patch'], crash['time'])
            log(ERR, skipped.message)
            # Said before anything is loaded: a crash below keeps this one's patch skipped too.
            self._report(skipped)
            entries = entries[:cut]
        with HostLock(_under(self.root, LOCK_PATH), timeout=self.timeout, clock=self.kernel.clock):
            self._converge(record, entries)
        if skipped is not None:
            skipped.message = '%s; loaded now: %s' % (skipped.message, ', '.join(self.loaded) or 'nothing')
            return skipped
        return Outcome('ok', 'stack restored for kernel %s: %s (loaded now: %s)'
                       % (self.release, ', '.join(entry.name for entry in record.stack) or 'empty',
                          ', '.join(self.loaded) or 'nothing'))

    def _converge(self, record: Any, entries: Sequence[Any]) -> None:
        snapshot = self.kernel.observe()
        if not snapshot.livepatch_supported:
            raise LivepatchError('no_livepatch', 'kernel %s has no /sys/kernel/livepatch (CONFIG_LIVEPATCH); nothing '
                                 'loaded' % self.release)
        wanted = [Wanted(name=entry.name, path=entry.path, build_id=entry.build_id, replace=entry.replace)
                  for entry in entries]
        # At boot the journal is empty (/run is a tmpfs): the record says what is ours. Patches
        # another tool loaded earlier in the boot stay at the bottom (docs/developer.md §10.4).
        ours = ours_from(self.journal.read(), record)
        plan = plan_stack(snapshot, wanted, foreign='keep', ours=ours)
        popping = [step for step in plan.steps if step.action in ('disable', 'unload')]
        if popping:
            raise LivepatchError(RESTORE_WOULD_POP, 'the live stack (%s) is not a bottom part of the record (%s): '
                                 'restoring it would %s; the restore never pops at boot, nothing loaded'
                                 % (', '.join(snapshot.names()) or 'empty', ', '.join(w.name for w in wanted),
                                    ', '.join('%s %s' % (step.action, step.patch) for step in popping)),
                                 [step.patch for step in popping])
        by_name = dict((want.name, want) for want in wanted)
        images = self._open_files([by_name[step.patch] for step in plan.steps if step.action == 'load'],
                                  snapshot.kernel_release or self.release)
        # Unsigned files under module.sig_enforce or lockdown: refused before the first load, as
        # the modules do, not by the kernel halfway up the stack.
        check_signatures(snapshot.module_signatures, list(images.values()))
        for patch in snapshot.live_stack:
            if patch.name in by_name:
                log(INFO, '%s: already live with the recorded build, left alone' % patch.name)
        if not plan.changes:
            return
        replace = dict((want.name, want.replace) for want in wanted)
        journal = self.journal

        def loaded(step: Any, image: Any) -> None:
            journal.record(name=step.patch, path=image.path, build_id=image.info.build_id,
                           replace=replace.get(step.patch, False))
            self.loaded.append(step.patch)
        executor = BootExecutor(self.kernel, snapshot.capabilities, timeout=self.timeout, on_stall='reverse',
                                clock=self.kernel.clock, warn=lambda text: log(WARNING, text), on_loaded=loaded,
                                marker=self.marker_path, builds=dict((w.name, w.build_id) for w in wanted))
        outcome = converge(self.kernel, plan, executor, images=images, original=snapshot.live_stack, rollback=False)
        if outcome.failed:
            error = outcome.error
            raise LivepatchError(error.rule, outcome.message, error.patches)
        final = outcome.snapshot.live_stack
        if [patch.name for patch in final] != list(plan.after) or not all(
                same_build(patch, want)[0] for patch, want in zip(final, plan.wanted)):
            raise LivepatchError('unexpected_result', 'the stack after the restore is %s, not the recorded %s'
                                 % (', '.join(outcome.snapshot.names()) or 'empty', ', '.join(plan.after)))

    def _open_files(self, loads: Sequence[Wanted], release: str) -> Dict[str, Any]:
        """Every file to load, opened, checked and compared with the record before anything is loaded."""
        images = {}
        for want in loads:
            if not want.path:
                raise LivepatchError('no_file', 'the record names no file for %s, so it cannot be loaded; nothing '
                                     'loaded' % want.name, [want.name])
            try:
                image = open_module(want.path, self.trust)
            except LivepatchError as exc:
                raise LivepatchError(exc.rule, '%s; nothing loaded' % exc.message, [want.name], exc.detail)
            check_image(image, want.name, release)
            if want.build_id and image.info.build_id != want.build_id:
                raise LivepatchError(BUILD_CHANGED, '%s holds build %s of %s, but the record says %s: the file was '
                                     'replaced since the stack was recorded; nothing loaded'
                                     % (want.path, image.info.build_id, want.name, want.build_id), [want.name])
            images[want.name] = image
        return images

    def _report(self, outcome: Outcome) -> None:
        try:
            write_report(self.report_path, status=outcome.status, patch=outcome.patch, time_text=outcome.time_text,
                         rule=outcome.rule, message=outcome.message, loaded=self.loaded)
        except OSError as exc:
            log(ERR, 'cannot write the restore report %s: %s' % (self.report_path, exc))


def _release(root: str) -> str:
    """What ``uname -r`` prints for the kernel under ``root``."""
    release = _read_first_line(os.path.join(root, 'proc', 'sys', 'kernel', 'osrelease'))
    return release or os.uname()[2]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='livepatch_restore.py',
                                     description='Load the livepatch stack recorded for the running kernel again.')
    parser.add_argument('--root', default='/', help='where /sys, /proc and /run are (tests: a kernel model)')
    parser.add_argument('--dir', default=DEFAULT_DIR, help="the role's livepatch_stack_dir")
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds each transition may take')
    parser.add_argument('--release', default=None, help='kernel release (default: the running one)')
    return parser.parse_args(list(argv))


def main(argv: Sequence[str], kernel: Any = None, trust: Optional[FileTrust] = None) -> int:
    """Restore; 0 when the recorded stack is live (or nothing was to be done), 1 otherwise.

    ``kernel`` and ``trust`` are for tests (a kernel model, files under a private /tmp dir).
    """
    args = parse_args(argv)
    release = args.release or _release(args.root)
    restore = Restore(root=args.root, directory=args.dir, release=release, timeout=args.timeout,
                      kernel=kernel or Kernel(root=args.root), trust=trust or FileTrust())
    try:
        if SKIP_SWITCH in _read_first_line(os.path.join(args.root, 'proc', 'cmdline')).split():
            outcome = Outcome('skipped_by_switch', '%s on the kernel command line: no livepatch restored' % SKIP_SWITCH)
        else:
            outcome = restore.run()
    except LivepatchError as exc:
        outcome = Outcome('failed', exc.message, exc.rule, (exc.patches or (None,))[0])
    except Exception as exc:  # pylint: disable=broad-except
        # A bug still ends in a report and a log line, never in a silent unit failure.
        outcome = Outcome('failed', 'internal error (%s: %s); please report it: %s'
                          % (type(exc).__name__, exc, traceback.format_exc().strip().splitlines()[-3:]),
                          'internal_error')
    level = {'ok': INFO, 'nothing_recorded': INFO, 'skipped_by_switch': NOTICE}.get(outcome.status, ERR)
    log(level, '%s%s' % (outcome.message, ' (rule %s)' % outcome.rule if outcome.rule else ''))
    if os.path.isdir(restore.release_dir):
        restore._report(outcome)  # pylint: disable=protected-access
    return 0 if level != ERR else 1
