"""``roofplan calibrate``: fit a catalog's efficiency parameters to measurements, write an overlay.

Thin: parses options, calls :func:`roofplan.calibration.fit.calibrate`, renders the fit (each
parameter before/after, each measurement's error before/after) with rich or as JSON.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from roofplan.cli.common import (
    bounded_count,
    check_out_file,
    console,
    os_error,
    print_json,
    run,
    styled,
)
from roofplan.cli.options import Calibration, Json
from roofplan.errors import InputError


def _fmt_param(name: str, v: float) -> str:
    if math.isnan(v):
        return "-"
    if name.endswith("_s"):
        return f"{v * 1e6:.4g} us" if v < 1e-3 else f"{v * 1e3:.4g} ms"
    return f"{v:.4g}"


def _fmt_err(e: float) -> str:
    return f"{e * 100:+.1f}%"


def _status(p) -> str:
    if not p.informed:
        return styled("[dim]not informed[/dim]")
    if p.degenerate_with:
        return "fitted jointly with " + ", ".join(p.degenerate_with)
    return "fitted"


def _render(result, out: Path | None) -> None:
    doc = result.to_json()
    console.print(
        styled(
            f"[bold]calibrate[/bold] {escape(result.hardware)}: {doc['measurements']} measurements"
            + escape(
                f", {result.skipped_other_hardware} skipped (other hardware: "
                + ", ".join(f"{k or '?'} {v}" for k, v in sorted(result.skipped_by_hardware.items()))
                + ")"
                if result.skipped_other_hardware
                else ""
            )
        )
    )
    if result.skipped_no_predictor:
        console.print(
            "skipped (no predictor for the kind yet): "
            + ", ".join(f"{k} {v}" for k, v in result.skipped_no_predictor.items())
        )
    params = Table(
        title="Parameters (sens.: Jacobian column norm, d log prediction / d log parameter)",
        title_justify="left",
    )
    params.add_column("parameter", overflow="fold")
    for col, just in (("before", "right"), ("after", "right"), ("change", "right"), ("sens.", "right")):
        params.add_column(col, justify=just, no_wrap=True)
    params.add_column("status", no_wrap=True)
    for p in result.params:
        change = p.after / p.before - 1.0 if p.before else float("nan")
        params.add_row(
            p.name,
            _fmt_param(p.name, p.before),
            _fmt_param(p.name, p.after),
            _fmt_err(change) if p.informed and not math.isnan(change) else "",
            f"{p.sensitivity:.3g}",
            _status(p),
        )
    console.print(params)
    res = Table(title="Residuals (error = predicted / measured - 1)", title_justify="left")
    res.add_column("measurement", overflow="fold")
    for col in ("measured", "before", "error", "after", "error"):
        res.add_column(col, justify="right", no_wrap=True)
    for r in doc["residuals"]:
        unit = f" {r['unit']}" if r["unit"] else ""
        res.add_row(
            r["id"],
            f"{r['measured']:.4g}{unit}",
            f"{r['predicted_before']:.4g}",
            _fmt_err(r["error_before"]),
            f"{r['predicted_after']:.4g}",
            _fmt_err(r["error_after"]),
        )
    console.print(res)
    mb, ma = doc["median_abs_error_before"], doc["median_abs_error_after"]
    console.print(f"median |error|: {mb * 100:.1f}% before, {ma * 100:.1f}% after  ({result.status})")
    if out is not None:
        console.print(f"wrote {out}  (apply with --calibration {out})")


def calibrate(
    files: list[str] = typer.Argument(  # noqa: B008
        ..., metavar="MEASUREMENTS", help="Measurement CSVs or nccl-tests output (docs/calibration.md)."
    ),
    hardware: str = typer.Option(
        ..., "--hardware", help="Catalog id (or YAML path) the measurements were taken on."
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        metavar="FILE",
        help="Write the overlay YAML here (its directory is created if missing).",
    ),
    params: str | None = typer.Option(
        None,
        "--params",
        help="Comma-separated parameters to fit (default: all the data informs), e.g. "
        "gemm_max,hbm or vllm.step_overhead_s.",
    ),
    op: str | None = typer.Option(
        None, "--op", help="nccl-tests collective when the output does not name it."
    ),
    ranks: int | None = typer.Option(
        None, "--ranks", callback=bounded_count, help="nccl-tests ranks when the output has no Rank lines."
    ),
    nodes: int | None = typer.Option(
        None, "--nodes", callback=bounded_count, help="nccl-tests nodes (default: distinct hosts)."
    ),
    prior_weight: float | None = typer.Option(
        None,
        "--prior-weight",
        help="Weight of the catalog values as a prior (default 0.1; 0: plain least squares).",
    ),
    calibration: Calibration = None,
    json_out: Json = False,
) -> None:
    """Fit the catalog's efficiency parameters to your measurements (least squares) and write an overlay."""
    return run(
        lambda: _impl(files, hardware, out, params, op, ranks, nodes, prior_weight, calibration, json_out)
    )


def _impl(files, hardware, out, params, op, ranks, nodes, prior_weight, calibration, json_out) -> None:
    from roofplan.calibration.fit import calibrate as fit

    out_path = check_out_file(out)  # before fitting: a bad --out fails fast and nothing is written
    for name, value in (("ranks", ranks), ("nodes", nodes)):
        if value is not None and value < 1:
            raise InputError(name, value, "a positive integer")
    if op is not None:  # checked even when no nccl-tests file uses it: a typo should not pass silently
        from roofplan.calibration.formats import OP_ALIASES
        from roofplan.costmodel.collectives import COLLECTIVES

        if op.lower().removesuffix("_perf") not in OP_ALIASES:
            raise InputError("op", op, "expected one of " + ", ".join(COLLECTIVES))
    result = fit(
        [str(f) for f in files],
        hardware,
        params=params,
        out=None,
        calibration=calibration,
        op=op,
        ranks=ranks,
        nodes=nodes,
        prior_weight=prior_weight,
    )
    if out_path is not None:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            result.write(out_path)
        except OSError as exc:
            raise os_error("out", out, exc) from None
    if json_out:
        print_json(result.to_json())
    else:
        _render(result, out)


def register(group) -> None:
    group.command("calibrate")(calibrate)
