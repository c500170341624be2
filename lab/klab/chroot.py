# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Per-suite build chroots and out-of-tree module builds against a Debian kernel's headers.

A Debian headers package is not usable in place: its Makefile includes
``/usr/src/linux-headers-RELEASE-common/Makefile`` by absolute path, and trixie/sid's kbuild
tools need that suite's glibc and compiler (docs/developer.md §9.1). So every suite, bookworm
included, gets a small minbase chroot with make, libelf-dev, kmod and the compiler the
headers name, and the headers are installed into it with ``dpkg --force-depends -i``.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from .kernels import KernelInfo
from .util import LabError, cache_dir, fresh_dir, is_built, log, mark_built, mirror, run

# linux-base: the headers' postinst calls its linux-run-hooks (6.12+)
BUILD_PACKAGES = ("make", "libelf-dev", "kmod", "libc6-dev", "linux-base")


def in_chroot(root: Path, argv: list[str], *, timeout: float, what: str, cwd: str = "/") -> str:
    """Run ``argv`` chrooted in ``root`` with its own /proc (7.x objtool reads /proc).

    ``unshare --mount-proc`` gives the command a private mount namespace, so the proc mount
    goes away with it and nothing is left mounted in the cache.
    """
    proc = run(["unshare", "--fork", "--pid", f"--mount-proc={root}/proc", "chroot", root,
                "/usr/bin/env", "-C", cwd, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *argv],
               timeout=timeout, what=what)
    return proc.stdout


def debootstrap(suite: str, root: Path, include: list[str], *, variant: str = "minbase") -> None:
    """``debootstrap --variant=minbase`` of ``suite`` into an empty ``root``."""
    args = ["debootstrap", f"--variant={variant}", "--arch=amd64", "--components=main"]
    if include:
        args.append("--include=" + ",".join(include))
    proc = run([*args, suite, root, mirror()], timeout=1800, check=False, what=f"debootstrap {suite}")
    if proc.returncode != 0:
        text = proc.stdout + proc.stderr
        cause = "Debian archive unreachable: " if "Failed getting release file" in text or "Couldn't download" in text else ""
        log_file = root / "debootstrap/debootstrap.log"
        extra = log_file.read_text(errors="replace")[-1500:] if log_file.exists() else ""
        raise LabError(f"{cause}debootstrap {suite} failed (exit {proc.returncode}):\n{text[-1500:]}\n{extra}")


def build_chroot(kernel: KernelInfo) -> Path:
    """The suite's build chroot with the kernel's headers installed; reused when cached."""
    root = cache_dir() / "chroots" / kernel.suite
    stamp = {"release": kernel.release, "compiler": kernel.compiler}
    if is_built(root, stamp):
        return root
    log(f"{kernel.suite}: building chroot (debootstrap minbase + {kernel.compiler})")
    fresh_dir(root)
    debootstrap(kernel.suite, root, [])
    in_chroot(root, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *BUILD_PACKAGES, kernel.compiler],
              timeout=1800, what=f"{kernel.suite}: apt-get install build tools")
    debs = []
    for deb in kernel.header_debs:
        shutil.copy2(deb, root / "tmp" / deb.name)
        debs.append(f"/tmp/{deb.name}")
    in_chroot(root, ["dpkg", "--force-depends", "-i", *debs], timeout=900, what=f"{kernel.suite}: install headers")
    in_chroot(root, ["apt-get", "clean"], timeout=120, what="apt-get clean")
    for deb in debs:
        (root / deb.lstrip("/")).unlink()
    if not (root / kernel.headers.lstrip("/") / "Makefile").is_file():
        raise LabError(f"{kernel.suite}: headers {kernel.headers} missing in chroot after dpkg -i")
    mark_built(root, stamp)
    log(f"{kernel.suite}: chroot ready")
    return root


def _kbuild_dirs(src: Path) -> list[Path]:
    """``src`` and every subdirectory with its own Makefile/Kbuild (e.g. ``v2/``)."""
    dirs = [src]
    for sub in sorted(p for p in src.rglob("*") if p.is_dir()):
        if (sub / "Makefile").is_file() or (sub / "Kbuild").is_file():
            dirs.append(sub)
    return dirs


def build_modules(kernel: KernelInfo, src_dir: Path, out_dir: Path) -> list[Path]:
    """Build the out-of-tree modules in ``src_dir`` against ``kernel``; .ko files land in ``out_dir``.

    Runs ``make -C /usr/src/linux-headers-RELEASE M=...`` inside the suite's chroot.
    Subdirectories with their own Makefile (``v2/``) that the top-level build did not
    descend into are built as modules directories of their own. The relative layout
    is kept: ``out_dir/v2/lab_a.ko``.
    """
    src_dir = Path(src_dir).resolve()
    out_dir = Path(out_dir)
    root = build_chroot(kernel)
    work = fresh_dir(root / "build" / out_dir.name)
    products = shutil.ignore_patterns("*.ko", "*.o", "*.mod", "*.mod.c", ".*.cmd", "modules.order", "Module.symvers")
    shutil.copytree(src_dir, work, dirs_exist_ok=True, ignore=products)
    inside = "/" + str(work.relative_to(root))
    for kdir in _kbuild_dirs(work):
        rel = kdir.relative_to(work)
        if rel != Path(".") and any(kdir.glob("*.ko")):
            continue
        where = f"{inside}/{rel}" if rel != Path(".") else inside
        # 6.12+ headers run pahole for BTF unless told not to (docs/developer.md §9.1)
        in_chroot(root, ["make", "-C", kernel.headers, f"M={where}", "CONFIG_DEBUG_INFO_BTF_MODULES=", "modules"],
                  timeout=900, what=f"{kernel.suite}: make M={src_dir / rel}")
    built = sorted(work.rglob("*.ko"))
    if not built:
        raise LabError(f"{kernel.suite}: building {src_dir} produced no .ko")
    fresh_dir(out_dir)
    outs = []
    for ko in built:
        dest = out_dir / ko.relative_to(work)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ko, dest)
        outs.append(dest)
    shutil.rmtree(work)
    return outs


def source_digest(src_dir: Path) -> str:
    """sha256 over the module sources (C, headers, Makefiles), not the build products."""
    digest = hashlib.sha256()
    for path in sorted(p for p in src_dir.rglob("*") if p.is_file()):
        if path.suffix in (".c", ".h") or path.name in ("Makefile", "Kbuild"):
            digest.update(str(path.relative_to(src_dir)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build_patches(kernel: KernelInfo, src_dir: Path) -> Path:
    """The test patches built for ``kernel`` in the cache; rebuilt when their sources change."""
    out = cache_dir() / "patches" / kernel.suite
    # The sources' digest, not their path: every git worktree of the repository shares this
    # cache, and a path in the stamp made each one rebuild (and delete) the others' modules.
    stamp = {"release": kernel.release, "digest": source_digest(src_dir)}
    if is_built(out, stamp):
        return out
    log(f"{kernel.suite}: building test patches from {src_dir}")
    build_modules(kernel, src_dir, out)
    mark_built(out, stamp)
    return out
