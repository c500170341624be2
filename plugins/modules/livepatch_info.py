#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: livepatch_info
short_description: Read the kernel's livepatch stack, transitions and leftovers
version_added: 0.1.0
description:
  - Reads C(/sys/kernel/livepatch), C(/sys/module) and C(/proc) directly and returns the livepatch state of the host
    exactly; the stack of patches from bottom to top, the transition in progress with the tasks blocking it, livepatch
    modules that are loaded but no longer on the stack, the kernel taint, and what this kernel's livepatch interface
    can do.
  - Runs no external command and needs nothing but Python 3.9 or later on the host.
  - Before Linux 6.14 the kernel does not say in which order its patches were enabled; the order is then inferred from
    C(/proc/modules), which lists modules newest first, and RV(order_source) says so.
author:
  - kernelops livepatch maintainers (@kernelops)
options:
  root:
    description:
      - Read the tree below this directory instead of C(/), for a chroot or a recorded fixture.
    type: path
    default: /
  blocker_stacks:
    description:
      - Also read the kernel stack (C(/proc/<pid>/task/<tid>/stack)) of every task that blocks a transition. Needs root.
    type: bool
    default: false
  record:
    description:
      - The boot record written by M(kernelops.livepatch.livepatch_stack) with its O(kernelops.livepatch.livepatch_stack#module:record)
        option. Its patches count as loaded by this collection in RV(stack[].origin) and RV(foreign), as do the
        patches in the journal this collection keeps under C(/run/kernelops-livepatch) (below O(root)).
      - A file of another shape is refused (rule V(bad_record)).
    type: path
  facts:
    description:
      - Also publish the result as the host fact C(kernelops_livepatch) (RV(ansible_facts.kernelops_livepatch)), so
        fact caching and AWX smart inventories can use it, for example hosts whose stack lacks a patch
        (C(ansible_facts__kernelops_livepatch__foreign[]__name=kpatch_vendor_fix)).
    type: bool
    default: false
  files:
    description:
      - Patch module files (absolute paths on the host) to read for RV(relations), in addition to the files of the live
        patches named in the journal and in O(record). A file whose patch is live joins that patch; any other file is
        placed above the live stack, in the order given. Each file passes the same trust checks as a file to load; a
        file that fails them, or whose build differs from the live one, makes that patch's relations V(unknown).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same result.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  facts:
    support: full
    description: With O(facts=true) the result is also returned as the host fact C(kernelops_livepatch).
  idempotent:
    support: full
    description: The module never changes anything.
seealso:
  - module: kernelops.livepatch.livepatch_stack
  - module: kernelops.livepatch.livepatch
  - ref: ansible_collections.kernelops.livepatch.docsite.stack_discipline
    description: What each kernel era shows in sysfs, and how the order of the stack is found.
  - name: Livepatch in the kernel's documentation
    description: The kernel's own description of patches, transitions and atomic replace.
    link: https://docs.kernel.org/livepatch/livepatch.html
"""

EXAMPLES = r"""
- name: Read the livepatch stack
  kernelops.livepatch.livepatch_info:
  register: livepatch

- name: Show the live patches, bottom first
  ansible.builtin.debug:
    msg: "{{ livepatch.stack | selectattr('enabled') | map(attribute='name') | list }}"

- name: Fail when a transition is stuck, with the blocking tasks and their stacks
  kernelops.livepatch.livepatch_info:
    blocker_stacks: true
  register: livepatch
  failed_when: livepatch.transition is not none and livepatch.transition.blockers | length > 0

- name: List the live patches another tool loaded
  kernelops.livepatch.livepatch_info:
    record: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/stack.json
  register: livepatch

- name: Show them with their position from the bottom
  ansible.builtin.debug:
    msg: "{{ livepatch.foreign | map(attribute='name') | list }}"

- name: Publish the stack as the host fact kernelops_livepatch (fact cache, AWX smart inventories)
  kernelops.livepatch.livepatch_info:
    facts: true
    record: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/stack.json

- name: Use the fact later in the play
  ansible.builtin.debug:
    msg: "{{ ansible_facts.kernelops_livepatch.stack | map(attribute='name') | list }}"

- name: Read a recorded tree instead of the running kernel
  kernelops.livepatch.livepatch_info:
    root: /srv/fixtures/sid-three-patches

- name: Show what ties the live patches to each other and to a patch not loaded yet
  kernelops.livepatch.livepatch_info:
    files:
      - /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0004.ko
  register: livepatch

- name: List the pairs with a relation seen, with the evidence
  ansible.builtin.debug:
    msg: "{{ livepatch.relations | rejectattr('kind', 'equalto', 'unknown') | list }}"
"""

RETURN = r"""
ansible_facts:
  description: The host fact published with O(facts=true).
  returned: when O(facts=true)
  type: dict
  contains:
    kernelops_livepatch:
      description:
        - Everything else this module returns (RV(stack), RV(foreign), RV(capabilities), RV(transition), ...), as one
          fact.
      type: dict
      sample: {"kernel_release": "6.12.117+deb13-amd64", "stack": [{"name": "lp_a", "origin": "ours"}], "foreign": []}
root:
  description: The directory the tree was read below.
  returned: always
  type: str
  sample: /
kernel_release:
  description: The running kernel's release, from C(/proc/sys/kernel/osrelease).
  returned: always
  type: str
  sample: 6.12.117+deb13-amd64
livepatch_supported:
  description: Whether C(/sys/kernel/livepatch) exists, that is whether the kernel was built with C(CONFIG_LIVEPATCH).
  returned: always
  type: bool
  sample: true
capabilities:
  description:
    - What this kernel's livepatch interface offers, and the era whose rules apply.
    - Read from the attributes of loaded patches when there are any (they win, because distribution kernels backport),
      otherwise inferred from the kernel release.
  returned: always
  type: dict
  contains:
    era:
      description:
        - V(4.0-4.11) no transitions, patch modules can never be unloaded.
        - V(4.12-5.0) per-task transitions, the kernel enforces stacking, disabled patches stay listed and can be
          enabled again.
        - V(5.1+) no enforced order, a disabled patch is freed and cannot come back, atomic replace.
      type: str
      sample: 5.1+
    source:
      description: V(attributes) when seen on a loaded patch, V(release) when inferred from the kernel release.
      type: str
      sample: attributes
    transition:
      description: Patches have a C(transition) attribute (4.12).
      type: bool
      sample: true
    signal:
      description: Patches have a C(signal) attribute (4.15 to 5.0 only).
      type: bool
      sample: false
    force:
      description: Patches have a C(force) attribute (4.15), which O(kernelops.livepatch.livepatch_stack#module:on_stall=force) writes.
      type: bool
      sample: true
    replace:
      description: Patches have a C(replace) attribute (6.11), so RV(stack[].replace) is known for loaded patches.
      type: bool
      sample: true
    stack_order:
      description: Patches have a C(stack_order) attribute (6.14), which gives the order of RV(stack) (RV(order_source=stack_order)).
      type: bool
      sample: false
    patched:
      description: Objects have a C(patched) attribute (6.1), shown in RV(stack[].objects[].patched).
      type: bool
      sample: true
    atomic_replace:
      description: Replace (cumulative) patches are supported (5.1).
      type: bool
      sample: true
    reenable:
      description: A disabled patch stays listed and can be enabled again (before 5.1).
      type: bool
      sample: false
    unload:
      description: A disabled patch module can be unloaded (4.12).
      type: bool
      sample: true
    enforced_stacking:
      description: The kernel itself only lets the top patch be disabled (before 5.1).
      type: bool
      sample: false
    klp_state:
      description: Patches may declare system states, and incompatible ones are refused at load (5.5).
      type: bool
      sample: true
stack:
  description:
    - The patches on the kernel's list, bottom (oldest) first. Since 5.1 these are the enabled patches and the one in
      transition; before 5.1 disabled patches stay on the list with RV(stack[].enabled=false).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The patch's name, which is its module name.
      type: str
      sample: livepatch_cve_2026_1234
    enabled:
      description: The C(enabled) attribute. During a transition it already shows the target state.
      type: bool
      sample: true
    transition:
      description: Whether this patch is the one in transition.
      type: bool
      sample: false
    replace:
      description: Whether this is a replace (cumulative) patch; null where the kernel does not tell (before 6.11).
      type: bool
      sample: false
    stack_order:
      description: The kernel's position of the patch, 1 for the bottom; null before 6.14.
      type: int
      sample: 1
    objects:
      description: The objects (C(vmlinux) or a module name) the patch changes.
      type: list
      elements: dict
      contains:
        name:
          description: C(vmlinux) or the name of the patched module.
          type: str
          sample: vmlinux
        patched:
          description: Whether the object's functions are patched now; null before 6.1.
          type: bool
          sample: true
        functions:
          description: The patched functions as the kernel names them, C(function,sympos).
          type: list
          elements: str
          sample: ["cmdline_proc_show,1"]
    refcnt:
      description: The module's reference count; the livepatch core holds one while the patch is enabled.
      type: int
      sample: 1
    taint:
      description: The module's taint letters; livepatch modules carry C(K).
      type: str
      sample: OEK
    build_id:
      description: The GNU build ID of the loaded module, which tells two builds of the same patch apart.
      type: str
      sample: 3f1c0b9e5d0a4c2b8e7f6a5b4c3d2e1f0a9b8c7d
    srcversion:
      description: The module's C(srcversion), where the kernel shows one.
      type: str
      sample: null
    origin:
      description:
        - V(ours) when this collection loaded the patch (its journal since boot, or the boot record O(record), names it
          with the same build), V(foreign) when another tool did.
        - Only for live patches; null for a disabled patch that is still listed (before 5.1).
      type: str
      sample: ours
restore:
  description:
    - What the boot-time restore of the role's unit did at the last boot, read from C(restore.json) beside O(record),
      with RV(restore.marker). Null when neither file is there.
    - Status V(skipped_after_crash) (or a marker left) means a boot died while loading RV(restore.patch); that patch
      and the ones above it are not loaded at boot until the marker and the report are removed (the role does it
      with C(livepatch_stack_restore_crash_seen=true)).
  returned: when O(record) is given
  type: dict
  sample: {"schema": 1, "status": "skipped_after_crash", "patch": "lp_b", "time": "2026-11-30T18:00:00Z",
           "rule": "restore_skipped_after_crash", "message": "...", "loaded": ["lp_a"], "marker": null}
  contains:
    status:
      description: V(ok), V(skipped_after_crash), V(skipped_by_switch) (C(kernelops.livepatch=0) on the kernel command
        line), V(failed) or V(nothing_recorded).
      type: str
      sample: skipped_after_crash
    patch:
      description: The patch the status is about (the one that did not finish loading, or that failed).
      type: str
      sample: lp_b
    time:
      description: When (UTC); for V(skipped_after_crash), when the load that did not finish started.
      type: str
      sample: "2026-11-30T18:00:00Z"
    rule:
      description: The rule of a failure or a skip, empty otherwise.
      type: str
      sample: restore_skipped_after_crash
    message:
      description: What the restore logged as its result.
      type: str
      sample: "the restore of lp_b started at 2026-11-30T18:00:00Z did not finish (...); not loading lp_b, lp_c"
    loaded:
      description: The patches the restore loaded at that boot, bottom first.
      type: list
      elements: str
      sample: ["lp_a"]
    marker:
      description: The crash marker C(restore.marker) (C(patch), C(build_id), C(started)) when one is left, else null.
      type: dict
      sample: {"schema": 1, "patch": "lp_b", "build_id": "5ca0a067ddc2e479b6957ff4523f4afbeb117f58", "started": "2026-11-30T18:00:00Z"}
foreign:
  description: The live patches this collection did not load, bottom first, with their position in the live stack.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The patch's name.
      type: str
      sample: kpatch_vendor_fix
    build_id:
      description: Its GNU build ID, null when unknown.
      type: str
      sample: 9a1c44e0b2d3
    position:
      description: Its position in the live stack, 1 for the bottom.
      type: int
      sample: 1
relations:
  description:
    - What ties each pair of patches (the live stack, then the O(files) not live), as far as structure shows it. One
      entry per pair, kind and source; a pair with no entry showed no relation. This is structural evidence, not
      proof of semantic independence (see the stack discipline guide).
    - V(same_function) both patch the same object, function and position; V(calls_patched) one references a function
      the other replaces; V(uses_symbol) one uses a symbol the other exports; V(shared_state) both declare a
      C(klp_state) id in common or both use the shadow-variable API; V(unknown) the evidence of one of them could not
      be read (no file, a stripped module), which never counts as independence.
  returned: always
  type: list
  elements: dict
  contains:
    lower:
      description: The patch lower in the stack.
      type: str
      sample: lab_rel_callee
    upper:
      description: The patch higher in the stack.
      type: str
      sample: lab_rel_caller
    kind:
      description: V(same_function), V(calls_patched), V(uses_symbol), V(shared_state) or V(unknown).
      type: str
      sample: calls_patched
    evidence:
      description: What was seen (functions as C(object:name,sympos), symbols, state ids), or why nothing could be.
      type: list
      elements: str
      sample: ["lab_rel_caller references lab_rel_lib_called, which lab_rel_callee replaces (lab_rel_lib:lab_rel_lib_called,1)"]
    source:
      description: V(file) from the C(.ko) files, V(sysfs) from C(/sys/kernel/livepatch) and C(/sys/module/*/holders).
      type: str
      sample: file
order_source:
  description:
    - How the order of RV(stack) was found. V(stack_order) from the kernel (6.14 and later), V(proc_modules) inferred
      from load order in C(/proc/modules), V(unknown) when neither worked (then sorted by name).
  returned: always
  type: str
  sample: proc_modules
transition:
  description: The transition in progress, or null when the kernel is idle.
  returned: always
  type: dict
  contains:
    patch:
      description: The patch in transition.
      type: str
      sample: livepatch_fix_nfs
    direction:
      description: V(patching) or V(unpatching).
      type: str
      sample: patching
    blockers:
      description: The tasks that have not switched yet, from C(/proc/*/task/*/patch_state).
      type: list
      elements: dict
      contains:
        pid:
          description: Process ID.
          type: int
          sample: 1234
        tid:
          description: Thread ID.
          type: int
          sample: 1236
        comm:
          description: The task's command name.
          type: str
          sample: nfsd
        stack:
          description: The task's kernel stack, one frame per element, when O(blocker_stacks=true).
          type: list
          elements: str
          sample: ["[<0>] msleep_interruptible+0x3a/0x60"]
leftovers:
  description:
    - Livepatch modules (taint C(K)) that are loaded but no longer on the stack.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The module name.
      type: str
      sample: livepatch_old
    refcnt:
      description: The module's reference count.
      type: int
      sample: 0
    taint:
      description: The module's taint letters.
      type: str
      sample: OEK
    build_id:
      description: The GNU build ID of the module.
      type: str
      sample: 3f1c0b9e5d0a4c2b8e7f6a5b4c3d2e1f0a9b8c7d
    state:
      description:
        - V(retired) when it was disabled or replaced (refcnt 0); C(rmmod) removes it.
        - V(forced) when its refcnt stays at 1 after a forced transition; only a reboot removes it.
      type: str
      sample: retired
    reboot_required:
      description: True for a forced module.
      type: bool
      sample: false
module_signatures:
  description: Whether the kernel loads only signed modules, and what was read to decide.
  returned: always
  type: dict
  contains:
    enforced:
      description:
        - True when C(/sys/module/module/parameters/sig_enforce) reads V(Y), or kernel lockdown
          (C(/sys/kernel/security/lockdown)) is not V(none); the changing modules then refuse an unsigned patch file
          they would load (rule V(unsigned_module)).
      type: bool
      sample: false
    reason:
      description: What was read to decide.
      type: str
      sample: module.sig_enforce is N and lockdown is none
reboot_required:
  description: Whether a forced module is loaded, which only a reboot removes.
  returned: always
  type: bool
  sample: false
taint:
  description: The kernel taint from C(/proc/sys/kernel/tainted), decoded; null when unreadable.
  returned: always
  type: dict
  contains:
    value:
      description: The raw taint bit mask.
      type: int
      sample: 45056
    letters:
      description: The letters of the set bits.
      type: str
      sample: OEK
    livepatch:
      description: Whether bit 15, C(K) (a livepatch module was loaded since boot), is set.
      type: bool
      sample: true
rule:
  description: Why the module failed (V(bad_root), V(bad_record), V(relative_path); V(internal_error) for a bug).
  returned: when the module failed
  type: str
  sample: bad_record
patches:
  description: The patches the failure is about (empty when it is about no patch in particular).
  returned: when the module failed
  type: list
  elements: str
  sample: []
warnings_seen:
  description: What could not be read cleanly (a patch that vanished while being read, garbage in a file).
  returned: always
  type: list
  elements: str
  sample: ["patch lp_old vanished while it was read (the kernel frees patches asynchronously)"]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import (
    JOURNAL_DIR, Journal, ours_from, read_record, read_restore,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import observe
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import foreign_patches
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import open_module
from ansible_collections.kernelops.livepatch.plugins.module_utils._relations import gather, relations
from ansible_collections.kernelops.livepatch.plugins.module_utils._spec import livepatch_info_spec


def read_state(params):
    """The snapshot as a result, each live patch marked ours or foreign."""
    root = params['root']
    snapshot = observe(root, blocker_stacks=params['blocker_stacks'])  # ObserveError('bad_root')
    record_path = params['record']
    if record_path and not os.path.isabs(record_path):
        raise LivepatchError('relative_path', 'record %s is a relative path; give an absolute path' % record_path)
    journal = Journal(os.path.join(root, JOURNAL_DIR.lstrip('/')))
    record = read_record(os.path.normpath(record_path)) if record_path else None
    ours = ours_from(journal.read(), record)
    foreign = foreign_patches(snapshot.live_stack, ours)
    result = snapshot.as_dict()
    foreign_names = set(patch.name for patch in foreign)
    for patch, entry in zip(snapshot.stack, result['stack']):
        entry['origin'] = None if not patch.live else ('foreign' if patch.name in foreign_names else 'ours')
    result['foreign'] = [patch.as_dict() for patch in foreign]
    result['relations'] = read_relations(root, snapshot.live_stack, params['files'], journal.read(), record)
    result['warnings_seen'] = result.pop('warnings')
    if record_path:
        result['restore'] = read_restore(os.path.dirname(os.path.normpath(record_path)))
    return result


def read_relations(root, live_stack, files, journal, record):
    """Relations between the live patches and the given files (docs/developer.md §11)."""
    live = [patch.name for patch in live_stack]
    known = [(entry.get('path'), name) for name, entry in sorted(journal.items()) if name in live]
    known += [(item.path, item.name) for item in (record.stack if record is not None else ()) if item.name in live]
    names = dict((path, name) for path, name in known if isinstance(path, str))
    paths = list(files) + [path for path in names if path not in files]
    builds = dict((patch.name, patch.build_id) for patch in live_stack)
    return [relation.as_dict() for relation in relations(gather(root, live, paths, open_module, builds, names))]


def main():
    module = AnsibleModule(**livepatch_info_spec())
    try:
        result = read_state(module.params)
    except LivepatchError as exc:
        module.fail_json(msg=exc.message, rule=exc.rule, patches=exc.patches, **exc.detail)
    except Exception as exc:  # pylint: disable=broad-except
        # A bug still ends in a JSON result with a rule, never a bare traceback.
        module.fail_json(msg='internal error (%s: %s); please report it' % (type(exc).__name__, exc),
                         rule='internal_error', patches=[])
    for warning in result['warnings_seen']:
        module.warn(warning)
    if module.params['facts']:
        result['ansible_facts'] = {'kernelops_livepatch': dict(
            (key, value) for key, value in result.items() if key != 'warnings_seen')}
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
