"""`roofplan plan train` through the typer app (docs/SPEC.md §3.3, §4)."""

from __future__ import annotations

import json
import shlex

from typer.testing import CliRunner

from roofplan.cli.app import app
from tests.commands import PLAN_TRAIN_70B, train_plan

runner = CliRunner()
BASE = PLAN_TRAIN_70B


def test_prints_a_ranked_table():
    result = runner.invoke(app, BASE + ["--top", "3"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "Best training configurations" in out and "tok/s" in out
    assert "why #1 wins" in out and "searched" in out
    # three ranked rows, each with its TPxPPxDPxCP layout whose product is the GPU count
    rows = [
        [w for w in ln.split() if w != "≈"]
        for ln in out.splitlines()
        if ln[:1].isdigit() and any(w.count("x") == 3 for w in ln.split())
    ]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    for r in rows:
        tp, pp, dp, cp = (int(v) for v in r[1].split("+")[0].split("x"))
        assert tp * pp * dp * cp == 64


def test_json_matches_the_spec_document():
    result = runner.invoke(app, BASE + ["--json", "--top", "4", "--tokens", "2T"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "roofplan.plan.train/v1"
    for key in ("best", "candidates", "searched", "feasible", "rejected", "search_time_s", "launch"):
        assert key in doc
    assert len(doc["candidates"]) == 4 and doc["candidates"][0] == doc["best"]
    assert isinstance(doc["searched"], int) and isinstance(doc["feasible"], int)
    assert all(isinstance(v, int) for v in doc["rejected"].values())
    assert doc["searched"] == doc["feasible"] + sum(doc["rejected"].values())
    b = doc["best"]
    assert b["tp"] * b["pp"] * b["dp"] * b["cp"] == 64
    assert doc["objective"]["tokens"] == 2e12
    assert abs(doc["objective"]["time_to_train_days"] - 2e12 / b["tokens_per_s"] / 86400) < 1e-9
    assert doc["launch"]["megatron"].startswith("torchrun ")


def test_emit_megatron_writes_a_script_matching_the_plan(tmp_path):
    out = tmp_path / "launch"
    result = runner.invoke(app, BASE + ["--emit", "megatron", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    b = doc["best"]
    script = (out / "launch_megatron.sh").read_text()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["best"] == b
    body = [ln for ln in script.splitlines() if ln.strip() and not ln.startswith(("#", "set ", "export "))]
    argv = shlex.split(" ".join(ln.rstrip().removesuffix("\\") for ln in body))

    def flag(name):
        return argv[argv.index(name) + 1]

    assert int(flag("--tensor-model-parallel-size")) == b["tp"]
    assert int(flag("--pipeline-model-parallel-size")) == b["pp"]
    assert int(flag("--context-parallel-size")) == b["cp"]
    assert int(flag("--nnodes")) * int(flag("--nproc_per_node")) // (b["tp"] * b["pp"] * b["cp"]) == b["dp"]
    assert int(flag("--micro-batch-size")) == b["micro_batch"]
    assert int(flag("--global-batch-size")) == 512 and int(flag("--seq-length")) == 8192
    if b["vpp"] > 1:
        assert 80 // b["pp"] // int(flag("--num-layers-per-virtual-pipeline-stage")) == b["vpp"]
    if b["recompute"] != "none":
        assert flag("--recompute-granularity") == b["recompute"]
    assert f"{b['tokens_per_s']:,.0f} tokens/s" in script


def test_infeasible_exits_3_with_a_suggestion_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    result = runner.invoke(
        app,
        [*train_plan(8, 512, 8192, "llama-3.1-405b", "a100-sxm-40gb"), "--out", str(out)],
    )
    assert result.exit_code == 3
    assert "GPUs" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_input_exits_2_naming_the_field():
    result = runner.invoke(app, BASE[:-1] + ["8192", "--objective", "fastest"])
    assert result.exit_code == 2
    assert "objective" in result.stderr and "Traceback" not in result.stderr
    result = runner.invoke(app, BASE + ["--emit", "jax"])
    assert result.exit_code == 2 and "emit" in result.stderr


def test_out_without_emit_writes_every_supported_launcher(tmp_path):
    out = tmp_path / "all"
    result = runner.invoke(
        app,
        [*train_plan(16, 128, 4096), "--out", str(out), "--json"],
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    names = {p.name for p in out.iterdir()}
    assert "plan.json" in names
    expected = {
        "megatron": "launch_megatron.sh",
        "deepspeed": "ds_config.json",
        "torchtitan": "torchtitan.toml",
    }
    for fw, name in expected.items():
        assert (name in names) == (fw in doc["launch"])
