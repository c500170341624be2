# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One run of ``livepatch_stage`` on the host: read what the role needs, decide, act, report.

PRIVATE: this module_util may change at any time.

Besides the files (:mod:`._stage`), the run reads what the role's later tasks need, in the same
round trip: the running release, whether systemd runs (``sd_booted(3)``: ``/run/systemd/system``
exists), whether the restore unit is enabled, the checksums of files the role installs, and the
build ID of each live patch (docs/developer.md §9.7).
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Dict, List, Optional

from ansible_collections.kernelops.livepatch.plugins.module_utils import _stage
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import observe

__all__ = ['real_env', 'run']


def real_env(module: Any) -> _stage.Env:
    """The managed host itself. Tests replace this function with one returning a temporary tree."""
    timeout = module.params['lock_timeout']
    return _stage.Env(dir=os.path.normpath(module.params['dir']), release=os.uname()[2],
                      lock=lambda: HostLock(timeout=timeout))


def _checksums(paths: List[str]) -> Dict[str, str]:
    sums = {}
    for top in paths:
        found = [top]
        if os.path.isdir(top) and not os.path.islink(top):
            found = sorted(os.path.join(where, name) for where, _dirs, names in os.walk(top) for name in names)
        for path in found:
            digest, _why = _stage.sha256_of(path)
            if digest:
                sums[path] = digest
    return sums


def _probe(module: Any, env: _stage.Env) -> Dict[str, Any]:
    systemd = os.path.isdir(os.path.join(env.root, 'run', 'systemd', 'system'))
    unit_state = ''
    if systemd and module.params.get('unit'):
        _rc, out, _err = module.run_command(['systemctl', 'is-enabled', module.params['unit']],
                                            environ_update={'LC_ALL': 'C'})
        unit_state = out.strip()
    snapshot = observe(env.root)
    return {'release': env.release, 'service_mgr': 'systemd' if systemd else 'other', 'unit_state': unit_state,
            'checksums': _checksums(module.params['checksums']),
            'builds': dict((patch.name, patch.build_id) for patch in snapshot.stack)}


def _diff(decision: _stage.Decision, env: _stage.Env) -> List[Dict[str, str]]:
    """Per release: the files and the record before and after."""
    out = []
    releases: List[str] = []
    for release in [item['release'] for item in decision.files] + [item[0] for item in decision.records]:
        if release not in releases:
            releases.append(release)
    for release in releases:
        files = [item for item in decision.files if item['release'] == release]
        record = dict((name, (rec, changes)) for name, rec, changes in decision.records).get(release)
        if not any(item['state'] != 'right' for item in files) and not (record and record[1]):
            continue
        before = [item['dest'] for item in files if item['state'] != 'copy']
        after = [item['dest'] + (' (copied)' if item['state'] == 'copy' else '') for item in files]
        if record:
            before.append('stack.json: %s' % ('written before' if not record[1] else 'other or none'))
            after.append('stack.json: %s' % ', '.join(entry.name for entry in record[0].stack))
        out.append({'before_header': os.path.join(env.dir, release), 'after_header': os.path.join(env.dir, release),
                    'before': '\n'.join(before) + '\n', 'after': '\n'.join(after) + '\n'})
    for release, names in decision.remove:
        where = os.path.join(env.dir, release)
        out.append({'before_header': where, 'after_header': where + ' (removed)',
                    'before': 'stack.json: %s\n' % ', '.join(names), 'after': ''})
    return out


def _run(module: Any, env: _stage.Env) -> Dict[str, Any]:
    params = module.params
    controller = params.get('_controller') or {}
    result: Dict[str, Any] = {'changed': False, 'copied': []}
    result.update(_probe(module, env))
    running, staged = _stage.targets_from(
        params['stacks'], params['push'], env.release,
        installed=lambda release: os.path.isdir(os.path.join(env.modules_dir, release)))
    _stage.check_sha256s(([running] if running else []) + staged)
    decision = _stage.decide(running, staged, env, remove_old=params['remove_old_releases'], current=env.release,
                             controller=controller.get('files') or {})
    result.update({'selected': running is not None, 'patches': list(decision.running),
                   'files': list(decision.files), 'staged': decision.staged()})
    if decision.need:
        # Nothing changed yet: the action plugin checks these on the controller and calls again.
        result['need'] = list(decision.need)
        return result
    if module._diff:
        result['diff'] = _diff(decision, env)
    result['changed'] = decision.changes
    if module.check_mode or not decision.changes:
        return result
    if os.geteuid() != 0:
        raise LivepatchError('not_root', 'copying patch files and writing boot records needs root (become: true)')
    result['copied'] = _stage.carry_out(decision, controller.get('sources') or {}, env)
    return result


def run(module: Any, env: Optional[_stage.Env] = None) -> None:
    """The module's whole run; every failure ends in ``fail_json`` with a rule."""
    try:
        result = _run(module, env or real_env(module))
    except LivepatchError as exc:
        module.fail_json(msg=exc.message, rule=exc.rule, patches=exc.patches, **exc.detail)
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json(msg='internal error (%s: %s); please report it' % (type(exc).__name__, exc),
                         rule='internal_error', exception=traceback.format_exc())
    module.exit_json(**result)
