# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import contextlib
import os

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils import _observe
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    ERA_FREE, ERA_IMMEDIATE, ERA_STACKED, ObserveError, capabilities_for, decode_taint, observe,
)

from sysfs_trees import base, patch_files, proc_modules, write_tree

BUILD_A = 'aa' * 20
BUILD_B = 'bb' * 20


def tree(tmp_path, *parts):
    merged = {}
    for part in parts:
        merged.update(part)
    return write_tree(str(tmp_path), merged)


def test_no_livepatch_support(tmp_path):
    root = tree(tmp_path, {'proc/sys/kernel/osrelease': '6.1.0-50-amd64\n', 'proc/modules': ''})
    snap = observe(root)
    assert snap.livepatch_supported is False
    assert snap.stack == ()
    assert snap.kernel_release == '6.1.0-50-amd64'


def test_root_that_does_not_exist(tmp_path):
    with pytest.raises(ObserveError, match='does not exist'):
        observe(str(tmp_path / 'nope'))


def test_empty_stack_on_6_12(tmp_path):
    snap = observe(tree(tmp_path, base('6.12.117+deb13-amd64', '0'), proc_modules([])))
    assert snap.livepatch_supported
    assert snap.stack == ()
    assert snap.capabilities.era == ERA_FREE
    assert snap.capabilities.source == 'release'
    assert snap.capabilities.replace and not snap.capabilities.stack_order
    assert snap.order_source == 'proc_modules'
    assert snap.taint == {'value': 0, 'letters': '', 'livepatch': False}


def test_6_1_order_from_proc_modules_newest_first(tmp_path):
    """6.1 has no stack_order: the order is /proc/modules reversed (§4.2)."""
    root = tree(tmp_path, base('6.1.0-50-amd64'),
                patch_files('lab_a', extra={'force': ''}, patched='1', build_id=BUILD_A),
                patch_files('lab_b', extra={'force': ''}, patched='1', build_id=BUILD_B),
                proc_modules([('lab_b', 1, 'OEK'), ('lab_a', 1, 'OEK')]))
    snap = observe(root)
    assert snap.names() == ['lab_a', 'lab_b']
    assert snap.order_source == 'proc_modules'
    assert snap.capabilities.era == ERA_FREE and snap.capabilities.source == 'attributes'
    assert snap.capabilities.patched and not snap.capabilities.replace
    first = snap.stack[0].as_dict()
    assert first['build_id'] == BUILD_A
    assert first['objects'] == [{'name': 'vmlinux', 'patched': True, 'functions': ['lab_a_func,1']}]
    assert first['replace'] is None and first['stack_order'] is None
    assert snap.taint['livepatch'] and snap.taint['letters'] == 'OEK'


def test_7_x_stack_order_wins_over_module_order(tmp_path):
    root = tree(tmp_path, base('7.2.13+deb14-amd64'),
                patch_files('lab_a', extra={'force': '', 'replace': '0\n', 'stack_order': '2\n'}, patched='1'),
                patch_files('lab_b', extra={'force': '', 'replace': '0\n', 'stack_order': '1\n'}, patched='1'),
                proc_modules([('lab_b', 1, 'OEK'), ('lab_a', 1, 'OEK')]))
    snap = observe(root)
    assert snap.order_source == 'stack_order'
    assert snap.names() == ['lab_b', 'lab_a']
    assert snap.capabilities.stack_order and snap.capabilities.replace


def test_6_12_replace_attribute(tmp_path):
    root = tree(tmp_path, base('6.12.117+deb13-amd64'),
                patch_files('lab_replace', extra={'force': '', 'replace': '1\n'}, patched='1'),
                proc_modules([('lab_replace', 1, 'OEK'), ('lab_a', 0, 'OEK')]))
    snap = observe(root)
    assert snap.stack[0].replace is True
    assert [leftover.as_dict() for leftover in snap.leftovers] == [
        {'name': 'lab_a', 'refcnt': 0, 'taint': 'OEK', 'build_id': None, 'state': 'retired', 'reboot_required': False}]
    assert not snap.reboot_required


def test_forced_leftover_needs_reboot(tmp_path):
    """A forced module keeps refcnt 1 and has no sysfs directory (§5.4, §8 rule 8)."""
    root = tree(tmp_path, base('6.1.0-50-amd64'), proc_modules([('lab_c', 1, 'OEK')]),
                {'sys/module/lab_c/refcnt': '1\n'})
    snap = observe(root)
    assert snap.stack == ()
    assert snap.leftovers[0].state == 'forced'
    assert snap.reboot_required


def test_4_x_with_signal_and_disabled_patch_listed(tmp_path):
    """4.15-5.0: signal exists, disabled patches stay listed (§2.2)."""
    root = tree(tmp_path, base('4.19.0-27-amd64'),
                patch_files('lab_a', extra={'signal': '', 'force': ''}),
                patch_files('lab_b', enabled='0', extra={'signal': '', 'force': ''}, refcnt='0'),
                proc_modules([('lab_b', 0, 'OEK'), ('lab_a', 1, 'OEK')]))
    snap = observe(root)
    assert snap.capabilities.era == ERA_STACKED
    assert snap.capabilities.signal and snap.capabilities.reenable and snap.capabilities.enforced_stacking
    assert [p.name for p in snap.stack] == ['lab_a', 'lab_b']
    assert snap.names() == ['lab_a']
    assert snap.leftovers == ()


def test_backported_kernel_follows_its_attributes(tmp_path):
    """A 4.18 release with transition and force but no signal has 5.1 semantics (RHEL 8 style)."""
    root = tree(tmp_path, base('4.18.0-553.el8_10.x86_64'),
                patch_files('kpatch_x', extra={'force': ''}), proc_modules([('kpatch_x', 1, 'OEK')]))
    assert observe(root).capabilities.era == ERA_FREE


def test_4_0_immediate_era(tmp_path):
    root = tree(tmp_path, base('4.9.0-19-amd64'), patch_files('lab_a', transition=None),
                proc_modules([('lab_a', 1, 'OEK')]))
    caps = observe(root).capabilities
    assert caps.era == ERA_IMMEDIATE and not caps.unload and not caps.transition


def test_transition_with_blockers(tmp_path):
    root = tree(tmp_path, base('6.12.117+deb13-amd64'),
                patch_files('lab_a', extra={'force': '', 'replace': '0\n'}),
                patch_files('lab_block', transition='1', extra={'force': '', 'replace': '0\n'}, objects=('lab_busy',)),
                proc_modules([('lab_block', 1, 'OEK'), ('lab_busy', 0, 'OE'), ('lab_a', 1, 'OEK')]),
                {'proc/1/task/1/patch_state': '1\n', 'proc/1/task/1/comm': 'systemd\n',
                 'proc/812/task/812/patch_state': '0\n', 'proc/812/task/812/comm': 'lab_busy\n',
                 'proc/812/task/812/stack': '[<0>] lab_busy_sleep+0x2a/0x60 [lab_busy]\n[<0>] kthread+0xd7/0x100\n',
                 'proc/900/task/900/patch_state': '-1\n'})
    snap = observe(root, blocker_stacks=True)
    assert snap.transition.as_dict() == {
        'patch': 'lab_block', 'direction': 'patching',
        'blockers': [{'pid': 812, 'tid': 812, 'comm': 'lab_busy',
                      'stack': ['[<0>] lab_busy_sleep+0x2a/0x60 [lab_busy]', '[<0>] kthread+0xd7/0x100']}]}
    assert snap.names() == ['lab_a', 'lab_block']
    assert 'lab_busy' not in [leftover.name for leftover in snap.leftovers]


def test_unpatching_transition_is_off_the_live_stack(tmp_path):
    root = tree(tmp_path, base('6.1.0-50-amd64'),
                patch_files('lab_a', extra={'force': ''}),
                patch_files('lab_b', enabled='0', transition='1', extra={'force': ''}),
                proc_modules([('lab_b', 1, 'OEK'), ('lab_a', 1, 'OEK')]),
                {'proc/77/task/78/patch_state': '1\n', 'proc/77/task/78/comm': 'bash\n'})
    snap = observe(root)
    assert snap.transition.direction == 'unpatching'
    assert snap.transition.blockers[0]['tid'] == 78 and 'stack' not in snap.transition.blockers[0]
    assert snap.names() == ['lab_a']


def test_replace_patch_mid_transition_keeps_old_patches(tmp_path):
    """Until a replace transition completes the old patches stay enabled (§3.4)."""
    root = tree(tmp_path, base('6.12.117+deb13-amd64'),
                patch_files('lab_a', extra={'force': '', 'replace': '0\n'}),
                patch_files('lab_replace', transition='1', extra={'force': '', 'replace': '1\n'},
                            funcs=['cmdline_proc_show,1', 'lab_a_func,1']),
                proc_modules([('lab_replace', 1, 'OEK'), ('lab_a', 1, 'OEK')]))
    snap = observe(root)
    assert snap.names() == ['lab_a', 'lab_replace']
    assert snap.transition.patch == 'lab_replace'
    assert snap.stack[1].objects[0]['functions'] == ['cmdline_proc_show,1', 'lab_a_func,1']


def test_garbage_attribute_is_a_warning(tmp_path):
    root = tree(tmp_path, base('6.1.0-50-amd64'), patch_files('lab_a', enabled='yes', extra={'force': ''}),
                proc_modules([('lab_a', 1, 'OEK')]), {'proc/sys/kernel/tainted': 'lots\n'})
    snap = observe(root)
    assert snap.stack[0].enabled is None
    assert snap.taint is None
    assert any("unexpected content 'yes'" in warning for warning in snap.warnings)
    assert any('tainted' in warning for warning in snap.warnings)


def test_unreadable_file_is_a_warning(tmp_path, monkeypatch):
    root = tree(tmp_path, base('6.1.0-50-amd64'), patch_files('lab_a', extra={'force': ''}),
                proc_modules([('lab_a', 1, 'OEK')]))
    real_open = open

    def guarded(path, *args, **kwargs):
        if str(path).endswith('lab_a/enabled'):
            raise PermissionError(13, 'Permission denied')
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr('builtins.open', guarded)
    snap = observe(root)
    assert snap.stack[0].enabled is None
    assert any('permission denied' in warning for warning in snap.warnings)


def test_patch_vanishing_while_read(tmp_path, monkeypatch):
    """The kernel frees a disabled patch's directory from a workqueue (§2.1): never a traceback."""
    root = tree(tmp_path, base('6.1.0-50-amd64'), patch_files('lab_a', extra={'force': ''}),
                patch_files('lab_b', extra={'force': ''}), proc_modules([('lab_b', 1, 'OEK'), ('lab_a', 1, 'OEK')]))
    real_scandir = _observe.os.scandir
    gone = os.path.join(root, 'sys/kernel/livepatch/lab_b')

    def vanish(path):
        # The directory is read (names and types), then freed before its files are read.
        with real_scandir(path) as listing:
            entries = list(listing)
        if path == gone:
            for entry in entries:
                full = os.path.join(path, entry.name)
                if os.path.isdir(full):
                    os.rmdir(os.path.join(full, 'lab_b_func,1'))
                    os.rmdir(full)
                else:
                    os.unlink(full)
            os.rmdir(path)
        return contextlib.nullcontext(entries)
    monkeypatch.setattr(_observe.os, 'scandir', vanish)
    snap = observe(root)
    assert snap.names() == ['lab_a']
    assert any('lab_b vanished' in warning for warning in snap.warnings)


def test_order_unknown_when_modules_missing(tmp_path):
    root = tree(tmp_path, base('6.1.0-50-amd64'), patch_files('lab_b', extra={'force': ''}),
                patch_files('lab_a', extra={'force': ''}), {'proc/modules': ''})
    snap = observe(root)
    assert snap.order_source == 'unknown'
    assert snap.names() == ['lab_a', 'lab_b']


@pytest.mark.parametrize('release, era', [
    ('4.4.0-1-amd64', ERA_IMMEDIATE), ('4.12.0', ERA_STACKED), ('5.0.21', ERA_STACKED), ('5.1.0', ERA_FREE),
    ('6.1.0-50-amd64', ERA_FREE), ('garbage', ERA_IMMEDIATE),
])
def test_era_from_release_when_no_patch_is_loaded(release, era):
    assert capabilities_for(release, set()).era == era


@pytest.mark.parametrize('release, replace, stack_order, patched', [
    ('6.1.0-50-amd64', False, False, True),
    ('6.12.117+deb13-amd64', True, False, True),
    ('7.2.13+deb14-amd64', True, True, True),
    ('5.10.0-30-amd64', False, False, False),
])
def test_attributes_by_release(release, replace, stack_order, patched):
    caps = capabilities_for(release, set())
    assert (caps.replace, caps.stack_order, caps.patched) == (replace, stack_order, patched)


def test_decode_taint():
    assert decode_taint(45056) == {'value': 45056, 'letters': 'OEK', 'livepatch': True}
    assert decode_taint(1 << 30)['letters'] == '?'


SIG = 'sys/module/module/parameters/sig_enforce'
LOCKDOWN = 'sys/kernel/security/lockdown'


@pytest.mark.parametrize('files, enforced, reason', [
    ({SIG: 'Y\n', LOCKDOWN: '[none] integrity confidentiality\n'}, True, 'module.sig_enforce is Y'),
    ({SIG: 'N\n', LOCKDOWN: 'none [integrity] confidentiality\n'}, True, 'the kernel is locked down (integrity'),
    ({SIG: 'N\n', LOCKDOWN: 'none integrity [confidentiality]\n'}, True, 'locked down (confidentiality'),
    ({LOCKDOWN: 'none [integrity] confidentiality\n'}, True, 'locked down (integrity'),
    ({SIG: 'N\n', LOCKDOWN: '[none] integrity confidentiality\n'}, False,
     'module.sig_enforce is N and lockdown is none'),
    ({SIG: 'N\n'}, False, 'module.sig_enforce is N and lockdown is not present'),
    ({SIG: 'N\n', LOCKDOWN: 'garbage\n'}, False, 'lockdown is not present'),
    ({}, False, 'neither /sys/module/module/parameters/sig_enforce nor /sys/kernel/security/lockdown could be read'),
], ids=['sig_enforce', 'lockdown integrity', 'lockdown confidentiality', 'lockdown without module.sig', 'neither',
        'no securityfs', 'lockdown garbage', 'nothing readable'])
def test_module_signatures(tmp_path, files, enforced, reason):
    """kernel/module/signing.c: sig_enforce, else lockdown, decides (docs/developer.md §10.3)."""
    snap = observe(tree(tmp_path, base('6.12.117+deb13-amd64', '0'), proc_modules([]), files))
    assert snap.module_signatures.enforced is enforced
    assert reason in snap.module_signatures.reason
    assert snap.as_dict()['module_signatures'] == {'enforced': enforced, 'reason': snap.module_signatures.reason}


def test_transition_patch_is_the_cheap_read_observe_agrees_with(tmp_path):
    root = tree(tmp_path, base('6.1.0-50-amd64'), patch_files('lab_a', extra={'force': ''}),
                patch_files('lab_b', transition='1', extra={'force': ''}),
                proc_modules([('lab_b', 1, 'OEK'), ('lab_a', 1, 'OEK')]))

    def read(*parts):
        path = os.path.join(root, *parts)
        return open(path).read() if os.path.exists(path) else None
    assert _observe.transition_patch(lambda *parts: sorted(os.listdir(os.path.join(root, *parts))), read) == 'lab_b'
    assert observe(root).transition.patch == 'lab_b'
    os.unlink(os.path.join(root, 'sys/kernel/livepatch/lab_b/transition'))
    with open(os.path.join(root, 'sys/kernel/livepatch/lab_b/transition'), 'w') as handle:
        handle.write('0\n')
    assert _observe.transition_patch(lambda *parts: sorted(os.listdir(os.path.join(root, *parts))), read) is None
    assert observe(root).transition is None


@pytest.mark.parametrize('text, running', [('1', True), ('1\n', True), ('0\n', False), (None, False), ('', False),
                                           ('11', False)])
def test_in_transition(text, running):
    assert _observe.in_transition(text) is running


def test_values_are_frozen_and_keyword_only(tmp_path):
    snap = observe(tree(tmp_path, base('6.1.0-50-amd64'), patch_files('lab_a', extra={'force': ''}),
                        proc_modules([('lab_a', 1, 'OEK')])))
    with pytest.raises(AttributeError):
        snap.stack[0].enabled = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        _observe.Patch('lab_a', True)  # pylint: disable=too-many-function-args
    with pytest.raises(TypeError):
        _observe.Snapshot('/', '6.1', True, snap.capabilities)  # pylint: disable=too-many-function-args


def test_root_error_is_a_livepatch_error_with_a_rule(tmp_path):
    with pytest.raises(ObserveError) as info:
        observe(str(tmp_path / 'nope'))
    assert info.value.rule == 'bad_root'
