"""Shared CLI plumbing: error conventions (docs/SPEC.md §4), JSON output, consoles.

Every command body runs inside :func:`run`, which turns a :class:`RoofplanError` into one line on
stderr and its exit code (2 bad input, 3 infeasible), and any other exception into exit 1 — with
the traceback only under ``--debug``. Usage errors that typer/click raise while parsing (unknown
option, missing option, a value that is not a number) get the same one-line treatment through
:class:`RoofplanGroup`, the root command's class, instead of click's multi-line usage box.
"""

from __future__ import annotations

import json
import os
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text
from typer.core import TyperGroup

from roofplan.errors import MAX_COUNT as _MAX_COUNT
from roofplan.errors import InfeasibleError, InputError, RoofplanError
from roofplan.inputs import user_path
from roofplan.plain import plain


# Names come from users (catalog ids, config.json _name_or_path, file paths): both consoles print
# text as text, never as rich markup ("[/x]" once raised MarkupError) or emoji codes (":x:" once
# became an emoji in an error line). Intended styling goes through :func:`styled`.
class _Console(Console):
    """rich's Console, ending with exit 0 (not rich's SystemExit(1)) when stdout is closed."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stdout_closed()


console = _Console(markup=False, emoji=False)
err_console = _Console(stderr=True, markup=False, emoji=False)


def styled(markup: str) -> Text:
    """Rich markup written by roofplan itself (``"[bold]total[/bold]"``) as styled text; any user
    string inside must be passed through :func:`esc` first."""
    return Text.from_markup(markup, emoji=False)


def esc(value: object) -> str:
    """A user-supplied string, escaped for use inside :func:`styled` markup."""
    return escape(str(value))


#: Set by the ``--debug`` global option.
STATE = {"debug": False}

#: Largest integer any count option accepts (roofplan.errors.MAX_COUNT).
MAX_COUNT = _MAX_COUNT


def bounded_count(value: int | None) -> int | None:
    """Typer callback for integer options: reject values beyond :data:`MAX_COUNT` while parsing
    (sign and divisibility are checked by the API, which knows the model and the hardware)."""
    if value is not None and abs(value) > MAX_COUNT:
        raise typer.BadParameter(f"expected an integer of at most {MAX_COUNT:,}")
    return value


_plain = plain  # the one JSON-safe conversion (roofplan.plain)


def print_json(doc: dict) -> None:
    """Write exactly one JSON document to stdout."""
    sys.stdout.write(json.dumps(_plain(doc), indent=2) + "\n")
    sys.stdout.flush()


def output(doc: dict, as_json: bool, render: Callable[[dict], None]) -> None:
    """A command's result: the document as JSON with ``--json``, else ``render(doc)`` for people."""
    if as_json:
        print_json(doc)
    else:
        render(doc)


def fail(exc: RoofplanError) -> None:
    """Print one line for ``exc`` on stderr and exit with its code."""
    if isinstance(exc, InfeasibleError):
        line = f"infeasible: {exc}"
    else:
        line = f"error: {exc}"
    err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def run(body: Callable[[], Any]) -> Any:
    """Run a command body under the error conventions of docs/SPEC.md §4.

    numpy RuntimeWarnings (overflow, division by zero in a vectorised search over extreme input) are
    silenced unless ``--debug``: stderr carries one line per outcome, and the affected candidates are
    rejected by the checks that follow, not by the warning."""
    try:
        with warnings.catch_warnings():
            if not STATE["debug"]:
                warnings.simplefilter("ignore", RuntimeWarning)
            return body()
    except typer.Exit:
        raise
    except BrokenPipeError:  # `roofplan ... | head`: the reader has what it wanted
        stdout_closed()
    except RoofplanError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        fail(exc)
    except Exception as exc:  # noqa: BLE001 - the one place internal errors are reported
        if STATE["debug"]:
            traceback.print_exc()
        err_console.print(
            f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def stdout_closed() -> None:
    """End quietly after the reader of stdout went away (``| head``, ``| true``): point stdout at
    /dev/null so the interpreter's final flush raises nothing, and exit 0 as the command succeeded
    up to what the reader took."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (tests capture it)
        pass
    raise typer.Exit(0)


def checked(doc: dict, calibration: object = None) -> dict:
    """A cost-model result document after :func:`roofplan.plain.check_finite`, naming its inputs
    (model, hardware, overlay) in the error."""
    from roofplan.plain import check_finite

    inp = doc.get("inputs") or {}
    named = [f"{k} {inp[k]}" for k in ("model", "hardware") if isinstance(inp.get(k), str)]
    if calibration is not None:
        named.append(f"calibration {calibration}")
    return check_finite(doc, ", ".join(named))


# -- output paths ------------------------------------------------------------------------------------


def check_out_dir(out: str | os.PathLike | None, field: str = "out") -> Path | None:
    """Check before any work that ``out`` can become a directory of launch files: an existing
    writable directory, or a path whose nearest existing ancestor is a writable directory."""
    if out is None:
        return None
    p, text = _out_path(out, field, "a directory path (it is created if missing)")
    if p.exists():
        if not p.is_dir():
            raise InputError(
                field, text, "a directory (or a path that does not exist yet), not an existing file"
            )
        if not os.access(p, os.W_OK | os.X_OK):
            raise InputError(field, text, "a writable directory (permission denied)")
        return p
    _check_creatable(p, field, text)
    return p


def check_out_file(out: str | os.PathLike | None, field: str = "out") -> Path | None:
    """Check before any work that file ``out`` can be written: not a directory, and its directory
    exists and is writable or can be created."""
    if out is None:
        return None
    p, text = _out_path(out, field, "a file path")
    if p.is_dir():
        raise InputError(field, text, "a file path, not a directory")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise InputError(field, text, "a writable file (permission denied)")
        return p
    _check_creatable(p.parent, field, text)
    return p


def _out_path(out: str | os.PathLike, field: str, allowed: str) -> tuple[Path, str]:
    """The user's output path (``~`` expanded) and its text; a blank one is bad input."""
    text = str(out)
    if not text.strip():
        raise InputError(field, text, allowed)
    return user_path(text, field), text


def _check_creatable(p: Path, field: str, text: str) -> None:
    """``p`` does not exist yet: its nearest existing ancestor must be a writable directory."""
    anc = p
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise InputError(field, text, f"a path under a directory ({anc} is a file)")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(field, text, f"a path under a writable directory ({anc} is not writable)")


def os_error(field: str, path: str | os.PathLike, exc: OSError) -> InputError:
    """An OSError while writing user-named output, as an InputError naming the path."""
    return InputError(field, str(path), f"a writable path ({exc.strerror or exc})")


# -- usage errors raised by the parser -----------------------------------------------------------------


def _raw_value(args: list[str], opts: list[str]) -> str | None:
    """The text given on the command line for an option (``--tp 3`` or ``--tp=3``), if any."""
    value = None
    for i, a in enumerate(args):
        for o in opts:
            if a == o and i + 1 < len(args):
                value = args[i + 1]
            elif a.startswith(o + "="):
                value = a[len(o) + 1 :]
    return value


_TYPE_WORDS = {"integer": "expected an integer", "number": "expected a number"}


def usage_error_line(exc: Exception, args: list[str]) -> str:
    """One line for a parser error: the option, the value given and what is allowed."""
    msg = " ".join(str(getattr(exc, "format_message", lambda: str(exc))()).split())
    param = getattr(exc, "param", None)
    opts = list(getattr(param, "opts", []) or []) if param is not None else []
    if type(exc).__name__ == "BadParameter" and opts:
        m = re.search(r"Input should be a valid (\w+)", msg)
        if m:
            allowed = _TYPE_WORDS.get(m.group(1), f"expected a valid {m.group(1)}")
        else:
            allowed = re.sub(r"^Invalid value for '[^']*':\s*(Value error,\s*)?", "", msg)
            choice = re.match(r"^'.*' is not one of (.*)$", allowed)  # an Enum option (cli/options.py)
            if choice:
                allowed = "expected one of " + choice.group(1).replace("'", "")
        raw = _raw_value(args, opts)
        name = max(opts, key=len)
        line = f"{name}: {raw!r} is not valid; {allowed}" if raw is not None else f"{name}: {allowed}"
    else:
        line = msg[0].lower() + msg[1:] if msg[:1].isupper() and msg[1:2].islower() else msg
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    hint = f" (see '{path} --help')" if path else ""
    return f"error: {line.rstrip('.')}{hint}"


#: Options whose value may be left out (``sweep --ray`` alone), with the value it then takes.
OPTIONAL_VALUES: dict[str, str] = {}


def fill_optional_values(argv: list[str]) -> list[str]:
    """``--ray`` followed by nothing or by another option becomes ``--ray <default>`` (click
    options need a value; typer does not expose click's optional-value flags)."""
    out = []
    for i, a in enumerate(argv):
        out.append(a)
        if a in OPTIONAL_VALUES and (i + 1 == len(argv) or argv[i + 1].startswith("-")):
            out.append(OPTIONAL_VALUES[a])
    return out


class RoofplanGroup(TyperGroup):
    """The root command: click's usage errors become one line on stderr (docs/SPEC.md §4), exit 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = fill_optional_values(list(sys.argv[1:] if args is None else args))
        try:
            rv = super().main(
                args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
        except typer.TyperException as exc:  # click's UsageError / BadParameter / NoSuchOption ...
            if not standalone_mode:
                raise
            # NoArgsIsHelpError has already printed the help; it needs no error line
            if type(exc).__name__ != "NoArgsIsHelpError":
                err_console.print(usage_error_line(exc, argv), markup=False, highlight=False, soft_wrap=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except typer.Abort:
            if not standalone_mode:
                raise
            err_console.print("aborted", markup=False, highlight=False)
            sys.exit(1)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


def split_names(
    field: str, values: str | list[str] | tuple[str, ...] | None, allowed: tuple[str, ...]
) -> list[str] | None:
    """Names given as a repeatable option and/or comma lists (``--emit vllm --emit sglang`` or
    ``--emit vllm,sglang``), deduplicated in order; None when the option was not given."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else list(values)
    if not items:
        return None
    names: list[str] = []
    for item in items:
        parts = item.split(",")
        if not all(p and p == p.strip() for p in parts):  # "vllm," or " vllm": a slip, not a list
            raise InputError(
                field,
                item,
                "one or more of "
                + ", ".join(allowed)
                + " (comma-separated without spaces or empty items, or repeated)",
            )
        for name in parts:
            if name not in allowed:
                raise InputError(
                    field, name, "one of " + ", ".join(allowed) + " (comma-separated or repeated)"
                )
            if name not in names:
                names.append(name)
    return names


def warn(message: str) -> None:
    """One ``warning:`` line on stderr (never on stdout, so ``--json`` output stays one document)."""
    err_console.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


def warn_stale(out: str | os.PathLike, written: list[str]) -> None:
    """Warn when ``out`` also holds files this plan did not write (launchers of an earlier plan
    would contradict the new plan.json)."""
    d = Path(out)
    mine = {Path(w).name for w in written}
    stale = sorted(
        p.name for p in d.iterdir() if p.is_file() and p.name not in mine and not p.name.startswith(".")
    )
    if stale:
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        warn(f"{d} also holds files this plan did not write ({shown}); they may belong to an earlier plan")
