# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark (not a test): a pop-3/push-3 change on real lab kernels.

For each kernel: push ``lab_a lab_b lab_c lab_d``, then converge to ``lab_a lab_e lab_c lab_d``
with one ``livepatch_stack`` call, which pops d, c, b and pushes e, c, d. Reports

* the module's wall time (the ``ansible`` command) and the sum of its step durations;
* the kernel's own time for the same six transitions, from the dmesg timestamps of
  ``starting … transition`` and ``… complete``;
* for lab_c and lab_d, which are in the old and the new stack, how long each was not live:
  from its ``unpatching complete`` to its next ``patching complete``.

Usage: ``.venv/bin/python benchmarks/pop_push.py [bookworm trixie sid] [--json FILE]``
(needs ``ansible`` from the venv; the lab builds what is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'lab'), os.path.join(ROOT, 'tests', 'integration')]

import klab  # noqa: E402  pylint: disable=wrong-import-position
from drive import patch, reset, run_module, sh  # noqa: E402  pylint: disable=wrong-import-position

DMESG = re.compile(r"^\[\s*(\d+\.\d+)\] livepatch: '([^']+)': (starting (patching|unpatching) transition|"
                   r"(patching|unpatching) complete)")


def transitions(dmesg_text, after):
    """(patch, direction, start, end) for every transition logged after timestamp ``after``."""
    started = {}
    done = []
    for line in dmesg_text.splitlines():
        match = DMESG.match(line)
        if not match or float(match.group(1)) <= after:
            continue
        stamp, name = float(match.group(1)), match.group(2)
        if match.group(4):
            started[name] = (match.group(4), stamp)
        elif name in started:
            direction, start = started.pop(name)
            done.append((name, direction, start, stamp))
    return done


def not_live_windows(done, names):
    windows = {}
    for name in names:
        off = [end for patch, direction, _start, end in done if patch == name and direction == 'unpatching']
        on = [end for patch, direction, _start, end in done if patch == name and direction == 'patching']
        if off and on and on[-1] > off[0]:
            windows[name] = on[-1] - off[0]
    return windows


def bench(lab, kernel):
    with lab.boot(kernel) as vm:
        reset(vm)
        old = ['lab_a', 'lab_b', 'lab_c', 'lab_d']
        new = ['lab_a', 'lab_e', 'lab_c', 'lab_d']
        run_module(vm, 'livepatch_stack', {'stack': [patch(vm, name) for name in old]})
        mark = float(sh(vm, "cut -d' ' -f1 /proc/uptime"))
        result, wall = run_module(vm, 'livepatch_stack', {'stack': [patch(vm, name) for name in new]})
        assert not result.get('failed'), result.get('msg')
        done = transitions(sh(vm, 'dmesg'), mark)
        kernel_time = sum(end - start for _name, _direction, start, end in done)
        first_start = min(start for _name, _direction, start, _end in done)
        last_end = max(end for _name, _direction, _start, end in done)
        steps_ms = sum(step['duration_ms'] for step in result['steps'])
        return {
            'kernel': kernel,
            'release': vm.release,
            'steps': ['%s %s %.1f ms' % (s['action'], s['patch'], s['duration_ms']) for s in result['steps']],
            'module_wall_s': round(wall, 3),
            'module_steps_s': round(steps_ms / 1000.0, 3),
            'kernel_transitions': len(done),
            'kernel_transition_sum_s': round(kernel_time, 3),
            'kernel_first_start_to_last_complete_s': round(last_end - first_start, 3),
            'not_live_s': dict((name, round(seconds, 3)) for name, seconds in not_live_windows(done, ['lab_c', 'lab_d']).items()),
        }


def on_kernels(doc, bench_one):
    """Command line ``[KERNEL...] [--json FILE]``: build the lab, ``bench_one(lab, kernel)`` per
    kernel; returns (the JSON file or None, the results). Also used by exposure.py."""
    parser = argparse.ArgumentParser(description=doc.split('\n', 1)[0])
    parser.add_argument('kernels', nargs='*', default=list(klab.KERNELS))
    parser.add_argument('--json', help='also write the figures to this file')
    args = parser.parse_args()
    lab = klab.Lab().build(args.kernels)
    return args.json, [bench_one(lab, kernel) for kernel in args.kernels]


def main():
    json_file, rows = on_kernels(__doc__, bench)
    for row in rows:
        print('%(kernel)s %(release)s: module %(module_wall_s).2f s wall, steps %(module_steps_s).2f s; kernel: '
              '%(kernel_transitions)d transitions, %(kernel_transition_sum_s).2f s in transition, '
              '%(kernel_first_start_to_last_complete_s).2f s first start to last complete; not live: %(not_live_s)s' % row)
        print('    ' + '; '.join(row['steps']))
    if json_file:
        with open(json_file, 'w') as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
