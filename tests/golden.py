"""What the golden test pins: every prediction of the validation suite, every term of the training
breakdown of its ``train`` rows, the serving step parts of its ``serve_step`` rows, and the JSON of a
few plans (without their timing).

A refactor must leave all of it unchanged (to 1e-12 relative); a change that means to move
predictions regenerates the file with ``python tools/golden.py --write`` and says why in its commit.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

GOLDEN_FILE = "golden_predictions.json"

#: Plans whose whole JSON is pinned: one dense and one MoE training plan, one colocated and one
#: disaggregated serving plan (small enough to plan in well under a second each).
PLANS = (
    ("train", "llama-3.1-8b", "h100-sxm", dict(gpus=64, global_batch=256, seq_len=4096)),
    ("train", "mixtral-8x7b", "h100-sxm", dict(gpus=64, global_batch=256, seq_len=4096)),
    ("serve", "llama-3.1-8b", "h100-sxm", dict(gpus=8, isl=2000, osl=200, ttft_ms=500, tpot_ms=30)),
    ("serve", "llama-3.1-70b", "h200-sxm", dict(gpus=16, isl=4000, osl=500, ttft_ms=1500, tpot_ms=40)),
)


def _plain(value):
    """Arrays and numpy scalars as lists and floats, so the document is JSON."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _train_terms(case) -> dict:
    from roofplan.validation.train_predict import estimate_case

    arrays = estimate_case(case).arrays
    return {f.name: _plain(getattr(arrays, f.name)) for f in dataclasses.fields(arrays)}


def _serve_terms(case) -> dict:
    from roofplan.costmodel.serve import step_breakdown
    from roofplan.validation.serve_predict import _setup

    model, hw, engine, cfg = _setup(case, None)
    out = {}
    for name, args in (
        ("prefill", (cfg.batch * cfg.isl, cfg.isl, 0, 0)),
        ("decode", (0, 0, cfg.batch, cfg.isl)),
    ):
        parts = step_breakdown(model, hw, engine, cfg, *args)
        out[name] = {k: _plain(getattr(parts, k)) for k in ("compute", "memory", "comm", "overhead")}
    return out


def _plan(kind: str, model: str, hw: str, request: dict) -> dict:
    import roofplan
    from roofplan.plain import without_timing

    plan = (roofplan.plan_training if kind == "train" else roofplan.plan_serving)(model, hw, **request)
    return _plain(without_timing(plan.to_json()))


def collect() -> dict:
    """The whole pinned document."""
    from roofplan.validation.suite import run_suite

    suite = run_suite()
    doc = {"suite": {}, "train_terms": {}, "serve_terms": {}, "plans": {}}
    for r in suite.results:
        doc["suite"][r.case.id] = _plain(r.predicted)
        if r.case.kind == "train":
            doc["train_terms"][r.case.id] = _train_terms(r.case)
        elif r.case.kind == "serve_step":
            doc["serve_terms"][r.case.id] = _serve_terms(r.case)
    for kind, model, hw, request in PLANS:
        doc["plans"][f"{kind}:{model}:{hw}:{sorted(request.items())}"] = _plan(kind, model, hw, request)
    return doc


def differences(expected, actual, path: str = "", rel: float = 1e-12) -> list[str]:
    """Where two documents differ: numbers beyond ``rel`` relative, anything else by equality."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}/{k}: missing" for k in expected.keys() - actual.keys()]
        out += [f"{path}/{k}: new" for k in actual.keys() - expected.keys()]
        for k in expected.keys() & actual.keys():
            out += differences(expected[k], actual[k], f"{path}/{k}", rel)
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{path}: length {len(expected)} != {len(actual)}"]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual))
            for d in differences(e, a, f"{path}[{i}]", rel)
        ]
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) and not isinstance(expected, bool):
        if math.isclose(expected, actual, rel_tol=rel, abs_tol=1e-300):
            return []
        return [f"{path}: {expected!r} -> {actual!r}"]
    return [] if expected == actual else [f"{path}: {expected!r} -> {actual!r}"]
