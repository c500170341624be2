# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Make the checkout importable as ``ansible_collections.kernelops.livepatch`` for plain pytest."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from collection_tree import collection_tree, importable  # noqa: E402  pylint: disable=wrong-import-position

if not importable():
    sys.path.insert(0, collection_tree())
if HERE not in sys.path:
    sys.path.insert(0, HERE)
