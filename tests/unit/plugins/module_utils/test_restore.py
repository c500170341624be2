# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot-time restore (``_restore.main``) on the kernel model, for every era the model knows.

Issue 11: one code path (the modules' planner, executor, file trust and journal), the crash-loop
guard, the skip switch. What a test expects is written here from the record it wrote and the
model's own state (``live_builds``), not read back through the code under test.
"""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kernelops.livepatch.plugins.module_utils import _restore, _runner
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock, Journal
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust
from ansible_collections.kernelops.livepatch.plugins.modules import livepatch_info, livepatch_stack

from kernel_model import RELEASES, KernelModel
from kofactory import make_ko

ERAS = sorted(RELEASES)


class PowerLoss(BaseException):
    """The host died: no code of the restore runs after it (not an Exception it could catch)."""


class Boot:
    """A host with a boot record under ``state/RELEASE`` and a kernel model booted fresh per ``boot()``."""

    def __init__(self, tmp_path, version):
        self.tmp = tmp_path
        self.version = version
        self.files = tmp_path / 'files'
        self.files.mkdir()
        self.dir = tmp_path / 'state'
        self.release = RELEASES[version]
        self.release_dir = self.dir / self.release
        self.trust = FileTrust(trusted_dirs=(str(tmp_path),))
        self.boots = 0
        self.model = None
        self.boot()

    def boot(self):
        """A fresh kernel: nothing loaded; /run (journal, lock) is a tmpfs and starts empty."""
        self.boots += 1
        root = self.tmp / ('root%d' % self.boots)
        root.mkdir()
        self.root = str(root)
        self.model = KernelModel(self.root, self.version)
        return self.model

    def ko(self, name, build='v1', **kwargs):
        path = str(self.files / ('%s.ko' % name))
        build_id = make_ko(path, name, release=self.release, build=build, **kwargs)
        return {'name': name, 'path': path, 'build_id': build_id, 'replace': bool(kwargs.get('replace'))}

    def record(self, entries, **extra):
        self.release_dir.mkdir(parents=True, exist_ok=True)
        data = dict({'schema': 2, 'kernel_release': self.release, 'stack': entries}, **extra)
        (self.release_dir / 'stack.json').write_text(json.dumps(data))

    def restore(self, cmdline='BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro'):
        os.makedirs(os.path.join(self.root, 'proc'), exist_ok=True)
        with open(os.path.join(self.root, 'proc', 'cmdline'), 'w') as handle:
            handle.write(cmdline + '\n')
        return _restore.main(['--root', self.root, '--dir', str(self.dir), '--timeout', '5'],
                             kernel=self.model, trust=self.trust)

    def report(self):
        with open(str(self.release_dir / 'restore.json')) as handle:
            return json.load(handle)

    @property
    def marker(self):
        return self.release_dir / 'restore.marker'

    def live(self):
        return self.model.live_builds()


@pytest.fixture(params=ERAS)
def boot(request, tmp_path):
    return Boot(tmp_path, request.param)


def builds(entries):
    return [(entry['name'], entry['build_id']) for entry in entries]


def test_clean_restore_loads_the_record_in_order_and_reports_ok(boot, capsys):
    entries = [boot.ko('lp_a'), boot.ko('lp_b'), boot.ko('lp_c')]
    boot.record(entries)
    assert boot.restore() == 0
    assert boot.live() == builds(entries)
    assert [event[1] for event in boot.model.events if event[0] == 'start'] == ['lp_a', 'lp_b', 'lp_c']
    report = boot.report()
    assert (report['schema'], report['status'], report['loaded'], report['rule']) == (1, 'ok', ['lp_a', 'lp_b', 'lp_c'], '')
    assert not boot.marker.exists()
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line[:3] in ('<3>', '<4>', '<5>', '<6>') for line in lines)
    assert sum('lp_b: live' in line for line in lines) == 1
    assert boot.model.violations == [] and boot.model.ebusy == 0


def test_already_live_loads_nothing(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries)
    assert boot.restore() == 0
    starts = len(boot.model.events)
    assert boot.restore() == 0  # the unit started again by hand: nothing to do
    assert boot.live() == builds(entries) and len(boot.model.events) == starts
    assert (boot.report()['status'], boot.report()['loaded']) == ('ok', [])


def test_only_what_is_missing_on_top_is_pushed(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries[:1])
    assert boot.restore() == 0
    boot.record(entries)
    assert boot.restore() == 0
    assert boot.live() == builds(entries) and boot.report()['loaded'] == ['lp_b']


def test_a_file_rebuilt_since_the_record_is_refused_and_nothing_loaded(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries)
    boot.ko('lp_b', build='v2')  # same path, another build
    assert boot.restore() == 1
    assert boot.live() == []
    report = boot.report()
    assert (report['status'], report['rule'], report['patch'], report['loaded']) == ('failed', 'build_changed', 'lp_b', [])
    assert entries[1]['build_id'] in report['message']


def test_an_unsafe_file_is_refused_with_the_modules_rule(boot):
    entries = [boot.ko('lp_a')]
    boot.record(entries)
    os.chmod(entries[0]['path'], 0o666)
    boot.trust = FileTrust()  # no test seam: /tmp is world-writable, as a careless host's dir would be
    assert boot.restore() == 1
    assert boot.live() == [] and boot.report()['rule'] == 'unsafe_path'


def test_an_unsigned_file_under_sig_enforce_is_refused_before_anything_is_loaded(boot):
    entries = [boot.ko('lp_a', signed=True), boot.ko('lp_b')]
    boot.record(entries)
    boot.model.sig_enforce = True
    assert boot.restore() == 1
    # The kernel alone would have taken lp_a and refused lp_b: half a stack at boot.
    assert boot.live() == []
    report = boot.report()
    assert (report['status'], report['rule'], report['patch'], report['loaded']) == ('failed', 'unsigned_module', 'lp_b', [])


def test_signed_files_under_sig_enforce_are_restored(boot):
    entries = [boot.ko('lp_a', signed=True), boot.ko('lp_b', signed=True)]
    boot.record(entries)
    boot.model.sig_enforce = True
    assert boot.restore() == 0
    assert boot.live() == builds(entries)


def test_a_live_stack_that_is_not_a_bottom_part_of_the_record_is_never_popped(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries[1:])
    assert boot.restore() == 0
    boot.record(entries)  # lp_a below the live lp_b: would need a pop
    assert boot.restore() == 1
    assert boot.live() == builds(entries[1:])
    # 4.0-4.11 cannot unload a patch module at all: the planner refuses first (docs/developer.md §2.2).
    assert boot.report()['rule'] == ('no_unload' if boot.version == '4.9' else 'restore_would_pop')


def test_a_crash_during_a_load_leaves_the_marker_and_the_next_boot_skips_that_patch_and_above(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b'), boot.ko('lp_c')]
    boot.record(entries)

    def crash(_model):
        marker = json.loads(boot.marker.read_text())
        assert (marker['schema'], marker['patch'], marker['build_id']) == (1, 'lp_b', entries[1]['build_id'])
        raise PowerLoss()
    boot.model.on_event(crash, 'load', 'lp_b')
    with pytest.raises(PowerLoss):
        boot.restore()
    assert boot.marker.exists()
    for _again in range(2):  # the guard holds until the operator clears it
        boot.boot()
        assert boot.restore() == 1
        assert boot.live() == builds(entries[:1])
        report = boot.report()
        assert (report['status'], report['rule'], report['patch']) == \
            ('skipped_after_crash', 'restore_skipped_after_crash', 'lp_b')
        assert 'lp_b, lp_c' in report['message'] and report['loaded'] == ['lp_a']
    # The loads of lp_a overwrote and cleared the marker; the report keeps the guard.
    assert not boot.marker.exists()
    (boot.release_dir / 'restore.json').unlink()
    boot.boot()
    assert boot.restore() == 0 and boot.live() == builds(entries)


def test_a_planted_marker_for_the_bottom_patch_loads_nothing(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries)
    boot.marker.write_text(json.dumps({'schema': 1, 'patch': 'lp_a', 'build_id': entries[0]['build_id'],
                                       'started': '2026-11-30T18:00:00Z'}))
    assert boot.restore() == 1
    assert boot.live() == []
    report = boot.report()
    assert (report['status'], report['patch'], report['loaded']) == ('skipped_after_crash', 'lp_a', [])
    assert '2026-11-30T18:00:00Z' in report['message'] and report['time'] == '2026-11-30T18:00:00Z'
    assert boot.marker.exists()


def test_a_damaged_marker_still_counts_as_a_crash(boot):
    entries = [boot.ko('lp_a')]
    boot.record(entries)
    boot.marker.write_text('{"schema": 1, "patch": ')
    assert boot.restore() == 1
    assert boot.live() == [] and boot.report()['status'] == 'skipped_after_crash'


def test_a_failed_load_clears_the_marker_and_reports_failed(boot):
    entries = [boot.ko('lp_a'), boot.ko('lp_b', pre_patch=19)]
    boot.record(entries)
    assert boot.restore() == 1
    assert boot.live() == builds(entries[:1])  # never taken out again at boot
    report = boot.report()
    assert (report['status'], report['rule'], report['loaded']) == ('failed', 'load_failed', ['lp_a'])
    assert not boot.marker.exists()


@pytest.mark.parametrize('content, words', [
    ('[1, 2]', 'not a JSON object'),
    ('{"schema": 2, "kernel_release": "%s", "stack": {"name": "lp_a"}}', 'stack is not a list'),
    ('{"schema": 9, "kernel_release": "%s", "stack": []}', 'schema 9'),
    ('{"schema": 2, "kernel_release": "%s", "stack": [{"name": "lp_a", "path": "rel/lp_a.ko"}]}', 'not absolute'),
    ('not json', 'cannot be read as JSON'),
])
def test_a_record_of_another_shape_is_refused_and_nothing_loaded(boot, content, words):
    boot.ko('lp_a')
    boot.release_dir.mkdir(parents=True)
    (boot.release_dir / 'stack.json').write_text(content.replace('%s', boot.release))
    assert boot.restore() == 1
    assert boot.live() == []
    report = boot.report()
    assert (report['status'], report['rule']) == ('failed', 'bad_record') and words in report['message']


def test_a_record_of_another_release_is_refused(boot):
    entries = [boot.ko('lp_a')]
    boot.record(entries, kernel_release='5.10.0-99-amd64')
    assert boot.restore() == 1
    assert boot.live() == [] and boot.report()['rule'] == 'release_mismatch'


def test_the_skip_switch_loads_nothing(boot):
    entries = [boot.ko('lp_a')]
    boot.record(entries)
    assert boot.restore(cmdline='BOOT_IMAGE=/vmlinuz ro kernelops.livepatch=0 quiet') == 0
    assert boot.live() == []
    assert (boot.report()['status'], boot.report()['loaded']) == ('skipped_by_switch', [])
    assert boot.restore(cmdline='ro kernelops.livepatch=01') == 0  # another value is not the switch
    assert boot.live() == builds(entries)


def test_nothing_recorded(boot):
    boot.release_dir.mkdir(parents=True)
    assert boot.restore() == 0
    assert boot.report()['status'] == 'nothing_recorded' and boot.live() == []


def run_module(module, capsys, **args):
    with patch_module_args(args), pytest.raises(SystemExit):
        module.main()
    return json.loads(capsys.readouterr().out)


def test_the_journal_makes_restored_patches_ours_for_a_later_module_run(boot, capsys, monkeypatch):
    """Without ``record``, the restored patches are ours (not foreign); a failed push rolls back to them."""
    if boot.version == '4.9':
        pytest.skip('4.9 cannot unload patch modules: no pop to roll back')
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries)
    assert boot.restore() == 0
    capsys.readouterr()
    info = run_module(livepatch_info, capsys, root=boot.root)
    assert [(p['name'], p['origin']) for p in info['stack']] == [('lp_a', 'ours'), ('lp_b', 'ours')]
    journal = Journal(os.path.join(boot.root, 'run', 'kernelops-livepatch'))
    host = _runner.Host(kernel=boot.model, lock=HostLock(str(boot.tmp / 'module.lock'), 5, boot.model.clock),
                        journal=journal, is_root=True, trust=boot.trust)
    monkeypatch.setattr(_runner, 'real_host', lambda module: host)
    bad = boot.ko('lp_c', pre_patch=19)
    result = run_module(livepatch_stack, capsys, stack=[{'path': entries[0]['path']}, {'path': bad['path']}])
    assert result['rule'] == 'load_failed', result
    assert result['rollback']['as_before'] is True
    assert boot.live() == builds(entries)
    result = run_module(livepatch_stack, capsys, stack=[{'path': entries[0]['path']}])
    assert result.get('failed') is not True and boot.live() == builds(entries[:1])


def test_livepatch_info_returns_the_restore_report_and_a_marker_left(boot, capsys):
    entries = [boot.ko('lp_a'), boot.ko('lp_b')]
    boot.record(entries)
    record = str(boot.release_dir / 'stack.json')
    assert run_module(livepatch_info, capsys, root=boot.root, record=record)['restore'] is None
    assert 'restore' not in run_module(livepatch_info, capsys, root=boot.root)
    boot.marker.write_text(json.dumps({'schema': 1, 'patch': 'lp_b', 'build_id': entries[1]['build_id'],
                                       'started': '2026-11-30T18:00:00Z'}))
    info = run_module(livepatch_info, capsys, root=boot.root, record=record)
    assert info['restore']['marker']['patch'] == 'lp_b' and info['restore']['status'] is None
    assert boot.restore() == 1
    capsys.readouterr()
    restore = run_module(livepatch_info, capsys, root=boot.root, record=record)['restore']
    assert (restore['status'], restore['patch'], restore['time'], restore['loaded']) == \
        ('skipped_after_crash', 'lp_b', '2026-11-30T18:00:00Z', ['lp_a'])
    assert restore['marker'] is None  # the load of lp_a reused and cleared it; the report keeps the guard
