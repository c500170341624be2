# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""execution-environment.yml: the image installs this collection from the tarball of the same version.

`ansible-builder create` writes the build context (no container runtime needed); the galaxy stage
of its Dockerfile is then replayed here without a container: the same ansible-galaxy command, in
the same directory, must install the collection of galaxy.yml's version.
"""

from __future__ import annotations

import json
import re
import shutil

import yaml

from fleetlib import REPO, galaxy_env, run


def test_versions_match_galaxy_yml():
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    text = (REPO / "execution-environment.yml").read_text()
    ee = yaml.safe_load(text)
    tarball = f"kernelops-livepatch-{version}.tar.gz"
    assert ee["dependencies"]["galaxy"]["collections"] == [{"name": f"collections/{tarball}", "type": "file"}]
    assert ee["additional_build_files"] == [{"src": f"dist/{tarball}", "dest": "collections"}]
    assert ee["options"]["tags"] == [f"ee-livepatch:{version}"]
    # every version-looking string in the file is galaxy.yml's
    assert set(re.findall(r"livepatch[-:](\d+\.\d+\.\d+)", text)) == {version}


def test_builder_create_and_galaxy_stage(tmp_path, tarball):
    work = tmp_path / "ee"
    (work / "dist").mkdir(parents=True)
    shutil.copy2(REPO / "execution-environment.yml", work)
    shutil.copy2(tarball, work / "dist" / tarball.name)
    run([shutil.which("ansible-builder") or "ansible-builder", "create", "-f", "execution-environment.yml",
         "--context", str(work / "context")], cwd=work)
    build = work / "context" / "_build"
    dockerfile = (work / "context" / "Dockerfile").read_text()
    assert "COPY _build /build" in dockerfile and "WORKDIR /build" in dockerfile
    galaxy_run = [line for line in dockerfile.splitlines() if "ansible-galaxy collection install" in line]
    assert len(galaxy_run) == 1 and "-r requirements.yml" in galaxy_run[0]
    assert (build / "collections" / tarball.name).read_bytes() == tarball.read_bytes()
    # The galaxy stage, without the container: same command, same working directory.
    target = tmp_path / "usr-share-ansible-collections"
    run([shutil.which("ansible-galaxy") or "ansible-galaxy", "collection", "install", "-r", "requirements.yml",
         "--collections-path", str(target)], cwd=build, env=galaxy_env(target))
    manifest = json.loads((target / "ansible_collections" / "kernelops" / "livepatch" / "MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]


def test_tarball_leaves_out_what_the_docs_make(tmp_path):
    """build_ignore covers what our own docs tell users to create in a checkout, and the tests that need
    files the tarball does not ship."""
    checkout = tmp_path / "livepatch"
    listed = run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, listed.split("\0")):
        if (REPO / rel).is_file():
            (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, checkout / rel)
    made = ["context/Dockerfile", "context/_build/requirements.yml", "dist/kernelops-livepatch-0.0.1.tar.gz", "lab.ini",
            "livepatch-report/livepatch-report.html", "livepatch-report/livepatch-report.json"]
    for rel in made:
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("made by following the docs\n")
    out = tmp_path / "out"
    run([shutil.which("ansible-galaxy") or "ansible-galaxy", "collection", "build", "--output-path", str(out), str(checkout)])
    (tarball,) = out.glob("*.tar.gz")
    names = run(["tar", "-tzf", str(tarball)]).stdout.split()
    top = {name.split("/")[0] for name in names}
    assert not top & {"context", "dist", "lab.ini", "livepatch-report", "lab", "scripts"}, sorted(top)
    assert not [n for n in names if n.startswith(("tests/fleet/", "tests/integration/", "extensions/molecule/"))]
    assert "LICENSES/GPL-3.0-or-later.txt" in names  # the file every source header names
    assert "roles/livepatch_stack/templates/kernelops-livepatch-restore.service.j2" in names
