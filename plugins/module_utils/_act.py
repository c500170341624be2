# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Transitional: the host lock and journal, and the old names of the kernel layer.

PRIVATE: this module_util may change at any time, and goes away once ``_common.py`` is
replaced by ``_runner.py`` (lock, journal and record move to ``_host.py``). Kernel access is
``_kernel``, running steps ``_executor``, converge and rollback ``_converge``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile

from ansible_collections.kernelops.livepatch.plugins.module_utils import _kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge as _converge
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import (
    ActError, StallError, Executor as _Executor,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import Clock, Kernel, poll_until
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack

__all__ = ['ActError', 'StallError', 'LockError', 'HostKernel', 'HostLock', 'Journal', 'Executor', 'converge',
           'write_json_atomically', 'poll_until']

LOCK_PATH = '/run/kernelops-livepatch.lock'
JOURNAL_DIR = '/run/kernelops-livepatch'


class LockError(ActError):
    """Another run holds the host lock."""

    def __init__(self, message, detail=None):
        super().__init__('lock_timeout', message, (), detail)


def HostKernel(module, root='/', clock=Clock):  # noqa: N802  pylint: disable=invalid-name
    """The old constructor: the module argument is no longer needed (no insmod/rmmod)."""
    return Kernel(root, clock)


class Executor(_Executor):
    """The old constructor (``journal=``, positional options, a settable ``caps``)."""

    def __init__(self, kernel, capabilities, timeout=60.0, on_stall='reverse', journal=None, clock=None, warn=None):
        self.wanted_by_name = {}
        on_loaded = None
        if journal is not None:
            def on_loaded(step, image):
                journal.record(self.wanted_by_name.get(step.patch)
                               or Wanted(name=step.patch, path=image.path, build_id=image.info.build_id))
        super().__init__(kernel, capabilities, timeout=timeout, on_stall=on_stall, clock=clock, warn=warn,
                         on_loaded=on_loaded)

    @property
    def caps(self):
        return self.capabilities

    @caps.setter
    def caps(self, value):
        self.capabilities = value


def _legacy_open(path):
    """``path``'s bytes read once, without the owner checks of ``_kofile.open_module`` (as before)."""
    data = _kofile._read_bytes(path)  # pylint: disable=protected-access
    return _kofile.ModuleImage(path=path, data=data, info=_kofile.parse_module(data, path), identity=(0, 0, 0, 0))


def converge(kernel, wanted, plan, executor, original, rollback=True, journal_entries=None):
    """The old call: a dict with failed, error, error_detail, rollback and the final snapshot."""
    images = {}
    for want in wanted:
        if want.path:
            try:
                image = _legacy_open(want.path)
            except Exception:  # pylint: disable=broad-except
                continue  # a load step without its image fails with rule no_file
            if not want.build_id or image.info.build_id == want.build_id:
                images[want.name] = image
    if isinstance(executor, Executor):
        executor.wanted_by_name = dict((w.name, w) for w in wanted)
    result = _converge(kernel, plan, executor, images=images, original=original, rollback=rollback,
                       planner=plan_stack, known_files=journal_entries or {}, open_image=_legacy_open)
    error = result.error
    return {'failed': result.failed, 'changed': result.changed, 'error': error.message if error else None,
            'error_detail': dict(error.detail) if error else None,
            'rollback': result.rollback.as_dict() if result.rollback else None, 'snapshot': result.snapshot,
            'result': result}


class HostLock(object):
    """flock on a file under /run, so two runs (two AWX jobs) never interleave on one host."""

    def __init__(self, path=LOCK_PATH, timeout=60.0, clock=Clock):
        self.path = path
        self.timeout = timeout
        self.clock = clock
        self.handle = None

    def _try(self):
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (IOError, OSError) as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise

    def __enter__(self):
        directory = os.path.dirname(self.path)
        if directory and not os.path.isdir(directory):
            os.makedirs(directory)
        self.handle = open(self.path, 'a')
        taken, waited = poll_until(self._try, self.timeout, self.clock)
        if not taken:
            self.handle.close()
            self.handle = None
            raise LockError('another livepatch run holds %s; gave up after %.1f s (lock_timeout)' % (self.path, waited),
                            {'lock': self.path, 'waited': round(waited, 3)})
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write('%d\n' % os.getpid())
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
        return False


class Journal(object):
    """What this collection loaded since boot: name → path and build ID, kept under /run (tmpfs).

    The kernel does not remember where a module came from; to re-push a popped patch on
    rollback we need its file. Entries are only trusted when the file's build ID still matches.
    """

    def __init__(self, directory=JOURNAL_DIR):
        self.directory = directory
        self.path = os.path.join(directory, 'journal.json')

    def read(self):
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            return data if isinstance(data, dict) else {}
        except (IOError, OSError, ValueError):
            return {}

    def record(self, wanted):
        data = self.read()
        data[wanted.name] = {'path': wanted.path, 'build_id': wanted.build_id, 'replace': wanted.replace}
        write_json_atomically(self.path, data)


def write_json_atomically(path, data):
    """Temp file in the same directory, fsync, rename, fsync the directory: never a torn file."""
    directory = os.path.dirname(path) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path))
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, sort_keys=True, indent=1)
            handle.write('\n')
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
