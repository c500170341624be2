# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Run the collection's modules against a lab guest, and read the guest's state with plain shell
(never with our own code, so the two can disagree).

Two ways to run a module (``run_module``'s ``via``): ``ansible``, the real ``ansible`` command over
ssh (the controller plans, ships the AnsiballZ payload, parses the result), and ``runner``
(the default), ``guest_runner.py`` in the guest, which imports ``ansible.module_utils.basic`` and
our module_utils once and forks one child per module run, running the module as AnsiballZ does.
Both run the same module code against the same kernel; the runner saves the ~12 s a run costs
under TCG in starting ``ansible`` and Python. Each kernel's suite runs one scenario through the
real ``ansible`` (``test_stack_real``), and the role tests run ``ansible-playbook``; molecule and the
awx stage run everything through Ansible. Shell commands go through the runner too when it is up
(one ``/bin/sh -c`` in the guest instead of an ssh session each).

Helpers are named like the kernel selftests' functions.sh and wait on the kernel's observable
state, polling every 10 ms in the guest. Each guest command costs a round trip (0.1-0.3 s under
TCG, more over ssh), so a test's several reads go in one command (``reads``: each read named and
parsed apart, a failed one named in the failure) and a setup sequence of insmods and waits too
(``steps``: the first step that fails is named).

Every scenario also runs on the kernel model (``tests/unit/kernel_model.py``) with the same calls
and the same ``.ko`` files: ``Guest`` and ``Model`` are two targets with one interface (run a
module, read the stack, load a patch the way another tool would, run a setup script), a scenario
is a function of a target, and ``same`` compares what both said and did (steps, end state,
errors). A disagreement is a bug in the model or a kernel fact the model does not know yet.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from collection_tree import collection_tree, importable  # noqa: E402  pylint: disable=wrong-import-position

if not importable():
    sys.path.insert(0, collection_tree())
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'unit'))

SYSFS = '/sys/kernel/livepatch'


def ansible_bin(name):
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else name


def inventory(vm, directory):
    path = os.path.join(directory, 'inventory.json')
    with open(path, 'w') as handle:
        json.dump({'all': {'hosts': {'lab': dict(vm.ansible_vars)}}}, handle)
    return path


VIA = os.environ.get('KERNELOPS_LAB_MODULE_VIA', 'runner')


def run_module(vm, module, args=None, check=False, diff=False, timeout=600, env=None, via=None):
    """Run ``kernelops.livepatch.<module>`` on the guest; return (result dict, wall seconds).

    ``via``: ``ansible`` or ``runner`` (module docstring; default ``$KERNELOPS_LAB_MODULE_VIA``, else
    ``runner``); ``env`` (more environment for ``ansible``: the benchmark keeps the AnsiballZ file
    with it) implies ``ansible``. ``failed`` in the result is Ansible's verdict: the host failed."""
    if (via or VIA) == 'runner' and env is None:
        return runner(vm).module(module, args, check=check, diff=diff, timeout=timeout)
    return ansible_module(vm, module, args, check=check, diff=diff, timeout=timeout, env=env)


def ansible_module(vm, module, args=None, check=False, diff=False, timeout=600, env=None):
    """``run_module`` through the ``ansible`` command."""
    with tempfile.TemporaryDirectory(prefix='klp-run-') as directory:
        tree = os.path.join(directory, 'tree')
        env_extra, env = env, dict(os.environ)
        env.update({
            'ANSIBLE_COLLECTIONS_PATH': collection_tree(),
            'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
            'ANSIBLE_CALLBACKS_ENABLED': 'ansible.builtin.tree',
            'ANSIBLE_CALLBACK_TREE_DIR': tree,
            'ANSIBLE_STDOUT_CALLBACK': 'ansible.builtin.minimal',
            'ANSIBLE_HOST_KEY_CHECKING': 'False',
            'ANSIBLE_PIPELINING': 'True',
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_RETRY_FILES_ENABLED': 'False',
        })
        env.update(env_extra or {})
        argv = [ansible_bin('ansible'), 'lab', '-i', inventory(vm, directory), '-m', 'kernelops.livepatch.' + module]
        if args:
            argv += ['-a', json.dumps(args)]
        if check:
            argv.append('--check')
        if diff:
            argv.append('--diff')
        vm.check_not_crashed()
        start = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    # A crashed guest hangs (panic=0): fail now, with the kernel's own words.
                    if vm.panic_message() or time.monotonic() - start > timeout:
                        proc.kill()
                        proc.communicate()
                        vm.check_not_crashed()
                        raise AssertionError('ansible %s did not finish within %d s' % (module, timeout))
        finally:
            if proc.poll() is None:
                proc.kill()
        wall = time.monotonic() - start
        vm.charge('ansible', wall)
        result_file = os.path.join(tree, 'lab')
        if not os.path.exists(result_file):
            raise AssertionError('ansible produced no result (rc %d):\n%s\n%s' % (proc.returncode, stdout, stderr))
        with open(result_file) as handle:
            result = json.load(handle)
        # The tree callback keeps the module's keys but not Ansible's own verdict: take it from
        # the exit status (2: a host failed).
        result['failed'] = proc.returncode != 0
        return result, wall


ROLE_FACTS = ('livepatch_stack_status', 'livepatch_stack_rule', 'livepatch_stack_message', 'livepatch_stack_after',
              'livepatch_stack_staged', 'livepatch_stack_boot_restore')


def run_role(vm, variables, check=False, timeout=1200):
    """``ansible-playbook`` with the role ``livepatch_stack`` on the guest, with ``variables``
    (``livepatch_stack_fail_host`` false unless given, so a failed converge still reports its
    facts); return (the role's facts ``ROLE_FACTS``, the play recap line, seconds).

    The facts are written on the controller by a task that changes nothing in the recap."""
    with tempfile.TemporaryDirectory(prefix='klp-role-') as directory:
        out = os.path.join(directory, 'facts.json')
        role_vars = dict({'livepatch_stack_fail_host': False}, **variables)
        collect = '{{ {%s} | to_json }}' % ', '.join("'%s': %s | default(None)" % (fact, fact) for fact in ROLE_FACTS)
        play = [{'hosts': 'all', 'gather_facts': False, 'become': True, 'tasks': [
            {'ansible.builtin.include_role': {'name': 'kernelops.livepatch.livepatch_stack'}, 'vars': role_vars},
            {'ansible.builtin.copy': {'content': collect, 'dest': out, 'mode': '0600'},
             'delegate_to': 'localhost', 'become': False, 'check_mode': False, 'changed_when': False}]}]
        with open(os.path.join(directory, 'play.yml'), 'w') as handle:
            json.dump(play, handle)
        env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_tree(), ANSIBLE_HOST_KEY_CHECKING='False',
                   ANSIBLE_PIPELINING='True', ANSIBLE_NOCOLOR='1')
        argv = [ansible_bin('ansible-playbook'), '-i', inventory(vm, directory), 'play.yml'] + (['--check'] if check else [])
        vm.check_not_crashed()
        start = time.monotonic()
        done = subprocess.run(argv, cwd=directory, env=env, capture_output=True, text=True, check=False, timeout=timeout)
        took = time.monotonic() - start
        vm.charge('role', took)
        assert done.returncode == 0 and os.path.exists(out), done.stdout[-4000:] + done.stderr[-2000:]
        recap = [line for line in done.stdout.splitlines() if re.match(r'^lab\s+:', line)]
        with open(out) as handle:
            return json.load(handle), recap[-1] if recap else '', took


class Runner:
    """``guest_runner.py`` running in one boot of a guest, over one ssh session (module docstring).

    Its files (the runner, ``ansible/module_utils`` of this controller's ansible-core, the
    collection's modules and module_utils from this checkout) are unpacked on the guest's disk
    in a directory named by their hash, once per guest (kept across reboots with the bytecode
    Python writes there, so a restart after a reboot compiles nothing); it is started again
    after every reboot (another QEMU process)."""

    BASE = '/var/tmp/kernelops-test-runner'

    def __init__(self, vm):
        self.vm = vm
        self.key = boot_key(vm)
        data, warm = payload()
        directory = '%s/%s' % (self.BASE, hashlib.sha256(data).hexdigest()[:16])
        self.vm.ssh('d=%s; if [ -f $d/.complete ]; then cat >/dev/null; else rm -rf $d.new && mkdir -p $d.new && '
                    'tar -xzf - -C $d.new && touch $d.new/.complete && rm -rf $d && mv $d.new $d; fi' % directory,
                    input_data=data, timeout=120)
        argv = vm.ssh_argv() + ['--', 'cd %s && exec python3 -u guest_runner.py %s' % (directory, ' '.join(warm))]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                                     stderr=subprocess.DEVNULL)
        ready = self._answer(300, 'start')
        assert ready.get('ready'), ready

    def usable(self):
        return self.proc.poll() is None and boot_key(self.vm) == self.key

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def _answer(self, timeout, what):
        start = time.monotonic()
        while True:
            ready, _w, _x = select.select([self.proc.stdout], [], [], 1.0)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    self.vm.check_not_crashed()
                    raise AssertionError('%s: the guest runner ended during %s' % (self.vm.kernel, what))
                return json.loads(line)
            if self.vm.panic_message() or time.monotonic() - start > timeout:
                self.close()
                self.vm.check_not_crashed()
                raise AssertionError('%s: %s did not finish within %d s' % (self.vm.kernel, what, timeout))

    def request(self, data, timeout, what):
        self.vm.check_not_crashed()
        self.proc.stdin.write(json.dumps(data).encode('utf-8') + b'\n')
        self.proc.stdin.flush()
        return self._answer(timeout, what)

    def module(self, module, args=None, check=False, diff=False, timeout=600):
        """The module's result dict and wall seconds, as ``ansible_module`` returns them."""
        params = dict(args or {}, _ansible_check_mode=check, _ansible_diff=diff,
                      _ansible_module_name='kernelops.livepatch.' + module)
        start = time.monotonic()
        done = self.request({'module': 'ansible_collections.kernelops.livepatch.plugins.modules.' + module,
                             'params': json.dumps({'ANSIBLE_MODULE_ARGS': params})}, timeout, module)
        wall = time.monotonic() - start
        self.vm.charge('module', wall)
        try:
            result = json.loads(done['stdout'])
        except ValueError:
            raise AssertionError('%s printed no result (exit %d):\n%s\n%s' % (
                module, done['rc'], done['stdout'][-4000:], done['stderr'][-2000:])) from None
        result['failed'] = done['rc'] != 0 or bool(result.get('failed'))
        return result, wall

    def sh(self, script, check=True, timeout=180):
        start = time.monotonic()
        done = self.request({'sh': script, 'timeout': timeout}, timeout + 30, 'sh')
        self.vm.charge('shell', time.monotonic() - start)
        if check and done['rc'] != 0:
            raise AssertionError('%s: `%s` failed (exit %d)\nstdout: %s\nstderr: %s' % (
                self.vm.kernel, script, done['rc'], done['stdout'][-2000:], done['stderr'][-2000:]))
        return subprocess.CompletedProcess(script, done['rc'], done['stdout'], done['stderr'])


_PAYLOAD = {}
_RUNNERS = {}


def boot_key(vm):
    """What changes when the guest boots again: the QEMU process (a reboot ends it), the kernel
    and its extra command-line words."""
    return (vm.inst.pid, vm.inst.release, vm.inst.append)


def payload():
    """The runner's files as a .tar.gz, and the modules it imports before its first fork (our
    module_utils; not the modules: runpy runs each as ``__main__`` afresh). Built once per
    test session."""
    if 'data' not in _PAYLOAD:
        import ansible.module_utils  # pylint: disable=import-outside-toplevel
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
            def add(path, name):
                tar.add(path, arcname=name, recursive=False)

            def add_text(name, text):
                info = tarfile.TarInfo(name)
                info.size = len(text)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(text))
            add(os.path.join(HERE, 'guest_runner.py'), 'guest_runner.py')
            add_text('ansible/__init__.py', b'')
            utils = os.path.dirname(ansible.module_utils.__file__)
            for top, dirs, names in os.walk(utils):
                dirs[:] = sorted(d for d in dirs if d != '__pycache__')
                for name in sorted(names):
                    if name.endswith('.py'):
                        path = os.path.join(top, name)
                        add(path, os.path.join('ansible', 'module_utils', os.path.relpath(path, utils)))
            plugins = os.path.join(collection_tree(), 'ansible_collections', 'kernelops', 'livepatch', 'plugins')
            base = 'ansible_collections/kernelops/livepatch/'
            for package in ('ansible_collections/', 'ansible_collections/kernelops/', base, base + 'plugins/'):
                add_text(package + '__init__.py', b'')
            warm = []
            for kind in ('modules', 'module_utils'):
                add_text(base + 'plugins/%s/__init__.py' % kind, b'')
                for name in sorted(os.listdir(os.path.join(plugins, kind))):
                    if name.endswith('.py') and name != '__init__.py':
                        add(os.path.join(plugins, kind, name), base + 'plugins/%s/%s' % (kind, name))
                        if kind == 'module_utils':
                            warm.append('ansible_collections.kernelops.livepatch.plugins.module_utils.' + name[:-3])
        _PAYLOAD.update(data=buffer.getvalue(), warm=tuple(warm))
    return _PAYLOAD['data'], _PAYLOAD['warm']


def runner(vm, start=True):
    """The guest runner of ``vm``'s current boot, started by the boot's first module run
    (``start``); None if it is not running and ``start`` is false."""
    current = _RUNNERS.get(id(vm))
    if current is None or not current.usable():
        if current is not None:
            current.close()
            del _RUNNERS[id(vm)]
        if not start:
            return None
        current = _RUNNERS[id(vm)] = Runner(vm)
    return current


def shell(vm, script, check=True, timeout=180):
    """``script`` in the guest: through the runner when this boot has one (a shell command costs
    a fork there instead of an ssh session), else over ssh; a CompletedProcess."""
    current = runner(vm, start=False) if VIA == 'runner' else None
    if current is not None:
        return current.sh(script, check=check, timeout=timeout)
    return vm.ssh(script, check=check, timeout=timeout)


def reboot_pending(vm, why):
    """The guest's kernel is left in a state only a reboot undoes (``why``): the next test of the
    guest reboots it first unless a reboot of its own comes first (``reboot_if_pending``)."""
    vm.klab_reboot_pending = (why, boot_key(vm))


def reboot_if_pending(vm):
    """Do the reboot ``reboot_pending`` left, unless the guest booted again since (conftest.py)."""
    pending = getattr(vm, 'klab_reboot_pending', None)
    if pending and pending[1] == boot_key(vm):
        vm.reboot(append='')
    vm.klab_reboot_pending = None


def sh(vm, script, check=True, timeout=180):
    return shell(vm, script, check=check, timeout=timeout).stdout


def wait_script(condition, timeout_ms=20000):
    """Shell that polls ``condition`` every 10 ms and exits 1 when it has not held within ``timeout_ms``."""
    return 'i=0; until %s; do i=$((i + 1)); if [ $i -ge %d ]; then exit 1; fi; sleep 0.01; done' % (
        condition, timeout_ms // 10)


def loop_until(vm, condition, what, timeout_ms=20000):
    proc = shell(vm, wait_script(condition, timeout_ms), check=False, timeout=timeout_ms / 1000 + 60)
    assert proc.returncode == 0, '%s: %s not observed within %d ms' % (vm.kernel, what, timeout_ms)


# Names with a sysfs directory and enabled=1, in the kernel's order where it tells (stack_order),
# else as /proc/modules lists them reversed: plain shell, not our reader.
LIVE_SCRIPT = r'''
cd /sys/kernel/livepatch || exit 0
for p in */; do p=${p%/}; [ -d "$p" ] || continue
  [ "$(cat $p/enabled 2>/dev/null)" = 1 ] || continue
  if [ -r $p/stack_order ]; then echo "$(cat $p/stack_order) $p"
  else echo "$(tac /proc/modules | grep -n "^$p " | cut -d: -f1) $p"; fi
done | sort -n | cut -d' ' -f2
'''


def live_names(text):
    return [line for line in text.split() if line]


def livepatch_modules(proc_modules):
    """Loaded modules carrying the livepatch taint K, from the text of /proc/modules."""
    return sorted(line.split()[0] for line in proc_modules.splitlines()
                  if line.rstrip().endswith(')') and 'K' in line.rsplit('(', 1)[-1])


def live_patches(vm):
    """The live patches, bottom first (``LIVE_SCRIPT``)."""
    return live_names(sh(vm, LIVE_SCRIPT))


def loaded_livepatch_modules(vm):
    """Loaded modules carrying the livepatch taint K, from /proc/modules."""
    return livepatch_modules(sh(vm, 'cat /proc/modules'))


def reads(vm, scripts=None, timeout=180, **more):
    """Several shell reads in one guest command: ``scripts`` (and ``more``) name -> shell; returns
    name -> its exact stdout. Each runs in its own subshell, in order; a read that exits non-zero
    fails the call naming it."""
    scripts = dict(scripts or {}, **more)
    body = ''.join("printf '\\n@@klp-read %s\\n'; (\n%s\n); printf '\\n@@klp-rc %%s\\n' $?\n" % (name, script)
                   for name, script in scripts.items())
    done = shell(vm, body, timeout=timeout)
    found = dict((name, (text, int(rc))) for name, text, rc in
                 re.findall(r'\n@@klp-read (\S+)\n(.*?)\n@@klp-rc (\d+)\n', done.stdout, re.S))
    for name in scripts:
        text, rc = found.get(name, (None, -1))
        if rc != 0:
            raise AssertionError('%s: read %s failed (exit %d): `%s`\nstdout: %s\nstderr: %s' % (
                vm.kernel, name, rc, scripts[name].strip(), (text or '')[-2000:], done.stderr[-2000:]))
    return dict((name, found[name][0]) for name in scripts)


def live_and_loaded(vm):
    """``live_patches`` and ``loaded_livepatch_modules`` read in one guest command."""
    got = reads(vm, live=LIVE_SCRIPT, modules='cat /proc/modules')
    return live_names(got['live']), livepatch_modules(got['modules'])


def steps(vm, sequence, timeout=180):
    """Run (what, shell) steps in order as one guest command, stopping at the first that fails
    and failing the call with its ``what`` (a wait's ``what`` says what was not observed)."""
    body = 'set -u\n' + ''.join("(\n%s\n) || { rc=$?; echo %s >&2; exit $rc; }\n" % (
        script, shlex.quote('@@klp-failed ' + what)) for what, script in sequence)
    done = shell(vm, body, check=False, timeout=timeout)
    if done.returncode != 0:
        failed = re.findall(r'^@@klp-failed (.*)$', done.stderr, re.M)
        raise AssertionError('%s: %s (exit %d)\nstdout: %s\nstderr: %s' % (
            vm.kernel, failed[-1] if failed else 'steps failed', done.returncode, done.stdout[-2000:],
            done.stderr[-2000:]))
    return done.stdout


def insmod_steps(patch_dir, names, timeout_ms=20000):
    """``steps`` that insmod each lab patch in turn and wait until no transition is left."""
    return [item for name in names for item in (
        ('insmod %s' % name, 'insmod %s/%s.ko' % (patch_dir, name)),
        ('transition after insmod %s not over within %d ms' % (name, timeout_ms),
         wait_script('! grep -qs 1 %s/*/transition' % SYSFS, timeout_ms)))]


def reset(vm, then=''):
    """Bring the guest back to an empty stack with no test modules, the way an operator would:
    wait for transitions, disable top-down, rmmod, unblock the busy target; then the shell
    ``then`` (a test's own cleanup), in the same guest command."""
    script = r'''
set -u
pkill -f 'flock -o /run/kernelops-livepatch.loc[k]' || true
echo 0 > /sys/module/lab_busy/parameters/block 2>/dev/null || true
idle() { ! grep -qs 1 /sys/kernel/livepatch/*/transition; }
i=0; until idle; do i=$((i+1)); [ $i -lt 3000 ] || exit 3; sleep 0.01; done
for p in $(ls -1 /sys/kernel/livepatch 2>/dev/null | tac); do
  [ "$(cat /sys/kernel/livepatch/$p/enabled 2>/dev/null)" = 1 ] && echo 0 > /sys/kernel/livepatch/$p/enabled
  i=0; until idle; do i=$((i+1)); [ $i -lt 3000 ] || exit 4; sleep 0.01; done
done
i=0; while [ -n "$(ls /sys/kernel/livepatch)" ]; do i=$((i+1)); [ $i -lt 3000 ] || exit 5; sleep 0.01; done
for m in $(awk '$NF ~ /K/ {print $1}' /proc/modules) lab_busy lab_target lab_plain lab_rel_lib; do
  grep -q "^$m " /proc/modules || continue
  i=0; until [ "$(cat /sys/module/$m/refcnt)" = 0 ]; do i=$((i+1)); [ $i -lt 3000 ] || exit 6; sleep 0.01; done
  rmmod $m
done
rm -f /run/kernelops-livepatch/journal.json
''' + then
    got = reads(vm, timeout=240, reset=script, live=LIVE_SCRIPT, modules='cat /proc/modules')
    assert live_names(got['live']) == []
    assert livepatch_modules(got['modules']) == []


def patch(target, name):
    """The module argument for the lab patch ``name`` (a guest, ``Guest`` or ``Model``: all have ``patch_dir``)."""
    return {'path': '%s/%s.ko' % (target.patch_dir, name)}


def stack(target, names, **extra):
    """``livepatch_stack`` arguments: lab patch names or entries, bottom first, and other options."""
    args = {'stack': [patch(target, name) if isinstance(name, str) else name for name in names]}
    args.update(extra)
    return args


def dmesg_mark(vm, text):
    sh(vm, 'echo %s > /dev/kmsg' % shlex.quote('klp-test: ' + text))


RECORD_SCRIPT = r'''
import json, os, re
files = {}
def add(path):
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError:
        return
    try:
        files[path.lstrip('/')] = data.decode('ascii')
    except UnicodeDecodeError:
        files[path.lstrip('/')] = {'hex': data.hex()}
for path in ('/proc/sys/kernel/osrelease', '/proc/sys/kernel/tainted', '/proc/modules'):
    add(path)
base = '/sys/kernel/livepatch'
files['sys/kernel/livepatch'] = None
for top, dirs, names in os.walk(base):
    for d in dirs:
        files[os.path.join(top, d).lstrip('/')] = None
    for n in names:
        if n in ('force', 'signal'):
            files[os.path.join(top, n).lstrip('/')] = ''
        else:
            add(os.path.join(top, n))
for line in open('/proc/modules'):
    m = re.search(r'\(([A-Z]+)\)\s*$', line)
    if m and 'K' in m.group(1):
        mod = line.split()[0]
        for leaf in ('refcnt', 'taint', 'srcversion', 'notes/.note.gnu.build-id'):
            add('/sys/module/%s/%s' % (mod, leaf))
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    try:
        tids = os.listdir('/proc/%s/task' % pid)
    except OSError:
        continue
    for tid in tids:
        try:
            state = open('/proc/%s/task/%s/patch_state' % (pid, tid)).read().strip()
        except OSError:
            continue
        if state != '-1':
            for leaf in ('patch_state', 'comm', 'stack'):
                add('/proc/%s/task/%s/%s' % (pid, tid, leaf))
print(json.dumps(files))
'''


def record_tree(vm):
    """The files our observe layer reads, copied from the guest as JSON path → text."""
    return json.loads(sh(vm, 'python3 -c %s' % shlex.quote(RECORD_SCRIPT)))


# -- the same scenario on the guest and on the kernel model -----------------------------------

MODEL_VERSION = {'bookworm': '6.1', 'trixie': '6.12', 'sid': '7.2'}

# What a lab patch does that its bytes' modinfo does not say: the kernel reads it from the
# klp_patch the module registers (lab/patches/NAME.c), the model from these modinfo entries.
LAB_BEHAVIOUR = {
    'lab_replace': {'x_replace': '1'},      # .replace = true
    'lab_block': {'x_block': '1'},          # patches lab_busy_sleep(), where lab_busy's kthread sleeps while block=1
    'lab_fail_pre': {'x_pre_patch': '1'},   # its pre-patch callback returns -ENODEV
    'lab_state_v1': {'x_states': '1:1'},    # klp_state id 1, version 1
    'lab_state_v2': {'x_states': '1:2'},    # klp_state id 1, version 2
}


class Guest:
    """A scenario's target on the lab guest: the real kernel, modules run ``via`` the guest runner
    or the ``ansible`` command (``run_module``)."""

    is_model = False

    def __init__(self, vm, via=None):
        self.vm, self.via = vm, via
        self.kernel, self.release, self.patch_dir = vm.kernel, vm.release, vm.patch_dir
        self.prefix = ''   # guest paths are themselves

    def run(self, module, args=None, check=False, timeout=600):
        return run_module(self.vm, module, args, check=check, timeout=timeout, via=self.via)[0]

    def live(self):
        return live_patches(self.vm)

    def loaded(self):
        return loaded_livepatch_modules(self.vm)

    def state(self):
        """(``live()``, ``loaded()``) in one guest command."""
        return live_and_loaded(self.vm)

    def shell(self, script):
        """``script`` with ``{g}`` (the guest's root: nothing here) in front of every absolute path."""
        return sh(self.vm, script.replace('{g}', ''))

    def put(self, path, data):
        self.vm.ssh('install -d -m 0755 %s && cat > %s' % (shlex.quote(os.path.dirname(path)), shlex.quote(path)),
                    input_data=data)

    def insmod(self, name):
        """Load a patch the way another tool would (not through the collection); wait for its transition."""
        steps(self.vm, [('insmod %s' % name, 'insmod %s/%s.ko' % (self.patch_dir, name)),
                        ('%s not enabled within 20000 ms' % name,
                         wait_script('[ "$(cat %s/%s/transition 2>/dev/null)" = 0 ]' % (SYSFS, name)))])

    def block(self):
        """lab_busy's kthread sleeps in lab_busy_sleep() until unblocked: lab_block cannot finish."""
        sh(self.vm, 'insmod %s/lab_busy.ko && echo 1 > /sys/module/lab_busy/parameters/block && sleep 0.2'
           % self.patch_dir)

    def hold_lock(self):
        """Another run holds the host lock until ``free_lock``."""
        sh(self.vm, 'setsid -f flock -o /run/kernelops-livepatch.lock sleep 600 </dev/null >/dev/null 2>&1; sleep 0.3')
        assert self.vm.ssh('flock -n /run/kernelops-livepatch.lock true', check=False).returncode != 0, 'lock not held'

    def free_lock(self):
        sh(self.vm, "pkill -f 'flock -o /run/kernelops-livepatch.loc[k]'; true")


class Model:
    """The same scenario's target on the kernel model: the modules' ``main()`` in this process, with
    the model as the host's kernel and a private mirror of the guest's files (``prefix``).

    The patch directory holds the lab's ``.ko`` files of this kernel (the files the guest has),
    and paths in module arguments are taken under the mirror, so file ownership, modes and the
    bytes are what the scenario made them. Time is the model's: a stall of ``timeout`` seconds
    passes at once.
    """

    is_model = True

    def __init__(self, lab, vm):
        from kernel_model import KernelModel  # pylint: disable=import-outside-toplevel
        self.kernel, self.release, self.patch_dir = vm.kernel, vm.release, vm.patch_dir
        self.base = tempfile.mkdtemp(prefix='klp-model-')
        self.prefix = os.path.join(self.base, 'guest')
        os.makedirs(os.path.join(self.base, 'kernel'))
        self.model = KernelModel(os.path.join(self.base, 'kernel'), MODEL_VERSION[vm.kernel], behaviour=LAB_BEHAVIOUR)
        self.model.release = vm.release
        self.model.render()
        source = os.path.join(str(lab.cache), 'patches', vm.kernel)
        # root-owned 0755 directories and 0644 files, as the lab installs them in the guest
        for top, _dirs, names in os.walk(source):
            target = self.prefix + os.path.normpath(os.path.join(self.patch_dir, os.path.relpath(top, source)))
            os.makedirs(target, mode=0o755, exist_ok=True)
            for name in names:
                shutil.copyfile(os.path.join(top, name), os.path.join(target, name))
                os.chmod(os.path.join(target, name), 0o644)
        os.chmod(self.prefix, 0o755)
        os.mkdir(os.path.join(self.prefix, 'root'), 0o700)
        self._lock = None

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)

    def _host(self, module):
        from ansible_collections.kernelops.livepatch.plugins.module_utils import _runner  # pylint: disable=import-outside-toplevel
        from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock, Journal  # pylint: disable=import-outside-toplevel
        from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust  # pylint: disable=import-outside-toplevel
        # Test-only seam: the mirror lies under the sticky, world-writable /tmp; below it the
        # file trust rules apply as on the guest.
        return _runner.Host(kernel=self.model,
                            lock=HostLock(os.path.join(self.base, 'lock'), module.params['lock_timeout'], self.model.clock),
                            journal=Journal(os.path.join(self.base, 'kernel', 'run', 'kernelops-livepatch')),
                            is_root=True, trust=FileTrust(trusted_dirs=(self.prefix,)))

    def _guest_paths(self, value):
        if isinstance(value, dict):
            return dict((key, self._guest_paths(item)) for key, item in value.items())
        if isinstance(value, list):
            return [self._guest_paths(item) for item in value]
        if isinstance(value, str) and value.startswith('/'):
            return self.prefix + value
        return value

    def run(self, module, args=None, check=False, timeout=600):  # pylint: disable=unused-argument
        """``module.main()`` with ``args``, the way ansible would run it on the guest; the result dict."""
        import importlib  # pylint: disable=import-outside-toplevel
        from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel
        from ansible_collections.kernelops.livepatch.plugins.module_utils import _runner  # pylint: disable=import-outside-toplevel
        code = importlib.import_module('ansible_collections.kernelops.livepatch.plugins.modules.' + module)
        args = dict(self._guest_paths(args or {}), _ansible_check_mode=check)
        if module == 'livepatch_info':
            args.setdefault('root', self.model.root)
        out = io.StringIO()
        saved = _runner.real_host
        _runner.real_host = self._host
        try:
            with patch_module_args(args), contextlib.redirect_stdout(out):
                try:
                    code.main()
                    status = 0
                except SystemExit as exc:
                    status = exc.code
        finally:
            _runner.real_host = saved
        # paths in the result as the guest would show them (the mirror is the model's business)
        result = json.loads(out.getvalue().replace(self.prefix + '/', '/'))
        result['failed'] = status != 0
        return result

    def live(self):
        return self.model.live_names()

    def loaded(self):
        return sorted(module.name for module in self.model.modules if module.livepatch)

    def state(self):
        return self.live(), self.loaded()

    def shell(self, script):
        """The same setup script, run here with the mirror's root for ``{g}`` (as root, like the guest's)."""
        return subprocess.run(['sh', '-ec', script.replace('{g}', self.prefix)], check=True,
                              stdout=subprocess.PIPE, text=True).stdout

    def put(self, path, data):
        os.makedirs(os.path.dirname(self.prefix + path), mode=0o755, exist_ok=True)
        with open(self.prefix + path, 'wb') as handle:
            handle.write(data)

    def settle(self):
        self.model.clock.sleep(0.01)
        self.model.tick()

    def insmod(self, name):
        rc, _out, err = self.model.insmod('%s%s/%s.ko' % (self.prefix, self.patch_dir, name))
        assert rc == 0, err
        self.settle()

    def block(self):
        self.model.insmod('%s%s/lab_busy.ko' % (self.prefix, self.patch_dir))
        self.model.blocked = True

    def hold_lock(self):
        import fcntl  # pylint: disable=import-outside-toplevel
        self._lock = open(os.path.join(self.base, 'lock'), 'a')  # pylint: disable=consider-using-with
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def free_lock(self):
        self._lock.close()


def on_kernel_and_model(lab, vm, scenario, via=None):
    """Run ``scenario(target)`` on the guest, then the same on the model; compare results and the
    stack after. ``scenario`` returns the module results it got, in order; its own assertions
    hold on both (the guest's first: the kernel is the ground truth). ``via``: ``Guest``."""
    guest, model = Guest(vm, via), Model(lab, vm)
    try:
        real = scenario(guest)
        try:
            modeled = scenario(model)
        except AssertionError as exc:
            raise AssertionError('%s: the kernel passed %s, the model did not: %s' % (
                vm.kernel, scenario.__name__, exc)) from exc
        same(vm.kernel, real, modeled, scenario.__name__)
        after = guest.state()
        assert model.state() == after, '%s: %s: stack after on the model %s, on the kernel %s' % (
            vm.kernel, scenario.__name__, model.state(), after)
        return real, modeled
    finally:
        model.close()


def summary(result):
    """What the guest and the model must agree on in a module's result."""
    detail = result.get('error_detail') or {}
    rollback = result.get('rollback') or {}
    return {
        'failed': bool(result.get('failed')),
        'changed': result.get('changed'),
        'rule': result.get('rule'),
        'patches': result.get('patches'),
        'errno': detail.get('errno'),
        'plan': [(step['action'], step['patch']) for step in result.get('plan') or []],
        'steps': [(step['action'], step['patch'], step['outcome'], step.get('retires'))
                  for step in result.get('steps') or []],
        'stack': [(entry['name'], entry.get('build_id')) for entry in result.get('stack') or []],
        'stack_after': result.get('stack_after'),
        'rollback': (rollback.get('attempted'), rollback.get('succeeded'), rollback.get('as_before')) if rollback
        else None,
    }


def same(kernel, real, modeled, what):
    """The model said and did what the kernel did: results (``summary``) and the stack after."""
    assert len(real) == len(modeled), '%s: %s: %d results on the kernel, %d on the model' % (
        kernel, what, len(real), len(modeled))
    for number, (one, other) in enumerate(zip(real, modeled), 1):
        mine, theirs = summary(one), summary(other)
        differ = dict((key, (mine[key], theirs[key])) for key in mine if mine[key] != theirs[key])
        assert not differ, '%s: %s, run %d: kernel vs model differ in %s' % (kernel, what, number, differ)
