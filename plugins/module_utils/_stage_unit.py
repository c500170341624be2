# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot restore's systemd unit on the host: its file, enabled or not.

PRIVATE: this module_util may change at any time.

The role renders the unit on the controller and ``livepatch_stage`` installs it in the call it
makes anyway, with the restore's files (``_stage_restore``): three module runs fewer on a first
install than a template and a systemd task (each a Python start on the host). As there,
deciding is kept apart from acting: :func:`decide` reads the host and changes nothing, so check
mode reports what :func:`carry_out` then does. The file is written like the restore's files
(root's 0644, temp file, fsync, rename); anything but a regular file in its place (a mask's
symlink to /dev/null, say) is refused, not written through. ``systemctl enable`` runs when the
unit is not enabled or its file changed (its ``[Install]`` section may have), ``systemctl
disable`` before it is removed; both reload systemd themselves (systemctl(1), ``--no-reload``),
so ``systemctl daemon-reload`` runs only after a removal. A reload costs seconds on a small host.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._stage import Env, file_state, install_file, sha256_of
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['UnitPlan', 'decide', 'carry_out', 'diff']

SYSTEMCTL_FAILED = 'systemctl_failed'


@value_object
class UnitPlan:
    """What :func:`decide` found to do: ``changes`` as ``restore_changes`` reports them, in order."""

    name: str
    path: str
    state: str                # present | absent
    sha256: str = ''
    changes: Tuple[Tuple[str, str], ...] = ()   # (path or unit name, action)

    def as_dicts(self) -> List[Dict[str, str]]:
        return [{'path': path, 'action': action} for path, action in self.changes]


def decide(name: str, unit_dir: str, state: str, content: str, unit_state: str, env: Env) -> UnitPlan:
    """present: write (copy/fix) and enable as needed; absent: disable and remove what is there."""
    if not name or '/' in name or name.startswith('.') or name != name.strip():
        raise LivepatchError('bad_input', 'unit must be a systemd unit name, not %r' % name)
    path = os.path.join(unit_dir, name)
    if state == 'absent':
        changes: List[Tuple[str, str]] = [(name, 'disable')] if unit_state == 'enabled' else []
        # Only a file that is there and regular is ours to remove (a mask's symlink is the admin's).
        if sha256_of(path)[0] is not None:
            changes.append((path, 'remove'))
        return UnitPlan(name=name, path=path, state=state, changes=tuple(changes))
    sha256 = hashlib.sha256(content.encode('utf-8')).hexdigest()
    action = file_state(path, sha256, env, what='the boot restore unit')
    changes = [(path, action)] if action != 'right' else []
    if unit_state != 'enabled' or action == 'copy':
        changes.append((name, 'enable'))
    return UnitPlan(name=name, path=path, state=state, sha256=sha256, changes=tuple(changes))


def carry_out(plan: UnitPlan, content: str, env: Env,
              run: Callable[[Sequence[str]], Tuple[int, str, str]]) -> None:
    """Do the plan's changes in order; ``run`` runs a command (``module.run_command``)."""
    def systemctl(*args: str) -> None:
        rc, out, err = run(['systemctl'] + list(args))
        if rc != 0:
            raise LivepatchError(SYSTEMCTL_FAILED, 'systemctl %s failed (exit %d): %s'
                                 % (' '.join(args), rc, (err or out).strip() or 'no message'))

    reload = False
    for path, action in plan.changes:
        if action == 'copy':
            install_file([content.encode('utf-8')], path, plan.sha256, env)
            reload = True
        elif action == 'fix':
            os.chown(path, *env.owner, follow_symlinks=False)
            os.chmod(path, 0o644)
        elif action == 'remove':
            os.unlink(path)
            reload = True
        elif action == 'disable':
            systemctl('disable', plan.name)
        elif action == 'enable':
            # enable reloads systemd itself (systemctl(1), --no-reload): one reload, not two.
            systemctl('enable', plan.name)
            reload = False
    if reload:
        systemctl('daemon-reload')


def diff(plan: UnitPlan) -> Optional[Dict[str, str]]:
    """``--diff``: the unit file and whether it is enabled, before and after; None when nothing changes."""
    if not plan.changes:
        return None
    before, after = [], []
    for path, action in plan.changes:
        if action in ('copy', 'fix', 'remove'):
            before.extend([path] if os.path.lexists(path) else [])
            after.extend([path + ' (sha256 %s)' % plan.sha256] if action == 'copy' else
                         [path + ' (root 0644)'] if action == 'fix' else [])
        else:
            before.append('%s: %s' % (path, 'not enabled' if action == 'enable' else 'enabled'))
            after.append('%s: %s' % (path, 'enabled' if action == 'enable' else 'not enabled'))
    return {'before_header': plan.path + ' (boot restore unit)', 'after_header': plan.path + ' (boot restore unit)',
            'before': ''.join(line + '\n' for line in before), 'after': ''.join(line + '\n' for line in after)}
