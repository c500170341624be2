# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The fleet report (plugin_utils/_report.py): rows from the role's facts, order, escaping, files.

The page in a real browser is tested by tests/fleet/test_report_browser.py (scripts/test awx).
"""

from __future__ import annotations

import html.parser
import json

import pytest

from ansible_collections.kernelops.livepatch.plugins.plugin_utils import _report

FAILED = {
    'livepatch_stack_status': 'failed', 'livepatch_stack_rule': 'bad_patch_file',
    'livepatch_stack_message': 'patch file /p/lp_x.ko does not exist\n  on the controller',
    'livepatch_stack_release': '6.1.0-50-amd64',
    'livepatch_stack_before': ['lp_a'], 'livepatch_stack_after': ['lp_a'],
    'livepatch_stack_builds_before': {'lp_a': 'aa11'}, 'livepatch_stack_builds_after': {'lp_a': 'aa11'},
}
CONVERGED = {
    'livepatch_stack_status': 'converged', 'livepatch_stack_release': '6.12.117+deb13-amd64',
    'livepatch_stack_before': ['lp_a', 'lp_b'], 'livepatch_stack_after': ['lp_a', 'lp_c'],
    'livepatch_stack_builds_before': {'lp_a': 'aa11', 'lp_b': 'bb22'},
    'livepatch_stack_builds_after': {'lp_a': 'aa11', 'lp_c': 'cc33'},
    'livepatch_stack_reboot_required': 'no', 'livepatch_stack_duration': '3.14159',
    'livepatch_stack_steps': [{}, {}], 'livepatch_stack_boot_restore': 'enabled',
    'livepatch_stack_foreign': [{'name': 'kpatch_x', 'build_id': 'ff', 'position': 1}],
}
# livepatch_stack_staged as the role's staging sets it: one entry per other installed release.
STAGED = [
    {'release': '6.12.120+deb13-amd64', 'stack': ['lp_a', 'lp_c'], 'status': 'staged'},
    {'release': '6.12.117+deb13-amd64', 'stack': ['lp_a'], 'status': 'unchanged'},
    {'release': '6.12.110+deb13-amd64', 'stack': [], 'status': 'removed'},
]


def test_row_from_facts():
    row = _report.host_row('web1', CONVERGED)
    assert row['before'] == [{'name': 'lp_a', 'build': 'aa11'}, {'name': 'lp_b', 'build': 'bb22'}]
    assert row['after'] == [{'name': 'lp_a', 'build': 'aa11'}, {'name': 'lp_c', 'build': 'cc33'}]
    assert row['reboot_required'] is False  # the string "no" of a survey-like value
    assert row['duration_s'] == 3.14
    assert row['steps'] == 2
    assert row['foreign'] == [{'name': 'kpatch_x', 'build': 'ff'}]
    assert row['staged'] == []


def test_staged_releases_in_row_json_and_page(tmp_path):
    facts = dict(CONVERGED, livepatch_stack_staged=STAGED + ['7.2.13+deb14-amd64'])
    report = _report.build_report([_report.host_row('web1', facts)])
    json_path, html_path = _report.write_report(report, str(tmp_path))
    row = json.load(open(json_path, encoding='utf-8'))['hosts'][0]
    # The JSON keeps every entry with its three keys; a bare release name (an older fact) is kept too.
    assert row['staged'] == STAGED + [{'release': '7.2.13+deb14-amd64', 'stack': [], 'status': ''}]
    parsed = _Collect()
    parsed.feed(open(html_path, encoding='utf-8').read())
    text = ' '.join(' '.join(parsed.text).split())
    assert '6.12.120+deb13-amd64 staged : lp_a, lp_c' in text
    assert '6.12.117+deb13-amd64 unchanged : lp_a' in text
    assert '6.12.110+deb13-amd64 removed : empty' in text


def test_host_without_facts_is_not_run():
    row = _report.host_row('never', {})
    assert row['status'] == 'not_run' and row['before'] == [] and row['duration_s'] is None


def test_message_whitespace_is_folded():
    assert _report.host_row('h', FAILED)['message'] == 'patch file /p/lp_x.ko does not exist on the controller'


@pytest.mark.parametrize('statuses', [
    ['unchanged', 'failed', 'converged', 'unreachable', 'skipped_canary', 'no_stack_for_release'],
    ['converged', 'converged', 'failed'],
    ['not_run', 'planned', 'unreachable', 'something_new'],
])
def test_failing_hosts_come_first(statuses):
    rows = [_report.host_row('h%02d' % i, {'livepatch_stack_status': s}) for i, s in enumerate(statuses)]
    report = _report.build_report(rows)
    got = [r['status'] for r in report['hosts']]
    # Independent of the code: the failing ones (failed, unreachable) form the prefix.
    n_failing = sum(s in ('failed', 'unreachable') for s in statuses)
    assert set(got[:n_failing]) <= {'failed', 'unreachable'}
    assert not set(got[n_failing:]) & {'failed', 'unreachable'}
    assert sorted(got) == sorted(statuses)
    assert report['counts'] == {s: statuses.count(s) for s in set(statuses)}
    assert report['failed'] == [r['host'] for r in report['hosts'] if r['status'] in ('failed', 'unreachable')]


def test_results_artifact_keys():
    report = _report.build_report([_report.host_row('web1', CONVERGED), _report.host_row('web2', FAILED)])
    results = _report.results_by_host(report)
    assert results['web1'] == {'release': '6.12.117+deb13-amd64', 'status': 'converged', 'rule': '', 'message': '',
                               'stack': ['lp_a', 'lp_c'], 'reboot_required': False}
    assert results['web2']['rule'] == 'bad_patch_file'


class _Collect(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.scripts = []
        self.text = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == 'script'

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)


def test_page_escapes_and_is_self_contained(tmp_path):
    evil = '<script>alert(1)</script>&"'
    facts = dict(FAILED, livepatch_stack_message=evil)
    report = _report.build_report([_report.host_row('web<1>', facts), _report.host_row('web2', CONVERGED)])
    json_path, html_path = _report.write_report(report, str(tmp_path / 'out'))
    page = open(html_path, encoding='utf-8').read()
    parsed = _Collect()
    parsed.feed(page)
    # Only our two scripts (the data and the sorter), no element from the message; nothing loaded from elsewhere.
    assert [t for t, _a in parsed.tags].count('script') == 2
    assert not [a for _t, a in parsed.tags if 'src' in a or 'href' in a]
    assert evil in ''.join(parsed.text)
    data = json.loads(parsed.scripts[0])
    assert data == json.load(open(json_path, encoding='utf-8'))
    assert data['hosts'][0]['host'] == 'web<1>' and data['hosts'][0]['message'] == evil
