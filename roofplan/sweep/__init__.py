"""Fleet sweeps: many training and serving plans from one YAML spec (``roofplan sweep``).

:func:`run_sweep` expands the spec (:mod:`roofplan.sweep.spec`), skips the scenarios already in the
output's journal (resume), runs the rest locally in a process pool or as Ray tasks
(:mod:`roofplan.sweep.run`, through the public ``plan_training`` / ``plan_serving``), and writes
the tables and summary (:mod:`roofplan.sweep.output`) and, on request, the Pareto plots
(:mod:`roofplan.sweep.plot`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from roofplan.outputs import write_file
from roofplan.sweep import output, run, spec


def run_sweep(
    spec_path,
    out_dir,
    *,
    ray: str | bool | None = None,
    workers: int | None = None,
    plot_dir=None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Run the spec at ``spec_path`` (or a parsed mapping) into ``out_dir``; returns the summary.

    ``ray``: None/False runs locally; True or "local" starts a local Ray (``workers`` CPUs); any
    other string is a cluster address. ``progress(done, total)`` is called as rows finish.
    """
    t0 = time.perf_counter()
    doc = spec_path if isinstance(spec_path, dict) else spec.load_spec(spec_path)
    base = None if isinstance(spec_path, dict) else Path(spec_path).expanduser().parent
    scenarios, prices = spec.expand(doc, base=base)
    if plot_dir is not None:
        from roofplan.solver.pareto import require_matplotlib

        require_matplotlib()  # fail before hours of work, not after
    if ray:
        run.require_ray()
    out = Path(out_dir)
    done = output.read_journal(out)
    todo = [s for s in scenarios if s["id"] not in done]
    resumed = len(scenarios) - len(todo)
    journal = output.Journal(out)
    count = [resumed]
    if progress is not None:
        progress(resumed, len(scenarios))

    def on_row(row: dict) -> None:
        journal.write(row)
        done[row["id"]] = row
        count[0] += 1
        if progress is not None:
            progress(count[0], len(scenarios))

    t_run = time.perf_counter()
    try:
        if ray:
            address = None if ray is True or ray == "local" else str(ray)
            run.run_ray(todo, prices, on_row, address=address, num_cpus=workers)
            executor = "ray" if address is None else f"ray {address}"
        else:
            run.run_local(todo, prices, on_row, workers=workers)
            executor = "local"
    finally:
        journal.close()
    run_s = time.perf_counter() - t_run
    rows = output.ordered_rows(scenarios, done)
    files = {"csv": str(out / "results.csv"), "journal": str(out / output.JOURNAL)}
    output.write_csv(out / "results.csv", rows)
    if output.write_parquet(out / "results.parquet", rows):
        files["parquet"] = str(out / "results.parquet")
    if plot_dir is not None:
        from roofplan.sweep.plot import plot_fronts

        files["plots"] = plot_fronts(rows, plot_dir)
    files["summary"] = str(out / "summary.json")
    doc_out = output.summary(rows, files, resumed)
    doc_out["timing"] = {
        "elapsed_s": time.perf_counter() - t0,
        "run_s": run_s,
        "executor": executor,
        "workers": workers,
        "scenarios_run": len(todo),
        "scenarios_per_s": len(todo) / run_s if run_s > 0 and todo else None,
    }
    write_file(out / "summary.json", json.dumps(doc_out, indent=2) + "\n")
    return doc_out
