# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot-time restore on real kernels (issue 11): the role records a stack and installs the
unit with the collection's module_utils; the guest reboots and the unit loads the stack again.

The kernel is read with plain shell (``drive.live_patches``, the build-ID note bytes under
/sys/module), the restore's report and journal as files. Scenarios run in order on one guest per
kernel: record -> reboot -> restored; a crash marker planted as if a boot died mid-restore ->
the next boot skips that patch and those above it, the role fails with the rule, then clears it
with ``livepatch_stack_restore_crash_seen``; the skip switch on the kernel command line.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from drive import LIVE_SCRIPT, live_names, live_patches, patch, reads, reset, run_module, run_role, sh

ROLE_DIR = '/var/lib/kernelops-livepatch'
UNIT = 'kernelops-livepatch-restore.service'
UTILS = '/usr/local/libexec/kernelops-livepatch/ansible_collections/kernelops/livepatch/plugins/module_utils'
STACK = ['lab_a', 'lab_b', 'lab_c']


def role(vm, names, **variables):
    """The role with a stack of lab patches for the running release (the one the lab booted, which
    is ``uname -r``: test_lab_selftest.py): (facts, recap, seconds)."""
    return run_role(vm, dict({'livepatch_stack_stacks': [{'release': vm.release,
                                                          'patches': [patch(vm, name) for name in names]}]},
                             **variables))


def notes_script(names):
    """Shell printing "name hex" of each module's build-ID note bytes, as the kernel shows them."""
    return 'for m in %s; do echo "$m $(od -An -v -tx1 /sys/module/$m/notes/.note.gnu.build-id | tr -d \' \\n\')"; done' % (
        ' '.join(names))


def notes(text):
    """name -> note bytes (hex) from ``notes_script``'s output."""
    return dict(line.partition(' ')[::2] for line in text.splitlines() if line)


def json_script(path):
    """Shell printing the JSON file ``path`` (which may say ``$(uname -r)``), or nothing."""
    return 'cat %s 2>/dev/null || true' % path


def guest_json(text):
    return json.loads(text) if text.strip() else None


UNIT_LOG = 'journalctl -b -o cat -u %s --no-pager 2>/dev/null || true' % UNIT


def after_boot(vm, names=(), **more):
    """What a test reads after a boot, in one guest command: the live stack, the release, the
    restore's report, the build-ID notes of ``names``, the unit's log and the ``more`` reads."""
    return reads(vm, dict(live=LIVE_SCRIPT, release='uname -r',
                          report=json_script('%s/$(uname -r)/restore.json' % ROLE_DIR),
                          notes=notes_script(names), log=UNIT_LOG), **more)


@pytest.fixture(scope='module')
def state():
    return {}


@pytest.fixture
def vm(lab_vm):
    start = time.monotonic()
    yield lab_vm
    print('%s: %.1f s' % (lab_vm.kernel, time.monotonic() - start))


def test_recorded_stack_is_restored_in_order_with_the_recorded_builds(vm, state):
    reset(vm, 'rm -rf %s /usr/local/libexec/kernelops-livepatch' % ROLE_DIR)
    facts, _recap, took = role(vm, STACK)
    print('role, first run: %.1f s' % took)
    assert (facts['livepatch_stack_status'], facts['livepatch_stack_after']) == ('converged', STACK), facts
    assert facts['livepatch_stack_boot_restore'] == 'enabled', facts
    # The collection's module_utils are installed root-owned, 0644 in 0755 directories.
    got = reads(vm, listing='stat -c "%%U %%a %%n" %s %s/*.py' % (UTILS, UTILS), notes=notes_script(STACK))
    listing = got['listing'].split('\n')
    assert listing[0].startswith('root 755 ') and len(listing) > 10, listing
    assert all(line.startswith('root 644 ') for line in listing[1:] if line), listing
    # (that a second run changes nothing, unit and scripts included, is asserted by the kernel
    # update's re-run in test_kernel_update_real.py, on the same guest)
    before = notes(got['notes'])
    vm.reboot()
    got = after_boot(vm, STACK, journal=json_script('/run/kernelops-livepatch/journal.json'))
    assert live_names(got['live']) == STACK
    assert notes(got['notes']) == before  # the same builds, bottom first
    report = guest_json(got['report'])
    assert (report['status'], report['loaded']) == ('ok', STACK), report
    journal = guest_json(got['journal'])
    assert sorted(journal) == sorted(STACK), journal
    log = got['log']
    assert all('%s: live' % name in log for name in STACK), log
    # A module run without record counts them as ours: the journal says the restore loaded them,
    # so popping all three is not refused as touching another tool's patches (foreign='refuse',
    # the default, refuses any step on a foreign patch: test_trust_real.py's foreign tests).
    popped, _wall = run_module(vm, 'livepatch_stack', {'stack': []})
    assert not popped['failed'] and live_patches(vm) == [], popped
    assert [(step['action'], step['patch']) for step in popped['steps']] == [
        (action, name) for name in reversed(STACK) for action in ('disable', 'unload')], popped
    state['restored'] = True


def test_a_crash_marker_skips_that_patch_and_those_above_until_the_operator_clears_it(vm, state):
    if not state.get('restored'):
        pytest.skip('needs the recorded stack of the test before')
    got = reads(vm, release='uname -r', record=json_script('%s/$(uname -r)/stack.json' % ROLE_DIR))
    directory = '%s/%s' % (ROLE_DIR, got['release'].strip())
    # The record the first test's role run wrote (its module run after the reboot popped the
    # stack from the kernel, not from the record): the boot restore works from this.
    record = guest_json(got['record'])
    assert [entry['name'] for entry in record['stack']] == STACK, record
    marker = {'schema': 1, 'patch': 'lab_b', 'build_id': None, 'started': '2026-11-30T12:00:00Z'}
    sh(vm, 'printf %%s %s > %s/restore.marker && sync' % (shlex.quote(json.dumps(marker)), directory))
    vm.reboot()
    got = after_boot(vm)
    assert live_names(got['live']) == ['lab_a']
    report = guest_json(got['report'])
    assert (report['status'], report['patch'], report['rule'], report['loaded']) == \
        ('skipped_after_crash', 'lab_b', 'restore_skipped_after_crash', ['lab_a']), report
    assert 'lab_b, lab_c' in got['log']
    info, _wall = run_module(vm, 'livepatch_info', {'record': directory + '/stack.json'})
    assert (info['restore']['status'], info['restore']['patch']) == ('skipped_after_crash', 'lab_b'), info
    facts, _recap, _took = role(vm, STACK)
    assert (facts['livepatch_stack_status'], facts['livepatch_stack_rule']) == \
        ('failed', 'restore_skipped_after_crash'), facts
    assert 'lab_b' in facts['livepatch_stack_message'] and '2026-11-30T12:00:00Z' in facts['livepatch_stack_message']
    assert live_patches(vm) == ['lab_a']  # the role stopped before converging
    facts, _recap, _took = role(vm, STACK, livepatch_stack_restore_crash_seen=True)
    assert (facts['livepatch_stack_status'], facts['livepatch_stack_after']) == ('converged', STACK), facts
    got = reads(vm, live=LIVE_SCRIPT, left='ls -a %s' % directory)
    assert live_names(got['live']) == STACK
    left = got['left'].split()
    assert 'restore.json' not in left and 'restore.marker' not in left, left
    state['cleared'] = True


def test_the_skip_switch_on_the_kernel_command_line_loads_nothing(vm, state):
    if not state.get('restored'):
        pytest.skip('needs the recorded stack of the first test')
    vm.reboot(append='kernelops.livepatch=0')
    got = after_boot(vm, cmdline='cat /proc/cmdline')
    assert 'kernelops.livepatch=0' in got['cmdline']
    assert live_names(got['live']) == []
    report = guest_json(got['report'])
    assert (report['status'], report['loaded']) == ('skipped_by_switch', []), report
