"""The ``roofplan`` command: a thin typer app; each command group lives in its own module."""

from __future__ import annotations

import typer

from roofplan.cli import (
    calibrate_cmd,
    catalog_cmd,
    estimate_serve_cmd,
    estimate_train_cmd,
    models_cmd,
    plan_serve_cmd,
    plan_train_cmd,
    simulate_cmd,
    sweep_cmd,
    validate_cmd,
)
from roofplan.cli.common import STATE, RoofplanGroup

app = typer.Typer(
    name="roofplan",
    cls=RoofplanGroup,  # parser errors as one line on stderr, exit 2 (docs/SPEC.md §4)
    help="Analytical cost model and auto-configurator for LLM training and serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
catalog_app = typer.Typer(help="Hardware catalogs.", no_args_is_help=True)
models_app = typer.Typer(help="Model specs.", no_args_is_help=True)
estimate_app = typer.Typer(help="Evaluate one given configuration.", no_args_is_help=True)
plan_app = typer.Typer(help="Search for the best configuration.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")
app.add_typer(models_app, name="models")
app.add_typer(estimate_app, name="estimate")
app.add_typer(plan_app, name="plan")


def _version(value: bool) -> None:
    if value:
        from roofplan import __version__

        typer.echo(f"roofplan {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", metavar="", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    STATE["debug"] = debug


catalog_cmd.register(catalog_app)
models_cmd.register(models_app)
estimate_train_cmd.register(estimate_app)
estimate_serve_cmd.register(estimate_app)
plan_train_cmd.register(plan_app)
plan_serve_cmd.register(plan_app)
calibrate_cmd.register(app)
simulate_cmd.register(app)
validate_cmd.register(app)
sweep_cmd.register(app)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # output written outside a command body (help, version)
        from roofplan.cli.common import stdout_closed

        try:
            stdout_closed()
        except typer.Exit:
            raise SystemExit(0) from None
