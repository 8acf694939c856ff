"""Options shared by ``estimate serve`` and ``plan serve``: speculative decoding and prefix caching.

Thin: typer options plus the one conversion to :class:`~roofplan.costmodel.serve_features.SpecDecode`."""

from __future__ import annotations

import typer

SPEC_METHOD_OPTION = typer.Option(
    None, "--spec-method",
    help="Speculative decoding: mtp | eagle3 | ngram (default off). Unset --spec-tokens/--spec-accept "
         "take the method's published defaults (mtp 1 @ 0.85, eagle3 3 @ 0.64, ngram 3 @ 0.5).")
SPEC_TOKENS_OPTION = typer.Option(None, "--spec-tokens", help="Draft tokens per step (1-16).")
SPEC_ACCEPT_OPTION = typer.Option(None, "--spec-accept", help="Per-token acceptance rate of the drafts (0-1).")
PREFIX_HIT_OPTION = typer.Option(
    None, "--prefix-hit",
    help="Prompt tokens served from the prefix cache: a count (e.g. 3000) or a fraction of --isl (e.g. 0.75).")

EXPERT_SKEW_OPTION = typer.Option(
    1.0, "--expert-skew",
    help="MoE routed-token load of the busiest expert-parallel rank over the mean (>= 1; 1 = uniform).")


def spec_from_flags(method: str | None, tokens: int | None, accept: float | None):
    """The SpecDecode of the flags, or None; --spec-tokens/--spec-accept need --spec-method."""
    from roofplan.costmodel.serve_features import SpecDecode
    from roofplan.errors import InputError

    if method is None:
        if tokens is not None or accept is not None:
            raise InputError("spec-method", None, "mtp, eagle3 or ngram (required with --spec-tokens/--spec-accept)")
        return None
    return SpecDecode.of(method, tokens, accept)
