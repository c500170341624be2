# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The act layer against the kernel model: waits, stalls, reversal, rollback, the host lock."""

from __future__ import annotations

import os
import threading

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._act import (
    Executor, HostLock, Journal, LockError, StallError, converge, errno_from_message, poll_until, rollback_wanted,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import read_kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Step, Wanted, plan_stack

from kernel_model import KernelModel
from kofactory import make_ko


class Lab(object):
    """A model kernel plus patch files, with helpers named like the kernel selftests' functions.sh."""

    def __init__(self, tmp_path, version='6.12'):
        root = tmp_path / 'root'
        root.mkdir()
        self.files = tmp_path / 'files'
        self.files.mkdir()
        self.model = KernelModel(str(root), version)
        self.journal = Journal(str(tmp_path / 'run'))

    def ko(self, name, build='v1', **kwargs):
        path = str(self.files / ('%s-%s.ko' % (name, build)))
        make_ko(path, name, release=self.model.release, build=build, **kwargs)
        return Wanted(name, path, read_kofile(path).build_id, replace=kwargs.get('replace', False))

    def load_lp(self, wanted):
        rc, _out, err = self.model.insmod(wanted.path)
        assert rc == 0, err
        self.model.clock.sleep(0.01)
        self.model.tick()

    def converge(self, wanted, timeout=5.0, on_stall='reverse', rollback=True):
        snapshot = self.model.observe()
        plan = plan_stack(snapshot, wanted)
        executor = Executor(self.model, snapshot.capabilities, timeout=timeout, on_stall=on_stall,
                            journal=self.journal, clock=self.model.clock)
        outcome = converge(self.model, wanted, plan, executor, snapshot.live_stack, rollback=rollback,
                           journal_entries=self.journal.read())
        return plan, executor, outcome


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path)


def records(executor):
    return ['%s %s %s %s' % (r.phase, r.step.action, r.step.patch, r.outcome) for r in executor.records]


def test_waits_are_milliseconds_on_an_idle_kernel(lab):
    a = lab.ko('a')
    _plan, executor, outcome = lab.converge([a])
    assert not outcome['failed']
    assert executor.records[0].duration < 0.01  # the model's transition takes 1.5 ms


def test_a_busy_transition_of_someone_else_is_waited_for(lab):
    lab.model.duration = 1.8  # a busy host: the kernel retries once a second
    lab.model.insmod(lab.ko('x').path)
    _plan, executor, outcome = lab.converge([lab.ko('x'), lab.ko('a')])
    assert not outcome['failed'], outcome['error']
    assert outcome['snapshot'].names() == ['x', 'a']
    assert lab.model.ebusy == 0


def test_stalled_push_is_reversed_and_the_stack_is_as_before(lab):
    a, block = lab.ko('a'), lab.ko('lab_block', block=True)
    lab.load_lp(a)
    lab.model.blocked = True
    _plan, executor, outcome = lab.converge([a, block], timeout=2.0)
    assert outcome['failed']
    assert 'stalled while patching' in outcome['error'] and 'reversed' in outcome['error']
    detail = outcome['error_detail']
    assert detail['reversed'] is True
    assert detail['blockers'] == [{'pid': 4242, 'tid': 4242, 'comm': 'lab_busy',
                                   'stack': ['[<0>] lab_busy_sleep+0x2a/0x60 [lab_busy]']}]
    assert 1.9 < detail['waited_s'] < 2.2
    assert outcome['snapshot'].names() == ['a']
    assert outcome['snapshot'].leftovers == ()  # the reversed patch's module was unloaded again
    assert records(executor) == ['apply load lab_block reversed', 'rollback unload lab_block ok']
    assert ('reverse', 'lab_block', False) in lab.model.events


def test_stall_with_on_stall_fail_leaves_the_transition_running(lab):
    block = lab.ko('lab_block', block=True)
    lab.model.blocked = True
    _plan, _executor, outcome = lab.converge([block], timeout=1.0, on_stall='fail')
    assert outcome['failed'] and 'left running' in outcome['error']
    assert lab.model.transition_patch() == 'lab_block'
    assert outcome['rollback']['attempted'] is False


def test_stall_with_on_stall_force_finishes_and_needs_a_reboot(lab):
    block = lab.ko('lab_block', block=True)
    lab.model.blocked = True
    _plan, executor, outcome = lab.converge([block], timeout=1.0, on_stall='force')
    assert not outcome['failed']
    assert executor.forced == ['lab_block']
    assert outcome['snapshot'].names() == ['lab_block']


def test_failed_insmod_in_the_middle_of_a_push_is_rolled_back(lab):
    a, b, c = lab.ko('a'), lab.ko('b'), lab.ko('c')
    for patch in (a, b, c):
        lab.load_lp(patch)
    lab.journal.record(b)
    lab.journal.record(c)
    d, bad = lab.ko('d'), lab.ko('lab_fail_pre', pre_patch=-19)
    _plan, executor, outcome = lab.converge([a, d, bad])
    assert outcome['failed']
    assert 'No such device' in outcome['error'] and 'pre-patch callback failed' in outcome['error']
    assert outcome['rollback'] == {'attempted': True, 'succeeded': True, 'steps': 4}
    assert outcome['snapshot'].names() == ['a', 'b', 'c']
    assert records(executor)[-4:] == ['rollback disable d ok', 'rollback unload d ok',
                                      'rollback load b ok', 'rollback load c ok']


def test_rollback_without_the_popped_files_says_so(lab):
    a, b = lab.ko('a'), lab.ko('b')
    lab.load_lp(a)
    lab.load_lp(b)
    bad = lab.ko('lab_fail_pre', pre_patch=-19)
    _plan, _executor, outcome = lab.converge([a, bad])
    assert outcome['failed']
    assert outcome['rollback']['attempted'] is False
    assert outcome['rollback']['missing_files'] == ['b']
    assert outcome['snapshot'].names() == ['a']


def test_incompatible_klp_state_reports_the_kernel_message(lab):
    v2, v1 = lab.ko('lab_state_v2', states=[(1, 2)]), lab.ko('lab_state_v1', states=[(1, 1)])
    lab.load_lp(v2)
    _plan, _executor, outcome = lab.converge([v2, v1])
    assert outcome['failed']
    assert outcome['error_detail']['errno'] == 'EINVAL'
    assert 'is not compatible with the already installed livepatches' in outcome['error']
    assert outcome['snapshot'].names() == ['lab_state_v2']


def test_replace_push_retires_and_unloads_the_old_stack(lab):
    a, b, r = lab.ko('a'), lab.ko('b'), lab.ko('R', replace=True)
    lab.load_lp(a)
    lab.load_lp(b)
    _plan, executor, outcome = lab.converge([r])
    assert not outcome['failed'], outcome['error']
    assert records(executor) == ['apply load R ok', 'apply unload b ok', 'apply unload a ok']
    assert outcome['snapshot'].names() == ['R'] and outcome['snapshot'].leftovers == ()
    assert [e for e in lab.model.events if e[0] == 'start'] == [('start', 'a', True), ('start', 'b', True),
                                                                ('start', 'R', True)]


def test_journal_records_loaded_files(lab):
    a = lab.ko('a')
    lab.converge([a])
    assert lab.journal.read() == {'a': {'path': a.path, 'build_id': a.build_id, 'replace': False}}


def test_rollback_wanted_only_trusts_matching_builds(lab):
    a = lab.ko('a')
    lab.load_lp(a)
    live = lab.model.observe().live_stack
    wanted, missing = rollback_wanted(live, [], {'a': {'path': '/x/a.ko', 'build_id': 'ff' * 20}})
    assert missing == ['a'] and wanted[0].path is None
    wanted, missing = rollback_wanted(live, [], {'a': {'path': '/x/a.ko', 'build_id': a.build_id}})
    assert missing == [] and wanted[0].path == '/x/a.ko'


def test_ebusy_from_the_kernel_is_retried(lab):
    lab.model.duration = 0.5
    a, b = lab.ko('a'), lab.ko('b')
    snapshot = lab.model.observe()
    executor = Executor(lab.model, snapshot.capabilities, timeout=5.0, clock=lab.model.clock)
    lab.model.insmod(a.path)  # someone else's insmod: a transition is now running
    executor.run([Step('load', 'b', 'push', path=b.path)], {'b': b})
    assert lab.model.observe().names() == ['a', 'b']


def test_wait_idle_times_out_on_a_foreign_stall(lab):
    lab.model.blocked = True
    lab.model.insmod(lab.ko('lab_block', block=True).path)
    executor = Executor(lab.model, lab.model.observe().capabilities, timeout=0.5, clock=lab.model.clock)
    with pytest.raises(StallError, match='did not start that transition'):
        executor.wait_idle()
    assert lab.model.transition_patch() == 'lab_block'  # not reversed: it is not ours


def test_4_19_signal_is_written_before_giving_up(tmp_path):
    lab = Lab(tmp_path, '4.19')
    lab.model.blocked = True
    _plan, _executor, outcome = lab.converge([lab.ko('lab_block', block=True)], timeout=1.0)
    assert outcome['failed']
    assert ('signal', 'lab_block') in lab.model.events


def test_host_lock_serialises_runs(tmp_path):
    path = str(tmp_path / 'lock')
    order = []
    with HostLock(path, timeout=1.0):
        with pytest.raises(LockError, match='another livepatch run holds'):
            with HostLock(path, timeout=0.05):
                order.append('second inside')
        release = threading.Event()

        def later():
            with HostLock(path, timeout=5.0):
                order.append('thread')
            release.set()
        thread = threading.Thread(target=later)
        thread.start()
        order.append('first')
    release.wait(5)
    thread.join()
    assert order == ['first', 'thread']


def test_poll_until_backs_off_in_milliseconds():
    sleeps = []

    class Fake(object):
        now = 0.0

        @classmethod
        def monotonic(cls):
            return cls.now

        @classmethod
        def sleep(cls, seconds):
            sleeps.append(seconds)
            cls.now += seconds
    value, waited = poll_until(lambda: Fake.now > 0.1, 1.0, Fake)
    assert value and waited > 0.1
    assert sleeps[0] == 0.0005 and max(sleeps) == 0.02


@pytest.mark.parametrize('message, name', [
    ('insmod: ERROR: could not insert module /x.ko: Device or resource busy', 'EBUSY'),
    ('insmod: ERROR: could not insert module /x.ko: Invalid argument', 'EINVAL'),
    ('insmod: ERROR: could not insert module /x.ko: Invalid parameters', 'EINVAL'),
    ('insmod: ERROR: could not insert module /x.ko: Unknown symbol in module, or unknown parameter (see dmesg)', 'ENOENT'),
    ('insmod: ERROR: could not insert module /x.ko: Invalid module format', 'ENOEXEC'),
    ('insmod: ERROR: could not insert module /x.ko: File exists\n', 'EEXIST'),
    ('something else', None),
])
def test_errno_from_kmod_messages(message, name):
    assert errno_from_message(message) == name


def test_model_rejects_what_the_kernel_rejects(lab):
    """The model's errno agree with livepatch-kernel.md §2.1 and lab-notes.md (6.1 measurements)."""
    a = lab.ko('a')
    lab.load_lp(a)
    with pytest.raises(OSError) as info:
        lab.model.write_enabled('a', '1')
    assert info.value.errno == 22  # EINVAL: already enabled
    with pytest.raises(OSError) as info:
        lab.model.write_force('a')
    assert info.value.errno == 22  # EINVAL: force with no transition
    assert lab.model.insmod(a.path)[2].endswith('File exists\n')
    assert os.path.isdir(os.path.join(lab.model.root, 'sys/kernel/livepatch/a'))
