# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""kernelops.livepatch real-kernel lab: Debian kernels under QEMU, driven over SSH.

Usage (with ``lab/`` on ``sys.path``)::

    import klab
    lab = klab.Lab().build(["sid"])
    with lab.boot("sid") as vm:
        vm.ssh(f"insmod {vm.patch_dir}/lab_a.ko")
        assert "lab_a" in vm.live_effects()

See CONTRIBUTING.md "The lab" for the contract and lab/README.md for the design and timings.
"""

from __future__ import annotations

from .lab import Lab
from .qemu import VM, attach
from .util import KERNELS, LabError

__all__ = ["KERNELS", "Lab", "LabError", "VM", "attach"]
