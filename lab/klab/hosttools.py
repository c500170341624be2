# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Install the host tools the lab needs (CI runs on a fresh machine with nothing installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

from .util import LabError, log, run

# command (or absolute file) that proves the package is there -> Debian package
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "modprobe": "kmod",
    "depmod": "kmod",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "cpio": "cpio",
    "xz": "xz-utils",
    "zstd": "zstd",
    "unshare": "util-linux",
    "dpkg-deb": "dpkg",
    "apt-get": "apt",
}
# busybox-static, not the dynamic busybox: it goes into an initramfs without libc
BUSYBOX = "/bin/busybox"

_LOCK = threading.Lock()
_CHECKED = False


def _busybox_is_static() -> bool:
    if not os.path.exists(BUSYBOX):
        return False
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True,
                          text=True, timeout=30, check=False)
    return proc.returncode == 0 and "install ok installed" in proc.stdout


def missing_host_packages() -> list[str]:
    """Debian packages the lab needs that are not installed on this host."""
    missing = sorted({pkg for cmd, pkg in HOST_TOOLS.items() if shutil.which(cmd) is None})
    if not _busybox_is_static():
        missing.append("busybox-static")
    return missing


def ensure_host_tools() -> None:
    """Check for the host tools and ``apt-get install -y`` the missing ones (``apt-get update`` once first)."""
    global _CHECKED  # pylint: disable=global-statement
    with _LOCK:
        if _CHECKED:
            return
        missing = missing_host_packages()
        if missing:
            if os.geteuid() != 0:
                raise LabError(f"host tools missing and not root to install them: {' '.join(missing)}")
            log(f"installing host tools: {' '.join(missing)}")
            # apt-get update may complain about third-party sources the host has; the
            # install below is what decides whether the tools are there.
            upd = run(["apt-get", "update", "-q"], timeout=600, check=False, what="apt-get update")
            proc = run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout=1200,
                       check=False, what="apt-get install")
            if proc.returncode != 0:
                raise LabError("cannot install host tools (Debian archive unreachable?): "
                               f"apt-get install {' '.join(missing)} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
                               f"\napt-get update said:\n{upd.stderr[-800:]}")
            still = missing_host_packages()
            if still:
                raise LabError(f"host tools still missing after apt-get install: {' '.join(still)}")
        _CHECKED = True
