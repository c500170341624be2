# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where ``ansible_collections/kernelops/livepatch`` points at this checkout, for tests run by hand.

``scripts/test`` sets ``ANSIBLE_COLLECTIONS_PATH`` and ``PYTHONPATH`` itself; this is the fallback.
"""

from __future__ import annotations

import importlib.util
import os
import zlib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = os.sep + os.path.join('ansible_collections', 'kernelops', 'livepatch')


def collection_tree():
    """A directory holding ``ansible_collections/kernelops/livepatch`` → this checkout."""
    if REPO.endswith(MARKER):
        return REPO[:-len(MARKER)]
    for path in (os.environ.get('ANSIBLE_COLLECTIONS_PATH') or '').split(os.pathsep):
        if path and os.path.exists(os.path.join(path, 'ansible_collections', 'kernelops', 'livepatch')):
            return path
    # Outside the checkout, so nothing that walks the checkout meets a symlink loop.
    base = os.path.join(os.path.expanduser('~'), '.cache', 'kernelops-livepatch',
                        'collections-dev-%08x' % zlib.crc32(REPO.encode()))
    link = os.path.join(base, 'ansible_collections', 'kernelops', 'livepatch')
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)
    return base


def importable():
    try:
        return importlib.util.find_spec('ansible_collections.kernelops.livepatch') is not None
    except ImportError:
        return False


if __name__ == '__main__':
    print(collection_tree())
