"""Shared CLI plumbing: error conventions (SPEC §4), JSON output, consoles.

Every command body runs inside :func:`run`, which turns a :class:`RoofplanError` into one line on
stderr and its exit code (2 bad input, 3 infeasible), and any other exception into exit 1 — with
the traceback only under ``--debug``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

from roofplan.errors import InfeasibleError, RoofplanError
from roofplan.plain import plain

console = Console()
err_console = Console(stderr=True)

#: Set by the ``--debug`` global option.
STATE = {"debug": False}

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
CALIBRATION_OPTION = typer.Option(
    None, "--calibration", help="Overlay YAML written by `roofplan calibrate`, applied on top of the catalog."
)


_plain = plain  # the one JSON-safe conversion (roofplan.plain)


def print_json(doc: dict) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(_plain(doc), indent=2) + "\n")
    sys.stdout.flush()


def fail(exc: RoofplanError) -> None:
    """Print one line for ``exc`` on stderr and exit with its code."""
    if isinstance(exc, InfeasibleError):
        line = f"infeasible: {exc}"
    else:
        line = f"error: {exc}"
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def run(body: Callable[[], Any]) -> Any:
    """Run a command body under the error conventions of SPEC §4."""
    try:
        return body()
    except typer.Exit:
        raise
    except RoofplanError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        fail(exc)
    except Exception as exc:  # noqa: BLE001 - the one place internal errors are reported
        if STATE["debug"]:
            traceback.print_exc()
        err_console.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
