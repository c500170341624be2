# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark (not a test): how long the patches kept across a change of a middle patch are not live.

Issue 13. For each lab kernel, three changes of the middle patch of a four-patch stack of
``lab_rel_*`` patches (lab/patches/README.md, "Relations"), each one ``livepatch_stack`` call:

* ``off``: ``free1 same1 free2 shadow1`` -> ``free1 callee free2 shadow1``, option
  ``skip_unrelated`` off: the stack pops shadow1, free2, same1 and pushes callee, free2, shadow1;
  a check-mode run first shows the ``relations`` of the patches it would pop and push again;
* ``on-unrelated``: the same change with the option on; free2 and shadow1 have no relation to
  same1 or callee, so only same1 goes and callee is loaded on top: free2 and shadow1 must never
  be off (0 ms);
* ``on-related``: ``free1 callee free2 caller`` -> ``free1 same1 free2 caller`` with the option
  on; caller calls the function callee replaces (``calls_patched``), so the option must not
  skip: free2 and caller are popped and pushed again, and the notes must name the relation.

How "not live" is measured: a Python process in the guest, started before the call and stopped
after it, polls ``/sys/kernel/livepatch/<patch>/enabled`` and ``transition`` of every patch that is
in both the old and the new stack, in a loop with a 1 ms sleep, and notes each change of state with
``CLOCK_MONOTONIC``. On the guest's one TCG vCPU, beside the module's Python, the loop runs every
few tens of milliseconds (a real-time poller starved the guest), so a window shorter than that
could go unseen: the kernel's log, below, is the second witness. A patch is live while its directory exists, ``enabled`` reads 1 and
``transition`` reads 0 (every task runs its code); anything else counts as not live, from the
first sample that saw it to the first that saw it live again (so each window is exact to one
loop period, printed as ``period``: the mean and the longest gap between two samples). The module's steps carry durations, not timestamps, so they
are not used. As a cross-check the kernel's own log gives, per patch, the time from its
``unpatching complete`` to its next ``patching complete`` (``dmesg``; a shorter window: it leaves
out both transitions).

Usage: ``.venv/bin/python benchmarks/exposure.py [bookworm trixie sid] [--json FILE]``; one kernel
per run on the shared lab (``/tmp/coord/vm-slot``). Exit status 1 when an expectation above fails.
"""

from __future__ import annotations

import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'lab'), os.path.join(ROOT, 'tests', 'integration'), os.path.join(ROOT, 'benchmarks')]

from drive import live_patches, loop_until, reset, run_module, sh  # noqa: E402  pylint: disable=wrong-import-position
from pop_push import not_live_windows, on_kernels, transitions  # noqa: E402  pylint: disable=wrong-import-position

POLLER = r'''
import json, os, sys, time
stop, out, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def state(name):
    base = '/sys/kernel/livepatch/' + name
    try:
        with open(base + '/enabled') as handle:
            enabled = handle.read().strip()
        if enabled != '1':
            return 'disabled'
        with open(base + '/transition') as handle:
            return 'live' if handle.read().strip() == '0' else 'in transition'
    except OSError:
        return 'absent'
now = lambda: time.clock_gettime(time.CLOCK_MONOTONIC) * 1000.0
# SCHED_OTHER: a SCHED_FIFO poller starved the guest's one TCG vCPU (sshd stopped answering)
sched = 'other'
start = now()
last = dict((name, state(name)) for name in names)
events = [[round(start, 3), name, last[name]] for name in names]
loops, gap, before = 0, 0.0, start
open(out + '.ready', 'w').close()
while not os.path.exists(stop):
    loops += 1
    for name in names:
        seen = state(name)
        if seen != last[name]:
            events.append([round(now(), 3), name, seen])
            last[name] = seen
    time.sleep(0.001)
    gap, before = max(gap, now() - before), now()
end = now()
with open(out + '.tmp', 'w') as handle:
    json.dump({'start': start, 'end': end, 'loops': loops, 'events': events, 'max_gap': gap, 'sched': sched}, handle)
os.rename(out + '.tmp', out)
'''

SCENARIOS = [
    # (id, live stack before, desired stack, skip_unrelated, expected: must the kept patches stay live?)
    ('off', ['free1', 'same1', 'free2', 'shadow1'], ['free1', 'callee', 'free2', 'shadow1'], False),
    ('on-unrelated', ['free1', 'same1', 'free2', 'shadow1'], ['free1', 'callee', 'free2', 'shadow1'], True),
    ('on-related', ['free1', 'callee', 'free2', 'caller'], ['free1', 'same1', 'free2', 'caller'], True),
]


def full(names):
    return ['lab_rel_' + name for name in names]


def stack_args(vm, names, **extra):
    return dict({'stack': [{'path': '%s/%s.ko' % (vm.patch_dir, name)} for name in full(names)]}, **extra)


def not_live(poll, names):
    """Per patch: total ms not live between the poller's start and end, and the windows."""
    result = {}
    for name in names:
        changes = [(stamp, seen) for stamp, patch, seen in poll['events'] if patch == name]
        windows, off_since = [], None
        for stamp, seen in changes:
            if seen != 'live' and off_since is None:
                off_since = stamp
            elif seen == 'live' and off_since is not None:
                windows.append(round(stamp - off_since, 1))
                off_since = None
        if off_since is not None:
            windows.append(round(poll['end'] - off_since, 1))
        result[name] = {'not_live_ms': round(sum(windows), 1), 'windows_ms': windows,
                        'states': [seen for _stamp, seen in changes]}
    return result


def measured_call(vm, args, watched):
    """Run livepatch_stack with ``args`` while the guest polls ``watched``; (result, wall s, poll)."""
    vm.ssh('rm -f /run/exposure.*; cat > /run/exposure_poll.py', input_data=POLLER, timeout=60)
    sh(vm, 'setsid -f python3 /run/exposure_poll.py /run/exposure.stop /run/exposure.json %s '
           '</dev/null >/run/exposure.log 2>&1' % ' '.join(watched))
    loop_until(vm, '[ -e /run/exposure.json.ready ]', 'the poller started')
    try:
        result, wall = run_module(vm, 'livepatch_stack', args)
    finally:
        sh(vm, 'touch /run/exposure.stop')
        loop_until(vm, '[ -e /run/exposure.json ]', 'the poller stopped')
    poll = json.loads(sh(vm, 'cat /run/exposure.json'))
    return result, wall, poll


def scenario(vm, case):
    name, before, after, option = case
    setup, _wall = run_module(vm, 'livepatch_stack', stack_args(vm, before))
    assert not setup.get('failed') and live_patches(vm) == full(before), (setup.get('msg'), live_patches(vm))
    kept = [patch for patch in full(before) if patch in full(after)]
    row = {'scenario': name, 'before': before, 'after': after, 'skip_unrelated': option}
    if not option:
        check, _wall = run_module(vm, 'livepatch_stack', stack_args(vm, after), check=True)
        row['check_relations'] = check.get('relations')
    mark = float(sh(vm, "cut -d' ' -f1 /proc/uptime"))
    result, wall, poll = measured_call(vm, stack_args(vm, after, skip_unrelated=option), kept)
    assert not result.get('failed'), result.get('msg')
    row.update({
        'module_wall_s': round(wall, 3),
        'steps': ['%s %s %.0f ms' % (s['action'], s['patch'], s['duration_ms']) for s in result['steps']],
        'notes': result.get('notes', []),
        'relations': sorted(set((r['lower'], r['upper'], r['kind']) for r in result.get('relations', [])
                                if r['kind'] != 'unknown')),
        'stack_after': live_patches(vm),
        'poll_period_ms': round((poll['end'] - poll['start']) / max(poll['loops'], 1), 2),
        'poll_max_gap_ms': round(poll.get('max_gap', 0.0), 1),
        'poll_sched': poll.get('sched', 'other'),
        'not_live': not_live(poll, kept),
        'kernel_log_not_live_s': dict((patch, round(seconds, 3)) for patch, seconds in not_live_windows(
            transitions(sh(vm, 'dmesg'), mark), kept).items()),
    })
    row['problems'] = expectations(row, kept)
    return row


def expectations(row, kept):
    """What the issue asks of each scenario; an empty list when all hold."""
    problems = []
    bottom, above = kept[0], kept[1:]  # free1 stands below the change in every scenario
    off = dict((patch, row['not_live'][patch]['not_live_ms']) for patch in kept)
    if off[bottom]:
        problems.append('%s, below the change, was not live for %s ms' % (bottom, off[bottom]))
    if row['scenario'] == 'on-unrelated':
        if any(off[patch] for patch in above):
            problems.append('skip_unrelated with unrelated patches above: expected 0 ms, got %s' % off)
        if not any(note.startswith('rule skip_unrelated:') for note in row['notes']):
            problems.append('no note names rule skip_unrelated: %s' % row['notes'])
        # the new patch is loaded on top: the kernel's order (docs/developer.md §11)
        expected = full(['free1', 'free2', 'shadow1', 'callee'])
    else:
        if not all(off[patch] > 0 for patch in above):
            problems.append('pop/push: expected every patch above the change not live for a while, got %s' % off)
        expected = full(row['after'])
    if row['scenario'] == 'on-related' and not any('calls_patched with lab_rel_callee' in note
                                                   for note in row['notes']):
        problems.append('the notes do not name the relation: %s' % row['notes'])
    if row['stack_after'] != expected:
        problems.append('stack after %s, expected %s' % (row['stack_after'], expected))
    return problems


def bench(lab, kernel):
    with lab.boot(kernel) as vm:
        reset(vm)
        sh(vm, 'grep -q "^lab_rel_lib " /proc/modules || insmod %s/lab_rel_lib.ko' % vm.patch_dir)
        rows = []
        for case in SCENARIOS:
            started = time.monotonic()
            row = scenario(vm, case)
            row.update({'kernel': kernel, 'release': vm.release, 'scenario_s': round(time.monotonic() - started, 1)})
            rows.append(row)
        reset(vm)
        sh(vm, 'grep -q "^lab_rel_lib " /proc/modules && rmmod lab_rel_lib || true')
        return rows


def main():
    json_file, per_kernel = on_kernels(__doc__, bench)
    rows = [row for kernel_rows in per_kernel for row in kernel_rows]
    for row in rows:
        print('%s %s %s: module %.2f s wall; poll period %.2f ms (max %.1f, %s); not live (ms): %s; kernel log (s): %s'
              % (row['kernel'], row['release'], row['scenario'], row['module_wall_s'], row['poll_period_ms'],
                 row['poll_max_gap_ms'], row['poll_sched'],
                 ', '.join('%s %s' % (patch, value['not_live_ms']) for patch, value in row['not_live'].items()),
                 row['kernel_log_not_live_s']))
        print('    steps: ' + '; '.join(row['steps']))
        for note in row['notes']:
            print('    note: ' + note)
        if 'check_relations' in row:
            print('    check mode relations (option off): %s' % row['check_relations'])
        for problem in row['problems']:
            print('    UNEXPECTED: ' + problem)
    if json_file:
        with open(json_file, 'w') as handle:
            json.dump(rows, handle, indent=1)
    return 1 if any(row['problems'] for row in rows) else 0


if __name__ == '__main__':
    sys.exit(main())
