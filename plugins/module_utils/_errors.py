# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The one error type of this collection: a rule, a message, the patches involved.

PRIVATE: this module_util may change at any time.

Every layer (file checks, planner, executor, host lock) raises :class:`LivepatchError` or a
subclass; only a module's ``main()`` turns it into ``fail_json(msg=..., rule=..., patches=...)``.
``rule`` is a stable identifier listed in the docs' rule table; ``detail`` carries what was
observed (errno, blockers, kernel messages) and is merged into the module result.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

__all__ = ['LivepatchError']


class LivepatchError(Exception):
    """Something this run will not do, or could not do. Arguments in this order everywhere."""

    def __init__(self, rule: str, message: str, patches: Sequence[str] = (),
                 detail: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.patches = list(patches)
        self.detail: Dict[str, Any] = dict(detail or {})

    def as_dict(self) -> Dict[str, Any]:
        return {'rule': self.rule, 'message': self.message, 'patches': list(self.patches)}

    def __str__(self) -> str:
        return self.message
