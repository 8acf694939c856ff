"""Re-estimating a planner's pick: the independent check several planner tests make."""

from __future__ import annotations

from roofplan import estimate_training
from roofplan.solver.plan_types import CONFIG_KEYS


def estimate_of_pick(model: str, b: dict, hardware: str = "h100-sxm", **kw) -> dict:
    """`estimate train` of a plan's pick ``b``: every configuration key the planner reports
    (:data:`~roofplan.solver.plan_types.CONFIG_KEYS`) passed as the pick has it, but the world
    size, which the degrees imply; ``kw`` adds or replaces keywords."""
    config = {k: b[k] for k in CONFIG_KEYS if k != "gpus"}
    return estimate_training(model, hardware, **{**config, **kw}).to_json()
