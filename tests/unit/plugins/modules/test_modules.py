# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The three modules end to end (``main()``), with the kernel model standing in for the host."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kernelops.livepatch.plugins.module_utils import _runner
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock, Journal
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust
from ansible_collections.kernelops.livepatch.plugins.module_utils._snapshot import ModuleSignatures
from ansible_collections.kernelops.livepatch.plugins.module_utils._spec import livepatch_spec, livepatch_stack_spec
from ansible_collections.kernelops.livepatch.plugins.modules import livepatch, livepatch_info, livepatch_stack

from kernel_model import KernelModel
from kofactory import make_ko


class Host:
    """The kernel model, a lock file and a journal under tmp_path, standing in for the managed host."""

    def __init__(self, tmp_path, monkeypatch, version='7.2', root=True):
        (tmp_path / 'root').mkdir()
        self.model = KernelModel(str(tmp_path / 'root'), version)
        self.dir = tmp_path / 'files'
        self.dir.mkdir()
        self.lock_path = str(tmp_path / 'lock')
        self.journal = Journal(str(tmp_path / 'root' / 'run' / 'kernelops-livepatch'))  # where livepatch_info reads it
        self.root = root
        self.locks = []
        # Test-only seam: pytest's tmp_path lies under the sticky, world-writable /tmp.
        self.trust = FileTrust(trusted_dirs=(str(tmp_path),))
        monkeypatch.setattr(_runner, 'real_host', self.host)

    def host(self, module):
        lock = HostLock(self.lock_path, module.params['lock_timeout'], self.model.clock)
        self.locks.append(lock)
        return _runner.Host(kernel=self.model, lock=lock, journal=self.journal, is_root=self.root, trust=self.trust)

    def ko(self, name, build='v1', **kwargs):
        path = str(self.dir / ('%s-%s.ko' % (name, build)))
        kwargs.setdefault('release', self.model.release)
        make_ko(path, name, build=build, **kwargs)
        return path


@pytest.fixture
def host(tmp_path, monkeypatch):
    return Host(tmp_path, monkeypatch)


def run(module, capsys, check=False, diff=False, **args):
    if check:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args), pytest.raises(SystemExit) as info:
        module.main()
    result = json.loads(capsys.readouterr().out)
    result['rc'] = info.value.code
    # A bug must never pass for a refusal: no scenario of these tests may end in one.
    assert result.get('rule') != 'internal_error', result
    return result


def stack(host, capsys, names, check=False, diff=False, **extra):
    entries = [{'path': host.ko(*name.split('@'))} if isinstance(name, str) else name for name in names]
    return run(livepatch_stack, capsys, check=check, diff=diff, stack=entries, **extra)


def test_info_reads_the_model(host, capsys):
    stack(host, capsys, ['a', 'b'])
    result = run(livepatch_info, capsys, root=host.model.root)
    assert result['rc'] == 0 and result['changed'] is False
    assert [p['name'] for p in result['stack']] == ['a', 'b']
    assert result['order_source'] == 'stack_order'
    assert result['capabilities']['era'] == '5.1+'
    assert result['transition'] is None


def test_info_publishes_its_result_as_a_fact_only_when_asked(host, capsys):
    stack(host, capsys, ['a', 'b'])
    plain = run(livepatch_info, capsys, root=host.model.root)
    assert 'ansible_facts' not in plain
    published = run(livepatch_info, capsys, root=host.model.root, facts=True)
    fact = published['ansible_facts']['kernelops_livepatch']
    assert [p['name'] for p in fact['stack']] == ['a', 'b'] == [p['name'] for p in published['stack']]
    assert fact['kernel_release'] == host.model.release and fact['foreign'] == []
    assert 'warnings_seen' not in fact and 'ansible_facts' not in fact


def test_info_bad_root(capsys, tmp_path):
    result = run(livepatch_info, capsys, root=str(tmp_path / 'missing'))
    assert result['rc'] == 1 and 'does not exist' in result['msg'] and result['rule'] == 'bad_root'


def test_check_mode_predicts_the_run_exactly_and_diff_shows_the_stack(host, capsys):
    stack(host, capsys, ['a', 'b', 'c'])
    predicted = stack(host, capsys, ['a', 'd', 'e'], check=True, diff=True)
    assert predicted['changed'] is True
    assert host.model.live_names() == ['a', 'b', 'c']  # check mode changed nothing
    assert predicted['diff']['before'].splitlines()[1].startswith('2. b (build ')
    assert [line.split(' (')[0] for line in predicted['diff']['after'].splitlines()] == ['1. a', '2. d', '3. e']
    real = stack(host, capsys, ['a', 'd', 'e'], diff=True)
    assert real['rc'] == 0
    assert [(s['action'], s['patch']) for s in real['steps']] == [(s['action'], s['patch']) for s in predicted['plan']]
    assert real['plan'] == predicted['plan']
    assert all(s['outcome'] == 'ok' and s['duration_ms'] >= 0 for s in real['steps'])
    assert [p['name'] for p in real['stack']] == ['a', 'd', 'e']
    assert real['diff']['after'] == predicted['diff']['after']


def test_second_run_changes_nothing(host, capsys):
    first = stack(host, capsys, ['a', 'b'])
    again = stack(host, capsys, ['a', 'b'])
    assert first['changed'] is True and again['changed'] is False and again['plan'] == []
    assert 'steps' not in again


def test_pop_to_and_push(host, capsys):
    stack(host, capsys, ['a', 'b', 'c'])
    result = run(livepatch_stack, capsys, pop_to=1, push=[{'path': host.ko('d')}, {'path': host.ko('e')}])
    assert result['rc'] == 0 and result['stack_after'] == ['a', 'd', 'e']
    assert host.model.live_names() == ['a', 'd', 'e']
    again = run(livepatch_stack, capsys, pop_to=3, push=[])
    assert again['changed'] is False


def test_pop_to_beyond_the_stack_is_refused(host, capsys):
    stack(host, capsys, ['a'])
    result = run(livepatch_stack, capsys, pop_to=2, push=[])
    assert result['rc'] == 1 and result['rule'] == 'pop_to_beyond_stack'
    assert 'only 1 patches (a)' in result['msg']


@pytest.mark.parametrize('make, rule, words', [
    (lambda h: {'path': '/nonexistent/x.ko'}, 'missing_file', 'does not exist'),
    (lambda h: {'path': h.ko('plain', livepatch=False)}, 'not_livepatch', 'livepatch=Y'),
    (lambda h: {'path': h.ko('a', release='6.1.0-50-amd64')}, 'release_mismatch', 'built for kernel 6.1.0-50-amd64'),
    (lambda h: {'path': h.ko('a'), 'name': 'b'}, 'name_mismatch', 'is module a, not b'),
    (lambda h: {'path': h.ko('R', replace=True), 'replace': True}, 'replace_not_at_bottom', 'only stand at the bottom'),
])
def test_bad_input_is_refused_with_nothing_changed(host, capsys, make, rule, words):
    stack(host, capsys, ['a'])
    before = host.model.events[:]
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}, make(host)])
    assert result['rc'] == 1 and result['rule'] == rule, result
    assert words in result['msg']
    assert host.model.events == before and host.model.live_names() == ['a']


def test_not_a_module_at_all(host, capsys, tmp_path):
    junk = tmp_path / 'junk.ko'
    junk.write_bytes(b'not an elf file')
    result = run(livepatch_stack, capsys, stack=[{'path': str(junk)}])
    assert result['rc'] == 1 and result['rule'] == 'not_a_module' and 'not an ELF file' in result['msg']


def test_duplicate_names_refused(host, capsys):
    result = stack(host, capsys, ['a', 'a@v2'])
    assert result['rc'] == 1 and result['rule'] == 'duplicate_name'
    assert host.model.live_names() == []


def test_not_root_is_refused_but_check_mode_works(tmp_path, monkeypatch, capsys):
    host = Host(tmp_path, monkeypatch, root=False)
    predicted = stack(host, capsys, ['a'], check=True)
    assert predicted['rc'] == 0 and predicted['changed'] is True
    result = stack(host, capsys, ['a'])
    assert result['rc'] == 1 and result['rule'] == 'not_root'
    assert host.model.live_names() == []


def test_running_transition_with_wait_false_changes_nothing(host, capsys):
    host.model.blocked = True
    host.model.insmod(host.ko('lab_block', block=True))
    result = stack(host, capsys, ['lab_block', 'a'], wait=False)
    assert result['rc'] == 1 and result['rule'] == 'transition_running'
    assert 'lab_block' in result['msg']
    assert host.model.events == [('start', 'lab_block', True)]


def test_no_livepatch_support(tmp_path, monkeypatch, capsys):
    host = Host(tmp_path, monkeypatch)
    import shutil
    shutil.rmtree(host.model.root + '/sys/kernel/livepatch')
    host.model.render = lambda: None
    result = stack(host, capsys, ['a'])
    assert result['rc'] == 1 and result['rule'] == 'no_livepatch'


def test_stall_fails_with_blockers_and_the_stack_as_before(host, capsys):
    stack(host, capsys, ['a'])
    host.model.blocked = True
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}, {'path': host.ko('lab_block', block=True)}],
                 timeout=1.5)
    assert result['rc'] == 1
    assert 'reversed' in result['msg'] and 'Rolled back' in result['msg']
    assert result['error_detail']['blockers'][0]['comm'] == 'lab_busy'
    assert [p['name'] for p in result['stack']] == ['a']
    assert result['steps'][0]['outcome'] == 'reversed'


def test_single_patch_push_and_pop(host, capsys):
    result = run(livepatch, capsys, path=host.ko('a'))
    assert result['changed'] and host.model.live_names() == ['a']
    assert run(livepatch, capsys, path=host.ko('a'))['changed'] is False
    run(livepatch, capsys, path=host.ko('b'))
    refused = run(livepatch, capsys, name='a', state='absent')
    assert refused['rc'] == 1 and refused['rule'] == 'not_on_top' and refused['patches'] == ['b']
    popped = run(livepatch, capsys, name='a', state='absent', pop_above=True)
    assert popped['rc'] == 0 and popped['stack_after'] == [] and host.model.live_names() == []
    assert run(livepatch, capsys, name='a', state='absent')['changed'] is False


def test_single_patch_new_build_on_top_is_swapped(host, capsys):
    run(livepatch, capsys, path=host.ko('a'))
    result = run(livepatch, capsys, path=host.ko('a', 'v2'))
    assert [(s['action'], s['patch']) for s in result['steps']] == [('disable', 'a'), ('unload', 'a'), ('load', 'a')]


def test_single_replace_patch_takes_the_whole_stack(host, capsys):
    run(livepatch, capsys, path=host.ko('a'))
    result = run(livepatch, capsys, path=host.ko('R', replace=True), replace=True)
    assert result['rc'] == 0 and result['stack_after'] == ['R']
    assert [(s['action'], s['patch']) for s in result['steps']] == [('load', 'R'), ('unload', 'a')]


def test_undeclared_replace_patch_is_reported(host, capsys):
    run(livepatch, capsys, path=host.ko('a'))
    result = run(livepatch, capsys, path=host.ko('R', replace=True))
    assert result['rc'] == 1 and result['rule'] == 'unexpected_result'
    assert 'replace=true' in result['msg']


def test_record_writes_the_stack_for_boot_restore(host, capsys, tmp_path):
    record = str(tmp_path / 'state' / 'stack.json')
    first = stack(host, capsys, ['a', 'b'], record=record)
    assert first['record'] == record
    with open(record) as handle:
        data = json.load(handle)
    assert data['kernel_release'] == host.model.release
    assert [(e['name'], e['path'].endswith('b-v1.ko')) for e in data['stack']] == [('a', False), ('b', True)]
    assert all(e['build_id'] and e['path'] for e in data['stack'])
    # kept patches keep their recorded path after pop_to
    result = run(livepatch_stack, capsys, pop_to=1, push=[{'path': host.ko('c')}], record=record)
    with open(record) as handle:
        data = json.load(handle)
    assert [e['name'] for e in data['stack']] == ['a', 'c'] and data['stack'][0]['path'].endswith('a-v1.ko')
    again = run(livepatch_stack, capsys, pop_to=2, push=[], record=record)
    assert again['changed'] is False and result['changed'] is True


def test_check_mode_plans_files_not_copied_yet(host, capsys, tmp_path):
    stack(host, capsys, ['a'])
    predicted = run(livepatch_stack, capsys, check=True,
                    stack=[{'path': host.ko('a')}, {'path': str(tmp_path / 'later' / 'lab_new.ko')}])
    assert predicted['rc'] == 0 and predicted['stack_after'] == ['a', 'lab_new']
    real = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}, {'path': str(tmp_path / 'later' / 'lab_new.ko')}])
    assert real['rc'] == 1 and real['rule'] == 'missing_file'


def test_stall_left_running_reports_changed(host, capsys):
    host.model.blocked = True
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('lab_block', block=True)}], timeout=1.0,
                 on_stall='fail')
    assert result['rc'] == 1 and result['changed'] is True
    assert result['steps'][0]['outcome'] == 'stalled'
    assert 'left running' in result['msg']
    assert host.model.transition_patch() == 'lab_block'


def test_refusal_before_acting_reports_unchanged(host, capsys):
    host.model.blocked = True
    host.model.insmod(host.ko('lab_block', block=True))
    result = stack(host, capsys, ['lab_block', 'a'], wait=False)
    assert result['rc'] == 1 and result['changed'] is False


def test_nothing_to_do_still_reports_a_forced_leftover(host, capsys):
    run(livepatch_stack, capsys, stack=[{'path': host.ko('lab_block', block=True)}])
    host.model.blocked = True
    popped = run(livepatch_stack, capsys, stack=[], timeout=1.0, on_stall='force')
    assert popped['rc'] == 0 and popped['reboot_required'] is True and popped['forced'] == ['lab_block']
    assert [(s['action'], s['outcome']) for s in popped['steps']] == [('disable', 'ok'), ('unload', 'skipped')]
    again = run(livepatch_stack, capsys, stack=[])
    assert again['changed'] is False and again['reboot_required'] is True
    assert [(x['name'], x['state']) for x in again['leftovers']] == [('lab_block', 'forced')]


def test_forced_patching_of_a_plain_patch_does_not_pin_it_since_5_18(host, capsys):
    host.model.blocked = True
    pushed = run(livepatch_stack, capsys, stack=[{'path': host.ko('lab_block', block=True)}], timeout=1.0,
                 on_stall='force')
    # livepatch.rst: after any force "reboot should be planned"; but the module itself stays removable
    assert pushed['rc'] == 0 and pushed['reboot_required'] is True
    host.model.blocked = False
    assert pushed['forced'] == ['lab_block']
    popped = run(livepatch_stack, capsys, stack=[])
    assert popped['rc'] == 0 and popped['leftovers'] == [] and host.model.live_names() == []


# -- the boot record is written under the host lock (issue 10, finding 5) ----------------------

class LockThen:
    """A host lock that runs ``then`` right after it is released: an overlapping run's chance."""

    def __init__(self, lock, then):
        self.lock, self.then = lock, then

    def __enter__(self):
        self.lock.__enter__()
        return self

    def __exit__(self, *exc):
        self.lock.__exit__(*exc)
        then, self.then = self.then, None
        if then is not None:
            then()
        return False


def wrap_next_lock(host, monkeypatch, wrap):
    """The next run's host lock is ``wrap(lock)``; the runs after it get a plain lock."""
    make_host = host.host

    def first_host(module):
        made = make_host(module)
        monkeypatch.setattr(_runner, 'real_host', make_host)
        return _runner.Host(kernel=made.kernel, lock=wrap(made.lock), journal=made.journal,
                            is_root=True, trust=made.trust)

    monkeypatch.setattr(_runner, 'real_host', first_host)


def read_record(path):
    with open(path) as handle:
        return json.load(handle)


def test_overlapping_changing_runs_leave_the_record_equal_to_the_kernel(host, capsys, monkeypatch, tmp_path):
    record = str(tmp_path / 'state' / 'stack.json')
    stack(host, capsys, ['a'], record=record)
    a, b, c = host.ko('a'), host.ko('b'), host.ko('c')
    seen = {}

    def second_run():
        seen['second'] = run(livepatch_stack, capsys, stack=[{'path': a}, {'path': c}], record=record)

    wrap_next_lock(host, monkeypatch, lambda lock: LockThen(lock, second_run))
    first = run(livepatch_stack, capsys, stack=[{'path': a}, {'path': b}], record=record)
    assert first['rc'] == 0 and seen['second']['rc'] == 0, (first, seen)
    assert host.model.live_names() == ['a', 'c']
    assert [entry['name'] for entry in read_record(record)['stack']] == host.model.live_names()


class RunBeforeLock(object):
    """The host lock, with another run let in just before this run asks for it."""

    def __init__(self, lock, before):
        self.lock, self.before = lock, before

    def __enter__(self):
        before, self.before = self.before, None
        if before is not None:
            before()
        self.lock.__enter__()
        return self

    def __exit__(self, *exc):
        self.lock.__exit__(*exc)
        return False


def test_a_run_with_a_record_plans_from_what_it_reads_under_the_lock(host, capsys, monkeypatch, tmp_path):
    # The stack is already as wanted when the run starts; another run changes it right before
    # this one takes the lock. The run must plan from the stack under the lock (and change it
    # back), not from a look taken before, and leave the record equal to the kernel.
    record = str(tmp_path / 'stack.json')
    a, b, c = host.ko('a'), host.ko('b'), host.ko('c')
    stack(host, capsys, [a.rsplit('/', 1)[1][:-6] + '@v1', 'b'], record=record)
    seen = {}

    def second_run():
        seen['second'] = run(livepatch_stack, capsys, stack=[{'path': a}, {'path': c}], record=record)

    wrap_next_lock(host, monkeypatch, lambda lock: RunBeforeLock(lock, second_run))
    first = run(livepatch_stack, capsys, stack=[{'path': a}, {'path': b}], record=record)
    assert first['rc'] == 0 and seen['second']['rc'] == 0, (first, seen)
    assert seen['second']['stack'][-1]['name'] == 'c'
    assert first['stack_before'] == ['a', 'c'] and first['changed'] is True
    assert host.model.live_names() == ['a', 'b']
    assert [entry['name'] for entry in read_record(record)['stack']] == host.model.live_names()


# -- paths and the record's shape (issue 10, finding 8, module side) -------------------------

def test_relative_path_is_refused_before_anything_changes(host, capsys, monkeypatch):
    stack(host, capsys, ['a'])
    before = host.model.events[:]
    monkeypatch.chdir(str(host.dir))
    for check in (False, True):
        result = run(livepatch_stack, capsys, check=check, stack=[{'path': host.ko('a')}, {'path': 'b-v1.ko'}])
        assert result['rc'] == 1 and result['rule'] == 'relative_path' and 'b-v1.ko' in result['msg'], result
    single = run(livepatch, capsys, path='./b-v1.ko')
    assert single['rc'] == 1 and single['rule'] == 'relative_path'
    assert host.model.events == before and host.model.live_names() == ['a']


def test_record_paths_are_absolute_and_normalised(host, capsys, tmp_path):
    record = str(tmp_path / 'stack.json')
    host.ko('a')
    messy = str(host.dir) + '/.//../files/a-v1.ko'
    result = run(livepatch_stack, capsys, stack=[{'path': messy}], record=record)
    assert result['rc'] == 0
    data = read_record(record)
    assert data['schema'] == 2
    assert data['stack'][0]['path'] == str(host.dir / 'a-v1.ko')


@pytest.mark.parametrize('content, words', [
    ('{not json', 'cannot be read as JSON'),
    ('[]', 'not a JSON object'),
    ('{"schema": 3, "kernel_release": "x", "stack": []}', 'schema 3'),
    ('{"schema": 2, "stack": []}', 'kernel_release is missing'),
    ('{"schema": 2, "kernel_release": "x", "stack": {"name": "a"}}', 'stack is not a list'),
    ('{"schema": 2, "kernel_release": "x", "stack": ["a"]}', 'stack entry 1 is not an object'),
    ('{"schema": 2, "kernel_release": "x", "stack": [{"path": "/a.ko"}]}', 'stack entry 1 has no name'),
    ('{"schema": 2, "kernel_release": "x", "stack": [{"name": "a", "path": "a.ko", "replace": false}]}',
     'not absolute and normalised'),
    ('{"schema": 2, "kernel_release": "x", "stack": [{"name": "a", "path": null, "replace": "yes"}]}',
     'replace is not true or false'),
])
def test_a_record_of_another_shape_is_refused_with_nothing_changed(host, capsys, tmp_path, content, words):
    stack(host, capsys, ['a'])
    before = host.model.events[:]
    record = tmp_path / 'stack.json'
    record.write_text(content)
    for check in (False, True):
        result = run(livepatch_stack, capsys, check=check, stack=[{'path': host.ko('a')}, {'path': host.ko('b')}],
                     record=str(record))
        assert result['rc'] == 1 and result['rule'] == 'bad_record', result
        assert words in result['msg'] and str(record) in result['msg']
    assert host.model.events == before and host.model.live_names() == ['a']
    assert record.read_text() == content


def test_a_record_written_by_0_1_0_is_read_and_rewritten_as_schema_2(host, capsys, tmp_path):
    record = tmp_path / 'stack.json'
    path = host.ko('a')
    record.write_text(json.dumps({'kernel_release': host.model.release,
                                  'stack': [{'name': 'a', 'path': path, 'build_id': None, 'replace': False}]}))
    result = run(livepatch_stack, capsys, stack=[{'path': path}], record=str(record))
    assert result['rc'] == 0 and read_record(str(record))['schema'] == 2


# -- one error type, and a JSON result whatever happens ---------------------------------------

def test_lock_timeout_is_a_rule(host, capsys):
    import fcntl
    import os
    fd = os.open(host.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        result = stack(host, capsys, ['a'], lock_timeout=0.5)
    finally:
        os.close(fd)
    assert result['rc'] == 1 and result['rule'] == 'lock_timeout' and result['lock'] == host.lock_path
    assert host.model.live_names() == [] and result['changed'] is False


def test_an_unexpected_exception_still_gives_json_with_the_stack(host, capsys, monkeypatch):
    stack(host, capsys, ['a'])

    def broken(*args, **kwargs):
        raise ZeroDivisionError('a bug')

    monkeypatch.setattr(_runner, 'plan_stack', broken)
    with patch_module_args({'stack': [{'path': host.ko('a')}]}), pytest.raises(SystemExit) as info:
        livepatch_stack.main()
    result = json.loads(capsys.readouterr().out)
    assert info.value.code == 1 and result['rule'] == 'internal_error'
    assert 'ZeroDivisionError: a bug' in result['msg']
    assert [patch['name'] for patch in result['stack']] == ['a']


def test_every_refusal_names_its_rule_and_patches(host, capsys):
    stack(host, capsys, ['a'])
    result = run(livepatch_stack, capsys, pop_to=-1)
    assert result['rc'] == 1 and result['rule'] == 'bad_input' and result['patches'] == []


# -- patches this collection did not load (issue 10, finding 7) -------------------------------

def foreign_host(host, capsys, tmp_path):
    """Live: f (loaded by another tool, not in our journal), then a (ours)."""
    host.model.insmod(host.ko('f'))
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('f')}, {'path': host.ko('a')}], foreign='keep')
    assert result['rc'] == 0 and host.model.live_names() == ['f', 'a']
    return host


def test_foreign_patch_is_refused_by_default_naming_it_and_its_position(host, capsys, tmp_path):
    foreign_host(host, capsys, tmp_path)
    before = host.model.events[:]
    for check in (True, False):
        result = run(livepatch_stack, capsys, check=check, stack=[{'path': host.ko('b')}])
        assert result['rc'] == 1 and result['rule'] == 'foreign_patch', result
        assert result['patches'] == ['f'] and 'position 1' in result['msg']
        assert result['foreign'] == [{'name': 'f', 'build_id': result['foreign'][0]['build_id'], 'position': 1}]
    single = run(livepatch, capsys, path=host.ko('R', replace=True), replace=True)
    assert single['rc'] == 1 and single['rule'] == 'foreign_patch'
    assert host.model.events == before and host.model.live_names() == ['f', 'a']


def test_foreign_keep_converges_above_them_and_does_not_record_them(host, capsys, tmp_path):
    foreign_host(host, capsys, tmp_path)
    record = str(tmp_path / 'stack.json')
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('b')}], foreign='keep', record=record)
    assert result['rc'] == 0 and host.model.live_names() == ['f', 'b'], result
    assert result['stack_after'] == ['f', 'b'] and [p['name'] for p in result['foreign']] == ['f']
    assert [entry['name'] for entry in read_record(record)['stack']] == ['b']
    again = run(livepatch_stack, capsys, stack=[{'path': host.ko('b')}], foreign='keep', record=record)
    assert again['rc'] == 0 and again['changed'] is False


def test_foreign_pop_pops_them_and_a_recorded_patch_counts_as_ours(host, capsys, tmp_path):
    foreign_host(host, capsys, tmp_path)
    popped = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}], foreign='pop')
    assert popped['rc'] == 0 and host.model.live_names() == ['a']
    host.model.insmod(host.ko('g'))   # another tool's patch, but the boot record names it
    record = tmp_path / 'stack.json'
    live = dict((p['name'], p['build_id']) for p in popped['stack'])
    build = run(livepatch_info, capsys, root=host.model.root)['stack'][1]['build_id']
    record.write_text(json.dumps({'schema': 2, 'kernel_release': host.model.release, 'stack': [
        {'name': 'a', 'path': host.ko('a'), 'build_id': live['a'], 'replace': False},
        {'name': 'g', 'path': host.ko('g'), 'build_id': build, 'replace': False}]}))
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}], record=str(record))
    assert result['rc'] == 0 and host.model.live_names() == ['a'], result


def test_info_marks_each_live_patch_ours_or_foreign(host, capsys, tmp_path):
    foreign_host(host, capsys, tmp_path)
    result = run(livepatch_info, capsys, root=host.model.root)
    assert [(p['name'], p['origin']) for p in result['stack']] == [('f', 'foreign'), ('a', 'ours')]
    assert [(p['name'], p['position']) for p in result['foreign']] == [('f', 1)]
    record = tmp_path / 'stack.json'
    record.write_text(json.dumps({'schema': 2, 'kernel_release': host.model.release, 'stack': [
        {'name': 'f', 'path': None, 'build_id': result['stack'][0]['build_id'], 'replace': False}]}))
    with_record = run(livepatch_info, capsys, root=host.model.root, record=str(record))
    assert [p['origin'] for p in with_record['stack']] == ['ours', 'ours'] and with_record['foreign'] == []
    record.write_text('{"schema": 2}')
    bad = run(livepatch_info, capsys, root=host.model.root, record=str(record))
    assert bad['rc'] == 1 and bad['rule'] == 'bad_record'


# -- the file that is checked is the file that is loaded (issue 10, findings 1 and signatures) --

@pytest.mark.parametrize('spoil, rule', [
    (lambda path: os.chmod(path, 0o666), 'unsafe_path'),
    (lambda path: os.chmod(os.path.dirname(path), 0o777), 'unsafe_path'),
    (lambda path: os.chown(path, 65534, 65534), 'unsafe_path'),
    (lambda path: (os.rename(path, path + '.real'), os.symlink(path + '.real', path)), 'not_regular_file'),
    (lambda path: (os.unlink(path), os.mkfifo(path)), 'not_regular_file'),
])
def test_a_file_others_could_change_is_refused_before_anything_changes(host, capsys, spoil, rule):
    stack(host, capsys, ['a'])
    before = host.model.events[:]
    os.mkdir(str(host.dir / 'b'))
    path = str(host.dir / 'b' / 'b.ko')
    os.rename(host.ko('b'), path)
    spoil(path)
    for check in (True, False):
        result = run(livepatch_stack, capsys, check=check, stack=[{'path': host.ko('a')}, {'path': path}])
        assert result['rc'] == 1 and result['rule'] == rule and result['patches'] == [path], result
    assert host.model.events == before and host.model.live_names() == ['a']


def test_the_default_trust_is_root_only_and_no_option_weakens_it(tmp_path, monkeypatch):
    module = type('Module', (), {'params': {'lock_timeout': 1.0}})()
    assert _runner.real_host(module).trust == FileTrust()
    assert FileTrust().owners == frozenset({0}) and FileTrust().trusted_dirs == ()
    for spec in (livepatch_stack_spec(), livepatch_spec()):
        assert not {'trust', 'owners', 'trusted_dirs'} & set(spec['argument_spec'])


def enforce_signatures(host, monkeypatch):
    observe = host.model.observe
    enforced = ModuleSignatures(enforced=True, reason='module.sig_enforce is Y (/sys/module/module/parameters/sig_enforce)')

    def observe_enforcing(*args, **kwargs):
        return dataclasses.replace(observe(*args, **kwargs), module_signatures=enforced)

    monkeypatch.setattr(host.model, 'observe', observe_enforcing)


def test_an_unsigned_module_is_refused_when_the_kernel_enforces_signatures(host, capsys, monkeypatch):
    stack(host, capsys, ['a'])
    before = host.model.events[:]
    enforce_signatures(host, monkeypatch)
    for check in (True, False):
        result = run(livepatch_stack, capsys, check=check, stack=[{'path': host.ko('a')}, {'path': host.ko('b')}])
        assert result['rc'] == 1 and result['rule'] == 'unsigned_module' and result['patches'] == ['b'], result
        assert 'sig_enforce is Y' in result['msg']
    assert host.model.events == before and host.model.live_names() == ['a']
    signed = host.ko('b', 'v2', signed=True)
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}, {'path': signed}])
    assert result['rc'] == 0 and host.model.live_names() == ['a', 'b']


def test_unsigned_modules_load_when_the_kernel_does_not_enforce_signatures(host, capsys):
    result = stack(host, capsys, ['a'])
    assert result['rc'] == 0 and host.model.live_names() == ['a']


# -- the run loads the bytes it verified and reports what converge saw (findings 1, 3, 4) ----

def test_a_file_swapped_during_a_pop_does_not_reach_the_kernel(host, capsys):
    stack(host, capsys, ['a', 'b'])
    path = host.ko('b', 'v2')
    verified = run(livepatch_info, capsys, root=host.model.root)  # nothing live from v2 yet
    assert [p['name'] for p in verified['stack']] == ['a', 'b']
    from kofactory import make_ko as write_ko
    swapped = {}

    def swap(model):  # while b v1 is being disabled, another build lands at v2's path
        swapped['build'] = write_ko(path, 'b', build='evil', release=model.release)

    host.model.on_event(swap, 'start', 'b', False)
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}, {'path': path}])
    assert result['rc'] == 0 and swapped, result
    live = dict(host.model.live_builds())
    assert live['b'] != swapped['build']
    assert live['b'] == [p for p in result['stack'] if p['name'] == 'b'][0]['build_id']


def test_changed_and_the_message_follow_what_converge_saw(host, capsys):
    stack(host, capsys, ['a'])
    result = run(livepatch_stack, capsys, stack=[{'path': host.ko('a')}, {'path': host.ko('bad', pre_patch=1)}])
    assert result['rc'] == 1 and result['rule'] == 'load_failed', result
    assert result['changed'] is False and result['rollback']['attempted'] is False
    assert 'the stack is as before the run (a)' in result['msg'] and host.model.live_names() == ['a']
    popped = run(livepatch_stack, capsys, stack=[{'path': host.ko('b')}, {'path': host.ko('bad', pre_patch=1)}],
                 foreign='pop')
    assert popped['rc'] == 1 and popped['changed'] is True
    assert popped['rollback']['as_before'] is True and 'Rolled back: the stack is as before' in popped['msg']
    assert host.model.live_names() == ['a']


def test_info_turns_a_bug_into_a_json_failure(host, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError('a bug')

    monkeypatch.setattr(livepatch_info, 'foreign_patches', broken)
    with patch_module_args({'root': host.model.root}), pytest.raises(SystemExit) as info:
        livepatch_info.main()
    result = json.loads(capsys.readouterr().out)
    assert info.value.code == 1 and result['rule'] == 'internal_error' and "KeyError: 'a bug'" in result['msg']
