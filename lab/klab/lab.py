# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``Lab``: build everything a kernel needs (idempotent, cached) and boot guests of it."""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import itertools
import os
import shutil
import time
from pathlib import Path

from .chroot import build_patches
from .guest import build_guest_image, build_initramfs, guest_image_path, lab_keypair
from .hosttools import ensure_host_tools
from .kernels import KernelInfo, extract_vmlinux, fetch_kernel, kernel_info
from .qemu import VM, Instance, boot_vm, choose_accel
from .util import KERNELS, LabError, cache_dir, is_built, log

LAB_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PATCHES = LAB_DIR / "patches"
_BOOT_SERIAL = itertools.count(1)


def patches_source() -> Path | None:
    """Where the test patches' sources are: $KERNELOPS_LAB_PATCHES or ``lab/patches`` (None if no Makefile)."""
    src = Path(os.environ.get("KERNELOPS_LAB_PATCHES") or DEFAULT_PATCHES).resolve()
    return src if (src / "Makefile").is_file() or (src / "Kbuild").is_file() else None


class Lab:
    """The real-kernel lab. ``Lab().build(["sid"])`` then ``with Lab().boot("sid") as vm: ...``."""

    def __init__(self) -> None:
        self.cache = cache_dir()
        self.timings: dict[str, float] = {}

    @staticmethod
    def kernels() -> list[str]:
        """The kernel names the lab knows (Debian suites)."""
        return list(KERNELS)

    @staticmethod
    def check_names(kernels: list[str] | tuple[str, ...] | None) -> list[str]:
        """Validate kernel names; None or empty means all."""
        names = list(kernels or KERNELS)
        unknown = [k for k in names if k not in KERNELS]
        if unknown:
            raise LabError(f"unknown kernel(s) {', '.join(unknown)}; known: {', '.join(KERNELS)}")
        return names

    def release(self, kernel: str) -> str:
        """``uname -r`` of ``kernel`` (known once it was built)."""
        return kernel_info(kernel).release

    def _timed(self, what: str, func, *args):
        start = time.monotonic()
        result = func(*args)
        self.timings[what] = round(time.monotonic() - start, 1)
        return result

    def _build_kernel(self, suite: str) -> KernelInfo:
        kernel = self._timed(f"{suite}: fetch kernel", fetch_kernel, suite)
        self._timed(f"{suite}: initramfs", build_initramfs, kernel)
        self._timed(f"{suite}: vmlinux", extract_vmlinux, kernel)
        src = patches_source()
        if src is not None:
            self._timed(f"{suite}: chroot + patches", build_patches, kernel, src)
        return kernel

    def build(self, kernels: list[str] | tuple[str, ...] | None = None) -> Lab:
        """Fetch, extract and build everything ``kernels`` need; cached parts are reused."""
        names = self.check_names(kernels)
        with self._build_lock():
            return self._build_locked(names)

    @contextlib.contextmanager
    def _build_lock(self):
        """Several test sessions (and git worktrees) share one cache: one builder at a time."""
        with open(self.cache / ".build.lock", "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _build_locked(self, names: list[str]) -> Lab:
        start = time.monotonic()
        self._timed("host tools", ensure_host_tools)
        key = lab_keypair()
        if patches_source() is None:
            log(f"no test patches yet ({DEFAULT_PATCHES}/Makefile missing): building kernels and guest only")
        # downloads and debootstraps wait on the network, module builds on the CPU: run the
        # suites and the guest image side by side
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(names) + 1) as pool:
            guest = pool.submit(self._timed, "guest image", build_guest_image, key.with_suffix(".pub"))
            futures = {name: pool.submit(self._build_kernel, name) for name in names}
            errors = []
            for name, fut in [*futures.items(), ("guest", guest)]:
                try:
                    fut.result()
                except LabError as exc:
                    errors.append(f"{name}: {exc}")
        if errors:
            raise LabError("lab build failed:\n" + "\n".join(errors))
        first = kernel_info(names[0])
        choose_accel(first, build_initramfs(first))
        self.timings["build total"] = round(time.monotonic() - start, 1)
        return self

    def is_built(self, kernel: str) -> bool:
        """True when ``kernel`` and the guest image are in the cache."""
        src = patches_source()
        return (is_built(self.cache / "kernels" / kernel) and is_built(guest_image_path(lab_keypair().with_suffix(".pub")))
                and (src is None or is_built(self.cache / "patches" / kernel)))

    def boot(self, kernel: str, name: str | None = None, *, detach: bool = False, append: str = "",
             reboot_exits: bool = False, pycache: bool = False) -> VM:
        """Boot a fresh guest (new overlay) of ``kernel``; returns when ssh answers and the patches are in.

        ``append``: extra kernel command-line words, e.g. ``"module.sig_enforce=1"``; they follow
        the lab's own words (``klab.guest.KERNEL_CMDLINE``) and show in the guest's /proc/cmdline.
        ``reboot_exits``: QEMU ends when the guest reboots and ``VM.reboot`` starts it again (a
        fresh power-on each time; for the test suite's guests, which only ``VM.reboot`` reboots).
        ``pycache``: keep the bytecode of Ansible's module payloads in the guest (``klab/payload_bytecode.py``:
        module starts 2-3 s shorter under TCG); for test guests, never for benchmarks.
        """
        name = name or f"{kernel}-{os.getpid()}-{next(_BOOT_SERIAL)}"
        names = self.check_names([kernel])
        patches = self.cache / "patches" / kernel
        snapshot = self.cache / "run" / f"{name}.patches"
        with self._build_lock():
            self._build_locked(names)  # idempotent and cheap when cached
            # The guest gets the patches a minute later, after it booted: copy them now, under
            # the lock, so another session rebuilding them meanwhile cannot hand it half a set.
            if snapshot.exists():
                shutil.rmtree(snapshot)
            if patches.is_dir():
                shutil.copytree(patches, snapshot, symlinks=True)
        info = kernel_info(kernel)
        key = lab_keypair()
        try:
            return boot_vm(info, build_initramfs(info), guest_image_path(key.with_suffix(".pub")), key,
                           snapshot if snapshot.is_dir() else None, name=name, detach=detach, append=append,
                           reboot_exits=reboot_exits, pycache=pycache)
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)

    @staticmethod
    def instances() -> list[Instance]:
        """The VMs recorded in the cache (running or stale)."""
        return Instance.all()
