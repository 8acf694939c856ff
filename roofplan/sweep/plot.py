"""``sweep --plot DIR``: per workload, the Pareto front of each device (matplotlib, the ``plot`` extra).

* serving: $ per million output tokens against tokens/s per user, from the Pareto points of every
  scenario of that device and workload (each point priced at its device's $/GPU-hour:
  $/Mtok = price / 3600 / (tok/s/GPU) x 1e6); fronts keep the points no other point beats on both;
* training: days to train against dollars (needs ``tokens`` in the workload), one point per
  scenario, the front of each device drawn as a line.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np

from roofplan.hardware.spec import usd_per_million_tokens
from roofplan.outputs import write_file
from roofplan.solver.pareto import pareto_front, require_matplotlib
from roofplan.sweep.output import workload_key


def _device(r: dict) -> str:
    return r["hardware"]


def _serve_points(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, list] = {}
    for r in rows:
        for x, y, usd in json.loads(r.get("pareto") or "[]"):
            if usd and y > 0:
                out.setdefault(_device(r), []).append((x, usd_per_million_tokens(usd, y)))
    return {k: (np.array([p[0] for p in v]), np.array([p[1] for p in v])) for k, v in out.items()}


def _train_points(rows: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, list] = {}
    for r in rows:
        if r.get("time_to_train_days") is not None and r.get("cost_to_train_usd") is not None:
            out.setdefault(_device(r), []).append((r["time_to_train_days"], r["cost_to_train_usd"]))
    return {k: (np.array([p[0] for p in v]), np.array([p[1] for p in v])) for k, v in out.items()}


def fronts(rows: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{workload: {device: (x, y) of its front}} of the ok rows (x ascending)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault(workload_key(r), []).append(r)
    out = {}
    for key, rs in groups.items():
        train = rs[0]["kind"] == "train"
        pts = _train_points(rs) if train else _serve_points(rs)
        series = {}
        for dev, (x, y) in sorted(pts.items()):
            # serving: more tok/s/user, fewer $; training: fewer days, fewer $
            f = pareto_front(-x, -y) if train else pareto_front(x, -y)
            f = f[np.argsort(x[f], kind="stable")]
            series[dev] = (x[f].tolist(), y[f].tolist())
        if series:
            out[key] = series
    return out


def plot_fronts(rows: list[dict], out_dir: str | Path) -> list[str]:
    """One PNG per workload in ``out_dir``; returns the paths written."""
    plt = require_matplotlib()
    out_dir = Path(out_dir)
    written = []
    for key, series in fronts(rows).items():
        train = key.startswith("train:")
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for dev, (x, y) in series.items():
            ax.plot(x, y, marker="o", label=dev)
        ax.set_xlabel("days to train" if train else "tokens/s per user (1 / TPOT)")
        ax.set_ylabel("USD to train" if train else "USD per million output tokens")
        ax.set_yscale("log")
        if train:  # GPU counts in powers of two spread the days over decades
            ax.set_xscale("log")
        ax.set_title(key, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / (re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_") + ".png")
        buf = io.BytesIO()
        fig.savefig(buf, dpi=110, format="png")
        plt.close(fig)
        write_file(path, buf.getvalue(), field="plot")  # atomic, never through a planted link
        written.append(str(path))
    return written
