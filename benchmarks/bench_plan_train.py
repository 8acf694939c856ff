"""Speed of the training planner (not part of the test suite).

Prints, for gpt3-175b on 1024 a100-sxm-80gb (global batch 1536, seq 2048) and llama-3.1-405b on
16384 h100-sxm (global batch 2048, seq 8192): configurations considered (the whole cross product),
evaluated by the cost model, configurations per second, and the wall time of the whole plan
(target: under 2 s each). Also times the vectorised cost model alone on >= 1e6 configurations
(target: >= 1e6 configurations per second on one core).

    python benchmarks/bench_plan_train.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target is stated
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from roofplan import plan_training
from roofplan.costmodel.train import check_train_config, train_step
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model
from roofplan.solver.space import enumerate_space
from roofplan.solver.train_planner import CHUNK
from roofplan.solver.train_planner import _configs as configs_of_space

CASES = (
    ("gpt3-175b", "a100-sxm-80gb", 1024, 1536, 2048),
    ("llama-3.1-405b", "h100-sxm", 16384, 2048, 8192),
)


def bench_plan(model: str, hw: str, gpus: int, gbs: int, seq: int) -> None:
    plan_training(model, hw, gpus=gpus, global_batch=gbs, seq_len=seq)  # warm imports and caches
    t0 = time.perf_counter()
    plan = plan_training(model, hw, gpus=gpus, global_batch=gbs, seq_len=seq)
    wall = time.perf_counter() - t0
    b = plan.best
    print(f"{model} on {gpus} x {hw} (GBS {gbs}, seq {seq})")
    print(f"  considered {plan.searched:,}  evaluated {plan.evaluated:,}  feasible {plan.feasible:,}")
    print(
        f"  wall {wall:.3f} s (target < 2 s)  -> {plan.searched / wall:,.0f} considered/s, "
        f"{plan.evaluated / wall:,.0f} evaluated/s"
    )
    print(
        f"  best tp={b['tp']} pp={b['pp']} dp={b['dp']} cp={b['cp']} vpp={b['vpp']} mbs={b['micro_batch']} "
        f"recompute={b['recompute']} zero={b['zero']} offload={b['offload']}: {b['tokens_per_s']:,.0f} tokens/s, "
        f"MFU {b['mfu']:.1%}; placement {plan.placement.get('method')}"
    )


def bench_cost_model(n_target: int = 1_000_000) -> None:
    model, hw = load_model("gpt3-175b"), load_hardware("a100-sxm-80gb")
    sp = enumerate_space(model, hw, gpus=1024, global_batch=1536, seq_len=2048, capacity_bytes=float("inf"))
    cfg = configs_of_space(sp.arrays, "bf16", None, True)  # as the planner builds them
    cfg = cfg.take(check_train_config(model, cfg) == 0)
    reps = int(np.ceil(n_target / len(cfg)))
    idx = np.tile(np.arange(len(cfg)), reps)[:n_target]
    big = cfg.take(idx)
    train_step(model, hw, cfg.take(np.arange(min(1000, len(cfg)))))  # warm-up
    for chunk in (len(big), CHUNK):
        parts = [big.take(np.arange(i, min(i + chunk, len(big)))) for i in range(0, len(big), chunk)]
        t0 = time.perf_counter()
        for p in parts:
            train_step(model, hw, p)
        dt = time.perf_counter() - t0
        print(
            f"cost model: {len(big):,} configurations in calls of {chunk:,}: {dt:.3f} s -> "
            f"{len(big) / dt:,.0f} per second (target >= 1,000,000)"
        )


if __name__ == "__main__":
    for case in CASES:
        bench_plan(*case)
    bench_cost_model()
