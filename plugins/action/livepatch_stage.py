# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Action plugin livepatch_stage: the controller's half of the role's file handling.

The module decides on the host (it alone sees what is there); this plugin resolves each ``src``
against the documented base, and only when the module names files it lacks (``need``) reads and
hashes them here, sends the ones to copy and calls the module again. The boot restore's files
(``restore_install=present``) are this collection's own: their checksums go with the first call,
and the ones the host lacks (``need_restore``) go in one transfer with the second. A run with
nothing to copy is one module call.
"""

from __future__ import annotations

import os

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._spec import livepatch_stage_spec
from ansible_collections.kernelops.livepatch.plugins.plugin_utils import _sources

MODULE = 'kernelops.livepatch.livepatch_stage'
COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ActionModule(ActionBase):
    # False: no remote temporary directory up front (with pipelining a run with nothing to send is
    # one command on the host); _tmpdir() makes one only when there are files to send.
    TRANSFERS_FILES = False

    def _refuse(self, result, exc):
        result.update(failed=True, changed=False, msg=exc.message, rule=exc.rule, patches=exc.patches)
        return result

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        spec = livepatch_stage_spec()
        validation = ArgumentSpecValidator(spec['argument_spec']).validate(self._task.args)
        if validation.error_messages:
            return self._refuse(result, LivepatchError('bad_input', '; '.join(validation.error_messages)))
        base = _sources.src_base(validation.validated_parameters['src_dir'], task_vars.get('playbook_dir'),
                                 COLLECTION_ROOT, os.getcwd())
        args = _sources.resolve_src(validation.validated_parameters, base)
        args.pop('_controller', None)
        host = task_vars.get('inventory_hostname', 'the host')
        restore = {}
        if args.get('restore_install') == 'present':
            restore = _sources.restore_files(COLLECTION_ROOT)
            args['_controller'] = {'restore': _sources.restore_manifest(restore)}
        try:
            first = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
            if first.get('failed') or not (first.get('need') or first.get('need_restore')):
                if first.get('rule') == _sources.BAD_PATCH_FILE:
                    first['msg'] = '%s; nothing on %s was changed.' % (first.get('msg'), host)
                result.update(first)
                return result
            controller = dict(args.get('_controller') or {})
            if first.get('need'):
                try:
                    controller['files'] = _sources.check_needed(first['need'], host)
                except LivepatchError as exc:
                    return self._refuse(result, exc)
                if not self._task.check_mode:
                    controller['sources'] = self._send(first['need'])
            if first.get('need_restore'):
                controller['bundle'] = self._send_bundle(_sources.restore_bundle(restore, first['need_restore']))
            sent = list((controller.get('sources') or {}).values()) + ([controller['bundle']] if 'bundle' in controller else [])
            if sent:
                self._fixup_perms2([self._tmpdir()] + sent)
            args['_controller'] = controller
            second = self._execute_module(module_name=MODULE, module_args=args, task_vars=task_vars)
            if second.get('need') or second.get('need_restore'):
                lacking = [item['src'] for item in second.get('need') or ()] + list(second.get('need_restore') or ())
                second.update(failed=True, rule='internal_error',
                              msg='the host still lacks %s after they were sent' % lacking)
            result.update(second)
            return result
        finally:
            self._remove_tmp_path(self._connection._shell.tmpdir)

    def _tmpdir(self):
        return self._connection._shell.tmpdir or self._make_tmp_path()

    def _send(self, need):
        """Put each file to copy in the remote temporary directory; the module checks its sha256 again."""
        tmpdir = self._tmpdir()
        sources = {}
        for item in need:
            remote = self._connection._shell.join_path(tmpdir, item['sha256'])
            self._transfer_file(item['src'], remote)
            sources[item['sha256']] = remote
        return sources

    def _send_bundle(self, data):
        """The boot restore's files the host lacks, in one transfer; the module checks each sha256."""
        remote = self._connection._shell.join_path(self._tmpdir(), 'restore-files.json')
        self._transfer_data(remote, data)
        return remote
