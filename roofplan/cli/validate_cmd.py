"""``roofplan validate``: predicted vs published measurements for every case of the built-in suite.

Thin: :func:`roofplan.validation.suite.run_suite` predicts each case; this module renders one rich
table (id, kind, model, hardware, metric, measured, predicted, error) and the median and worst
absolute error per group and overall, or ``SuiteResult.to_json()`` with ``--json``.
"""

from __future__ import annotations

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from roofplan.cli.common import console, esc, print_json, run, styled
from roofplan.cli.options import Calibration, Json

KINDS_OPTION = typer.Option(
    None,
    "--kind",
    help="Only cases of this kind (repeatable): train, serve_step, serve_throughput, op_gemm, op_allreduce.",
)
CASES_OPTION = typer.Option(
    None, "--cases", help="A measurements CSV in the suite's format instead of the built-in suite."
)
MEASUREMENTS_OPTION = typer.Option(
    None,
    "--measurements",
    help="Operator measurements (calibration CSV or nccl-tests text, repeatable): predict every row, no fit.",
)
HARDWARE_OPTION = typer.Option(
    None,
    "--hardware",
    help="With --measurements: only rows of this catalog id (and the id for rows without a hardware column).",
)
ROWS_OPTION = typer.Option(
    False, "--rows", help="With --measurements: print every row, not only the summary."
)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1%}"


def _abs_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.4g}" if abs(x) < 1e4 else f"{x:,.0f}"


def _render(doc: dict) -> None:
    # a pipe or CI log gets a wide table instead of rich's 80-column default
    out = (
        console if console.is_terminal else Console(width=max(console.width, 170), markup=False, emoji=False)
    )
    # a terminal narrower than the full table gets the compact one (the id names model, hardware and
    # setting; --json has every field): nine columns squeezed into 80 folded every cell letter by letter
    wide = out.width >= 140
    table = Table(
        title="roofplan validate: predicted vs published measurements",
        **(
            {}
            if wide
            else {"box": box.SIMPLE_HEAD, "pad_edge": False, "padding": (0, 1), "collapse_padding": True}
        ),
    )
    columns = (
        ("id", {"no_wrap": True}),
        ("kind", {}),
        ("model", {"overflow": "fold", "max_width": 32}),
        ("hardware", {}),
        ("metric", {"overflow": "fold", "max_width": 30}),
        ("unit", {"no_wrap": True}),
        ("measured", {"justify": "right", "no_wrap": True}),
        ("predicted", {"justify": "right", "no_wrap": True}),
        ("error", {"justify": "right", "no_wrap": True, "min_width": 6}),
    )
    shown = [name for name, _ in columns if wide or name not in ("kind", "model", "hardware", "metric")]
    for col, kw in columns:
        if col in shown:
            table.add_column(col, **kw)
    for c in doc["cases"]:
        err = c["error"]
        if err is None:
            err_s = styled(f"[yellow]{esc(c['note'] or 'n/a')}[/yellow]")
        else:
            color = "green" if abs(err) <= 0.10 else ("yellow" if abs(err) <= 0.20 else "red")
            err_s = styled(f"[{color}]{_pct(err)}[/{color}]")
        cells = {
            "id": c["id"],
            "kind": c["kind"],
            "model": c["model"] or "-",
            "hardware": c["hardware"],
            "metric": c["metric"],
            "unit": c["unit"],
            "measured": _num(c["measured"]),
            "predicted": _num(c["predicted"]),
            "error": err_s,
        }
        table.add_row(*(cells[name] for name in shown))
    out.print(table)
    summary = Table(title="|error| by group")
    for col in ("group", "cases", "median |error|", "worst |error|"):
        summary.add_column(col, justify="left" if col == "group" else "right")
    for name, s in doc["summary"].items():
        summary.add_row(
            styled(f"[bold]{name}[/bold]") if name == "all" else name,
            str(s["cases"]),
            _abs_pct(s["median_abs_error"]),
            _abs_pct(s["worst_abs_error"]),
        )
    out.print(summary)


def _render_measured(doc: dict, show_rows: bool) -> None:
    out = (
        console if console.is_terminal else Console(width=max(console.width, 120), markup=False, emoji=False)
    )
    if show_rows or len(doc["rows"]) <= 40:
        rows = Table(title="measured operators: predicted vs measured", box=box.SIMPLE_HEAD)
        for col in ("id", "hardware", "family", "band", "measured", "predicted", "error"):
            rows.add_column(
                col, justify="right" if col in ("measured", "predicted", "error") else "left", overflow="fold"
            )
        for r in doc["rows"]:
            rows.add_row(
                r["id"],
                r["hardware"],
                r["family"],
                r["band"],
                f"{r['measured_s'] * 1e6:,.4g} us",
                f"{r['predicted_s'] * 1e6:,.4g} us",
                _pct(r["error"]),
            )
        out.print(rows)
    table = Table(
        title="|error| by family and size band (held back: odd log2 size bins, never fitted)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("hardware", "family", "band", "rows", "median", "p90", "signed median"):
        table.add_column(col, justify="left" if col in ("hardware", "family", "band") else "right")
    for f in doc["families"]:
        groups = (
            [("all", f)]
            + ([("held back", f["held_back"])] if f["held_back"] else [])
            + [(b["band"], b) for b in f["bands"]]
        )
        for i, (band, s) in enumerate(groups):
            table.add_row(
                f["hardware"] if i == 0 else "",
                styled(f"[bold]{esc(f['family'])}[/bold]") if i == 0 else "",
                band,
                str(s["rows"]),
                _abs_pct(s["median_abs_error"]),
                _abs_pct(s["p90_abs_error"]),
                _pct(s["signed_median_error"]),
            )
        table.add_section()
    out.print(table)
    if doc["skipped"]:
        out.print("skipped: " + ", ".join(f"{k}: {v}" for k, v in sorted(doc["skipped"].items())))


def validate(
    as_json: Json = False,
    calibration: Calibration = None,
    kind: list[str] | None = KINDS_OPTION,
    cases: str | None = CASES_OPTION,
    measurements: list[str] | None = MEASUREMENTS_OPTION,
    hardware: str | None = HARDWARE_OPTION,
    rows: bool = ROWS_OPTION,
) -> None:
    """Run the built-in suite of published measurements and show the error of every prediction;
    with --measurements, predict measured operator rows instead (per family and size band)."""

    def body() -> None:
        if measurements:
            from roofplan.validation.measured import validate_measurements

            doc = validate_measurements(measurements, hardware=hardware, calibration=calibration).to_json()
            if as_json:
                print_json(doc)
            else:
                _render_measured(doc, rows)
            return
        if hardware or rows:
            from roofplan.errors import InputError

            raise InputError("--hardware/--rows", hardware or "--rows", "only with --measurements")
        from roofplan.errors import InputError
        from roofplan.validation.suite import read_cases, run_suite

        selected = read_cases(cases)
        if kind:
            known = sorted({c.kind for c in selected})
            bad = [k for k in kind if k not in known]
            if bad:
                raise InputError("kind", bad[0], f"expected one of {', '.join(known)}")
            selected = [c for c in selected if c.kind in kind]
        result = run_suite(calibration=calibration, cases=selected)
        doc = result.to_json()
        if as_json:
            print_json(doc)
        else:
            _render(doc)

    return run(body)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
