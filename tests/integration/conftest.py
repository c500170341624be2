# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Fixtures for tests on real kernels booted by the lab (lab/klab).

``lab``     the built lab (session scope; builds what is missing, cached across runs)
``lab_vm``  a booted guest, parametrized over the selected kernels, booted once per kernel
            per session and stopped when the session moves on to the next kernel or ends

Kernels: all three by default; ``KERNELOPS_LAB_KERNELS=bookworm,sid`` or
``--lab-kernels=bookworm,sid`` narrows the set.

Every test file shares the one guest per kernel. A test marked ``lab_last`` leaves the guest in a
state the others cannot use (another kernel booted): it runs after every other test of its
kernel. At the end the session prints where each test's time went (``lab time per test``):
``ansible`` module runs, ``module`` runs by the guest runner (``drive.Runner``), role
(``ansible-playbook``) runs, ``shell`` commands by the runner, plain ssh commands, reboots and boots,
each as count and seconds, and the rest (the model's half, the controller's own work).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

LAB_DIR = Path(__file__).resolve().parents[2] / "lab"
if str(LAB_DIR) not in sys.path:
    sys.path.insert(0, str(LAB_DIR))

import klab  # noqa: E402  pylint: disable=wrong-import-position
from klab.qemu import SPENT  # noqa: E402  pylint: disable=wrong-import-position
from drive import reboot_if_pending  # noqa: E402  pylint: disable=wrong-import-position

COST_KINDS = ('ansible', 'module', 'role', 'shell', 'ssh', 'reboot', 'boot')
COSTS = []  # (test id, wall seconds, {kind: (count, seconds)})


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--lab-kernels``: comma-separated kernel names (bookworm, trixie, sid)."""
    parser.addoption("--lab-kernels", default=None,
                     help="comma-separated lab kernels to test on (default: $KERNELOPS_LAB_KERNELS or all)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab_last: runs after every other test of its kernel's guest "
                                       "(it leaves the guest on another kernel)")
    config.addinivalue_line("markers", "lab_order(n): runs before (n < 0) the unmarked tests of its kernel's "
                                       "guest, lowest n first")


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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After pytest grouped the tests by kernel (one guest each): ``lab_order(n)`` tests first,
    lowest n first, and ``lab_last`` tests to the end of their kernel's group, else in their order."""
    def kernel(item: pytest.Item):
        callspec = getattr(item, "callspec", None)
        return callspec.params.get("lab_vm") if callspec else None

    def place(item: pytest.Item):
        order = item.get_closest_marker("lab_order")
        if order is not None:
            return order.args[0]
        return 1 if item.get_closest_marker("lab_last") is not None else 0
    groups: list[list[pytest.Item]] = []
    for item in items:
        if groups and kernel(groups[-1][0]) == kernel(item):
            groups[-1].append(item)
        else:
            groups.append([item])
    items[:] = [item for group in groups for item in sorted(group, key=place)]


@pytest.fixture(autouse=True)
def _reboot_left_for_the_next_test(request: pytest.FixtureRequest):
    """A test that left its kernel in a state only a reboot undoes (``drive.reboot_pending``) has
    that reboot done by the next test of the guest that reboots anyway (its higher-scoped fixture
    already did: the boot changed), else here, before this test runs."""
    if "lab_vm" in request.fixturenames:
        reboot_if_pending(request.getfixturevalue("lab_vm"))
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):  # pylint: disable=unused-argument
    """Count where the test's time went (setup, call and teardown): see the module's docstring."""
    before = {kind: tuple(SPENT.get(kind, (0, 0.0))) for kind in COST_KINDS}
    start = time.monotonic()
    yield
    spent = {}
    for kind in COST_KINDS:
        count, seconds = SPENT.get(kind, (0, 0.0))
        spent[kind] = (count - before[kind][0], seconds - before[kind][1])
    COSTS.append((item.nodeid.split("::", 1)[-1], time.monotonic() - start, spent))


def pytest_terminal_summary(terminalreporter) -> None:
    if not any(spent["ansible"][0] or spent["module"][0] or spent["reboot"][0] or spent["role"][0]
               for _name, _wall, spent in COSTS):
        return
    write = terminalreporter.write_line
    terminalreporter.section("lab time per test (count x, seconds)")
    write("%8s %s %8s  %s" % ("wall", " ".join("%12s" % kind for kind in COST_KINDS), "rest", "test"))
    totals = dict((kind, [0, 0.0]) for kind in COST_KINDS)
    wall_total = 0.0
    for name, wall, spent in sorted(COSTS, key=lambda cost: -cost[1]):
        rest = wall - sum(seconds for _count, seconds in spent.values())
        write("%8.1f %s %8.1f  %s" % (wall, " ".join("%3dx %7.1f" % spent[kind] for kind in COST_KINDS), rest, name))
        wall_total += wall
        for kind in COST_KINDS:
            totals[kind][0] += spent[kind][0]
            totals[kind][1] += spent[kind][1]
    rest = wall_total - sum(seconds for _count, seconds in totals.values())
    write("%8.1f %s %8.1f  %s" % (wall_total, " ".join("%3dx %7.1f" % tuple(totals[kind]) for kind in COST_KINDS),
                                  rest, "all"))


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> klab.Lab:
    """The lab with every selected kernel built (a failure to build fails the tests, never skips)."""
    return klab.Lab().build(selected_kernels(request.config))


@pytest.fixture(scope="session")
def lab_vm(request: pytest.FixtureRequest, lab: klab.Lab):  # pylint: disable=redefined-outer-name
    """A guest booted on the kernel named by the parameter; stopped at teardown, whatever happened."""
    vm = lab.boot(request.param, reboot_exits=True, pycache=True)
    try:
        yield vm
    finally:
        vm.stop()
