# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The role's patch files on the host: what is already right, what to copy, which releases to stage.

PRIVATE: this module_util may change at any time.

Two halves, kept apart: :func:`decide` reads the host and returns a :class:`Decision` (files
already right, files to copy, the boot record of each staged release, directories to remove);
it changes nothing, so check mode reports it as it is. :func:`carry_out` does what a decision
says, holding the host lock (docs/developer.md §10.5). A file is copied to
``DIR/RELEASE/SHA256[:16]/NAME``: one directory per checksum, so a path once written never
holds another build, and it is written root-owned, mode 0644, in root-owned 0755 directories,
as the file trust rule wants it (docs/developer.md §10.1).

A **staged** release is one in the stacks whose kernel is installed (``/lib/modules/RELEASE``)
but not running: its files are copied and checked against that release (docs/developer.md §2.5)
and its boot record written, for the boot restore when the host boots that kernel.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import shutil
import stat
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._host import (
    BootRecord, HostLock, RecordEntry, read_record, write_record,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import (
    FileTrust, KoFileError, normalise_name, open_module,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['BAD_PATCH_FILE', 'Patch', 'Target', 'Env', 'FileInfo', 'Decision', 'dest_path', 'sha256_of',
           'targets_from', 'check_sha256s', 'decide', 'carry_out', 'check_info', 'file_state', 'install_file']

BAD_PATCH_FILE = 'bad_patch_file'
RECORD = 'stack.json'
_CHUNK = 1024 * 1024
_FILE_MODE = 0o644
_DIR_MODE = 0o755


@value_object
class FileInfo:
    """What a module file says about itself, as far as a boot record needs it."""

    name: str
    build_id: Optional[str]
    release: Optional[str]
    vermagic: Optional[str]
    livepatch: bool


@value_object
class Patch:
    """One patch of one release: a ``src`` file the role copies, or a ``path`` already on the host."""

    index: int
    sha256: str = ''            # lower-case hex; '' when not given (a path entry may omit it)
    src: Optional[str] = None   # the file on the controller; only its base name matters here
    path: Optional[str] = None
    name: Optional[str] = None
    replace: bool = False
    requires: Tuple[str, ...] = ()


@value_object
class Target:
    """A release whose files this run prepares: the running one, or a staged one."""

    release: str
    running: bool
    patches: Tuple[Patch, ...] = ()


@value_object
class Env:
    """Where the host's files are; tests point it into a temporary tree."""

    dir: str
    release: str = ''           # the running kernel release; '' reads it from uname
    root: str = '/'             # where /sys, /proc and /run are read (the probe)
    modules_dir: str = '/lib/modules'
    trust: FileTrust = FileTrust()
    owner: Tuple[int, int] = (0, 0)
    lock: Callable[[], Any] = HostLock


@value_object
class Decision:
    """What a run finds and would do; :func:`carry_out` does it."""

    files: Tuple[Dict[str, Any], ...]            # {release, index, dest, sha256, state: right|copy|fix}
    running: Tuple[Dict[str, Any], ...]          # the running release's patches for livepatch_stack
    records: Tuple[Tuple[str, BootRecord, bool], ...]  # (release, record, changes) of each staged release
    remove: Tuple[Tuple[str, Tuple[str, ...]], ...]     # (release, recorded names) of directories to remove
    need: Tuple[Dict[str, Any], ...]             # files to copy whose bytes are on the controller

    @property
    def changes(self) -> bool:
        return (any(item['state'] != 'right' for item in self.files) or any(item[2] for item in self.records)
                or bool(self.remove))

    def staged(self) -> List[Dict[str, Any]]:
        """``livepatch_stack_staged``: one entry per staged or removed release."""
        copying = set(item['release'] for item in self.files if item['state'] != 'right')
        out = [{'release': release, 'stack': [entry.name for entry in record.stack],
                'status': 'staged' if changes or release in copying else 'unchanged'}
               for release, record, changes in self.records]
        out.extend({'release': release, 'stack': list(names), 'status': 'removed'} for release, names in self.remove)
        return out


def dest_path(directory: str, release: str, sha256: str, src: str) -> str:
    """Where a ``src`` file goes on the host: one directory per checksum."""
    return os.path.join(directory, release, sha256[:16], os.path.basename(src))


def sha256_of(path: str) -> Tuple[Optional[str], str]:
    """(hex digest, '') of a regular file, or (None, why not); no last-component symlink, and
    ``O_NONBLOCK``: a FIFO put where a patch should be must not hang the run."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return None, 'missing' if exc.errno == errno.ENOENT else (exc.strerror or str(exc))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None, 'not a regular file'
        digest = hashlib.sha256()
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                return digest.hexdigest(), ''
            digest.update(chunk)
    finally:
        os.close(fd)


def targets_from(stacks: Sequence[Mapping[str, Any]], push: Optional[Sequence[Mapping[str, Any]]], running: str,
                 installed: Callable[[str], bool]) -> Tuple[Optional[Target], List[Target]]:
    """The running release's target (None: no entry) and the staged ones, from the role's variables.

    With ``push`` (``livepatch_stack_pop_to`` set) the running release gets those patches and
    the stacks are not used in this run, for staging either.
    """
    def patches(entries: Sequence[Mapping[str, Any]]) -> Tuple[Patch, ...]:
        return tuple(Patch(index=index, sha256=str(entry.get('sha256') or '').lower(), src=entry.get('src'),
                           path=entry.get('path'), name=entry.get('name'), replace=bool(entry.get('replace')),
                           requires=tuple(entry.get('requires') or ()))
                     for index, entry in enumerate(entries, 1))
    if push is not None:
        return Target(release=running, running=True, patches=patches(push)), []
    seen: Dict[str, int] = {}
    for entry in stacks:
        seen[entry['release']] = seen.get(entry['release'], 0) + 1
    twice = sorted(release for release, count in seen.items() if count > 1)
    if twice:
        raise LivepatchError('bad_input', 'livepatch_stack_stacks has %d entries for release %s; give one.'
                             % (seen[twice[0]], twice[0]))
    current = None
    staged = []
    for entry in stacks:
        release = entry['release']
        if release == running:
            current = Target(release=release, running=True, patches=patches(entry.get('patches') or ()))
        elif installed(release):
            staged.append(Target(release=release, running=False, patches=patches(entry.get('patches') or ())))
    return current, staged


def check_sha256s(targets: Sequence[Target]) -> None:
    """A ``sha256`` given must be 64 hex digits; refused before anything is read or copied."""
    bad = ['patch %d (%s): sha256 must be 64 hex digits, not %s' % (patch.index, patch.src or patch.path, patch.sha256)
           for target in targets for patch in target.patches
           if patch.sha256 and (len(patch.sha256) != 64 or patch.sha256.strip('0123456789abcdef'))]
    if bad:
        raise LivepatchError('bad_input', '; '.join(bad))


def check_info(info: FileInfo, where: str, release: str, given: Optional[str]) -> None:
    """Refuse a file the kernel ``release`` would not load as the patch ``given`` (docs/developer.md §2.5)."""
    label = given or info.name
    if not info.livepatch:
        raise LivepatchError('not_livepatch', '%s (module %s) is not a livepatch module: its .modinfo lacks '
                             'livepatch=Y, and the kernel would refuse to enable it' % (where, info.name), [label])
    if given and normalise_name(given) != info.name:
        raise LivepatchError('name_mismatch', '%s is module %s, not %s: the kernel names the patch after the module'
                             % (where, info.name, given), [label])
    if info.release != release:
        raise LivepatchError('release_mismatch', '%s was built for kernel %s (vermagic "%s"), not for %s, the release '
                             'it is staged for' % (where, info.release, info.vermagic, release), [label])


def _host_info(path: str, trust: FileTrust, label: str) -> FileInfo:
    try:
        info = open_module(path, trust).info
    except KoFileError as exc:
        raise LivepatchError(exc.rule, exc.message, [label], exc.detail)
    return FileInfo(name=info.name, build_id=info.build_id, release=info.release, vermagic=info.vermagic,
                    livepatch=info.livepatch)


def file_state(dest: str, sha256: str, env: Env, what: str = 'a patch file') -> str:
    """right (checksum, owner and mode as we write them), fix (checksum right, owner or mode not) or copy."""
    digest, why = sha256_of(dest)
    if digest is None and why not in ('missing', 'Not a directory'):
        raise LivepatchError('not_regular_file', '%s is in the way of %s: %s; remove it' % (dest, what, why))
    if digest != sha256:
        return 'copy'
    st = os.lstat(dest)
    right = (st.st_uid, st.st_gid) == env.owner and stat.S_IMODE(st.st_mode) == _FILE_MODE
    return 'right' if right else 'fix'


def _path_file(patch: Patch) -> None:
    """A ``path`` entry: the file must be on the host, with the checksum given."""
    digest, why = sha256_of(patch.path)
    if digest is None:
        raise LivepatchError(BAD_PATCH_FILE, 'patch file %s does not exist on the host or cannot be read (%s)'
                             % (patch.path, why), [patch.name or patch.path])
    if patch.sha256 and digest != patch.sha256:
        raise LivepatchError(BAD_PATCH_FILE, '%s has sha256 %s, not the %s given' % (patch.path, digest, patch.sha256),
                             [patch.name or patch.path])


def decide(running: Optional[Target], staged: Sequence[Target], env: Env, *, remove_old: bool, current: str,
           controller: Mapping[str, Mapping[str, Any]]) -> Decision:
    """Read the host and say what is right and what to do; changes nothing.

    ``controller``: sha256 -> what the controller read in a file to copy (:class:`FileInfo`
    fields; empty for a file only the running release uses: ``livepatch_stack`` reads that one
    on the host). A file to copy the controller has not read yet is in ``need``: the action
    plugin checks it on the controller and asks again.
    """
    files: List[Dict[str, Any]] = []
    need: Dict[str, Dict[str, Any]] = {}
    records = []
    module_patches: List[Dict[str, Any]] = []
    for target in ([running] if running else []) + list(staged):
        entries = []
        for patch in target.patches:
            label = patch.name or patch.src or patch.path or str(patch.index)
            if patch.src:
                dest = dest_path(env.dir, target.release, patch.sha256, patch.src)
                state = file_state(dest, patch.sha256, env)
                files.append({'release': target.release, 'index': patch.index, 'dest': dest, 'sha256': patch.sha256,
                              'state': state})
                if state == 'copy':
                    slot = need.setdefault(patch.sha256, {'sha256': patch.sha256, 'src': patch.src, 'check': []})
                    if not target.running:
                        slot['check'].append({'release': target.release, 'name': patch.name})
            else:
                _path_file(patch)
                dest = os.path.normpath(patch.path)
                state = 'right'
            if target.running:
                module_patches.append({'path': dest, 'name': patch.name, 'replace': patch.replace,
                                       'requires': list(patch.requires)})
                continue
            if state == 'copy':
                known = controller.get(patch.sha256)
                if not known:
                    continue  # decided once the controller has read it
                info = FileInfo(**known)
            else:
                info = _host_info(dest, env.trust, label)
            check_info(info, dest if state != 'copy' else patch.src, target.release, patch.name)
            entries.append(RecordEntry(name=info.name, path=dest, build_id=info.build_id, replace=patch.replace))
        if not target.running:
            names = [entry.name for entry in entries]
            doubled = sorted(set(name for name in names if names.count(name) > 1))
            if doubled:
                raise LivepatchError('duplicate_name', 'the stack staged for %s names %s twice; the kernel holds one '
                                     'module per name' % (target.release, ', '.join(doubled)), doubled)
            record = BootRecord(kernel_release=target.release, stack=tuple(entries))
            records.append((target.release, record, _record_changes(os.path.join(env.dir, target.release, RECORD), record)))
    staged_releases = set(target.release for target in staged)
    remove = _old_releases(env, keep=staged_releases | {current}) if remove_old else []
    needed = tuple(item for sha256, item in need.items() if sha256 not in controller)
    return Decision(files=tuple(files), running=tuple(module_patches), records=tuple(records),
                    remove=tuple(remove), need=needed)


def _record_changes(path: str, record: BootRecord) -> bool:
    try:
        return read_record(path) != record
    except LivepatchError:
        return True  # a damaged record is written again


def _old_releases(env: Env, keep: set) -> List[Tuple[str, Tuple[str, ...]]]:
    """Directories of releases not installed any more that hold our record for that release.

    Anything else under ``DIR`` (a directory without our record, a symlink, a file) is not ours
    to remove: it is left alone.
    """
    try:
        names = sorted(os.listdir(env.dir))
    except OSError:
        return []
    old = []
    for name in names:
        where = os.path.join(env.dir, name)
        if name in keep or os.path.isdir(os.path.join(env.modules_dir, name)):
            continue
        if not stat.S_ISDIR(os.lstat(where).st_mode):
            continue
        try:
            record = read_record(os.path.join(where, RECORD))
        except LivepatchError:
            continue
        if record is not None and record.kernel_release == name:
            old.append((name, tuple(entry.name for entry in record.stack)))
    return old


# --- acting -------------------------------------------------------------------------------------

def _make_dirs(path: str, env: Env) -> None:
    """Create the missing directories of ``path``, each root's and 0755; existing ones are left as they are."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        path = os.path.dirname(path)
    for directory in reversed(missing):
        os.mkdir(directory, _DIR_MODE)
        os.chown(directory, *env.owner)
        os.chmod(directory, _DIR_MODE)


def install_file(chunks: Iterable[bytes], dest: str, sha256: str, env: Env) -> None:
    """Write ``chunks`` to ``dest``: a temp file beside it, root's 0644, fsynced, renamed: never a torn file."""
    directory = os.path.dirname(dest)
    _make_dirs(directory, env)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(dest))
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, 'wb') as out:
            for chunk in chunks:
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fchown(out.fileno(), *env.owner)
            os.fchmod(out.fileno(), _FILE_MODE)
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise LivepatchError(BAD_PATCH_FILE, 'the copy of %s arrived with sha256 %s, not %s; nothing was installed'
                                 % (os.path.basename(dest), digest.hexdigest(), sha256))
        os.rename(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def carry_out(decision: Decision, sources: Mapping[str, str], env: Env) -> List[str]:
    """Copy, fix, write the staged records and remove old directories, holding the host lock.

    A staged file is opened again after the copy with the file trust rule and must be the build
    the record names. Returns the paths copied.
    """
    copied = []
    with env.lock():
        for item in decision.files:
            if item['state'] == 'copy':
                source = sources.get(item['sha256'])
                if not source:
                    raise LivepatchError('internal_error', 'no copy of %s was sent to the host' % item['dest'])
                with open(source, 'rb') as handle:
                    install_file(iter(functools.partial(handle.read, _CHUNK), b''), item['dest'], item['sha256'], env)
                copied.append(item['dest'])
            elif item['state'] == 'fix':
                os.chown(item['dest'], *env.owner, follow_symlinks=False)
                os.chmod(item['dest'], _FILE_MODE)
        for release, record, changes in decision.records:
            for entry in record.stack:
                info = _host_info(entry.path, env.trust, entry.name)
                if info.build_id != entry.build_id:
                    raise LivepatchError(BAD_PATCH_FILE, '%s has build %s after the copy, not %s'
                                         % (entry.path, info.build_id, entry.build_id), [entry.name])
            if changes:
                write_record(os.path.join(env.dir, release, RECORD), record)
        for release, _names in decision.remove:
            shutil.rmtree(os.path.join(env.dir, release))
    return copied
