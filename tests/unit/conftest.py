# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make the checkout importable as ``ansible_collections.kernelops.livepatch`` for plain pytest."""

from __future__ import annotations

import importlib.util
import os
import sys
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))


def _collection_path():
    """Return a directory holding ``ansible_collections/kernelops/livepatch`` that points at this checkout."""
    marker = os.sep + os.path.join('ansible_collections', 'kernelops', 'livepatch')
    if REPO.endswith(marker):
        return REPO[:-len(marker)]
    try:
        if importlib.util.find_spec('ansible_collections.kernelops.livepatch') is not None:
            return None  # scripts/test put the collection on PYTHONPATH already
    except ImportError:
        pass
    # Outside the checkout, so nothing that walks the checkout meets a symlink loop.
    base = os.path.join(os.path.expanduser('~'), '.cache', 'kernelops-livepatch', 'collections-dev-%08x' % zlib.crc32(REPO.encode()))
    link = os.path.join(base, 'ansible_collections', 'kernelops', 'livepatch')
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return base


for _path in (_collection_path(), HERE):
    if _path and _path not in sys.path:
        sys.path.insert(0, _path)
