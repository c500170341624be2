# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Self-test of the lab on every selected real kernel.

The guest must be what the rest of the integration suite assumes: the kernel we asked
for, livepatch in sysfs, a writable systemd root, and each independent test patch going
through load -> effect live -> disable -> sysfs dir gone -> rmmod -> effect gone. The
helpers mirror tools/testing/selftests/livepatch/functions.sh: each waits for the kernel's
observable state, polling in the guest every 10 ms (docs/developer.md §9.4: a transition completes
~1.5 ms after it starts on an idle guest, but 1.7-2 s with busy tasks under TCG).
"""

from __future__ import annotations

import shlex

import pytest

from drive import reads, steps, wait_script

# The lab is checked before the product on each guest: these tests run first (the reboot tests
# below after test_trust_real.py's sig_enforce test: see ``rebooted``).
pytestmark = pytest.mark.lab_order(-3)

SYSFS = "/sys/kernel/livepatch"
INDEPENDENT_PATCHES = ["lab_a", "lab_b", "lab_c", "lab_d", "lab_e"]
TIMEOUT_MS = 15000

# Each phase of a patch's cycle is one guest command (``drive.steps``): the action, the wait for
# the kernel's observable state polled in the guest every 10 ms, and the read the test asserts on;
# a failed step names itself.


def wait(condition: str, what: str) -> tuple[str, str]:
    """The step that polls ``condition`` until it holds, failing as ``what`` not observed."""
    return f"{what} not observed within {TIMEOUT_MS} ms ({condition})", wait_script(condition, TIMEOUT_MS)


def load_lp(vm, mod: str, path: str = "") -> None:
    """insmod the patch (``path``, else the lab's build of ``mod``, which must not be loaded yet)
    and wait until its sysfs dir is there and its transition is over; it is enabled."""
    first = [(f"{mod} not loaded before", f"! grep -q '^{mod} ' /proc/modules")] if not path else []
    enabled = steps(vm, first + [
        (f"insmod {mod}", f"insmod {shlex.quote(path or vm.patch_dir + '/' + mod + '.ko')}"),
        wait(f"[ -d {SYSFS}/{mod} ] && [ \"$(cat {SYSFS}/{mod}/transition)\" = 0 ]",
             f"{mod} enabled with its transition complete"),
        (f"read {SYSFS}/{mod}/enabled", f"cat {SYSFS}/{mod}/enabled")], timeout=TIMEOUT_MS / 1000 + 60)
    assert enabled.strip() == "1", f"{vm.kernel}: {mod} enabled={enabled.strip()!r}"


def disable_lp(vm, mod: str) -> None:
    """echo 0 > enabled, then wait until the patch's sysfs dir is gone (unpatching done)."""
    steps(vm, [(f"echo 0 > {SYSFS}/{mod}/enabled", f"echo 0 > {SYSFS}/{mod}/enabled"),
               wait(f"[ ! -d {SYSFS}/{mod} ]", f"{SYSFS}/{mod} to disappear after disabling")],
          timeout=TIMEOUT_MS / 1000 + 60)


def unload_lp(vm, mod: str) -> None:
    """rmmod the patch and wait until it is gone from /proc/modules."""
    steps(vm, [(f"rmmod {mod}", f"rmmod {mod}"),
               wait(f"! grep -q '^{mod} ' /proc/modules", f"{mod} to leave /proc/modules")],
          timeout=TIMEOUT_MS / 1000 + 60)


def test_guest_runs_the_kernel_asked_for(lab, lab_vm):
    """uname -r is the release the lab built, and it is a livepatch-capable kernel."""
    assert lab_vm.release == lab.release(lab_vm.kernel)
    got = reads(lab_vm, timeout=180, uname="uname -r", sysfs=f"test -d {SYSFS} && echo yes || echo no",
                systemd="systemctl is-system-running --wait || true")
    assert got["uname"].strip() == lab_vm.release
    assert got["sysfs"].strip() == "yes", "no /sys/kernel/livepatch"
    assert got["systemd"].strip() in ("running", "degraded")


def test_guest_is_writable_and_has_python(lab_vm):
    """Ansible needs python3 and writable /tmp, /run, /var/lib, /etc."""
    python = steps(lab_vm, [(f"write in {path}", f"touch {path}/.klab-write && rm {path}/.klab-write")
                            for path in ("/tmp", "/run", "/var/lib", "/etc")]
                   + [("run /usr/bin/python3", "/usr/bin/python3 -c 'import sys; print(sys.version_info[0])'")])
    assert python.strip() == "3"
    assert lab_vm.ansible_vars["ansible_python_interpreter"] == "/usr/bin/python3"
    assert lab_vm.ansible_vars["ansible_port"] == lab_vm.port


def test_patches_are_in_the_guest(lab_vm):
    """patch_dir holds this kernel's build of every test patch, v2/lab_a.ko included."""
    got = reads(lab_vm, names=f"cd {lab_vm.patch_dir} && ls *.ko v2/*.ko",
                vermagic=f"modinfo -F vermagic {lab_vm.patch_dir}/lab_a.ko")
    names = got["names"].split()
    for mod in INDEPENDENT_PATCHES + ["lab_replace", "lab_busy", "lab_block", "lab_fail_pre", "lab_state_v1",
                                      "lab_state_v2", "lab_target", "lab_target_patch", "lab_plain"]:
        assert f"{mod}.ko" in names
    assert "v2/lab_a.ko" in names
    assert got["vermagic"].split()[0] == lab_vm.release


def test_no_effect_is_live_at_boot(lab_vm):
    """A fresh guest runs no patch: no effect shows and the livepatch dir is empty."""
    assert lab_vm.live_effects() == set()
    assert lab_vm.ssh(f"ls {SYSFS}").stdout.split() == []


@pytest.mark.parametrize("mod", INDEPENDENT_PATCHES)
def test_independent_patch_cycle(lab_vm, mod):
    """load -> effect live -> disable -> dir gone -> rmmod -> effect gone, on the real kernel."""
    load_lp(lab_vm, mod)  # not loaded before, enabled after
    assert lab_vm.live_effects() == {mod}
    disable_lp(lab_vm, mod)
    assert mod not in lab_vm.live_effects()
    unload_lp(lab_vm, mod)  # gone from /proc/modules
    assert lab_vm.live_effects() == set()


def test_v2_build_of_lab_a_has_its_own_effect(lab_vm):
    """v2/lab_a.ko loads under the same module name and shows the v2 effect, not v1's."""
    load_lp(lab_vm, "lab_a", f"{lab_vm.patch_dir}/v2/lab_a.ko")
    assert lab_vm.live_effects() == {"lab_a_v2"}
    disable_lp(lab_vm, "lab_a")
    unload_lp(lab_vm, "lab_a")
    assert lab_vm.live_effects() == set()


REBOOT_WORDS = "klab.selftest=append klab.second=word"


@pytest.fixture(scope="module")
def rebooted(lab_vm):
    """One reboot of the guest for the two tests below (each asserts its own part of it):
    a file written before, the boot id before, and ``VM.reboot(append=...)`` with extra kernel
    words. Returns (boot id before, boot id after). The tests run early on the guest
    (``lab_order``), right after test_trust_real.py's ``sig_enforce`` test: this is also the
    reboot that turns signature enforcement off again (asserted below)."""
    lab_vm.ssh("echo kept > /var/lib/klab-reboot-marker && sync")
    before = lab_vm.boot_id()
    return before, lab_vm.reboot(append=REBOOT_WORDS)


@pytest.mark.lab_order(-1)
def test_reboot_keeps_the_disk_and_changes_boot_id(lab_vm, rebooted):
    """``VM.reboot``: ssh answers again with a new boot id; the disk (overlay) kept its files."""
    before, after = rebooted
    assert before and after != before
    got = reads(lab_vm, marker="cat /var/lib/klab-reboot-marker",
                patch=f"test -f {lab_vm.patch_dir}/lab_a.ko && echo yes || echo no", uname="uname -r")
    assert got["marker"].strip() == "kept"
    assert got["patch"].strip() == "yes", f"{lab_vm.patch_dir}/lab_a.ko is gone"
    assert lab_vm.release == got["uname"].strip()


@pytest.mark.lab_order(-1)
def test_extra_kernel_words_reach_the_guest_kernel(lab_vm, rebooted):  # pylint: disable=unused-argument
    """``VM.reboot(append=...)`` (like ``Lab.boot(kernel, append=...)``) boots with extra
    kernel command-line words: the guest's /proc/cmdline ends with them (the same reboot as the
    test above, which checks the disk and the boot id).

    Also shows the files that tell whether the kernel enforces module signatures, so a change in
    a kernel's config is seen here first (docs/developer.md §10.3)."""
    got = reads(lab_vm, cmdline="cat /proc/cmdline", live=f"ls {SYSFS}",
                sig="cat /sys/module/module/parameters/sig_enforce", lockdown="cat /sys/kernel/security/lockdown")
    cmdline = got["cmdline"].split()
    assert cmdline[-2:] == REBOOT_WORDS.split(), cmdline
    assert " ".join(cmdline) == lab_vm.cmdline and lab_vm.append == REBOOT_WORDS
    assert got["live"].split() == []
    # Debian builds with CONFIG_MODULE_SIG and the lockdown LSM: both files exist, neither enforces
    # without a word on the command line (or Secure Boot, which the lab has not).
    sig, lockdown = got["sig"].strip(), got["lockdown"].strip()
    print(f"{lab_vm.kernel} {lab_vm.release}: sig_enforce={sig!r} lockdown={lockdown!r}")
    assert sig == "N"
    assert lockdown == "[none] integrity confidentiality"
