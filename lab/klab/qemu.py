# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Boot a lab guest under QEMU and talk to it over SSH.

TCG by default; KVM only when a real probe (a kernel actually booting to its initramfs
under ``-accel kvm``, bounded by a timeout) succeeded on this machine. /dev/kvm existing
proves nothing here (docs/developer.md §9.2: guests fail with MSR 0x10a or hang).
"""

from __future__ import annotations

import atexit
import ctypes
import dataclasses
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Callable

from . import payload_bytecode
from .guest import KERNEL_CMDLINE, PATCH_DIR, ensure_readable
from .kernels import KernelInfo, boot_image
from .util import LabError, c_env, cache_dir, log, run, tail, wait_until

QEMU = "qemu-system-x86_64"
CONSOLE_TAIL = 40
PR_SET_PDEATHSIG = 1


class WarmResetHung(LabError):
    """The guest kernel stopped making progress after a reboot inside the guest."""


def kernel_cmdline(append: str = "") -> str:
    """The guest kernel's command line: the lab's fixed words, then ``append`` (extra words, e.g.
    ``module.sig_enforce=1``). Later words win for most parameters, so ``append`` can also override."""
    words = append.split()
    bad = [w for w in words if any(c in w for c in "\"'\\") or not w.isprintable()]
    if bad:
        raise LabError(f"kernel command-line words must be printable, without quotes or backslashes: {bad}")
    return " ".join([KERNEL_CMDLINE, *words])


def boot_timeout(accel: str) -> float:
    """Seconds a boot may take to ssh-ready ($KERNELOPS_LAB_BOOT_TIMEOUT overrides)."""
    return float(os.environ.get("KERNELOPS_LAB_BOOT_TIMEOUT") or (180 if accel == "kvm" else 420))


def run_dir() -> Path:
    """Per-instance state: pidfile, overlay, console log, JSON record."""
    path = cache_dir() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_tail(path: Path, lines: int = CONSOLE_TAIL) -> str:
    """The last ``lines`` lines of a log file, or a note that it is empty."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no {path.name})"
    text = text.replace("\r", "")
    return f"--- last {lines} lines of {path} ---\n{tail(text, lines)}" if text.strip() else f"({path} is empty)"


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the thread that started it dies (even on SIGKILL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def qemu_argv(kernel: KernelInfo, initramfs: Path, *, accel: str, append: str, drive: Path | None = None,
              port: int | None = None, console: Path, pidfile: Path | None = None, memory: int = 1024,
              smp: int = 2, reboot: bool = True) -> list[str]:
    """The QEMU command line of a lab guest."""
    # One vCPU under TCG: with two (MTTCG) a sid 7.2 guest hit a stale int3 of the kernel's own
    # live text patching on the other vCPU ("Oops: int3" in __schedule from
    # klp_complete_transition -> schedule_on_each_cpu) and panicked; with two vCPUs on one TCG
    # thread a loaded host gave soft lockups and 3-minute boots. One vCPU has neither, and leaves
    # the second host core to the controller.
    accel_arg = "tcg,thread=single" if accel == "tcg" else accel
    if accel == "tcg":
        smp = 1
    argv = [QEMU, "-nodefaults", "-display", "none", "-monitor", "none",
            "-accel", accel_arg, "-cpu", "host" if accel == "kvm" else "qemu64",
            "-m", str(memory), "-smp", str(smp),
            "-kernel", str(boot_image(kernel)), "-initrd", str(initramfs), "-append", append,
            "-serial", f"file:{console}", "-device", "virtio-rng-pci"]
    if drive is not None:
        argv += ["-drive", f"file={drive},if=virtio,format=qcow2,cache=unsafe"]
    if port is not None:
        argv += ["-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=net0"]
    else:
        argv += ["-nic", "none"]
    if pidfile is not None:
        argv += ["-pidfile", str(pidfile)]
    if not reboot:
        argv.append("-no-reboot")
    return argv


def start_qemu(argv: list[str], log_path: Path, *, detach: bool) -> subprocess.Popen:
    """Start QEMU in its own session; unless detached, it dies with the thread that started it."""
    if not run(["sh", "-c", f"command -v {QEMU}"], timeout=10, check=False).stdout.strip():
        raise LabError(f"QEMU missing: {QEMU} not found (install qemu-system-x86)")
    # PDEATHSIG fires when the *thread* that forked exits: only use it from the main thread
    guard = not detach and threading.current_thread() is threading.main_thread()
    with open(log_path, "wb") as out:
        # pylint: disable-next=subprocess-popen-preexec-fn,consider-using-with
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=c_env(), preexec_fn=_die_with_parent if guard else None)


def pid_alive(pid: int) -> bool:
    """True when ``pid`` runs and is a QEMU (not a recycled pid).

    Right after the fork the cmdline may still be empty: that counts as alive, so a
    starting VM of another process is never taken for a dead one.
    """
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and (not cmdline or b"qemu-system" in cmdline)


def kill_pid(pid: int, timeout: float = 15) -> None:
    """SIGTERM a QEMU, SIGKILL it if it does not go, wait until it is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not pid_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.05)
    if pid_alive(pid):
        raise LabError(f"QEMU pid {pid} survived SIGKILL")


def probe_kvm(kernel: KernelInfo, initramfs: Path) -> tuple[bool, str]:
    """Boot ``kernel`` to its initramfs under KVM with a timeout: does KVM really work here?"""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm missing or not accessible"
    console = run_dir() / "kvm-probe.console.log"
    console.write_text("", encoding="utf-8")
    argv = qemu_argv(kernel, initramfs, accel="kvm", append="console=ttyS0 klab.probe=1 panic=-1",
                     console=console, memory=256, smp=1, reboot=False)
    proc = start_qemu(argv, run_dir() / "kvm-probe.qemu.log", detach=False)
    try:
        def verdict() -> str | None:
            if "KLAB-PROBE-OK" in console.read_text(errors="replace"):
                return "ok"
            return "exited" if proc.poll() is not None else None
        try:
            result = wait_until("the KVM probe kernel to reach its initramfs", verdict, timeout=30, interval=0.2)
        except LabError:
            result = "hung"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    if result == "ok":
        return True, "kvm probe booted to initramfs"
    qlog = (run_dir() / "kvm-probe.qemu.log").read_text(errors="replace")
    return False, f"kvm probe {result}: {tail(qlog, 5)} {tail(console.read_text(errors='replace'), 3)}"


def choose_accel(kernel: KernelInfo, initramfs: Path) -> str:
    """``tcg`` or ``kvm``: $KERNELOPS_LAB_ACCEL, else the cached verdict of :func:`probe_kvm`."""
    forced = os.environ.get("KERNELOPS_LAB_ACCEL", "").strip()
    if forced in ("tcg", "kvm"):
        return forced
    verdict_file = cache_dir() / "kvm-probe.json"
    host = f"{os.uname().release} {_cpu_model()}"
    try:
        cached = json.loads(verdict_file.read_text(encoding="utf-8"))
        if cached.get("host") == host:
            return "kvm" if cached["kvm"] else "tcg"
    except (OSError, ValueError, KeyError):
        pass
    works, detail = probe_kvm(kernel, initramfs)
    verdict_file.write_text(json.dumps({"host": host, "kvm": works, "detail": detail}), encoding="utf-8")
    log(f"KVM probe: {'works' if works else 'not usable'} ({detail.strip()[:200]}); using {'kvm' if works else 'tcg'}")
    return "kvm" if works else "tcg"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@dataclasses.dataclass
class Instance:
    """What the cache remembers about a running VM (so ``labctl down`` finds it)."""

    name: str
    kernel: str
    release: str
    port: int
    pid: int
    accel: str
    overlay: str
    console: str
    key: str
    append: str = ""  # extra kernel command-line words (records of older labs have none)
    # QEMU runs with -no-reboot: a reboot inside the guest ends QEMU and VM.reboot starts it again
    reboot_exits: bool = False

    @staticmethod
    def path(name: str) -> Path:
        """The instance's JSON record."""
        return run_dir() / f"{name}.json"

    def save(self) -> None:
        """Write the record."""
        self.path(self.name).write_text(json.dumps(dataclasses.asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, name: str) -> Instance | None:
        """The record of ``name``, or None."""
        try:
            return cls(**json.loads(cls.path(name).read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    @classmethod
    def all(cls) -> list[Instance]:
        """Every recorded instance."""
        found = (cls.load(p.stem) for p in sorted(run_dir().glob("*.json")) if p.stem != "kvm-probe")
        return [inst for inst in found if inst is not None]


_LIVE: list[VM] = []
_HANDLERS_SET = False
# Where a process's lab time went, for every VM of it: kind -> [count, seconds] (VM.charge).
SPENT: dict[str, list] = {}


def _stop_all() -> None:
    for vm in list(_LIVE):
        try:
            vm.stop()
        except (LabError, OSError) as exc:
            log(f"stopping {vm.name} at exit: {exc}")


def _on_signal(signum: int, _frame: object) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


def _install_cleanup() -> None:
    """Stop this process's VMs at exit and on SIGTERM/SIGHUP (SIGINT unwinds through fixtures)."""
    global _HANDLERS_SET  # pylint: disable=global-statement
    if _HANDLERS_SET:
        return
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
    _HANDLERS_SET = True


class VM:
    """A booted lab guest; a context manager that stops it on exit."""

    def __init__(self, inst: Instance, *, owned: bool, proc: subprocess.Popen | None = None) -> None:
        self.inst = inst
        self._proc = proc
        self.name = inst.name
        self.kernel = inst.kernel
        self.port = inst.port
        self.key = Path(inst.key)
        self.console = Path(inst.console)
        self.patch_dir = PATCH_DIR
        self._release = inst.release
        self._owned = owned
        self._lifecycle = False  # a boot or reboot is running: its ssh time counts as its own
        digest = hashlib.sha256(f"{cache_dir()}/{inst.name}".encode()).hexdigest()[:12]
        self._control = f"/tmp/klab-{digest}.ssh"
        if owned:
            _install_cleanup()
            _LIVE.append(self)

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"VM({self.name!r}, kernel={self.kernel!r}, release={self._release!r}, port={self.port})"

    # -- properties -------------------------------------------------------------------
    @property
    def release(self) -> str:
        """``uname -r`` of the running guest."""
        return self._release

    @property
    def append(self) -> str:
        """The extra kernel command-line words this guest was booted with ("" for none)."""
        return self.inst.append

    @property
    def cmdline(self) -> str:
        """The whole kernel command line QEMU passed (what /proc/cmdline shows while no patch of
        ``cmdline_proc_show`` such as lab_a is live)."""
        return kernel_cmdline(self.inst.append)

    @property
    def ansible_vars(self) -> dict:
        """Host variables that let Ansible reach this guest."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "
                                        "-o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPersist=60s"),
        }

    def alive(self) -> bool:
        """True while the QEMU process runs."""
        if self._proc is not None:
            # right after the fork /proc/PID/cmdline may still be empty: ask the Popen
            return self._proc.poll() is None
        return pid_alive(self.inst.pid)

    def console_tail(self, lines: int = CONSOLE_TAIL) -> str:
        """The serial console's last lines (for error messages)."""
        return read_tail(self.console, lines)

    def panic_message(self) -> str | None:
        """The console from the first Oops or panic on, if the guest kernel crashed (it then hangs: panic=0)."""
        try:
            text = Path(self.console).read_text(errors="replace")
        except OSError:
            return None
        # Fatal lines only: "BUG: soft lockup" is a warning the guest survives.
        for marker in ("Kernel panic - not syncing", "Oops:"):
            index = text.find(marker)
            if index >= 0:
                start = text.rfind("\n", 0, index) + 1
                return text[start:start + 4000]
        return None

    def check_not_crashed(self) -> None:
        """Raise at once when the guest kernel crashed, instead of letting every command time out."""
        crash = self.panic_message()
        if crash:
            raise LabError(f"{self.name}: the guest kernel crashed ({self.inst.release}):\n{crash}")

    # -- ssh --------------------------------------------------------------------------
    def ssh_argv(self, *, master: bool = True) -> list[str]:
        """``ssh`` options for this guest, without the remote command."""
        argv = ["ssh", "-i", str(self.key), "-p", str(self.port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
                "-o", "ServerAliveCountMax=6"]
        if master:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}", "-o", "ControlPersist=300"]
        else:
            argv += ["-o", "ControlMaster=no", "-o", "ControlPath=none"]
        return argv + ["root@127.0.0.1"]

    @staticmethod
    def charge(kind: str, seconds: float) -> None:
        """Count ``seconds`` of lab time under ``kind`` (ssh, reboot, boot; the tests add theirs)."""
        entry = SPENT.setdefault(kind, [0, 0.0])
        entry[0] += 1
        entry[1] += seconds

    def ssh(self, cmd: str, check: bool = True, timeout: float = 120, input_data: str | bytes | None = None,
            master: bool = True) -> subprocess.CompletedProcess:
        """Run the shell command ``cmd`` in the guest as root; CompletedProcess with text output."""
        self.check_not_crashed()
        argv = self.ssh_argv(master=master) + ["--", cmd]
        text = not isinstance(input_data, bytes)
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, input=input_data, capture_output=True, text=text, timeout=timeout,
                                  env=c_env(), check=False)
        except subprocess.TimeoutExpired as exc:
            self.check_not_crashed()
            raise LabError(f"{self.name}: ssh command timed out after {timeout:.0f} s: {cmd}\n{self.console_tail(15)}") from exc
        finally:
            if not self._lifecycle:
                self.charge("ssh", time.monotonic() - started)
        if not text:
            proc = subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(errors="replace"),
                                               proc.stderr.decode(errors="replace"))
        if check and proc.returncode != 0:
            hint = "" if self.alive() else f"\nQEMU is not running any more.\n{self.console_tail()}"
            raise LabError(f"{self.name}: `{cmd}` failed (exit {proc.returncode})\nstdout: {tail(proc.stdout, 20)}\n"
                           f"stderr: {tail(proc.stderr, 20)}{hint}")
        return proc

    def _close_master(self) -> None:
        if os.path.exists(self._control):
            subprocess.run(["ssh", "-o", f"ControlPath={self._control}", "-O", "exit", "root@127.0.0.1"],
                           capture_output=True, timeout=15, check=False)
            try:
                os.unlink(self._control)
            except FileNotFoundError:
                pass  # the master removed its socket itself

    def boot_id(self, *, master: bool = True) -> str | None:
        """The guest's current boot id, or None while it does not answer."""
        try:
            proc = self.ssh("cat /proc/sys/kernel/random/boot_id", check=False, timeout=20, master=master)
        except LabError:
            return None
        out = proc.stdout.strip()
        return out if proc.returncode == 0 and len(out) == 36 else None

    def wait_for_ssh(self, *, timeout: float, previous_boot: str | None = None,
                     hung: Callable[[], bool] | None = None) -> str:
        """Wait until sshd answers with a boot id other than ``previous_boot``; return it.

        ``hung()`` true ends the wait early with :class:`WarmResetHung`."""
        def answered() -> str | None:
            if hung is not None and hung():
                raise WarmResetHung(f"{self.name}: the kernel hangs after a warm reset\n{self.console_tail(8)}")
            if not self.alive():
                raise LabError(f"{self.name}: QEMU exited while waiting for ssh (kernel {self.kernel})\n"
                               f"{read_tail(Path(self.inst.overlay).with_suffix('.qemu.log'), 10)}\n{self.console_tail()}")
            # Through the ControlMaster: the probe that gets in stays the master connection, and
            # the commands after it (uname, the patches) skip another sshd start and key exchange
            # (~1-3 s each under TCG while the guest still boots). The old master is closed
            # before every reboot, so a probe cannot reach the previous boot through it.
            boot = self.boot_id()
            return boot if boot and boot != previous_boot else None
        what = f"{self.name} ({self.kernel}) to answer ssh on port {self.port}" + (" after reboot" if previous_boot else "")
        return wait_until(what, answered, timeout=timeout, interval=0.25, on_timeout=self.console_tail)

    # -- lifecycle --------------------------------------------------------------------
    def reboot(self, timeout: float | None = None, *, append: str | None = None, kernel: str | None = None) -> str:
        """See :meth:`_reboot`; the time is counted under ``reboot`` (:data:`SPENT`)."""
        started, self._lifecycle = time.monotonic(), True
        try:
            return self._reboot(timeout, append=append, kernel=kernel)
        finally:
            self._lifecycle = False
            self.charge("reboot", time.monotonic() - started)

    def _reboot(self, timeout: float | None = None, *, append: str | None = None, kernel: str | None = None) -> str:
        """Reboot the guest and wait until ssh answers with a new boot id; return it.

        ``append=None`` (or the words it already has): ``systemctl reboot``, same command line.
        ``append="WORDS"``: a command line with other extra words (``""`` = none), which a reboot
        inside the guest cannot change: the guest is powered off cleanly and QEMU started again
        on the same disk overlay and port (a cold boot, so it takes a boot's time).
        ``kernel="trixie"``: boot the same disk with another lab kernel (built), as a host boots
        the kernel an update installed; that kernel's ``/lib/modules/RELEASE`` is put in the
        guest first (:meth:`install_modules`) if it is not there. Also a cold boot.
        A guest booted with ``reboot_exits`` (QEMU's ``-no-reboot``) always reboots itself with
        ``systemctl reboot``, QEMU ends at the reset and starts again on the same disk and port
        with the words asked for: one path for all three cases, and no warm reset (after which
        bookworm 6.1 under TCG hung in a soft lockup until the watchdog fallback power-cycled it).
        """
        if kernel is not None and kernel != self.kernel:
            self.install_modules(kernel)
            words = self.inst.append if append is None else append
            return self._restart(" ".join(words.split()), timeout, kernel=kernel)
        if self.inst.reboot_exits or (append is not None and append.split() != self.inst.append.split()):
            words = self.inst.append if append is None else append
            return self._restart(" ".join(words.split()), timeout)
        before = self.boot_id() or ""
        mark = self._console_size()
        self.ssh("systemctl reboot", check=False, timeout=30)
        self._close_master()
        try:
            boot = self.wait_for_ssh(timeout=timeout or boot_timeout(self.inst.accel), previous_boot=before,
                                     hung=lambda: self._soft_lockup_since(mark))
        except WarmResetHung as exc:
            # Seen on bookworm 6.1 under TCG while other guests ran: after "reboot: Restarting
            # system" the new kernel's init (swapper/0:1) never ran again ("soft lockup ... stuck
            # for 285s"). The disk is intact, so power-cycle the guest on the same overlay, as a
            # hardware watchdog would, and say so.
            log(f"{exc}\n{self.name}: power-cycling the guest on the same disk")
            return self._restart(self.inst.append, timeout, hard=True)
        self._release = self.ssh("uname -r").stdout.strip()
        return boot

    def _console_size(self) -> int:
        try:
            return Path(self.console).stat().st_size
        except OSError:
            return 0

    def _soft_lockup_since(self, offset: int) -> bool:
        """The console shows a soft lockup written after ``offset`` (a kernel that will not go on)."""
        try:
            with open(self.console, "rb") as handle:
                handle.seek(offset)
                return b"soft lockup - CPU#0 stuck for" in handle.read()
        except OSError:
            return False

    def _restart(self, append: str, timeout: float | None, *, hard: bool = False, kernel: str | None = None) -> str:
        """Power the guest off, start QEMU again with ``append`` on the same overlay and port.

        ``hard``: the guest does not answer; kill QEMU at once instead of asking for a poweroff.
        ``kernel``: start it with that lab kernel instead of the one it runs."""
        # pylint: disable-next=import-outside-toplevel
        from .guest import build_initramfs  # cached: returns the path at once
        # pylint: disable-next=import-outside-toplevel
        from .kernels import kernel_info
        cmdline = kernel_cmdline(append)  # validate before anything stops
        info = kernel_info(kernel or self.kernel)
        initramfs = build_initramfs(info)
        before = "" if hard else (self.boot_id() or "")
        if not hard:
            # With -no-reboot the guest's own reboot ends QEMU, and the next boot is a fresh
            # power-on. `--force`: no unit is stopped one by one (seconds per unit under TCG),
            # systemd-shutdown still ends every process, unmounts or remounts read-only and syncs
            # (systemctl(1) "reboot"); nothing of the lab's or the role's does work at stop
            # (the restore unit has no ExecStop, the journal is in memory), and `sync` first
            # writes the disk out before anything is killed.
            self.ssh("sync; systemctl %s" % ("reboot --force" if self.inst.reboot_exits else "poweroff"),
                     check=False, timeout=30)
        self._close_master()
        if not hard:
            try:
                wait_until(f"{self.name} to power off", lambda: not self.alive(), timeout=120, interval=0.2)
            except LabError:
                log(f"{self.name}: did not power off within 120 s; killing QEMU")
        self._kill_qemu()
        overlay = Path(self.inst.overlay)
        argv = qemu_argv(info, initramfs, accel=self.inst.accel, append=cmdline, drive=overlay, port=self.port,
                         console=self.console, pidfile=overlay.with_suffix(".pid"), reboot=not self.inst.reboot_exits)
        started = time.monotonic()
        self._proc = start_qemu(argv, overlay.with_suffix(".qemu.log"), detach=not self._owned)
        self.inst.pid = self._proc.pid
        self.inst.append = append
        self.kernel = self.inst.kernel = info.suite
        self.inst.release = info.release
        self.inst.save()
        boot = self.wait_for_ssh(timeout=timeout or boot_timeout(self.inst.accel), previous_boot=before)
        self._release = self.ssh("uname -r").stdout.strip()
        if self._release != info.release:
            raise LabError(f"{self.name}: guest runs {self._release} after the restart, expected {info.release}")
        log(f"{self.name}: restarted on {info.suite} {info.release} with extra kernel words {append!r} "
            f"(ssh after {time.monotonic() - started:.1f} s)")
        return boot

    def _kill_qemu(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=15)
        else:
            kill_pid(self.inst.pid)

    def stop(self) -> None:
        """Kill QEMU, delete the overlay and the record (idempotent)."""
        self._close_master()
        self._kill_qemu()
        overlay = Path(self.inst.overlay)
        for path in (overlay, overlay.with_suffix(".pid"), Instance.path(self.name)):
            if path.exists():
                path.unlink()
        if self in _LIVE:
            _LIVE.remove(self)

    def install_modules(self, kernel: str) -> str:
        """Make ``kernel`` an installed kernel of the guest, as its package would; return its release.

        The lab boots one guest image with each kernel given to QEMU (``-kernel``/``-initrd``,
        virtio and ext4 from the initramfs), so the image has no ``/lib/modules`` of its own. This
        puts ``/lib/modules/RELEASE`` with the kernel's module index files (``modules.*``) in the
        guest; the ``.ko`` tree itself stays on the host (hundreds of MB over ssh under TCG, and
        the guest loads no module from it). Kept across reboots (it is on the overlay).
        """
        # pylint: disable-next=import-outside-toplevel
        from .kernels import kernel_info
        info = kernel_info(kernel)
        where = f"/lib/modules/{info.release}"
        if self.ssh(f"test -f {where}/modules.dep", check=False).returncode == 0:
            return info.release
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(info.moddir.iterdir()):
                if path.name.startswith("modules.") and path.is_file() and not path.is_symlink():
                    tar.add(str(path), arcname=path.name)
        self.ssh(f"mkdir -p {where} && tar -C {where} -xf - --no-same-owner && sync", input_data=buf.getvalue(),
                 timeout=120)
        log(f"{self.name}: {where} installed ({kernel}, {len(buf.getvalue()) // 1024} KiB of index files)")
        return info.release

    def put_tree(self, src: Path, dest: str) -> None:
        """Copy the directory ``src`` to ``dest`` in the guest (tar over ssh)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(str(src), arcname=".")
        self.ssh(f"mkdir -p {dest} && tar -C {dest} -xf - && sync", input_data=buf.getvalue(), timeout=120)

    # -- effects ----------------------------------------------------------------------
    def live_effects(self) -> set[str]:
        """Ids of the test patches whose effect shows now (``klab/effects.py``'s EFFECTS)."""
        effects = load_effects()
        script = "; ".join(f"echo '@@klab-effect {eid}'; ( {cmd} ) 2>&1" for eid, (cmd, _marker) in effects.items())
        out = self.ssh(script, check=False, timeout=60).stdout
        sections: dict[str, str] = {}
        current = None
        for line in out.splitlines():
            if line.startswith("@@klab-effect "):
                current = line.split(" ", 1)[1].strip()
                sections[current] = ""
            elif current is not None:
                sections[current] += line + "\n"
        return {eid for eid, (_cmd, marker) in effects.items() if marker in sections.get(eid, "")}


def load_effects() -> dict[str, tuple[str, str]]:
    """``EFFECTS`` from ``lab/klab/effects.py`` (written with the test patches)."""
    try:
        from . import effects  # pylint: disable=import-outside-toplevel
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.endswith("effects"):
            raise LabError("lab/klab/effects.py does not exist yet: it comes with the test patches "
                           "(lab/patches/) and maps each effect id to (guest command, marker)") from exc
        raise
    table = getattr(effects, "EFFECTS", None)
    if not isinstance(table, dict):
        raise LabError("lab/klab/effects.py has no EFFECTS dict")
    return table


def reap_dead() -> list[str]:
    """Delete the records and overlays of VMs whose QEMU is gone (e.g. its test was SIGKILLed)."""
    reaped = []
    for inst in Instance.all():
        if pid_alive(inst.pid):
            continue
        overlay = Path(inst.overlay)
        for path in (overlay, overlay.with_suffix(".pid"), Instance.path(inst.name)):
            if path.exists():
                path.unlink()
        reaped.append(inst.name)
    return reaped


def pycache_install() -> tuple[str, str]:
    """(guest shell command, its stdin) installing ``payload_bytecode`` in a test guest: the module
    and its ``.pth`` line in Debian's python3 dist-packages, and the cache directory that turns it on."""
    site = "/usr/lib/python3/dist-packages"
    name = payload_bytecode.GUEST_NAME
    source = Path(payload_bytecode.__file__).read_text(encoding="utf-8")
    return (f"mkdir -p {payload_bytecode.CACHE} && cat > {site}/{name}.py && echo 'import {name}' > {site}/{name}.pth",
            source)


def boot_vm(kernel: KernelInfo, initramfs: Path, base_image: Path, key: Path, patches: Path | None, *,
            name: str, detach: bool, append: str = "", reboot_exits: bool = False, pycache: bool = False) -> VM:
    """Boot a guest of ``kernel`` on a fresh overlay of ``base_image``; wait for ssh; copy the patches in.

    ``append``: extra kernel command-line words after the lab's own (:func:`kernel_cmdline`).
    ``reboot_exits``: QEMU with ``-no-reboot`` (see :meth:`VM.reboot`); only for guests that are
    rebooted through :meth:`VM.reboot`, never by a playbook (nothing would start QEMU again).
    ``pycache``: the guest keeps the bytecode of what Ansible's modules import from their payload zips
    (``payload_bytecode``; for the test suite's guests, not for benchmarks, which time real starts).
    """
    cmdline = kernel_cmdline(append)
    for path in (boot_image(kernel), initramfs, base_image, key):
        ensure_readable(path)
    reap_dead()
    old = Instance.load(name)
    if old is not None:
        if pid_alive(old.pid):
            raise LabError(f"instance {name} is already running (pid {old.pid}); `labctl down --name {name}` first")
        Instance.path(name).unlink()
    rdir = run_dir()
    overlay = rdir / f"{name}.qcow2"
    console = rdir / f"{name}.console.log"
    pidfile = overlay.with_suffix(".pid")
    for path in (overlay, pidfile):
        if path.exists():
            path.unlink()
    console.write_text("", encoding="utf-8")
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base_image, overlay], timeout=60,
        what="qemu-img create (overlay)")
    accel = choose_accel(kernel, initramfs)
    port = free_port()
    argv = qemu_argv(kernel, initramfs, accel=accel, append=cmdline, drive=overlay, port=port,
                     console=console, pidfile=pidfile, reboot=not reboot_exits)
    started = time.monotonic()
    proc = start_qemu(argv, overlay.with_suffix(".qemu.log"), detach=detach)
    inst = Instance(name=name, kernel=kernel.suite, release=kernel.release, port=port, pid=proc.pid, accel=accel,
                    overlay=str(overlay), console=str(console), key=str(key), append=" ".join(append.split()),
                    reboot_exits=reboot_exits)
    inst.save()
    vm = VM(inst, owned=not detach, proc=proc)
    vm._lifecycle = True  # pylint: disable=protected-access  # its ssh time is the boot's
    try:
        vm.wait_for_ssh(timeout=boot_timeout(accel))
        booted = time.monotonic() - started
        install, source = pycache_install() if pycache else ("true", None)
        release = vm.ssh(f"{install} && uname -r", input_data=source).stdout.strip()
        if release != kernel.release:
            raise LabError(f"{name}: guest runs {release}, expected {kernel.release}")
        if patches is not None:
            vm.put_tree(patches, PATCH_DIR)
        VM.charge("boot", time.monotonic() - started)
        vm._lifecycle = False  # pylint: disable=protected-access
        log(f"{name}: {kernel.suite} {release} up on port {port} ({accel}, ssh after {booted:.1f} s, "
            f"ready after {time.monotonic() - started:.1f} s)" + (f", extra kernel words {append!r}" if append else ""))
    except BaseException:
        vm.stop()
        raise
    return vm


def attach(name: str) -> VM:
    """The running VM recorded as ``name`` (for ``labctl ssh``/``down``)."""
    inst = Instance.load(name)
    if inst is None:
        raise LabError(f"no lab instance named {name}")
    return VM(inst, owned=False)
