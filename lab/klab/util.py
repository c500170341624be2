# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small helpers shared by the lab: running commands, waiting on state, cache markers.

Every wait in the lab goes through :func:`wait_until`: it polls an observable condition
and fails with a message that says what it waited for (like ``loop_until`` in the
kernel's ``tools/testing/selftests/livepatch/functions.sh``), never a blind sleep.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence, TypeVar

T = TypeVar("T")

KERNELS = ("bookworm", "trixie", "sid")
DEFAULT_CACHE = "~/.cache/kernelops-livepatch-lab"
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message names the cause."""


def log(msg: str) -> None:
    """Progress line on stderr (stdout of ``labctl up`` is reserved for JSON)."""
    stamp = time.strftime("%H:%M:%S")
    sys.stderr.write(f"[klab {stamp}] {msg}\n")
    sys.stderr.flush()


def cache_dir() -> Path:
    """``$KERNELOPS_LAB_CACHE`` or ``~/.cache/kernelops-livepatch-lab``."""
    path = Path(os.environ.get("KERNELOPS_LAB_CACHE") or DEFAULT_CACHE).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def mirror() -> str:
    """The Debian archive the lab fetches from (the one the host already uses)."""
    return os.environ.get("KERNELOPS_LAB_MIRROR", DEFAULT_MIRROR).rstrip("/")


def c_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for child commands: C locale, no debconf questions."""
    env = dict(os.environ)
    env.update({"LC_ALL": "C", "LANG": "C", "DEBIAN_FRONTEND": "noninteractive"})
    if extra:
        env.update(extra)
    return env


def tail(text: str, lines: int = 25) -> str:
    """Last ``lines`` lines of ``text``, for error messages."""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run(argv: Sequence[str | os.PathLike], *, timeout: float, cwd: str | os.PathLike | None = None,
        check: bool = True, input_data: bytes | str | None = None, env: Mapping[str, str] | None = None,
        what: str | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` (a list, never a shell string) with a timeout; fail with its output tail."""
    args = [str(a) for a in argv]
    text = not isinstance(input_data, bytes)
    try:
        proc = subprocess.run(args, cwd=cwd, input=input_data, capture_output=True, text=text,
                              timeout=timeout, env=c_env(env), check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{what or args[0]}: command not found: {args[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what or ' '.join(args)}: timed out after {timeout:.0f} s") from exc
    if check and proc.returncode != 0:
        out = proc.stdout if text else proc.stdout.decode(errors="replace")
        err = proc.stderr if text else proc.stderr.decode(errors="replace")
        raise LabError(f"{what or ' '.join(args)}: exit {proc.returncode}\n{tail(out + err)}")
    return proc


def wait_until(what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 0.05,
               on_timeout: Callable[[], str] | None = None) -> T:
    """Poll ``probe`` until it returns something truthy; return it, or fail naming ``what``.

    ``on_timeout`` may add context (e.g. the serial console's tail) to the failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise LabError(f"timed out after {timeout:.0f} s waiting for {what}" + (f"\n{extra}" if extra else ""))
        time.sleep(interval)


def marker(path: Path) -> Path:
    """The marker file that says ``path`` was completely built."""
    return path.parent / f".{path.name}.done"


def is_built(path: Path, stamp: dict | None = None) -> bool:
    """True when ``path``'s marker exists (and, if given, records the same ``stamp``)."""
    mark = marker(path)
    if not mark.exists() or not path.exists():
        return False
    if stamp is None:
        return True
    try:
        return json.loads(mark.read_text(encoding="utf-8")) == stamp
    except ValueError:
        return False


def mark_built(path: Path, stamp: dict | None = None) -> None:
    """Write ``path``'s marker, last, so an interrupted build is redone."""
    marker(path).write_text(json.dumps(stamp or {}, sort_keys=True), encoding="utf-8")


def read_stamp(path: Path) -> dict:
    """The stamp recorded by :func:`mark_built`."""
    return json.loads(marker(path).read_text(encoding="utf-8"))


def fresh_dir(path: Path) -> Path:
    """Remove ``path`` and its marker, and create it empty (the start of every rebuild)."""
    mark = marker(path)
    if mark.exists():
        mark.unlink()
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    path.mkdir(parents=True)
    return path
