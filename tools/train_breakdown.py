"""Per-term breakdown of the suite's training rows: where the predicted step time goes.

    python tools/train_breakdown.py [--cases FILE] [--ops] [ID_SUBSTRING ...]

For each ``train`` row: measured and predicted value, error, and the step-time terms of
:class:`~roofplan.costmodel.train_time.TrainArrays` as seconds and as a share of the step, so a
miss can be traced to a term (compute, TP/CP/EP/PP/DP communication, bubble, optimizer). With
``--ops`` also the per-layer op table (:meth:`roofplan.costmodel.train_ops.LayerOps.table`): each
named op's forward time per micro-batch, FLOPs, bytes and achieved rate.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from roofplan.costmodel.train_ops import layer_ops, step_lanes  # noqa: E402
from roofplan.validation.suite import predict, read_cases  # noqa: E402
from roofplan.validation.train_predict import estimate_case  # noqa: E402

TERMS = (
    "t_compute",
    "t_tp_comm",
    "t_cp_comm",
    "t_ep_comm",
    "t_pp_bubble",
    "t_pp_comm",
    "t_dp_comm",
    "t_optimizer",
    "t_offload",
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=None, help="a suite-format CSV (default: the built-in suite)")
    ap.add_argument("--ops", action="store_true", help="also print the per-layer op table")
    ap.add_argument("ids", nargs="*", help="only rows whose id contains one of these")
    args = ap.parse_args()
    for case in read_cases(args.cases):
        if case.kind != "train" or (args.ids and not any(i in case.id for i in args.ids)):
            continue
        est = estimate_case(case)
        a = est.arrays
        step = float(a.step_time_s[0])
        pred = predict(case)
        err = pred / case.measured - 1.0
        parts = "  ".join(
            f"{t[2:]}={float(getattr(a, t)[0]):.3f}({float(getattr(a, t)[0]) / step:.0%})"
            for t in TERMS
            if float(getattr(a, t)[0]) > 0
        )
        print(
            f"{case.id:44s} meas={case.measured:<10g} pred={pred:<10.4g} err={err:+.1%}  step={step:.3f}s  "
            f"mfu={float(a.mfu[0]):.1%}\n    {parts}"
        )
        if args.ops:
            print_ops(est)
    return 0


def print_ops(est) -> None:
    """The named ops of one decoder layer of the estimate's configuration (forward, one micro-batch)."""
    for name, sec, flops, nbytes in layer_ops(step_lanes(est.model, est.hardware, est.config)).table():
        t = float(sec if not hasattr(sec, "__len__") else sec[0])
        fl, by = float(getattr(flops, "flat", [flops])[0]), float(getattr(nbytes, "flat", [nbytes])[0])
        rate = f"{fl / t / 1e12:7.0f} TFLOP/s" if fl and t else f"{by / t / 1e9:7.0f} GB/s" if t else ""
        print(f"      {name:18s} {t * 1e3:8.3f} ms  {fl / 1e9:10.1f} GFLOP  {by / 1e6:9.1f} MB  {rate}")


if __name__ == "__main__":
    raise SystemExit(main())
