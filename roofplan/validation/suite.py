"""The built-in suite of published measurements behind ``roofplan validate``.

Cases come from ``published_measurements.csv`` and ``load_measurements.csv`` (shipped with the
package; every row names its source). Each ``kind`` of row (``train``, ``serve_step``,
``serve_throughput``, ``serve_load``, ``op_gemm``, ``op_allreduce``) has one predictor registered with :func:`predictor`; a predictor maps a case to
the predicted value of the row's ``metric`` in the row's ``unit`` (:mod:`roofplan.validation.cases`
holds :class:`Case` and the registry, so the predictor modules do not import this one back). Efficiency parameters come from
the catalogs (or a calibration overlay), never from the case.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from roofplan.errors import InputError
from roofplan.inputs import MAX_ROWS
from roofplan.validation.cases import _PREDICTORS, Case, Predictor, predictor  # noqa: F401 - re-exported

SUITE_CSV = "published_measurements.csv"
#: Rows measured under load (kind ``serve_load``, :mod:`roofplan.validation.load_predict`), kept in
#: their own file: the calibration formats read SUITE_CSV and fit only the kinds they know.
LOAD_CSV = "load_measurements.csv"
#: Energy of published training runs (``train_energy`` rows, :mod:`roofplan.validation.energy_predict`):
#: kept apart from SUITE_CSV, whose rows are also calibration measurements.
ENERGY_CSV = "energy_measurements.csv"

#: Columns of the shared measurements format (also accepted by ``roofplan calibrate``).
COLUMNS = (
    "id",
    "kind",
    "model",
    "hardware",
    "gpus",
    "tp",
    "pp",
    "dp",
    "vpp",
    "global_batch",
    "micro_batch",
    "seq_len",
    "dtype",
    "recompute",
    "sequence_parallel",
    "batch",
    "isl",
    "osl",
    "engine",
    "metric",
    "value",
    "unit",
    "source",
    "note",
)


@dataclass
class Result:
    case: Case
    predicted: float | None
    error: float | None  # predicted / measured - 1
    note: str = ""

    def to_json(self) -> dict:
        return {
            "id": self.case.id,
            "kind": self.case.kind,
            "model": self.case.str("model"),
            "hardware": self.case.str("hardware"),
            "metric": self.case.metric,
            "unit": self.case.str("unit"),
            "measured": self.case.measured,
            "predicted": self.predicted,
            "error": self.error,
            "source": self.case.source,
            "note": self.note,
        }


@dataclass
class SuiteResult:
    results: list[Result] = field(default_factory=list)

    def errors(self, kinds: tuple[str, ...] | None = None) -> list[float]:
        return [
            abs(r.error)
            for r in self.results
            if r.error is not None and (kinds is None or r.case.kind in kinds)
        ]

    def median_abs_error(self, kinds: tuple[str, ...] | None = None) -> float | None:
        e = self.errors(kinds)
        return statistics.median(e) if e else None

    def worst_abs_error(self, kinds: tuple[str, ...] | None = None) -> float | None:
        e = self.errors(kinds)
        return max(e) if e else None

    def to_json(self) -> dict:
        groups = {
            "train": ("train",),
            "serve": ("serve_step", "serve_throughput"),
            "serve_load": ("serve_load",),
            "ops": ("op_gemm", "op_allreduce"),
            "energy": ("train_energy", "serve_energy"),
        }
        summary = {
            name: {
                "cases": len(self.errors(k)),
                "median_abs_error": self.median_abs_error(k),
                "worst_abs_error": self.worst_abs_error(k),
            }
            for name, k in groups.items()
        }
        summary["all"] = {
            "cases": len(self.errors()),
            "median_abs_error": self.median_abs_error(),
            "worst_abs_error": self.worst_abs_error(),
        }
        return {
            "schema": "roofplan.validate/v1",
            "cases": [r.to_json() for r in self.results],
            "summary": summary,
        }


def _load_predictors() -> None:
    """Import the predictor modules for their @predictor registrations (each owns one family of
    cases; they import :mod:`roofplan.validation.cases`, not this module)."""
    from roofplan.validation import (  # noqa: F401
        energy_predict,
        load_predict,
        op_predict,
        serve_predict,
        train_predict,
    )


def read_cases(path: str | Path | None = None) -> list[Case]:
    """Read measurement rows; ``None`` reads the built-in suite. Malformed rows raise InputError
    naming the line."""
    if path is None:
        return [
            c
            for n in (SUITE_CSV, LOAD_CSV, ENERGY_CSV)
            for c in _parse_cases(resources.files("roofplan.validation").joinpath(n).read_text(), n)
        ]
    else:
        from roofplan.inputs import is_file, read_text, user_path

        p = user_path(path, "measurements")
        if not is_file(p):
            raise InputError("measurements", str(path), "expected an existing CSV file")
        text, name = read_text(p, "measurements", "measurements"), str(path)
    return _parse_cases(text, name)


def _parse_cases(text: str, name: str) -> list[Case]:
    reader = csv.DictReader(text.splitlines())
    missing = {"id", "kind", "metric", "value"} - set(reader.fieldnames or ())
    if missing:
        raise InputError(
            f"{name} header",
            ",".join(reader.fieldnames or ()),
            f"expected columns including {', '.join(sorted(missing))}",
        )
    cases = []
    for i, row in enumerate(reader, start=2):
        try:
            value = float(row["value"])
        except (TypeError, ValueError):
            raise InputError(f"{name} line {i} value", row.get("value"), "expected a number") from None
        if not (math.isfinite(value) and 1e-9 <= value <= 1e15):  # a ratio to it must be a number
            raise InputError(
                f"{name} line {i} value", row.get("value"), "expected a number in [1e-09, 1e+15]"
            )
        cases.append(Case(row=row, line=i))
        if len(cases) > MAX_ROWS:
            raise InputError(name, f"more than {MAX_ROWS:,} rows", f"at most {MAX_ROWS:,} rows per run")
    return cases


def _calibration_for(case: Case, calibration):
    """The overlay if it was fitted for this case's hardware (or names none), else None: a suite
    run with one device's overlay predicts the other devices' rows from their catalogs."""
    if calibration is None:
        return None
    from roofplan import resolve
    from roofplan.hardware.overlay import overlay_applies

    overlay = resolve.overlay(calibration)
    return overlay if overlay_applies(case.str("hardware"), overlay) else None


def predict(case: Case, calibration=None) -> float:
    _load_predictors()
    calibration = _calibration_for(case, calibration)
    try:
        fn = _PREDICTORS[case.kind]
    except KeyError:
        raise InputError(
            f"case {case.id} kind", case.kind, f"expected one of {', '.join(sorted(_PREDICTORS))}"
        ) from None
    try:
        return float(fn(case, calibration))
    except (ValueError, KeyError) as exc:  # a row the predictor cannot read: the row's fault, not ours
        raise InputError(
            f"case {case.id} (line {case.line})",
            case.metric,
            f"a {case.kind} row its predictor accepts ({type(exc).__name__}: {exc})",
        ) from None


def run_suite(calibration=None, cases: list[Case] | None = None) -> SuiteResult:
    """Predict every case; a case whose kind has no predictor yet is reported, not hidden."""
    from roofplan import resolve

    _load_predictors()
    calibration = resolve.overlay(calibration)  # the overlay file is read once per run, not per case
    out = SuiteResult()
    for case in cases if cases is not None else read_cases():
        if case.kind not in _PREDICTORS:
            out.results.append(Result(case, None, None, note=f"no predictor for kind {case.kind}"))
            continue
        value = predict(case, calibration)
        out.results.append(Result(case, value, value / case.measured - 1.0))
    return out
