# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Helpers of the AWX-path tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def galaxy_env(collections_path) -> dict:
    """The environment for ansible-galaxy install -p PATH: PATH is the only collections path, so a
    kernelops.livepatch found elsewhere (the checkout's symlink tree) does not make it skip."""
    return dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections_path), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="False")


def run(argv, **kwargs):
    """subprocess.run with the output kept; a failure shows it."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)
    if done.returncode != 0:
        raise AssertionError(f"{argv} exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done
