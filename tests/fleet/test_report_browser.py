# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet report page in a real browser (headless chromium): it renders, its script runs and
sorts, the failed hosts are on top, and nothing is fetched from the network."""

from __future__ import annotations

import html.parser
from pathlib import Path

from ansible_collections.kernelops.livepatch.plugins.plugin_utils import _report

HOSTS = {
    "web01": {"livepatch_stack_status": "unchanged", "livepatch_stack_release": "6.1.0-50-amd64",
              "livepatch_stack_before": ["lp_a"], "livepatch_stack_after": ["lp_a"],
              "livepatch_stack_builds_after": {"lp_a": "0123456789abcdef0123"}, "livepatch_stack_duration": 2.5},
    "web02": {"livepatch_stack_status": "converged", "livepatch_stack_release": "6.12.117+deb13-amd64",
              "livepatch_stack_before": [], "livepatch_stack_after": ["lp_a", "lp_b"],
              "livepatch_stack_reboot_required": True, "livepatch_stack_duration": 9.0,
              "livepatch_stack_boot_restore": "enabled",
              # the shape the role's staging fills (livepatch_stack_staged): the stack recorded for
              # each other installed release, for its next boot
              "livepatch_stack_staged": [
                  {"release": "6.12.120+deb13-amd64", "stack": ["lp_a", "lp_b"], "status": "staged"},
                  {"release": "6.12.110+deb13-amd64", "stack": [], "status": "removed"}]},
    "db01": {"livepatch_stack_status": "failed", "livepatch_stack_rule": "foreign_patch",
             "livepatch_stack_message": "patch kpatch_x at position 1 is not ours <b>bold</b>",
             "livepatch_stack_release": "6.1.0-50-amd64", "livepatch_stack_duration": 1.25},
    "zz-gone": {"livepatch_stack_status": "unreachable", "livepatch_stack_rule": "unreachable",
                "livepatch_stack_message": "Failed to connect to the host via ssh"},
    "aa-canary-skipped": {"livepatch_stack_status": "skipped_canary"},
}


class Rows(html.parser.HTMLParser):
    """The table rows of a DOM dump: [[cell text, ...], ...] in document order."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell, self._in_body = [], None, False
        self.attrs = {}

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.attrs = dict(attrs)
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def page(tmp_path: Path) -> Path:
    report = _report.build_report([_report.host_row(h, f) for h, f in HOSTS.items()])
    _json, html_path = _report.write_report(report, str(tmp_path))
    return Path(html_path)


def rows_of(dom: str):
    parsed = Rows()
    parsed.feed(dom)
    return parsed


def test_failed_hosts_on_top_and_text(tmp_path, browser):
    shot = tmp_path / "report.png"
    dom = browser(page(tmp_path).as_uri(), screenshot=shot)
    parsed = rows_of(dom)
    hosts = [row[0] for row in parsed.rows]
    statuses = [row[2] for row in parsed.rows]
    assert sorted(hosts) == sorted(HOSTS)
    assert set(statuses[:2]) == {"failed", "unreachable"}, statuses
    assert parsed.attrs.get("data-sorted-by") == "status"  # the script ran
    assert "sorted by status, 5 hosts" in dom
    db01 = parsed.rows[hosts.index("db01")]
    assert db01[3] == "foreign_patch" and db01[-1] == "patch kpatch_x at position 1 is not ours <b>bold</b>"
    web02 = parsed.rows[hosts.index("web02")]
    assert web02[5] == "lp_a lp_b" and web02[6] == "yes"
    # the Staged releases column (the 9th): each release with its status and its stack
    assert web02[8] == "6.12.120+deb13-amd64 staged : lp_a, lp_b 6.12.110+deb13-amd64 removed : empty"
    assert parsed.rows[hosts.index("web01")][8] == "none"


def test_sorting_by_column_in_the_browser(tmp_path, browser):
    url = page(tmp_path).as_uri()
    by_host = [row[0] for row in rows_of(browser(url + "#sort=host")).rows]
    assert by_host == sorted(HOSTS)
    by_host_desc = [row[0] for row in rows_of(browser(url + "#sort=-host")).rows]
    assert by_host_desc == sorted(HOSTS, reverse=True)
    by_duration = [row[0] for row in rows_of(browser(url + "#sort=-duration_s")).rows]
    assert by_duration[:3] == ["web02", "web01", "db01"]
