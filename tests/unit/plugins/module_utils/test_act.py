# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Executor and converge against the kernel model: waits, stalls, reversal, rollback."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import StallError
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import poll_until
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Step

from kernel_model import Lab, model_image


@pytest.fixture
def lab(tmp_path):
    return Lab(tmp_path)


def records(executor):
    return ['%s %s %s %s' % (r.phase, r.step.action, r.step.patch, r.outcome) for r in executor.records]


def test_waits_are_milliseconds_on_an_idle_kernel(lab):
    a = lab.ko('a')
    _plan, executor, result = lab.converge([a])
    assert not result.failed and result.changed
    assert executor.records[0].duration < 0.01  # the model's transition takes 1.5 ms


def test_a_busy_transition_of_someone_else_is_waited_for(lab):
    lab.model.duration = 1.8  # a busy host: the kernel retries once a second
    lab.model.insmod(lab.ko('x').path)
    _plan, _executor, result = lab.converge([lab.ko('x'), lab.ko('a')])
    assert not result.failed, result.message
    assert result.snapshot.names() == ['x', 'a']
    assert lab.model.ebusy == 0


def test_stalled_push_is_reversed_and_the_stack_is_as_before(lab):
    a, block = lab.ko('a'), lab.ko('lab_block', block=True)
    lab.load_lp(a)
    lab.model.blocked = True
    _plan, executor, result = lab.converge([a, block], timeout=2.0)
    assert result.failed and result.changed
    assert result.error.rule == 'transition_stalled'
    assert 'stalled while patching' in result.message and 'reversed' in result.message
    detail = result.error.detail
    assert detail['reversed'] is True
    assert detail['blockers'] == [{'pid': 4242, 'tid': 4242, 'comm': 'lab_busy',
                                   'stack': ['[<0>] lab_busy_sleep+0x2a/0x60 [lab_busy]']}]
    assert 1.9 < detail['waited_s'] < 2.2
    assert result.snapshot.names() == ['a']
    assert result.snapshot.leftovers == ()  # the reversed patch's module was unloaded again
    assert records(executor) == ['apply load lab_block reversed', 'rollback unload lab_block ok']
    assert result.rollback.as_before and 'Rolled back: the stack is as before the run (a)' in result.message
    assert ('reverse', 'lab_block', False) in lab.model.events


def test_stall_with_on_stall_fail_leaves_the_transition_running(lab):
    block = lab.ko('lab_block', block=True)
    lab.model.blocked = True
    _plan, _executor, result = lab.converge([block], timeout=1.0, on_stall='fail')
    assert result.failed and 'left running' in result.message
    assert lab.model.transition_patch() == 'lab_block'
    assert result.changed and result.rollback.attempted is False
    assert 'a transition is still running' in result.rollback.reason


def test_stall_with_on_stall_force_finishes_and_needs_a_reboot(lab):
    block = lab.ko('lab_block', block=True)
    lab.model.blocked = True
    _plan, executor, result = lab.converge([block], timeout=1.0, on_stall='force')
    assert not result.failed
    assert executor.forced == ['lab_block']
    assert result.snapshot.names() == ['lab_block']


def test_failed_load_in_the_middle_of_a_push_is_rolled_back(lab):
    a, b, c = lab.ko('a'), lab.ko('b'), lab.ko('c')
    for patch in (a, b, c):
        lab.load_lp(patch)
    d, bad = lab.ko('d'), lab.ko('lab_fail_pre', pre_patch=-19)
    _plan, executor, result = lab.converge([a, d, bad])
    assert result.failed and result.error.rule == 'load_failed'
    assert 'No such device' in result.message and 'pre-patch callback failed' in result.message
    assert result.rollback.as_dict() == {'attempted': True, 'succeeded': True, 'as_before': True, 'steps': 4}
    assert result.snapshot.names() == ['a', 'b', 'c']
    assert records(executor)[-4:] == ['rollback disable d ok', 'rollback unload d ok',
                                      'rollback load b ok', 'rollback load c ok']


def test_rollback_without_the_popped_files_says_so(lab):
    a, b = lab.ko('a'), lab.ko('b')
    lab.load_lp(a)
    lab.load_lp(b)
    del lab.known['b']
    bad = lab.ko('lab_fail_pre', pre_patch=-19)
    _plan, _executor, result = lab.converge([a, bad])
    assert result.failed and result.changed
    assert result.rollback.attempted is False
    assert result.rollback.missing_files == ('b',)
    assert result.snapshot.names() == ['a']
    assert result.message.endswith('The stack is now (bottom first): a; not rolled back: no file is known for b '
                                   '(popped earlier in this run); the stack cannot be restored and is reported as '
                                   'it is now.')


def test_incompatible_klp_state_reports_the_kernel_message(lab):
    v2, v1 = lab.ko('lab_state_v2', states=[(1, 2)]), lab.ko('lab_state_v1', states=[(1, 1)])
    lab.load_lp(v2)
    _plan, _executor, result = lab.converge([v2, v1])
    assert result.failed and not result.changed
    assert result.error.detail['errno'] == 'EINVAL'
    assert 'is not compatible with the already installed livepatches' in result.message
    assert result.rollback.reason == 'nothing had been changed'
    assert result.snapshot.names() == ['lab_state_v2']


def test_replace_push_retires_and_unloads_the_old_stack(lab):
    a, b, r = lab.ko('a'), lab.ko('b'), lab.ko('R', replace=True)
    lab.load_lp(a)
    lab.load_lp(b)
    _plan, executor, result = lab.converge([r])
    assert not result.failed, result.message
    assert records(executor) == ['apply load R ok', 'apply unload b ok', 'apply unload a ok']
    assert result.snapshot.names() == ['R'] and result.snapshot.leftovers == ()
    assert [e for e in lab.model.events if e[0] == 'start'] == [('start', 'a', True), ('start', 'b', True),
                                                                ('start', 'R', True)]


def test_loaded_modules_are_reported_to_on_loaded(lab):
    a = lab.ko('a')
    lab.converge([a])
    assert lab.known == {'a': {'path': a.path, 'build_id': a.build_id, 'replace': False}}


def test_ebusy_from_the_kernel_is_retried(lab):
    lab.model.duration = 0.5
    a, b = lab.ko('a'), lab.ko('b')
    executor = lab.executor()
    lab.model.insmod(a.path)  # someone else's insmod: a transition is now running
    executor.run([Step(action='load', patch='b', reason='push', path=b.path)], {'b': model_image(b.path)})
    assert lab.model.observe().names() == ['a', 'b']
    assert executor.records[0].kernel_changed


def test_wait_idle_times_out_on_a_foreign_stall(lab):
    lab.model.blocked = True
    lab.model.insmod(lab.ko('lab_block', block=True).path)
    executor = lab.executor(timeout=0.5)
    with pytest.raises(StallError, match='did not start that transition') as info:
        executor.wait_idle()
    assert info.value.rule == 'transition_running' and info.value.patches == ['lab_block']
    assert lab.model.transition_patch() == 'lab_block'  # not reversed: it is not ours


def test_4_19_signal_is_written_before_giving_up(tmp_path):
    lab = Lab(tmp_path, '4.19')
    lab.model.blocked = True
    _plan, _executor, result = lab.converge([lab.ko('lab_block', block=True)], timeout=1.0)
    assert result.failed
    assert ('signal', 'lab_block') in lab.model.events


def test_a_load_step_without_verified_bytes_is_refused(lab):
    executor = lab.executor()
    with pytest.raises(Exception) as info:
        executor.run([Step(action='load', patch='b', reason='push', path='/somewhere/b.ko')], {})
    assert info.value.rule == 'no_file'
    assert records(executor) == ['apply load b failed'] and not executor.records[0].kernel_changed


def test_the_result_is_json(lab):
    a, bad = lab.ko('a'), lab.ko('lab_fail_pre', pre_patch=-19)
    lab.load_lp(a)
    _plan, executor, result = lab.converge([a, bad])
    text = json.dumps({'result': result.as_dict(), 'steps': [r.as_dict() for r in executor.records]})
    assert json.loads(text)['result']['rule'] == 'load_failed'


def test_poll_until_backs_off_in_milliseconds():
    sleeps = []

    class Fake:
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


def test_model_rejects_what_the_kernel_rejects(lab):
    """The model's errnos agree with docs/developer.md §2.1, §2.4 and §9 (6.1 measurements)."""
    a = lab.ko('a')
    lab.load_lp(a)
    assert lab.model.write('1', 'sys/kernel/livepatch', 'a', 'enabled') == 'EINVAL'  # already enabled
    assert lab.model.write('1', 'sys/kernel/livepatch', 'a', 'force') == 'EINVAL'  # no transition
    assert lab.model.write('0', 'sys/kernel/livepatch', 'zz', 'enabled') == 'ENOENT'
    assert lab.model.load_module(model_image(a.path)).errno == 'EEXIST'
    assert lab.model.unload_module('a') == 'EAGAIN'  # in use while enabled
    assert lab.model.unload_module('zz') == 'ENOENT'
    assert os.path.isdir(os.path.join(lab.model.root, 'sys/kernel/livepatch/a'))
