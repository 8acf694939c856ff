"""``roofplan validate --measurements``: predict measured operator rows without fitting anything.

Each row of a calibration-format CSV (docs/calibration.md: gemm, attention, decode_attention, moe,
collective) or nccl-tests text is predicted by the operator library on its hardware (the built-in
catalog, with ``--calibration`` applied) through the same row predictor calibrate and
``tools/fit_ops.py`` use (:mod:`roofplan.calibration.op_rows`). The result gives every row's error
and, per hardware and family, the median and p90 |error| by size band and over the rows that
``tools/fit_ops.py`` holds back from its fits (odd log2 size bins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.calibration.formats import OP_KINDS, read_measurements
from roofplan.calibration.op_rows import SIZE_MEASURES, family, held_back, predict_rows, size_band
from roofplan.errors import InputError

SCHEMA = "roofplan.validate.measurements/v1"


@dataclass
class MeasuredResult:
    rows: list[dict]
    families: list[dict]
    skipped: dict[str, int]

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "rows": self.rows, "families": self.families, "skipped": self.skipped}


def _stats(errors) -> dict:
    a = np.abs(np.asarray(errors, dtype=float))
    return {
        "rows": int(a.size),
        "median_abs_error": float(np.median(a)),
        "p90_abs_error": float(np.quantile(a, 0.9)),
        "signed_median_error": float(np.median(errors)),
    }


def _band_key(band: str) -> int:
    return int(band.split("-")[0][2:])


def validate_measurements(paths, *, hardware: str | None = None, calibration=None) -> MeasuredResult:
    """Predict every operator row of ``paths`` (rows of other hardware than ``hardware`` are skipped
    and counted; rows without a hardware column need ``hardware``)."""
    from roofplan import resolve

    ms = read_measurements(paths)
    skipped: dict[str, int] = {}
    by_hw: dict[str, list] = {}
    for m in ms:
        if m.kind not in OP_KINDS:
            skipped[f"kind {m.kind}"] = skipped.get(f"kind {m.kind}", 0) + 1
            continue
        hw_id = m.hardware or hardware
        if hw_id is None:
            raise InputError(f"{m.origin} hardware", "", "a row without a hardware column needs --hardware")
        if hardware and hw_id != hardware:
            skipped[f"hardware {hw_id}"] = skipped.get(f"hardware {hw_id}", 0) + 1
            continue
        by_hw.setdefault(hw_id, []).append(m)
    if not by_hw:
        raise InputError(
            "measurements",
            f"{len(ms)} rows",
            "expected operator rows (gemm, attention, "
            "decode_attention, moe, collective)" + (f" for hardware {hardware}" if hardware else ""),
        )
    rows, families = [], []
    for hw_id in sorted(by_hw):
        hw = resolve.hardware(hw_id, calibration)
        mine = by_hw[hw_id]
        pred = predict_rows(mine, hw)
        if not np.all(np.isfinite(pred)):
            bad = mine[int(np.flatnonzero(~np.isfinite(pred))[0])]
            raise InputError(
                bad.origin, "prediction", "not a finite time: check the catalog or overlay values"
            )
        err = pred / np.array([m.target for m in mine]) - 1.0
        for m, p, e in zip(mine, pred, err, strict=True):
            rows.append(
                {
                    "id": m.label,
                    "hardware": hw_id,
                    "kind": m.kind,
                    "family": family(m),
                    "band": size_band(m),
                    "held_back": held_back(m),
                    "measured_s": m.target,
                    "predicted_s": float(p),
                    "error": float(e),
                }
            )
        fams: dict[str, list[int]] = {}
        for i, m in enumerate(mine):
            fams.setdefault(family(m), []).append(i)
        for fam, idx in sorted(fams.items()):
            bands: dict[str, list[int]] = {}
            for i in idx:
                bands.setdefault(size_band(mine[i]), []).append(i)
            held = [i for i in idx if held_back(mine[i])]
            families.append(
                {
                    "hardware": hw_id,
                    "family": fam,
                    "size": SIZE_MEASURES[mine[idx[0]].kind],
                    **_stats(err[idx]),
                    "held_back": _stats(err[held]) if held else None,
                    "bands": [{"band": b, **_stats(err[bands[b]])} for b in sorted(bands, key=_band_key)],
                }
            )
    return MeasuredResult(rows=rows, families=families, skipped=skipped)
