# -*- coding: utf-8 -*-
# Copyright (c) 2026, kernelops.livepatch contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""``value_object``: frozen, typed, keyword-only dataclasses on every target Python.

PRIVATE: this module_util may change at any time.

``dataclass(kw_only=True)`` exists from Python 3.10; managed hosts may run 3.9. On 3.10+ the
decorator makes the fields keyword-only, so a positional call fails in the tests (which run on
3.11+); on 3.9 the same class is a plain frozen dataclass. Declare fields without defaults
before fields with defaults so the class is valid on both.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, TypeVar

__all__ = ['value_object']

T = TypeVar('T')

_OPTIONS = {'frozen': True}
if sys.version_info >= (3, 10):
    _OPTIONS['kw_only'] = True


def value_object(cls: T) -> T:
    """Make ``cls`` a frozen (and, on 3.10+, keyword-only) dataclass."""
    decorate: Callable[[Any], Any] = dataclasses.dataclass(**_OPTIONS)
    return decorate(cls)
