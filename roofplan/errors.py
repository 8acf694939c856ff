"""Errors with the exit codes of docs/SPEC.md §4.

Every error a user can cause is an :class:`InputError` (exit 2) that names the field, the value and
what is allowed, so the CLI can print one line and no traceback. A request that is well formed but
has no feasible configuration is an :class:`InfeasibleError` (exit 3) that carries the smallest
change that would make one fit.
"""

from __future__ import annotations

import numbers


class RoofplanError(Exception):
    """Base class; anything else escaping the CLI is an internal error (exit 1)."""

    exit_code = 1


class InputError(RoofplanError, ValueError):
    """Bad input or usage: unknown id, malformed file, impossible flag combination (exit 2)."""

    exit_code = 2

    def __init__(self, field: str, value: object, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(
            f"{_clip(str(field))}: {_clip(_repr(value))} is not valid; {_clip(str(allowed), 2000)}"
        )


#: Longest rendering of a field name or value in an error line: a hostile input (a 5,000-character
#: id, an alias tree of 10^8 values) must not turn one line on stderr into megabytes.
MAX_SHOWN = 200


def _repr(value: object) -> str:
    """``repr(value)``; containers through :mod:`reprlib` (bounded depth and length), so that the
    rendering of a hostile value costs no more than its first few items."""
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        import reprlib

        r = reprlib.Repr()
        r.maxlevel, r.maxdict, r.maxlist, r.maxtuple, r.maxset, r.maxstring, r.maxother = (
            3,
            8,
            8,
            8,
            8,
            60,
            60,
        )
        return r.repr(value)
    return repr(value)


def _clip(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to ``limit`` characters (saying how long it was), on one line."""
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    if len(text) <= limit:
        return text
    return f"{text[: limit - 30]}... ({len(text):,} characters)"


class InfeasibleError(RoofplanError):
    """No configuration fits (exit 3); ``suggestion`` names the smallest change that would fit."""

    exit_code = 3

    def __init__(self, message: str, suggestion: str = "", details: dict | None = None):
        self.message = message
        self.suggestion = suggestion
        self.details = details or {}
        text = message if not suggestion else f"{message}; {suggestion}"
        super().__init__(text)


def did_you_mean(value: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"did you mean X? "`` for a mistyped id (ids that start with it, else the closest by
    difflib's ratio), or ``""`` when nothing is close."""
    import difflib

    v = str(value).strip().lower()
    if not v:
        return ""
    close = [c for c in choices if c.lower().startswith(v)][:3] or difflib.get_close_matches(
        v, list(choices), n=1, cutoff=0.75
    )
    return f"did you mean {' or '.join(close)}? " if close else ""


def unknown_key(where: str, shown, key, choices: list[str] | tuple[str, ...], listed: str) -> InputError:
    """The InputError for a mapping key that is not among ``choices``: ``shown`` (the value, or a
    word such as "unknown field") at ``where``, then a suggestion and ``listed`` followed by every
    choice, so one mistyped key is answered the same way in every input file."""
    return InputError(where, shown, did_you_mean(str(key), choices) + listed + ", ".join(choices))


#: Largest count any input accepts (GPUs, batch, tokens, degrees): larger values are no realistic
#: input and would overflow the int64 arrays of the vectorised cost model.
MAX_COUNT = 2**31 - 1


def positive_int(name: str, value, allowed: str = "expected a positive integer") -> int:
    """``value`` as an int when it is a whole number >= 1 (Python or numpy integers; booleans and
    floats are refused, so ``tp=True`` or ``tp=2.5`` cannot slip through), else an InputError
    naming ``name``. The one positive-integer check of the API (the CLI's count options are bounded
    by :data:`MAX_COUNT` while parsing and then reach this check)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(name, value, allowed)
    return int(value)
