"""Shared CLI plumbing: error conventions (SPEC §4), JSON output, consoles.

Every command body runs inside :func:`run`, which turns a :class:`RoofplanError` into one line on
stderr and its exit code (2 bad input, 3 infeasible), and any other exception into exit 1 — with
the traceback only under ``--debug``.
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from typing import Any, Callable

import numpy as np
import typer
from rich.console import Console

from roofplan.errors import InfeasibleError, RoofplanError

console = Console()
err_console = Console(stderr=True)

#: Set by the ``--debug`` global option.
STATE = {"debug": False}

JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout and nothing else.")
CALIBRATION_OPTION = typer.Option(
    None, "--calibration", help="Overlay YAML written by `roofplan calibrate`, applied on top of the catalog."
)


def _plain(obj: Any) -> Any:
    """Make numpy scalars/arrays and non-finite floats JSON-safe."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


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
