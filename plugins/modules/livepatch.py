#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: livepatch
short_description: Push one live patch on top of the kernel's stack, or pop it from the top
version_added: 0.1.0
description:
  - With O(state=present), pushes the patch on top of the live stack unless that very build is live already. A
    different build with the same name on top of the stack is popped and the new one pushed.
  - With O(state=absent), pops the patch if it is on top of the stack. A patch with other patches above it is refused,
    naming them, unless O(pop_above=true), which pops those too (they are listed in RV(plan)).
  - A replace (cumulative) patch retires every patch below it when it lands; pushing one makes it the whole stack.
  - To converge a whole stack in one call, use M(kernelops.livepatch.livepatch_stack).
author:
  - kernelops livepatch maintainers (@kernelops)
extends_documentation_fragment:
  - kernelops.livepatch.transitions
options:
  path:
    description:
      - Path of the patch module (C(.ko), C(.ko.xz) or C(.ko.gz)) on the managed host.
      - Required with O(state=present). With O(state=absent) it may stand in for O(name).
    type: path
  name:
    description:
      - The patch's module name. Taken from O(path) when omitted; when both are given they must agree.
    type: str
  state:
    description:
      - V(present) to have the patch live, on top of the stack if it has to be pushed.
      - V(absent) to have it off the stack.
    type: str
    choices: [present, absent]
    default: present
  replace:
    description:
      - Whether this is a replace (cumulative) patch, built with C(.replace = true).
    type: bool
    default: false
  requires:
    description:
      - Names of patches that must be live below this one; checked before anything changes.
    type: list
    elements: str
    default: []
  pop_above:
    description:
      - Also pop the patches above this one, when it is not on top. They are popped, not pushed again.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Returns the exact plan and changes nothing.
  diff_mode:
    support: full
    description: The stack before and after, one patch per line, bottom first.
  idempotent:
    support: full
    description: When the patch is already live (same build) or already off the stack, nothing is done.
seealso:
  - module: kernelops.livepatch.livepatch_stack
  - module: kernelops.livepatch.livepatch_info
  - ref: ansible_collections.kernelops.livepatch.docsite.workflows
    description: Inspect, push, pop to N, a bug in the bottom patch, replace patches, stuck transitions.
"""

EXAMPLES = r"""
- name: Push a patch on top of the stack
  kernelops.livepatch.livepatch:
    path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0003.ko
    requires: [lp_cve_2026_0002]
  become: true

- name: Pop the top patch
  kernelops.livepatch.livepatch:
    name: lp_cve_2026_0003
    state: absent
  become: true

- name: Pop a patch from the middle, and everything above it
  kernelops.livepatch.livepatch:
    name: lp_cve_2026_0001
    state: absent
    pop_above: true
  become: true

- name: Push a cumulative patch that replaces the whole stack; give up after 30 s, reversing the transition
  kernelops.livepatch.livepatch:
    path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cumulative_8.ko
    replace: true
    timeout: 30
    on_stall: reverse
    rollback: true
    unload_retired: true
  become: true

- name: Push only if no transition is running and no other run holds the host lock for 10 s
  kernelops.livepatch.livepatch:
    path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0004.ko
    wait: false
    lock_timeout: 10
  become: true

- name: Push a patch and record the resulting stack for the boot-time restore
  kernelops.livepatch.livepatch:
    path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cve_2026_0005.ko
    record: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/stack.json
  become: true

- name: Push a patch even if the patches another tool loaded have to be popped for it
  kernelops.livepatch.livepatch:
    path: /var/lib/kernelops-livepatch/{{ ansible_facts.kernel }}/lp_cumulative_9.ko
    replace: true
    foreign: pop
  become: true
"""

RETURN = r"""
# The keys this module shares with livepatch_stack mean the same there: each is described once, in
# livepatch_stack's RETURN (its sample too), and referenced here by name with its type.
changed: {description: "As RV(kernelops.livepatch.livepatch_stack#module:changed).", returned: always, type: bool}
stack_before: {description: "As RV(kernelops.livepatch.livepatch_stack#module:stack_before).", returned: when a plan could be made, type: list, elements: str}
stack_after: {description: "As RV(kernelops.livepatch.livepatch_stack#module:stack_after).", returned: when a plan could be made, type: list, elements: str}
kept: {description: "As RV(kernelops.livepatch.livepatch_stack#module:kept).", returned: when a plan could be made, type: int}
notes: {description: "As RV(kernelops.livepatch.livepatch_stack#module:notes).", returned: when there is something to say, type: list, elements: str}
steps: {description: "As RV(kernelops.livepatch.livepatch_stack#module:steps).", returned: when the stack was changed or a step failed,
        type: list, elements: dict}
stack: {description: "As RV(kernelops.livepatch.livepatch_stack#module:stack).", returned: when a plan could be made, type: list, elements: dict}
leftovers: {description: "As RV(kernelops.livepatch.livepatch_stack#module:leftovers).", returned: when a plan could be made, type: list, elements: dict}
reboot_required: {description: "As RV(kernelops.livepatch.livepatch_stack#module:reboot_required).", returned: when a plan could be made, type: bool}
forced: {description: "As RV(kernelops.livepatch.livepatch_stack#module:forced).", returned: when a transition was forced, type: list, elements: str}
rollback: {description: "As RV(kernelops.livepatch.livepatch_stack#module:rollback).", returned: when a step failed, type: dict}
error_detail: {description: "As RV(kernelops.livepatch.livepatch_stack#module:error_detail).", returned: when a step failed, type: dict}
record: {description: "As RV(kernelops.livepatch.livepatch_stack#module:record).", returned: when O(record) is set and the run succeeded, type: str}
patches: {description: "As RV(kernelops.livepatch.livepatch_stack#module:patches).", returned: when the module failed, type: list, elements: str}
plan:
  description: As RV(kernelops.livepatch.livepatch_stack#module:plan).
  returned: when a plan could be made
  type: list
  elements: dict
  sample: [{"action": "load", "patch": "lp_cve_2026_0003", "reason": "push", "path": "/var/lib/lp_cve_2026_0003.ko"}]
foreign: {description: "As RV(kernelops.livepatch.livepatch_info#module:foreign).", returned: when a plan could be made, type: list,
          elements: dict}
rule:
  description:
    - As RV(kernelops.livepatch.livepatch_stack#module:rule). A refusal particular to this module is V(not_on_top),
      when the patch has others above it and O(pop_above=false).
  returned: when the module failed
  type: str
  sample: not_on_top
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._runner import (
    Runner, patch_name_of, same_build, wanted_from_live,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._spec import livepatch_spec


def _position(live, name):
    for index, patch in enumerate(live):
        if patch.name == name:
            return index
    return None


def _refuse_middle(live, index, pop_above, what):
    above = [p.name for p in live[index + 1:]]
    if above and not pop_above:
        raise LivepatchError('not_on_top', 'patch %s is not on top of the stack: %s above it; %s would break the stack '
                             'discipline (pop only from the top). Set pop_above=true to pop those too'
                             % (live[index].name, ', '.join(above), what), above)


def desired_stack(runner, snapshot):
    params = runner.params
    live = list(snapshot.live_stack)
    kept = [wanted_from_live(patch) for patch in live]
    if params['state'] == 'absent':
        index = _position(live, patch_name_of(params['name'], params['path']))
        if index is None:
            return kept
        _refuse_middle(live, index, params['pop_above'], 'popping it')
        return kept[:index]
    wanted = runner.resolve({'path': params['path'], 'name': params['name'], 'replace': params['replace'],
                             'requires': params['requires']})
    index = _position(live, wanted.name)
    if index is not None and same_build(live[index], wanted)[0]:
        return kept
    if wanted.replace:
        # It retires everything below it when it lands (docs/developer.md §3.4).
        return [wanted]
    if index is not None:
        _refuse_middle(live, index, params['pop_above'], 'replacing it with another build')
        return kept[:index] + [wanted]
    return kept + [wanted]


def main():
    module = AnsibleModule(**livepatch_spec())
    Runner(module).run(desired_stack)


if __name__ == '__main__':
    main()
