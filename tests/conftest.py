"""Shared test fixtures: the CLI runner and the catalog specs most tests start from.

``cli(*argv)`` runs the typer app in-process and returns click's result; ``cli_json(*argv)`` adds
``--json``, asserts exit 0 and returns the parsed document; ``one_line_error(result, code, *needles)``
checks the one-line error convention. The spec fixtures are session-scoped:
DeviceSpec and ModelSpec are frozen dataclasses, so one loaded copy is safe to share.

The ``slow`` marker (registered in pyproject.toml) tags tests that take tens of seconds; the README's
``pytest`` runs them, ``pytest -m "not slow"`` skips them for a quick loop.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from roofplan import resolve


@pytest.fixture(scope="session")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke ``roofplan ARGV...``; returns the click Result (exit_code, stdout, stderr)."""
    from roofplan.cli.app import app

    def invoke(*argv, **kwargs):
        return runner.invoke(app, [str(a) for a in argv], **kwargs)

    return invoke


@pytest.fixture
def cli_json(cli):
    """Invoke ``roofplan ARGV... --json``, require exit 0 and return the JSON document."""

    def invoke(*argv):
        r = cli(*argv, "--json")
        assert r.exit_code == 0, r.stderr or r.output
        return json.loads(r.stdout)

    return invoke


def _one_line_error(r, code: int = 2, *needles: str) -> str:
    """Exit ``code``, nothing on stdout, exactly one stderr line holding every needle, no traceback
    and no internal error (docs/SPEC.md §4); returns the line."""
    assert r.exit_code == code, (r.exit_code, r.stdout[-500:], r.stderr[-2000:])
    assert r.stdout == "", r.stdout[-500:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert "internal error" not in lines[0] and "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def one_line_error():
    """The checker of a user error: ``one_line_error(result, code=2, *needles) -> the line``."""
    return _one_line_error


@pytest.fixture(scope="session")
def h100():
    return resolve.hardware("h100-sxm")


@pytest.fixture(scope="session")
def a100():
    return resolve.hardware("a100-sxm-80gb")


@pytest.fixture(scope="session")
def llama8b():
    return resolve.model("llama-3.1-8b")


@pytest.fixture(scope="session")
def vllm_8b_instance():
    """One serving instance the serving-under-load tests share: Llama 3.1 8B on one H100 under
    vLLM, for 1000-token prompts and 200-token outputs."""
    from tests.specs import instance

    return instance("llama-3.1-8b", isl=1000, osl=200)
