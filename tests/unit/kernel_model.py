# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A model of the kernel's livepatch core, for fast tests.

It keeps the kernel's rules per era (``livepatch-kernel.md`` §2, §3, §5) with the errno the
real kernel gives, renders the sysfs/procfs files the observe layer reads into a directory, and
offers the same interface as ``_act.HostKernel`` so the real executor can drive it. Time is
simulated: transitions end after ``duration`` simulated seconds, or never while ``blocked``.

It also counts what a correct tool must never cause: two transitions at once (EBUSY from a
start while another runs), and disabling a patch while a patch above it is live.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct

from ansible_collections.kernelops.livepatch.plugins.module_utils._act import HostKernel
from ansible_collections.kernelops.livepatch.plugins.module_utils._kofile import read_kofile
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    ERA_FREE, ERA_IMMEDIATE, ERA_STACKED, observe,
)

RELEASES = {
    '4.9': '4.9.0-19-amd64',
    '4.19': '4.19.0-27-amd64',
    '6.1': '6.1.0-50-amd64',
    '6.12': '6.12.117+deb13-amd64',
    '7.2': '7.2.13+deb14-amd64',
}


class ModelClock(object):
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(seconds, 0.0)


class ModelPatch(object):
    def __init__(self, name, replace, states, block, functions):
        self.name = name
        self.enabled = True
        self.replace = replace
        self.states = states
        self.block = block
        self.functions = functions
        self.forced = False


class ModelModule(object):
    def __init__(self, name, build_id, livepatch):
        self.name = name
        self.build_id = build_id
        self.livepatch = livepatch
        self.refcnt = 0
        self.forced = False


class KernelModel(HostKernel):
    """One simulated kernel. ``version``: '4.9', '4.19', '6.1', '6.12' or '7.2'.

    It is a :class:`HostKernel` whose files are the rendered tree, whose insmod/rmmod/writes go
    to the model, and whose every read first lets simulated time pass.
    """

    def __init__(self, root, version='6.12', duration=0.0015, free_lag=0.0005):
        super(KernelModel, self).__init__(None, root, ModelClock())
        self.version = version
        self.release = RELEASES[version]
        major, minor = (int(part) for part in version.split('.'))
        self.vtuple = (major, minor)
        self.era = ERA_FREE if self.vtuple >= (5, 1) else (ERA_STACKED if self.vtuple >= (4, 12) else ERA_IMMEDIATE)
        self.duration = duration
        self.free_lag = free_lag
        self.blocked = False
        self.modules = []          # load order, oldest first
        self.klp = []              # the kernel's patch list, in enable order
        self.lingering = {}        # name -> time its sysfs dir goes away (5.1+ async free)
        self.transition = None     # (patch name, target enabled, end time or None)
        self.kmsg = []
        self.tainted = 0
        self.violations = []
        self.ebusy = 0
        self.events = []
        self._rendered = None
        self.render()

    # -- time ------------------------------------------------------------------------------
    def tick(self):
        now = self.clock.now
        if self.transition is not None:
            name, target, end = self.transition
            if end is not None and now >= end:
                self._complete(name, target)
        for name, when in list(self.lingering.items()):
            if now >= when:
                del self.lingering[name]
                module = self._module(name)
                if module is not None and not module.forced:
                    module.refcnt = 0
        self.render()

    def _complete(self, name, target):
        self.transition = None
        patch = self._patch(name)
        self.kmsg.append("livepatch: '%s': %s complete" % (name, 'patching' if target else 'unpatching'))
        if target:
            if patch.replace:
                for other in [p for p in self.klp if p is not patch]:
                    self._retire(other)
            return
        if self.era == ERA_FREE:
            self._retire(patch)
        else:
            module = self._module(name)
            if module is not None and self.era == ERA_STACKED and not patch.forced:
                module.refcnt = 0

    def _retire(self, patch):
        """5.1+: off the list now; directory and module reference go a little later (§2.1, §3.4)."""
        patch.enabled = False
        self.klp.remove(patch)
        self.lingering[patch.name] = self.clock.now + self.free_lag
        module = self._module(patch.name)
        if module is not None and patch.forced:
            module.forced = True  # a forced patch's module reference is never dropped (§5.4)

    def _start(self, patch, target):
        block = self.blocked and patch.block
        end = None if block else self.clock.now + self.duration
        if self.era == ERA_IMMEDIATE:
            end = self.clock.now
        self.transition = (patch.name, target, end)
        self.events.append(('start', patch.name, target))
        self.kmsg.append("livepatch: '%s': starting %s transition" % (patch.name, 'patching' if target else 'unpatching'))
        if end is not None and end <= self.clock.now:
            self._complete(patch.name, target)

    # -- lookups ---------------------------------------------------------------------------
    def _patch(self, name):
        for patch in self.klp:
            if patch.name == name:
                return patch
        return None

    def _module(self, name):
        for module in self.modules:
            if module.name == name:
                return module
        return None

    def live_names(self):
        return [p.name for p in self.klp if p.enabled]

    # -- the kernel's entry points ---------------------------------------------------------
    def write_enabled(self, name, value):
        self.tick()
        patch = self._patch(name)
        if patch is None:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        if value not in ('0', '1'):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        want = value == '1'
        if want == patch.enabled:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        if self.transition is not None and self.transition[0] == name:
            # Reversal (§2.3): completes at the normal pace even if the patching was blocked,
            # because the blocking task never switched.
            patch.enabled = want
            self.transition = (name, want, self.clock.now + self.duration)
            self.events.append(('reverse', name, want))
            self.kmsg.append("livepatch: '%s': reversing transition" % name)
            self.render()
            return
        if self.transition is not None:
            self.ebusy += 1
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        index = self.klp.index(patch)
        if want:
            if self.era == ERA_FREE:
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
            if index > 0 and not self.klp[index - 1].enabled:
                self.ebusy += 1
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            module = self._module(name)
            module.refcnt = 1
            patch.enabled = True
            self._start(patch, True)
        else:
            above = [p.name for p in self.klp[index + 1:] if p.enabled]
            if above:
                if self.era != ERA_FREE:
                    self.ebusy += 1
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
                self.violations.append('disabled %s while %s live above it' % (name, above))
            patch.enabled = False
            self._start(patch, False)
        self.render()

    def write_force(self, name):
        self.tick()
        if self.transition is None or self.transition[0] != name:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        patch = self._patch(name)
        target = self.transition[1]
        # Which patches can never be unloaded afterwards (§5.4): before 5.18 every patch on the
        # list; since 5.18 the patch being unpatched, or the patches a replace patch replaces.
        if self.vtuple < (5, 18):
            marked = list(self.klp)
        elif not target:
            marked = [patch]
        elif patch.replace:
            marked = [p for p in self.klp if p is not patch]
        else:
            marked = []
        for other in marked:
            other.forced = True
            module = self._module(other.name)
            if module is not None:
                module.forced = True
        self.transition = (name, target, self.clock.now + 0.001)
        self.render()

    def insmod(self, path):
        self.tick()
        kofile = read_kofile(path)
        info = _extra_modinfo(path)
        if self._module(kofile.name) is not None:
            return 1, '', 'insmod: ERROR: could not insert module %s: File exists\n' % path
        if kofile.release != self.release:
            return 1, '', 'insmod: ERROR: could not insert module %s: Invalid module format\n' % path
        if not kofile.livepatch:
            self.modules.append(ModelModule(kofile.name, kofile.build_id, False))
            self.render()
            return 0, '', ''
        if self.transition is not None:
            self.ebusy += 1
            return 1, '', 'insmod: ERROR: could not insert module %s: Device or resource busy\n' % path
        replace = info.get('x_replace') == '1'
        states = _states(info.get('x_states'))
        if self.era != ERA_FREE and self.klp and not self.klp[-1].enabled:
            self.ebusy += 1
            return 1, '', 'insmod: ERROR: could not insert module %s: Device or resource busy\n' % path
        if self.vtuple >= (5, 5) and not self._compatible(states, replace):
            self.kmsg.append('livepatch: Livepatch patch (%s) is not compatible with the already installed livepatches.'
                             % kofile.name)
            # kmod prints "Invalid parameters" for EINVAL (seen on the lab's 6.1 guest)
            return 1, '', 'insmod: ERROR: could not insert module %s: Invalid parameters\n' % path
        if int(info.get('x_pre_patch', '0')):
            self.kmsg.append("livepatch: pre-patch callback failed for object 'vmlinux'")
            return 1, '', 'insmod: ERROR: could not insert module %s: No such device\n' % path
        module = ModelModule(kofile.name, kofile.build_id, True)
        module.refcnt = 1
        self.modules.append(module)
        self.tainted |= 1 << 15
        patch = ModelPatch(kofile.name, replace, states, info.get('x_block') == '1',
                           ['%s_func,1' % kofile.name])
        self.klp.append(patch)
        self.kmsg.append("livepatch: enabling patch '%s'" % kofile.name)
        self._start(patch, True)
        self.render()
        return 0, '', ''

    def _compatible(self, states, replace):
        """klp_is_patch_compatible (§3.3)."""
        mine = dict(states)
        for patch in self.klp:
            for state_id, version in patch.states:
                if state_id not in mine:
                    if replace:
                        return False
                    continue
                if mine[state_id] < version:
                    return False
        return True

    def rmmod(self, name):
        self.tick()
        module = self._module(name)
        if module is None:
            return 1, '', 'rmmod: ERROR: Module %s is not currently loaded\n' % name
        if module.refcnt > 0 or self.era == ERA_IMMEDIATE and module.livepatch:
            return 1, '', 'rmmod: ERROR: Module %s is in use\n' % name
        self.modules.remove(module)
        patch = self._patch(name)
        if patch is not None:
            self.klp.remove(patch)
        self.render()
        return 0, '', ''

    # -- the interface of _act.HostKernel ---------------------------------------------------
    def observe(self, blocker_stacks=False):
        self.tick()
        return observe(self.root, blocker_stacks=blocker_stacks)

    def read(self, *parts):
        self.tick()
        return super(KernelModel, self).read(*parts)

    def exists(self, *parts):
        self.tick()
        return super(KernelModel, self).exists(*parts)

    def write(self, value, *parts):
        if len(parts) == 3 and parts[0] == 'sys/kernel/livepatch':
            name, attribute = parts[1], parts[2]
            if attribute == 'enabled':
                return self.write_enabled(name, value)
            if attribute == 'force' and self.vtuple >= (4, 15):
                return self.write_force(name)
            if attribute == 'signal' and (4, 15) <= self.vtuple < (5, 1):
                self.events.append(('signal', name))
                return None
        raise OSError(errno.ENOENT, 'model: no such attribute %s' % '/'.join(parts))

    def transition_patch(self):
        self.tick()
        return super(KernelModel, self).transition_patch()

    def kmsg_cursor(self):
        return _ModelCursor(self)

    # -- rendering -------------------------------------------------------------------------
    def _visible(self):
        names = [p.name for p in self.klp] + [n for n in self.lingering if self._patch(n) is None]
        return names

    def render(self):
        state = self._state_key()
        if state == self._rendered:
            return
        self._rendered = state
        for top in ('sys', 'proc'):
            shutil.rmtree(self.path(top), ignore_errors=True)
        base = self.path('sys', 'kernel', 'livepatch')
        os.makedirs(base)
        _write(self.path('proc', 'sys', 'kernel', 'osrelease'), self.release)
        _write(self.path('proc', 'sys', 'kernel', 'tainted'), str(self.tainted))
        order = {}
        for position, patch in enumerate(self.klp, 1):
            order[patch.name] = position
        for name in self._visible():
            patch = self._patch(name)
            lingering = patch is None
            enabled = '0' if lingering else ('1' if patch.enabled else '0')
            pdir = os.path.join(base, name)
            _write(os.path.join(pdir, 'enabled'), enabled)
            if self.vtuple >= (4, 12):
                moving = self.transition is not None and self.transition[0] == name
                _write(os.path.join(pdir, 'transition'), '1' if moving else '0')
            if (4, 15) <= self.vtuple < (5, 1):
                _write(os.path.join(pdir, 'signal'), '')
            if self.vtuple >= (4, 15):
                _write(os.path.join(pdir, 'force'), '')
            if self.vtuple >= (6, 11):
                _write(os.path.join(pdir, 'replace'), '1' if (patch and patch.replace) else '0')
            if self.vtuple >= (6, 14):
                # meaningless for a lingering patch (§2.1); the real kernel prints a number anyway
                _write(os.path.join(pdir, 'stack_order'), str(order.get(name, len(self.klp) + 1)))
            obj = os.path.join(pdir, 'vmlinux')
            os.makedirs(os.path.join(obj, '%s_func,1' % name))
            if self.vtuple >= (6, 1):
                _write(os.path.join(obj, 'patched'), '0' if lingering else '1')
        rows = []
        for module in reversed(self.modules):
            mdir = self.path('sys', 'module', module.name)
            _write(os.path.join(mdir, 'refcnt'), str(module.refcnt))
            taint = 'OEK' if module.livepatch else 'OE'
            _write(os.path.join(mdir, 'taint'), taint)
            note = struct.pack('<III', 4, 20, 3) + b'GNU\x00' + bytes.fromhex(module.build_id)
            _write_bytes(os.path.join(mdir, 'notes', '.note.gnu.build-id'), note)
            rows.append('%s 16384 %d - Live 0x0000000000000000 (%s)' % (module.name, module.refcnt, taint))
        _write(self.path('proc', 'modules'), '\n'.join(rows) + ('\n' if rows else ''))
        if self.transition is not None:
            name, target, _end = self.transition
            patch = self._patch(name)
            blocking = self.blocked and patch is not None and patch.block and _end is None
            _write(self.path('proc', '1', 'task', '1', 'patch_state'), str(1 if target else 0))
            _write(self.path('proc', '1', 'task', '1', 'comm'), 'systemd')
            _write(self.path('proc', '4242', 'task', '4242', 'patch_state'),
                   str((0 if target else 1) if blocking else (1 if target else 0)))
            _write(self.path('proc', '4242', 'task', '4242', 'comm'), 'lab_busy')
            _write(self.path('proc', '4242', 'task', '4242', 'stack'), '[<0>] lab_busy_sleep+0x2a/0x60 [lab_busy]')

    def _state_key(self):
        return (
            tuple((p.name, p.enabled, p.replace) for p in self.klp),
            tuple(sorted(self.lingering)),
            tuple((m.name, m.refcnt) for m in self.modules),
            self.transition[:2] if self.transition else None,
            self.blocked, self.tainted,
        )


class _ModelCursor(object):
    def __init__(self, model):
        self.model = model
        self.start = len(model.kmsg)

    def messages(self):
        return list(self.model.kmsg[self.start:])

    def close(self):
        pass


def _extra_modinfo(path):
    from ansible_collections.kernelops.livepatch.plugins.module_utils import _kofile
    data = _kofile._read_bytes(path)
    elf = _kofile._Elf(path, data)
    info = _kofile.parse_modinfo(elf.section('.modinfo'))
    return dict((key, values[0]) for key, values in info.items())


def _states(text):
    if not text:
        return ()
    return tuple(tuple(int(part) for part in item.split(':')) for item in text.split(','))


def _write(path, text):
    _write_bytes(path, text.encode())


def _write_bytes(path, data):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory)
    with open(path, 'wb') as handle:
        handle.write(data)
