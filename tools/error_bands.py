"""Write the planners' error bands from the training and serving rows of the built-in validation suite.

Usage: ``python tools/error_bands.py`` prints the JSON document; ``--write`` stores it as
``roofplan/catalogs/error_bands.json``, which ``plan train`` reads (so a plan never runs the suite).
``tests/test_error_bands.py`` fails when the stored file and ``roofplan validate`` disagree: after a
change to the cost model, run this script with ``--write`` (next to ``tools/accuracy_table.py``).

For every group of training rows — device and model class (dense or MoE), the device alone, and
all devices — the band is the p90 of the absolute errors (nearest rank: the ceil(0.9 n)-th smallest).
``serve_bands`` holds the same per device (and over all devices) for the serving rows (static
steps, max-throughput runs and runs under load: :data:`SERVE_KINDS`), which ``plan serve`` reads.
The best published MFU per device, MFU class (MoE, dense from 100B parameters, smaller dense) and
precision (16-bit or FP8) is the highest of
the suite rows' measured MFU (the configuration's model FLOPs per GPU at the measured speed over
the catalog peak of the row's dtype: predicted MFU x measured / predicted throughput) and of the
published MFU figures listed in :data:`PUBLISHED_MFU` (runs whose configuration the suite lacks).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from accuracy_table import _source

from roofplan.solver.robust import mfu_class, model_class, precision
from roofplan.validation.suite import read_cases, run_suite
from roofplan.validation.train_predict import estimate_case

PATH = Path(__file__).resolve().parents[1] / "roofplan" / "catalogs" / "error_bands.json"
PERCENTILE = 90
#: Time-like metrics: predicted/measured - 1 > 0 means the prediction is slow (low MFU).
TIME_METRICS = ("step_time_s",)
#: The row kinds whose residuals make the serving band.
SERVE_KINDS = ("serve_step", "serve_throughput", "serve_spec", "serve_load")
#: Published MFU of runs the suite cannot replay (configuration incomplete), with their sources.
PUBLISHED_MFU = (
    {
        "key": "a100-sxm-80gb/dense-large/16bit",
        "mfu": 0.552,
        "case": "megascale-175b-12288",
        "source": "Jiang et al., MegaScale (NSDI 2024), abstract: 55.2% MFU training a 175B model on 12,288 GPUs",
    },
    {
        "key": "h100-sxm/dense-large/16bit",
        "mfu": 0.43,
        "case": "llama3-405b-8192",
        "source": "Dubey et al. 2024, The Llama 3 Herd of Models, Table 4: 43% BF16 MFU on 8,192 H100 (TP8 PP16 DP64)",
    },
)


def p90(values: list[float]) -> float:
    """Nearest-rank percentile: the ceil(0.9 n)-th smallest value."""
    v = sorted(values)
    return v[max(math.ceil(PERCENTILE / 100 * len(v)) - 1, 0)]


def document() -> dict:
    cases = [c for c in read_cases() if c.kind == "train"]
    res = run_suite(cases=cases)
    groups: dict[str, list] = {}
    best: dict[str, dict] = {}
    previous = ""
    for r in res.results:
        c = r.case
        src = previous = _source(c.source, previous)
        if r.error is None:
            continue
        est = estimate_case(c)
        hw = c.str("hardware")
        cls = model_class(est.model)
        for key in (f"{hw}/{cls}", hw, "all"):
            groups.setdefault(key, []).append((c.id, abs(r.error)))
        ratio = (1.0 + r.error) if c.metric in TIME_METRICS else 1.0 / (1.0 + r.error)
        mfu = est.value("mfu") * ratio
        key = f"{hw}/{mfu_class(est.model)}/{precision(c.str('dtype', 'bf16'))}"
        if mfu > best.get(key, {}).get("mfu", 0.0):
            best[key] = {"mfu": round(mfu, 4), "case": c.id, "source": src}
    for p in PUBLISHED_MFU:
        if p["mfu"] > best.get(p["key"], {}).get("mfu", 0.0):
            best[p["key"]] = {k: p[k] for k in ("mfu", "case", "source")}
    return {
        "about": "p90 absolute error of the validated training rows per device and model class, and of the "
        "serving rows per device; written by tools/error_bands.py from the suite behind `roofplan validate`",
        "percentile": PERCENTILE,
        "bands": _table(groups),
        "best_mfu": dict(sorted(best.items())),
        "serve_bands": _table(serve_groups()),
    }


def _table(groups: dict[str, list]) -> dict:
    return {
        k: {"rows": len(v), "band_pct": round(100 * p90([e for _, e in v]), 2), "cases": [i for i, _ in v]}
        for k, v in sorted(groups.items())
    }


def serve_groups() -> dict[str, list]:
    """(case id, |error|) of the validated serving rows, per device and over all devices."""
    groups: dict[str, list] = {}
    for r in run_suite(cases=[c for c in read_cases() if c.kind in SERVE_KINDS]).results:
        if r.error is not None:
            for key in (r.case.str("hardware"), "all"):
                groups.setdefault(key, []).append((r.case.id, abs(r.error)))
    return groups


def text() -> str:
    return json.dumps(document(), indent=1) + "\n"


def main(argv: list[str]) -> None:
    if "--write" in argv:
        PATH.write_text(text())
    else:
        print(text(), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
