# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""One run of ``livepatch_stage`` on the host: read what the role needs, decide, act, report.

PRIVATE: this module_util may change at any time.

Besides the files (:mod:`._stage`), the run reads what the role's later tasks need, in the same
round trip: the running release, whether systemd runs (``sd_booted(3)``: ``/run/systemd/system``
exists), whether the restore unit is enabled, the checksums of files the role installs, the
build ID of each live patch (docs/developer.md §9.7), and what the last boot's restore reported
beside the running release's record (its crash marker and report, docs/developer.md §10.6).
"""

from __future__ import annotations

import os
import traceback
from typing import Any, Dict, List, Optional

from ansible_collections.kernelops.livepatch.plugins.module_utils import _stage, _stage_restore, _stage_unit
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import HostLock, read_restore
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import observe

__all__ = ['real_env', 'run']


def real_env(module: Any) -> _stage.Env:
    """The managed host itself. Tests replace this function with one returning a temporary tree."""
    timeout = module.params['lock_timeout']
    return _stage.Env(dir=os.path.normpath(module.params['dir']), release=os.uname()[2],
                      root=module.params['root'], lock=lambda: HostLock(timeout=timeout))


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
        _rc, out, _err = _systemctl(module)(['systemctl', 'is-enabled', module.params['unit']])
        unit_state = out.strip()
    snapshot = observe(env.root)
    return {'release': env.release, 'service_mgr': 'systemd' if systemd else 'other', 'unit_state': unit_state,
            'checksums': _checksums(module.params['checksums']),
            'builds': dict((patch.name, patch.build_id) for patch in snapshot.stack),
            # The crash-loop guard's input (docs/developer.md §10.6), read by _host's own readers.
            'restore': read_restore(os.path.join(env.dir, env.release))}


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


def _restore_plan(params: Dict[str, Any], controller: Dict[str, Any], env: _stage.Env,
                  systemd: bool) -> Optional[_stage_restore.RestorePlan]:
    """What installing or removing the boot restore's files does; None: not asked, or no systemd to run it."""
    state = params.get('restore_install')
    if not state or (state == 'present' and not systemd):
        return None
    manifest = _stage_restore.check_manifest(controller.get('restore') or {})
    if state == 'present' and not manifest:
        raise LivepatchError('bad_input', 'restore_install=present needs the list of the collection\'s restore files, '
                             'which the action plugin livepatch_stage sends; run the module by its name')
    return _stage_restore.decide(params['restore_dir'], state, manifest, env)


def _unit_plan(params: Dict[str, Any], result: Dict[str, Any], env: _stage.Env) -> Optional[_stage_unit.UnitPlan]:
    """What installing or removing the restore's unit does; None: no unit_content, or no systemd to run it."""
    state = params.get('restore_install')
    if not state or params.get('unit_content') is None or result['service_mgr'] != 'systemd':
        return None
    return _stage_unit.decide(params.get('unit') or '', params['unit_dir'], state, params['unit_content'],
                              result['unit_state'], env)


def _systemctl(module: Any) -> Any:
    return lambda argv: module.run_command(list(argv), environ_update={'LC_ALL': 'C'})


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
    plan = _restore_plan(params, controller, env, result['service_mgr'] == 'systemd')
    unit = _unit_plan(params, result, env)
    # The unit runs the script: installed after the restore's files, removed before them.
    restore_changes = [change.as_dict() for change in plan.changes] if plan else []
    unit_changes = unit.as_dicts() if unit else []
    result.update({'selected': running is not None, 'patches': list(decision.running),
                   'files': list(decision.files), 'staged': decision.staged(),
                   'restore_changes': (unit_changes + restore_changes if unit and unit.state == 'absent'
                                       else restore_changes + unit_changes)})
    # Check mode needs no bytes: the checksums alone say what would be copied.
    restore_bytes = plan.copies if plan and not module.check_mode and not controller.get('bundle') else []
    if decision.need or restore_bytes:
        # Nothing changed yet: the action plugin checks and sends these from the controller and calls again.
        result.update(dict(need=list(decision.need)) if decision.need else {})
        result.update(dict(need_restore=restore_bytes) if restore_bytes else {})
        return result
    if module._diff:
        unit_diff = _stage_unit.diff(unit) if unit else None
        result['diff'] = (_diff(decision, env) + ([_stage_restore.diff(plan)] if plan and plan.changes else [])
                          + ([unit_diff] if unit_diff else []))
    result['changed'] = decision.changes or bool(plan and plan.changes) or bool(unit_changes)
    if module.check_mode or not result['changed']:
        return result
    if os.geteuid() != 0:
        raise LivepatchError('not_root', 'copying patch files and writing boot records needs root (become: true)')
    # The bytes are checked before anything changes: a wrong copy leaves the host as it was.
    data = _stage_restore.read_bundle(controller['bundle'], plan) if plan and plan.copies else {}
    if decision.changes:
        result['copied'] = _stage.carry_out(decision, controller.get('sources') or {}, env)
    if unit and unit_changes and unit.state == 'absent':
        _stage_unit.carry_out(unit, params['unit_content'], env, _systemctl(module))
    if plan and plan.changes:
        _stage_restore.carry_out(plan, data, env)
    if unit and unit_changes and unit.state == 'present':
        _stage_unit.carry_out(unit, params['unit_content'], env, _systemctl(module))
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
