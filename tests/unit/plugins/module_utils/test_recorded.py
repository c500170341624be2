# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Replay sysfs/procfs trees recorded on the lab's real kernels (tests/integration/test_info_real.py
with KERNELOPS_RECORD_FIXTURES=1) and check the observe layer reads what the shell saw there."""

from __future__ import annotations

import glob
import os

import pytest

from ansible_collections.kernelops.livepatch.plugins.module_utils._observe import observe

from sysfs_trees import FIXTURES, load_recorded, write_tree

RECORDED = sorted(os.path.basename(path)[:-5] for path in glob.glob(os.path.join(FIXTURES, '*.json')))
KERNELS = ('bookworm', 'trixie', 'sid')


def test_every_kernel_has_recorded_trees():
    for kernel in KERNELS:
        assert [name for name in RECORDED if name.startswith(kernel + '-')], 'no tree recorded from %s' % kernel


@pytest.mark.parametrize('name', RECORDED)
def test_recorded_tree(tmp_path, name):
    data, tree = load_recorded(name)
    snap = observe(write_tree(str(tmp_path), tree))
    expected = data['expected']
    assert snap.kernel_release == data['release']
    assert [p.name for p in snap.stack if p.enabled] == expected['names']
    if 'order_source' in expected:
        assert snap.order_source == expected['order_source']
    assert (snap.transition.patch if snap.transition else None) == expected['transition']
    if 'blocker_comms' in expected:
        assert sorted(b['comm'] for b in snap.transition.blockers) == expected['blocker_comms']
    assert sorted([x.name, x.state] for x in snap.leftovers) == sorted(expected['leftovers'])
    assert snap.warnings == ()
