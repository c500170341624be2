# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""livepatch_stage end to end: the module's ``main()`` in a temporary tree, and the action plugin under ansible-playbook."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import platform
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kernelops.livepatch.plugins.module_utils import _stage, _stage_run
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust, open_module
from ansible_collections.kernelops.livepatch.plugins.modules import livepatch_stage
from ansible_collections.kernelops.livepatch.plugins.plugin_utils import _sources

from collection_tree import collection_tree
from kofactory import make_ko

RUN = '6.1.0-50-amd64'
NEXT = '6.12.117+deb13-amd64'


@pytest.fixture
def env(tmp_path, monkeypatch):
    (tmp_path / 'modules' / NEXT).mkdir(parents=True)
    (tmp_path / 'root' / 'run' / 'systemd' / 'system').mkdir(parents=True)
    owner = (os.getuid(), os.getgid())
    value = _stage.Env(dir=str(tmp_path / 'var'), release=RUN, root=str(tmp_path / 'root'),
                       modules_dir=str(tmp_path / 'modules'), owner=owner,
                       trust=FileTrust(owners=frozenset({owner[0]}), trusted_dirs=(str(tmp_path),)),
                       lock=lambda: HostLock(str(tmp_path / 'lock'), 5))
    monkeypatch.setattr(_stage_run, 'real_env', lambda module: value)
    return value


def run(capsys, check=False, diff=False, **args):
    """The module's JSON result, with its exit status as ``rc``; never an internal error."""
    with patch_module_args(dict(args, _ansible_check_mode=check, _ansible_diff=diff)):
        with pytest.raises(SystemExit) as info:
            livepatch_stage.main()
    return dict(json.loads(capsys.readouterr().out), rc=info.value.code)


def ko(tmp_path, name, release):
    path = tmp_path / ('%s.ko' % name)
    make_ko(str(path), name, release=release)
    return {'src': str(path), 'sha256': hashlib.sha256(path.read_bytes()).hexdigest()}


def test_two_calls_as_the_action_plugin_makes_them(env, tmp_path, capsys):
    a, b = ko(tmp_path, 'lp_a', RUN), ko(tmp_path, 'lp_b', NEXT)
    stacks = [{'release': RUN, 'patches': [a]}, {'release': NEXT, 'patches': [b]}]
    first = run(capsys, stacks=stacks)
    assert first.get('rule') is None, first
    assert first['rc'] == 0 and first['changed'] is False
    assert sorted(item['src'] for item in first['need']) == sorted([a['src'], b['src']])
    assert first['service_mgr'] == 'systemd' and first['release'] == RUN and first['builds'] == {}
    assert not os.path.exists(env.dir)  # asking changes nothing
    staged = {'name': 'lp_b', 'build_id': None, 'release': NEXT, 'vermagic': NEXT, 'livepatch': True}
    controller = {'files': {a['sha256']: {}, b['sha256']: staged}}
    predicted = run(capsys, check=True, diff=True, stacks=stacks, _controller=controller)
    assert predicted['changed'] is True and 'need' not in predicted and not os.path.exists(env.dir)
    assert [d['before_header'] for d in predicted['diff']] == [os.path.join(env.dir, RUN), os.path.join(env.dir, NEXT)]
    assert predicted['diff'][1]['after'].endswith('stack.json: lp_b\n')
    # The controller's build ID must be the file's: the host re-reads the copy and refuses another.
    controller['sources'] = {a['sha256']: a['src'], b['sha256']: b['src']}
    refused = run(capsys, stacks=stacks, _controller=controller)
    assert refused['rc'] == 1 and refused['rule'] == 'bad_patch_file' and 'after the copy' in refused['msg']
    shutil.rmtree(env.dir)
    controller['files'][b['sha256']]['build_id'] = open_module(b['src'], env.trust).info.build_id
    done = run(capsys, stacks=stacks, _controller=controller)
    assert done.get('rule') is None and done['rc'] == 0 and done['changed'] is True and len(done['copied']) == 2
    assert done['staged'] == [{'release': NEXT, 'stack': ['lp_b'], 'status': 'staged'}]
    assert done['patches'] == [{'path': done['copied'][0], 'name': None, 'replace': False, 'requires': []}]
    again = run(capsys, stacks=stacks)
    assert again['changed'] is False and 'need' not in again
    assert again['staged'] == [{'release': NEXT, 'stack': ['lp_b'], 'status': 'unchanged'}]


def test_refusal_is_a_result_with_a_rule(env, tmp_path, capsys):
    result = run(capsys, stacks=[{'release': RUN, 'patches': [{'path': str(tmp_path / 'none.ko')}]}])
    assert result['rc'] == 1 and result['rule'] == 'bad_patch_file' and 'none.ko does not exist' in result['msg']


def test_the_action_plugin_copies_once_and_refuses_a_wrong_checksum(tmp_path):
    """ansible-playbook, connection local: the src is read, sent and copied; the second run changes nothing."""
    patch = tmp_path / 'proj' / 'lp_x.ko'
    patch.parent.mkdir()
    patch.write_bytes(b'only hashed: the running release leaves reading the module to livepatch_stack')
    digest = hashlib.sha256(patch.read_bytes()).hexdigest()

    def play(sha256):
        (tmp_path / 'proj' / 'play.yml').write_text(json.dumps([{'hosts': 'all', 'gather_facts': False, 'tasks': [
            {'kernelops.livepatch.livepatch_stage': {
                'stacks': [{'release': platform.release(), 'patches': [{'src': 'lp_x.ko', 'sha256': sha256}]}],
                'dir': str(tmp_path / 'var')}, 'register': 'out'},
            {'ansible.builtin.copy': {'content': '{{ out | to_json }}', 'dest': str(tmp_path / 'out.json')},
             'delegate_to': 'localhost'}]}]))
        done = subprocess.run([shutil.which('ansible-playbook') or 'ansible-playbook', '-i', 'here,', '-c', 'local',
                               '-e', 'ansible_python_interpreter=' + sys.executable, 'play.yml'],
                              cwd=tmp_path / 'proj', capture_output=True, text=True, check=False, timeout=300,
                              env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_tree(), ANSIBLE_NOCOLOR='1'))
        out = json.loads((tmp_path / 'out.json').read_text()) if done.returncode == 0 else None
        return done, out

    done, out = play(digest)
    assert done.returncode == 0, done.stdout[-3000:]
    dest = os.path.join(str(tmp_path / 'var'), platform.release(), digest[:16], 'lp_x.ko')
    assert out['changed'] is True and out['copied'] == [dest]
    with open(dest, 'rb') as handle:
        assert handle.read() == patch.read_bytes()
    done, out = play(digest)
    assert out['changed'] is False and out['copied'] == []
    done, out = play('0' * 64)
    assert done.returncode != 0
    assert 'lp_x.ko has sha256 %s, not the %s given; nothing on here was changed.' % (digest, '0' * 64) in done.stdout
    assert 'bad_patch_file' in done.stdout


# --- the boot restore's files (restore_install) -------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
UTILS_REL = 'ansible_collections/kernelops/livepatch/plugins/module_utils'


def expected_tree():
    """What the restore directory must hold, read here from the checkout: relative path -> bytes."""
    out = {'livepatch_restore.py': (Path(REPO) / 'roles' / 'livepatch_stack' / 'files' / 'livepatch_restore.py').read_bytes()}
    for path in sorted((Path(REPO) / 'plugins' / 'module_utils').glob('*.py')):
        out['%s/%s' % (UTILS_REL, path.name)] = path.read_bytes()
    return out


def installed(top):
    """relative path -> (bytes, uid, mode) of every regular file below ``top``, and (uid, mode) of each directory."""
    files, dirs = {}, {}
    for where, names, found in os.walk(top):
        st = os.lstat(where)
        dirs[os.path.relpath(where, top)] = (st.st_uid, stat.S_IMODE(st.st_mode))
        for name in found:
            path = os.path.join(where, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                files[os.path.relpath(path, top)] = (Path(path).read_bytes(), st.st_uid, stat.S_IMODE(st.st_mode))
    return files, dirs


@pytest.fixture
def restore(env, tmp_path):
    """Module arguments as the action plugin sends them, with a bundle of every file in the temp tree."""
    files = _sources.restore_files(REPO)
    bundle = tmp_path / 'bundle.json'
    bundle.write_text(_sources.restore_bundle(files, sorted(files)))
    top = str(tmp_path / 'libexec' / 'kernelops-livepatch')
    return {'restore_install': 'present', 'restore_dir': top,
            '_controller': {'restore': _sources.restore_manifest(files), 'bundle': str(bundle)}}


def test_restore_files_check_mode_predicts_the_run_and_a_second_run_changes_nothing(restore, capsys):
    top = restore['restore_dir']
    ask = dict(restore, _controller={'restore': restore['_controller']['restore']})
    first = run(capsys, **ask)
    assert first['rc'] == 0 and first['changed'] is False and not os.path.exists(top)
    assert sorted(first['need_restore']) == sorted(expected_tree())  # nothing there: every file is asked for
    predicted = run(capsys, check=True, diff=True, **ask)
    assert 'need_restore' not in predicted and not os.path.exists(top)  # check mode needs no bytes
    done = run(capsys, diff=True, **restore)
    assert done['rc'] == 0 and done['changed'] is True, done
    assert done['restore_changes'] == predicted['restore_changes'] and done['diff'] == predicted['diff']
    want = expected_tree()
    assert sum(1 for change in done['restore_changes'] if change['action'] == 'copy') == len(want)
    files, dirs = installed(top)
    assert dict((rel, data) for rel, (data, _uid, _mode) in files.items()) == want
    assert set((uid, mode) for _data, uid, mode in files.values()) == {(os.getuid(), 0o644)}
    assert sorted(dirs) == ['.', 'ansible_collections', 'ansible_collections/kernelops',
                            'ansible_collections/kernelops/livepatch', 'ansible_collections/kernelops/livepatch/plugins',
                            UTILS_REL]
    assert set(dirs.values()) == {(os.getuid(), 0o755)}
    assert '(sha256 ' in done['diff'][-1]['after'] and 'livepatch_restore.py' in done['diff'][-1]['after']
    again = run(capsys, check=True, **ask)
    assert (again['changed'], again['restore_changes'], again.get('need_restore')) == (False, [], None)
    again = run(capsys, **ask)
    assert (again['changed'], again['restore_changes'], again.get('need_restore')) == (False, [], None)


def test_restore_files_only_what_differs_a_stale_file_removed_others_left(restore, capsys):
    top = restore['restore_dir']
    assert run(capsys, **restore)['changed'] is True
    utils = os.path.join(top, UTILS_REL)
    with open(os.path.join(utils, '_host.py'), 'a') as handle:
        handle.write('# changed\n')
    os.chmod(os.path.join(utils, '_plan.py'), 0o664)
    os.chmod(os.path.join(top, 'ansible_collections'), 0o775)
    Path(utils, '_gone.py').write_text('# a module_utils file the collection no longer has\n')
    Path(utils, 'notes.txt').write_text('not ours to remove\n')
    os.symlink('_host.py', os.path.join(utils, '_link.py'))
    ask = dict(restore, _controller={'restore': restore['_controller']['restore']})
    first = run(capsys, **ask)
    assert first['need_restore'] == ['%s/_host.py' % UTILS_REL]
    predicted = run(capsys, check=True, **ask)
    want = [{'path': os.path.join(top, 'ansible_collections'), 'action': 'fix'},
            {'path': os.path.join(utils, '_host.py'), 'action': 'copy'},
            {'path': os.path.join(utils, '_plan.py'), 'action': 'fix'},
            {'path': os.path.join(utils, '_gone.py'), 'action': 'remove'}]
    assert predicted['restore_changes'] == want
    done = run(capsys, **restore)
    assert done['restore_changes'] == want and done['changed'] is True
    files, dirs = installed(top)
    assert '%s/_gone.py' % UTILS_REL not in files and files['%s/notes.txt' % UTILS_REL][0] == b'not ours to remove\n'
    assert os.path.islink(os.path.join(utils, '_link.py'))
    assert files['%s/_host.py' % UTILS_REL] == (expected_tree()['%s/_host.py' % UTILS_REL], os.getuid(), 0o644)
    assert files['%s/_plan.py' % UTILS_REL][2] == 0o644 and dirs['ansible_collections'][1] == 0o755
    assert run(capsys, **ask)['changed'] is False


@pytest.mark.parametrize('where', ['', 'ansible_collections', UTILS_REL])
def test_restore_files_refuse_a_symlinked_directory_and_change_nothing(restore, tmp_path, capsys, where):
    top = restore['restore_dir']
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    link = os.path.join(top, where) if where else top
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(str(elsewhere), link)
    before = installed(str(tmp_path / 'libexec'))
    for check in (True, False):
        result = run(capsys, check=check, **restore)
        assert result['rc'] == 1 and result['rule'] == 'unsafe_path' and link + ' is a symbolic link' in result['msg']
    assert installed(str(tmp_path / 'libexec')) == before and list(elsewhere.iterdir()) == []


def test_restore_files_refuse_a_non_regular_file_in_place_of_one(restore, capsys):
    target = os.path.join(restore['restore_dir'], UTILS_REL, '_host.py')
    os.makedirs(target)  # a directory where a module_utils file goes
    result = run(capsys, **restore)
    assert result['rc'] == 1 and result['rule'] == 'not_regular_file', result
    assert sorted(os.listdir(os.path.dirname(target))) == ['_host.py']


def test_restore_files_absent_removes_ours_and_keeps_what_is_not(restore, capsys):
    top = restore['restore_dir']
    assert run(capsys, **restore)['changed'] is True
    cache = os.path.join(top, UTILS_REL, '__pycache__')
    os.mkdir(cache)
    Path(cache, '_host.cpython-311.pyc').write_bytes(b'compiled at boot')
    removal = {'restore_install': 'absent', 'restore_dir': top}
    predicted = run(capsys, check=True, **removal)
    assert predicted['changed'] is True and os.path.exists(os.path.join(top, 'livepatch_restore.py'))
    done = run(capsys, **removal)
    assert done['restore_changes'] == predicted['restore_changes'] and not os.path.lexists(top)
    assert run(capsys, **removal)['changed'] is False
    # Someone else's file keeps its directory, and the ones above it.
    assert run(capsys, **restore)['changed'] is True
    Path(top, 'ansible_collections', 'theirs.txt').write_text('theirs\n')
    assert run(capsys, **removal)['changed'] is True
    files, dirs = installed(top)
    assert list(files) == ['ansible_collections/theirs.txt'] and sorted(dirs) == ['.', 'ansible_collections']


def test_restore_files_a_wrong_copy_changes_nothing(restore, tmp_path, capsys):
    bundle = json.loads(Path(restore['_controller']['bundle']).read_text())
    bundle['%s/_host.py' % UTILS_REL] = base64.b64encode(b'not the file').decode()
    Path(restore['_controller']['bundle']).write_text(json.dumps(bundle))
    result = run(capsys, **restore)
    assert result['rc'] == 1 and result['rule'] == 'internal_error' and '_host.py' in result['msg']
    assert not os.path.exists(str(tmp_path / 'libexec'))


def test_restore_files_not_where_systemd_does_not_run(restore, env, capsys):
    shutil.rmtree(os.path.join(env.root, 'run', 'systemd'))
    result = run(capsys, **restore)
    assert (result['changed'], result['service_mgr'], result['restore_changes']) == (False, 'other', [])
    assert not os.path.exists(restore['restore_dir'])


def test_crash_marker_and_report_are_returned_as_restore(env, capsys):
    assert run(capsys)['restore'] is None
    where = os.path.join(env.dir, RUN)
    os.makedirs(where)
    Path(where, 'restore.marker').write_text(json.dumps({'schema': 1, 'patch': 'lp_b', 'build_id': None,
                                                        'started': '2026-11-30T12:00:00Z'}))
    result = run(capsys)
    assert result['restore'] == {'schema': 1, 'status': None, 'marker': {
        'schema': 1, 'patch': 'lp_b', 'build_id': None, 'started': '2026-11-30T12:00:00Z'}}
    os.unlink(os.path.join(where, 'restore.marker'))
    Path(where, 'restore.json').write_text(json.dumps({
        'schema': 1, 'status': 'skipped_after_crash', 'patch': 'lp_b', 'time': 't', 'rule': 'restore_skipped_after_crash',
        'message': 'm', 'loaded': ['lp_a']}))
    result = run(capsys)
    assert (result['restore']['status'], result['restore']['patch'], result['restore']['marker']) == \
        ('skipped_after_crash', 'lp_b', None)


def test_the_action_plugin_installs_the_restore_in_one_more_call_and_a_no_op_is_one_call(tmp_path):
    """ansible-playbook -vvv, connection local: each module execution is one AnsiballZ_livepatch_stage.py put on the host."""
    top = str(tmp_path / 'libexec' / 'kernelops-livepatch')
    (tmp_path / 'root' / 'run' / 'systemd' / 'system').mkdir(parents=True)  # systemd runs there
    (tmp_path / 'play.yml').write_text(json.dumps([{'hosts': 'all', 'gather_facts': False, 'tasks': [
        {'kernelops.livepatch.livepatch_stage': {'dir': str(tmp_path / 'var'), 'restore_install': 'present',
                                                 'restore_dir': top, 'root': str(tmp_path / 'root')}, 'register': 'out'},
        {'ansible.builtin.copy': {'content': '{{ out | to_json }}', 'dest': str(tmp_path / 'out.json')},
         'delegate_to': 'localhost', 'check_mode': False}]}]))

    def play(*extra, pipelining=False):
        done = subprocess.run([shutil.which('ansible-playbook') or 'ansible-playbook', '-vvv', '-i', 'here,', '-c', 'local',
                               '-e', 'ansible_python_interpreter=' + sys.executable, 'play.yml'] + list(extra),
                              cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300,
                              env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=collection_tree(), ANSIBLE_NOCOLOR='1',
                                       ANSIBLE_PIPELINING=str(pipelining)))
        assert done.returncode == 0, done.stdout[-3000:]
        stage = done.stdout.split('TASK [kernelops.livepatch.livepatch_stage]')[1].split('TASK [')[0]
        if pipelining:  # every command on the host, the module's included
            return json.loads((tmp_path / 'out.json').read_text()), sum(1 for line in stage.splitlines() if ' EXEC ' in line)
        runs = sum(1 for line in stage.splitlines() if ' PUT ' in line and 'AnsiballZ_livepatch_stage.py' in line)
        return json.loads((tmp_path / 'out.json').read_text()), runs

    predicted, runs = play('--check')
    assert (predicted['changed'], runs) == (True, 1) and not os.path.exists(top)
    done, runs = play()
    assert (done['changed'], runs) == (True, 2) and done['restore_changes'] == predicted['restore_changes']
    files, _dirs = installed(top)
    assert dict((rel, data) for rel, (data, _uid, _mode) in files.items()) == expected_tree()
    again, runs = play()
    assert (again['changed'], again['restore_changes'], runs) == (False, [], 1)
    # With pipelining (the lab's and most fleets' setting), a run with nothing to send is one command on the host.
    again, commands = play(pipelining=True)
    assert (again['changed'], commands) == (False, 1)


UNIT = 'kernelops-livepatch-restore.service'
UNIT_TEXT = '[Unit]\nDescription=a test unit\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n\n[Install]\nWantedBy=sysinit.target\n'


@pytest.fixture
def systemctl(monkeypatch):
    """A fake systemctl behind run_command: is-enabled answers from ``state``; every call is recorded."""
    from ansible.module_utils.basic import AnsibleModule
    state = {'enabled': 'disabled', 'calls': [], 'fail': None}

    def run_command(_module, argv, **_kwargs):
        assert argv[0] == 'systemctl', argv
        if argv[1] == 'is-enabled':
            return (0 if state['enabled'] == 'enabled' else 1), state['enabled'] + '\n', ''
        state['calls'].append(argv[1:])
        if argv[1] == state['fail']:
            return 1, '', 'Failed to %s unit: nope\n' % argv[1]
        if argv[1] in ('enable', 'disable'):
            state['enabled'] = argv[1] + 'd'
        return 0, '', ''
    monkeypatch.setattr(AnsibleModule, 'run_command', run_command)
    return state


@pytest.fixture
def unit_args(restore, tmp_path):
    (tmp_path / 'units').mkdir()
    return dict(restore, unit=UNIT, unit_content=UNIT_TEXT, unit_dir=str(tmp_path / 'units'))


def test_unit_check_mode_predicts_the_run_written_after_the_files_then_enabled_and_a_second_run_does_nothing(
        unit_args, systemctl, capsys):
    path = os.path.join(unit_args['unit_dir'], UNIT)
    predicted = run(capsys, check=True, diff=True, **unit_args)
    assert predicted['changed'] is True and not os.path.exists(path) and systemctl['calls'] == []
    assert predicted['restore_changes'][-2:] == [{'path': path, 'action': 'copy'}, {'path': UNIT, 'action': 'enable'}]
    assert predicted['diff'][-1]['after'] == '%s (sha256 %s)\n%s: enabled\n' % (
        path, hashlib.sha256(UNIT_TEXT.encode()).hexdigest(), UNIT)
    done = run(capsys, diff=True, **unit_args)
    assert done['rc'] == 0 and done['restore_changes'] == predicted['restore_changes'] and done['diff'] == predicted['diff']
    assert Path(path).read_text() == UNIT_TEXT and stat.S_IMODE(os.lstat(path).st_mode) == 0o644
    assert systemctl['calls'] == [['enable', UNIT]]  # enable reloads systemd itself
    assert done['unit_state'] == 'disabled'  # as read before the run
    again = run(capsys, **unit_args)
    assert (again['changed'], again['restore_changes'], again['unit_state']) == (False, [], 'enabled')
    assert systemctl['calls'] == [['enable', UNIT]]


def test_unit_only_what_differs_enabled_again_after_a_new_text_a_mode_fixed_without_systemctl(
        unit_args, systemctl, capsys):
    path = os.path.join(unit_args['unit_dir'], UNIT)
    assert run(capsys, **unit_args)['changed'] is True
    os.chmod(path, 0o664)
    fixed = run(capsys, **unit_args)
    assert fixed['restore_changes'] == [{'path': path, 'action': 'fix'}] and stat.S_IMODE(os.lstat(path).st_mode) == 0o644
    assert systemctl['calls'] == [['enable', UNIT]]
    new = dict(unit_args, unit_content=UNIT_TEXT.replace('a test unit', 'another text'))
    changed = run(capsys, **new)
    assert changed['restore_changes'] == [{'path': path, 'action': 'copy'}, {'path': UNIT, 'action': 'enable'}]
    assert Path(path).read_text() == new['unit_content']
    assert systemctl['calls'][1:] == [['enable', UNIT]]


def test_unit_absent_disables_and_removes_before_the_files_and_leaves_a_mask(unit_args, systemctl, capsys):
    path = os.path.join(unit_args['unit_dir'], UNIT)
    assert run(capsys, **unit_args)['changed'] is True
    removal = dict(unit_args, restore_install='absent')
    predicted = run(capsys, check=True, **removal)
    assert predicted['restore_changes'][:2] == [{'path': UNIT, 'action': 'disable'}, {'path': path, 'action': 'remove'}]
    assert os.path.exists(path) and systemctl['enabled'] == 'enabled'
    done = run(capsys, **removal)
    assert done['restore_changes'] == predicted['restore_changes'] and not os.path.lexists(path)
    assert systemctl['calls'][1:] == [['disable', UNIT], ['daemon-reload']]
    assert not os.path.lexists(unit_args['restore_dir'])
    assert run(capsys, **removal)['changed'] is False
    os.symlink('/dev/null', path)  # masked by the admin: not ours to remove
    assert run(capsys, **removal)['changed'] is False and os.path.islink(path)


def test_unit_refuses_a_symlink_in_its_place_and_a_failing_systemctl_has_a_rule(unit_args, systemctl, tmp_path, capsys):
    path = os.path.join(unit_args['unit_dir'], UNIT)
    os.symlink('/dev/null', path)
    for check in (True, False):
        result = run(capsys, check=check, **unit_args)
        assert result['rc'] == 1 and result['rule'] == 'not_regular_file' and path in result['msg'], result
    assert os.path.islink(path) and systemctl['calls'] == []
    os.unlink(path)
    systemctl['fail'] = 'enable'
    failed = run(capsys, **unit_args)
    assert failed['rc'] == 1 and failed['rule'] == 'systemctl_failed' and 'Failed to enable unit: nope' in failed['msg']
    bad = run(capsys, **dict(unit_args, unit='../evil.service'))
    assert bad['rc'] == 1 and bad['rule'] == 'bad_input' and not os.path.lexists(str(tmp_path / 'evil.service'))


def test_unit_left_alone_without_its_text_or_without_systemd(unit_args, systemctl, env, capsys):
    path = os.path.join(unit_args['unit_dir'], UNIT)
    without = dict(unit_args)
    del without['unit_content']
    assert all(change['path'] not in (path, UNIT) for change in run(capsys, **without)['restore_changes'])
    assert not os.path.lexists(path)
    shutil.rmtree(os.path.join(env.root, 'run', 'systemd'))
    result = run(capsys, **unit_args)
    assert (result['changed'], result['restore_changes']) == (False, []) and not os.path.lexists(path)
    assert systemctl['calls'] == []
