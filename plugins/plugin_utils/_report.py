# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report of kernelops.livepatch.converge: one row per host, as JSON and as one HTML page.

PRIVATE to this collection; may change without notice. Runs on the controller only (the action
plugin livepatch_report). Standard library only. The page is self-contained: inline CSS and
JavaScript, the data embedded as JSON, nothing fetched from the network, so it opens from a
job's artifact directory, a mail attachment or a browser without internet access.
"""

from __future__ import annotations

import datetime
import html
import json
import os

from ansible_collections.kernelops.livepatch.plugins.module_utils._host import write_text_atomically

# 2: staged is [{release, stack, status}] (was a list of release names).
SCHEMA = 2

# Worst first: the order of the page and of the JSON rows ("failed hosts on top").
STATUS_ORDER = (
    'failed',
    'unreachable',
    'skipped_canary',
    'skipped_fail_limit',
    'not_run',
    'no_stack_for_release',
    'planned',
    'converged',
    'unchanged',
)
# Statuses that make the job fail (the last play of kernelops.livepatch.converge fails those hosts).
FAILING = ('failed', 'unreachable')

# The facts of the role livepatch_stack a row is made of.
FACTS = (
    'livepatch_stack_status', 'livepatch_stack_rule', 'livepatch_stack_message', 'livepatch_stack_release',
    'livepatch_stack_before', 'livepatch_stack_after', 'livepatch_stack_builds_before', 'livepatch_stack_builds_after',
    'livepatch_stack_reboot_required', 'livepatch_stack_foreign', 'livepatch_stack_staged',
    'livepatch_stack_boot_restore', 'livepatch_stack_duration', 'livepatch_stack_steps',
)

# (key in a row, header), in the page's order; the page sorts every column by data-sort-KEY.
COLUMNS = (
    ('host', 'Host'), ('release', 'Kernel release'), ('status', 'Status'), ('rule', 'Rule'),
    ('before', 'Stack before'), ('after', 'Stack after'), ('reboot_required', 'Reboot required'),
    ('foreign', 'Foreign patches'), ('staged', 'Staged releases'), ('boot_restore', 'Boot restore'),
    ('duration_s', 'Duration (s)'), ('message', 'Message'),
)


def _status_rank(status):
    try:
        return STATUS_ORDER.index(status)
    except ValueError:
        return len(STATUS_ORDER)


def _stack(names, builds):
    """[{name, build}] bottom first; build is None where it is not known."""
    builds = builds if isinstance(builds, dict) else {}
    return [{'name': str(name), 'build': builds.get(name) or None} for name in (names or [])]


def _staged(entries):
    """The role's livepatch_stack_staged, [{release, stack: [names], status}] (staged, unchanged or
    removed): the boot records written for the host's other installed kernel releases."""
    rows = []
    for entry in entries or []:
        if isinstance(entry, dict):
            rows.append({'release': str(entry.get('release') or ''),
                         'stack': [str(name) for name in (entry.get('stack') or [])],
                         'status': str(entry.get('status') or '')})
        else:  # a bare release name
            rows.append({'release': str(entry), 'stack': [], 'status': ''})
    return rows


def _as_bool(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on', 'y', 't')


def _as_float(value):
    try:
        return round(float(value), 2)
    except (TypeError, ValueError):
        return None


def host_row(host, facts):
    """One host's row from the facts the role livepatch_stack set (a mapping; missing keys allowed)."""
    get = facts.get
    status = str(get('livepatch_stack_status') or 'not_run')
    foreign = get('livepatch_stack_foreign') or []
    return {
        'host': str(host),
        'release': str(get('livepatch_stack_release') or ''),
        'status': status,
        'rule': str(get('livepatch_stack_rule') or ''),
        'message': ' '.join(str(get('livepatch_stack_message') or '').split()),
        'before': _stack(get('livepatch_stack_before'), get('livepatch_stack_builds_before')),
        'after': _stack(get('livepatch_stack_after'), get('livepatch_stack_builds_after')),
        'reboot_required': _as_bool(get('livepatch_stack_reboot_required') or False),
        'foreign': [
            {'name': str(p.get('name')), 'build': p.get('build_id')} if isinstance(p, dict) else {'name': str(p), 'build': None}
            for p in foreign
        ],
        'staged': _staged(get('livepatch_stack_staged')),
        'boot_restore': str(get('livepatch_stack_boot_restore') or ''),
        'duration_s': _as_float(get('livepatch_stack_duration')),
        'steps': len(get('livepatch_stack_steps') or []),
    }


def build_report(rows, generated=None):
    """The report: rows sorted worst status first, then by host; counts per status."""
    rows = sorted(rows, key=lambda r: (_status_rank(r['status']), r['host']))
    counts = {}
    for row in rows:
        counts[row['status']] = counts.get(row['status'], 0) + 1
    generated = generated or datetime.datetime.now(datetime.timezone.utc)
    return {
        'schema': SCHEMA,
        'generated': generated.strftime('%Y-%m-%dT%H:%M:%SZ'),
        'hosts': rows,
        'counts': counts,
        'failed': [r['host'] for r in rows if r['status'] in FAILING],
    }


def results_by_host(report):
    """The set_stats artifact livepatch_results: {host: {...}} (the keys of 0.1.0 plus the new ones)."""
    return {
        row['host']: {
            'release': row['release'],
            'status': row['status'],
            'rule': row['rule'],
            'message': row['message'],
            'stack': [p['name'] for p in row['after']],
            'reboot_required': row['reboot_required'],
        }
        for row in report['hosts']
    }


def _stack_html(stack):
    if not stack:
        return '<span class="empty">empty</span>'
    items = []
    for patch in stack:
        build = ' <code>%s</code>' % html.escape(patch['build'][:12]) if patch.get('build') else ''
        items.append('<li>%s%s</li>' % (html.escape(patch['name']), build))
    return '<ol>%s</ol>' % ''.join(items)


def _staged_html(staged):
    if not staged:
        return '<span class="empty">none</span>'
    items = []
    for entry in staged:
        stack = html.escape(', '.join(entry['stack'])) if entry['stack'] else '<span class="empty">empty</span>'
        status = ' <span class="status s-%s">%s</span>' % ((html.escape(entry['status']),) * 2) if entry['status'] else ''
        items.append('<li>%s%s: %s</li>' % (html.escape(entry['release']), status, stack))
    return '<ul class="staged">%s</ul>' % ''.join(items)


def _cell_html(key, row):
    value = row[key]
    if key in ('before', 'after', 'foreign'):
        return _stack_html(value)
    if key == 'staged':
        return _staged_html(value)
    if key == 'reboot_required':
        return 'yes' if value else 'no'
    if key == 'status':
        return '<span class="status s-%s">%s</span>' % (html.escape(value), html.escape(value))
    if value is None:
        return ''
    return html.escape(str(value))


def _sort_value(key, row):
    value = row[key]
    if key == 'status':
        return _status_rank(value)
    if key in ('before', 'after', 'foreign'):
        return ' '.join(p['name'] for p in value)
    if key == 'staged':
        return ' '.join(entry['release'] for entry in value)
    if key == 'reboot_required':
        return int(bool(value))
    if value is None:
        return ''
    return value


def _json_for_script(data):
    # Inside <script>, "</" would end the element; \u003c keeps the JSON the same data.
    return json.dumps(data, sort_keys=True).replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')


_CSS = """
body{font:13px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24}
td:last-child{min-width:24em}
h1{font-size:1.4em;margin:0 0 .3em}
.summary span{display:inline-block;margin:0 .8em .4em 0}
table{border-collapse:collapse;width:100%}
th,td{border:1px solid #c8ccd0;padding:.3em .5em;vertical-align:top;text-align:left}
th{background:#eef0f2;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
ol{margin:0;padding-left:1.4em}
ul.staged{margin:0;padding-left:1em}
code{font-size:.85em;color:#57606a}
.empty{color:#8c959f}
.status{font-weight:600;padding:0 .3em;border-radius:3px}
.s-failed,.s-unreachable{background:#ffd7d5;color:#82071e}
.s-skipped_canary,.s-skipped_fail_limit,.s-not_run{background:#fff1c2;color:#6a4a00}
.s-converged{background:#d3f5dc;color:#0b4f1e}
.s-unchanged,.s-planned,.s-no_stack_for_release{background:#e7ecf0}
.s-staged{background:#d3f5dc;color:#0b4f1e}
.s-removed{background:#e7ecf0;color:#57606a;text-decoration:line-through}
tr.failing td{background:#fff5f5}
"""

# Sorting: a click on a header sorts by that column (again: reversed); the URL fragment
# #sort=KEY or #sort=-KEY picks the order on load. Default: status, worst first.
_JS = """
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var table = document.getElementById('hosts');
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  function value(row, key) { return JSON.parse(row.getAttribute('data-sort-' + key)); }
  function compare(a, b) { return a < b ? -1 : (a > b ? 1 : 0); }
  function sortBy(key, descending) {
    rows.sort(function (a, b) {
      var c = compare(value(a, key), value(b, key));
      if (c === 0) { c = compare(value(a, 'status'), value(b, 'status')) || compare(value(a, 'host'), value(b, 'host')); return c; }
      return descending ? -c : c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (th) {
      th.setAttribute('aria-sort', th.getAttribute('data-key') === key ? (descending ? 'descending' : 'ascending') : 'none');
    });
    table.setAttribute('data-sorted-by', (descending ? '-' : '') + key);
  }
  heads.forEach(function (th) {
    th.addEventListener('click', function () {
      var key = th.getAttribute('data-key');
      sortBy(key, th.getAttribute('aria-sort') === 'ascending');
    });
  });
  var wanted = /#sort=(-?)([a-z_]+)/.exec(window.location.hash);
  if (wanted && heads.some(function (th) { return th.getAttribute('data-key') === wanted[2]; })) {
    sortBy(wanted[2], wanted[1] === '-');
  } else {
    sortBy('status', false);
  }
  document.getElementById('script-state').textContent = 'sorted by ' + table.getAttribute('data-sorted-by') + ', ' + data.hosts.length + ' hosts';
})();
"""


def render_html(report, title='Livepatch fleet report'):
    """One self-contained HTML page of the report."""
    counts = ''.join(
        '<span><span class="status s-%s">%s</span> %d</span>' % (html.escape(s), html.escape(s), n)
        for s, n in sorted(report['counts'].items(), key=lambda item: _status_rank(item[0])))
    head = ''.join('<th data-key="%s" aria-sort="none">%s</th>' % (key, html.escape(label)) for key, label in COLUMNS)
    body = []
    for row in report['hosts']:
        attrs = ''.join(' data-sort-%s="%s"' % (key, html.escape(json.dumps(_sort_value(key, row)), quote=True))
                        for key, _label in COLUMNS)
        cls = ' class="failing"' if row['status'] in FAILING else ''
        body.append('<tr%s%s>%s</tr>' % (cls, attrs, ''.join('<td>%s</td>' % _cell_html(key, row) for key, _l in COLUMNS)))
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>%(title)s</title><style>%(css)s</style></head>
<body>
<h1>%(title)s</h1>
<p>Generated %(generated)s by kernelops.livepatch.converge: %(n)d hosts, %(nfailed)d failed or unreachable.
Click a column header to sort. <span id="script-state">not sorted (JavaScript off)</span></p>
<p class="summary">%(counts)s</p>
<table id="hosts"><thead><tr>%(head)s</tr></thead><tbody>
%(body)s
</tbody></table>
<script type="application/json" id="report-data">%(data)s</script>
<script>%(js)s</script>
</body></html>
""" % {
        'title': html.escape(title), 'css': _CSS, 'generated': html.escape(report['generated']),
        'n': len(report['hosts']), 'nfailed': len(report['failed']), 'counts': counts, 'head': head,
        'body': '\n'.join(body), 'data': _json_for_script(report), 'js': _JS,
    }


def write_report(report, dest, basename='livepatch-report'):
    """Write DEST/BASENAME.json and DEST/BASENAME.html (each replaced atomically); return both paths."""
    os.makedirs(dest, exist_ok=True)
    json_path = os.path.join(dest, basename + '.json')
    html_path = os.path.join(dest, basename + '.html')
    write_text_atomically(json_path, json.dumps(report, indent=1, sort_keys=True) + '\n')
    write_text_atomically(html_path, render_html(report))
    return json_path, html_path
