"""JSON output minus wall-clock time is byte-identical across runs (docs/SPEC.md §6: a ``timing`` object
gathers the wall-clock fields; the old keys stay as aliases)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from roofplan.cli.app import app
from roofplan.plain import TIMING_KEYS, without_timing
from tests.commands import PLAN_SERVE_8B, PLAN_TRAIN_8B, serve_estimate

runner = CliRunner()

COMMANDS = [
    [
        *PLAN_TRAIN_8B,
    ],
    [*PLAN_SERVE_8B, "--ttft-ms", "1000", "--tpot-ms", "50"],
    [*serve_estimate(8, 1000, 200, "mixtral-8x7b"), "--tp", "2"],
]


def _run(argv: list[str]) -> dict:
    r = runner.invoke(app, argv + ["--json"])
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_json_minus_timing_is_byte_identical(argv):
    a, b = _run(argv), _run(argv)
    assert json.dumps(without_timing(a)).encode() == json.dumps(without_timing(b)).encode()


@pytest.mark.parametrize("argv", COMMANDS[:2], ids=lambda a: " ".join(a[:2]))
def test_timing_gathers_every_wall_clock_field_and_keeps_the_aliases(argv):
    doc = _run(argv)
    timing = doc["timing"]
    assert timing["search_time_s"] == doc["search_time_s"] > 0  # the docs/SPEC.md §3.3/3.4 key stays

    def walk(node, path=""):  # every wall-clock field anywhere in the document is listed in timing
        if isinstance(node, dict):
            for k, v in node.items():
                where = f"{path}.{k}" if path else k
                if k in TIMING_KEYS:
                    assert timing[where] == v, where
                elif k != "timing":
                    walk(v, where)

    walk(doc)
    assert all(v >= 0 for v in timing.values())
