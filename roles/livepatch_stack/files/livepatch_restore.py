# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Load the livepatch stack recorded for the running kernel again, at boot.

Installed by the role kernelops.livepatch.livepatch_stack and run by its systemd unit
(kernelops-livepatch-restore.service). The work is done by the collection's own code, installed
beside this file under ansible_collections/kernelops/livepatch/plugins/module_utils/
(_restore.py: the same planner, executor, file checks, journal and host lock as the modules).

- kernelops.livepatch=0 on the kernel command line: nothing is loaded.
- RELEASE/restore.json below --dir says what the last boot did; RELEASE/restore.marker, left by a
  boot that died while loading a patch, keeps that patch and the ones above it from loading until
  the operator clears it (role variable livepatch_stack_restore_crash_seen=true).
- It never unloads or disables anything at boot.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ansible_collections.kernelops.livepatch.plugins.module_utils._restore import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
