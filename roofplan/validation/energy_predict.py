"""Predictors of the energy rows: ``train_energy`` (a published training run) and ``serve_energy``
(the GPU energy per output token of a serving engine at a stated batch, :func:`predict_serve_energy`).

A row pins the run's parallel layout like a ``train`` row and its note carries the run's stated
GPU-hours (``gpu_hours=N``). Predicted energy = GPU-hours x the mean board power of the power model
(:mod:`roofplan.costmodel.power`) at the activity the cost model gives that layout's step:
kWh = gpu_hours x P(a) / 1000. The published figures are GPU-hours times the power the authors
state per GPU, so the rows test the power model's draw under training load (not the step time,
which the ``train`` rows test, nor the restarts and evaluation that GPU-hours also contain).
"""

from __future__ import annotations

import re

import numpy as np

from roofplan.validation.cases import Case, predictor


def stated_gpu_hours(case: Case) -> float:
    m = re.search(r"\bgpu_hours=([0-9.eE+]+)", case.str("note"))
    if not m:
        raise ValueError(f"case {case.id}: a train_energy row needs gpu_hours=N in its note")
    return float(m.group(1))


@predictor("train_energy")
def predict_train_energy(case: Case, calibration=None) -> float:
    """Predicted kWh of the run (metric ``energy_kwh``)."""
    from roofplan import resolve
    from roofplan.costmodel.power import train_power_w
    from roofplan.validation.train_predict import estimate_case

    if case.metric != "energy_kwh":
        raise ValueError(f"case {case.id}: unsupported train_energy metric {case.metric!r}")
    est = estimate_case(case, calibration)
    b = est.to_json()["breakdown_s"]
    hw = resolve.hardware(case.str("hardware"), calibration)
    watts = train_power_w(hw, b["compute"], b["optimizer"], est.value("step_time_s"))
    if watts is None:
        raise ValueError(f"case {case.id}: {hw.id} has no power model (power.idle) in its catalog")
    return stated_gpu_hours(case) * float(watts) / 1e3


def _note_value(case: Case, key: str) -> str | None:
    m = re.search(rf"\b{key}=([A-Za-z0-9_.-]+)", case.str("note"))
    return m.group(1) if m else None


def serve_energy_lengths(case: Case):
    """(isl, osl) arrays of a ``serve_energy`` row: the note's ``workload=PRESET``
    (:data:`roofplan.workload.PRESETS`), else the row's fixed isl / osl."""
    from roofplan.workload import PRESETS, preset_workload

    name = _note_value(case, "workload")
    if name is None:
        return np.array([case.int("isl", 1)]), np.array([case.int("osl", 1) or 1])
    if name not in PRESETS:
        raise ValueError(f"case {case.id}: workload={name} is not a preset ({', '.join(PRESETS)})")
    w = preset_workload(name)
    return w.isl, w.osl


#: ``serve_energy`` metrics: J per output token, mean board power per GPU, output tokens/s.
SERVE_ENERGY_METRICS = ("joules_per_token", "power_w", "output_tokens_per_s")


def serve_energy_state(case: Case, calibration=None) -> tuple[float, float, int]:
    """(mean board power per GPU in W, output tokens/s, GPUs) of an engine that keeps ``batch``
    requests running (``max_num_seqs``, every request queued at once: the ML.ENERGY benchmark's
    steady state, whose stable runs keep the mean batch within 15 % of it).

    The steady state is :func:`roofplan.costmodel.serve_load.state_at` at d = ``batch`` decoding
    requests (closed arrivals): a share f of iterations also carries the waiting prompts' tokens.
    Each iteration kind is split by :func:`roofplan.costmodel.serve.step_breakdown` into
    compute/memory-bound time (busy) and the rest, and :func:`roofplan.costmodel.power.serve_power_w`
    prices the time-weighted mix; the output rate is lam x E[O]."""
    from roofplan.costmodel import serve_load
    from roofplan.costmodel.power import serve_power_w
    from roofplan.costmodel.serve import step_breakdown
    from roofplan.validation.serve_predict import _setup

    model, hw, engine, cfg = _setup(case, calibration)
    d = case.int("batch")
    if not d:
        raise ValueError(f"case {case.id}: a serve_energy row needs batch (the engine's max_num_seqs)")
    engine = engine.replace(max_num_seqs=d)  # the note's other server flags are in _setup's profile
    inst = serve_load.Instance(model, hw, engine, cfg)
    isl, osl = serve_energy_lengths(case)
    mo = serve_load.moments(inst, isl, osl)
    st = serve_load.state_at(inst, mo, float(d), poisson=False)
    f, lam = float(st.f[0]), float(st.lam[0])
    per_t = d / max(mo.osl - 1.0, 1e-3)  # prompts admitted per mean iteration (Little's law)
    c = min(mo.isl * per_t / max(f, 1e-12), float(mo.budget) - d)  # prompt tokens of a mixed iteration
    dec = step_breakdown(model, hw, engine, cfg, 0.0, 0.0, float(d), mo.dec_ctx)
    mix = step_breakdown(model, hw, engine, cfg, max(c, 1.0), mo.pre_ctx, float(d), mo.dec_ctx)
    busy = (1 - f) * (dec.compute + dec.memory) + f * (mix.compute + mix.memory)
    total = (1 - f) * dec.total + f * mix.total
    watts = serve_power_w(hw, busy, 0.0, total)
    if watts is None:
        raise ValueError(f"case {case.id}: {hw.id} has no power model (power.idle) in its catalog")
    return float(watts[0]), lam * mo.osl, int(cfg.tp[0])


@predictor("serve_energy")
def predict_serve_energy(case: Case, calibration=None) -> float:
    """``joules_per_token``: GPU energy per output token (all GPUs' power / output tokens/s);
    ``power_w``: mean board power per GPU; ``output_tokens_per_s``: the instance's output rate
    (see :func:`serve_energy_state`)."""
    from roofplan.costmodel.power import joules_per_token

    if case.metric not in SERVE_ENERGY_METRICS:
        raise ValueError(
            f"case {case.id}: unsupported serve_energy metric {case.metric!r} "
            f"({', '.join(SERVE_ENERGY_METRICS)})"
        )
    watts, tokens_per_s, gpus = serve_energy_state(case, calibration)
    if case.metric == "power_w":
        return watts
    if case.metric == "output_tokens_per_s":
        return tokens_per_s
    return float(joules_per_token(watts * gpus, tokens_per_s))
