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

# The lab is checked before the product on each guest: these tests run first (the reboot tests
# below after test_trust_real.py's sig_enforce test: see ``rebooted``).
pytestmark = pytest.mark.lab_order(-3)

SYSFS = "/sys/kernel/livepatch"
INDEPENDENT_PATCHES = ["lab_a", "lab_b", "lab_c", "lab_d", "lab_e"]
POLL_MS = 10


def loop_until(vm, condition: str, what: str, timeout_ms: int = 15000) -> None:
    """Poll the shell ``condition`` in the guest every 10 ms until it holds; fail naming ``what``."""
    tries = timeout_ms // POLL_MS
    script = (f"i=0; until {condition}; do i=$((i + 1)); "
              f"if [ $i -ge {tries} ]; then exit 1; fi; sleep 0.0{POLL_MS // 10}; done")
    proc = vm.ssh(script, check=False, timeout=timeout_ms / 1000 + 60)
    assert proc.returncode == 0, f"{vm.kernel}: {what} not observed within {timeout_ms} ms ({condition}): {proc.stderr}"


def is_loaded(vm, mod: str) -> bool:
    """True when ``mod`` is in /proc/modules."""
    return vm.ssh(f"grep -q '^{mod} ' /proc/modules", check=False).returncode == 0


def load_lp(vm, mod: str) -> None:
    """insmod the patch and wait until its sysfs dir is there and its transition is over."""
    vm.ssh(f"insmod {shlex.quote(vm.patch_dir)}/{mod}.ko")
    loop_until(vm, f"[ -d {SYSFS}/{mod} ] && [ \"$(cat {SYSFS}/{mod}/transition)\" = 0 ]",
               f"{mod} enabled with its transition complete")
    assert vm.ssh(f"cat {SYSFS}/{mod}/enabled").stdout.strip() == "1"


def disable_lp(vm, mod: str) -> None:
    """echo 0 > enabled, then wait until the patch's sysfs dir is gone (unpatching done)."""
    vm.ssh(f"echo 0 > {SYSFS}/{mod}/enabled")
    loop_until(vm, f"[ ! -d {SYSFS}/{mod} ]", f"{SYSFS}/{mod} to disappear after disabling")


def unload_lp(vm, mod: str) -> None:
    """rmmod the patch and wait until it is gone from /proc/modules."""
    vm.ssh(f"rmmod {mod}")
    loop_until(vm, f"! grep -q '^{mod} ' /proc/modules", f"{mod} to leave /proc/modules")


def test_guest_runs_the_kernel_asked_for(lab, lab_vm):
    """uname -r is the release the lab built, and it is a livepatch-capable kernel."""
    assert lab_vm.release == lab.release(lab_vm.kernel)
    assert lab_vm.ssh("uname -r").stdout.strip() == lab_vm.release
    assert lab_vm.ssh(f"test -d {SYSFS}", check=False).returncode == 0, "no /sys/kernel/livepatch"
    assert lab_vm.ssh("systemctl is-system-running --wait", check=False, timeout=180).stdout.strip() in ("running", "degraded")


def test_guest_is_writable_and_has_python(lab_vm):
    """Ansible needs python3 and writable /tmp, /run, /var/lib, /etc."""
    for path in ("/tmp", "/run", "/var/lib", "/etc"):
        lab_vm.ssh(f"touch {path}/.klab-write && rm {path}/.klab-write")
    assert lab_vm.ssh("/usr/bin/python3 -c 'import sys; print(sys.version_info[0])'").stdout.strip() == "3"
    assert lab_vm.ansible_vars["ansible_python_interpreter"] == "/usr/bin/python3"
    assert lab_vm.ansible_vars["ansible_port"] == lab_vm.port


def test_patches_are_in_the_guest(lab_vm):
    """patch_dir holds this kernel's build of every test patch, v2/lab_a.ko included."""
    names = lab_vm.ssh(f"cd {lab_vm.patch_dir} && ls *.ko v2/*.ko").stdout.split()
    for mod in INDEPENDENT_PATCHES + ["lab_replace", "lab_busy", "lab_block", "lab_fail_pre", "lab_state_v1",
                                      "lab_state_v2", "lab_target", "lab_target_patch", "lab_plain"]:
        assert f"{mod}.ko" in names
    assert "v2/lab_a.ko" in names
    vermagic = lab_vm.ssh(f"modinfo -F vermagic {lab_vm.patch_dir}/lab_a.ko").stdout.split()[0]
    assert vermagic == lab_vm.release


def test_no_effect_is_live_at_boot(lab_vm):
    """A fresh guest runs no patch: no effect shows and the livepatch dir is empty."""
    assert lab_vm.live_effects() == set()
    assert lab_vm.ssh(f"ls {SYSFS}").stdout.split() == []


@pytest.mark.parametrize("mod", INDEPENDENT_PATCHES)
def test_independent_patch_cycle(lab_vm, mod):
    """load -> effect live -> disable -> dir gone -> rmmod -> effect gone, on the real kernel."""
    assert not is_loaded(lab_vm, mod)
    load_lp(lab_vm, mod)
    assert lab_vm.live_effects() == {mod}
    disable_lp(lab_vm, mod)
    assert mod not in lab_vm.live_effects()
    unload_lp(lab_vm, mod)
    assert not is_loaded(lab_vm, mod)
    assert lab_vm.live_effects() == set()


def test_v2_build_of_lab_a_has_its_own_effect(lab_vm):
    """v2/lab_a.ko loads under the same module name and shows the v2 effect, not v1's."""
    lab_vm.ssh(f"insmod {lab_vm.patch_dir}/v2/lab_a.ko")
    loop_until(lab_vm, f"[ -d {SYSFS}/lab_a ] && [ \"$(cat {SYSFS}/lab_a/transition)\" = 0 ]", "v2 lab_a enabled")
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
    assert lab_vm.ssh("cat /var/lib/klab-reboot-marker").stdout.strip() == "kept"
    assert lab_vm.ssh(f"test -f {lab_vm.patch_dir}/lab_a.ko", check=False).returncode == 0
    assert lab_vm.release == lab_vm.ssh("uname -r").stdout.strip()


@pytest.mark.lab_order(-1)
def test_extra_kernel_words_reach_the_guest_kernel(lab_vm, rebooted):  # pylint: disable=unused-argument
    """``VM.reboot(append=...)`` (like ``Lab.boot(kernel, append=...)``) boots with extra
    kernel command-line words: the guest's /proc/cmdline ends with them (the same reboot as the
    test above, which checks the disk and the boot id).

    Also shows the files that tell whether the kernel enforces module signatures, so a change in
    a kernel's config is seen here first (docs/developer.md §10.3)."""
    cmdline = lab_vm.ssh("cat /proc/cmdline").stdout.split()
    assert cmdline[-2:] == REBOOT_WORDS.split(), cmdline
    assert " ".join(cmdline) == lab_vm.cmdline and lab_vm.append == REBOOT_WORDS
    assert lab_vm.ssh(f"ls {SYSFS}").stdout.split() == []
    # Debian builds with CONFIG_MODULE_SIG and the lockdown LSM: both files exist, neither enforces
    # without a word on the command line (or Secure Boot, which the lab has not).
    sig = lab_vm.ssh("cat /sys/module/module/parameters/sig_enforce").stdout.strip()
    lockdown = lab_vm.ssh("cat /sys/kernel/security/lockdown").stdout.strip()
    print(f"{lab_vm.kernel} {lab_vm.release}: sig_enforce={sig!r} lockdown={lockdown!r}")
    assert sig == "N"
    assert lockdown == "[none] integrity confidentiality"
