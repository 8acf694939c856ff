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
    but individually valid inputs is never reported as a result (docs/SPEC.md §4)."""
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
    return (
        f"a finite result; the inputs{src} give no number here (a value at the edge of its allowed range, "
        "or a quantity that does not exist for them, such as TPOT with one output token): check them"
    )


#: Result keys that hold wall-clock durations: the only fields that differ between two runs of the
#: same command (measured, not computed).
TIMING_KEYS = ("search_time_s", "solve_time_s")


def _timing_fields(doc: Any, path: str = "") -> dict[str, float]:
    found: dict[str, float] = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            where = f"{path}.{k}" if path else str(k)
            if k in TIMING_KEYS and isinstance(v, (int, float)):
                found[where] = v
            elif k != "timing":
                found.update(_timing_fields(v, where))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found.update(_timing_fields(v, f"{path}[{i}]"))
    return found


def with_timing(doc: dict) -> dict:
    """``doc`` with a ``"timing"`` object gathering every wall-clock field by its path
    (``{"search_time_s": .., "placement.solve_time_s": ..}``; docs/SPEC.md §6). The fields stay where they
    were as aliases, so earlier readers keep working; :func:`without_timing` removes both."""
    return {**doc, "timing": _timing_fields(doc)}


def without_timing(doc: Any) -> Any:
    """``doc`` without ``"timing"`` and its aliases: what is byte-identical between two runs."""
    if isinstance(doc, dict):
        return {k: without_timing(v) for k, v in doc.items() if k != "timing" and k not in TIMING_KEYS}
    if isinstance(doc, list):
        return [without_timing(v) for v in doc]
    return doc
