"""Fit each engine's per-request API-server time (``request_overhead_s``) on one TTFT row under load.

    python tools/fit_request_overhead.py

A client of an engine's OpenAI-compatible server waits, besides the GPU iterations, for the API
server: the HTTP request, the chat template and tokenisation, the hand-off to the engine core and
its admission, and the first detokenised chunk streamed back (``EngineProfile.request_overhead_s``).
No engine publishes it, so it is fitted here, once per engine, on the TTFT of one ``serve_load``
row of the suite (FIT_ROWS); every other ``serve_load`` row of that engine is held back and
reported as the check, per device and metric (TTFT, TPOT, mean latency apart). TRT-LLM has a single TTFT row and is not fitted: its profile takes vLLM's
value as a prior (``trtllm-serve`` is a Python FastAPI/uvicorn front end with HF tokenisation, the
same architecture as vLLM's API server) and its one row is a check. The fitted values are written
into ``roofplan/catalogs/engines/<engine>.yaml`` by hand, with this script named as the source;
roofplan never imports this at run time.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofplan.validation.serve_predict import ENGINE_MAP  # noqa: E402
from roofplan.validation.suite import predict, read_cases  # noqa: E402

#: The one row each engine's value is fitted on, by the suite's engine string (C=1 where
#: published: no residual iteration). ``vllm-0.17`` is vLLM v0.17.1 driven by guidellm (the
#: gpustack H200 rows), whose API-server time the H100 vLLM v0.11 / ``vllm bench serve`` value does
#: not carry over to: its slowest-rate row (1 req/s) is the fit, the others are held back.
FIT_ROWS = {
    "vllm": "gpustack-h100-qwen3-8b-c1-vllm-ttft",
    "sglang": "gpustack-h100-qwen3-8b-c4-sglang-ttft",
    "vllm-0.17": "gpustack-h200-qwen35-35b-a3b-r1-vllm-ttft-p50",
}


#: Engines whose per-running-request API-server time (``api_output_s``, the output pass a first
#: token waits for: ``serve_load.frontend_wait``) is fitted too, each on one row at a rate where the
#: pass matters: the 8 req/s bf16 row for vLLM v0.17.1 (its median TTFT grows 35.6 -> 42.1 -> 62.6
#: ms from 1 to 4 to 8 req/s, which the GPU iterations alone do not: 28.8 -> 31.8 -> 36.5 ms with
#: the synchronous step of the earlier fit). The two values are fitted in turn (each row depends a little on the other value) until they settle;
#: the 4 req/s and FP8 8 req/s rows are held back.
OUTPUT_FIT_ROWS = {
    "vllm-0.17": "gpustack-h200-qwen35-35b-a3b-r8-vllm-ttft-p50",
}

#: Engines whose per-iteration host time (``step_overhead_s``: scheduler, input preparation and
#: sampler, serialised with the GPU where scheduling is synchronous) is fitted too, on the TPOT of
#: the concurrency-1 row, where every iteration is one request's decode step and the host share is
#: plainest. vLLM v0.11.0 (the gpustack H100 rows) schedules synchronously; its TPOT rows at
#: concurrency 2, 4 and 8 are held back. The profile's earlier value (1.5 ms) was a prior read off
#: the V1 blog's figures, not a measurement.
STEP_FIT_ROWS = {
    "vllm": "gpustack-h100-qwen3-8b-c1-vllm-tpot",
    # vLLM V0 (LLM-Inference-Bench): offline, no API server; fitted on the wall time of one static
    # batch-1 run on H100 (1024 + 1024 tokens: 1023 decode steps of one request); the batch 16, 32
    # and 64 runs and the MI300X rows are held back.
    "vllm-v0": "lib-h100-l3-8b-b1-1024",
}

#: Engines whose per-running-request host time per iteration (``host_seq_s``) is fitted too: vLLM
#: V0 on the batch-64 run of the same H100 series (where 64 requests' per-sequence work shows).
SEQ_FIT_ROWS = {
    "vllm-v0": "lib-h100-l3-8b-b64-1024",
}


@contextmanager
def _overhead(engine: str, values: dict):
    """Predict rows of the suite's engine string ``engine`` with the profile fields ``values``
    (its ENGINE_MAP entry's version changes take them, so versioned strings are fitted too)."""
    saved = ENGINE_MAP[engine]
    profile, changes, fp8_kv = saved
    ENGINE_MAP[engine] = (profile, {**changes, **values}, fp8_kv)
    try:
        yield
    finally:
        ENGINE_MAP[engine] = saved


def _predict(case, engine: str, values: dict) -> float:
    with _overhead(engine, values):
        return predict(case)


def fit(engine: str, case, field: str = "request_overhead_s", fixed: dict | None = None) -> float:
    """The ``field`` value (seconds) at which ``case`` (a TTFT, TPOT or wall-time row) is predicted
    exactly, the other fields ``fixed``: each grows monotonically in every field, so a few secant
    steps converge."""
    fixed = fixed or {}
    target = float(case.row["value"])
    x0, x1 = 0.0, 0.05 if field == "request_overhead_s" else 5e-4
    scale = {"ms": 1e3, "s": 1.0}.get(case.row.get("unit"), 1.0)  # to a microsecond
    f0 = _predict(case, engine, {**fixed, field: x0}) - target
    for _ in range(8):
        f1 = _predict(case, engine, {**fixed, field: x1}) - target
        if abs(f1) < 1e-6 * scale or f1 == f0:
            break
        x0, x1, f0 = x1, max(x1 - f1 * (x1 - x0) / (f1 - f0), 0.0), f1
    return x1


#: Each fitted field and the table naming the row it is fitted on.
_FIELDS = (
    ("request_overhead_s", FIT_ROWS),
    ("api_output_s", OUTPUT_FIT_ROWS),
    ("step_overhead_s", STEP_FIT_ROWS),
    ("host_seq_s", SEQ_FIT_ROWS),
)


def fit_engine(engine: str, cases: dict) -> dict:
    """The fitted fields of one engine string, each on the row its table names, in turn (every row
    depends a little on every field) until they settle."""
    rows = {field: table[engine] for field, table in _FIELDS if engine in table}
    values: dict = {}
    for _ in range(4 if len(rows) > 1 else 1):
        for field, row in rows.items():
            values[field] = fit(engine, cases[row], field, {k: v for k, v in values.items() if k != field})
    return values


def _fit_rows(engine: str) -> tuple:
    return tuple(table[engine] for _, table in _FIELDS if engine in table)


def _report(cases, fitted: dict) -> None:
    """Every row of a fitted engine string at its fitted values; the held-back medians per device
    and metric, then per metric over the devices."""
    held: dict[tuple[str, str], list[float]] = {}
    for c in cases:
        engine = c.str("engine")
        if engine not in fitted:
            continue
        part = "fit " if c.id in _fit_rows(engine) else "held"
        got = _predict(c, engine, fitted[engine])
        err = got / float(c.row["value"]) - 1
        if part == "held":
            held.setdefault((c.str("hardware"), c.metric), []).append(abs(err))
        print(
            f"  {part} {c.id:52s} {c.metric:13s} measured {float(c.row['value']):7.2f}  "
            f"predicted {got:7.2f}  {err:+.1%}"
        )
    for (hw, metric), errs in sorted(held.items()):
        print(
            f"held back, {hw} {metric}: {len(errs)} rows, median |error| {np.median(errs):.1%}, "
            f"worst {max(errs):.1%}"
        )
    for metric in sorted({m for _, m in held}):
        errs = [e for (_, m), es in held.items() if m == metric for e in es]
        print(f"held back, all devices, {metric}: {len(errs)} rows, median |error| {np.median(errs):.1%}")


def main() -> None:
    engines = list(dict.fromkeys(e for _, table in _FIELDS for e in table))
    cases = [
        c
        for c in read_cases()
        if c.kind == "serve_load" or (c.kind == "serve_throughput" and c.str("engine") in engines)
    ]
    by_id = {c.id: c for c in cases}
    fitted = {}
    for engine in engines:
        fitted[engine] = fit_engine(engine, by_id)  # seconds (the secant does not mind the row's unit)
        shown = ", ".join(f"{k} = {v:.4g}" for k, v in fitted[engine].items())
        print(f"{engine}: {shown} (fitted on {', '.join(_fit_rows(engine))})")
    fitted["trtllm"] = {"request_overhead_s": fitted["vllm"]["request_overhead_s"]}
    print(
        f"trtllm: request_overhead_s = {fitted['trtllm']['request_overhead_s']:.4g} (vLLM's value as a prior, not fitted)"
    )
    _report(cases, fitted)


if __name__ == "__main__":
    main()
