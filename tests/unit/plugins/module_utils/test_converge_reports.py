# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What converge reports, word for word: the rollback report, the message a failed run ends
with, and which file a popped patch may come back from (docs/developer.md §8: "the stack is as
before, or exactly as reported"). benchmarks/mutation.py found these unchecked.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils import _converge
from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import ConvergeResult, RollbackReport
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import ActError
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Step


def live(name, build_id='b1', replace=None):
    return SimpleNamespace(name=name, build_id=build_id, replace=replace, srcversion=None,
                           as_dict=lambda: {'name': name, 'build_id': build_id})


def image(path, build_id):
    return SimpleNamespace(path=path, info=SimpleNamespace(build_id=build_id))


def snapshot(*patches):
    return SimpleNamespace(stack=list(patches), live_stack=list(patches), names=lambda: [p.name for p in patches])


def result(rollback, *now, before=(('a', 'b1'), ('b', 'b1'))):
    return ConvergeResult(failed=True, changed=True, snapshot=snapshot(*now), before=before,
                          error=LivepatchError('load_failed', 'loading patch c failed: ENODEV'), rollback=rollback)


def test_a_rollback_report_says_only_what_happened():
    report = RollbackReport(attempted=False)
    assert (report.reason, report.succeeded, report.as_before, report.steps, report.missing_files,
            report.mismatched) == ('', False, False, 0, (), ())
    assert report.as_dict() == {'attempted': False, 'succeeded': False, 'as_before': False}
    full = RollbackReport(attempted=True, reason='why', succeeded=False, as_before=False, steps=3,
                          missing_files=('a',), mismatched=('b',))
    assert full.as_dict() == {'attempted': True, 'succeeded': False, 'as_before': False, 'reason': 'why', 'steps': 3,
                              'missing_files': ['a'], 'mismatched': ['b']}


def test_the_message_of_a_failed_run_in_each_case():
    a, b = live('a'), live('b')
    assert result(RollbackReport(attempted=True, succeeded=True, as_before=True), a, b).message == (
        'loading patch c failed: ENODEV. Rolled back: the stack is as before the run (a, b).')
    assert result(RollbackReport(attempted=True, reason='unloading module b failed: EAGAIN'), a).message == (
        'loading patch c failed: ENODEV. The stack is now (bottom first): a; rollback failed: '
        'unloading module b failed: EAGAIN.')
    assert result(RollbackReport(attempted=False, reason='rollback=false')).message == (
        'loading patch c failed: ENODEV. The stack is now (bottom first): empty; not rolled back: rollback=false.')
    assert result(RollbackReport(attempted=True, succeeded=True), a).message == (
        'loading patch c failed: ENODEV. The stack is now (bottom first): a; rolled back, but the stack is not as '
        'before the run (a, b).')
    assert result(RollbackReport(attempted=True), a, before=()).message.endswith(
        'not as before the run (empty).')
    assert result(None, a).message == 'loading patch c failed: ENODEV. The stack is now (bottom first): a.'
    ok = ConvergeResult(failed=False, changed=True, snapshot=snapshot(a), before=())
    assert ok.message == '' and ok.as_dict() == {'failed': False, 'changed': True,
                                                 'stack': [{'name': 'a', 'build_id': 'b1'}]}
    failed = result(RollbackReport(attempted=False, reason='nothing had been changed', as_before=True), a, b)
    assert failed.as_dict() == {
        'failed': True, 'changed': True, 'stack': [{'name': 'a', 'build_id': 'b1'}, {'name': 'b', 'build_id': 'b1'}],
        'msg': 'loading patch c failed: ENODEV. Rolled back: the stack is as before the run (a, b).',
        'rule': 'load_failed', 'error_detail': {},
        'rollback': {'attempted': False, 'succeeded': False, 'as_before': True, 'reason': 'nothing had been changed'}}


def test_a_popped_patch_comes_back_only_from_its_own_build():
    file_for = _converge._file_for  # pylint: disable=protected-access
    held = image('/p/a.ko', 'b1')
    # the bytes this run holds, of that build (or of any build when the live one had no build ID)
    assert file_for(live('a'), {'a': held}, {}, None) == (held, '')
    assert file_for(live('a', build_id=None), {'a': held}, {}, None) == (held, '')
    # another build held, nothing known: missing; known but no way to open it: missing
    assert file_for(live('a', 'b0'), {'a': held}, {}, None) == (None, 'missing')
    assert file_for(live('a', 'b0'), {}, {'a': {'path': '/p/a.ko'}}, None) == (None, 'missing')
    opened = []

    def open_image(path):
        opened.append(path)
        return image(path, 'b0')
    assert file_for(live('a', 'b0'), {'a': held}, {'a': {'path': '/p/a.ko', 'build_id': 'b0'}}, open_image) == (
        image('/p/a.ko', 'b0'), '')
    # the journal knows another build of that name: not even opened
    assert file_for(live('a', 'b0'), {}, {'a': {'path': '/p/a.ko', 'build_id': 'b9'}}, open_image) == (
        None, 'missing')
    assert opened == ['/p/a.ko']
    # the file now holds another build than the live one, or the journal's when the live one had none
    assert file_for(live('a', 'b7'), {}, {'a': {'path': '/p/a.ko'}}, open_image) == (None, 'mismatched')
    assert file_for(live('a', None), {}, {'a': {'path': '/p/a.ko', 'build_id': 'b7'}}, open_image) == (
        None, 'mismatched')
    assert file_for(live('a', None), {}, {'a': {'path': '/p/a.ko'}}, open_image) == (image('/p/a.ko', 'b0'), '')

    def refused(path):
        raise LivepatchError('unsafe_path', '%s is writable by others' % path)
    assert file_for(live('a', 'b0'), {}, {'a': {'path': '/p/a.ko'}}, refused) == (None, 'missing')


class FakeExecutor:
    def __init__(self, fail=None):
        self.fail = fail
        self.ran = []

    def wait_idle(self):
        return 0.0

    def run(self, steps, images, phase='apply'):
        self.ran.append((list(steps), dict(images), phase))
        if self.fail:
            raise ActError('load_failed', self.fail)


def plan_of(*steps):
    return lambda snap, wanted: SimpleNamespace(steps=tuple(steps), wanted=wanted)


def roll_back(original, images, planner, known, executor, open_image=None):
    kernel = SimpleNamespace(observe=snapshot)
    return _converge._roll_back(kernel, executor, original, images, planner, known, open_image)  # pylint: disable=protected-access


def test_the_way_back_says_why_it_could_not_be_taken():
    a, b = live('a'), live('b', 'b2', replace=None)
    load_a, load_b = Step(action='load', patch='a', reason='push'), Step(action='load', patch='b', reason='push')

    def cannot(snap, wanted):
        raise LivepatchError('no_unload', 'a disabled patch cannot be unloaded before 4.12')
    report = roll_back([a], {}, cannot, {}, FakeExecutor())
    assert report == RollbackReport(attempted=False, reason='cannot plan the way back: a disabled patch cannot be '
                                    'unloaded before 4.12', missing_files=('a',))

    def other_build(path):
        return image(path, 'b9')
    report = roll_back([a, b], {}, plan_of(load_a, load_b), {'b': {'path': '/p/b.ko'}}, FakeExecutor(), other_build)
    assert report == RollbackReport(
        attempted=False, missing_files=('a',), mismatched=('b',),
        reason='no file is known for a (popped earlier in this run); the file of b now holds another build than the '
               'one that was live, so it was not loaded; the stack cannot be restored and is reported as it is now')

    executor = FakeExecutor(fail='loading patch b failed: EEXIST')
    held = {'a': image('/p/a.ko', 'b1'), 'b': image('/p/b.ko', 'b2')}
    report = roll_back([a, b], held, plan_of(load_a, load_b), {'b': {'replace': True}}, executor)
    assert report == RollbackReport(attempted=True, reason='loading patch b failed: EEXIST', steps=2)
    steps, images, phase = executor.ran[0]
    assert (steps, images, phase) == ([load_a, load_b], held, 'rollback')

    wanted = []
    report = roll_back([a, b], held, lambda snap, want: wanted.extend(want) or SimpleNamespace(steps=(load_b,)),
                       {'b': {'replace': True}}, FakeExecutor())
    assert report == RollbackReport(attempted=True, succeeded=True, steps=1)
    assert [(w.name, w.path, w.build_id, w.replace) for w in wanted] == [
        ('a', '/p/a.ko', 'b1', False), ('b', '/p/b.ko', 'b2', True)]


@pytest.mark.parametrize('replace, known, expected', [(None, {}, False), (None, {'replace': True}, True),
                                                      (False, {'replace': True}, False)])
def test_the_way_back_keeps_what_the_kernel_says_about_replace(replace, known, expected):
    wanted = []
    roll_back([live('a', replace=replace)], {'a': image('/p/a.ko', 'b1')},
              lambda snap, want: wanted.extend(want) or SimpleNamespace(steps=()), {'a': known}, FakeExecutor())
    assert wanted[0].replace is expected
