"""Scenarios per second of ``roofplan sweep``: the local process pool, and Ray when installed.

Usage: ``python benchmarks/bench_sweep.py [SPEC] [--workers N] [--ray]``; default spec
``benchmarks/sweep_1000.yaml`` (1,080 scenarios). Each run starts from an empty output directory
(no resume); with ``--ray`` the Ray run's CSV is compared with the local one row for row.
"""

from __future__ import annotations

import argparse
import filecmp
import tempfile
import time
from pathlib import Path

from roofplan.sweep import run_sweep

HERE = Path(__file__).resolve().parent


def _run(spec: str, out: Path, **kw) -> tuple[dict, float]:
    t0 = time.perf_counter()
    doc = run_sweep(spec, out, **kw)
    return doc, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("spec", nargs="?", default=str(HERE / "sweep_1000.yaml"))
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--ray", action="store_true", help="also run on a local Ray with the same workers")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        local, t_local = _run(args.spec, Path(tmp) / "local", workers=args.workers)
        n = local["scenarios"]
        print(
            f"local: {n} scenarios ({local['status']}) in {t_local:.1f} s = {n / t_local:.1f} scenarios/s "
            f"({local['timing']['workers'] or 'all'} workers)"
        )
        if args.ray:
            ray, t_ray = _run(args.spec, Path(tmp) / "ray", workers=args.workers, ray=True)
            same = filecmp.cmp(
                Path(tmp) / "local" / "results.csv", Path(tmp) / "ray" / "results.csv", shallow=False
            )
            print(
                f"ray:   {n} scenarios in {t_ray:.1f} s = {n / t_ray:.1f} scenarios/s (incl. Ray start); "
                f"results.csv identical to local: {same}"
            )


if __name__ == "__main__":
    main()
