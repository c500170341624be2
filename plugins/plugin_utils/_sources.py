# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's half of ``livepatch_stage``: where a ``src`` is, and whether it is the file the user named.

PRIVATE to this collection; may change without notice. Runs on the controller only (the action
plugin livepatch_stage). Standard library only.

A file is read here only when the host lacks it (the host's module says which, in ``need``):
it must exist, be a regular file and have the ``sha256`` given; a file for a staged release is
also parsed with the collection's own module reader (``_elf.py``), because the host writes its
boot record from what the file says (name, build ID) and the file must be built for that
release (docs/developer.md §2.5).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from typing import Any, Dict, List, Mapping, Optional, Sequence

from ansible_collections.kernelops.livepatch.plugins.module_utils._elf import (
    CHUNK_BYTES, MAX_MODULE_BYTES, KoFileError, decompress, parse_module,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._stage import BAD_PATCH_FILE, FileInfo, check_info
from ansible_collections.kernelops.livepatch.plugins.module_utils._stage_restore import SCRIPT, UTILS, UTIL_NAME

__all__ = ['src_base', 'resolve_src', 'check_needed', 'restore_files', 'restore_manifest', 'restore_bundle']


def src_base(src_dir: Optional[str], playbook_dir: Optional[str], collection_root: str, cwd: str) -> str:
    """The directory a relative ``src`` starts from (the role's ``livepatch_stack_src_dir``).

    Unset, it is the playbook's directory, except for the collection's own playbooks: there
    ``playbook_dir`` is ``ansible_collections/kernelops/livepatch/playbooks/`` (imported or run by
    name), and the working directory, which ansible-runner and so AWX/AAP set to the project
    directory, is meant.
    """
    if src_dir:
        return src_dir
    own = os.path.realpath(os.path.join(collection_root, 'playbooks'))
    if not playbook_dir or os.path.realpath(playbook_dir) == own:
        return cwd
    return playbook_dir


def resolve_src(params: Mapping[str, Any], base: str) -> Dict[str, Any]:
    """The module's arguments with every ``src`` absolute (resolved against ``base``).

    Options left unset (None) are left out: the module counts a key given as a choice made
    (``src`` and ``path`` are mutually exclusive).
    """
    def patch(entry: Mapping[str, Any]) -> Dict[str, Any]:
        out = dict((key, value) for key, value in entry.items() if value is not None)
        if out.get('src') and not os.path.isabs(out['src']):
            out['src'] = os.path.join(base, out['src'])
        return out
    args = dict((key, value) for key, value in params.items() if value is not None)
    args['stacks'] = [dict(entry, patches=[patch(item) for item in entry.get('patches') or ()])
                      for entry in params.get('stacks') or ()]
    if params.get('push') is not None:
        args['push'] = [patch(item) for item in params['push']]
    return args


def _read(path: str) -> bytes:
    """The file's bytes; ``bad_patch_file`` when it is missing or not a regular file."""
    try:
        st = os.stat(path)
    except OSError:
        raise LivepatchError(BAD_PATCH_FILE, 'patch file %s does not exist on the controller' % path, [path])
    if not stat.S_ISREG(st.st_mode):
        raise LivepatchError(BAD_PATCH_FILE, '%s is not a regular file' % path, [path])
    if st.st_size > MAX_MODULE_BYTES:
        raise LivepatchError('too_large', '%s is %d bytes, larger than %d; not a patch module'
                             % (path, st.st_size, MAX_MODULE_BYTES), [path])
    chunks = []
    with open(path, 'rb') as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b''):
            chunks.append(chunk)
    return b''.join(chunks)


def _info(path: str, raw: bytes) -> FileInfo:
    try:
        info = parse_module(decompress(path, raw), path)
    except KoFileError as exc:
        raise LivepatchError(exc.rule, exc.message, [path], exc.detail)
    return FileInfo(name=info.name, build_id=info.build_id, release=info.release, vermagic=info.vermagic,
                    livepatch=info.livepatch)


def check_needed(need: Sequence[Mapping[str, Any]], host: str) -> Dict[str, Dict[str, Any]]:
    """sha256 -> what each file to copy says (empty for one only the running release uses).

    Every file is checked before the first refusal is raised, so that one message names every
    missing or wrong file, as the role always did.
    """
    files: Dict[str, Dict[str, Any]] = {}
    bad: List[str] = []
    for item in need:
        path, sha256 = item['src'], item['sha256']
        try:
            raw = _read(path)
        except LivepatchError as exc:
            if exc.rule != BAD_PATCH_FILE:
                raise
            bad.append(exc.message)
            continue
        digest = hashlib.sha256(raw).hexdigest()
        if digest != sha256:
            bad.append('%s has sha256 %s, not the %s given' % (path, digest, sha256))
            continue
        files[sha256] = {}
        for check in item.get('check') or ():
            info = _info(path, raw)
            check_info(info, path, check['release'], check.get('name'))
            keys = ('name', 'build_id', 'release', 'vermagic', 'livepatch')
            files[sha256] = dict((key, getattr(info, key)) for key in keys)
    if bad:
        raise LivepatchError(BAD_PATCH_FILE, '%s; nothing on %s was changed.' % ('; '.join(bad), host))
    return files


def restore_files(collection_root: str) -> Dict[str, str]:
    """The boot restore's files, as the host gets them (path below the restore directory) -> file here:
    the role's thin entry script and every module_utils file of this collection (the restore imports
    them as ``ansible_collections.kernelops.livepatch.plugins.module_utils``)."""
    utils = os.path.join(collection_root, 'plugins', 'module_utils')
    files = {SCRIPT: os.path.join(collection_root, 'roles', 'livepatch_stack', 'files', SCRIPT)}
    for name in sorted(os.listdir(utils)):
        if UTIL_NAME.match(name) and os.path.isfile(os.path.join(utils, name)):
            files['%s/%s' % (UTILS, name)] = os.path.join(utils, name)
    return files


def restore_manifest(files: Mapping[str, str]) -> Dict[str, str]:
    """Path below the restore directory -> sha256: the host compares, and asks only for what differs."""
    out = {}
    for rel, path in files.items():
        with open(path, 'rb') as handle:
            out[rel] = hashlib.sha256(handle.read()).hexdigest()
    return out


def restore_bundle(files: Mapping[str, str], wanted: Sequence[str]) -> str:
    """The files the host asked for, in one JSON document (path -> base64): one transfer, not one per file."""
    out = {}
    for rel in wanted:
        with open(files[rel], 'rb') as handle:
            out[rel] = base64.b64encode(handle.read()).decode('ascii')
    return json.dumps(out, sort_keys=True)
