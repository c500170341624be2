# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    """Options and attributes shared by the modules that change the livepatch stack."""

    DOCUMENTATION = r"""
options:
  timeout:
    description:
      - Seconds one transition may take before it counts as stalled.
      - The kernel has no timeout of its own; an idle host finishes a transition in milliseconds, a busy one
        in one to two seconds because the kernel retries once a second, and since Linux 5.1 it signals
        blocking tasks every 15 seconds.
      - The module polls in milliseconds, so a short timeout costs nothing when the kernel is quick.
    type: float
    default: 60.0
  on_stall:
    description:
      - What to do when a transition this run started is still running after O(timeout).
      - V(reverse) writes the opposite value to the patch's C(enabled) file, which reverses the transition, waits
        for that to finish, reports the blocking tasks with their kernel stacks, and fails (rolling back if
        O(rollback=true)).
      - V(fail) reports the blocking tasks and fails, leaving the transition running; a later run waits for it.
      - V(force) writes C(force), which breaks the kernel's consistency guarantee. The forced module can never be
        unloaded and the host must be rebooted before more patches are applied. Use it only with clearance from
        whoever built the patch.
    type: str
    choices: [reverse, fail, force]
    default: reverse
  rollback:
    description:
      - When a step fails (a module the kernel refused to load, a reversed transition), bring the stack back to what it was before
        the run by popping what was pushed and pushing again what was popped.
      - A patch popped earlier in the run can only be pushed again when its file is known, from the desired
        stack, or from the journal this collection keeps under C(/run/kernelops-livepatch) of the files it loaded
        since boot. The result says when that is not the case, and what the stack is.
    type: bool
    default: true
  wait:
    description:
      - When a transition is already running, wait for it (up to O(timeout)) before changing anything.
      - With V(false), fail without changing anything instead.
    type: bool
    default: true
  lock_timeout:
    description:
      - Seconds to wait for the host-wide lock C(/run/kernelops-livepatch.lock) that keeps two runs (two AWX jobs, two
        playbooks) from interleaving on one host.
    type: float
    default: 60.0
  unload_retired:
    description:
      - Unload livepatch modules that are still loaded but no longer on the stack because they were disabled or
        replaced (C(refcnt) 0).
      - A module that is loaded under a name that must be pushed is always unloaded first, whatever this says.
      - Modules left by a forced transition cannot be unloaded; they are reported and RV(reboot_required) is set.
    type: bool
    default: true
  foreign:
    description:
      - What to do with live patches this collection did not load (a vendor's C(kpatch) package, another tool's
        module). A live patch is ours when the journal this collection keeps under C(/run/kernelops-livepatch) (files
        it loaded since boot) or the boot record O(record) names it with the same build; anything else is foreign.
      - V(refuse) fails before anything changes when the plan would disable, unload or replace a foreign patch, naming
        each one and its position from the bottom of the stack (rule V(foreign_patch)).
      - V(keep) leaves the foreign live patches where they are, as a fixed bottom, and converges the desired stack
        above them; a plan that would still have to touch one (a patch of yours below it, a replace patch) is
        refused.
      - V(pop) treats foreign patches like any other, so they are popped when they are not in the desired stack.
    type: str
    choices: [refuse, keep, pop]
    default: refuse
  record:
    description:
      - After a successful run, write the resulting stack (name, path, build ID, replace) as JSON to this file, so
        that it can be applied again after a reboot; the role
        R(kernelops.livepatch.livepatch_stack,ansible_collections.kernelops.livepatch.livepatch_stack_role) points its
        boot unit at it.
      - Must be an absolute path. Written atomically (temporary file, fsync, rename) while the host lock is held, and
        only when its content changes. The file carries C(schema) 2; a file of another shape is refused (rule
        V(bad_record)) before anything changes, and never overwritten.
      - Its patches count as ours for O(foreign). Foreign patches kept by O(foreign=keep) are not recorded; their own
        tool loads them at boot.
      - In check mode, a patch file that does not exist on the host yet is planned by name, as a new build, instead of
        being refused; the role copies patch files in the same run.
    type: path
notes:
  - Patch file paths must be absolute (rule V(relative_path)); the boot record keeps them normalised.
  - Changing the stack needs root. Check mode does not, but without root the blocking tasks of a transition cannot be
    read.
  - The module never forces a module unload, and writes C(force) only with O(on_stall=force).
  - It loads exactly the patch bytes it verified (C(finit_module) on a sealed memory file), so no C(kmod) binary is
    needed.
"""
