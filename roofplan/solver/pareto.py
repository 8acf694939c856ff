"""Pareto front of serving throughput per GPU against interactivity (tokens/s per user = 1/TPOT).

The throughput-interactivity trade-off is how serving deployments are compared (NVIDIA
InferenceMAX / AIConfigurator plots, DistServe Fig. 1): more concurrency raises tokens/s per GPU
and lowers tokens/s per user. A point is on the front when no other point is at least as good on
both axes and better on one. Also a dependency-free text plot for the terminal and an optional
PNG through matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import numpy as np

from roofplan.errors import InputError


def pareto_front(x, y) -> np.ndarray:
    """Indices of the points not dominated when maximising both ``x`` and ``y``, sorted by x.

    Sort by x descending (ties: y descending); a point is on the front when its y exceeds every y
    seen so far (the running maximum), which is O(n log n).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    idx = np.nonzero(ok)[0]
    if len(idx) == 0:
        return idx
    order = idx[np.lexsort((-y[idx], -x[idx]))]
    ys = y[order]
    prev_max = np.concatenate(([-np.inf], np.maximum.accumulate(ys)[:-1]))
    keep = order[ys > prev_max]
    return keep[np.argsort(x[keep], kind="stable")]


def thin(indices: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of the (sorted) front indices, evenly spaced, ends included."""
    if len(indices) <= limit:
        return indices
    pick = np.unique(np.round(np.linspace(0, len(indices) - 1, limit)).astype(int))
    return indices[pick]


def text_plot(
    series: dict[str, tuple[list[float], list[float]]],
    *,
    width: int = 60,
    height: int = 16,
    xlabel: str = "tokens/s per user",
    ylabel: str = "output tokens/s per GPU",
    marks: str = "o*+x#",
) -> str:
    """A scatter plot in plain text: one mark per series, axes labelled with min and max."""
    xs = [v for xs, _ in series.values() for v in xs]
    ys = [v for _, ys in series.values() for v in ys]
    if not xs:
        return "(no points)"
    x0, x1 = min(xs), max(xs)
    y0, y1 = 0.0, max(ys)
    x1 = x1 if x1 > x0 else x0 + 1.0
    y1 = y1 if y1 > y0 else y0 + 1.0
    grid = [[" "] * width for _ in range(height)]
    for k, (sx, sy) in enumerate(series.values()):
        mark = marks[k % len(marks)]
        for a, b in zip(sx, sy):
            c = min(width - 1, int(round((a - x0) / (x1 - x0) * (width - 1))))
            r = height - 1 - min(height - 1, int(round((b - y0) / (y1 - y0) * (height - 1))))
            grid[r][c] = mark
    label_w = max(len(f"{y1:.0f}"), len(f"{y0:.0f}"))
    lines = []
    for r, row in enumerate(grid):
        lab = f"{y1:.0f}" if r == 0 else (f"{y0:.0f}" if r == height - 1 else "")
        lines.append(f"{lab:>{label_w}} |" + "".join(row))
    lines.append(" " * label_w + " +" + "-" * width)
    left, right = f"{x0:.1f}", f"{x1:.1f}"
    lines.append(" " * (label_w + 2) + left + " " * max(1, width - len(left) - len(right)) + right)
    legend = "  ".join(f"{marks[k % len(marks)]} {name}" for k, name in enumerate(series))
    lines.append(f"{' ' * (label_w + 2)}x: {xlabel}   y: {ylabel}   {legend}")
    return "\n".join(lines)


def require_matplotlib():
    """Import matplotlib (the optional ``plot`` extra) or raise a one-line usage error."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "plot", "matplotlib", "install the plot extra (pip install 'roofplan[plot]') or drop --plot"
        ) from None
    return plt


def save_png(series: dict[str, tuple[list[float], list[float]]], path: str, title: str = "") -> None:
    """Save the front as a PNG scatter/line plot with matplotlib."""
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (sx, sy) in series.items():
        ax.plot(sx, sy, marker="o", label=name)
    ax.set_xlabel("tokens/s per user (1 / TPOT)")
    ax.set_ylabel("output tokens/s per GPU")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
