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
    "vllm-0.17": "gpustack-h200-qwen35-35b-a3b-r1-vllm-ttft",
}


@contextmanager
def _overhead(engine: str, value: float):
    """Predict rows of the suite's engine string ``engine`` with ``request_overhead_s = value``
    (its ENGINE_MAP entry's version changes take it, so versioned strings are fitted too)."""
    saved = ENGINE_MAP[engine]
    profile, changes, fp8_kv = saved
    ENGINE_MAP[engine] = (profile, {**changes, "request_overhead_s": value}, fp8_kv)
    try:
        yield
    finally:
        ENGINE_MAP[engine] = saved


def _predict(case, engine: str, value: float) -> float:
    with _overhead(engine, value):
        return predict(case)


def fit(engine: str, case) -> float:
    """The request_overhead_s at which ``case`` (a TTFT row) is predicted exactly: TTFT is affine
    in it up to the closed-loop residual, so a few secant steps converge."""
    target = float(case.row["value"])
    x0, x1 = 0.0, 0.05
    f0 = _predict(case, engine, x0) - target
    for _ in range(8):
        f1 = _predict(case, engine, x1) - target
        if abs(f1) < 1e-3 or f1 == f0:  # a microsecond
            break
        x0, x1, f0 = x1, x1 - f1 * (x1 - x0) / (f1 - f0), f1
    return x1


def _report(cases, fitted: dict) -> None:
    """Every row of a fitted engine string at its fitted value; the held-back medians per device
    and metric, then per metric over the devices."""
    held: dict[tuple[str, str], list[float]] = {}
    for c in cases:
        engine = c.str("engine")
        if engine not in fitted:
            continue
        part = "fit " if FIT_ROWS.get(engine) == c.id else "held"
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
    cases = [c for c in read_cases() if c.kind == "serve_load"]
    fitted = {}
    for engine, row in FIT_ROWS.items():
        case = next(c for c in cases if c.id == row)
        fitted[engine] = fit(engine, case)  # seconds (the rows are in ms; the secant does not mind)
        print(f"{engine}: request_overhead_s = {fitted[engine]:.4g} (fitted on {row})")
    fitted["trtllm"] = fitted["vllm"]
    print(f"trtllm: request_overhead_s = {fitted['trtllm']:.4g} (vLLM's value as a prior, not fitted)")
    _report(cases, fitted)


if __name__ == "__main__":
    main()
