# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""livepatch_stage end to end: the module's ``main()`` in a temporary tree, and the action plugin under ansible-playbook."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.kernelops.livepatch.plugins.module_utils import _stage, _stage_run
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust, open_module
from ansible_collections.kernelops.livepatch.plugins.modules import livepatch_stage

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
