# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's file handling (``_stage`` on the host, ``_sources`` on the controller), in a temporary tree.

``stage()`` runs the two halves the way the action plugin does: decide with nothing read on the
controller, check what the host lacks on the controller, decide again, then carry it out with the
controller's files as the copies sent. Expected values are written out per case, not derived
from the code under test.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils import _stage
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import FileTrust
from ansible_collections.kernelops.livepatch.plugins.plugin_utils import _sources

from kofactory import make_ko

RUN = '6.1.0-50-amd64'
NEXT = '6.12.117+deb13-amd64'
GONE = '6.1.0-40-amd64'


class Tree:
    """A host in a temporary directory: DIR, /lib/modules, a lock, and the controller's files."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.dir = str(tmp_path / 'var')
        self.modules = tmp_path / 'modules'
        self.modules.mkdir()
        (self.modules / RUN).mkdir()
        self.src = tmp_path / 'src'
        self.src.mkdir()
        owner = (os.getuid(), os.getgid())
        self.env = _stage.Env(dir=self.dir, release=RUN, root=str(tmp_path), modules_dir=str(self.modules),
                              trust=FileTrust(owners=frozenset({owner[0]}), trusted_dirs=(str(tmp_path),)),
                              owner=owner, lock=lambda: HostLock(str(tmp_path / 'lock'), 5))

    def install(self, release):
        (self.modules / release).mkdir()

    def ko(self, name, release=RUN, build='v1', **kwargs):
        path = self.src / ('%s-%s-%s.ko' % (name, release, build))
        build_id = make_ko(str(path), name, release=release, build=build, **kwargs)
        return {'src': str(path), 'sha256': hashlib.sha256(path.read_bytes()).hexdigest(), 'build_id': build_id}

    def files(self):
        """Every file under DIR, relative, with its mode."""
        out = {}
        for where, _dirs, names in os.walk(self.dir):
            for name in names:
                path = os.path.join(where, name)
                out[os.path.relpath(path, self.dir)] = oct(stat.S_IMODE(os.lstat(path).st_mode))
        return out


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


def entry(patch, **extra):
    out = {'src': patch['src'], 'sha256': patch['sha256']}
    out.update(extra)
    return out


def stage(tree, stacks, push=None, check=False, remove_old=True):
    """(decision, copied) of one run, as the action plugin drives it."""
    running, staged = _stage.targets_from(stacks, push, RUN, lambda r: (tree.modules / r).is_dir())
    _stage.check_sha256s(([running] if running else []) + staged)
    args = dict(remove_old=remove_old, current=RUN)
    decision = _stage.decide(running, staged, tree.env, controller={}, **args)
    sources = {}
    if decision.need:
        files = _sources.check_needed(decision.need, 'host1')
        sources = dict((item['sha256'], item['src']) for item in decision.need)
        decision = _stage.decide(running, staged, tree.env, controller=files, **args)
        assert not decision.need
    if check or not decision.changes:
        return decision, []
    return decision, _stage.carry_out(decision, sources, tree.env)


def record(tree, release):
    with open(os.path.join(tree.dir, release, 'stack.json')) as handle:
        return json.load(handle)


def test_running_release_copies_once_then_finds_everything_right(tree):
    a = tree.ko('lp_a')
    decision, copied = stage(tree, [{'release': RUN, 'patches': [entry(a, name='lp_a', requires=[])]}])
    dest = os.path.join(tree.dir, RUN, a['sha256'][:16], os.path.basename(a['src']))
    assert copied == [dest]
    assert decision.running == ({'path': dest, 'name': 'lp_a', 'replace': False, 'requires': []},)
    assert tree.files() == {os.path.relpath(dest, tree.dir): '0o644'}
    assert oct(stat.S_IMODE(os.stat(os.path.dirname(dest)).st_mode)) == '0o755'
    assert decision.staged() == []  # the running release's record is livepatch_stack's
    again, copied = stage(tree, [{'release': RUN, 'patches': [entry(a, name='lp_a')]}])
    assert copied == [] and not again.changes and again.files[0]['state'] == 'right'


def test_staged_release_gets_its_files_and_record_then_is_unchanged(tree):
    tree.install(NEXT)
    a, b = tree.ko('lp_a', NEXT), tree.ko('lp_b', NEXT)
    stacks = [{'release': RUN, 'patches': []},
              {'release': NEXT, 'patches': [entry(a, replace=True), entry(b)]},
              {'release': '9.9.9-not-installed', 'patches': [entry(tree.ko('lp_c', '9.9.9-not-installed'))]}]
    decision, copied = stage(tree, stacks)
    assert decision.staged() == [{'release': NEXT, 'stack': ['lp_a', 'lp_b'], 'status': 'staged'}]
    assert len(copied) == 2
    assert record(tree, NEXT) == {'schema': 2, 'kernel_release': NEXT, 'stack': [
        {'name': 'lp_a', 'path': os.path.join(tree.dir, NEXT, a['sha256'][:16], os.path.basename(a['src'])),
         'build_id': a['build_id'], 'replace': True},
        {'name': 'lp_b', 'path': os.path.join(tree.dir, NEXT, b['sha256'][:16], os.path.basename(b['src'])),
         'build_id': b['build_id'], 'replace': False}]}
    assert not os.path.exists(os.path.join(tree.dir, '9.9.9-not-installed'))
    again, copied = stage(tree, stacks)
    assert copied == [] and not again.changes
    assert again.staged() == [{'release': NEXT, 'stack': ['lp_a', 'lp_b'], 'status': 'unchanged'}]


def test_check_mode_predicts_the_run_exactly_and_changes_nothing(tree):
    tree.install(NEXT)
    a, b = tree.ko('lp_a'), tree.ko('lp_b', NEXT)
    stacks = [{'release': RUN, 'patches': [entry(a)]}, {'release': NEXT, 'patches': [entry(b)]}]
    predicted = stage(tree, stacks, check=True)[0]
    assert tree.files() == {}
    real = stage(tree, stacks)[0]
    assert predicted == real
    assert predicted.staged() == [{'release': NEXT, 'stack': ['lp_b'], 'status': 'staged'}]
    assert [item['state'] for item in predicted.files] == ['copy', 'copy']


# Refusals: (case, stacks made from the tree, rule, words in the message). Each leaves DIR empty.
REFUSALS = [
    ('staged file built for another kernel', lambda t: [{'release': NEXT, 'patches': [entry(t.ko('lp_a', RUN))]}],
     'release_mismatch', 'was built for kernel %s' % RUN),
    ('staged file is no livepatch', lambda t: [{'release': NEXT, 'patches': [entry(t.ko('lp_a', NEXT, livepatch=False))]}],
     'not_livepatch', 'is not a livepatch module'),
    ('staged file is another module than named',
     lambda t: [{'release': NEXT, 'patches': [entry(t.ko('lp_a', NEXT), name='lp_z')]}], 'name_mismatch', 'not lp_z'),
    ('staged stack names a patch twice',
     lambda t: [{'release': NEXT, 'patches': [entry(t.ko('lp_a', NEXT)), entry(t.ko('lp_a', NEXT, build='v2'))]}],
     'duplicate_name', 'names lp_a twice'),
    ('wrong sha256 on the controller', lambda t: [{'release': RUN, 'patches': [
        dict(entry(t.ko('lp_a')), sha256='0' * 64)]}], 'bad_patch_file', 'has sha256 '),
    ('missing controller file', lambda t: [{'release': RUN, 'patches': [{'src': str(t.src / 'nope.ko'), 'sha256': 'a' * 64}]}],
     'bad_patch_file', 'nope.ko does not exist on the controller; nothing on host1 was changed.'),
    ('controller path is a directory', lambda t: [{'release': RUN, 'patches': [{'src': str(t.src), 'sha256': 'a' * 64}]}],
     'bad_patch_file', 'is not a regular file'),
    ('sha256 that is not one', lambda t: [{'release': RUN, 'patches': [{'src': '/x/lp.ko', 'sha256': 'abc'}]}],
     'bad_input', 'patch 1 (/x/lp.ko): sha256 must be 64 hex digits, not abc'),
    ('two entries for one release', lambda t: [{'release': RUN, 'patches': []}, {'release': RUN, 'patches': []}],
     'bad_input', 'has 2 entries for release %s; give one.' % RUN),
    ('host path missing', lambda t: [{'release': RUN, 'patches': [{'path': str(t.tmp / 'nowhere.ko')}]}],
     'bad_patch_file', 'nowhere.ko does not exist on the host'),
    ('host path with another sha256', lambda t: [{'release': RUN, 'patches': [
        {'path': t.ko('lp_a')['src'], 'sha256': 'b' * 64}]}], 'bad_patch_file', 'not the %s given' % ('b' * 64)),
    ('staged host path built for another kernel', lambda t: [{'release': NEXT, 'patches': [
        {'path': t.ko('lp_a', RUN)['src']}]}], 'release_mismatch', 'the release it is staged for'),
]


@pytest.mark.parametrize('case,stacks,rule,words', REFUSALS, ids=[case[0] for case in REFUSALS])
def test_refusals_change_nothing(tree, case, stacks, rule, words):
    tree.install(NEXT)
    given = stacks(tree)
    if all(item['release'] != RUN for item in given):
        # A good file for the running release too: it is not copied either.
        given = [{'release': RUN, 'patches': [entry(tree.ko('lp_good'))]}] + given
    with pytest.raises(LivepatchError) as info:
        stage(tree, given)
    assert info.value.rule == rule, info.value.message
    assert words in info.value.message
    assert tree.files() == {}


def test_old_release_directories_are_removed_only_when_ours_and_not_installed(tree):
    tree.install(NEXT)
    os.makedirs(os.path.join(tree.dir, GONE, 'abcd'))
    with open(os.path.join(tree.dir, GONE, 'stack.json'), 'w') as handle:
        json.dump({'schema': 2, 'kernel_release': GONE, 'stack': [{'name': 'lp_a', 'path': None, 'build_id': None,
                                                                   'replace': False}]}, handle)
    os.makedirs(os.path.join(tree.dir, 'no-record'))                      # not ours: no record
    os.makedirs(os.path.join(tree.dir, 'other-release'))                  # a record of another release: not ours
    with open(os.path.join(tree.dir, 'other-release', 'stack.json'), 'w') as handle:
        json.dump({'schema': 2, 'kernel_release': 'x', 'stack': []}, handle)
    os.makedirs(os.path.join(tree.dir, NEXT))                              # installed: kept
    with open(os.path.join(tree.dir, NEXT, 'stack.json'), 'w') as handle:
        json.dump({'schema': 2, 'kernel_release': NEXT, 'stack': []}, handle)
    os.symlink(os.path.join(tree.dir, GONE), os.path.join(tree.dir, 'link'))  # a symlink is never followed
    kept = stage(tree, [], remove_old=False)[0]
    assert kept.remove == () and os.path.isdir(os.path.join(tree.dir, GONE))
    decision = stage(tree, [])[0]
    assert decision.staged() == [{'release': GONE, 'stack': ['lp_a'], 'status': 'removed'}]
    assert sorted(os.listdir(tree.dir)) == sorted([NEXT, 'no-record', 'other-release', 'link'])
    again = stage(tree, [])[0]
    assert not again.changes


def test_a_file_with_the_right_bytes_but_wrong_mode_is_fixed(tree):
    a = tree.ko('lp_a')
    stage(tree, [{'release': RUN, 'patches': [entry(a)]}])
    (dest,) = [os.path.join(tree.dir, name) for name in tree.files()]
    os.chmod(dest, 0o664)
    decision, copied = stage(tree, [{'release': RUN, 'patches': [entry(a)]}])
    assert [item['state'] for item in decision.files] == ['fix'] and copied == []
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o644


def test_something_else_in_the_way_is_refused(tree):
    a = tree.ko('lp_a')
    dest = os.path.join(tree.dir, RUN, a['sha256'][:16], os.path.basename(a['src']))
    os.makedirs(os.path.dirname(dest))
    os.mkfifo(dest)
    with pytest.raises(LivepatchError) as info:
        stage(tree, [{'release': RUN, 'patches': [entry(a)]}])
    assert info.value.rule == 'not_regular_file'
    assert stat.S_ISFIFO(os.lstat(dest).st_mode)


def test_a_copy_that_arrives_damaged_is_not_installed(tree, tmp_path):
    a = tree.ko('lp_a')
    running, staged = _stage.targets_from([{'release': RUN, 'patches': [entry(a)]}], None, RUN, lambda r: False)
    decision = _stage.decide(running, staged, tree.env, remove_old=True, current=RUN, controller={a['sha256']: {}})
    damaged = tmp_path / 'damaged'
    damaged.write_bytes(b'x' + open(a['src'], 'rb').read()[1:])
    with pytest.raises(LivepatchError) as info:
        _stage.carry_out(decision, {a['sha256']: str(damaged)}, tree.env)
    assert info.value.rule == 'bad_patch_file' and 'arrived with sha256' in info.value.message
    assert [name for name in tree.files() if not name.startswith('.')] == []
    assert all('.' not in os.path.basename(name)[:1] for name in tree.files())


def test_pop_mode_pushes_on_the_running_release_and_stages_nothing(tree):
    tree.install(NEXT)
    a, b = tree.ko('lp_a'), tree.ko('lp_b', NEXT)
    decision, copied = stage(tree, [{'release': NEXT, 'patches': [entry(b)]}], push=[entry(a)])
    assert decision.staged() == [] and len(copied) == 1 and decision.running[0]['path'] == copied[0]
    assert not os.path.exists(os.path.join(tree.dir, NEXT))


SRC_BASES = [
    # (src_dir, playbook_dir, expected base): the collection's own playbooks dir means the working directory.
    ('/proj/files', '/play', '/proj/files'),
    ('', '/play', '/play'),
    ('', None, '/cwd'),
    ('', '{root}/playbooks', '/cwd'),
]


@pytest.mark.parametrize('src_dir,playbook_dir,expected', SRC_BASES)
def test_src_base(tmp_path, src_dir, playbook_dir, expected):
    (tmp_path / 'playbooks').mkdir()
    playbook = playbook_dir.format(root=tmp_path) if playbook_dir else None
    assert _sources.src_base(src_dir, playbook, str(tmp_path), '/cwd') == expected


def test_relative_src_is_resolved_against_the_base():
    args = _sources.resolve_src({'stacks': [{'release': RUN, 'patches': [{'src': 'p/a.ko'}, {'src': '/abs/b.ko'},
                                                                         {'path': '/h/c.ko'}]}], 'push': None}, '/base')
    assert [p.get('src') or p['path'] for p in args['stacks'][0]['patches']] == ['/base/p/a.ko', '/abs/b.ko', '/h/c.ko']
