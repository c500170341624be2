# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The argument specs of the modules, built in one place.

PRIVATE: this module_util may change at any time.

The options are documented in the modules and in the doc fragment ``transitions``; keep the
two in step (``ansible-test sanity`` compares them).
"""

from __future__ import annotations

from typing import Any, Dict

__all__ = ['FOREIGN_CHOICES', 'changing_spec', 'patch_spec', 'livepatch_spec', 'livepatch_stack_spec',
           'livepatch_info_spec', 'livepatch_stage_spec']

# What happens to live patches this collection did not load (docs/developer.md §10.4).
FOREIGN_CHOICES = ['refuse', 'keep', 'pop']

Spec = Dict[str, Dict[str, Any]]


def changing_spec() -> Spec:
    """Options every module that changes the stack takes (doc fragment ``transitions``)."""
    return dict(
        timeout=dict(type='float', default=60.0),
        on_stall=dict(type='str', default='reverse', choices=['reverse', 'fail', 'force']),
        rollback=dict(type='bool', default=True),
        wait=dict(type='bool', default=True),
        lock_timeout=dict(type='float', default=60.0),
        unload_retired=dict(type='bool', default=True),
        foreign=dict(type='str', default='refuse', choices=list(FOREIGN_CHOICES)),
        record=dict(type='path'),
    )


def patch_spec() -> Spec:
    """One patch of a stack: the file on the managed host, and what the kernel cannot tell us."""
    return dict(
        path=dict(type='path', required=True),
        name=dict(type='str'),
        replace=dict(type='bool', default=False),
        requires=dict(type='list', elements='str', default=[]),
    )


def livepatch_stack_spec() -> Dict[str, Any]:
    """``argument_spec`` and the constraints of ``livepatch_stack``."""
    spec = dict(
        stack=dict(type='list', elements='dict', options=patch_spec()),
        pop_to=dict(type='int'),
        push=dict(type='list', elements='dict', options=patch_spec(), default=[]),
        skip_unrelated=dict(type='bool', default=False),
    )
    spec.update(changing_spec())
    return dict(argument_spec=spec, mutually_exclusive=[('stack', 'pop_to'), ('stack', 'push')],
                required_one_of=[('stack', 'pop_to')], supports_check_mode=True)


def livepatch_spec() -> Dict[str, Any]:
    """``argument_spec`` and the constraints of ``livepatch``."""
    spec = dict(
        path=dict(type='path'),
        name=dict(type='str'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        replace=dict(type='bool', default=False),
        requires=dict(type='list', elements='str', default=[]),
        pop_above=dict(type='bool', default=False),
    )
    spec.update(changing_spec())
    return dict(argument_spec=spec, required_if=[('state', 'present', ('path',))],
                required_one_of=[('path', 'name')], supports_check_mode=True)


def livepatch_info_spec() -> Dict[str, Any]:
    """``argument_spec`` of ``livepatch_info``."""
    return dict(argument_spec=dict(
        root=dict(type='path', default='/'),
        blocker_stacks=dict(type='bool', default=False),
        record=dict(type='path'),
        facts=dict(type='bool', default=False),
        files=dict(type='list', elements='path', default=[]),
    ), supports_check_mode=True)


def livepatch_stage_spec() -> Dict[str, Any]:
    """``argument_spec`` of ``livepatch_stage`` (the role's patch entries: ``src`` or ``path``)."""
    patch = dict(
        src=dict(type='str'),
        path=dict(type='str'),
        sha256=dict(type='str'),
        name=dict(type='str'),
        replace=dict(type='bool', default=False),
        requires=dict(type='list', elements='str', default=[]),
    )
    entry = dict(options=patch, mutually_exclusive=[('src', 'path')], required_one_of=[('src', 'path')],
                 required_by={'src': ['sha256']})
    return dict(argument_spec=dict(
        stacks=dict(type='list', elements='dict', default=[], options=dict(
            release=dict(type='str', required=True),
            patches=dict(type='list', elements='dict', default=[], **entry),
        )),
        push=dict(type='list', elements='dict', **entry),
        src_dir=dict(type='str', default=''),
        dir=dict(type='path', default='/var/lib/kernelops-livepatch'),
        remove_old_releases=dict(type='bool', default=True),
        lock_timeout=dict(type='float', default=60.0),
        checksums=dict(type='list', elements='path', default=[]),
        unit=dict(type='str'),
        unit_content=dict(type='str'),
        unit_dir=dict(type='path', default='/etc/systemd/system'),
        restore_install=dict(type='str', choices=['present', 'absent']),
        root=dict(type='path', default='/'),
        restore_dir=dict(type='path', default='/usr/local/libexec/kernelops-livepatch'),
        _controller=dict(type='dict'),
    ), supports_check_mode=True)
