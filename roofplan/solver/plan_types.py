"""The result of ``plan_training``: ranked candidates, search statistics, placement, launch commands.

:meth:`TrainPlan.to_json` is the document of docs/SPEC.md §3.3 (schema ``roofplan.plan.train/v1``);
:meth:`TrainPlan.emit` turns the winner into launch files (the emitters never recompute costs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec
from roofplan.plain import plain, with_timing

SCHEMA = "roofplan.plan.train/v1"
FRAMEWORKS = ("megatron", "deepspeed", "torchtitan")

#: Keys of a candidate that describe the configuration (the rest is its estimate).
CONFIG_KEYS = ("gpus", "gpus_per_node", "tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch", "global_batch",
               "seq_len", "dtype", "recompute", "recompute_layers", "sequence_parallel", "zero", "offload",
               "tp_comm_overlap", "etp")


def emitter(framework: str):
    """The launch module of ``framework``."""
    if framework == "megatron":
        from roofplan.launch import megatron as mod
    elif framework == "deepspeed":
        from roofplan.launch import deepspeed as mod
    elif framework == "torchtitan":
        from roofplan.launch import torchtitan as mod
    else:
        raise InputError("emit", framework, "one of " + ", ".join(FRAMEWORKS))
    return mod


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
        return with_timing(plain({
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
        }))

    def emit(self, framework: str, target: str | None = None) -> dict[str, str]:
        """Launch files (name -> text) of the winner for ``framework`` (release ``target``)."""
        mod = emitter(framework)
        return mod.emit(self.model, self.config(), self.best, target)

    def write(self, out_dir: str | Path, frameworks: list[str] | tuple[str, ...],
              targets: dict[str, str] | None = None) -> list[str]:
        """Write the launch files of ``frameworks`` and ``plan.json`` into ``out_dir``.

        Everything is rendered first, so nothing is written unless all of it succeeded.
        """
        import json

        from roofplan.launch.common import merge_files
        from roofplan.outputs import write_tree

        files = merge_files(self.emit(fw, (targets or {}).get(fw)) for fw in frameworks)
        files["plan.json"] = json.dumps(self.to_json(), indent=2) + "\n"
        return write_tree(out_dir, files, executable=[n for n in files if n.endswith(".sh")])
