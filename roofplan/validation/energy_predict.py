"""Predictors of the ``train_energy`` rows: the energy of a published training run.

A row pins the run's parallel layout like a ``train`` row and its note carries the run's stated
GPU-hours (``gpu_hours=N``). Predicted energy = GPU-hours x the mean board power of the power model
(:mod:`roofplan.costmodel.power`) at the activity the cost model gives that layout's step:
kWh = gpu_hours x P(a) / 1000. The published figures are GPU-hours times the power the authors
state per GPU, so the rows test the power model's draw under training load (not the step time,
which the ``train`` rows test, nor the restarts and evaluation that GPU-hours also contain).
"""

from __future__ import annotations

import re

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
