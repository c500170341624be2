# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A model of the kernel's livepatch core, for fast tests.

It keeps the kernel's rules per era (docs/developer.md §2, §3, §5) with the errno the real
kernel gives, renders the sysfs/procfs files the observe layer reads into a directory, and
implements the same methods as ``_kernel.Kernel`` (path, read, exists, listdir, write,
transition_patch, load_module, unload_module, kmsg_cursor, observe) so the real executor can
drive it. It is its own class: it shares no code with the production ``Kernel`` it stands in
for, and reads module files with its own ELF reader (``model_image``), not ``_kofile``.

Time is simulated: transitions end after ``duration`` simulated seconds, or never while
``blocked``. ``hooks`` let a test act in the middle of a run: ``at(when, fn)`` runs ``fn(model)``
once the simulated clock reaches ``when``; ``on_event(kind, name, fn)`` runs it when the kernel
starts, reverses or completes a transition (``('start', name, target)``, ``('reverse', …)``,
``('complete', …)``),
loads or unloads a module (``('load', name)``, ``('unload', name)``); every callable in
``hooks`` runs at every kernel access.

It also counts what a correct tool must never cause: two transitions at once (EBUSY from a
start while another runs), and disabling a patch while a patch above it is live.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import lzma
import os
import shutil
import struct

from ansible_collections.kernelops.livepatch.plugins.module_utils._kernel import LoadResult
from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import (
    ERA_FREE, ERA_IMMEDIATE, ERA_STACKED, observe,
)

LIVEPATCH = 'sys/kernel/livepatch'
SIGNATURE_MARKER = b'~Module signature appended~\n'

RELEASES = {
    '4.9': '4.9.0-19-amd64',
    '4.19': '4.19.0-27-amd64',
    '6.1': '6.1.0-50-amd64',
    '6.12': '6.12.117+deb13-amd64',
    '7.2': '7.2.13+deb14-amd64',
}


class ModelClock:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += max(seconds, 0.0)


class ModelPatch:
    def __init__(self, name, replace, states, block, functions):
        self.name = name
        self.enabled = True
        self.replace = replace
        self.states = states
        self.block = block
        self.functions = functions
        self.forced = False


class ModelModule:
    def __init__(self, name, build_id, livepatch):
        self.name = name
        self.build_id = build_id
        self.livepatch = livepatch
        self.refcnt = 0
        self.forced = False


class ModelInfo:
    """What the model reads from a module's bytes (independently of ``_kofile``)."""

    def __init__(self, name, build_id, release, livepatch, modinfo):
        self.name = name
        self.build_id = build_id
        self.release = release
        self.livepatch = livepatch
        self.modinfo = modinfo


class ModelImage:
    """Stands in for ``_kofile.ModuleImage``: ``path``, ``data`` (the bytes to load), ``info``."""

    def __init__(self, path, data, info):
        self.path = path
        self.data = data
        self.info = info
        self.identity = None


def model_info(data):
    """Name, build ID, release and modinfo of an ELF64 little-endian module image."""
    e_shoff, = struct.unpack_from('<Q', data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from('<HHH', data, 0x3A)
    headers = [struct.unpack_from('<IIQQQQIIQQ', data, e_shoff + i * e_shentsize) for i in range(e_shnum)]
    strtab = headers[e_shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    sections = {}
    for header in headers:
        name = names[header[0]:names.index(b'\x00', header[0])].decode()
        sections[name] = data[header[4]:header[4] + header[5]]
    modinfo = {}
    for item in sections.get('.modinfo', b'').split(b'\x00'):
        if b'=' in item:
            key, value = item.decode().split('=', 1)
            modinfo.setdefault(key, value)
    note = sections.get('.note.gnu.build-id', b'')
    build_id = None
    if len(note) >= 16:
        namesz, descsz, _type = struct.unpack_from('<III', note, 0)
        start = 12 + ((namesz + 3) & ~3)
        build_id = note[start:start + descsz].hex()
    return ModelInfo(modinfo.get('name'), build_id, (modinfo.get('vermagic') or '').split(' ')[0],
                     modinfo.get('livepatch') == 'Y', modinfo)


def model_image(path):
    """Read a (possibly compressed) module file into an image the model can load."""
    with open(path, 'rb') as handle:
        data = handle.read()
    if data[:6] == b'\xfd7zXZ\x00':
        data = lzma.decompress(data)
    elif data[:2] == b'\x1f\x8b':
        data = gzip.decompress(data)
    return ModelImage(path, data, model_info(data))


class KernelModel:
    """One simulated kernel. ``version``: '4.9', '4.19', '6.1', '6.12' or '7.2'."""

    def __init__(self, root, version='6.12', duration=0.0015, free_lag=0.0005, behaviour=None):
        self.root = root
        # name -> modinfo entries that say what a module does beyond its bytes' modinfo (the real
        # kernel reads replace, states, callbacks from the klp_patch the module registers); the
        # lab's table is in tests/integration/drive.py
        self.behaviour = dict(behaviour or {})
        self.sig_enforce = False   # module.sig_enforce=1 on the command line: unsigned modules are refused
        self.clock = ModelClock()
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
        self.hooks = []            # callables(model), run at every kernel access
        self._timed = []           # (when, fn) run once
        self._on_event = []        # (event prefix, fn) run once
        self._rendered = None
        self.render()

    # -- hooks -----------------------------------------------------------------------------
    def at(self, when, fn):
        """Run ``fn(model)`` once, at the first kernel access at or after simulated time ``when``."""
        self._timed.append((when, fn))

    def on_event(self, fn, *prefix):
        """Run ``fn(model)`` once, right after an event starting with ``prefix`` (e.g. 'start', 'b')."""
        self._on_event.append((tuple(prefix), fn))

    def _event(self, *event):
        if event[0] in ('start', 'reverse'):  # what the tests compare (loads are visible in the stack)
            self.events.append(event)
        for item in list(self._on_event):
            prefix, fn = item
            if event[:len(prefix)] == prefix:
                self._on_event.remove(item)
                fn(self)

    def finish_transition(self):
        """The last blocking task switched: the running transition ends now."""
        if self.transition is not None:
            name, target, _end = self.transition
            self.transition = (name, target, self.clock.now)

    # -- time ------------------------------------------------------------------------------
    def tick(self):
        for item in list(self._timed):
            when, fn = item
            if self.clock.now >= when:
                self._timed.remove(item)
                fn(self)
        for hook in list(self.hooks):
            hook(self)
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
            self._event('complete', name, target)
            return
        if self.era == ERA_FREE:
            self._retire(patch)
        else:
            module = self._module(name)
            if module is not None and self.era == ERA_STACKED and not patch.forced:
                module.refcnt = 0
        self._event('complete', name, target)

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
        self.kmsg.append("livepatch: '%s': starting %s transition" % (patch.name, 'patching' if target else 'unpatching'))
        self._event('start', patch.name, target)
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

    def live_builds(self):
        return [(p.name, self._module(p.name).build_id) for p in self.klp if p.enabled]

    # -- the kernel's entry points (raise OSError like a syscall would) ---------------------
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
            self.kmsg.append("livepatch: '%s': reversing transition" % name)
            self._event('reverse', name, want)
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

    def load_module(self, image):
        """finit_module on ``image.data``: the model looks at the bytes only, never at the path."""
        self.tick()
        cursor = len(self.kmsg)
        data = bytes(image.data)
        info = model_info(data)
        info.modinfo = dict(info.modinfo, **self.behaviour.get(info.name, {}))
        if self.sig_enforce and not data.endswith(SIGNATURE_MARKER):
            # kernel/module/signing.c (6.x): an unsigned module under sig_enforce is EKEYREJECTED
            self.kmsg.append('Loading of unsigned module is rejected')
            return LoadResult(errno='EKEYREJECTED', message=os.strerror(errno.EKEYREJECTED),
                              kernel_messages=tuple(self.kmsg[cursor:]))
        error = self._load(info)
        messages = tuple(self.kmsg[cursor:])
        return LoadResult(errno=error, message=os.strerror(getattr(errno, error)) if error else '',
                          kernel_messages=messages)

    def _load(self, info):
        if self._module(info.name) is not None:
            return 'EEXIST'
        if info.release != self.release:
            return 'ENOEXEC'
        if not info.livepatch:
            self.modules.append(ModelModule(info.name, info.build_id, False))
            self._event('load', info.name)
            self.render()
            return None
        if self.transition is not None:
            self.ebusy += 1
            return 'EBUSY'
        replace = info.modinfo.get('x_replace') == '1'
        states = _states(info.modinfo.get('x_states'))
        if self.era != ERA_FREE and self.klp and not self.klp[-1].enabled:
            self.ebusy += 1
            return 'EBUSY'
        if self.vtuple >= (5, 5) and not self._compatible(states, replace):
            self.kmsg.append('livepatch: Livepatch patch (%s) is not compatible with the already installed livepatches.'
                             % info.name)
            return 'EINVAL'
        if int(info.modinfo.get('x_pre_patch', '0')):
            self.kmsg.append("livepatch: pre-patch callback failed for object 'vmlinux'")
            return 'ENODEV'
        module = ModelModule(info.name, info.build_id, True)
        module.refcnt = 1
        self.modules.append(module)
        self.tainted |= 1 << 15
        patch = ModelPatch(info.name, replace, states, info.modinfo.get('x_block') == '1',
                           ['%s_func,1' % info.name])
        self.klp.append(patch)
        self.kmsg.append("livepatch: enabling patch '%s'" % info.name)
        self._event('load', info.name)
        self._start(patch, True)
        self.render()
        return None

    def insmod(self, path):
        """Someone else's ``insmod path`` (tests only): (rc, stdout, stderr) like kmod's."""
        result = self.load_module(model_image(path))
        if result.errno is None:
            return 0, '', ''
        return 1, '', 'insmod: ERROR: could not insert module %s: %s\n' % (path, result.message)

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

    def unload_module(self, name):
        """delete_module(name, O_NONBLOCK): ENOENT when not loaded, EAGAIN (EWOULDBLOCK) while in use."""
        self.tick()
        module = self._module(name)
        if module is None:
            return 'ENOENT'
        if module.refcnt > 0 or self.era == ERA_IMMEDIATE and module.livepatch:
            return 'EAGAIN'
        self.modules.remove(module)
        patch = self._patch(name)
        if patch is not None:
            self.klp.remove(patch)
        self._event('unload', name)
        self.render()
        return None

    def rmmod(self, name):
        """Someone else's ``rmmod name`` (tests only)."""
        error = self.unload_module(name)
        return (0, '', '') if error is None else (1, '', 'rmmod: ERROR: %s\n' % error)

    # -- the methods of _kernel.Kernel -----------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def read(self, *parts):
        self.tick()
        try:
            with open(self.path(*parts)) as handle:
                return handle.read().strip()
        except OSError:
            return None

    def exists(self, *parts):
        self.tick()
        return os.path.exists(self.path(*parts))

    def listdir(self, *parts):
        self.tick()
        try:
            return sorted(os.listdir(self.path(*parts)))
        except OSError:
            return []

    def write(self, value, *parts):
        """An attribute write: the errno name the kernel would give, or None."""
        try:
            if len(parts) == 3 and parts[0] == LIVEPATCH:
                name, attribute = parts[1], parts[2]
                if attribute == 'enabled':
                    self.write_enabled(name, value)
                    return None
                if attribute in ('force', 'signal') and _kstrtobool(value) is None:
                    return 'EINVAL'  # force_store()/signal_store() parse the value with kstrtobool()
                if attribute == 'force' and self.vtuple >= (4, 15):
                    if _kstrtobool(value):
                        self.write_force(name)
                    return None
                if attribute == 'signal' and (4, 15) <= self.vtuple < (5, 1):
                    self.tick()
                    if not _kstrtobool(value):
                        return None
                    if self.transition is None or self.transition[0] != name:
                        return 'EINVAL'
                    self.events.append(('signal', name))
                    return None
        except OSError as exc:
            return errno.errorcode[exc.errno]
        return 'ENOENT'

    def transition_patch(self):
        self.tick()
        if self.transition is None or self.vtuple < (4, 12):
            return None
        return self.transition[0]

    def kmsg_cursor(self):
        return _ModelCursor(self)

    def observe(self, blocker_stacks=False):
        self.tick()
        return observe(self.root, blocker_stacks=blocker_stacks)

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
        _write(self.path('sys', 'module', 'module', 'parameters', 'sig_enforce'), 'Y' if self.sig_enforce else 'N')
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
            self.blocked, self.tainted, self.sig_enforce,
        )


class _ModelCursor:
    def __init__(self, model):
        self.model = model
        self.start = len(model.kmsg)

    def messages(self):
        return list(self.model.kmsg[self.start:])

    def close(self):
        pass


def make_image(path, name, build, release, **kwargs):
    """Write a fake module with kofactory and return its model image (tests only)."""
    from kofactory import make_ko
    make_ko(path, name, release=release, build=build, **kwargs)
    return model_image(path)


def build_id_of(name, build, release):
    return hashlib.sha1(('%s/%s/%s' % (name, build, release)).encode()).hexdigest()


def _kstrtobool(text):
    """lib/kstrtox.c kstrtobool: True, False, or None for what the kernel refuses (EINVAL)."""
    word = text.strip().lower()
    if word[:1] in ('1', 'y', 't') or word in ('on',):
        return True
    if word[:1] in ('0', 'n', 'f') or word in ('off',):
        return False
    return None


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


class Lab:
    """A model kernel plus patch files, with helpers named like the kernel selftests' functions.sh.

    ``known`` plays the journal: name -> {'path', 'build_id', 'replace'} of what was loaded.
    """

    def __init__(self, tmp_path, version='6.12'):
        from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import Wanted
        self._wanted_type = Wanted
        root = tmp_path / 'root'
        root.mkdir()
        self.files = tmp_path / 'files'
        self.files.mkdir()
        self.model = KernelModel(str(root), version)
        self.known = {}

    def ko(self, name, build='v1', path=None, **kwargs):
        """Write ``name`` (build ``build``) and return its Wanted."""
        path = path or str(self.files / ('%s.ko' % name))
        image = make_image(path, name, build, self.model.release, **kwargs)
        return self._wanted_type(name=name, path=path, build_id=image.info.build_id,
                                 replace=kwargs.get('replace', False))

    def load_lp(self, wanted):
        """Load as this collection would have in an earlier run (recorded in ``known``)."""
        result = self.model.load_module(model_image(wanted.path))
        assert result.errno is None, result
        self.known[wanted.name] = {'path': wanted.path, 'build_id': wanted.build_id, 'replace': wanted.replace}
        self.settle()

    def settle(self):
        self.model.clock.sleep(0.01)
        self.model.tick()

    def executor(self, capabilities=None, timeout=5.0, on_stall='reverse'):
        from ansible_collections.kernelops.livepatch.plugins.module_utils._executor import Executor

        def loaded(step, image):
            self.known[step.patch] = {'path': image.path, 'build_id': image.info.build_id,
                                      'replace': bool(getattr(step, 'replace', False))}
        capabilities = capabilities or self.model.observe().capabilities
        return Executor(self.model, capabilities, timeout=timeout, on_stall=on_stall, clock=self.model.clock,
                        on_loaded=loaded)

    def converge(self, wanted, timeout=5.0, on_stall='reverse', rollback=True, unload_retired=True):
        """Open the files (as the runner does before planning), plan, converge: (plan, executor, result)."""
        from ansible_collections.kernelops.livepatch.plugins.module_utils._converge import converge
        from ansible_collections.kernelops.livepatch.plugins.module_utils._plan import plan_stack
        images = dict((w.name, model_image(w.path)) for w in wanted if w.path)
        snapshot = self.model.observe()

        def planner(snap, want):
            return plan_stack(snap, want, unload_retired=unload_retired)
        plan = planner(snapshot, wanted)
        executor = self.executor(snapshot.capabilities, timeout, on_stall)
        result = converge(self.model, plan, executor, images=images, original=snapshot.live_stack,
                          rollback=rollback, planner=planner, known_files=dict(self.known), open_image=model_image)
        return plan, executor, result
