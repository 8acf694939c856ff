"""Fit ``sustained_compute`` of a device to training runs held out of the validation suite.

    python tools/fit_sustained.py [--write]

``sustained_compute`` stands for a physical effect that kernel timings cannot show: over a long
training run the board power limit holds the SM clock below the boost clock of a microbenchmark
(see ``Efficiency.sustained_compute``). It is the one end-to-end constant left after the operator
library (``tools/fit_ops.py``) prices every kernel, and it is fitted here on runs that the suite
does not contain (``tests/test_validate_train.py`` checks that), by one-dimensional least squares
on log step times. roofplan never imports this at run time.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofplan.hardware.catalog import load_hardware  # noqa: E402
from roofplan.validation.suite import predict, read_cases  # noqa: E402

#: Training runs held out of the validation suite (suite format): two NeMo runs on H100, two of
#: the ten SC21 Table 1 runs on A100 (3.6B and 310.1B; the other eight stay in the suite), and the
#: Megatron-Bridge 25.09 runs on B200 and GB200 and the 25.11 TP2 CP2 Llama 3.1 405B run on GB300
#: (the other 25.11/26.02 runs of those systems stay in the suite).
HELD_OUT_CSV = ROOT / "tools" / "data" / "heldout_training.csv"
#: Devices without held-out runs of their own take a fitted device's value, with the reason in the
#: source. H200 and A100 40GB share the die and board limit of the device they copy. B300 does
#: not (1100 W against B200's 1000 W) but has no training run to fit, so B200's value is its prior.
#: GB300 (1400 W) does not share GB200's (1200 W) board limit and has held-out runs of its own.
SAME_AS = {
    "h200-sxm": ("h100-sxm", "same die and board power limit"),
    "a100-sxm-40gb": ("a100-sxm-80gb", "same die and board power limit"),
    "b300-sxm": (
        "b200-sxm",
        "no B300 training run to fit. Not the same power limit: B300 allows 1,100 W against "
        "B200's 1,000 W, so the power-limited fraction may be higher here; the value is a prior, "
        "not a measurement of this board",
    ),
}


def fit(hw_id: str, cases) -> float:
    """sustained_compute of ``hw_id`` minimising the squared log error of its held-out ``cases``."""
    base = load_hardware(hw_id)

    def cost(s: float) -> float:
        dev = base.with_efficiency(sustained_compute=s)
        r = [np.log(_predict(c, dev) / c.measured) for c in cases]
        return float(np.sum(np.square(r)))

    return float(minimize_scalar(cost, bounds=(0.3, 1.0), method="bounded").x)


def _predict(case, dev) -> float:
    """The suite's prediction of ``case`` on the device spec ``dev`` (overlay of its efficiencies)."""
    overlay = {
        "schema": "roofplan.calibration/v1",
        "hardware": dev.id,
        "efficiency": {"sustained_compute": dev.efficiency.sustained_compute},
    }
    return predict(case, overlay)


def source(hw_id: str, value: float, cases) -> str:
    runs = "; ".join(f"{c.id} {c.measured:g} {c.str('unit')}" for c in cases)
    # a fit at the upper bound: the run is no slower than its kernel tables' clock allows
    bound = " (at the bound 1: no sustained-clock loss against the kernel tables)" if value >= 0.9995 else ""
    return (
        f"fit (held out of the validation suite, tools/data/heldout_training.csv): {runs}; "
        f"tools/fit_sustained.py least squares {value:.3f}{bound} with the kernel-fitted operator library (tools/fit_ops.py). "
        "Cause: matmuls are power-limited in long runs (H. He, thonking.ai 2024, Strangely Matrix Multiplications "
        "Run Faster When Given Predictable Data) while measured kernel tables time short bursts"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the value into the built-in catalog YAML")
    args = ap.parse_args()
    cases = read_cases(HELD_OUT_CSV)
    for hw_id in sorted({c.str("hardware") for c in cases}):
        mine = [c for c in cases if c.str("hardware") == hw_id]
        value = fit(hw_id, mine)
        print(f"{hw_id}: sustained_compute = {value:.3f} from {len(mine)} held-out runs")
        if not args.write:
            continue
        lines = {hw_id: source(hw_id, value, mine)}
        lines.update(
            {
                other: f"assumed equal to {hw_id} ({why}; see {hw_id}.yaml)"
                for other, (same, why) in SAME_AS.items()
                if same == hw_id
            }
        )
        for dev, src in lines.items():
            path = ROOT / "roofplan" / "catalogs" / f"{dev}.yaml"
            line = f'  sustained_compute: {{value: {value:.3f}, source: "{src}"}}'
            path.write_text(re.sub(r"^  sustained_compute: .*$", line, path.read_text(), flags=re.M))


if __name__ == "__main__":
    main()
