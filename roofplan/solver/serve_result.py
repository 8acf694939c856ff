"""Result types of the serving planner: one instance configuration, one deployment, the plan.

:class:`InstancePlan` is one instance shape at its operating point, :class:`Deployment` a whole
deployment (colocated: ``instances`` identical instances; disaggregated: prefill and decode
instances at a ratio) with the key it is ranked by, and :class:`ServePlan` the answer of
``plan_serving``. ``to_json()`` of each gives the documents of docs/SPEC.md §3.4 (schema
``roofplan.plan.serve/v1``); the launch emitters read those documents, never these objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from roofplan.plain import with_timing

SCHEMA = "roofplan.plan.serve/v1"


@dataclass(frozen=True)
class InstancePlan:
    """One instance configuration of a role and how many of it are deployed."""

    role: str  # prefill | decode | colocated
    tp: int
    pp: int
    ep: int
    dp: int
    batch: int
    instances: int
    gpus_per_instance: int
    hardware: str
    devices_per_node: int
    rate_rps_per_instance: float
    chunk: int | None = None  # colocated: prefill tokens per iteration
    ttft_s: float | None = None
    tpot_s: float | None = None
    free_memory_gib: float | None = None

    @classmethod
    def of(cls, R, i: int, instances: int) -> InstancePlan:
        """Candidate ``i`` of the role candidates ``R`` (:class:`~roofplan.solver.serve_roles.RoleCandidates`)."""
        s = R.shapes
        return cls(
            role=R.role,
            tp=int(s.tp[i]),
            pp=int(s.pp[i]),
            ep=int(s.ep[i]),
            dp=int(s.dp[i]),
            batch=int(R.batch[i]),
            instances=int(instances),
            gpus_per_instance=int(R.gpus[i]),
            hardware=R.pool.name,
            devices_per_node=int(R.pool.hw.devices_per_node),
            rate_rps_per_instance=float(R.rate[i]),
            chunk=None if R.chunk is None else int(R.chunk[i]),
            ttft_s=float(R.ttft_s[i]) if R.role in ("prefill", "colocated") else None,
            tpot_s=float(R.tpot_s[i]) if R.role in ("decode", "colocated") else None,
            free_memory_gib=None if R.free_bytes is None else float(R.free_bytes[i]) / 2**30,
        )

    def to_json(self) -> dict:
        d = {
            "tp": self.tp,
            "pp": self.pp,
            "ep": self.ep,
            "dp": self.dp,
            "batch": self.batch,
            "instances": self.instances,
            "gpus_per_instance": self.gpus_per_instance,
            "hardware": self.hardware,
            "devices_per_node": self.devices_per_node,
            "rate_rps_per_instance": self.rate_rps_per_instance,
        }
        if self.chunk is not None:
            d["chunk"] = self.chunk
            d["max_num_batched_tokens"] = self.chunk + self.batch
        if self.ttft_s is not None:
            d["ttft_ms"] = self.ttft_s * 1e3
        if self.tpot_s is not None:
            d["tpot_ms"] = self.tpot_s * 1e3
        if self.free_memory_gib is not None:
            d["free_memory_gib"] = self.free_memory_gib
        return d


@dataclass
class Deployment:
    """A deployment at its operating point. ``rank_key`` orders deployments of one request
    (smaller is better): (-goodput, GPUs) when maximising throughput, (cost, GPUs) with a rate."""

    mode: str  # colocated | disagg
    prefill: InstancePlan
    decode: InstancePlan
    gpus: int
    goodput_rps: float
    ttft_s: float
    tpot_s: float
    osl: int
    rank_key: tuple[float, int]
    ratio: str | None = None  # disaggregated: "xPyD"
    price_per_hour: float | None = None
    power_w: float | None = None
    kv_transfer_s: float | None = None  # disaggregated
    instances: int | None = None  # colocated
    ref: tuple | None = None  # colocated: (RoleCandidates, index), to drop a candidate the simulator refutes
    extra: dict = field(default_factory=dict)  # placement, ilp, slo_percentile, headroom, simulated

    def beats(self, other: Deployment) -> bool:
        """Strictly better than ``other`` (a first-key tie within 1e-9 is no win)."""
        return self.rank_key < other.rank_key and not math.isclose(
            self.rank_key[0], other.rank_key[0], rel_tol=1e-9
        )

    @property
    def output_tokens_per_s(self) -> float:
        return self.goodput_rps * self.osl

    def to_json(self) -> dict:
        out_tps = self.output_tokens_per_s
        power = self.power_w
        d = {
            "mode": self.mode,
            "prefill": self.prefill.to_json(),
            "decode": self.decode.to_json(),
            "ratio": self.ratio,
            "ttft_ms": self.ttft_s * 1e3,
            "tpot_ms": self.tpot_s * 1e3,
            "output_tokens_per_s": out_tps,
            "output_tokens_per_s_per_gpu": out_tps / self.gpus if self.gpus else 0.0,
            "tokens_per_s_per_user": 1.0 / self.tpot_s if self.tpot_s > 0 else None,
            "goodput_rps": self.goodput_rps,
            "gpus": int(self.gpus),
            "price_per_hour": self.price_per_hour,
            "power_w": power,
            "joules_per_output_token": power / out_tps if power is not None and out_tps > 0 else None,
        }
        if self.kv_transfer_s is not None:
            d["kv_transfer_ms"] = self.kv_transfer_s * 1e3
        if self.instances is not None:
            d["instances"] = int(self.instances)
        d.update(self.extra)
        return d


def pick(colocated: Deployment | None, disagg: Deployment | None) -> Deployment | None:
    """The better of the two modes (ties to colocated: one engine type, no KV transfer)."""
    if colocated is not None and disagg is not None:
        return disagg if disagg.beats(colocated) else colocated
    return disagg or colocated


@dataclass
class ServePlan:
    """The chosen deployment, the alternatives and the search statistics. ``to_json()`` is the
    docs/SPEC.md §3.4 document; ``best`` is the chosen deployment's part of it (what the emitters read)."""

    deployment: Deployment
    pareto: list
    searched: int
    search_time_s: float
    rejected: dict
    alternatives: dict[str, Deployment]
    request: dict
    feasible: int = 0
    launch: dict = field(default_factory=dict)  # engine -> {file name: text}, filled by roofplan.launch
    frontier: dict = field(default_factory=dict)  # mode -> (x list, y list), for plots

    @cached_property
    def best(self) -> dict:
        return self.deployment.to_json()

    def to_json(self) -> dict:
        return with_timing(
            {
                "schema": SCHEMA,
                "inputs": self.request,
                "best": self.best,
                "alternatives": {name: d.to_json() for name, d in self.alternatives.items()},
                "pareto": self.pareto,
                "searched": int(self.searched),
                "feasible": int(self.feasible),
                "rejected": dict(self.rejected),
                "search_time_s": float(self.search_time_s),
                "launch": self.launch,
            }
        )
