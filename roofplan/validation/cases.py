"""One published measurement (:class:`Case`) and the registry of the predictor of each row kind.

Kept apart from :mod:`roofplan.validation.suite` so that the predictor modules (train_predict,
serve_predict, op_predict, ...) register themselves here and the suite imports them without an
import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from roofplan.errors import InputError


@dataclass(frozen=True)
class Case:
    """One published measurement: the raw CSV row plus typed accessors."""

    row: dict[str, str]
    line: int = 0

    @property
    def id(self) -> str:
        return self.row["id"]

    @property
    def kind(self) -> str:
        return self.row["kind"]

    @property
    def metric(self) -> str:
        return self.row["metric"]

    @property
    def measured(self) -> float:
        return float(self.row["value"])

    @property
    def source(self) -> str:
        return self.row.get("source", "")

    def int(self, name: str, default: int | None = None) -> int | None:
        """A whole-number column (``"8"``, ``"2e3"``) in [1, 2^31 - 1], else InputError naming the row:
        counts beyond it overflow the int64 arithmetic of the cost model (``1e400`` once raised
        OverflowError, ``1e14`` tokens gave a 10^21 ms prediction)."""
        v = (self.row.get(name) or "").strip()
        if not v:
            return default
        try:
            f = float(v)
        except ValueError:
            raise InputError(f"{self.id} {name}", v, "a whole number") from None
        if not (
            math.isfinite(f) and f == int(f) and 1 <= f <= 2**31 - 1
        ):  # counts: 0 GPUs or tp=0 divide by 0
            raise InputError(f"{self.id} {name}", v, "a whole number in [1, 2,147,483,647]")
        return int(f)

    def str(self, name: str, default: str = "") -> str:
        return (self.row.get(name) or "").strip() or default


Predictor = Callable[[Case, "str | Path | dict | None"], float]
_PREDICTORS: dict[str, Predictor] = {}


def predictor(kind: str) -> Callable[[Predictor], Predictor]:
    """Register the predictor of one kind of case."""

    def deco(fn: Predictor) -> Predictor:
        _PREDICTORS[kind] = fn
        return fn

    return deco
