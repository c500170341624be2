# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures of the AWX-path tests (scripts/test awx): the built collection tarball, a headless browser.

``tarball``    the collection built by ansible-galaxy from this checkout (session scope)
``installed``  a collections directory holding only that tarball, installed (session scope)
``browser``    a function (url, screenshot=None) -> the DOM after the page's scripts ran, from
               Debian's chromium in headless mode (scripts/test awx installs it when missing)
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fleetlib import REPO, galaxy_env, run  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def tarball(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([shutil.which("ansible-galaxy") or "ansible-galaxy", "collection", "build", "--output-path", str(out), str(REPO)])
    (built,) = out.glob("kernelops-livepatch-*.tar.gz")
    return built


@pytest.fixture(scope="session")
def installed(tmp_path_factory, tarball) -> Path:
    path = tmp_path_factory.mktemp("collections")
    run([shutil.which("ansible-galaxy") or "ansible-galaxy", "collection", "install", "-p", str(path), str(tarball)],
        env=galaxy_env(path))
    assert (path / "ansible_collections" / "kernelops" / "livepatch" / "MANIFEST.json").is_file()
    return path


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no chromium on PATH: scripts/test awx installs Debian's chromium package (apt-get install chromium)")
    raise AssertionError  # unreachable, for the type checker


@pytest.fixture(scope="session")
def browser():
    binary = chromium()

    def load(url: str, screenshot: Path | None = None, width: int = 1500, height: int = 700) -> str:
        base = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                # nothing but the file itself: a page that tried the network would show it in the DOM checks
                "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={width},{height}"]
        env = dict(os.environ, HOME=str(Path(os.environ.get("TMPDIR", "/tmp"))))
        if screenshot is not None:
            run(base + [f"--screenshot={screenshot}", url], env=env, timeout=180)
            assert screenshot.stat().st_size > 10000, "the screenshot is (nearly) empty"
        return run(base + ["--dump-dom", url], env=env, timeout=180).stdout

    return load
