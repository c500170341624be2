# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The AWX path through its engine: ansible-runner runs kernelops.livepatch.converge from a
private data directory laid out as AWX lays it out, against one lab VM and one host that cannot
be reached.

The private data directory (AWX 24 / AAP 2.x, ansible-runner's "Input directory hierarchy"):

    project/                   the project checkout; the job's working directory
      livepatch.yml            import_playbook: kernelops.livepatch.converge (the guide's layout)
      patches/RELEASE/*.ko
    inventory/hosts            an executable script that prints the inventory as JSON, as AWX writes
                               it, with livepatch_stack_stacks (relative src paths) in the group vars
                               of all: what AWX hands a job from an inventory sourced from the project
    env/extravars              the survey answers as AWX sends them: integers as numbers,
                               text and multiple choice as strings, pop_to empty
    env/envvars                ANSIBLE_COLLECTIONS_PATH with requirements_collections/ first
    requirements_collections/  the collection installed from the built tarball (AWX installs the
                               project's collections/requirements.yml there)

Checked: the runner's status, its job events (the healthy host's converge ran and was ok, the
unreachable host was failed by the last play), the set_stats artifact, the report in the job's
artifact directory, the page in a headless browser, and on the VM the stack and the boot restore.
A second and a third run check the canary gate and livepatch_any_errors_fatal (those do not touch
the VM's stack).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import ansible_runner
import pytest

import klab  # lab/ is on sys.path (conftest.py)

KERNEL = os.environ.get("KERNELOPS_AWX_KERNEL", "bookworm")
SURVEY = {
    # AWX survey answers: integer questions arrive as numbers, text and multiple choice as strings.
    "livepatch_stack_pop_to": "",
    "livepatch_stack_timeout": 60,
    "livepatch_stack_on_stall": "reverse",
    "livepatch_stack_persist": "true",
    "livepatch_serial": "100%",
    "livepatch_max_fail_percentage": 100,
    "livepatch_any_errors_fatal": "false",
}
UNREACHABLE = {"ansible_host": "127.0.0.1", "ansible_port": 9, "ansible_user": "root",
               "ansible_ssh_common_args": "-o ConnectTimeout=5 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"}
UNIT = "kernelops-livepatch-restore.service"


def sha256(path: Path) -> str:
    import hashlib  # pylint: disable=import-outside-toplevel
    return hashlib.sha256(path.read_bytes()).hexdigest()


def private_data_dir(root: Path, installed: Path, hosts: dict, release: str, patches: Path, extravars: dict) -> Path:
    (root / "project").mkdir(parents=True)
    (root / "inventory").mkdir()
    (root / "env").mkdir()
    shutil.copytree(installed, root / "requirements_collections")
    (root / "project" / "livepatch.yml").write_text(
        "---\n- name: Converge the livepatch stack\n  ansible.builtin.import_playbook: kernelops.livepatch.converge\n")
    dest = root / "project" / "patches" / release
    dest.mkdir(parents=True)
    stack = []
    for name in ("lab_a", "lab_b"):
        shutil.copy2(patches / f"{name}.ko", dest / f"{name}.ko")
        stack.append({"src": f"patches/{release}/{name}.ko", "sha256": sha256(dest / f"{name}.ko")})
    inventory = {"all": {"hosts": list(hosts), "vars": {"livepatch_stack_stacks": [{"release": release, "patches": stack}]}},
                 "_meta": {"hostvars": hosts}}
    script = root / "inventory" / "hosts"
    script.write_text("#!/bin/sh\n# written as AWX writes a job's inventory: a script that prints JSON\n"
                      f"cat <<'EOF'\n{json.dumps(inventory, indent=1)}\nEOF\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    (root / "env" / "extravars").write_text(json.dumps(extravars))
    (root / "env" / "envvars").write_text(json.dumps({
        "ANSIBLE_COLLECTIONS_PATH": str(root / "requirements_collections"),
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": "5",
    }))
    return root


def run_job(pdd: Path):
    # ansible-runner's own run(), as AWX's receptor worker calls it; playbook is relative to project/.
    result = ansible_runner.run(private_data_dir=str(pdd), playbook="livepatch.yml", ident="job", quiet=True,
                                timeout=1800)
    events = list(result.events)
    artifacts = pdd / "artifacts" / "job"
    return result, events, artifacts


def stats_of(events):
    (stats,) = [e for e in events if e["event"] == "playbook_on_stats"]
    return stats["event_data"]


def report_of(artifacts: Path) -> dict:
    return json.loads((artifacts / "livepatch-report.json").read_text())


@pytest.fixture(scope="module")
def vm():
    lab = klab.Lab().build([KERNEL])
    guest = lab.boot(KERNEL, pycache=True)
    try:
        guest.ssh("rmmod lab_a lab_b 2>/dev/null; rm -rf /var/lib/kernelops-livepatch; true", check=False)
        yield guest
    finally:
        guest.stop()


@pytest.fixture(scope="module")
def job(tmp_path_factory, installed, vm):
    lab = klab.Lab()
    hosts = {"lab": dict(vm.ansible_vars), "gone": UNREACHABLE}
    pdd = private_data_dir(tmp_path_factory.mktemp("awx") / "pdd", installed, hosts, vm.release,
                           lab.cache / "patches" / KERNEL, SURVEY)
    return (pdd,) + run_job(pdd)


def test_runner_status_and_events(job):
    _pdd, result, events, _artifacts = job
    # A host failed (unreachable), so the job fails, as AWX shows it; the healthy host finished.
    assert result.status == "failed" and result.rc != 0
    stats = stats_of(events)
    assert set(stats["failures"]) == {"gone"}
    assert "lab" not in stats.get("failures", {}) and "lab" not in stats.get("dark", {})
    converge = [e for e in events if e["event"] == "runner_on_ok" and e["event_data"].get("host") == "lab"
                and e["event_data"].get("task_action") == "kernelops.livepatch.livepatch_stack"]
    assert len(converge) == 1 and converge[0]["event_data"]["res"]["changed"] is True
    assert converge[0]["event_data"]["res"]["stack_after"] == ["lab_a", "lab_b"]
    # livepatch_stage installs the boot restore, its unit enabled in the same call.
    boot = [e for e in events if e["event_data"].get("host") == "lab" and e["event"] == "runner_on_ok"
            and e["event_data"].get("task_action") == "kernelops.livepatch.livepatch_stage"
            and {"path": UNIT, "action": "enable"} in e["event_data"]["res"].get("restore_changes", [])]
    assert boot, "the healthy host did not install the boot restore"
    verdict = [e for e in events if e["event"] == "runner_on_failed" and e["event_data"].get("host") == "gone"]
    assert verdict and verdict[-1]["event_data"]["task"] == "Fail this host with its reason"


def test_set_stats_artifact(job):
    _pdd, _result, events, _artifacts = job
    results = stats_of(events)["artifact_data"]["livepatch_results"]
    assert results["lab"]["status"] == "converged" and results["lab"]["stack"] == ["lab_a", "lab_b"]
    assert results["gone"]["status"] == "unreachable" and results["gone"]["rule"] == "unreachable"


def test_report_artifact(job, vm):
    _pdd, _result, _events, artifacts = job
    report = report_of(artifacts)
    rows = {row["host"]: row for row in report["hosts"]}
    assert set(rows) == {"lab", "gone"}
    assert [row["host"] for row in report["hosts"]] == ["gone", "lab"]  # failed on top
    lab = rows["lab"]
    assert lab["status"] == "converged" and lab["release"] == vm.release and lab["boot_restore"] == "enabled"
    assert [p["name"] for p in lab["after"]] == ["lab_a", "lab_b"] and all(p["build"] for p in lab["after"])
    assert lab["before"] == [] and lab["steps"] == 2 and lab["duration_s"] > 0
    assert rows["gone"]["status"] == "unreachable" and "connect" in rows["gone"]["message"].lower()


def test_healthy_host_finished(job, vm):
    live = vm.ssh("ls /sys/kernel/livepatch").stdout.split()
    assert live == ["lab_a", "lab_b"]
    assert vm.ssh(f"systemctl is-enabled {UNIT}").stdout.strip() == "enabled"
    record = json.loads(vm.ssh(f"cat /var/lib/kernelops-livepatch/{vm.release}/stack.json").stdout)
    assert [p["name"] for p in record["stack"]] == ["lab_a", "lab_b"]


def test_report_page_in_browser(job, browser):
    _pdd, _result, _events, artifacts = job
    out = Path(os.environ.get("KERNELOPS_AWX_SCREENSHOT", str(artifacts / "livepatch-report.png")))
    # 1800 px: every column fits without cutting the message (the AWX guide shows this picture)
    dom = browser((artifacts / "livepatch-report.html").as_uri(), screenshot=out, width=1800, height=400)
    assert "sorted by status, 2 hosts" in dom
    assert dom.index(">gone<") < dom.index(">lab<")


def test_canary_gate(tmp_path, installed, vm):
    """An unreachable canary host: every other host is skipped (status skipped_canary), untouched."""
    hosts = {"gone": UNREACHABLE, "lab": dict(vm.ansible_vars)}
    pdd = private_data_dir(tmp_path / "pdd", installed, hosts, vm.release,
                           klab.Lab().cache / "patches" / KERNEL, dict(SURVEY, livepatch_canary="gone"))
    result, events, artifacts = run_job(pdd)
    rows = {row["host"]: row for row in report_of(artifacts)["hosts"]}
    assert result.status == "failed"
    assert rows["gone"]["status"] == "unreachable"
    assert rows["lab"]["status"] == "skipped_canary" and "gone" in rows["lab"]["message"]
    assert not [e for e in events if e["event_data"].get("host") == "lab"
                and e["event_data"].get("task_action") == "kernelops.livepatch.livepatch_stack"]


def test_any_errors_fatal_skips_later_batches(tmp_path, installed, vm):
    """serial 1 and livepatch_any_errors_fatal "true" (a survey string): after the failed first batch the
    second is skipped (skipped_fail_limit) and still in the report."""
    hosts = {"gone": UNREACHABLE, "lab": dict(vm.ansible_vars)}
    pdd = private_data_dir(tmp_path / "pdd", installed, hosts, vm.release, klab.Lab().cache / "patches" / KERNEL,
                           dict(SURVEY, livepatch_serial="1", livepatch_any_errors_fatal="true"))
    result, _events, artifacts = run_job(pdd)
    rows = {row["host"]: row for row in report_of(artifacts)["hosts"]}
    assert result.status == "failed"
    assert rows["gone"]["status"] == "unreachable" and rows["lab"]["status"] == "skipped_fail_limit"
