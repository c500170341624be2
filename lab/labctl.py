# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""labctl: build the lab and run detached lab VMs (molecule's create/destroy call this).

Run it as ``python3 lab/labctl.py``: the file has no shebang and is not executable, because
ansible-test's shebang check allows ``#!/usr/bin/env python`` only and Debian has no ``python``.

    labctl build [KERNEL...]            fetch kernels, build chroots, guest image, test patches
    labctl up KERNEL --name N [--append "WORDS"] [--pycache]
                                        boot a detached VM (extra kernel command-line words, e.g.
                                        module.sig_enforce=1; --pycache: a test guest that keeps the
                                        bytecode of Ansible's module payloads, klab/payload_bytecode.py);
                                        print molecule's instance config (JSON)
    labctl down --name N                stop it (idempotent)
    labctl ssh --name N -- CMD...       run a command in it
    labctl status                       list recorded VMs
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable-next=wrong-import-position
from klab import KERNELS, Lab, LabError, attach  # noqa: E402
# pylint: disable-next=wrong-import-position
from klab.qemu import Instance, pid_alive, reap_dead  # noqa: E402


def cmd_build(args: argparse.Namespace) -> int:
    """``labctl build``: print what was built and how long each part took."""
    lab = Lab().build(args.kernels or None)
    for kernel in args.kernels or KERNELS:
        print(f"{kernel}: {lab.release(kernel)}")
    for what, seconds in lab.timings.items():
        print(f"  {what}: {seconds} s", file=sys.stderr)
    return 0


def instance_config(vm) -> list[dict]:
    """Molecule's instance config for one VM."""
    return [{"instance": vm.name, "address": "127.0.0.1", "user": "root", "port": vm.port,
             "identity_file": str(vm.key)}]


def cmd_up(args: argparse.Namespace) -> int:
    """``labctl up``: boot detached (or reuse a running instance of that name, kernel and command line)."""
    old = Instance.load(args.name)
    append = " ".join(args.append.split())
    if old is not None and pid_alive(old.pid) and old.kernel == args.kernel and old.append == append:
        vm = attach(args.name)
    else:
        vm = Lab().boot(args.kernel, args.name, detach=True, append=append, pycache=args.pycache)
    print(json.dumps(instance_config(vm), indent=2))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    """``labctl down``: stop the instance; nothing to do is not an error."""
    inst = Instance.load(args.name)
    if inst is None:
        print(f"{args.name}: not running", file=sys.stderr)
        return 0
    attach(args.name).stop()
    print(f"{args.name}: stopped", file=sys.stderr)
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    """``labctl ssh``: run CMD in the guest, pass its output and exit status through."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise LabError("labctl ssh: no command given (labctl ssh --name N -- CMD)")
    vm = attach(args.name)
    proc = vm.ssh(" ".join(shlex.quote(c) for c in command) if len(command) > 1 else command[0],
                  check=False, timeout=args.timeout)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


def cmd_status(_args: argparse.Namespace) -> int:
    """``labctl status``: built kernels and recorded VMs."""
    lab = Lab()
    for kernel in KERNELS:
        state = f"built ({lab.release(kernel)})" if lab.is_built(kernel) else "not built"
        print(f"kernel {kernel}: {state}")
    for inst in Instance.all():
        state = "running" if pid_alive(inst.pid) else "dead"
        extra = f" append {inst.append!r}" if inst.append else ""
        print(f"vm {inst.name}: {inst.kernel} {inst.release} port {inst.port} pid {inst.pid} {inst.accel} {state}{extra}")
    return 0


def cmd_reap(_args: argparse.Namespace) -> int:
    """``labctl reap``: stop every recorded VM and forget the dead ones (e.g. after a crashed run)."""
    for inst in Instance.all():
        if pid_alive(inst.pid):
            attach(inst.name).stop()
            print(f"{inst.name}: stopped", file=sys.stderr)
    for name in reap_dead():
        print(f"{name}: was dead, record removed", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser."""
    top = argparse.ArgumentParser(prog="labctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build kernels, chroots, guest image and test patches")
    build.add_argument("kernels", nargs="*", choices=[*KERNELS, []], metavar="KERNEL")
    build.set_defaults(func=cmd_build)
    up_ = sub.add_parser("up", help="boot a detached VM and print molecule's instance config")
    up_.add_argument("kernel", choices=KERNELS)
    up_.add_argument("--name", required=True)
    up_.add_argument("--append", default="", metavar="WORDS",
                     help="extra kernel command-line words, e.g. 'module.sig_enforce=1' (quote several)")
    up_.add_argument("--pycache", action="store_true",
                     help="keep the bytecode of Ansible's module payloads in the guest (test guests; not for timing)")
    up_.set_defaults(func=cmd_up)
    down = sub.add_parser("down", help="stop a VM (idempotent)")
    down.add_argument("--name", required=True)
    down.set_defaults(func=cmd_down)
    ssh = sub.add_parser("ssh", help="run a command in a VM")
    ssh.add_argument("--name", required=True)
    ssh.add_argument("--timeout", type=float, default=600)
    ssh.add_argument("command", nargs=argparse.REMAINDER)
    ssh.set_defaults(func=cmd_ssh)
    status = sub.add_parser("status", help="built kernels and recorded VMs")
    status.set_defaults(func=cmd_status)
    reap = sub.add_parser("reap", help="stop every recorded VM")
    reap.set_defaults(func=cmd_reap)
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        print(f"labctl: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
