"""Speed of the serving planner: candidates evaluated, evaluation rate and wall time of whole plans.

Target: a plan for deepseek-v3 on 64 h200-sxm over every candidate (colocated and disaggregated,
with and without latency targets) in under 5 seconds. Prints one line per scenario: candidates
searched, candidates/s, ILP size and solve time, wall time, and the chosen deployment.

    python benchmarks/bench_plan_serve.py [--repeat 3] [--slo-percentile 90]
"""

from __future__ import annotations

import argparse
import time

from roofplan import plan_serving

SCENARIOS = [
    ("deepseek-v3", "h200-sxm", 64, dict(isl=4000, osl=500)),
    ("deepseek-v3", "h200-sxm", 64, dict(isl=4000, osl=500, ttft_ms=2000, tpot_ms=50)),
    ("deepseek-v3", "h200-sxm", 64, dict(isl=4000, osl=500, ttft_ms=2000, tpot_ms=50, rate=20)),
    ("llama-3.1-70b", "h100-sxm", 16, dict(isl=4000, osl=500, ttft_ms=1000, tpot_ms=30)),
    ("llama-3.1-405b", "h100-sxm", 64, dict(isl=8000, osl=1000, ttft_ms=3000, tpot_ms=60)),
    ("qwen3-235b-a22b", "h100-sxm", 32, dict(isl=2000, osl=1000)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario; the fastest is reported")
    ap.add_argument(
        "--slo-percentile",
        type=float,
        default=None,
        help="plan for a percentile SLA (queueing goodput + simulator confirmation)",
    )
    args = ap.parse_args()
    cols = f"{'candidates':>10s} {'cand/s':>10s} {'ILP P x D':>10s} {'ILP s':>6s} {'wall s':>7s}"
    print(f"{'scenario':58s} {cols}  best")
    for model, hw, gpus, req in SCENARIOS:
        best_t, plan = float("inf"), None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            plan = plan_serving(model, hw, gpus=gpus, slo_percentile=args.slo_percentile, **req)
            best_t = min(best_t, time.perf_counter() - t0)
        b = plan.best
        ilp = b.get("ilp", {})
        size = f"{ilp.get('prefill_options', 0)}x{ilp.get('decode_options', 0)}" if ilp else "-"
        layout = b["ratio"] or f"{b.get('instances', 1)}x colocated"
        name = f"{model} {gpus}x{hw} " + " ".join(f"{k}={v}" for k, v in req.items())
        print(
            f"{name:58s} {plan.searched:>10,d} {plan.searched / best_t:>10,.0f} {size:>10s} "
            f"{ilp.get('solve_time_s', 0.0):>6.2f} {best_t:>7.2f}  {b['mode']} {layout} "
            f"{b['output_tokens_per_s_per_gpu']:.0f} tok/s/GPU"
        )


if __name__ == "__main__":
    main()
