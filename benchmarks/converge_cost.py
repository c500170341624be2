# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark (not a test): what a converge costs next to the thinnest possible tool and to kpatch.

Per lab kernel, in ONE boot, the same work is done by four tools:

``floor``   a Python process already running in the guest (``converge_guest.py floor``): insmod,
            poll ``transition`` every 2 ms, write 0 to ``enabled``, poll, rmmod; its start is not timed
``kpatch``  Debian's kpatch CLI (``kpatch load`` / ``kpatch unload``), timed in the guest
``ansible`` ``livepatch_stack`` as Ansible runs it: the ``ansible`` ad-hoc command over ssh, timed on the host
``bare``    the module process alone, timed in the guest: the payload of the AnsiballZ file Ansible
            sent (kept in the guest), run by ``converge_guest.py timed`` as the wrapper runs it, with
            other arguments, and the time split measured in the same run

Work: ``push3`` (a, b, c from empty), ``pop2`` (back to [a]: pop c, b), ``pop3push3`` (from
a b c d to a e c d: pop d, c, b; push e, c, d, the change of ``pop_push.py``). The state before
each piece of work is made by the same tool, untimed.

The module's time split (``converge_guest.py timed``): imports, file checks, observe, lock, steps,
the rest; Python's own start = guest wall minus the in-process time. Also, in the same boot: a
module start (the kept AnsiballZ file itself with arguments the argument spec refuses: Python +
payload + imports + spec), a bare
``import ansible.module_utils.basic`` from the same payload zip, a no-op converge, and
``-X importtime`` / cProfile of a module start and of a no-op converge. The kernel's own transition
times come from the dmesg timestamps (``starting … transition`` → ``… complete``).

kpatch is not in bookworm (the guest's userspace): the .deb comes from sid (0.9.11), together with
bookworm's binutils (kpatch calls ``readelf``), fetched with the lab's private apt state per suite
and installed into the running guest with dpkg; the guest image is not changed.

Usage: ``.venv/bin/python benchmarks/converge_cost.py [bookworm trixie sid] [--json FILE]``;
``--table FILE...`` prints the README's tables from saved ``--json`` files.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(ROOT, 'lab'), os.path.join(ROOT, 'tests', 'integration'), HERE]

import klab  # noqa: E402  pylint: disable=wrong-import-position
from klab.kernels import AptState  # noqa: E402  pylint: disable=wrong-import-position
from drive import reset, run_module, sh  # noqa: E402  pylint: disable=wrong-import-position
from pop_push import transitions  # noqa: E402  pylint: disable=wrong-import-position

GUEST = '/opt/bench'
DEBS = Path(os.path.expanduser('~/.cache/kernelops-livepatch-bench/debs'))
KPATCH_SUITE = 'sid'
BINUTILS = ('binutils', 'binutils-common', 'binutils-x86-64-linux-gnu', 'libbinutils', 'libctf-nobfd0', 'libctf0',
            'libgprofng0', 'libjansson4')
TOOLS = ('floor', 'kpatch', 'ansible', 'bare')
# (name, from, to): stacks bottom first
WORK = (('push3', [], ['lab_a', 'lab_b', 'lab_c']),
        ('pop2', ['lab_a', 'lab_b', 'lab_c'], ['lab_a']),
        ('pop3push3', ['lab_a', 'lab_b', 'lab_c', 'lab_d'], ['lab_a', 'lab_e', 'lab_c', 'lab_d']))


def fetch_debs():
    """kpatch (sid) and binutils (bookworm, for readelf) as .deb files, cached."""
    DEBS.mkdir(parents=True, exist_ok=True)
    want = {KPATCH_SUITE: ['kpatch'], 'bookworm': list(BINUTILS)}
    for suite, packages in want.items():
        missing = [p for p in packages if not list(DEBS.glob('%s_*.deb' % p))]
        if missing:
            apt = AptState(suite)
            if not any((apt.dir / 'lists').glob('*Packages*')):
                apt.update()
            apt.download(missing, DEBS)
    return sorted(DEBS.glob('*.deb'))


def guest_time(vm, command, timeout=600):
    """Run ``command`` in the guest; (seconds measured in the guest, stdout)."""
    script = 's=$(date +%%s.%%N); %s; rc=$?; e=$(date +%%s.%%N); echo "@@BENCH $s $e $rc"' % command
    out = sh(vm, script, timeout=timeout)
    body, _sep, tail = out.rpartition('@@BENCH ')
    start, end, rc = tail.split()
    if rc != '0':
        raise AssertionError('guest command failed (rc %s): %s\n%s' % (rc, command, body[-3000:]))
    return float(end) - float(start), body


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        if line.startswith('{'):
            return json.loads(line)
    raise AssertionError('no JSON in %r' % text[-2000:])


def uptime(vm):
    return float(sh(vm, "cut -d' ' -f1 /proc/uptime"))


def log(text):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), text))
    sys.stderr.flush()


def ops(before, after):
    """The floor's and kpatch's operations for one change: pop to the common bottom, push the rest."""
    keep = 0
    while keep < min(len(before), len(after)) and before[keep] == after[keep]:
        keep += 1
    return [('-', name) for name in reversed(before[keep:])] + [('+', name) for name in after[keep:]]


class Bench(object):
    def __init__(self, vm):
        self.vm = vm
        self.wrapper = GUEST + '/AnsiballZ_livepatch_stack.py'

    # -- setup ------------------------------------------------------------------------------
    def setup(self, debs):
        vm = self.vm
        sh(vm, 'mkdir -p %s/debs' % GUEST)
        with open(os.path.join(HERE, 'converge_guest.py'), 'rb') as handle:
            vm.ssh('cat > %s/g.py' % GUEST, input_data=handle.read())
        for deb in debs:
            with open(str(deb), 'rb') as handle:
                vm.ssh('cat > %s/debs/%s' % (GUEST, deb.name), input_data=handle.read())
        log('%s: installing kpatch and binutils in the guest' % vm.kernel)
        sh(vm, 'dpkg -i %s/debs/*.deb >/dev/null && command -v kpatch readelf >/dev/null' % GUEST, timeout=600)
        # One real Ansible run with the AnsiballZ file kept in the guest (no pipelining), a no-op.
        sh(vm, 'rm -rf /root/.ansible/tmp')
        result, _wall = run_module(vm, 'livepatch_stack', {'stack': []},
                                   env={'ANSIBLE_KEEP_REMOTE_FILES': '1', 'ANSIBLE_PIPELINING': 'False'})
        assert not result.get('failed'), result
        sh(vm, 'cp "$(ls -1 /root/.ansible/tmp/*/AnsiballZ_livepatch_stack.py | head -n1)" %s && '
               'python3 %s/g.py payload %s %s/payload.zip' % (self.wrapper, GUEST, self.wrapper, GUEST))
        self.kpatch_version = sh(vm, "dpkg-query -W -f '${Version}' kpatch")

    # -- the tools ------------------------------------------------------------------------
    def paths(self, names):
        return [{'path': '%s/%s.ko' % (self.vm.patch_dir, name)} for name in names]

    def floor(self, before, after):
        argv = ['%s%s' % (sign, '%s/%s.ko' % (self.vm.patch_dir, name) if sign == '+' else name)
                for sign, name in ops(before, after)]
        out = sh(self.vm, 'python3 %s/g.py floor %s' % (GUEST, ' '.join(argv)), timeout=600)
        return last_json(out)['wall_s'], None

    def kpatch(self, before, after):
        commands = ['kpatch load %s/%s.ko >/dev/null' % (self.vm.patch_dir, name) if sign == '+'
                    else 'kpatch unload %s >/dev/null' % name for sign, name in ops(before, after)]
        seconds, _out = guest_time(self.vm, ' && '.join(commands))
        return seconds, None

    def ansible(self, _before, after):
        result, wall = run_module(self.vm, 'livepatch_stack', {'stack': self.paths(after)})
        assert not result.get('failed'), result
        return wall, result

    def bare_wrapper(self, args, name='run.py'):
        target = '%s/%s' % (GUEST, name)
        sh(self.vm, 'python3 %s/g.py wrapper %s %s %s' % (GUEST, self.wrapper, target, shlex.quote(json.dumps(args))))
        return target

    def bare(self, _before, after):
        target = self.bare_wrapper({'stack': self.paths(after)})
        seconds, out = guest_time(self.vm, 'KLP_BENCH_ZIP=%s/payload.zip KLP_BENCH_SPLIT=%s/split.json python3 %s/g.py timed %s'
                                  % (GUEST, GUEST, GUEST, target))
        result = last_json(out)
        assert not result.get('failed'), result
        split = json.loads(sh(self.vm, 'cat %s/split.json' % GUEST))
        split['python start'] = round(seconds - split.pop('total_in_process'), 4)
        split['wall'] = round(seconds, 4)
        split['steps (module says)'] = round(sum(s['duration_ms'] for s in result.get('steps', [])) / 1000.0, 4)
        return seconds, split

    def prepare(self, tool, stack, current=None):
        """Bring the guest to ``stack`` with the same tool (untimed), from ``current`` (None: reset first)."""
        if current is None:
            reset(self.vm)
            current = []
        if stack != current:
            getattr(self, 'bare' if tool == 'ansible' else tool)(current, stack)

    # -- measurements -------------------------------------------------------------------
    def work(self, tool):
        rows = {}
        current = None
        for name, before, after in WORK:
            if current != before:
                self.prepare(tool, before, current)
            mark = uptime(self.vm)
            seconds, extra = getattr(self, tool)(before, after)
            done = transitions(sh(self.vm, 'dmesg'), mark)
            row = {'wall_s': round(seconds, 3), 'transitions': len(done),
                   'kernel_s': round(sum(end - start for _n, _d, start, end in done), 3)}
            if tool == 'bare':
                row['split'] = extra
                row['steps_s'] = extra['steps (module says)']
            elif extra and extra.get('steps') is not None:
                row['steps_s'] = round(sum(s['duration_ms'] for s in extra['steps']) / 1000.0, 3)
            rows[name] = row
            log('%s %s: %s' % (tool, name, json.dumps(row)))
            current = after
        reset(self.vm)
        return rows

    def starts(self):
        """Module start, import of basic, no-op converge (once each: TCG on a shared host), the profiles."""
        vm = self.vm
        out = {}
        refused = self.bare_wrapper({'no_such_option': 1}, 'refused.py')
        zip_path = GUEST + '/payload.zip'
        basic = "python3 -c 'import sys; sys.path.insert(0, \"%s\"); import ansible.module_utils.basic'" % zip_path
        out['python3 -c pass'] = guest_time(vm, "python3 -c pass")[0]
        out['import ansible.module_utils.basic (payload zip)'] = guest_time(vm, basic)[0]
        out['module start (arguments refused)'] = guest_time(vm, 'python3 %s >/dev/null || true' % refused)[0]
        self.prepare('bare', ['lab_a', 'lab_b', 'lab_c'])
        noop = self.bare_wrapper({'stack': self.paths(['lab_a', 'lab_b', 'lab_c'])}, 'noop.py')
        out['no-op converge (3 live, 3 wanted)'] = guest_time(vm, 'python3 %s >/dev/null' % noop)[0]
        _s, split_out = guest_time(vm, 'KLP_BENCH_ZIP=%s KLP_BENCH_SPLIT=%s/split.json python3 %s/g.py timed %s >/dev/null'
                                   % (zip_path, GUEST, GUEST, noop))
        out['no-op split'] = json.loads(sh(vm, 'cat %s/split.json' % GUEST))
        profiles = {}
        for label, target in (('start', refused), ('noop', noop)):
            _s, text = guest_time(vm, '(python3 -X importtime %s 2>&1 >/dev/null || true)' % target)
            profiles['importtime ' + label] = importtime_summary(text)
            if label == 'start':
                continue
            # The module runs in the process of ``g.py timed`` (the wrapper file itself would leave
            # the profile with nothing but the wrapper), from the same payload zip.
            guest_time(vm, '(KLP_BENCH_ZIP=%s KLP_BENCH_SPLIT=%s/split.json python3 -m cProfile -o %s/%s.prof '
                           '%s/g.py timed %s >/dev/null || true)' % (zip_path, GUEST, GUEST, label, GUEST, target))
            profiles['cprofile ' + label] = sh(vm, "python3 -c 'import pstats, sys; pstats.Stats(sys.argv[1]).sort_stats(\"tottime\").print_stats(45)' "
                                               '%s/%s.prof' % (GUEST, label))
        reset(vm)
        return out, profiles


IMPORT_LINE = re.compile(r'^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)')


def importtime_summary(text):
    """Top-level imports by cumulative time, and the totals per family (ours, ansible, stdlib)."""
    top = []
    families = {'kernelops module_utils (self)': 0, 'ansible (self)': 0, 'other (self)': 0}
    for line in text.splitlines():
        match = IMPORT_LINE.match(line)
        if not match:
            continue
        self_us, cumulative_us, indent, name = int(match.group(1)), int(match.group(2)), len(match.group(3)), match.group(4)
        if indent <= 1:
            top.append((cumulative_us, name))
        if name.startswith('ansible_collections.kernelops'):
            families['kernelops module_utils (self)'] += self_us
        elif name.startswith('ansible'):
            families['ansible (self)'] += self_us
        else:
            families['other (self)'] += self_us
    top.sort(reverse=True)
    return {'top_ms': [(name, round(us / 1000.0, 1)) for us, name in top[:15]],
            'self_ms': dict((k, round(v / 1000.0, 1)) for k, v in families.items())}


def bench(lab, kernel, debs, save):
    """Everything for one kernel in one boot; ``save(result)`` after each part (a slow host may stop us)."""
    with lab.boot(kernel) as vm:
        bench_ = Bench(vm)
        bench_.setup(debs)
        result = {'kernel': kernel, 'release': vm.release, 'kpatch_version': bench_.kpatch_version,
                  'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), 'host_load': [loadavg()]}
        for tool in TOOLS:
            result[tool] = bench_.work(tool)
            result['host_load'].append(loadavg())
            save(result)
        result['starts'], result['profiles'] = bench_.starts()
        result['host_load'].append(loadavg())
        save(result)
        return result


def loadavg():
    with open('/proc/loadavg') as handle:
        return float(handle.read().split()[0])


def report(row):
    lines = ['## %(kernel)s %(release)s  (%(date)s; kpatch %(kpatch_version)s; host load average %(host_load)s)' % row]
    for name, _before, _after in WORK:
        floor = row['floor'][name]['wall_s']
        cells = []
        for tool in TOOLS:
            cell = row[tool][name]
            text = '%s %.2f s (%.2fx)' % (tool, cell['wall_s'], cell['wall_s'] / floor)
            if 'steps_s' in cell:
                text += ' steps %.2f s (%.2fx)' % (cell['steps_s'], cell['steps_s'] / floor)
            cells.append(text)
        kernel = row['floor'][name]
        lines.append('  %-10s kernel %.2f s in %d transitions (floor run) | %s' % (
            name, kernel['kernel_s'], kernel['transitions'], ' | '.join(cells)))
        split = row['bare'][name]['split']
        lines.append('  %-10s split: %s' % ('', ', '.join(
            '%s %.2f' % (k, v) for k, v in split.items() if isinstance(v, float))))
    for key, value in row['starts'].items():
        if isinstance(value, float):
            lines.append('  %s: %.2f s' % (key, value))
        else:
            lines.append('  %s: %s' % (key, json.dumps(value)))
    return '\n'.join(lines)


SPLIT_ROWS = (('python start', "… Python's own start"), ('imports', '… imports (payload zip)'),
              ('file checks', '… file checks'), ('observe', '… observe'), ('lock', '… lock'),
              ('steps', '… steps (load, disable, unload)'), ('rest', '… the rest (planning, journal, record, result)'))


def markdown(row):
    """The README's table for one kernel's saved result (``--table FILE...``)."""
    floor = dict((name, row['floor'][name]['wall_s']) for name, _b, _a in WORK)

    def cells(values, ratio=True):
        return ' | '.join('%.2f s%s' % (value, ' (%.2f×)' % (value / floor[name]) if ratio else '')
                          for (name, _b, _a), value in zip(WORK, values))
    names = [name for name, _b, _a in WORK]
    head = '| %s %s, wall (× floor) | %s |' % (row['kernel'], row['release'], ' | '.join(names))
    lines = [head, '|---|' + '---|' * len(names)]
    lines.append('| kernel: sum of the transitions (dmesg) | %s |' % ' | '.join(
        '%.2f s (%d)' % (row['floor'][n]['kernel_s'], row['floor'][n]['transitions']) for n in names))
    for tool, label in (('floor', 'floor'), ('kpatch', 'kpatch %s' % row['kpatch_version']),
                        ('ansible', '`livepatch_stack`, `ansible` command'),
                        ('bare', '`livepatch_stack`, bare module process')):
        lines.append('| %s | %s |' % (label, cells([row[tool][n]['wall_s'] for n in names])))
    for key, label in SPLIT_ROWS:
        splits = [row['bare'][n]['split'] for n in names]
        counts = [s.get('counts', {}).get(key) for s in splits]
        lines.append('| %s | %s |' % (label, ' | '.join(
            '%.2f s%s' % (s.get(key, 0.0), ' (%d)' % c if c else '') for s, c in zip(splits, counts))))
    without = [row['bare'][n]['wall_s'] - row['bare'][n]['split']['python start'] - row['bare'][n]['split']['imports']
               for n in names]
    lines.append('| … without start and imports | %s |' % cells(without))
    starts = row.get('starts', {})
    lines.append('')
    lines.append('| %s %s, same boot | wall |' % (row['kernel'], row['release']))
    lines.append('|---|---|')
    basic = starts.get('import ansible.module_utils.basic (payload zip)')
    start = starts.get('module start (arguments refused)')
    for key, value in starts.items():
        if not isinstance(value, float):
            continue
        note = ''
        if key.startswith('module start') and basic:
            note = ' (%.2f× the import of basic)' % (value / basic)
        elif key.startswith('no-op') and start:
            note = ' (%.2f× a module start)' % (value / start)
        lines.append('| %s | %.2f s%s |' % (key, value, note))
    lines.append('')
    lines.append('host load average during the run: %s' % ', '.join('%.1f' % load for load in row['host_load']))
    return '\n'.join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('kernels', nargs='*', default=list(klab.KERNELS))
    parser.add_argument('--json', help='also write everything (with the profiles) to this file')
    parser.add_argument('--table', nargs='+', metavar='JSON', help='print the README tables of saved results and stop')
    args = parser.parse_args()
    if args.table:
        for path in args.table:
            with open(path) as handle:
                for row in json.load(handle):
                    print(markdown(row) + '\n')
        return 0
    debs = fetch_debs()
    lab = klab.Lab().build(args.kernels)
    rows = []

    def save(result):
        if args.json:
            with open(args.json, 'w') as handle:
                json.dump(rows + [result], handle, indent=1)
    for kernel in args.kernels:
        rows.append(bench(lab, kernel, debs, save))
        print(report(rows[-1]), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
