# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Transitional: the old names and calls of the kernel layer, for callers not yet moved.

PRIVATE: this module_util goes away once nothing imports it. Kernel access is ``_kernel``,
running steps ``_executor``, converge and rollback ``_converge``; the host lock and the journal
are in ``_host``.
"""

from __future__ import annotations

from ansible_collections.kernelops.livepatch.plugins.module_utils import _kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge as _converge
from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import (
    ActError, StallError, Executor as _Executor,
)
from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import Clock, Kernel, poll_until
from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted, plan_stack

__all__ = ['ActError', 'StallError', 'HostKernel', 'Executor', 'converge', 'poll_until']


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
