"""Fit a device's Triton decode-attention bandwidth fraction (``triton_decode_hbm``) on one-burst serving rows.

    python tools/fit_burst_decode.py [--hardware mi300x]

vLLM V1 on ROCm runs its Triton unified attention (``EngineProfile.rocm_triton_attention``) unless
AITER is enabled; no measured kernel table of it exists for AMD devices, so the KV-stream fraction
it reaches (``Efficiency.triton_decode_hbm``; 0 = the device's generic ``decode_hbm``, a prior on
AMD catalogs) is fitted on serving rows. On MI300X the only published decode measurements at scale
are the AMD performance-results rows of the suite (``amd-perf-mi300x-*``: vLLM 0.11.1 in the
rocm/vllm image, ``vllm bench throughput``, one burst of N requests, TP8, FP8 weights and KV). The
fit varies that one parameter (a bounded golden-section search on the sum of squared log errors)
over FIT_ROWS, one row of each (prompt, output) pair, alternating the model; the other rows are
held back and reported. The value is written into the catalog YAML by hand with this script named
as the source; roofplan never imports this at run time.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofplan import resolve  # noqa: E402
from roofplan.validation.load_predict import stated_burst  # noqa: E402
from roofplan.validation.suite import predict, read_cases  # noqa: E402

#: The rows each device's value is fitted on (the device's other burst rows are held back): every
#: (isl, osl) pair once, Llama-3.1-70B and -405B alternating.
FIT_ROWS = {
    "mi300x": (
        "amd-perf-mi300x-l31-70b-fp8-128-2048-n3200-tput",
        "amd-perf-mi300x-l31-405b-fp8-128-4096-n1500-tput",
        "amd-perf-mi300x-l31-405b-fp8-500-2000-n2000-tput",
        "amd-perf-mi300x-l31-70b-fp8-2048-2048-n1500-tput",
    )
}
BOUNDS = (0.05, 1.0)
PARAM = "triton_decode_hbm"


def _errors(rows, hw: str, value: float) -> np.ndarray:
    overlay = {"hardware": hw, "efficiency": {PARAM: value}}
    return np.array([predict(c, overlay) / c.measured - 1.0 for c in rows])


def _loss(rows, hw: str, value: float) -> float:
    return float(np.sum(np.log1p(_errors(rows, hw, value)) ** 2))


def fit(rows, hw: str, rounds: int = 24) -> float:
    """Golden-section search of PARAM in BOUNDS (the loss is unimodal in it: every row's
    time grows as the fraction falls)."""
    lo, hi = BOUNDS
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = _loss(rows, hw, a), _loss(rows, hw, b)
    for _ in range(rounds):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = _loss(rows, hw, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = _loss(rows, hw, b)
    return round((lo + hi) / 2.0, 4)


def _report(label: str, rows, errs: np.ndarray) -> None:
    print(f"  {label}: median |error| {np.median(np.abs(errs)):6.1%}  ({len(rows)} rows)")
    for c, e in zip(rows, errs, strict=True):
        print(f"    {c.id:52s} {e:+7.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hardware", action="append", help="only these catalog ids")
    args = ap.parse_args()
    cases = [c for c in read_cases() if c.kind == "serve_load" and stated_burst(c)]
    for hw, ids in FIT_ROWS.items():
        if args.hardware and hw not in args.hardware:
            continue
        mine = [c for c in cases if c.str("hardware") == hw]
        fit_rows = [c for c in mine if c.id in ids]
        held = [c for c in mine if c.id not in ids]
        eff = resolve.hardware(hw).efficiency
        prior = eff.decode_hbm  # what the kernel is priced with while PARAM is 0
        value = fit(fit_rows, hw)
        print(f"{hw}: {PARAM} {getattr(eff, PARAM)} (catalog) -> {value} (fitted on {len(fit_rows)} rows)")
        for name, v in (("decode_hbm, the former pricing", prior), ("fitted", value)):
            print(f" {PARAM} = {v} ({name})")
            _report("fit rows", fit_rows, _errors(fit_rows, hw, v))
            _report("held back", held, _errors(held, hw, v))


if __name__ == "__main__":
    main()
