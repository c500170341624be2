"""Visible effects of the lab's test livepatches (``lab/patches/``).

Each test patch changes what one guest command prints.  ``EFFECTS`` maps an
effect id to ``(command, marker)``: the marker is a substring of the
command's output if and only if that effect is live in the guest.  Every
effect comes from a different patched function, so all effects can be read
at once and a test can tell exactly which patches are live.

Notes for users of the table:

* ``lab_a`` and ``lab_a_v2`` are the two builds of the module ``lab_a``
  (``lab_a.ko`` and ``v2/lab_a.ko``); only one of them can be loaded.
* ``lab_target_patch`` is visible only while the target module
  ``lab_target`` is loaded too (otherwise ``/proc/lab_target`` is missing
  and the command fails, printing no marker).
* ``lab_busy``/``lab_block``, ``lab_fail_pre`` and ``lab_plain`` have no
  effect entry: their behaviour is read from sysfs, not from a command.
* The commands are plain POSIX shell; a failing command (file missing)
  simply prints no marker.
"""

from __future__ import annotations

EFFECTS: dict[str, tuple[str, str]] = {
    'lab_a': ('cat /proc/cmdline', 'lab_a: live'),
    'lab_a_v2': ('cat /proc/cmdline', 'lab_a: v2'),
    'lab_b': ('cat /proc/version', 'lab_b: live'),
    'lab_c': ('cat /proc/loadavg', 'lab_c: live'),
    'lab_d': ('cat /proc/execdomains', 'lab_d: live'),
    'lab_e': ('cat /proc/softirqs', 'lab_e: live'),
    'lab_replace': ('cat /proc/dma', 'lab_replace: live'),
    'lab_state_v1': ('cat /proc/net/sockstat', 'lab_state_v1: live'),
    'lab_state_v2': ('cat /proc/net/psched', 'lab_state_v2: live'),
    'lab_target_patch': ('cat /proc/lab_target', 'lab_target: patched'),
}
