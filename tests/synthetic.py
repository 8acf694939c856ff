"""Synthetic inputs shared by several test modules: calibration rows whose values the validation
suite's own predictor gives under a known overlay (so a fit must recover that overlay), and
fixed request lengths for the serving-under-load tests."""

import numpy as np

#: A calibration overlay with a 4 ms vLLM per-step overhead (the value the fits must recover).
VLLM_4MS = {
    "schema": "roofplan.calibration/v1",
    "hardware": "h100-sxm",
    "engines": {"vllm": {"step_overhead_s": 4e-3}},
}


def serve_step_csv(points, truth: dict, prefix: str = "syn") -> str:
    """A published-measurements CSV of ``serve_step`` rows (Llama 2 7B, one H100, vLLM), one per
    (batch, isl, metric) of ``points``, each valued as predicted under the overlay ``truth``."""
    from roofplan.validation.suite import COLUMNS, Case, predict

    lines = [",".join(COLUMNS)]
    for i, (batch, isl, metric) in enumerate(points):
        row = dict.fromkeys(COLUMNS, "")
        row.update(
            id=f"{prefix}-{i}",
            kind="serve_step",
            model="llama-2-7b",
            hardware="h100-sxm",
            gpus="1",
            tp="1",
            pp="1",
            dp="1",
            dtype="bf16",
            batch=str(batch),
            isl=str(isl),
            osl="1",
            engine="vllm",
            metric=metric,
            unit="ms",
        )
        row["value"] = repr(predict(Case(row=row), truth))
        lines.append(",".join(row[c] for c in COLUMNS))
    return "\n".join(lines) + "\n"


def fixed(n: int, isl: int, osl: int):
    """``n`` requests of ``isl`` prompt and ``osl`` output tokens each (prompt and output arrays)."""
    return np.full(n, isl), np.full(n, osl)
