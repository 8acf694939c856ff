"""``roofplan estimate serve`` through the typer app (CliRunner)."""

import json

import pytest

from roofplan.cli.app import app
from tests.commands import ESTIMATE_SERVE_8B, serve_estimate
from tests.spec_keys import SERVE_ESTIMATE_KEYS

BASE = ESTIMATE_SERVE_8B


def test_json_document_has_every_spec_key(cli_json):
    doc = cli_json(*BASE, "--tp", "2", "--engine", "vllm")
    assert doc["schema"] == "roofplan.estimate.serve/v1"
    assert set(doc) >= SERVE_ESTIMATE_KEYS
    assert doc["inputs"]["tp"] == 2 and doc["inputs"]["engine"] == "vllm"
    assert doc["output_tokens_per_s"] == pytest.approx(8 * 128 / (doc["latency_ms"] / 1e3))
    assert doc["output_tokens_per_s_per_gpu"] == pytest.approx(doc["output_tokens_per_s"] / 2)
    for phase in ("prefill", "decode_step"):
        assert set(doc["breakdown_ms"][phase]) == {"compute", "memory", "communication", "overhead"}


def test_every_flag_is_accepted(cli_json):
    flags = "--tp 2 --pp 2 --ep 2 --dp 1 --dtype fp8 --kv-dtype fp8 --engine sglang".split()
    doc = cli_json(*serve_estimate(16, 512, 64, "mixtral-8x7b"), *flags)
    assert doc["inputs"]["kv_dtype"] == "fp8" and doc["inputs"]["gpus"] == 4


def test_rich_output_shows_breakdown_and_memory(cli):
    r = cli(*BASE)
    assert r.exit_code == 0, r.output
    for text in ("TTFT", "TPOT", "Time breakdown", "Memory per GPU", "kv_cache", "capacity"):
        assert text in r.stdout


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--tp", "3"], "tp"),  # 3 does not divide 32 heads
        (["--engine", "tgi"], "engine"),
        (["--dtype", "fp6"], "dtype"),
        (["--kv-dtype", "int4"], "kv_dtype"),
        (["--dp", "2"], "dp"),  # dense model
    ],
)
def test_bad_input_exits_2_with_one_line(extra, field, cli):
    r = cli(*BASE + extra)
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and field in lines[0] and "Traceback" not in r.output


def test_unknown_model_exits_2(runner):
    r = runner.invoke(
        app,
        serve_estimate(1, 1, 1, "nope-1b"),
    )
    assert r.exit_code == 2


def test_int4_weights_on_a100_is_fine(runner):
    r = runner.invoke(
        app,
        [*serve_estimate(1, 128, 16, hardware="a100-sxm-80gb"), "--dtype", "int4", "--json"],
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["inputs"]["compute_dtype"] in ("bf16", "fp16")
