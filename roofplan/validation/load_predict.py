"""Predictor for serving rows measured under load (kind ``serve_load``).

A ``serve_load`` row is a benchmark client (``vllm bench serve`` and the like) holding ``batch``
requests in flight (``--max-concurrency``: a closed loop) against one instance of ``tp`` devices,
with requests of ``isl`` prompt and ``osl`` output tokens (a dataset's means where the lengths
vary; the note says which). ``ttft_ms_mean`` / ``tpot_ms_mean`` are the benchmark's mean TTFT and
mean TPOT; they are predicted by the closed-loop steady state of
:func:`roofplan.costmodel.serve_load.closed_loop` with the engine profile of the row's engine
string (:data:`roofplan.validation.serve_predict.ENGINE_MAP`). TTFT and TPOT rows are reported
apart (``roofplan validate`` groups ``serve_load`` on its own).
"""

from __future__ import annotations

import numpy as np

from roofplan.costmodel import serve_load
from roofplan.validation.cases import Case, predictor
from roofplan.validation.serve_predict import _setup

METRICS = ("ttft_ms_mean", "tpot_ms_mean")


@predictor("serve_load")
def predict_serve_load(case: Case, calibration=None) -> float:
    """Mean TTFT or mean TPOT (ms) of the closed loop of ``batch`` clients."""
    model, hw, engine, cfg = _setup(case, calibration)
    if case.metric not in METRICS:
        raise ValueError(f"serve_load metric {case.metric!r} not supported ({', '.join(METRICS)})")
    conc = case.int("batch")
    if not conc:
        raise ValueError(f"serve_load row {case.id}: the batch column (the concurrency) is required")
    inst = serve_load.Instance(model, hw, engine, cfg)
    isl, osl = np.array([int(cfg.isl[0])]), np.array([int(cfg.osl[0])])
    r = serve_load.closed_loop(inst, isl, osl, conc)
    s = r.ttft_s if case.metric == "ttft_ms_mean" else r.tpot_s
    return s["mean"] * 1e3
