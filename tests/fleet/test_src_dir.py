# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Relative src paths through the collection playbook kernelops.livepatch.converge (issue 12).

Run in check mode against this machine (connection local): the role reads the files on the
controller, then the module plans, or, where the kernel has no /sys/kernel/livepatch, refuses
with rule no_livepatch. Either way the file was found; a wrong base shows as rule
bad_patch_file naming the path it looked at. Before the fix the base was the collection's own
playbooks/ directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def project(tmp_path: Path, src: str) -> Path:
    proj = tmp_path / "project"
    (proj / "patches").mkdir(parents=True)
    patch = proj / "patches" / "lp_x.ko"
    patch.write_bytes(b"not really a module, only read and hashed on the controller")
    (proj / "livepatch.yml").write_text("---\n- name: Converge\n  ansible.builtin.import_playbook: kernelops.livepatch.converge\n")
    (proj / "vars.json").write_text(json.dumps({
        "livepatch_stack_dir": str(tmp_path / "host-dir"),
        "livepatch_stack_persist": "no",
        "livepatch_stack_pop_to": "",
        "livepatch_report_dir": str(tmp_path / "report"),
        "livepatch_stack_stacks": [{"release": platform.release(),
                                    "patches": [{"src": src, "sha256": hashlib.sha256(patch.read_bytes()).hexdigest()}]}],
    }))
    (proj / "hosts.ini").write_text(f"here ansible_connection=local ansible_become=false ansible_python_interpreter={sys.executable}\n")
    return proj


def run_converge(proj: Path, playbook: str, installed: Path, *extra: str) -> list:
    """The report's rows after ``ansible-playbook PLAYBOOK --check`` in the project (EXTRA: more arguments)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(installed), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False",
               ANSIBLE_NOCOLOR="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run([shutil.which("ansible-playbook") or "ansible-playbook", "-i", "hosts.ini", playbook,
                           "--check", "-e", "@vars.json", *extra], cwd=proj, env=env, capture_output=True, text=True,
                          check=False, timeout=600)
    report = proj.parent / "report" / "livepatch-report.json"
    assert report.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(report.read_text())["hosts"]


def converge(proj: Path, playbook: str, installed: Path) -> dict:
    (row,) = run_converge(proj, playbook, installed)
    return row


@pytest.mark.parametrize("playbook", ["livepatch.yml", "kernelops.livepatch.converge"], ids=["import_playbook", "by_name"])
def test_relative_src_starts_at_the_project(tmp_path, installed, playbook):
    row = converge(project(tmp_path, "patches/lp_x.ko"), playbook, installed)
    assert row["rule"] != "bad_patch_file", row
    assert row["status"] == "planned" or (row["status"] == "failed" and row["rule"] == "no_livepatch"), row


def test_missing_relative_src_names_the_project_path(tmp_path, installed):
    proj = project(tmp_path, "patches/lp_missing.ko")
    row = converge(proj, "kernelops.livepatch.converge", installed)
    assert row["status"] == "failed" and row["rule"] == "bad_patch_file"
    assert f"patch file {proj.resolve()}/patches/lp_missing.ko does not exist on the controller" in row["message"]


def test_a_limit_still_writes_the_report(tmp_path, installed):
    """A job template's Limit (``--limit``) keeps the implicit localhost out of every play: the
    report is written all the same, with the limited hosts only."""
    proj = project(tmp_path, "patches/lp_x.ko")
    hosts = (proj / "hosts.ini").read_text()
    (proj / "hosts.ini").write_text(hosts + hosts.replace("here ", "there ", 1))
    rows = run_converge(proj, "kernelops.livepatch.converge", installed, "--limit", "there")
    assert [row["host"] for row in rows] == ["there"]
    assert rows[0]["rule"] != "bad_patch_file", rows
