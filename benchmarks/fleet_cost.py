# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Benchmark (not a test): what a no-op fleet converge costs next to ``ansible -m ping``.

One lab VM (one kernel), and an inventory of ``--hosts`` names (default 50: fleet-00 … fleet-49)
that all point at it (same address and port, so they share one ssh ControlMaster, as the lab
always does). The stack is made right first (one converge of fleet-00 with lab_a and lab_b, boot
restore installed); then, in the same run and with the same inventory and ``--forks``:

``ping``      ``ansible all -m ansible.builtin.ping``
``converge``  ``ansible-playbook kernelops.livepatch.converge`` (the collection playbook, the
              checkout's collection), every host's stack already right: the report must say
              ``unchanged`` for every host, else the benchmark fails
``ping``      again, to see how much the machine's load moved meanwhile

Counted per host, three ways:

* remote executions: every ``ssh`` command Ansible starts, through an ``ssh_executable`` wrapper
  that logs it with the host (each inventory name carries ``-o HostKeyAlias=NAME``). Pipelining is
  on (``ANSIBLE_PIPELINING=True``, as in tests/fleet), so one module run is one ssh command;
* module runs by task: a callback (``fleet_count``, written next to the wrapper) lists the tasks
  that ran a module on each host, and those delegated to the controller (localhost), which cost no
  ssh but a local Python process each;
* CPU seconds: the guest's busy time over the run (``/proc/stat``), and the controller's (the
  ansible processes' user + system time), each divided by the number of hosts.

The guest is one TCG vCPU: the remote side of every host runs on it one after another, whatever
the forks; the ratio is the honest part, the absolute times are the lab's, not a fleet's.

Usage: ``.venv/bin/python benchmarks/fleet_cost.py [--kernel bookworm] [--hosts 50 ...] [--forks 10 ...]
[--json FILE]`` (under /tmp/coord/vm-slot on a shared machine).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, 'lab'), os.path.join(ROOT, 'tests')]

import klab  # noqa: E402  pylint: disable=wrong-import-position

PATCHES = ('lab_a', 'lab_b')


def tool(name: str) -> str:
    """NAME from this Python's environment (the venv's ansible), else from PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), name)
    return beside if os.access(beside, os.X_OK) else name


SSH_WRAPPER = r'''#!/bin/sh
# Logs each ssh command Ansible starts (host = the HostKeyAlias option), then runs ssh.
host=unknown
for arg in "$@"; do
    case $arg in HostKeyAlias=*) host=${arg#HostKeyAlias=} ;; esac
    last=$arg
done
printf '%s\t%s\n' "$host" "$(printf '%s' "$last" | tr '\t\n' '  ' | cut -c1-200)" >>"$FLEET_COST_SSH_LOG"
exec ssh "$@"
'''

CALLBACK = '''
from __future__ import annotations

import collections
import json
import os

from ansible.plugins.callback import CallbackBase

# Actions that never run a module anywhere: the controller evaluates them itself.
CONTROLLER_ONLY = {
    'set_fact', 'debug', 'assert', 'fail', 'meta', 'include_tasks', 'import_tasks', 'include_role',
    'import_role', 'set_stats', 'include_vars', 'add_host', 'group_by', 'end_host', 'end_play',
    'validate_argument_spec',
}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'fleet_count'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runs = collections.defaultdict(list)

    def _count(self, result, outcome):
        task = result.task
        action = task.action.rsplit('.', 1)[-1]
        if action in CONTROLLER_ONLY:
            return
        delegated = task.delegate_to or ''
        where = 'controller' if delegated == 'localhost' else 'remote'
        # a loop's items; livepatch_report's own 'results' is a dict by host, not a loop
        loop = result.result.get('results') if task.loop else None
        items = sum(1 for item in loop if not item.get('skipped')) if isinstance(loop, list) else 1
        self.runs[result.host.get_name()].append({'task': task.get_name(), 'action': action, 'where': where,
                                                  'outcome': outcome, 'items': items, 'changed': result.is_changed()})

    def v2_runner_on_ok(self, result):
        self._count(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._count(result, 'unreachable')

    def v2_playbook_on_stats(self, stats):
        self._write()

    def _write(self):
        with open(os.environ['FLEET_COST_CALLBACK_OUT'], 'w', encoding='utf-8') as out:
            json.dump(self.runs, out)

    def v2_runner_on_async_ok(self, result):
        self._count(result, 'ok')
'''


def snapshot(dest: str) -> dict:
    """Copy the checkout's collection (every file git would track) to DEST/ansible_collections/kernelops/livepatch,
    so that the run measures one version even if the checkout changes meanwhile; returns its commit."""
    root = os.path.join(dest, 'ansible_collections', 'kernelops', 'livepatch')
    listed = subprocess.run(['git', '-C', ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                            check=True, capture_output=True).stdout.decode()
    for rel in filter(None, listed.split('\0')):
        if rel.startswith(('lab/', 'tests/', 'benchmarks/', 'docs/')) or not os.path.isfile(os.path.join(ROOT, rel)):
            continue
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), os.path.join(root, rel))
    commit = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'], check=True, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain', '--', 'plugins', 'roles', 'playbooks'],
                           check=True, capture_output=True, text=True).stdout.strip()
    return {'commit': commit, 'uncommitted_changes': bool(dirty)}


def sha256(path: str) -> str:
    with open(path, 'rb') as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def write_inventory(path: str, names: list, vm: klab.VM, stack: list) -> None:
    hosts = {}
    for name in names:
        host = dict(vm.ansible_vars)
        host['ansible_ssh_extra_args'] = f'-o HostKeyAlias={name}'
        hosts[name] = host
    inventory = {'all': {'hosts': hosts, 'vars': {'livepatch_stack_stacks': [{'release': vm.release, 'patches': stack}]}}}
    with open(path, 'w', encoding='utf-8') as out:
        json.dump(inventory, out, indent=1)  # JSON is YAML: the yaml inventory plugin reads it


class Runner:
    """Runs ansible commands with the wrapper and the callback, and collects what they counted."""

    def __init__(self, work: str, inventory: str, forks: int, collections: str, guest_cpu=None):
        self.work = work
        self.inventory = inventory
        self.forks = forks
        self.serial = 0
        self.guest_cpu = guest_cpu or (lambda: 0.0)
        wrapper = os.path.join(work, 'ssh')
        with open(wrapper, 'w', encoding='utf-8') as out:
            out.write(SSH_WRAPPER)
        os.chmod(wrapper, 0o755)
        plugins = os.path.join(work, 'callback_plugins')
        os.makedirs(plugins, exist_ok=True)
        with open(os.path.join(plugins, 'fleet_count.py'), 'w', encoding='utf-8') as out:
            out.write(CALLBACK)
        self.env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collections,
                        ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='False', ANSIBLE_SSH_EXECUTABLE=wrapper,
                        ANSIBLE_PIPELINING='True', ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_FORKS=str(forks),
                        ANSIBLE_CALLBACK_PLUGINS=plugins, ANSIBLE_CALLBACKS_ENABLED='fleet_count',
                        ANSIBLE_LOAD_CALLBACK_PLUGINS='True', ANSIBLE_NOCOLOR='1', ANSIBLE_RETRY_FILES_ENABLED='False')

    def run(self, what: str, argv: list, **extra_env) -> dict:
        self.serial += 1
        ssh_log = os.path.join(self.work, f'{self.serial:02d}-{what}.ssh.log')
        counted = os.path.join(self.work, f'{self.serial:02d}-{what}.callback.json')
        env = dict(self.env, FLEET_COST_SSH_LOG=ssh_log, FLEET_COST_CALLBACK_OUT=counted, **extra_env)
        open(ssh_log, 'w', encoding='utf-8').close()
        guest = self.guest_cpu()
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        done = subprocess.run(argv + ['-i', self.inventory, '--forks', str(self.forks)], cwd=self.work, env=env,
                              capture_output=True, text=True, check=False)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_s = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
        guest_s = self.guest_cpu() - guest
        if done.returncode != 0:
            raise SystemExit(f'{what}: {argv} exit {done.returncode}\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}')
        per_host = collections.Counter()
        commands = collections.Counter()
        with open(ssh_log, encoding='utf-8') as log:
            for line in log:
                host, command = (line.rstrip("\n").split("\t", 1) + [""])[:2]
                per_host[host] += 1
                commands[command] += 1
        with open(counted, encoding='utf-8') as handle:
            runs = json.load(handle)
        return {'what': what, 'wall_s': round(wall, 1), 'controller_cpu_s': round(cpu_s, 1), 'guest_cpu_s': round(guest_s, 1),
                'ssh_per_host': dict(per_host), 'ssh_commands': dict(commands),
                'tasks': runs}


def summarise(result: dict, names: list) -> dict:
    ssh = [result['ssh_per_host'].get(name, 0) for name in names]
    remote = collections.Counter()
    controller = collections.Counter()
    changed = collections.Counter()
    for name in names:
        for run in result['tasks'].get(name, []):
            (controller if run['where'] == 'controller' else remote)[run['task']] += run['items']
            changed[run['task']] += bool(run.get('changed'))
    hosts = len(names)
    return {
        'wall_s': result['wall_s'], 'controller_cpu_s': result['controller_cpu_s'], 'guest_cpu_s': result['guest_cpu_s'],
        'ssh_per_host_min': min(ssh), 'ssh_per_host_max': max(ssh), 'ssh_per_host_mean': round(sum(ssh) / hosts, 2),
        'unknown_ssh': result['ssh_per_host'].get('unknown', 0),
        'remote_tasks_per_host': {task: round(count / hosts, 2) for task, count in remote.items()},
        'controller_tasks_per_host': {task: round(count / hosts, 2) for task, count in controller.items()},
        'changed_tasks': {task: count for task, count in changed.items() if count},
    }


def guest_busy_seconds(vm: klab.VM) -> float:
    """CPU time the guest spent busy since its boot (user, nice, system, irq, softirq of /proc/stat's
    cpu line, in USER_HZ = 100 per second: proc(5)): what the remote side of a run cost, whichever
    host name it ran for. Read through the lab's own ssh connection, outside the runs' counts."""
    fields = vm.ssh('head -n1 /proc/stat').stdout.split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(field) for field in fields[1:8])
    return (user + nice + system + irq + softirq) / 100.0


def converge_statuses(report_dir: str) -> collections.Counter:
    with open(os.path.join(report_dir, 'livepatch-report.json'), encoding='utf-8') as handle:
        report = json.load(handle)
    return collections.Counter(host['status'] for host in report['hosts'])


def measure(vm: klab.VM, work: str, hosts: int, forks: int, collections_path: str, ping_again: bool = True) -> dict:
    names = [f'fleet-{index:02d}' for index in range(hosts)]
    patches = os.path.join(work, 'patches', vm.release)
    os.makedirs(patches, exist_ok=True)
    stack = []
    for name in PATCHES:
        shutil.copy2(os.path.join(klab.Lab().cache, 'patches', vm.kernel, f'{name}.ko'), patches)
        stack.append({'src': f'patches/{vm.release}/{name}.ko', 'sha256': sha256(os.path.join(patches, f'{name}.ko'))})
    inventory = os.path.join(work, 'inventory.yml')
    write_inventory(inventory, names, vm, stack)
    runner = Runner(work, inventory, forks, collections_path, guest_cpu=lambda: guest_busy_seconds(vm))
    playbook = [tool('ansible-playbook'), 'kernelops.livepatch.converge']
    report = os.path.join(work, 'report')
    setup = runner.run('setup', playbook + ['--limit', names[0], '-e', f'livepatch_report_dir={report}-setup'])
    statuses = converge_statuses(f'{report}-setup')
    if set(statuses) - {'converged', 'unchanged'}:
        raise SystemExit(f'the setup converge did not end converged: {dict(statuses)}')
    ping1 = runner.run('ping', [tool('ansible'), 'all', '-m', 'ansible.builtin.ping'])
    noop = runner.run('converge', playbook + ['-e', f'livepatch_report_dir={report}'])
    ping2 = runner.run('ping-again', [tool('ansible'), 'all', '-m', 'ansible.builtin.ping']) if ping_again else ping1
    statuses = converge_statuses(report)
    converge = summarise(noop, names)
    # Printed with the numbers, and the benchmark exits 1: numbers of a run that was not a no-op are not the cost of one.
    problems = []
    if statuses != collections.Counter({'unchanged': hosts}):
        problems.append(f'the no-op converge was not a no-op on every host: {dict(statuses)}')
    if converge['changed_tasks']:
        problems.append(f"the no-op converge changed something (task: hosts): {converge['changed_tasks']}")
    ping_mean = (ping1['wall_s'] + ping2['wall_s']) / 2
    return {
        'kernel': vm.kernel, 'release': vm.release, 'hosts': hosts, 'forks': forks,
        'setup_s': setup['wall_s'],
        'ping': summarise(ping1, names), 'converge': converge, 'ping_again': summarise(ping2, names),
        'ratio': round(noop['wall_s'] / ping_mean, 2),
        'converge_statuses': dict(statuses),
        'converge_ssh_commands': noop['ssh_commands'],
        'problems': problems,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--kernel', default='bookworm')
    parser.add_argument('--hosts', type=int, nargs='+', default=[50],
                        help='inventory sizes, measured in this order on the same guest (a small one first checks the '
                             'benchmark before the long run)')
    parser.add_argument('--forks', type=int, nargs='+', default=[10])
    parser.add_argument('--json', help='write the results here too')
    parser.add_argument('--no-ping-again', action='store_true', help='skip the second ping (saves its time)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory (logs, reports)')
    args = parser.parse_args(argv)
    lab = klab.Lab().build([args.kernel])
    load_before = os.getloadavg()
    results = []
    collection_dir = tempfile.mkdtemp(prefix='fleet-cost-collection-')
    version = snapshot(collection_dir)
    print(f'collection: {ROOT} at {version}', flush=True)
    vm = lab.boot(args.kernel)
    try:
        vm.ssh('rmmod lab_a lab_b 2>/dev/null; rm -rf /var/lib/kernelops-livepatch; true', check=False)
        # All inventory names share one ssh connection, and sshd opens at most MaxSessions (10 by
        # default, sshd_config(5)) sessions on one connection: more forks would be refused there.
        vm.ssh(f'echo "MaxSessions {max(args.forks) + 10}" >/etc/ssh/sshd_config.d/fleet-cost.conf && systemctl reload ssh')
        versions = {'date_utc': time.strftime('%Y-%m-%d %H:%M', time.gmtime()), 'guest_uname_r': vm.ssh('uname -r').stdout.strip(),
                    'ansible_core': subprocess.run([tool('ansible'), '--version'], capture_output=True, text=True,
                                                   check=True).stdout.split('\n', 1)[0]}
        print(json.dumps(versions), flush=True)
        for hosts, forks in [(hosts, forks) for hosts in args.hosts for forks in args.forks]:
            work = tempfile.mkdtemp(prefix='fleet-cost-')
            try:
                result = dict(measure(vm, work, hosts, forks, collection_dir, not args.no_ping_again), collection=version,
                              **versions)
            finally:
                if args.keep:
                    print(f'work directory kept: {work}', file=sys.stderr)
                else:
                    shutil.rmtree(work, ignore_errors=True)
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
    finally:
        vm.stop()
        shutil.rmtree(collection_dir, ignore_errors=True)
    load_after = os.getloadavg()
    print(f'\nload average (1, 5, 15 min) before {load_before}, after {load_after}')
    print(f"{'forks':>5} {'hosts':>5} {'ping s':>8} {'converge s':>10} {'ratio':>6} {'ssh/host ping':>13} "
          f"{'ssh/host converge':>17} {'controller-local/host':>21}")
    for result in results:
        ping = (result['ping']['wall_s'] + result['ping_again']['wall_s']) / 2
        local = sum(result['converge']['controller_tasks_per_host'].values())
        print(f"{result['forks']:>5} {result['hosts']:>5} {ping:>8.1f} {result['converge']['wall_s']:>10.1f} "
              f"{result['ratio']:>6.2f} {result['ping']['ssh_per_host_mean']:>13} "
              f"{result['converge']['ssh_per_host_mean']:>17} {local:>21}")
    print(f"{'forks':>5} {'run':>10} {'guest CPU s/host':>16} {'controller CPU s/host':>21}")
    for result in results:
        for what in ('ping', 'converge', 'ping_again'):
            run = result[what]
            print(f"{result['forks']:>5} {what:>10} {run['guest_cpu_s'] / result['hosts']:>16.3f} "
                  f"{run['controller_cpu_s'] / result['hosts']:>21.3f}")
    for result in results:
        print(f"forks {result['forks']}: remote module runs per host in the no-op converge, by task: "
              f"{json.dumps(result['converge']['remote_tasks_per_host'])}; on the controller: "
              f"{json.dumps(result['converge']['controller_tasks_per_host'])}")
    print(f"kernel {results[0]['guest_uname_r']}, {results[0]['ansible_core']}, {results[0]['date_utc']} UTC, "
          f"collection {results[0]['collection']}")
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as out:
            json.dump({'load_before': load_before, 'load_after': load_after, 'results': results}, out, indent=1)
    problems = [problem for result in results for problem in result['problems']]
    for problem in problems:
        print(f'NOT A NO-OP: {problem}')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
