# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the small sysfs/procfs tree that scripts/check_package points livepatch_info at.

A Debian trixie kernel (6.12: ``replace`` and ``patched`` attributes, no ``stack_order``) with
two live patches loaded one after the other, and one retired patch module (disabled, still
loaded, refcnt 0). Built with the helpers of ``tests/unit/sysfs_trees.py``, the same way the
unit tests build their trees.

Usage: ``python3 make_fixture.py DIRECTORY`` for that tree, or
``python3 make_fixture.py --recorded NAME DIRECTORY`` for the tree the lab recorded from a
real kernel in ``tests/unit/fixtures/NAME.json``; its ``expected`` block is then written to
``DIRECTORY.expected.json``.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'unit'))

import sysfs_trees  # noqa: E402  pylint: disable=wrong-import-position

RELEASE = '6.12.117+deb13-amd64'
BOTTOM_BUILD_ID = '5fbb0dcefd0bb3ac1c20ed792c5e470bede8f516'


def tree():
    """The fixture as path -> content (see sysfs_trees.write_tree)."""
    files = sysfs_trees.base(RELEASE, tainted='32768')
    # Named so that sorting by name would give the wrong order: only /proc/modules tells.
    files.update(sysfs_trees.patch_files('lp_sched_fix', extra={'replace': '0\n'}, patched='1',
                                         build_id=BOTTOM_BUILD_ID, funcs=['cmdline_proc_show,1']))
    files.update(sysfs_trees.patch_files('lp_cve_2026_0002', extra={'replace': '0\n'}, patched='1',
                                         funcs=['meminfo_proc_show,1']))
    files['sys/module/lp_old/refcnt'] = '0\n'
    files['sys/module/lp_old/taint'] = 'OEK\n'
    # /proc/modules lists the newest module first (docs/developer.md §4.2).
    files.update(sysfs_trees.proc_modules([('lp_old', 0, 'OEK'), ('lp_cve_2026_0002', 1, 'OEK'),
                                           ('lp_sched_fix', 1, 'OEK')]))
    return files


def recorded(name, directory):
    """Write a recorded tree and, beside it, what the recording expects livepatch_info to see."""
    data, files = sysfs_trees.load_recorded(name)
    sysfs_trees.write_tree(directory, files)
    with open(directory.rstrip(os.sep) + '.expected.json', 'w') as handle:
        json.dump(data['expected'], handle)


def main(argv):
    if len(argv) == 4 and argv[1] == '--recorded':
        recorded(argv[2], argv[3])
        return 0
    if len(argv) != 2:
        sys.stderr.write('usage: make_fixture.py DIRECTORY | make_fixture.py --recorded NAME DIRECTORY\n')
        return 2
    sysfs_trees.write_tree(argv[1], tree())
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
