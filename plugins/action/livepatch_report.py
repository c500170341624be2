# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin livepatch_report: the fleet report, written on the controller.

An action plugin, not a callback: it is a task of the collection playbook, so it runs the same
under ansible-playbook, ansible-runner and AWX/AAP (which replace the stdout callback and do not
let a job template enable others), its result is a job event like any task's, and its summary
feeds set_stats. It reads the hosts' facts from hostvars; it never contacts a host.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.kernelops.livepatch.plugins.plugin_utils import _report

ARGUMENT_SPEC = {
    'hosts': {'type': 'list', 'elements': 'str', 'required': True},
    'dest': {'type': 'path', 'required': True},
    'basename': {'type': 'str', 'default': 'livepatch-report'},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        validation = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validation.error_messages:
            raise AnsibleActionFail('livepatch_report: ' + '; '.join(validation.error_messages))
        args = validation.validated_parameters
        dest = args['dest']
        if not os.path.isabs(dest):
            raise AnsibleActionFail('livepatch_report: dest must be an absolute directory on the controller, not %r' % dest)
        hostvars = (task_vars or {}).get('hostvars', {})
        rows = []
        for host in args['hosts']:
            facts = hostvars[host] if host in hostvars else {}
            rows.append(_report.host_row(host, dict((key, facts[key]) for key in _report.FACTS if key in facts)))
        report = _report.build_report(rows)
        json_path, html_path = _report.write_report(report, dest, args['basename'])
        result.update(
            changed=False,
            json=json_path,
            html=html_path,
            counts=report['counts'],
            failed_hosts=report['failed'],
            results=_report.results_by_host(report),
            msg='%d hosts: %s; report in %s' % (
                len(rows), ', '.join('%s %d' % item for item in sorted(report['counts'].items())) or 'none', html_path),
        )
        return result
