"""Speed of the discrete-event serving simulator (``roofplan simulate``).

Target: >= 10,000 requests in under 2 s on one core, table build included. Prints one line per
scenario: requests, engine iterations, wall time (fastest of ``--repeat`` runs), requests/s of wall
time and the simulated TTFT/TPOT means. Run it pinned to one core to check the figure:

    taskset -c 0 python benchmarks/bench_simulate.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

from roofplan import simulate_serving  # resolves the ids at the door
from roofplan.workload import make_workload

#: (label, model, hardware, deployment keywords, workload keywords)
SCENARIOS = [
    (
        "8B H100 vllm, 1000/200, 10 req/s",
        "llama-3.1-8b",
        "h100-sxm",
        dict(engine="vllm", rate=10),
        dict(isl=1000, osl=200),
    ),
    (
        "8B H100 vllm, chat preset, 5 req/s",
        "llama-3.1-8b",
        "h100-sxm",
        dict(engine="vllm", rate=5),
        dict(workload="chat"),
    ),
    (
        "70B H100 tp4 x2 vllm, concurrency 128",
        "llama-3.1-70b",
        "h100-sxm",
        dict(engine="vllm", tp=4, instances=2, concurrency=128),
        dict(isl=2000, osl=300),
    ),
    (
        "70B H100 disagg 1P2D tp4, 3 req/s",
        "llama-3.1-70b",
        "h100-sxm",
        dict(engine="vllm", tp=4, mode="disagg", prefill_instances=1, decode_instances=2, rate=3),
        dict(isl=4000, osl=300),
    ),
]
REQUESTS = 10000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per scenario; the fastest is reported")
    args = ap.parse_args()
    print(
        f"{'scenario':42s} {'requests':>8s} {'iterations':>10s} {'wall s':>7s} {'req/s':>8s} "
        f"{'TTFT ms':>9s} {'TPOT ms':>8s}"
    )
    for label, model, hw, dep, wlk in SCENARIOS:
        wl = make_workload(**wlk)
        best, doc = float("inf"), None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            doc = simulate_serving(model, hw, workload=wl, requests=REQUESTS, **dep).to_json()
            best = min(best, time.perf_counter() - t0)
        print(
            f"{label:42s} {REQUESTS:8d} {doc['iterations']:10d} {best:7.2f} {REQUESTS / best:8.0f} "
            f"{doc['ttft_ms']:9.1f} {doc['tpot_ms']:8.2f}"
        )


if __name__ == "__main__":
    main()
