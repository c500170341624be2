# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Galaxy hygiene of the built tarball (issue 12): the tests it ships run from it alone, what our
docs tell users to create in a checkout is not packed, license headers name a file it ships, and
no placeholder URL is left in what it installs on hosts or publishes to Galaxy."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from fleetlib import REPO, run

# What README.md, docs/docsite/rst/guide_awx.rst, examples/lab.yml and the lab's README tell a user
# to create inside a checkout (path, content).
USER_MADE = {
    "dist/kernelops-livepatch-0.0.9.tar.gz": b"old build",
    "context/Containerfile": b"FROM scratch\n",  # ansible-builder create
    "lab.ini": b"lab ansible_host=127.0.0.1\n",  # examples/lab.yml
    "livepatch-report/livepatch-report.html": b"<html></html>",  # converge.yml outside ansible-runner
    "collections/ansible_collections/kernelops/other/MANIFEST.json": b"{}",  # collections/requirements.yml
    ".venv/bin/python": b"",  # scripts/setup-venv
    "built-docs/index.html": b"<html></html>",  # docs/site/build.sh
}


def extract(tarball: Path, dest: Path) -> Path:
    root = dest / "ansible_collections" / "kernelops" / "livepatch"
    root.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="data")
    return root


def test_shipped_tests_run_from_the_tarball_alone(tarball, tmp_path):
    root = extract(tarball, tmp_path / "installed")
    assert (root / "tests" / "unit").is_dir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTHON"))}
    env.update(PYTHONPATH=str(tmp_path / "installed"), ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "installed"))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "tests/unit"],
                          cwd=root, env=env, capture_output=True, text=True, check=False, timeout=1500)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(r"\d+ passed", done.stdout)
    # and it ran the installed copy, not the checkout's
    assert str(REPO) not in done.stdout


def test_what_users_create_in_a_checkout_is_not_packed(tmp_path):
    checkout = tmp_path / "checkout"
    listed = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if src.is_file():
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, checkout / rel)
    for rel, content in USER_MADE.items():
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_bytes(content)
    run([shutil.which("ansible-galaxy") or "ansible-galaxy", "collection", "build", "--output-path",
         str(tmp_path / "out"), str(checkout)])
    (built,) = (tmp_path / "out").glob("kernelops-livepatch-*.tar.gz")
    with tarfile.open(built) as tar:
        names = set(tar.getnames())
    assert not {rel for rel in USER_MADE if rel in names or rel.split("/")[0] in names}
    assert "plugins/modules/livepatch_stack.py" in names


def test_license_headers_and_urls(tarball):
    with tarfile.open(tarball) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    cited = set()
    for name, data in files.items():
        cited.update((lic, name) for lic in re.findall(rb"see (LICENSES/[A-Za-z0-9.+-]+\.txt)", data))
    assert cited, "no file names its license file"
    assert not {(lic.decode(), name) for lic, name in cited if lic.decode() not in files}
    # What a host gets from the role: the unit's Documentation= points at the installed script or
    # a man page, not at a web page that does not exist.
    unit = files["roles/livepatch_stack/templates/kernelops-livepatch-restore.service.j2"].decode()
    docs = re.findall(r"^Documentation=(.*)$", unit, flags=re.M)
    assert docs and all(re.match(r"(file:|man:)", line) and "://" not in line for line in docs), docs
    # What Galaxy shows: real project URLs, no example/placeholder hosts.
    info = json.loads(files["MANIFEST.json"])["collection_info"]
    urls = [info[key] for key in ("repository", "documentation", "homepage", "issues") if info.get(key)]
    assert urls and all(re.match(r"https://github\.com/kernelops/livepatch(/|$)", url) for url in urls), urls
