# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the executor says, word for word and number for number, on the kernel model.

The model's clock is simulated, so waits and durations are exact: a stall of ``timeout`` seconds
reads as that many seconds in the message, and the 4.15-5.0 ``signal`` write happens at half the
timeout. These are the messages a user reads in a failed result (issue 14: tests that fail when
a word, a number or a default changes; benchmarks/mutation.py found them unchecked).
"""

from __future__ import annotations

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import (
    ActError, Executor, StallError, StepRecord,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Step

from kernel_model import Lab, model_image


def load_step(wanted, retires=()):
    return Step(action='load', patch=wanted.name, reason='push', path=wanted.path, retires=tuple(retires))


def blocked_lab(tmp_path, version):
    lab = Lab(tmp_path, version)
    lab.model.blocked = True
    return lab, lab.ko('lab_block', block=True)


def test_on_stall_must_be_known_and_the_clock_defaults_to_the_kernels(tmp_path):
    lab = Lab(tmp_path, '6.12')
    caps = lab.model.observe().capabilities
    with pytest.raises(ValueError) as info:
        Executor(lab.model, caps, on_stall='wait')
    assert str(info.value) == "on_stall must be one of ('reverse', 'fail', 'force')"
    executor = Executor(lab.model, caps)
    assert executor.clock is lab.model.clock and executor.timeout == 60.0 and executor.on_stall == 'reverse'
    assert executor.warn('nothing happens') is None and executor.records == [] and executor.forced == []


def test_a_record_says_what_ran_how_long_and_that_it_changed_the_kernel(tmp_path):
    lab = Lab(tmp_path, '6.12')
    a = lab.ko('a')
    executor = lab.executor()
    executor.run([load_step(a)], {'a': model_image(a.path)})
    record = executor.records[0]
    assert (record.phase, record.outcome, record.kernel_changed, record.changed_kernel) == ('apply', 'ok', True, True)
    as_dict = record.as_dict()
    assert {key: as_dict[key] for key in ('action', 'patch', 'phase', 'outcome', 'kernel_changed')} == {
        'action': 'load', 'patch': 'a', 'phase': 'apply', 'outcome': 'ok', 'kernel_changed': True}
    # the model's patching transition takes 1.5 ms of its clock, plus the executor's polls
    assert as_dict['duration_ms'] == round(record.duration * 1000.0, 3) and 1.5 <= as_dict['duration_ms'] < 10.0
    assert as_dict['kernel_messages'] == ["livepatch: enabling patch 'a'", "livepatch: 'a': starting patching transition"]


def test_someone_elses_stall_is_reported_with_its_direction_and_the_time_waited(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    lab.model.insmod(block.path)
    executor = lab.executor(timeout=2.0)
    with pytest.raises(StallError) as info:
        executor.wait_idle()
    assert info.value.message == ('patch lab_block has been in transition (patching) for 2.0 s, longer than the '
                                  'timeout, and this run did not start that transition')
    assert info.value.detail['direction'] == 'patching' and info.value.detail['stalled_patch'] == 'lab_block'
    assert 2.0 <= info.value.detail['waited_s'] < 2.1
    # a transition that ends right at the deadline is no stall
    lab.model.at(lab.model.clock.now + 0.5, lambda model: model.finish_transition())
    assert executor.wait_idle(timeout=1.0) < 1.0


@pytest.mark.parametrize('version, signal', [('4.19', True), ('6.12', False)])
def test_a_stall_is_reported_after_the_timeout_and_4_19_signals_half_way(tmp_path, version, signal):
    lab, block = blocked_lab(tmp_path, version)
    seen = []
    lab.model.on_event(lambda model: seen.append(model.clock.now), 'start', 'lab_block', True)
    executor = lab.executor(timeout=4.0, on_stall='fail')
    with pytest.raises(StallError) as info:
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert info.value.message == 'patch lab_block stalled while patching after 4.0 s; left running (on_stall=fail)'
    assert info.value.rule == 'transition_stalled' and info.value.patches == ['lab_block']
    assert 4.0 <= info.value.detail['waited_s'] < 4.1
    signals = [event for event in lab.model.events if event[0] == 'signal']
    assert signals == ([('signal', 'lab_block')] if signal else [])
    assert executor.records[0].outcome == 'stalled' and executor.records[0].kernel_changed
    assert 4.0 <= executor.records[0].duration < 4.1 and seen


def test_the_4_19_signal_is_written_at_half_the_timeout(tmp_path):
    lab, block = blocked_lab(tmp_path, '4.19')
    start, written = [], []
    lab.model.on_event(lambda model: start.append(model.clock.now), 'start', 'lab_block', True)
    real_write = lab.model.write

    def write(value, *parts):
        if parts[-1] == 'signal':
            written.append((value, lab.model.clock.now - start[0]))
        return real_write(value, *parts)
    lab.model.write = write
    executor = lab.executor(timeout=4.0, on_stall='fail')
    with pytest.raises(StallError):
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert len(written) == 1 and written[0][0] == '1' and 2.0 <= written[0][1] < 2.1, written


def test_a_reversed_stall_says_so_with_both_waits(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    executor = lab.executor(timeout=3.0)
    with pytest.raises(StallError) as info:
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert info.value.message == 'patch lab_block stalled while patching after 3.0 s; the transition was reversed'
    detail = info.value.detail
    assert detail['reversed'] is True and 0.0 < detail['reverse_s'] < 0.01  # the model reverses in 1.5 ms
    assert 3.0 <= detail['waited_s'] < 3.1 and executor.records[0].outcome == 'reversed'
    assert executor.records[0].detail['error'] == info.value.message
    assert executor.records[0].detail['rule'] == 'transition_stalled'
    # 5.1+: the reversed patch is freed before the executor gives up (its module can go)
    assert not lab.model.exists('sys/kernel/livepatch', 'lab_block')


def test_a_reverse_that_does_not_finish_is_reported(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    # the reversal blocks too: the kernel's reverse transition never ends
    lab.model.on_event(lambda model: model.on_event(_block_reversal, 'reverse', 'lab_block'),
                       'start', 'lab_block', True)
    executor = lab.executor(timeout=2.0)
    with pytest.raises(StallError) as info:
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert info.value.message == ('patch lab_block stalled while patching after 2.0 s; the reverse transition did '
                                  'not finish within 2.0 s either and is still running')
    assert info.value.detail['reversed'] is False and 2.0 <= info.value.detail['reverse_s'] < 2.1


def _block_reversal(model):
    name, target, _end = model.transition
    model.transition = (name, target, None)


def test_force_warns_with_the_time_and_the_reboot_it_needs(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    warnings = []
    executor = lab.executor(timeout=2.0, on_stall='force')
    executor.warn = warnings.append
    executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert executor.forced == ['lab_block'] and executor.records[0].outcome == 'ok'
    assert warnings == ['transition of lab_block was forced after 2.0 s: plan a reboot; its module can never be '
                        'unloaded and no more patches should be applied (docs/developer.md §5.4)']
    # its unload is skipped, not tried: the kernel keeps a forced module for good
    executor.run([Step(action='disable', patch='lab_block', reason='pop'),
                  Step(action='unload', patch='lab_block', reason='pop')], {})
    assert [r.outcome for r in executor.records] == ['ok', 'ok', 'skipped']
    assert executor.records[2].detail['error'] == 'forced: its module can never be unloaded until reboot'


def test_a_force_the_kernel_refuses_is_a_write_error(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    real_write = lab.model.write
    lab.model.write = lambda value, *parts: 'EPERM' if parts[-1] == 'force' else real_write(value, *parts)
    executor = lab.executor(timeout=1.0, on_stall='force')
    with pytest.raises(ActError) as info:
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert info.value.rule == 'write_failed' and info.value.detail['errno'] == 'EPERM'
    assert info.value.message == 'forcing the transition of lab_block failed: EPERM'
    assert executor.forced == []


def test_a_reversal_the_kernel_refuses_is_a_write_error(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    real_write = lab.model.write
    lab.model.write = lambda value, *parts: 'EBUSY' if value == '0' else real_write(value, *parts)
    executor = lab.executor(timeout=1.0)
    with pytest.raises(ActError) as info:
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert info.value.message == 'reversing the stalled transition of lab_block failed: EBUSY'
    assert info.value.rule == 'write_failed' and info.value.detail['errno'] == 'EBUSY'


def test_write_unload_and_load_failures_name_the_patch_and_the_errno(tmp_path):
    lab = Lab(tmp_path, '6.12')
    executor = lab.executor(timeout=1.0)
    with pytest.raises(ActError) as info:
        executor.run([Step(action='enable', patch='ghost', reason='push')], {})
    assert info.value.message == 'enabling patch ghost failed: ENOENT'
    with pytest.raises(ActError) as info:
        executor.run([Step(action='disable', patch='ghost', reason='pop')], {})
    assert info.value.message == 'disabling patch ghost failed: ENOENT'
    with pytest.raises(ActError) as info:
        executor.run([Step(action='frobnicate', patch='ghost', reason='pop')], {})
    assert info.value.message == 'unknown step frobnicate' and info.value.rule == 'unknown_step'
    with pytest.raises(ActError) as info:
        executor.run([Step(action='load', patch='ghost', reason='push', path='/x/ghost.ko')], {})
    assert info.value.message == 'no verified file is known for patch ghost, so it cannot be loaded'
    # an unload of a module nobody has loaded changed nothing and is no error
    executor.run([Step(action='unload', patch='ghost', reason='pop')], {})
    assert executor.records[-1].outcome == 'ok' and not executor.records[-1].kernel_changed


def test_a_failed_load_quotes_the_kernels_reason(tmp_path):
    lab = Lab(tmp_path, '6.12')
    bad = lab.ko('lab_fail_pre', pre_patch=-19)
    executor = lab.executor()
    with pytest.raises(ActError) as info:
        executor.run([load_step(bad)], {'lab_fail_pre': model_image(bad.path)})
    assert info.value.message == ('loading patch lab_fail_pre from %s failed: No such device; kernel: livepatch: '
                                  "pre-patch callback failed for object 'vmlinux'" % bad.path)
    assert info.value.detail == {'errno': 'ENODEV',
                                 'kernel_messages': ["livepatch: pre-patch callback failed for object 'vmlinux'"]}
    assert not executor.records[0].kernel_changed


def test_a_module_that_is_no_livepatch_is_unloaded_again_and_says_so(tmp_path):
    lab = Lab(tmp_path, '6.12')
    plain = lab.ko('plain', livepatch=False)
    executor = lab.executor()
    with pytest.raises(ActError) as info:
        executor.run([load_step(plain)], {'plain': model_image(plain.path)})
    assert info.value.message == ('module plain loaded but /sys/kernel/livepatch/plain did not appear: it is not a '
                                  'livepatch module; unloaded it again')
    assert info.value.detail['unload_errno'] is None
    assert [m.name for m in lab.model.modules] == []


def test_a_module_in_use_is_reported_with_its_refcnt(tmp_path):
    lab = Lab(tmp_path, '6.12')
    a = lab.ko('a')
    lab.load_lp(a)
    executor = lab.executor(timeout=1.0)
    with pytest.raises(ActError) as info:
        executor.run([Step(action='unload', patch='a', reason='pop')], {})
    assert info.value.rule == 'module_in_use'
    assert info.value.message == ('module a still has refcnt 1 after 1.0 s; it is in use (or was forced) and '
                                  'cannot be unloaded')


def test_a_new_record_is_pending_unchanged_and_its_duration_in_milliseconds():
    record = StepRecord(Step(action='unload', patch='a', reason='pop'))
    assert (record.phase, record.outcome, record.duration, record.kernel_changed) == ('apply', 'pending', 0.0, False)
    record.duration = 0.0123456
    assert record.as_dict()['duration_ms'] == 12.346


def test_the_actions_run_outside_a_plan_too(tmp_path):
    """disable/unload called directly (no record running) act and change nothing in the records."""
    lab = Lab(tmp_path, '6.12')
    a = lab.ko('a')
    lab.load_lp(a)
    executor = lab.executor()
    executor.disable(Step(action='disable', patch='a', reason='pop'))
    executor.unload(Step(action='unload', patch='a', reason='pop'))
    assert lab.model.live_names() == [] and lab.model.modules == [] and executor.records == []


def test_a_stalled_disable_is_unpatching_and_reversed_to_patched(tmp_path):
    lab, block = blocked_lab(tmp_path, '6.12')
    lab.model.blocked = False
    lab.load_lp(block)
    lab.model.blocked = True
    executor = lab.executor(timeout=1.0)
    with pytest.raises(StallError) as info:
        executor.run([Step(action='disable', patch='lab_block', reason='pop')], {})
    assert info.value.message == 'patch lab_block stalled while unpatching after 1.0 s; the transition was reversed'
    assert info.value.detail['direction'] == 'unpatching'
    assert lab.model.live_names() == ['lab_block'] and ('reverse', 'lab_block', True) in lab.model.events


def test_a_stall_report_survives_a_kernel_that_cannot_be_read(tmp_path):
    """The blockers are a report: failing to read them must not hide the stall (its direction is the step's)."""
    lab, block = blocked_lab(tmp_path, '6.12')

    def unreadable(blocker_stacks=False):
        raise OSError(5, 'Input/output error')
    executor = lab.executor(timeout=1.0, on_stall='fail')
    lab.model.on_event(lambda model: setattr(model, 'observe', unreadable), 'start', 'lab_block', True)
    with pytest.raises(StallError) as info:
        executor.run([load_step(block)], {'lab_block': model_image(block.path)})
    assert info.value.detail['blockers'] == [] and info.value.detail['direction'] == 'patching'
    assert info.value.message == 'patch lab_block stalled while patching after 1.0 s; left running (on_stall=fail)'


def test_a_patch_whose_directory_stays_is_reported_with_the_wait(tmp_path):
    lab = Lab(tmp_path, '6.12')
    a = lab.ko('a')
    lab.load_lp(a)
    lab.model.free_lag = 5.0  # the kernel's workqueue is late freeing the disabled patch
    executor = lab.executor(timeout=1.0)
    with pytest.raises(ActError) as info:
        executor.run([Step(action='disable', patch='a', reason='pop')], {})
    assert info.value.rule == 'patch_not_freed'
    assert info.value.message == 'patch a finished its transition but its sysfs directory is still there after 1.0 s'
    record = executor.records[0]
    assert record.outcome == 'failed' and record.kernel_changed and 1.0 <= record.duration < 1.1


def test_only_the_kernels_livepatch_words_and_the_last_four_are_quoted():
    from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import _kernel_reason  # pylint: disable=import-outside-toplevel
    assert _kernel_reason([]) == '' and _kernel_reason(['usb 1-1: new device']) == ''
    said = ['livepatch: one', 'x: not compatible', 'pre-patch callback failed', 'noise', 'livepatch: four',
            'livepatch: five']
    assert _kernel_reason(said) == ('; kernel: x: not compatible / pre-patch callback failed / livepatch: four / '
                                    'livepatch: five')
