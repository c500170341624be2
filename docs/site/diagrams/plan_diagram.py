# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Draw the plans of the real planner as SVG, for the docs site.

Runs ``plan_stack`` from ``plugins/module_utils/_plan.py`` on example snapshots (built the way
``tests/unit/plugins/module_utils/test_plan.py`` builds them) and writes one SVG per example:
a column per state of the kernel's stack, from the live stack to the desired one, with the
planner's steps between the columns. Nothing is drawn by hand, so a change in the planner
changes the pictures.

Usage: ``python3 plan_diagram.py OUTPUT_DIR`` (``docs/site/build.sh`` runs it before Sphinx).
The collection is imported as ``ansible_collections.kernelops.livepatch`` from
ANSIBLE_COLLECTIONS_PATH or, failing that, from this checkout through a temporary symlink.
"""

from __future__ import annotations

import os
import sys
import tempfile
from html import escape

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..'))


def _import_planner():
    """Return the _observe and _plan modules of the collection."""
    for entry in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep):
        if entry and entry not in sys.path:
            sys.path.append(entry)
    try:
        from ansible_collections.kernelops.livepatch.plugins.module_utils import _observe, _plan
    except ImportError:
        # Not findable: link this checkout into a throwaway collections tree (outside it,
        # so nothing walking the checkout meets a loop).
        tree = tempfile.mkdtemp(prefix='kernelops-diagrams-')
        os.makedirs(os.path.join(tree, 'ansible_collections', 'kernelops'))
        os.symlink(REPO, os.path.join(tree, 'ansible_collections', 'kernelops', 'livepatch'))
        sys.path.insert(0, tree)
        for name in [m for m in sys.modules if m == 'ansible_collections' or m.startswith('ansible_collections.')]:
            del sys.modules[name]
        from ansible_collections.kernelops.livepatch.plugins.module_utils import _observe, _plan
    return _observe, _plan


_observe, _plan = _import_planner()

RELEASE = '7.2.13+deb14-amd64'  # a 5.1+ kernel (sid), whose rules most hosts follow

# Colours: kept (bottom, untouched), popped, pushed, off the stack but still loaded.
KEPT = ('#d9ead3', '#38761d')
POPPED = ('#fce5cd', '#b45f06')
PUSHED = ('#cfe2f3', '#0b5394')
OFF = ('#ffffff', '#888888')

BOX_W, BOX_H, GAP = 112, 34, 6
COL_W = 150
MIN_WIDTH = 1090
TOP = 86
FONT = 'font-family="DejaVu Sans, Verdana, Arial, sans-serif"'


def snapshot(live, builds=None, release=RELEASE):
    """A snapshot of a 5.1+ kernel whose stack is ``live`` (bottom first), as test_plan.py makes them."""
    builds = builds or {}
    patches = tuple(_observe.Patch(name=name, enabled=True, build_id=builds.get(name, 'v1')) for name in live)
    caps = _observe.capabilities_for(release, set())
    return _observe.Snapshot(root='/', kernel_release=release, livepatch_supported=True, capabilities=caps,
                             stack=patches, order_source='proc_modules')


def wanted(specs):
    """``name`` or ``name@build``; a name starting with ``R`` is a replace patch (as in test_plan.py)."""
    result = []
    for spec in specs:
        name, _sep, build = spec.partition('@')
        result.append(_plan.Wanted(name=name, path='/var/lib/kernelops-livepatch/%s.ko' % name,
                                   build_id=build or 'v1', replace=name.startswith('R')))
    return result


def states(live, kept, steps, labels):
    """The stack (bottom first) and the loaded-but-off modules after each step.

    Entries are (label, kind): kind is ``kept``, ``popped`` or ``pushed``; ``labels`` gives the
    label of each pushed patch (its name, with the build when the example names one).
    """
    # a patch above the common bottom that no step disables or retires stays live (skip_unrelated)
    gone = set(step.patch for step in steps if step.action == 'disable') | set(
        name for step in steps for name in step.retires)
    stack = [(name, 'kept' if index < kept or name not in gone else 'popped') for index, name in enumerate(live)]
    off = []
    result = [(list(stack), list(off))]

    def take(entries, name):
        for entry in entries:
            if entry[0].split(' ')[0] == name:
                entries.remove(entry)
                return entry
        raise ValueError('%s is not there' % name)

    for step in steps:
        if step.action == 'disable':
            off.append(take(stack, step.patch))
        elif step.action == 'unload':
            take(off, step.patch)
        elif step.action == 'load':
            for name in step.retires:  # a replace patch retires these when it lands (docs/developer.md §3.4)
                off.append(take(stack, name))
            stack.append((labels.get(step.patch, step.patch), 'pushed'))
        elif step.action == 'enable':
            stack.append(take(off, step.patch))
        result.append((list(stack), list(off)))
    return result


def _box(x, y, label, colours, dashed=False):
    fill, stroke = colours
    dash = ' stroke-dasharray="5,4"' if dashed else ''
    return ('<rect x="%d" y="%d" width="%d" height="%d" rx="5" fill="%s" stroke="%s" stroke-width="2"%s/>'
            '<text x="%d" y="%d" text-anchor="middle" font-size="15" %s fill="#222">%s</text>'
            % (x, y, BOX_W, BOX_H, fill, stroke, dash, x + BOX_W // 2, y + 22, FONT, escape(label)))


def draw(title, live, desired, plan, labels):
    """One SVG: a column per state, steps between the columns, a legend below."""
    columns = states(live, plan.kept, plan.steps, labels)
    colours_of = {'kept': KEPT, 'popped': POPPED, 'pushed': PUSHED}
    height_slots = max(max(len(stack) + len(off) for stack, off in columns), 1)
    stack_bottom = TOP + 24 + height_slots * (BOX_H + GAP) + 18
    # One width for every picture, so that the guide scales them all alike and the
    # subtitle and legend always fit.
    width = max(MIN_WIDTH, 40 + COL_W * len(columns))
    height = stack_bottom + 40 + 20 * len(plan.steps) + 70
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">'
           % (width, height, width, height),
           '<title>%s</title>' % escape(title),
           '<rect width="100%" height="100%" fill="#ffffff"/>',
           '<text x="20" y="30" font-size="18" font-weight="bold" %s fill="#222">%s</text>' % (FONT, escape(title)),
           '<text x="20" y="54" font-size="15" %s fill="#444">live %s, desired %s: kept %d at the bottom, '
           '%d steps; each column is the stack after a step, bottom at the bottom</text>'
           % (FONT, escape(', '.join(live) or 'empty'), escape(', '.join(desired) or 'empty'), plan.kept,
              len(plan.steps))]
    for index, (stack, off) in enumerate(columns):
        x = 20 + index * COL_W + (COL_W - BOX_W) // 2 - 10
        label = 'live' if index == 0 else ('after step %d' % index)
        if index == len(columns) - 1 and index:
            label = 'after step %d: desired' % index if len(columns) > 2 else 'desired'
        out.append('<text x="%d" y="%d" text-anchor="middle" font-size="14" %s fill="#444">%s</text>'
                   % (x + BOX_W // 2, TOP, FONT, escape(label if index else 'live (before)')))
        y = stack_bottom - BOX_H
        for name, kind in stack:
            out.append(_box(x, y, name, colours_of[kind]))
            y -= BOX_H + GAP
        for name, _kind in off:
            out.append(_box(x, y, name + ' (off)', OFF, dashed=True))
            y -= BOX_H + GAP
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#222" stroke-width="2"/>'
                   % (x - 4, stack_bottom + 4, x + BOX_W + 4, stack_bottom + 4))
        if index:
            # Arrow from the previous column's box to this one, with the step number above.
            x1, x2, ay = x - COL_W + BOX_W + 3, x - 3, stack_bottom - BOX_H // 2
            out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#555" stroke-width="2"/>'
                       '<polygon points="%d,%d %d,%d %d,%d" fill="#555"/>'
                       % (x1, ay, x2 - 8, ay, x2 - 9, ay - 6, x2, ay, x2 - 9, ay + 6))
            out.append('<text x="%d" y="%d" text-anchor="middle" font-size="14" font-weight="bold" %s '
                       'fill="#222">%d</text>' % ((x1 + x2) // 2, ay - 10, FONT, index))
    y = stack_bottom + 36
    out.append('<text x="20" y="%d" font-size="16" font-weight="bold" %s fill="#222">The plan, as the modules '
               'return it in plan:</text>' % (y, FONT))
    for number, step in enumerate(plan.steps, 1):
        y += 22
        values = (y, FONT, number, escape(step.action), escape(step.patch), escape(step.reason))
        out.append('<text x="30" y="%d" font-size="16" %s fill="#222"><tspan font-weight="bold">%d. %s %s'
                   '</tspan> - %s</text>' % values)
    y += 34
    legend = [(KEPT, False, 'kept, live throughout'), (POPPED, False, 'popped or retired'), (PUSHED, False, 'pushed'),
              (OFF, True, 'off the stack, module still loaded')]
    x = 20
    for colours, dashed, text in legend:
        fill, stroke = colours
        dash = ' stroke-dasharray="4,3"' if dashed else ''
        out.append('<rect x="%d" y="%d" width="22" height="16" rx="3" fill="%s" stroke="%s" stroke-width="2"%s/>'
                   '<text x="%d" y="%d" font-size="13" %s fill="#222">%s</text>'
                   % (x, y - 13, fill, stroke, dash, x + 30, y, FONT, escape(text)))
        x += 60 + 8 * len(text)
    out.append('</svg>')
    return '\n'.join(out) + '\n'


EXAMPLES = [
    ('pop_push.svg', 'Pop to 1, push d and e', ['a', 'b', 'c'], ['a', 'd', 'e'], {}),
    ('bug_at_bottom.svg', 'Bug at the bottom: a rebuilt a (same name, new build)', ['a', 'b'], ['a@v2', 'b'],
     {'a': 'v1'}),
    ('replace.svg', 'A replace patch pushed over the live stack', ['a', 'b'], ['R1', 'c'], {}),
    # option skip_unrelated, with evidence that b is related to neither c nor d
    ('skip_unrelated.svg', 'skip_unrelated: b rebuilt; c and d, unrelated to b, stay live', ['a', 'b', 'c', 'd'],
     ['a', 'b@v2', 'c', 'd'], {'b': 'v1'}, frozenset([frozenset('bc'), frozenset('bd')])),
]


def main(argv):
    if len(argv) != 2:
        sys.stderr.write('usage: plan_diagram.py OUTPUT_DIR\n')
        return 2
    directory = argv[1]
    os.makedirs(directory, exist_ok=True)
    for filename, title, live, desired, builds, *unrelated in EXAMPLES:
        plan = _plan.plan_stack(snapshot(live, builds), wanted(desired), unrelated=(unrelated or [None])[0])
        names = [spec.partition('@')[0] for spec in desired]
        labels = dict((spec.partition('@')[0], spec.replace('@', ' ')) for spec in desired if '@' in spec)
        with open(os.path.join(directory, filename), 'w') as handle:
            handle.write(draw(title, live, names, plan, labels))
        summary = ', '.join('%s %s' % (step.action, step.patch) for step in plan.steps)
        print('%s: %s' % (os.path.join(directory, filename), summary))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
