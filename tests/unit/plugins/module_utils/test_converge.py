# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Converge and rollback: what changed, what was loaded, and whether "as before" is true."""

from __future__ import annotations

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import plan_stack

from kernel_model import Lab, make_image, model_image


@pytest.mark.parametrize('version', ['4.19', '6.1', '6.12', '7.2'])
def test_a_file_swapped_during_a_pop_does_not_reach_the_kernel(tmp_path, version):
    """Finding 1 of issue 10: the file was checked by path and loaded by path, so another build
    copied over it while b was being popped went live. The verified bytes are loaded now."""
    lab = Lab(tmp_path, version)
    a, b, c = lab.ko('a'), lab.ko('b'), lab.ko('c')
    lab.load_lp(a)
    lab.load_lp(b)
    swapped = []

    def swap(model):
        swapped.append(make_image(c.path, 'c', 'evil', model.release).info.build_id)
    lab.model.on_event(swap, 'start', 'b', False)
    _plan, _executor, result = lab.converge([a, c])
    assert swapped and swapped[0] != c.build_id
    assert not result.failed, result.message
    assert lab.model.live_builds() == [('a', a.build_id), ('c', c.build_id)]
    assert [(p.name, p.build_id) for p in result.snapshot.live_stack] == [('a', a.build_id), ('c', c.build_id)]


def test_a_load_that_succeeded_then_a_failed_check_counts_as_changed(tmp_path):
    """Finding 3 of issue 10: the replace patch R retired [a, b] but the check after it failed
    (their directories stayed past the timeout); the result said changed=false and "nothing had
    been changed" while the stack had gone from [a, b] to [R]."""
    lab = Lab(tmp_path, '6.12')
    a, b, r = lab.ko('a'), lab.ko('b'), lab.ko('R', replace=True)
    lab.load_lp(a)
    lab.load_lp(b)

    def slow_free(model):
        # the patches R retires keep their directories past the timeout; later frees are quick
        model.free_lag = 1.5
        model.at(model.clock.now + 0.1, lambda m: setattr(m, 'free_lag', 0.0005))
    lab.model.on_event(slow_free, 'start', 'R', True)
    _plan, executor, result = lab.converge([r], timeout=1.0)
    assert result.failed and result.error.rule == 'patch_not_freed'
    assert executor.records[0].kernel_changed and result.changed
    assert result.rollback.attempted
    live = [(p.name, p.build_id) for p in result.snapshot.live_stack]
    assert result.rollback.as_before == (live == [('a', a.build_id), ('b', b.build_id)])
    assert result.rollback.as_before, result.message
    assert 'Rolled back: the stack is as before the run (a, b).' in result.message


def test_a_module_that_is_no_livepatch_is_changed_and_unloaded_again(tmp_path):
    lab = Lab(tmp_path, '6.12')
    plain = lab.ko('plain', livepatch=False)
    _plan, executor, result = lab.converge([plain])
    assert result.failed and result.error.rule == 'load_failed'
    assert result.changed and result.rollback.as_before
    assert [(r.phase, r.step.action, r.outcome) for r in executor.records] == [('apply', 'load', 'failed')]
    assert 'it is not a livepatch module; unloaded it again' in result.message
    assert lab.model.modules == []


@pytest.mark.parametrize('version', ['4.19', '6.12'])
def test_rollback_does_not_load_a_rebuilt_file(tmp_path, version):
    """Finding 4 of issue 10: rollback trusted the journal's build ID, not the file; a rebuilt b
    copied over the same path went live and the result said "as before"."""
    lab = Lab(tmp_path, version)
    a, b = lab.ko('a'), lab.ko('b')
    lab.load_lp(a)
    lab.load_lp(b)
    bad = lab.ko('lab_fail_pre', pre_patch=-19)
    lab.model.on_event(lambda model: make_image(b.path, 'b', 'v2', model.release), 'start', 'b', False)
    _plan, executor, result = lab.converge([a, bad])
    assert result.failed and result.changed
    assert result.rollback.attempted is False and result.rollback.mismatched == ('b',)
    assert not result.rollback.as_before
    assert lab.model.live_builds() == [('a', a.build_id)]
    assert 'as before' not in result.message
    assert 'The stack is now (bottom first): a; not rolled back: the file of b now holds another build' \
        in result.message
    assert [r.phase for r in executor.records] == ['apply'] * 3


def test_as_before_compares_every_patch_after_the_rollback(tmp_path):
    """Finding 4 of issue 10: "as before" was said when the rollback's steps ran, whatever the
    stack then was. Here another tool loads x while the rollback runs."""
    lab = Lab(tmp_path, '6.12')
    a, b, c = lab.ko('a'), lab.ko('b'), lab.ko('c')
    for patch in (a, b, c):
        lab.load_lp(patch)
    x, d, bad = lab.ko('x'), lab.ko('d'), lab.ko('lab_fail_pre', pre_patch=-19)

    lab.model.on_event(lambda model: model.insmod(x.path), 'complete', 'c', True)
    _plan, executor, result = lab.converge([a, d, bad])
    assert result.failed and result.rollback.attempted
    assert [r.phase for r in executor.records].count('rollback') == 4
    assert result.snapshot.names() == ['a', 'b', 'c', 'x']
    assert not result.rollback.as_before and not result.rollback.succeeded
    assert 'Rolled back: the stack is as before' not in result.message
    assert 'The stack is now (bottom first): a, b, c, x; rolled back, but the stack is not as before the run ' \
           '(a, b, c)' in result.message


def test_rollback_plans_with_the_runs_planner(tmp_path):
    lab = Lab(tmp_path, '6.12')
    a, b, c = lab.ko('a'), lab.ko('b'), lab.ko('c')
    for patch in (a, b, c):
        lab.load_lp(patch)
    bad = lab.ko('lab_fail_pre', pre_patch=-19)
    calls = []

    def planner(snapshot, wanted):
        calls.append([w.name for w in wanted])
        return plan_stack(snapshot, wanted, unload_retired=False)
    snapshot = lab.model.observe()
    plan = planner(snapshot, [a, bad])
    images = {'a': model_image(a.path), 'lab_fail_pre': model_image(bad.path)}
    result = converge(lab.model, plan, lab.executor(snapshot.capabilities), images=images,
                      original=snapshot.live_stack, planner=planner, known_files=lab.known, open_image=model_image)
    assert calls == [['a', 'lab_fail_pre'], ['a', 'b', 'c']]
    assert result.rollback.as_before and result.snapshot.names() == ['a', 'b', 'c']


def test_no_rollback_when_nothing_changed_and_when_not_asked(tmp_path):
    lab = Lab(tmp_path, '6.12')
    a, b = lab.ko('a'), lab.ko('b')
    lab.load_lp(a)
    lab.load_lp(b)
    bad = lab.ko('lab_fail_pre', pre_patch=-19)
    _plan, _executor, result = lab.converge([a, b, bad])
    assert result.failed and not result.changed and result.rollback.reason == 'nothing had been changed'
    _plan, _executor, result = lab.converge([a, bad], rollback=False)
    assert result.failed and result.changed and result.rollback.reason == 'rollback=false'
    assert result.snapshot.names() == ['a']
    assert result.message.endswith('The stack is now (bottom first): a; not rolled back: rollback=false.')
