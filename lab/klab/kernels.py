# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fetch Debian kernels (image + matching headers) as .deb without touching the host's apt.

Each suite gets its own apt state directory in the cache (sources list, lists, status), so
``apt-get download`` resolves that suite's packages while the host's apt config stays as it is.
Package names are resolved at build time from the ``linux-image-amd64`` and
``linux-headers-amd64`` meta packages (docs/developer.md §7); nothing is hard-coded.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from pathlib import Path

from .util import LabError, cache_dir, fresh_dir, is_built, log, mark_built, mirror, read_stamp, run

# packages that make up a kernel: sid's 7.x splits the image into linux-binary-KVER
# (vmlinuz) and linux-modules-KVER (docs/developer.md §9.1)
IMAGE_PACKAGE = re.compile(r"^linux-(image|binary|modules)-[0-9]")
HEADER_PACKAGE = re.compile(r"^linux-(headers|kbuild)-[0-9]")
# the compiler the headers were built for (gcc-12 for 6.1, gcc-14 for 6.12, gcc-16 for 7.x)
COMPILER_PACKAGE = re.compile(r"^gcc-[0-9]+(-for-host)?$")
# 6.1's headers name it through linux-compiler-gcc-12-x86
COMPILER_META = re.compile(r"^linux-compiler-(gcc-[0-9]+)-")
UNREACHABLE = ("Could not resolve", "Failed to fetch", "Unable to connect", "Connection failed",
               "Temporary failure", "Could not connect", "No route to host", "timed out")


@dataclasses.dataclass(frozen=True)
class KernelInfo:
    """Where one extracted Debian kernel lives in the cache."""

    suite: str
    release: str          # uname -r, e.g. 6.1.0-56-amd64
    root: Path            # dpkg-deb -x of all its packages
    vmlinuz: Path
    moddir: Path          # ROOT/lib/modules/RELEASE (or usr/lib/modules on usrmerge)
    headers: str          # /usr/src/linux-headers-RELEASE (path inside a chroot)
    header_debs: tuple[Path, ...]
    compiler: str         # the gcc package the headers expect


class AptState:
    """apt-get/apt-cache bound to a private state directory for one suite."""

    def __init__(self, suite: str) -> None:
        self.suite = suite
        self.dir = cache_dir() / "apt" / suite
        for sub in ("lists/partial", "archives/partial"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "sources.list").write_text(f"deb {mirror()} {suite} main\n", encoding="utf-8")
        (self.dir / "status").touch()

    def options(self) -> list[str]:
        """``-o`` options that point apt at this state only."""
        opts = {
            "Dir::Etc::SourceList": self.dir / "sources.list",
            "Dir::Etc::SourceParts": self.dir / "sources.list.d",
            "Dir::State::Lists": self.dir / "lists",
            "Dir::State::status": self.dir / "status",
            "Dir::Cache": self.dir / "cache",
            "Dir::Cache::archives": self.dir / "archives",
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "APT::Sandbox::User": "root",
            "Acquire::Retries": "3",
        }
        out: list[str] = []
        for key, value in opts.items():
            out += ["-o", f"{key}={value}"]
        return out

    def update(self) -> None:
        """``apt-get update`` of this suite; say clearly when the archive is unreachable."""
        proc = run(["apt-get", *self.options(), "update"], timeout=600, check=False, what=f"apt-get update ({self.suite})")
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("E:", "W:", "Err:"))]
        if proc.returncode != 0 or any(word in ln for ln in errors for word in UNREACHABLE):
            raise LabError(f"Debian archive unreachable: apt-get update of {mirror()} {self.suite} failed:\n"
                           + "\n".join(errors[-8:] or (proc.stdout + proc.stderr).splitlines()[-8:]))

    def depends(self, package: str) -> list[str]:
        """Direct ``Depends``/``PreDepends`` of ``package``: the first of each alternative group.

        In ``apt-cache depends`` output a leading ``|`` marks an alternative that another
        one follows (``|Depends: A`` then ``Depends: B`` is ``A | B``); virtual names
        (``<...>``) are dropped.
        """
        proc = run(["apt-cache", *self.options(), "depends", "--no-recommends", "--no-suggests", "--no-conflicts",
                    "--no-breaks", "--no-replaces", "--no-enhances", package], timeout=120, what=f"apt-cache depends {package}")
        names = []
        in_group = False
        for line in proc.stdout.splitlines():
            match = re.match(r"^\s*(\|?)(?:Pre)?Depends:\s+(\S+)", line)
            if not match:
                continue
            first = not in_group
            in_group = match.group(1) == "|"
            if first and not match.group(2).startswith("<"):
                names.append(match.group(2).split(":")[0])
        return names

    def download(self, packages: list[str], dest: Path) -> list[Path]:
        """``apt-get download`` into ``dest``; returns the .deb files."""
        dest.mkdir(parents=True, exist_ok=True)
        proc = run(["apt-get", *self.options(), "download", *packages], cwd=dest, timeout=1200, check=False,
                   what=f"apt-get download ({self.suite})")
        if proc.returncode != 0:
            text = proc.stdout + proc.stderr
            cause = "Debian archive unreachable: " if any(w in text for w in UNREACHABLE) else ""
            raise LabError(f"{cause}apt-get download {' '.join(packages)} failed:\n{text[-1500:]}")
        debs = []
        for pkg in packages:
            found = sorted(dest.glob(f"{pkg}_*.deb"))
            if not found:
                raise LabError(f"apt-get download {pkg}: no .deb appeared in {dest}")
            debs.append(found[-1])
        return debs


def resolve_kernel_packages(apt: AptState) -> tuple[list[str], list[str], str]:
    """Walk the meta packages' dependencies: (image packages, header packages, compiler)."""
    def walk(start: str, wanted: re.Pattern) -> tuple[list[str], set[str]]:
        seen: list[str] = []
        compilers: set[str] = set()
        todo = [start]
        while todo:
            pkg = todo.pop(0)
            for dep in apt.depends(pkg):
                meta = COMPILER_META.match(dep)
                if COMPILER_PACKAGE.match(dep) or meta:
                    compilers.add(meta.group(1) if meta else dep)
                elif wanted.match(dep) and dep not in seen:
                    seen.append(dep)
                    todo.append(dep)
        return seen, compilers

    image = walk("linux-image-amd64", IMAGE_PACKAGE)[0]
    headers, compilers = walk("linux-headers-amd64", HEADER_PACKAGE)
    if not image or not headers:
        raise LabError(f"{apt.suite}: linux-image-amd64/linux-headers-amd64 resolve to nothing (image={image}, headers={headers})")
    # prefer the plain gcc-NN name: it is what the headers' Makefile calls
    compiler = sorted(compilers, key=len)[0] if compilers else "gcc"
    return image, headers, compiler


def release_of(image_packages: list[str]) -> str:
    """uname -r from ``linux-image-RELEASE`` (the package that is not -dbg/-unsigned)."""
    for pkg in image_packages:
        match = re.match(r"^linux-image-(\d.*-amd64)$", pkg)
        if match:
            return match.group(1)
    raise LabError(f"no linux-image-RELEASE-amd64 among {image_packages}")


def find_kernel_files(root: Path, release: str) -> tuple[Path, Path]:
    """(vmlinuz, modules dir) in an extracted kernel; sid keeps both under usr/lib/modules."""
    candidates = [root / "boot" / f"vmlinuz-{release}", root / "usr/lib/modules" / release / "vmlinuz",
                  root / "lib/modules" / release / "vmlinuz"]
    vmlinuz = next((c for c in candidates if c.is_file()), None)
    moddir = next((d for d in (root / "lib/modules" / release, root / "usr/lib/modules" / release)
                   if (d / "kernel").is_dir()), None)
    if vmlinuz is None or moddir is None:
        raise LabError(f"extracted kernel {release} in {root} lacks vmlinuz or modules (looked at {candidates})")
    return vmlinuz, moddir


def fetch_kernel(suite: str) -> KernelInfo:
    """Download and extract one suite's kernel (image, modules, headers); reused when cached."""
    root = cache_dir() / "kernels" / suite
    if is_built(root):
        return kernel_info(suite)
    log(f"{suite}: resolving kernel packages")
    apt = AptState(suite)
    apt.update()
    image, headers, compiler = resolve_kernel_packages(apt)
    release = release_of(image)
    debdir = fresh_dir(cache_dir() / "debs" / suite)
    log(f"{suite}: downloading {' '.join(image + headers)}")
    image_debs = apt.download(image, debdir)
    header_debs = apt.download(headers, debdir)
    fresh_dir(root)
    for deb in image_debs + header_debs:
        run(["dpkg-deb", "-x", deb, root], timeout=600, what=f"dpkg-deb -x {deb.name}")
    # kmod on the host looks below ROOT/lib/modules; on usrmerge debs that is usr/lib
    if not (root / "lib").exists() and (root / "usr/lib/modules").is_dir():
        (root / "lib").symlink_to("usr/lib")
    vmlinuz, moddir = find_kernel_files(root, release)
    run(["depmod", "-b", root, release], timeout=600, what=f"depmod {release}")
    stamp = {
        "suite": suite, "release": release, "vmlinuz": str(vmlinuz.relative_to(root)),
        "moddir": str(moddir.relative_to(root)), "headers": f"/usr/src/linux-headers-{release}",
        "header_debs": [str(d.relative_to(cache_dir())) for d in header_debs], "compiler": compiler,
        "packages": image + headers,
    }
    mark_built(root, stamp)
    log(f"{suite}: kernel {release} extracted")
    return kernel_info(suite)


# decompressors for the bzImage payload, by magic (arch/x86/boot/header.S "payload")
PAYLOAD_TOOLS = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\x1f\x8b", "gzip"))
XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_note(elf: bytes) -> bool:
    """True when the ELF has the Xen PHYS32_ENTRY note QEMU needs to boot it directly (PVH)."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def extract_vmlinux(kernel: KernelInfo) -> Path | None:
    """The uncompressed kernel ELF out of the bzImage, for QEMU's direct PVH boot; None if unusable.

    Under TCG decompressing the kernel is slow: measured here, bookworm's xz bzImage took
    18-19 s to reach /init where the extracted ELF took 6-9 s; sid's zstd one 15-17 s vs 11-14 s.
    """
    out = kernel.root.parent / f"{kernel.suite}.vmlinux"
    stamp = {"release": kernel.release, "vmlinuz_size": kernel.vmlinuz.stat().st_size}
    if is_built(out, stamp):
        return out
    data = kernel.vmlinuz.read_bytes()
    if data[0x202:0x206] != b"HdrS":
        return None
    setup_sects = data[0x1F1] or 4
    start = (setup_sects + 1) * 512
    offset, length = struct.unpack_from("<II", data, 0x248)
    payload = data[start + offset:start + offset + length]
    tool = next((t for magic, t in PAYLOAD_TOOLS if payload.startswith(magic)), None)
    if tool is None:
        log(f"{kernel.suite}: unknown bzImage compression; booting the bzImage")
        return None
    # the payload ends with the 4-byte uncompressed size, which the decompressors reject
    size, = struct.unpack("<I", payload[-4:])
    proc = run([tool, "-dc"], input_data=payload[:-4], timeout=300, check=False, what=f"{tool} -d (vmlinux)")
    elf = proc.stdout
    if proc.returncode != 0 or len(elf) != size or not has_pvh_note(elf):
        log(f"{kernel.suite}: no PVH-bootable vmlinux in the bzImage; booting the bzImage")
        return None
    out.write_bytes(elf)
    mark_built(out, stamp)
    return out


def boot_image(kernel: KernelInfo) -> Path:
    """What QEMU's -kernel gets: the extracted vmlinux when there is one, else the bzImage."""
    vmlinux = kernel.root.parent / f"{kernel.suite}.vmlinux"
    return vmlinux if is_built(vmlinux) else kernel.vmlinuz


def kernel_info(suite: str) -> KernelInfo:
    """The cached kernel of ``suite`` (after :func:`fetch_kernel`)."""
    root = cache_dir() / "kernels" / suite
    if not is_built(root):
        raise LabError(f"kernel {suite} is not built yet: run `labctl build {suite}`")
    stamp = read_stamp(root)
    return KernelInfo(suite=suite, release=stamp["release"], root=root, vmlinuz=root / stamp["vmlinuz"],
                      moddir=root / stamp["moddir"], headers=stamp["headers"],
                      header_debs=tuple(cache_dir() / d for d in stamp["header_debs"]), compiler=stamp["compiler"])
