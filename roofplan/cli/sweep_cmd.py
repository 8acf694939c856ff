"""``roofplan sweep SPEC.yaml``: fleet-wide scenarios through the planners (roofplan.sweep)."""

from __future__ import annotations

import typer
from rich.progress import (
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from roofplan.cli.common import (
    OPTIONAL_VALUES,
    check_out_dir,
    console,
    err_console,
    print_json,
    run,
)
from roofplan.cli.options import Json
from roofplan.cli.render import progress_bar

OPTIONAL_VALUES["--ray"] = "local"


class _Bar:
    """A rich progress bar with ETA on stderr (only on a terminal, never with --json)."""

    def __init__(self, enabled: bool):
        self.progress = None
        if enabled:
            self.progress = progress_bar(
                "sweep", MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()
            )
            self.task = self.progress.add_task("sweep", total=None)

    def __call__(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def sweep(
    spec: str = typer.Argument(..., metavar="SPEC.yaml", help="Sweep spec (see docs/examples/sweep.yaml)."),
    out: str = typer.Option(
        "sweep-out", "--out", metavar="DIR", help="Results, journal and summary go here."
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="[ADDRESS]",
        help="Run as Ray tasks: alone (or 'local') starts a local Ray; or a cluster address (auto, host:port).",
    ),
    plot: str | None = typer.Option(None, "--plot", metavar="DIR", help="Pareto fronts per workload (PNG)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: every core)."),
    json_out: Json = False,
) -> None:
    """Plan every scenario of a spec (models x hardware x GPUs x workloads x SLAs x objectives)."""

    def body():
        from roofplan.sweep import run_sweep

        out_dir = check_out_dir(out)
        plot_dir = check_out_dir(plot, "plot") if plot is not None else None
        bar = _Bar(enabled=not json_out and err_console.is_terminal)
        try:
            doc = run_sweep(spec, out_dir, ray=ray, workers=workers, plot_dir=plot_dir, progress=bar)
        finally:
            bar.close()
        if json_out:
            print_json(doc)
            return
        st = ", ".join(f"{k} {v}" for k, v in doc["status"].items())
        t = doc["timing"]
        rate = f", {t['scenarios_per_s']:.1f} scenarios/s" if t["scenarios_per_s"] else ""
        console.print(
            f"{doc['scenarios']} scenarios ({st}; {doc['resumed']} from an earlier run) in "
            f"{t['elapsed_s']:.1f} s on {t['executor']}{rate}",
            highlight=False,
        )
        for k, path in doc["files"].items():
            for p in path if isinstance(path, list) else [path]:
                console.print(f"wrote {p}" if k != "journal" else f"journal {p}", highlight=False)

    return run(body)


def register(app) -> None:
    app.command("sweep")(sweep)
