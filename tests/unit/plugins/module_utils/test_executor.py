# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The executor at the edges: a transition that ends exactly when the timeout runs out, failing writes."""

from __future__ import annotations

import json

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import ActError
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Step

from kernel_model import Lab, model_image


def end_at_the_timeout(model, name, timeout):
    """The transition of ``name`` ends at the first kernel access after the one that reached the
    timeout: the executor's last poll still sees it running, its next look does not."""
    state = {}

    def hook(m):
        if 'deadline' not in state:
            if m.transition is not None and m.transition[0] == name:
                state['deadline'] = m.clock.now + timeout
            return
        if m.clock.now >= state['deadline']:
            if state.get('seen'):
                m.finish_transition()
                m.hooks.remove(hook)
            else:
                state['seen'] = True
    model.hooks.append(hook)
    return state


@pytest.mark.parametrize('version', ['4.19', '6.1', '7.2'])
@pytest.mark.parametrize('on_stall', ['reverse', 'force', 'fail'])
def test_a_disable_that_ends_at_the_timeout_is_a_success(tmp_path, version, on_stall):
    """Finding 2 of issue 10: the stall handler re-read the direction from a kernel where the
    transition had just ended (None) and wrote to ``enabled``/``force``: FileNotFoundError on
    6.x, and on 4.19 the completed disable was enabled again ('stalled while None ... reversed')."""
    lab = Lab(tmp_path, version)
    a, block = lab.ko('a'), lab.ko('lab_block', block=True)
    lab.load_lp(a)
    lab.load_lp(block)
    lab.model.blocked = True
    state = end_at_the_timeout(lab.model, 'lab_block', 1.0)
    _plan, executor, result = lab.converge([a], timeout=1.0, on_stall=on_stall)
    assert state.get('seen'), 'the transition was to end only after the last poll'
    assert not result.failed, result.message
    assert result.changed
    assert lab.model.live_names() == ['a']
    assert [e for e in lab.model.events if e[0] == 'reverse'] == []
    assert [(r.step.action, r.outcome) for r in executor.records] == [('disable', 'ok'), ('unload', 'ok')]
    assert executor.forced == []
    assert json.loads(json.dumps(result.as_dict()))['stack'][0]['name'] == 'a'


@pytest.mark.parametrize('version', ['4.19', '6.12'])
def test_an_enable_that_ends_at_the_timeout_is_a_success(tmp_path, version):
    lab = Lab(tmp_path, version)
    block = lab.ko('lab_block', block=True)
    lab.model.blocked = True
    end_at_the_timeout(lab.model, 'lab_block', 1.0)
    _plan, executor, result = lab.converge([block], timeout=1.0)
    assert not result.failed, result.message
    assert lab.model.live_names() == ['lab_block']
    assert [e for e in lab.model.events if e[0] == 'reverse'] == []
    assert [r.outcome for r in executor.records] == ['ok']


def test_a_refused_write_is_an_error_with_a_rule_not_an_exception(tmp_path):
    lab = Lab(tmp_path, '6.12')
    executor = lab.executor()
    with pytest.raises(ActError) as info:
        executor.run([Step(action='disable', patch='nothere', reason='pop')], {})
    assert info.value.rule == 'write_failed' and info.value.detail['errno'] == 'ENOENT'
    assert not executor.records[0].kernel_changed


def test_a_failed_unload_is_an_error_with_a_rule(tmp_path):
    lab = Lab(tmp_path, '4.9')  # 4.0-4.11: a patch module can never be unloaded
    a = lab.ko('a')
    lab.load_lp(a)
    lab.model.modules[0].refcnt = 0
    executor = lab.executor()
    with pytest.raises(ActError) as info:
        executor.run([Step(action='unload', patch='a', reason='pop')], {})
    assert info.value.rule == 'unload_failed' and info.value.detail['errno'] == 'EAGAIN'


def test_a_journal_that_cannot_be_written_does_not_hide_the_load(tmp_path):
    lab = Lab(tmp_path, '6.12')
    a = lab.ko('a')
    warnings = []
    executor = lab.executor()
    executor.warn = warnings.append

    def broken(step, image):
        raise OSError(28, 'No space left on device')
    executor.on_loaded = broken
    executor.run([Step(action='load', patch='a', reason='push', path=a.path)], {'a': model_image(a.path)})
    assert lab.model.live_names() == ['a'] and executor.records[0].outcome == 'ok'
    assert warnings == ['patch a was loaded but could not be noted in the journal: [Errno 28] No space left on device']
