# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for tests on real kernels booted by the lab (lab/klab).

``lab``     the built lab (session scope; builds what is missing, cached across runs)
``lab_vm``  a booted guest, parametrized over the selected kernels, booted once per kernel
            per session and stopped when the session moves on to the next kernel or ends

Kernels: all three by default; ``KERNELOPS_LAB_KERNELS=bookworm,sid`` or
``--lab-kernels=bookworm,sid`` narrows the set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

LAB_DIR = Path(__file__).resolve().parents[2] / "lab"
if str(LAB_DIR) not in sys.path:
    sys.path.insert(0, str(LAB_DIR))

import klab  # noqa: E402  pylint: disable=wrong-import-position


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--lab-kernels``: comma-separated kernel names (bookworm, trixie, sid)."""
    parser.addoption("--lab-kernels", default=None,
                     help="comma-separated lab kernels to test on (default: $KERNELOPS_LAB_KERNELS or all)")


def selected_kernels(config: pytest.Config) -> list[str]:
    """The kernels this session tests on, in the lab's order."""
    raw = config.getoption("--lab-kernels") or os.environ.get("KERNELOPS_LAB_KERNELS") or ",".join(klab.KERNELS)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in klab.KERNELS]
    if unknown or not names:
        raise pytest.UsageError(f"unknown lab kernel(s) {unknown or raw!r}; known: {', '.join(klab.KERNELS)}")
    return [name for name in klab.KERNELS if name in names]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``lab_vm`` over the selected kernels (ids are the kernel names)."""
    if "lab_vm" in metafunc.fixturenames:
        metafunc.parametrize("lab_vm", selected_kernels(metafunc.config), indirect=True, scope="session")


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> klab.Lab:
    """The lab with every selected kernel built (a failure to build fails the tests, never skips)."""
    return klab.Lab().build(selected_kernels(request.config))


@pytest.fixture(scope="session")
def lab_vm(request: pytest.FixtureRequest, lab: klab.Lab):  # pylint: disable=redefined-outer-name
    """A guest booted on the kernel named by the parameter; stopped at teardown, whatever happened."""
    vm = lab.boot(request.param)
    try:
        yield vm
    finally:
        vm.stop()
