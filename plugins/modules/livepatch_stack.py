#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: livepatch_stack
short_description: Make the kernel's livepatch stack equal to a list, popping from the top and pushing on top
version_added: 0.1.0
description:
  - Converges the host's livepatch stack to the desired stack, bottom first, in one call.
  - Keeps the longest common bottom of the live and the desired stack (same name and same build, so a rebuilt patch
    with the same name counts as different), pops the rest of the live stack topmost first, then pushes the rest of
    the desired stack. Each patch may depend on every patch below it, which no tool can see, so patches are only ever
    popped from the top, on every kernel, although the kernel itself stopped enforcing that in Linux 5.1.
  - Waits for each transition to finish before the next step, polling in milliseconds; the kernel runs one transition
    at a time, system-wide.
  - Follows the rules of the running kernel's era. Since 5.1 a disabled patch is freed and cannot be enabled again, so
    pushing it again means unloading and loading it. From 4.12 to 5.0 a disabled patch stays listed and is enabled
    again instead. Before 4.12 patch modules can never be unloaded, so a pop only disables.
  - A replace (cumulative) patch retires every patch below it when it lands, so it may only stand at the bottom of the
    desired stack; pushed over a live stack it replaces it atomically, with no pops, and the retired modules are then
    unloaded.
  - Every C(.ko) is checked before anything changes, in Python on the host; it must exist, be a livepatch module, be
    built for the running kernel and carry the module name given.
  - Check mode returns the exact plan. Diff mode shows the stack before and after.
author:
  - kernelops livepatch maintainers (@kernelops)
extends_documentation_fragment:
  - kernelops.livepatch.transitions
options:
  stack:
    description:
      - The whole desired stack, bottom first. An empty list pops every patch.
      - Mutually exclusive with O(pop_to) and O(push).
    type: list
    elements: dict
    suboptions: &patch_options
      path:
        description:
          - Path of the patch module (C(.ko), C(.ko.xz) or C(.ko.gz)) on the managed host.
        type: path
        required: true
      name:
        description:
          - The patch's module name. Taken from the file when omitted; when given it must match the file, with dashes
            and underscores counted as the same.
        type: str
      replace:
        description:
          - Whether this is a replace (cumulative) patch, built with C(.replace = true). The kernel cannot tell before
            the patch is loaded, so say so here; since 6.11 the module checks it afterwards.
        type: bool
        default: false
      requires:
        description:
          - Names of patches that must be below this one in the stack. The kernel cannot know which patches depend on
            which; this is checked before anything changes.
        type: list
        elements: str
        default: []
  pop_to:
    description:
      - Keep the bottom O(pop_to) patches of the live stack, pop everything above, then push O(push).
      - V(0) pops everything. Fails when the live stack has fewer patches.
    type: int
  push:
    description:
      - Patches to push on top of the bottom O(pop_to) patches, bottom first. Used with O(pop_to).
    type: list
    elements: dict
    default: []
    suboptions: *patch_options
  skip_unrelated:
    description:
      - Off by default, and then the stack discipline holds as always; every patch above a changed one is popped and
        pushed again.
      - When on, and on 5.1 and later only, a patch in the middle of the stack may be removed, or replaced by one new
        patch (a new build or another name), without popping the patches above it, B(only) if the files and sysfs
        show no relation at all between it (and its replacement) and each of them; a missing or unreadable file
        counts as related (RV(relations)). A replacement is loaded on top, so the kernel's order, the result's
        RV(stack_after) and the boot record then have it above those patches.
      - The result's RV(notes) names the rule (C(rule skip_unrelated)) and RV(relations) lists the evidence checked;
        when the plan still pops and pushes a patch again, the notes say which relation of each such patch kept the
        rule from applying. This is structural evidence, not proof that the patches do not depend on each other; see
        the stack discipline guide.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Returns the exact plan (RV(plan)) and the stack it leads to, and changes nothing.
  diff_mode:
    support: full
    description: The stack before and after, one patch per line, bottom first.
  idempotent:
    support: full
    description: When the live stack already equals the desired stack, nothing is done and RV(changed) is false.
seealso:
  - module: kernelops.livepatch.livepatch_info
  - module: kernelops.livepatch.livepatch
  - ref: ansible_collections.kernelops.livepatch.docsite.stack_discipline
    description: Why patches form a stack, what each kernel era allows, and a picture of a pop-to-N/push plan.
  - ref: ansible_collections.kernelops.livepatch.docsite.workflows
    description: Inspect, push, pop to N, a bug in the bottom patch, replace patches, stuck transitions.
"""

EXAMPLES = r"""
- name: Converge the stack to three patches
  kernelops.livepatch.livepatch_stack:
    stack:
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0001.ko
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0002.ko
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0003.ko
        requires: [lp_cve_2026_0002]
  become: true

- name: Fix a bug in the second patch - pop down to the first, push the fixed second and the third again
  kernelops.livepatch.livepatch_stack:
    pop_to: 1
    push:
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0002_v2.ko
        name: lp_cve_2026_0002_v2
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0003.ko
  become: true

- name: Replace everything with one cumulative patch, atomically
  kernelops.livepatch.livepatch_stack:
    stack:
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cumulative_7.ko
        replace: true
    timeout: 30
  become: true

- name: Show what would happen, and fail rather than wait on a running transition
  kernelops.livepatch.livepatch_stack:
    pop_to: 0
    wait: false
  check_mode: true
  diff: true
  register: livepatch_plan

- name: Converge and record the stack for the boot-time restore; on a stall leave the transition running
  kernelops.livepatch.livepatch_stack:
    stack:
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0001.ko
    record: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/stack.json
    on_stall: fail
    rollback: false
    unload_retired: false
    lock_timeout: 120
  become: true

- name: Converge above the patches another tool loaded, leaving them at the bottom
  kernelops.livepatch.livepatch_stack:
    stack:
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0001.ko
    foreign: keep
  become: true

- name: Replace a middle patch without popping those above it, only if nothing ties them to it
  kernelops.livepatch.livepatch_stack:
    stack:
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0001.ko
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0002-v2.ko
      - path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0003.ko
    skip_unrelated: true
  become: true
"""

RETURN = r"""
changed:
  description: Whether the stack was (or in check mode would be) changed.
  returned: always
  type: bool
  sample: true
plan:
  description: The steps planned, in order. In check mode these are exactly the steps a real run would take.
  returned: when a plan could be made
  type: list
  elements: dict
  contains:
    action:
      description: V(disable), V(enable) (before 5.1 only), V(unload) or V(load).
      type: str
      sample: load
    patch:
      description: The patch the step acts on.
      type: str
      sample: lp_cve_2026_0002
    reason:
      description: Why the step is needed.
      type: str
      sample: push
    path:
      description: The file loaded.
      returned: for V(load) steps
      type: str
      sample: /var/lib/kernelops-livepatch/6.1.0-50-amd64/lp_cve_2026_0002.ko
    retires:
      description: The patches a replace patch retires when it lands.
      returned: for a replace patch pushed over a live stack
      type: list
      elements: str
      sample: [lp_cve_2026_0001]
stack_before:
  description: Names of the live patches before the run, bottom first.
  returned: when a plan could be made
  type: list
  elements: str
  sample: [lp_cve_2026_0001, lp_cve_2026_0002]
stack_after:
  description: Names of the patches the plan leads to, bottom first.
  returned: when a plan could be made
  type: list
  elements: str
  sample: [lp_cve_2026_0001, lp_cve_2026_0002, lp_cve_2026_0003]
kept:
  description: How many patches at the bottom were kept as they are.
  returned: when a plan could be made
  type: int
  sample: 1
notes:
  description: What the plan could not do better, for example builds that could not be compared.
  returned: when there is something to say
  type: list
  elements: str
  sample: ["could not compare builds of lp_old (no build ID or srcversion on one side); kept by name"]
relations:
  description:
    - With O(skip_unrelated=true), every relation found between the live patches (sysfs and the files in the journal)
      and between the desired ones (their files); the same entries as RV(kernelops.livepatch.livepatch_info#module:relations).
      When the plan still pops and pushes a patch again, RV(notes) names the relations that kept the rule from applying.
    - In check mode with O(skip_unrelated=false), the relations between each patch the plan pops and pushes again (in
      the old and the new stack, same build) and each patch it removes, replaces or adds, which is what ties them to the
      change, as the same evidence shows it. An empty list means none was seen.
  returned: when O(skip_unrelated=true), and in check mode when the plan pops and pushes a patch again
  type: list
  elements: dict
  sample: [{"lower": "lp_a", "upper": "lp_b", "kind": "same_function", "evidence": ["vmlinux:cmdline_proc_show,1"],
            "source": "file"}]
steps:
  description: The steps executed, with their outcome and duration, including those of a rollback.
  returned: when the stack was changed or a step failed
  type: list
  elements: dict
  contains:
    action:
      description: As in RV(plan).
      type: str
      sample: disable
    patch:
      description: As in RV(plan).
      type: str
      sample: lp_cve_2026_0003
    phase:
      description: V(apply) for the plan, V(rollback) for steps taken to restore the stack after a failure.
      type: str
      sample: apply
    outcome:
      description:
        - V(ok); V(failed) when the kernel refused the step; V(stalled) when its transition was still running after
          O(timeout) and left running (O(on_stall=fail)); V(reversed) when a stalled transition was reversed;
          V(skipped) for the unload of a module whose transition was forced (it can only go at reboot).
      type: str
      sample: ok
    kernel_changed:
      description:
        - Whether the step's write, load or unload succeeded, that is whether it changed the kernel, even when a later
          check of the same step failed. RV(changed) is true as soon as one step changed the kernel.
      type: bool
      sample: true
    duration_ms:
      description: Wall time of the step in milliseconds, waits for the transition included.
      type: float
      sample: 3.27
    kernel_messages:
      description: Kernel log lines written while a patch was loaded.
      returned: for V(load) steps that logged something
      type: list
      elements: str
      sample: ["livepatch: enabling patch 'lp_cve_2026_0003'"]
    blockers:
      description: The tasks that blocked the transition, with their kernel stacks.
      returned: for a stalled step
      type: list
      elements: dict
      sample: [{"pid": 812, "tid": 812, "comm": "lab_busy", "stack": ["[<0>] lab_busy_sleep+0x2a/0x60 [lab_busy]"]}]
    error:
      description: What went wrong.
      returned: for a step that did not succeed
      type: str
      sample: "loading patch lp_state_v1 failed: Invalid argument"
stack:
  description:
    - The patches on the kernel's list after the run (before it, in check mode or when nothing was to be done), bottom
      first, as RV(kernelops.livepatch.livepatch_info#module:stack) returns them.
  returned: when a plan could be made
  type: list
  elements: dict
  sample: [{"name": "lp_cve_2026_0001", "enabled": true, "transition": false, "replace": false, "stack_order": 1,
            "objects": [], "refcnt": 1, "taint": "OEK", "build_id": "3f1c0b9e", "srcversion": null}]
leftovers:
  description: Livepatch modules still loaded but off the stack after the run (see RV(kernelops.livepatch.livepatch_info#module:leftovers)).
  returned: when a plan could be made
  type: list
  elements: dict
  sample: []
reboot_required:
  description: Whether a forced module is loaded, which only a reboot removes.
  returned: when a plan could be made
  type: bool
  sample: false
forced:
  description: Patches whose transition this run forced (only with O(on_stall=force)).
  returned: when a transition was forced
  type: list
  elements: str
  sample: [lp_cve_2026_0003]
rollback:
  description:
    - What happened when the run tried to bring the stack back after a failure.
    - C(as_before) is true only when the name and the build of every live patch equal the stack before the run;
      C(attempted), C(succeeded), C(steps), C(reason), C(missing_files) (popped patches whose file is not known) and
      C(mismatched) (patches whose file now holds another build, so it was not loaded) say how it got there.
  returned: when a step failed
  type: dict
  sample: {"attempted": true, "succeeded": true, "as_before": true, "steps": 2}
record:
  description: The file the resulting stack was recorded in (O(record)).
  returned: when O(record) is set and the run succeeded
  type: str
  sample: /var/lib/kernelops-livepatch/6.1.0-50-amd64/stack.json
error_detail:
  description: What the kernel said or showed when a step failed.
  returned: when a step failed
  type: dict
  contains:
    errno:
      description: The error name the kernel gave for a failed write, module load (C(finit_module)) or unload
        (C(delete_module)).
      returned: when the kernel refused a step
      type: str
      sample: EINVAL
    kernel_messages:
      description: Kernel log lines written during the failed load.
      returned: when a load failed
      type: list
      elements: str
      sample: ["livepatch: Livepatch patch (lp_state_v1) is not compatible with the already installed livepatches."]
    stalled_patch:
      description: The patch whose transition stalled.
      returned: when a transition stalled
      type: str
      sample: lp_cve_2026_0003
    direction:
      description: V(patching) or V(unpatching).
      returned: when a transition stalled
      type: str
      sample: patching
    waited_s:
      description: Seconds waited before the transition counted as stalled.
      returned: when a transition stalled
      type: float
      sample: 60.0
    blockers:
      description: The tasks that blocked the transition (pid, tid, comm, kernel stack).
      returned: when a transition stalled
      type: list
      elements: dict
      sample: [{"pid": 812, "tid": 812, "comm": "nfsd", "stack": ["[<0>] svc_recv+0x5b/0x120 [sunrpc]"]}]
    reversed:
      description: Whether the stalled transition was reversed (O(on_stall=reverse)).
      returned: when a transition stalled and O(on_stall=reverse)
      type: bool
      sample: true
    reverse_s:
      description: Seconds the reverse transition took.
      returned: when a transition stalled and O(on_stall=reverse)
      type: float
      sample: 1.05
foreign:
  description:
    - The live patches this collection did not load (see O(foreign)), bottom first, each with its name, build ID and
      position from the bottom of the live stack, as RV(kernelops.livepatch.livepatch_info#module:foreign) describes them.
  returned: when a plan could be made
  type: list
  elements: dict
  sample: [{"name": "kpatch_vendor_fix", "build_id": "9a1c44e0b2d3", "position": 1}]
rule:
  description:
    - The rule the request would break, when the module refused it (for example V(replace_not_at_bottom),
      V(duplicate_name), V(release_mismatch), V(not_livepatch), V(transition_running), V(relative_path),
      V(bad_record)), or what failed (V(load_failed), V(transition_stalled), V(lock_timeout), V(unexpected_result)).
    - V(internal_error) is a bug of this collection; the result still carries RV(stack) as observed after it.
  returned: when the module failed
  type: str
  sample: replace_not_at_bottom
patches:
  description: The patches a refusal is about (empty when it is about no patch in particular).
  returned: when the module failed
  type: list
  elements: str
  sample: [lp_cumulative_7, lp_cve_2026_0001]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._runner import Runner, wanted_from_live
from ansible_collections.kernelops.livepatch.plugins.module_utils._spec import livepatch_stack_spec


def desired_stack(runner, snapshot):
    """The wanted stack: the given list, or the bottom ``pop_to`` live patches plus ``push``."""
    params = runner.params
    if params['stack'] is not None:
        return [runner.resolve(entry) for entry in params['stack']]
    live = snapshot.live_stack
    if params['pop_to'] < 0:
        raise LivepatchError('bad_input', 'pop_to must be 0 or more, not %d' % params['pop_to'])
    if params['pop_to'] > len(live):
        raise LivepatchError('pop_to_beyond_stack', 'pop_to=%d, but the live stack has only %d patches (%s)'
                             % (params['pop_to'], len(live), ', '.join(p.name for p in live) or 'none'),
                             [p.name for p in live])
    kept = [wanted_from_live(patch) for patch in live[:params['pop_to']]]
    return kept + [runner.resolve(entry) for entry in params['push']]


def main():
    module = AnsibleModule(**livepatch_stack_spec())
    Runner(module).run(desired_stack)


if __name__ == '__main__':
    main()
