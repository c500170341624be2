# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What this collection keeps on the host: the host lock, the journal, the boot record.

PRIVATE: this module_util may change at any time.

* The **host lock** (``flock`` on a file under ``/run``) keeps two runs (two AWX jobs) from
  interleaving on one host. Everything a changing run writes, the kernel's stack and the boot
  record alike, is written while it is held.
* The **journal** (``/run``, a tmpfs: it starts empty at every boot) remembers which file each
  patch this collection loaded came from, and its build. The kernel does not remember where a
  module came from; rollback needs the file, and the foreign-patch check needs to know what is
  ours.
* The **boot record** is the stack a boot-time restore loads again (docs/developer.md §10.5). Its format is versioned
  (:data:`RECORD_SCHEMA`), written by :func:`write_record` and read by :func:`read_record`
  only: a record of another shape is refused with rule ``bad_record``, never half-read.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
import time
from typing import Any, Dict, FrozenSet, Iterable, Mapping, Optional, Sequence, Set, Tuple

from ansible_collections.kernelops.livepatch.plugins.module_utils._errors import LivepatchError
from ansible_collections.kernelops.livepatch.plugins.module_utils._values import value_object

__all__ = ['LOCK_PATH', 'JOURNAL_DIR', 'RECORD_SCHEMA', 'HostLock', 'Journal', 'RecordEntry', 'BootRecord',
           'read_record', 'write_record', 'write_json_atomically', 'write_text_atomically', 'ours_from',
           'MARKER_NAME', 'REPORT_NAME', 'RESTORE_STATUSES', 'write_marker', 'read_marker', 'clear_marker',
           'write_report', 'read_report', 'read_restore']

LOCK_PATH = '/run/kernelops-livepatch.lock'
JOURNAL_DIR = '/run/kernelops-livepatch'
RECORD_SCHEMA = 2
# Poll the lock every 10 ms at first, then up to every 100 ms: a run holds it for milliseconds
# to seconds, and a waiting AWX job should not spin.
_LOCK_POLL_FIRST = 0.01
_LOCK_POLL_MAX = 0.1


class SystemClock:
    """Wall time; tests pass the kernel model's simulated clock instead."""

    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)


class HostLock:
    """``flock`` on :data:`LOCK_PATH`; raises ``LivepatchError('lock_timeout')`` when another run keeps it."""

    def __init__(self, path: str = LOCK_PATH, timeout: float = 60.0, clock: Any = SystemClock) -> None:
        self.path = path
        self.timeout = float(timeout)
        self.clock = clock
        self.fd: Optional[int] = None

    def _try(self) -> bool:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise

    def __enter__(self) -> 'HostLock':
        directory = os.path.dirname(self.path)
        try:
            if directory:
                os.makedirs(directory, exist_ok=True)
            # O_NOFOLLOW: the lock file lives in a root-only directory; never follow a link there.
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LivepatchError('lock_unavailable', 'cannot open the host lock %s: %s' % (self.path, exc.strerror),
                                 detail={'lock': self.path})
        start = self.clock.monotonic()
        delay = _LOCK_POLL_FIRST
        while not self._try():
            waited = self.clock.monotonic() - start
            if waited >= self.timeout:
                os.close(self.fd)
                self.fd = None
                raise LivepatchError('lock_timeout', 'another livepatch run holds %s; gave up after %.1f s '
                                     '(lock_timeout)' % (self.path, waited),
                                     detail={'lock': self.path, 'waited': round(waited, 3)})
            self.clock.sleep(min(delay, max(0.0, self.timeout - waited)))
            delay = min(delay * 2, _LOCK_POLL_MAX)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, b'%d\n' % os.getpid(), 0)
        return self

    def __exit__(self, *exc: Any) -> bool:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


def write_json_atomically(path: str, data: Any) -> None:
    """``data`` as indented JSON, written with :func:`write_text_atomically`."""
    write_text_atomically(path, json.dumps(data, sort_keys=True, indent=1) + '\n')


def write_text_atomically(path: str, text: str) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory: never a torn file."""
    directory = os.path.dirname(path) or '.'
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _load_json(path: str) -> Tuple[bool, Any]:
    """(exists, parsed); ``LivepatchError('bad_record')`` when the file is there but not JSON."""
    try:
        with open(path) as handle:
            return True, json.load(handle)
    except FileNotFoundError:
        return False, None
    except (OSError, ValueError) as exc:
        raise LivepatchError('bad_record', '%s cannot be read as JSON: %s' % (path, exc), detail={'record': path})


class Journal:
    """What this collection loaded since boot: name -> file, build ID and replace flag."""

    def __init__(self, directory: str = JOURNAL_DIR) -> None:
        self.directory = directory
        self.path = os.path.join(directory, 'journal.json')

    def read(self) -> Dict[str, Dict[str, Any]]:
        """The entries; a damaged journal counts as empty (it only ever adds knowledge)."""
        try:
            _exists, data = _load_json(self.path)
        except LivepatchError:
            return {}
        if not isinstance(data, dict):
            return {}
        return dict((name, entry) for name, entry in data.items()
                    if isinstance(name, str) and isinstance(entry, dict))

    def record(self, *, name: str, path: str, build_id: Optional[str], replace: bool) -> None:
        """Note a patch just loaded from ``path`` (absolute, normalised)."""
        data = self.read()
        data[name] = {'path': path, 'build_id': build_id, 'replace': bool(replace)}
        write_json_atomically(self.path, data)


@value_object
class RecordEntry:
    """One patch of the boot record, bottom first."""

    name: str
    path: Optional[str] = None      # absolute and normalised; None when no file is known
    build_id: Optional[str] = None
    replace: bool = False

    def as_dict(self) -> Dict[str, Any]:
        return {'name': self.name, 'path': self.path, 'build_id': self.build_id, 'replace': self.replace}


@value_object
class BootRecord:
    """The stack to load again at boot, for one kernel release."""

    kernel_release: str
    stack: Tuple[RecordEntry, ...] = ()

    def as_dict(self) -> Dict[str, Any]:
        return {'schema': RECORD_SCHEMA, 'kernel_release': self.kernel_release,
                'stack': [entry.as_dict() for entry in self.stack]}


def _bad(path: str, why: str) -> LivepatchError:
    return LivepatchError('bad_record', 'the boot record %s is not a stack record of schema %d: %s; fix or remove it'
                          % (path, RECORD_SCHEMA, why), detail={'record': path})


def _entry(path: str, position: int, raw: Any) -> RecordEntry:
    where = 'stack entry %d' % position
    if not isinstance(raw, dict):
        raise _bad(path, '%s is not an object' % where)
    name, file_path, build_id, replace = (raw.get(key) for key in ('name', 'path', 'build_id', 'replace'))
    if not isinstance(name, str) or not name:
        raise _bad(path, '%s has no name' % where)
    if file_path is not None and (not isinstance(file_path, str) or not os.path.isabs(file_path)
                                  or os.path.normpath(file_path) != file_path):
        raise _bad(path, '%s (%s): path %r is not absolute and normalised' % (where, name, file_path))
    if build_id is not None and not isinstance(build_id, str):
        raise _bad(path, '%s (%s): build_id is not a string' % (where, name))
    if not isinstance(replace, bool):
        raise _bad(path, '%s (%s): replace is not true or false' % (where, name))
    return RecordEntry(name=name, path=file_path, build_id=build_id, replace=replace)


def read_record(path: str) -> Optional[BootRecord]:
    """The boot record at ``path``, None when there is none; ``bad_record`` for any other shape.

    Schema 2 carries ``"schema": 2``; a record without ``schema`` (written by 0.1.0) has the
    same fields and is read as such, then written back as schema 2 by the next run.
    """
    exists, data = _load_json(path)
    if not exists:
        return None
    if not isinstance(data, dict):
        raise _bad(path, 'it is not a JSON object')
    schema = data.get('schema', 1)
    if schema not in (1, RECORD_SCHEMA):
        raise _bad(path, 'it has schema %r' % (schema,))
    release = data.get('kernel_release')
    if not isinstance(release, str) or not release:
        raise _bad(path, 'kernel_release is missing')
    stack = data.get('stack')
    if not isinstance(stack, list):
        raise _bad(path, 'stack is not a list')
    return BootRecord(kernel_release=release,
                      stack=tuple(_entry(path, position, raw) for position, raw in enumerate(stack, 1)))


def write_record(path: str, record: BootRecord) -> bool:
    """Write ``record`` unless the file already says exactly that; True when it was written.

    Call it while holding the :class:`HostLock`: two runs writing in turn must leave the record
    of the run that changed the kernel last.
    """
    try:
        _exists, current = _load_json(path)
    except LivepatchError:
        current = None  # unreadable: overwrite it with a good one
    data = record.as_dict()
    if current == data:
        return False
    write_json_atomically(path, data)
    return True


def ours_from(journal: Mapping[str, Mapping[str, Any]], record: Optional[BootRecord]) -> FrozenSet[Tuple[str, Optional[str]]]:
    """(name, build ID) of every patch this collection loaded since boot or recorded for boot."""
    pairs: Set[Tuple[str, Optional[str]]] = set()
    for name, entry in journal.items():
        build = entry.get('build_id')
        pairs.add((name, build if isinstance(build, str) else None))
    entries: Iterable[RecordEntry] = record.stack if record is not None else ()
    for item in entries:
        pairs.add((item.name, item.build_id))
    return frozenset(pairs)


# --- the boot-time restore's crash marker and report (docs/developer.md §10.6) ------------------
MARKER_NAME = 'restore.marker'
REPORT_NAME = 'restore.json'
RESTORE_SCHEMA = 1
RESTORE_STATUSES = ('ok', 'skipped_after_crash', 'skipped_by_switch', 'failed', 'nothing_recorded')


def write_marker(path: str, *, patch: str, build_id: Optional[str], started: str) -> None:
    """Say, durably, that ``patch`` is being loaded at boot: file and directory are fsynced first.

    If the host dies before :func:`clear_marker`, the next boot finds it and loads neither that
    patch nor any above it.
    """
    write_json_atomically(path, {'schema': RESTORE_SCHEMA, 'patch': patch, 'build_id': build_id, 'started': started})


def read_marker(path: str) -> Optional[Dict[str, Any]]:
    """The marker a crashed boot left, or None. A marker that cannot be read still means a crash.

    Its writes are atomic, so a damaged one was damaged by something else; it names no patch,
    and the restore then loads nothing (``patch`` None).
    """
    try:
        exists, data = _load_json(path)
    except LivepatchError as exc:
        return {'schema': RESTORE_SCHEMA, 'patch': None, 'build_id': None, 'started': None, 'damaged': exc.message}
    if not exists:
        return None
    if not isinstance(data, dict) or not isinstance(data.get('patch'), str):
        return {'schema': RESTORE_SCHEMA, 'patch': None, 'build_id': None, 'started': None,
                'damaged': '%s is not a restore marker' % path}
    return dict((key, data.get(key)) for key in ('schema', 'patch', 'build_id', 'started'))


def clear_marker(path: str) -> bool:
    """Remove the marker once its patch's transition completed; the removal is fsynced too."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    dir_fd = os.open(os.path.dirname(path) or '.', os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return True


def write_report(path: str, *, status: str, patch: Optional[str] = None, time_text: str = '', rule: str = '',
                 message: str = '', loaded: Sequence[str] = ()) -> Dict[str, Any]:
    """What the last boot's restore did, for ``livepatch_info`` and the role; returns what was written."""
    if status not in RESTORE_STATUSES:
        raise ValueError('restore status %r is none of %s' % (status, RESTORE_STATUSES))
    report = {'schema': RESTORE_SCHEMA, 'status': status, 'patch': patch, 'time': time_text, 'rule': rule,
              'message': message, 'loaded': list(loaded)}
    write_json_atomically(path, report)
    return report


def read_report(path: str) -> Optional[Dict[str, Any]]:
    """The last boot's report, or None; a damaged one reads as status ``failed`` saying so."""
    try:
        exists, data = _load_json(path)
    except LivepatchError as exc:
        exists, data = True, exc.message
    if not exists:
        return None
    if not isinstance(data, dict) or data.get('status') not in RESTORE_STATUSES:
        return {'schema': RESTORE_SCHEMA, 'status': 'failed', 'patch': None, 'time': '', 'rule': 'bad_record',
                'message': 'the restore report %s cannot be read' % path, 'loaded': []}
    return data


def read_restore(release_dir: str) -> Optional[Dict[str, Any]]:
    """The last boot's restore report with the crash marker left beside it (``marker``), or None
    when neither is there: what ``livepatch_info`` and ``livepatch_stage`` return as ``restore``."""
    report = read_report(os.path.join(release_dir, REPORT_NAME))
    marker = read_marker(os.path.join(release_dir, MARKER_NAME))
    if report is None and marker is None:
        return None
    return dict(report or {'schema': RESTORE_SCHEMA, 'status': None}, marker=marker)
