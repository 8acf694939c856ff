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


#: Magnitude of an integer result that can only come from an overflow (a float ``inf`` or 1e300
#: cast to int64 gives -2^63; no count in a plan reaches 2^53).
_MAX_INT_RESULT = 2**53


def check_finite(doc: Any, inputs: str = "") -> Any:
    """``doc`` unchanged when every number in it is finite, else an InputError (exit 2) naming the
    first result field that is not and the inputs that produced it: a NaN or infinity from extreme
    but individually valid inputs is never reported as a result (SPEC §4)."""
    from roofplan.errors import InputError

    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, dict):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in reversed(list(v.items())))
        elif isinstance(v, (list, tuple)):
            stack.extend((f"{path}[{i}]", x) for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, np.ndarray):
            stack.append((path, v.tolist()))
        elif isinstance(v, bool | np.bool_):
            continue
        elif isinstance(v, float | np.floating) and not math.isfinite(float(v)):
            raise InputError(path, float(v), _why(inputs))
        elif isinstance(v, int | np.integer) and abs(int(v)) > _MAX_INT_RESULT:
            raise InputError(path, int(v), _why(inputs))
    return doc


def _why(inputs: str) -> str:
    src = f" from {inputs}" if inputs else ""
    return (f"a finite result; the inputs{src} drive the cost model out of range (an efficiency, bandwidth, "
            "latency or size at the edge of what is allowed): check their values")
