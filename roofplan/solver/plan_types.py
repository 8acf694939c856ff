"""The result of ``plan_training``: ranked candidates, search statistics, placement, launch commands.

:meth:`TrainPlan.to_json` is the document of docs/SPEC.md §3.3 (schema ``roofplan.plan.train/v1``).
The solver fills no launch command: :mod:`roofplan.launch.registry` renders them for the winner
(``launch`` and ``launch_unsupported``; the emitters never recompute costs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec
from roofplan.plain import plain, with_timing
from roofplan.solver.frameworks import FRAMEWORKS  # noqa: F401  (the training launchers)

SCHEMA = "roofplan.plan.train/v1"

#: Keys of a candidate that describe the configuration (the rest is its estimate).
CONFIG_KEYS = (
    "gpus",
    "gpus_per_node",
    "tp",
    "pp",
    "dp",
    "cp",
    "ep",
    "vpp",
    "micro_batch",
    "global_batch",
    "seq_len",
    "dtype",
    "recompute",
    "recompute_layers",
    "sequence_parallel",
    "zero",
    "offload",
    "tp_comm_overlap",
    "etp",
    "moe_dispatcher",
    "fp8_recipe",
    "act_offload_layers",
)


def brief(candidate: dict) -> dict:
    """A candidate as the plan's ``why`` names it: its configuration, step time and throughput."""
    return {k: candidate[k] for k in CONFIG_KEYS} | {
        "step_time_s": candidate["step_time_s"],
        "tokens_per_s": candidate["tokens_per_s"],
    }


@dataclass
class TrainPlan:
    """A finished training plan (see docs/SPEC.md §3.3)."""

    model: ModelSpec
    hardware: DeviceSpec
    inputs: dict
    best: dict
    candidates: list[dict]
    searched: int
    evaluated: int
    feasible: int
    rejected: dict[str, int]
    search_time_s: float
    objective: dict
    placement: dict
    why: dict
    launch: dict[str, str] = field(default_factory=dict)
    launch_unsupported: dict[str, str] = field(default_factory=dict)

    def config(self, candidate: dict | None = None) -> dict:
        c = candidate or self.best
        out = {k: c[k] for k in CONFIG_KEYS}
        out["model"] = self.model.name
        out["hardware"] = self.hardware.id
        return out

    def to_json(self) -> dict[str, Any]:
        return with_timing(
            plain(
                {
                    "schema": SCHEMA,
                    "inputs": self.inputs,
                    "objective": self.objective,
                    "best": self.best,
                    "candidates": self.candidates,
                    "searched": self.searched,
                    "evaluated": self.evaluated,
                    "feasible": self.feasible,
                    "rejected": dict(self.rejected),
                    "search_time_s": self.search_time_s,
                    "placement": self.placement,
                    "why": self.why,
                    "launch": self.launch,
                    "launch_unsupported": self.launch_unsupported,
                }
            )
        )
