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
