#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# The work is done by the action plugin of the same name (plugins/action/livepatch_report.py) on
# the controller; this file holds its documentation.

from __future__ import annotations

DOCUMENTATION = r"""
module: livepatch_report
short_description: Write the fleet report of a livepatch run (HTML and JSON) on the controller
version_added: 0.2.0
description:
  - Reads the facts the role R(kernelops.livepatch.livepatch_stack,ansible_collections.kernelops.livepatch.livepatch_stack_role)
    set on each host (C(livepatch_stack_status), C(livepatch_stack_rule), C(livepatch_stack_message), the stack before
    and after with GNU build IDs, C(livepatch_stack_reboot_required), C(livepatch_stack_foreign),
    C(livepatch_stack_boot_restore), C(livepatch_stack_duration)) and writes one row per host.
  - Writes O(dest)/O(basename).json and O(dest)/O(basename).html. The page is self-contained (inline CSS and
    JavaScript, no network), sortable by any column, and lists the failed and unreachable hosts first.
  - A host that has none of these facts is reported with status V(not_run).
  - Runs on the controller and contacts no host. The collection playbook C(kernelops.livepatch.converge) runs it at
    its end.
author:
  - kernelops livepatch maintainers (@kernelops)
options:
  hosts:
    description: Inventory names of the hosts to report, usually every host of the run.
    type: list
    elements: str
    required: true
  dest:
    description: Absolute directory on the controller; created when missing. The two files in it are replaced atomically.
    type: path
    required: true
  basename:
    description: File name of both files, without the extension.
    type: str
    default: livepatch-report
attributes:
  check_mode:
    support: full
    description: The report describes the run, so it is written in check mode too (the hosts' status is then V(planned)).
  diff_mode:
    support: none
    description: The files are reports, not state; there is nothing to compare.
  idempotent:
    support: full
    description: Writes the same two files for the same facts, apart from the time stamp in them.
notes:
  - In AWX/AAP the default directory of C(kernelops.livepatch.converge) is the job's artifact directory, which AWX
    removes with the job; the artifact C(livepatch_results) (set_stats) is what AWX keeps. Point C(livepatch_report_dir)
    at a directory exposed to the execution environment to keep the page.
"""

EXAMPLES = r"""
- name: Write the report of every host of the run
  kernelops.livepatch.livepatch_report:
    hosts: "{{ ansible_play_hosts_all }}"
    dest: /srv/reports/livepatch
    basename: livepatch-{{ lookup('ansible.builtin.pipe', 'date +%Y%m%d-%H%M') }}
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
html:
  description: Path of the HTML page.
  returned: always
  type: str
  sample: /srv/reports/livepatch/livepatch-report.html
json:
  description: Path of the JSON file (the same data as the page, C(schema) 1).
  returned: always
  type: str
  sample: /srv/reports/livepatch/livepatch-report.json
counts:
  description: Number of hosts per status.
  returned: always
  type: dict
  sample: {"converged": 48, "failed": 1, "unreachable": 1}
failed_hosts:
  description: The hosts whose status is V(failed) or V(unreachable), in the order of the report.
  returned: always
  type: list
  elements: str
  sample: [web17]
results:
  description: Per host, the keys C(release), C(status), C(rule), C(message), C(stack) (names after the run, bottom first)
    and C(reboot_required); C(kernelops.livepatch.converge) records this as the job artifact C(livepatch_results).
  returned: always
  type: dict
  sample: {"web17": {"release": "6.1.0-50-amd64", "status": "failed", "rule": "bad_patch_file",
           "message": "patch file ... does not exist on the controller", "stack": [], "reboot_required": false}}
"""
