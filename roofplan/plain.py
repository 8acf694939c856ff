"""JSON/YAML-safe copies of result documents (one helper for every writer of JSON or YAML)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def plain(obj: Any) -> Any:
    """A copy with numpy scalars and arrays turned into Python numbers and lists, tuples into
    lists, dict keys into strings, and non-finite floats into None (JSON has no NaN/inf)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain(obj.tolist())
    if isinstance(obj, np.generic):
        return plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
