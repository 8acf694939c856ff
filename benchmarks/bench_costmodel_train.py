"""Speed of the vectorised training cost model: configurations evaluated per second on one core.

Draws random configurations, keeps the valid ones (check_train_config), times ``train_step`` on
1e5 of them and prints configs/s. The planner needs >= 1e6 configs/s.

    python benchmarks/bench_costmodel_train.py [--model llama-3.1-70b] [--hardware h100-sxm] [--n 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from roofplan.costmodel.train import TrainConfigs, check_train_config, train_step
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model


def random_configs(model, n: int, seed: int = 0) -> TrainConfigs:
    rng = np.random.default_rng(seed)
    pick = lambda values, size: rng.choice(np.asarray(values), size=size)
    size = 4 * n
    tp = pick([1, 2, 4, 8], size)
    pp = pick([1, 2, 4, 8, 16], size)
    dp = pick([1, 2, 4, 8, 16, 32, 64], size)
    cp = pick([1, 1, 2, 4], size)
    ep = pick([1, 2, 4, 8], size) if model.moe else np.ones(size, dtype=int)
    vpp = pick([1, 1, 2, 4], size)
    mb = pick([1, 2, 4], size)
    gb = mb * dp * pick([4, 8, 16, 32], size) * pp
    cfg = TrainConfigs(
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=ep,
        vpp=vpp,
        micro_batch=mb,
        global_batch=gb,
        seq_len=pick([2048, 4096, 8192], size),
        recompute=pick([0, 1, 2], size),
        recompute_layers=0,
        sequence_parallel=tp > 1,
        zero=pick([0, 1], size),
        offload=pick([0, 0, 0, 1], size),
    )
    valid = np.flatnonzero(check_train_config(model, cfg) == 0)[:n]
    return cfg.take(valid)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="llama-3.1-70b")
    ap.add_argument("--hardware", default="h100-sxm")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    model, hw = load_model(args.model), load_hardware(args.hardware)
    cfg = random_configs(model, args.n)
    train_step(model, hw, cfg)  # warm caches
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        train_step(model, hw, cfg)
        best = min(best, time.perf_counter() - t0)
    print(
        f"model={args.model} hardware={args.hardware} configs={len(cfg)} best_of_{args.repeat}={best * 1e3:.1f} ms "
        f"configs_per_s={len(cfg) / best:,.0f}"
    )


if __name__ == "__main__":
    main()
