# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The guest: one bookworm root filesystem image for all kernels, and a small initramfs per kernel.

The guest is a real systemd system Ansible can drive over SSH and that survives reboots:
a debootstrap minbase with systemd-sysv, udev, openssh-server, python3, kmod and iproute2,
turned into an ext4 image with ``mkfs.ext4 -d`` (no loop mounts). Each VM boots a qcow2
overlay of it. The kernel comes with ``-kernel``; its initramfs loads that kernel's virtio
and ext4 modules and ``switch_root``s to the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

from .chroot import debootstrap
from .hosttools import BUSYBOX
from .kernels import KernelInfo
from .util import LabError, cache_dir, fresh_dir, is_built, log, mark_built, run

GUEST_SUITE = "bookworm"
GUEST_PACKAGES = ["systemd-sysv", "udev", "openssh-server", "python3", "kmod", "iproute2", "procps"]
GUEST_IMAGE_SIZE = "3G"
PATCH_DIR = "/opt/lab/patches"
# QEMU user-mode networking: the guest is always 10.0.2.15, gateway .2, DNS .3. A oneshot
# with ip(8) instead of systemd-networkd: networkd waits for udev to initialise the link,
# which put ~2.5 s of udev and networkd on sshd's critical chain under TCG (measured). One
# `ip -batch` instead of four ip commands: each exec costs ~0.5-1 s under TCG (measured).
NETWORK_BATCH = """link set lo up
link set eth0 up
addr replace 10.0.2.15/24 dev eth0
route replace default via 10.0.2.2
"""
NETWORK_UNIT = """[Unit]
Description=klab: static address for QEMU user-mode networking
DefaultDependencies=no
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip -batch /etc/klab/network.ip

[Install]
WantedBy=multi-user.target
"""
# Units that only cost boot time in a throwaway VM. Under TCG with one vCPU every unit costs
# CPU the others wait for (bookworm 6.1, loaded host: 63 s of userspace before, 9 s after).
# - no timers, network-online waits, getty on tty1 or ttyS0 (nobody logs in on a console);
# - no udev: /dev comes from devtmpfs, the initramfs loaded the only modules the guest needs
#   and nothing in the guest waits for a device unit (root is mounted by the kernel, `rw`);
#   udev-trigger, udevd and dev-vda.device were 20-40 s of the boot;
# - no utmp, sysusers (the users exist since the image build), static /dev nodes,
#   remount-fs (the kernel mounted / read-write), user-sessions (see TMPFILES_MASKED),
#   journal flush and audit socket: journald stays (tests read `journalctl -u`), in memory
#   only (Storage=volatile), so a flush to /var has nothing to do.
MASKED_UNITS = [
    "systemd-networkd-wait-online.service", "apt-daily.timer", "apt-daily-upgrade.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer", "man-db.timer", "dpkg-db-backup.timer",
    "systemd-timesyncd.service", "getty@tty1.service", "systemd-pstore.service", "systemd-modules-load.service",
    "systemd-random-seed.service", "kmod-static-nodes.service", "systemd-hwdb-update.service",
    "getty-static.service", "modprobe@.service", "dev-hugepages.mount", "systemd-udev-settle.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "serial-getty@.service", "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service", "systemd-sysusers.service", "systemd-tmpfiles-setup-dev.service",
    "systemd-journal-flush.service", "systemd-user-sessions.service", "systemd-remount-fs.service",
    "systemd-journald-audit.socket",
]
# systemd runs every generator before it loads a unit (~11 s of a loaded bookworm boot under
# TCG). None has work here: no fstab entry needs a unit (root is mounted), no GPT, no
# cryptsetup/verity/integrity, no SysV-only service, no console getty. Masked by a /dev/null
# link in /etc/systemd/system-generators (systemd.generator(7)).
MASKED_GENERATORS = [
    "systemd-cryptsetup-generator", "systemd-debug-generator", "systemd-fstab-generator",
    "systemd-getty-generator", "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator", "systemd-rc-local-generator", "systemd-run-generator",
    "systemd-system-update-generator", "systemd-sysv-generator", "systemd-veritysetup-generator",
]
# tmpfiles creates /run/nologin at boot and systemd-user-sessions removes it; with the latter
# masked, the former is masked too (tmpfiles.d(5): a /dev/null link in /etc masks a file).
TMPFILES_MASKED = ["systemd-nologin.conf"]
# sshd's unit runs `sshd -t` before sshd (another sshd start on sshd's critical chain under
# TCG); the lab writes sshd's config once at image build, so the check has nothing to find.
SSH_DROPIN = "[Service]\nExecStartPre=\n"
# module -> the config option that builds it; a module the kernel has built in (=y, e.g.
# VIRTIO_PCI on 7.x) needs no insmod. None: optional, skipped when absent.
INITRAMFS_MODULES = {
    "virtio_pci": "CONFIG_VIRTIO_PCI", "virtio_blk": "CONFIG_VIRTIO_BLK", "virtio_net": "CONFIG_VIRTIO_NET",
    "virtio_rng": None, "crc32c_generic": None, "ext4": "CONFIG_EXT4_FS",
}
KERNEL_CMDLINE = ("console=ttyS0 root=/dev/vda rw quiet panic=0 fsck.mode=skip net.ifnames=0 "
                  "systemd.show_status=false mitigations=off")


def lab_keypair() -> Path:
    """The lab's SSH private key (ed25519, no passphrase), generated into the cache once."""
    key = cache_dir() / "ssh" / "id_ed25519"
    if not key.exists() or not key.with_suffix(".pub").exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        for old in (key, key.with_suffix(".pub")):
            if old.exists():
                old.unlink()
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kernelops-livepatch-lab", "-f", key],
            timeout=60, what="ssh-keygen (lab key)")
    key.chmod(0o600)
    return key


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _link_null(path: Path) -> None:
    """``path`` -> /dev/null: how systemd and tmpfiles.d are told to skip a file of /lib."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to("/dev/null")


def configure_guest(root: Path, pubkey: str) -> None:
    """Make the debootstrapped tree boot fast into sshd with the lab key."""
    _write(root / "etc/hostname", "klab\n")
    _write(root / "etc/hosts", "127.0.0.1 localhost\n127.0.1.1 klab\n")
    _write(root / "etc/fstab", "/dev/vda / ext4 rw,noatime 0 0\n")
    _write(root / "etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    _write(resolv, "nameserver 10.0.2.3\n")
    ssh_dir = root / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(ssh_dir / "authorized_keys", pubkey, 0o600)
    _write(root / "etc/ssh/sshd_config.d/klab.conf",
           "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUseDNS no\nMaxStartups 50\n")
    if not list((root / "etc/ssh").glob("ssh_host_*_key")):
        run(["ssh-keygen", "-A", "-f", root], timeout=120, what="ssh-keygen -A (guest host keys)")
    _write(root / "etc/klab/network.ip", NETWORK_BATCH)
    _write(root / "etc/systemd/system/klab-network.service", NETWORK_UNIT)
    _write(root / "etc/systemd/system/ssh.service.d/klab.conf", SSH_DROPIN)
    for name in MASKED_GENERATORS:
        _link_null(root / "etc/systemd/system-generators" / name)
    for name in TMPFILES_MASKED:
        _link_null(root / "etc/tmpfiles.d" / name)
    _write(root / "etc/systemd/journald.conf.d/klab.conf", "[Journal]\nStorage=volatile\n")
    run(["systemctl", f"--root={root}", "enable", "klab-network.service"], timeout=60, what="enable klab-network")
    run(["systemctl", f"--root={root}", "mask", *MASKED_UNITS], timeout=60, what="mask units")
    run(["systemctl", f"--root={root}", "set-default", "multi-user.target"], timeout=60, what="set-default")
    (root / PATCH_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)


def guest_image_stamp(pubkey: str) -> dict:
    """What the guest image is built from: any change makes a new image."""
    return {"suite": GUEST_SUITE, "packages": GUEST_PACKAGES, "masked": MASKED_UNITS,
            "generators": MASKED_GENERATORS, "tmpfiles": TMPFILES_MASKED, "ssh": SSH_DROPIN,
            "key": hashlib.sha256(pubkey.encode()).hexdigest()[:16], "network": NETWORK_UNIT + NETWORK_BATCH,
            "format": 4}


def guest_image_path(pubkey_path: Path) -> Path:
    """The image for this lab's guest config: ``CACHE/guest/rootfs-DIGEST.img``.

    The name carries the stamp's digest, so a worktree with another guest config builds its own
    image beside this one instead of rewriting it: a running VM's overlay (and every restart of
    QEMU on it, ``VM.reboot``) reads its base image by path.
    """
    return _image_of(guest_image_stamp(pubkey_path.read_text(encoding="utf-8")))


def _image_of(stamp: dict) -> Path:
    digest = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "guest" / f"rootfs-{digest}.img"


def build_guest_image(pubkey_path: Path) -> Path:
    """The guest's raw ext4 image (read-only base of every VM's overlay); reused when cached."""
    pubkey = pubkey_path.read_text(encoding="utf-8")
    stamp = guest_image_stamp(pubkey)
    image = _image_of(stamp)
    if is_built(image, stamp):
        return image
    log(f"guest: debootstrap {GUEST_SUITE} ({', '.join(GUEST_PACKAGES)})")
    root = fresh_dir(cache_dir() / "guest" / "rootfs")
    debootstrap(GUEST_SUITE, root, GUEST_PACKAGES)
    configure_guest(root, pubkey)
    for cached in (root / "var/cache/apt/archives").glob("*.deb"):
        cached.unlink()
    log("guest: mkfs.ext4 -d")
    image.parent.mkdir(parents=True, exist_ok=True)
    if image.exists():
        image.unlink()
    run(["mkfs.ext4", "-q", "-F", "-L", "klabroot", "-m", "0", "-d", root, image, GUEST_IMAGE_SIZE],
        timeout=900, what="mkfs.ext4 -d (guest image)")
    shutil.rmtree(root)
    mark_built(image, stamp)
    log("guest: image ready")
    return image


def initramfs_module_list(kernel: KernelInfo) -> list[Path]:
    """The .ko files the initramfs loads, in dependency order (``modprobe --show-depends``)."""
    ordered: list[Path] = []
    config = kernel_config(kernel)
    for name, option in INITRAMFS_MODULES.items():
        proc = run(["modprobe", "-d", kernel.root, "-S", kernel.release, "--show-depends", name],
                   timeout=60, check=False, what=f"modprobe --show-depends {name}")
        lines = proc.stdout.splitlines()
        if proc.returncode != 0 or not lines:
            if option is not None and config.get(option) != "y":
                raise LabError(f"{kernel.suite}: module {name} not found for {kernel.release} and {option} is "
                               f"{config.get(option, 'unset')}: {proc.stderr.strip()}")
            continue
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "insmod":
                path = Path(parts[1])
                if path not in ordered:
                    ordered.append(path)
    return ordered


def kernel_config(kernel: KernelInfo) -> dict[str, str]:
    """The kernel's .config (from its headers package) as {CONFIG_X: value}."""
    path = kernel.root / kernel.headers.lstrip("/") / ".config"
    values = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def _uncompressed_module(src: Path, dest_dir: Path) -> str:
    """Copy ``src`` into ``dest_dir`` uncompressed (busybox insmod cannot read .ko.xz); return its name."""
    name = src.name
    for suffix, tool in ((".xz", "xz"), (".zst", "zstd"), (".gz", "gzip")):
        if name.endswith(".ko" + suffix):
            plain = name[: -len(suffix)]
            data = run([tool, "-dc", src], timeout=120, input_data=b"", what=f"{tool} -d {name}").stdout
            (dest_dir / plain).write_bytes(data)
            return plain
    shutil.copy2(src, dest_dir / name)
    return name


def init_script() -> Path:
    """The initramfs /init shipped beside this module."""
    return Path(__file__).with_name("initramfs-init.sh")


def build_initramfs(kernel: KernelInfo) -> Path:
    """A newc cpio with busybox-static, ``kernel``'s virtio/ext4 modules and /init."""
    out = cache_dir() / "initramfs" / f"{kernel.suite}.cpio"
    script = init_script().read_bytes()
    stamp = {"release": kernel.release, "init": hashlib.sha256(script).hexdigest(), "modules": INITRAMFS_MODULES}
    if is_built(out, stamp):
        return out
    tree = fresh_dir(cache_dir() / "initramfs" / f"{kernel.suite}.tree")
    for sub in ("bin", "dev", "proc", "sys", "newroot", "lib/modules"):
        (tree / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, tree / "bin/busybox")
    (tree / "bin/sh").symlink_to("busybox")
    (tree / "init").write_bytes(script)
    (tree / "init").chmod(0o755)
    names = [_uncompressed_module(ko, tree / "lib/modules") for ko in initramfs_module_list(kernel)]
    (tree / "modules.order").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    data = run(["cpio", "--quiet", "-o", "-H", "newc", "--owner=0:0"], cwd=tree, timeout=120,
               input_data=("\n".join(files) + "\n").encode(), what="cpio (initramfs)").stdout
    out.write_bytes(data)
    shutil.rmtree(tree)
    mark_built(out, stamp)
    log(f"{kernel.suite}: initramfs with {len(names)} modules ({len(data) // 1024} KiB)")
    return out


def ensure_readable(path: Path) -> None:
    """Fail clearly when a cached artefact vanished underneath a running lab."""
    if not os.access(path, os.R_OK):
        raise LabError(f"{path} is missing: run `labctl build`")
