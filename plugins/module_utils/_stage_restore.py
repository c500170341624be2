# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The boot restore's files on the host: the thin entry script and the collection's module_utils.

PRIVATE: this module_util may change at any time.

The boot restore (``_restore.py``) runs as root at boot from ``DIR/livepatch_restore.py``, which
imports the collection's own module_utils from
``DIR/ansible_collections/kernelops/livepatch/plugins/module_utils/``. ``livepatch_stage``
installs them: the action plugin sends ``manifest`` (relative path -> sha256 of the
collection's copy) and, only for files whose checksum differs on the host, their bytes.

As for patch files (``_stage.py``), deciding is kept apart from acting: :func:`decide` reads
the host and returns a :class:`RestorePlan` (every directory to create or fix, every file to
copy, fix or remove) and changes nothing, so check mode reports exactly what
:func:`carry_out` then does. Directories are root's 0755, files root's 0644, written through a
temp file, fsync and rename (docs/developer.md §10.1: only root may change what root runs at
boot). A symlink or anything but a directory where one of our directories should be, or
anything but a regular file where one of our files should be, is refused: nothing is written
through it. Only our own tree is ever changed: files the collection no longer has are removed
from our module_utils directory only, and with ``state='absent'`` a directory is removed only
once it is empty (what someone else put there keeps it).
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import json
import os
import re
import stat
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._stage import Env, file_state, install_file
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['SCRIPT', 'UTILS', 'UTIL_NAME', 'RestoreChange', 'RestorePlan', 'check_manifest', 'decide', 'read_bundle',
           'carry_out', 'diff']

SCRIPT = 'livepatch_restore.py'
UTILS = 'ansible_collections/kernelops/livepatch/plugins/module_utils'
# Our directories below DIR (DIR itself first), top-down.
_OURS = ('',) + tuple('/'.join(UTILS.split('/')[:depth]) for depth in range(1, UTILS.count('/') + 2))
UTIL_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*[.]py$')  # a module_utils file we install
_PYCACHE = '__pycache__'
_DIR_MODE = 0o755
_FILE_MODE = 0o644
# The bundle is the module_utils' source text (under 1 MiB today); anything far larger is not ours.
MAX_BUNDLE_BYTES = 32 * 1024 * 1024


@value_object
class RestoreChange:
    """One thing :func:`carry_out` does: ``action`` create/fix (a directory), copy/fix/remove (a file)."""

    path: str
    action: str
    kind: str                 # 'directory' or 'file'
    rel: str = ''             # a file's path below DIR, as in the manifest
    sha256: str = ''

    def as_dict(self) -> Dict[str, str]:
        return {'path': self.path, 'action': self.action}


@value_object
class RestorePlan:
    """What :func:`decide` found to do, in the order :func:`carry_out` does it."""

    directory: str
    state: str                # present | absent
    changes: Tuple[RestoreChange, ...] = ()

    @property
    def copies(self) -> List[str]:
        """The manifest paths whose bytes the host needs."""
        return [change.rel for change in self.changes if change.action == 'copy']


def check_manifest(manifest: Mapping[str, Any]) -> Dict[str, str]:
    """The action plugin's manifest, refused unless each path is ours: the script or ``UTILS/NAME.py``."""
    out = {}
    for rel, sha256 in manifest.items():
        name = rel[len(UTILS) + 1:] if rel.startswith(UTILS + '/') else None
        ours = rel == SCRIPT or (name is not None and UTIL_NAME.match(name))
        digest = str(sha256).lower()
        if not ours or len(digest) != 64 or digest.strip('0123456789abcdef'):
            raise LivepatchError('bad_input', 'the boot restore file %r (sha256 %r) is not one of the collection\'s '
                                 'restore files' % (rel, sha256))
        out[rel] = digest
    return out


def _kind(path: str) -> Optional[os.stat_result]:
    """lstat, None when missing."""
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise


def _refuse_not_dir(path: str, st: os.stat_result) -> LivepatchError:
    what = 'a symbolic link' if stat.S_ISLNK(st.st_mode) else 'not a directory'
    return LivepatchError('unsafe_path', '%s is %s, where the boot restore\'s directory should be; the restore runs '
                          'as root from there, so nothing is written through it; remove it and run again' % (path, what),
                          detail={'unsafe_path': path})


def _ancestors(directory: str) -> List[RestoreChange]:
    """Directories above DIR to create (followed if symlinks: they are the system's, like /usr/local)."""
    missing = []
    path = os.path.dirname(directory)
    while not os.path.isdir(path):
        if os.path.lexists(path):
            raise LivepatchError('unsafe_path', '%s is not a directory; the boot restore is installed below it in %s'
                                 % (path, directory), detail={'unsafe_path': path})
        missing.append(RestoreChange(path=path, action='create', kind='directory'))
        path = os.path.dirname(path)
    return list(reversed(missing))


def _our_dirs(directory: str, env: Env) -> Tuple[List[RestoreChange], List[str]]:
    """(changes to our directories, those that exist), refusing a symlink or non-directory in their place."""
    changes, existing = [], []
    for rel in _OURS:
        path = os.path.join(directory, rel) if rel else directory
        st = _kind(path)
        if st is None:
            changes.append(RestoreChange(path=path, action='create', kind='directory'))
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse_not_dir(path, st)
        existing.append(path)
        if (st.st_uid, st.st_gid) != env.owner or stat.S_IMODE(st.st_mode) != _DIR_MODE:
            changes.append(RestoreChange(path=path, action='fix', kind='directory'))
    return changes, existing


def _regular(directory: str, pattern: Any) -> List[str]:
    """Names of the regular files (not symlinks) in ``directory`` matching ``pattern``; [] when it is missing."""
    try:
        with os.scandir(directory) as entries:
            return sorted(entry.name for entry in entries
                          if pattern.match(entry.name) and entry.is_file(follow_symlinks=False))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return []
        raise


def decide(directory: str, state: str, manifest: Mapping[str, str], env: Env) -> RestorePlan:
    """Read the host and say what installing (``present``) or removing (``absent``) the restore does."""
    directory = os.path.normpath(directory)
    if not os.path.isabs(directory) or directory == '/':
        raise LivepatchError('bad_input', 'restore_dir must be an absolute directory other than /, not %r' % directory)
    dirs, existing = _our_dirs(directory, env)
    utils = os.path.join(directory, UTILS)
    if state == 'absent':
        return RestorePlan(directory=directory, state=state, changes=tuple(_removal(directory, existing)))
    changes = _ancestors(directory) + dirs
    for rel, sha256 in sorted(manifest.items()):
        dest = os.path.join(directory, rel)
        action = file_state(dest, sha256, env, what="a file of the boot restore")
        if action != 'right':
            changes.append(RestoreChange(path=dest, action=action, kind='file', rel=rel, sha256=sha256))
    changes.extend(RestoreChange(path=os.path.join(utils, name), action='remove', kind='file')
                   for name in _regular(utils, UTIL_NAME) if '%s/%s' % (UTILS, name) not in manifest)
    return RestorePlan(directory=directory, state=state, changes=tuple(changes))


def _removal(directory: str, existing: Sequence[str]) -> List[RestoreChange]:
    """Our files, the byte code Python compiled from them, then each of our directories left empty, bottom-up."""
    utils = os.path.join(directory, UTILS)
    cache = os.path.join(utils, _PYCACHE)
    files = [os.path.join(directory, name) for name in _regular(directory, re.compile(re.escape(SCRIPT) + '$'))]
    files += [os.path.join(utils, name) for name in _regular(utils, UTIL_NAME)]
    cache_st = _kind(cache)
    if cache_st is not None and stat.S_ISDIR(cache_st.st_mode):
        files += [os.path.join(cache, name) for name in _regular(cache, re.compile(r'^[A-Za-z0-9_.-]+[.]pyc$'))]
    changes = [RestoreChange(path=path, action='remove', kind='file') for path in files]
    gone = set(files)
    for path in ([cache] if cache_st is not None and stat.S_ISDIR(cache_st.st_mode) else []) + list(reversed(existing)):
        left = [os.path.join(path, name) for name in os.listdir(path)]
        if all(item in gone for item in left):
            changes.append(RestoreChange(path=path, action='remove', kind='directory'))
            gone.add(path)
    return changes


def read_bundle(path: str, plan: RestorePlan) -> Dict[str, bytes]:
    """The bytes the action plugin sent (JSON, manifest path -> base64), each checked against the plan's sha256."""
    try:
        with open(path, 'rb') as handle:
            raw = handle.read(MAX_BUNDLE_BYTES + 1)
        if len(raw) > MAX_BUNDLE_BYTES:
            raise ValueError('larger than %d bytes' % MAX_BUNDLE_BYTES)
        sent = json.loads(raw.decode('utf-8'))
        data = dict((rel, base64.b64decode(text, validate=True)) for rel, text in sent.items())
    except (OSError, ValueError, AttributeError, TypeError, binascii.Error) as exc:
        raise LivepatchError('internal_error', 'the boot restore files sent to the host (%s) cannot be read: %s'
                             % (path, exc))
    for change in plan.changes:
        if change.action != 'copy':
            continue
        got = hashlib.sha256(data.get(change.rel, b'')).hexdigest() if change.rel in data else 'nothing'
        if got != change.sha256:
            raise LivepatchError('internal_error', 'the copy of %s sent to the host has sha256 %s, not %s; nothing of '
                                 'the boot restore was changed' % (change.rel, got, change.sha256))
    return data


def _fix(path: str, directory: bool, env: Env) -> None:
    """chown/chmod through an fd opened without following a symlink swapped in since :func:`decide`."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        if not directory and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LivepatchError('not_regular_file', '%s is no longer a regular file; nothing was written' % path)
        os.fchown(fd, *env.owner)
        os.fchmod(fd, _DIR_MODE if directory else _FILE_MODE)
    finally:
        os.close(fd)


def carry_out(plan: RestorePlan, data: Mapping[str, bytes], env: Env) -> None:
    """Do the plan's changes in order, holding the host lock (the restore holds it while it runs)."""
    with env.lock():
        for change in plan.changes:
            if change.action == 'create':
                os.mkdir(change.path, _DIR_MODE)
            if change.action in ('create', 'fix'):
                _fix(change.path, change.kind == 'directory', env)
            elif change.action == 'copy':
                install_file([data[change.rel]], change.path, change.sha256, env)
            elif change.kind == 'directory':
                os.rmdir(change.path)
            else:
                os.unlink(change.path)


def diff(plan: RestorePlan) -> Dict[str, str]:
    """``--diff``: each file and directory changed, before and after."""
    before, after = [], []
    for change in plan.changes:
        label = change.path + ('/' if change.kind == 'directory' else '')
        if change.action == 'create':
            after.append(label + ' (created, root 0755)')
        elif change.action == 'fix':
            before.append(label + ' (other owner or mode)')
            after.append(label + ' (root %s)' % ('0755' if change.kind == 'directory' else '0644'))
        elif change.action == 'copy':
            before.extend([label] if os.path.lexists(change.path) else [])
            after.append(label + ' (sha256 %s)' % change.sha256)
        else:
            before.append(label)
    return {'before_header': plan.directory + ' (boot restore)', 'after_header': plan.directory + ' (boot restore)',
            'before': ''.join(line + '\n' for line in before), 'after': ''.join(line + '\n' for line in after)}
