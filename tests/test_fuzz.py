"""Property-based fuzzing of every input format and the CLI (fixed seed, CI-sized budget).

The properties and generators live in ``tests/fuzzing.py``; ``tools/fuzz.py`` runs the same
families for thousands of cases. Properties: exit code in {0, 2, 3}; no internal error; one line
on stderr for a failure; finite ``--json`` results; nothing written outside ``--out`` and nothing
written into it by a failed run; and the physical invariants (more bandwidth or peak is never
slower, MFU <= 1, a plan fits per ``estimate``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from roofplan.cli.app import app
from tests.fuzzing import FAMILIES, check_invariants, check_plan_fits, run_case

runner = CliRunner()
#: Examples per family: ~2 s of the suite in all (the long run is tools/fuzz.py).
BUDGET = {"out_targets": 4, "cli_args": 16, "workload": 5}


def ci(n: int) -> settings:
    """Fixed seed, no example database, no deadline (a case may load a catalog cold)."""
    return settings(
        derandomize=True,
        database=None,
        deadline=None,
        max_examples=n,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_keeps_the_cli_properties(family):
    @ci(BUDGET.get(family, 10))
    @given(FAMILIES[family]())
    def prop(case):
        with tempfile.TemporaryDirectory() as d:
            assert run_case(case, Path(d), runner, app, limit_s=30) == []

    prop()


@ci(6)
@given(
    st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "qwen3-8b"]),
    st.sampled_from([1, 2, 8]),
    st.sampled_from([1, 4, 16]),
    st.floats(1.0, 100.0),
    st.sampled_from(["hbm", "peak", "nvlink"]),
)
def test_more_bandwidth_or_peak_is_never_slower_and_mfu_at_most_one(model, tp, batch, scale, which):
    assert check_invariants(model, tp, batch, scale, which) == []


@pytest.mark.parametrize("model, gpus", [("llama-3.1-8b", 8), ("qwen3-8b", 16), ("mixtral-8x7b", 16)])
def test_a_plan_fits_per_estimate(model, gpus):
    assert check_plan_fits(model, gpus) == []


def test_the_harness_detects_each_problem(tmp_path):
    """run_case reports what a broken command does (so the properties above can fail)."""
    import typer

    bad, plan = typer.Typer(), typer.Typer()
    bad.add_typer(plan, name="plan")

    @plan.command()
    def go(what: str, json_out: bool = typer.Option(False, "--json")) -> None:
        if what == "crash":
            raise ZeroDivisionError("x")
        if what == "outside":
            (Path.cwd() / "victim.txt").write_text("overwritten")
        if what == "lines":
            typer.echo("error: a\nerror: b", err=True)
            raise typer.Exit(2)
        if what == "exit":
            raise typer.Exit(4)
        if what == "nan":
            typer.echo('{"step_time_s": NaN}')

    @plan.command()
    def ok() -> None:
        typer.echo("{}")

    for what in ["crash", "outside", "lines", "exit", "nan"]:
        (tmp_path / what).mkdir()
        found = run_case({"files": {}, "argv": ["plan", "go", what, "--json"]}, tmp_path / what, runner, bad)
        kind = {"crash": "internal", "nan": "nonfinite"}.get(what, what)
        assert kind in {k for k, _ in found}, (what, found)
    (tmp_path / "ok").mkdir()
    assert run_case({"files": {}, "argv": ["plan", "ok"]}, tmp_path / "ok", runner, bad) == []
