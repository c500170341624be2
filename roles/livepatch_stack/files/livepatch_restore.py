# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Re-apply the livepatch stack recorded for the running kernel, at boot.

Installed by the role kernelops.livepatch.livepatch_stack and run by its systemd unit
(``kernelops-livepatch-restore.service``) as ``python3 livepatch_restore.py``. Standard
library only. It reads ``DIR/$(uname -r)/stack.json`` (written by the module
``livepatch_stack`` with ``record``) and loads each patch in order, bottom first, waiting
for each transition, like ``load_lp`` in the kernel's livepatch selftests
(tools/testing/selftests/livepatch/functions.sh).

- ``kernelops.livepatch=0`` on the kernel command line skips everything (recovery from a
  bad patch, kpatch issue #588).
- A patch already live with the recorded build (GNU build ID in
  ``/sys/module/<m>/notes/.note.gnu.build-id``) is left alone.
- On any failure it stops, logs why and exits non-zero; it never unloads or disables
  anything, so what is already loaded stays as it is.
"""

import argparse
import json
import os
import struct
import subprocess
import sys
import time

SYSFS_LIVEPATCH = '/sys/kernel/livepatch'
SYSFS_MODULE = '/sys/module'
SKIP_SWITCH = 'kernelops.livepatch=0'
POLL_S = 0.01  # the kernel finishes an idle transition in milliseconds (docs/developer.md §5.1)
NT_GNU_BUILD_ID = 3


def log(level, message):
    """One line on stderr; ``<N>`` is the syslog priority journald reads from a unit's output."""
    sys.stderr.write('<%d>%s\n' % (level, message))
    sys.stderr.flush()


def read_text(path):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return None


def skip_requested(cmdline_path):
    """Whether the kernel command line carries the skip switch."""
    words = (read_text(cmdline_path) or '').split()
    return SKIP_SWITCH in words


def loop_until(what, condition, deadline):
    """Poll ``condition`` every few milliseconds until it holds or ``deadline`` passes."""
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            log(3, 'timed out waiting for %s' % what)
            return False
        time.sleep(POLL_S)


def transition_idle():
    """No patch is in transition: every ``/sys/kernel/livepatch/*/transition`` reads 0 (§2.1)."""
    try:
        names = os.listdir(SYSFS_LIVEPATCH)
    except OSError:
        return True
    return all(read_text(os.path.join(SYSFS_LIVEPATCH, name, 'transition')) in ('0', None) for name in names)


def build_id(module):
    """GNU build ID of a loaded module, hex, or None (same parsing as module_utils/_kofile.py)."""
    try:
        with open(os.path.join(SYSFS_MODULE, module, 'notes', '.note.gnu.build-id'), 'rb') as handle:
            blob = handle.read()
    except (IOError, OSError):
        return None
    offset = 0
    while offset + 12 <= len(blob):
        namesz, descsz, n_type = struct.unpack_from('<III', blob, offset)
        desc = offset + 12 + ((namesz + 3) & ~3)
        if n_type == NT_GNU_BUILD_ID and blob[offset + 12:offset + 12 + namesz].rstrip(b'\x00') == b'GNU':
            return blob[desc:desc + descsz].hex() or None
        offset = desc + ((descsz + 3) & ~3)
    return None


def is_live(patch):
    """The patch is on the kernel's list and enabled."""
    return read_text(os.path.join(SYSFS_LIVEPATCH, patch, 'enabled')) == '1'


def load_lp(entry, deadline):
    """insmod one patch and wait until its transition (and any replace) has finished."""
    name, path = entry['name'], entry.get('path')
    if not path or not os.path.exists(path):
        log(3, '%s: file %s is missing; not loading it or anything above it' % (name, path))
        return False
    if not loop_until('the running transition to finish before loading %s' % name, transition_idle, deadline):
        return False
    env = dict(os.environ, LC_ALL='C', PATH='/usr/sbin:/sbin:/usr/bin:/bin')
    proc = subprocess.Popen(['insmod', path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            universal_newlines=True)
    output = proc.communicate()[0].strip()
    if proc.returncode != 0:
        log(3, '%s: insmod %s failed (exit %d): %s' % (name, path, proc.returncode, output))
        return False
    if not loop_until('the transition of %s' % name,
                      lambda: read_text(os.path.join(SYSFS_LIVEPATCH, name, 'transition')) == '0', deadline):
        return False
    if entry.get('replace') and not loop_until('the patches replaced by %s to go' % name,
                                               lambda: os.listdir(SYSFS_LIVEPATCH) == [name], deadline):
        return False
    if not is_live(name):
        log(3, '%s: loaded but not enabled after its transition' % name)
        return False
    return True


def restore(record, timeout):
    """Load every recorded patch that is not live yet; return the exit status."""
    stack = record.get('stack') or []
    loaded = 0
    for entry in stack:
        name = entry.get('name')
        if not name:
            log(3, 'record entry without a name: %r' % (entry,))
            return 1
        if is_live(name):
            live_build = build_id(name)
            if entry.get('build_id') and live_build and live_build != entry['build_id']:
                log(3, '%s is live with build %s, not the recorded %s; stopping here' % (name, live_build, entry['build_id']))
                return 1
            log(6, '%s: already live, left alone' % name)
            continue
        if os.path.isdir(os.path.join(SYSFS_MODULE, name)):
            log(3, '%s: module is loaded but not live (disabled or replaced); stopping here' % name)
            return 1
        start = time.monotonic()
        if not load_lp(entry, start + timeout):
            return 1
        loaded += 1
        log(6, '%s: live (%.0f ms)' % (name, (time.monotonic() - start) * 1000))
    log(6, 'stack restored: %d patches, %d loaded now (%s)' % (len(stack), loaded, ', '.join(e['name'] for e in stack) or 'empty'))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', default='/var/lib/kernelops-livepatch', help='the role\'s livepatch_stack_dir')
    parser.add_argument('--timeout', type=float, default=60.0, help='seconds each patch may take')
    parser.add_argument('--cmdline', default='/proc/cmdline', help='where to read the kernel command line')
    args = parser.parse_args(argv)
    if skip_requested(args.cmdline):
        log(5, '%s on the kernel command line: not restoring any livepatch' % SKIP_SWITCH)
        return 0
    release = os.uname()[2]
    path = os.path.join(args.dir, release, 'stack.json')
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (IOError, OSError):
        log(6, 'no recorded stack for kernel %s (%s): nothing to do' % (release, path))
        return 0
    except ValueError as exc:
        log(3, '%s is not valid JSON (%s); nothing loaded' % (path, exc))
        return 1
    if record.get('kernel_release') not in (None, release):
        log(3, '%s records kernel %s, not the running %s; nothing loaded' % (path, record.get('kernel_release'), release))
        return 1
    if not os.path.isdir(SYSFS_LIVEPATCH):
        log(3, 'kernel %s has no %s (CONFIG_LIVEPATCH); nothing loaded' % (release, SYSFS_LIVEPATCH))
        return 1
    return restore(record, args.timeout)


if __name__ == '__main__':
    sys.exit(main())
