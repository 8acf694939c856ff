"""Predictor for serving rows measured under load (kind ``serve_load``).

A ``serve_load`` row is a benchmark client (``vllm bench serve`` and the like) holding ``batch``
requests in flight (``--max-concurrency``: a closed loop) against one instance of ``tp`` devices,
with requests of ``isl`` prompt and ``osl`` output tokens (a dataset's means where the lengths
vary; the note says which). A row whose note states ``rate=R`` (requests/s) was measured in an
open loop instead (``--request-rate``, guidellm ``--rate``) and leaves ``batch`` empty.
``ttft_ms_mean`` / ``tpot_ms_mean`` / ``latency_s_mean`` are the benchmark's mean TTFT, mean TPOT
and mean end-to-end latency; they are predicted by the steady state of
:func:`roofplan.costmodel.serve_load.closed_loop` (or :func:`~roofplan.costmodel.serve_load.open_loop`,
Poisson arrivals) with the engine profile of the row's engine string
(:data:`roofplan.validation.serve_predict.ENGINE_MAP`). TTFT, TPOT and latency rows are reported
apart (``roofplan validate`` groups ``serve_load`` on its own).
"""

from __future__ import annotations

import re

import numpy as np

from roofplan.costmodel import serve_load
from roofplan.validation.cases import Case, predictor
from roofplan.validation.serve_predict import _setup

METRICS = ("ttft_ms_mean", "tpot_ms_mean", "latency_s_mean")


def stated_rate(case: Case) -> float | None:
    """The open-loop request rate (requests/s) a row's note states as ``rate=R``, else None."""
    m = re.search(r"\brate=([0-9.]+)", case.str("note"))
    return float(m.group(1)) if m else None


@predictor("serve_load")
def predict_serve_load(case: Case, calibration=None) -> float:
    """Mean TTFT or TPOT (ms), or mean latency (s), of ``batch`` closed-loop clients or of the
    open loop at the note's ``rate=R``."""
    model, hw, engine, cfg = _setup(case, calibration)
    if case.metric not in METRICS:
        raise ValueError(f"serve_load metric {case.metric!r} not supported ({', '.join(METRICS)})")
    rate, conc = stated_rate(case), case.int("batch")
    if not conc and not rate:
        raise ValueError(f"serve_load row {case.id}: the batch column (the concurrency) or rate=R in the note "
                         "is required")
    inst = serve_load.Instance(model, hw, engine, cfg)
    isl, osl = np.array([int(cfg.isl[0])]), np.array([int(cfg.osl[0])])
    r = serve_load.open_loop(inst, isl, osl, rate) if rate else serve_load.closed_loop(inst, isl, osl, conc)
    if case.metric == "latency_s_mean":
        return r.latency_s["mean"]
    s = r.ttft_s if case.metric == "ttft_ms_mean" else r.tpot_s
    return s["mean"] * 1e3
