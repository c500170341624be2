#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: livepatch_stage
short_description: Copy and verify the patch files of the role, and stage stacks for installed kernels
version_added: 0.2.0
description:
  - The file handling of the role P(kernelops.livepatch.livepatch_stack#role); an action plugin of the same name runs
    on the controller and calls this module on the host.
  - Each patch is a O(stacks[].patches[].src) file on the controller, copied to O(dir)/RELEASE/SHA256[:16]/NAME
    (root-owned, mode 0644, in root-owned 0755 directories), or a O(stacks[].patches[].path) already on the host.
  - Every file is checked before anything changes. A C(src) is read and hashed on the controller only when it must
    be copied; a file already on the host with the C(sha256) given is left as it is. A missing file or a checksum
    that differs fails with rule C(bad_patch_file), naming the file.
  - The running kernel's patches are returned in RV(patches), ready for M(kernelops.livepatch.livepatch_stack).
  - Every other release in O(stacks) whose kernel is installed (C(/lib/modules/RELEASE) exists) is B(staged), that is its
    files are copied, each must be a livepatch module built for that release (rule C(release_mismatch) otherwise),
    and its boot record O(dir)/RELEASE/stack.json is written under the host lock, so that the boot-time restore loads
    that stack when the host boots that kernel.
  - With O(remove_old_releases), the directory of a release that is neither running nor installed is removed, if it
    holds this collection's record for that release; nothing else under O(dir) is touched.
author:
  - kernelops livepatch maintainers (@kernelops)
options:
  stacks:
    description: The desired stack of each kernel release, as the role's C(livepatch_stack_stacks).
    type: list
    elements: dict
    default: []
    suboptions:
      release:
        description: A kernel release as C(uname -r) prints it.
        type: str
        required: true
      patches:
        description: The patches for that release, bottom first.
        type: list
        elements: dict
        default: []
        suboptions: &patch_options
          src:
            description:
              - Path of the patch file on the controller; a relative path is relative to O(src_dir).
            type: str
          path:
            description: Path of a patch file already on the host; it is used where it is.
            type: str
          sha256:
            description: The file's SHA-256 (64 hex digits); required with O(stacks[].patches[].src).
            type: str
          name:
            description: The patch's module name; taken from the file when omitted.
            type: str
          replace:
            description: Whether it is a replace (cumulative) patch.
            type: bool
            default: false
          requires:
            description: Names of patches that must be below this one (passed on to RV(patches)).
            type: list
            elements: str
            default: []
  push:
    description:
      - When given, the running release gets these patches instead of its entry in O(stacks), and no release is staged
        (the role's C(livepatch_stack_pop_to) run).
    type: list
    elements: dict
    suboptions: *patch_options
  src_dir:
    description:
      - The controller directory a relative C(src) is relative to. V("") picks the playbook's directory, or for the
        collection's own playbooks the controller's working directory (the AWX project directory).
    type: str
    default: ""
  dir:
    description: Directory on the host holding one subdirectory per kernel release.
    type: path
    default: /var/lib/kernelops-livepatch
  remove_old_releases:
    description: Remove the directories of releases no longer installed (only those holding this collection's record).
    type: bool
    default: true
  lock_timeout:
    description: Seconds to wait for the host-wide lock held by another run.
    type: float
    default: 60
  checksums:
    description: Files whose SHA-256 to return in RV(checksums) (a directory stands for every regular file below it).
    type: list
    elements: path
    default: []
  unit:
    description:
      - A systemd unit whose C(systemctl is-enabled) state to return in RV(unit_state).
      - With O(unit_content) and O(restore_install), the boot restore's unit, installed or removed with its files.
    type: str
  unit_content:
    description:
      - The text of the unit file of O(unit) (the role renders its template on the controller). Set, O(unit) is managed
        with the boot restore where systemd runs, in the same run as its files. O(restore_install=present) writes
        O(unit_dir)/O(unit) (root's 0644, through a temp file, fsync and rename) when its checksum differs, then runs
        C(systemctl enable) (which reloads systemd) when the unit is not enabled or its file was written.
        O(restore_install=absent) runs C(systemctl disable) when it is enabled and removes the file if it is a regular
        file (a mask's symbolic link is left), then C(systemctl daemon-reload).
      - Anything but a regular file where the unit file goes is refused with rule C(not_regular_file); a failing
        C(systemctl) call fails the run with rule C(systemctl_failed).
      - Unset, O(unit) is only read.
    type: str
  unit_dir:
    description: Directory of the unit file of O(unit_content).
    type: path
    default: /etc/systemd/system
  restore_install:
    description:
      - V(present) installs the boot restore of the role (its unit runs it) in O(restore_dir) where systemd runs
        (C(/run/systemd/system) exists below O(root)), V(absent) removes it; unset, it is left as it is.
      - The restore is C(livepatch_restore.py) (the role's C(files/)) and this collection's module_utils under
        C(ansible_collections/kernelops/livepatch/plugins/module_utils/); the action plugin sends the checksums of its
        own copies, and the bytes only of the files whose checksum differs on the host, in one transfer.
      - Files are written through a temp file, fsync and rename, root-owned, mode 0644, in root-owned 0755 directories;
        module_utils files the collection no longer has are removed from that directory. A symbolic link or anything
        other than a directory in place of one of these directories is refused with rule C(unsafe_path), anything
        other than a regular file in place of one of the files with rule C(not_regular_file); nothing is written.
      - V(absent) removes those files (and the byte code Python compiled from them), then each of these directories
        that is left empty; what anyone else put there stays, with the directories holding it.
    type: str
    choices: [present, absent]
  restore_dir:
    description: Directory of the boot restore (the role's unit runs C(livepatch_restore.py) from it).
    type: path
    default: /usr/local/libexec/kernelops-livepatch
  root:
    description: Read C(/sys), C(/proc) and C(/run) below this directory instead of C(/) (tests, chroots).
    type: path
    default: /
  _controller:
    description: Set by the action plugin (what it read on the controller, and the copies it sent); not for users.
    type: dict
attributes:
  check_mode:
    support: full
    description: Reports what would be copied, staged and removed, and changes nothing.
  diff_mode:
    support: full
    description:
      - Shows the files that would be copied and the boot records that would change, per release, and the boot restore's
        files and directories that would be written, fixed or removed.
  idempotent:
    support: full
    description: A second run with the same stacks copies and writes nothing.
  action:
    support: full
    description: An action plugin reads and hashes the C(src) files on the controller and copies only those needed.
"""

EXAMPLES = r"""
- name: Copy the patch files of each release, and stage the stacks of installed kernels
  kernelops.livepatch.livepatch_stage:
    stacks:
      - release: 6.1.0-50-amd64
        patches:
          - src: patches/6.1.0-50-amd64/lp_cve_2026_0001.ko
            sha256: 3f1c0b9e2d5a7f8e6b4c1d0a9e8f7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6
      - release: 6.12.117+deb13-amd64
        patches:
          - src: patches/6.12.117+deb13-amd64/lp_cve_2026_0001.ko
            sha256: 9a7d0e1f2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5
  become: true
  register: files

- name: What the role livepatch_stack does - pop-to mode, the boot restore and its unit, nothing removed
  kernelops.livepatch.livepatch_stage:
    push:
      - path: /opt/patches/lp_cve_2026_0002.ko
        sha256: 51be0e1f2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5
    src_dir: /srv/livepatch-project
    dir: /var/lib/kernelops-livepatch
    remove_old_releases: false
    lock_timeout: 30
    checksums: [/etc/systemd/system/kernelops-livepatch-restore.service]
    unit: kernelops-livepatch-restore.service
    unit_content: "{{ lookup('ansible.builtin.template', 'kernelops-livepatch-restore.service.j2') }}"
    unit_dir: /etc/systemd/system
    restore_install: present
    restore_dir: /usr/local/libexec/kernelops-livepatch
  become: true
  check_mode: true
  diff: true

- name: Remove the boot restore's files (the role's livepatch_stack_persist=false), reading /run of a chroot
  kernelops.livepatch.livepatch_stage:
    restore_install: absent
    restore_dir: /srv/chroot/usr/local/libexec/kernelops-livepatch
    root: /srv/chroot
  become: true
"""

RETURN = r"""
release:
  description: The running kernel release.
  returned: always
  type: str
  sample: 6.1.0-50-amd64
selected:
  description: Whether the running release has an entry in O(stacks) (or O(push) was given).
  returned: always
  type: bool
  sample: true
patches:
  description: The running release's patches as M(kernelops.livepatch.livepatch_stack) takes them (C(path) on the host).
  returned: always
  type: list
  elements: dict
  sample: [{path: /var/lib/kernelops-livepatch/6.1.0-50-amd64/3f1c0b9e2d5a7f8e/lp_a.ko, name: null, replace: false,
            requires: []}]
files:
  description: Each C(src) file of the running and staged releases, with C(state) V(right), V(copy) or V(fix).
  returned: always
  type: list
  elements: dict
  sample: [{release: 6.1.0-50-amd64, index: 1, dest: /var/lib/kernelops-livepatch/6.1.0-50-amd64/3f1c0b9e2d5a7f8e/lp_a.ko,
            sha256: 3f1c0b9e2d5a7f8e6b4c1d0a9e8f7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6, state: right}]
staged:
  description: One entry per staged or removed release, C(release), C(stack) (names) and C(status) (V(staged), V(unchanged), V(removed)).
  returned: always
  type: list
  elements: dict
  sample: [{release: 6.12.117+deb13-amd64, stack: [lp_a], status: staged}]
copied:
  description: The paths copied in this run.
  returned: always
  type: list
  elements: str
  sample: [/var/lib/kernelops-livepatch/6.12.117+deb13-amd64/9a7d0e1f2c3b4a59/lp_a.ko]
service_mgr:
  description: V(systemd) when systemd runs (C(/run/systemd/system) exists), V(other) otherwise.
  returned: always
  type: str
  sample: systemd
unit_state:
  description: What C(systemctl is-enabled) says of O(unit); empty when it says nothing.
  returned: always
  type: str
  sample: enabled
checksums:
  description: Path to SHA-256 of each file of O(checksums) that exists.
  returned: always
  type: dict
  sample: {/etc/systemd/system/kernelops-livepatch-restore.service: 0b1c2d3e4f5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0}
builds:
  description: Name to GNU build ID of each patch on the kernel's livepatch list.
  returned: always
  type: dict
  sample: {lp_a: 5f3c1b7a9e0d2c4b6a8f1e3d5c7b9a0f2e4d6c8b}
restore:
  description:
    - "As RV(kernelops.livepatch.livepatch_info#module:restore), for the running release: O(dir)/RELEASE/restore.json and
      restore.marker. The role's crash-loop guard reads it."
  returned: always
  type: dict
restore_changes:
  description:
    - What O(restore_install) changed (or, in check mode, would change), in order; empty when the boot restore is
      as it should be. C(action) is V(create), V(fix) (owner or mode), V(copy) or V(remove); with O(unit_content) also
      V(enable) or V(disable), whose C(path) is the unit's name.
  returned: always
  type: list
  elements: dict
  sample: [{path: /usr/local/libexec/kernelops-livepatch/ansible_collections/kernelops/livepatch/plugins/module_utils/_host.py,
            action: copy}]
need_restore:
  description: Boot restore files (paths below O(restore_dir)) whose bytes the action plugin must send; it calls again.
  returned: when O(restore_install=present) and a file differs on the host, outside check mode
  type: list
  elements: str
  sample: [ansible_collections/kernelops/livepatch/plugins/module_utils/_host.py]
need:
  description: Files to copy whose bytes are on the controller; the action plugin sends them and calls again.
  returned: when a file must be read on the controller
  type: list
  elements: dict
  sample: [{sha256: 9a7d0e1f2c3b4a5968778695a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5, src: /srv/patches/lp_a.ko,
            check: [{release: 6.12.117+deb13-amd64, name: null}]}]
rule:
  description: Why the run failed (see the rule table of the workflows guide).
  returned: failure
  type: str
  sample: bad_patch_file
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kernelops.livepatch.plugins.module_utils import _stage_run
from ansible_collections.kernelops.livepatch.plugins.module_utils._spec import livepatch_stage_spec


def main():
    module = AnsibleModule(**livepatch_stage_spec())
    _stage_run.run(module)


if __name__ == '__main__':
    main()
