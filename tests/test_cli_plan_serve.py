"""``roofplan plan serve`` through the typer app (CliRunner): output, JSON per docs/SPEC.md §3.4, exit codes,
launch files written only on success."""

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from roofplan.cli.app import app
from tests.commands import serve_plan

runner = CliRunner()
DONE = serve_plan(16, 4000, 500, "llama-3.1-70b")
SLA = ["--ttft-ms", "1000", "--tpot-ms", "30"]


def _err(r) -> str:
    try:
        return r.stderr
    except (ValueError, AttributeError):
        return r.output


def test_human_output_names_layout_and_front():
    r = runner.invoke(app, DONE + SLA)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Best deployment" in out and "Pareto front" in out
    assert ("P" in out and "D" in out) or "colocated" in out
    assert "Colocated vs disaggregated" in out


def test_json_matches_spec():
    r = runner.invoke(app, DONE + SLA + ["--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "roofplan.plan.serve/v1"
    best = doc["best"]
    assert best["mode"] in ("colocated", "disagg")
    for role in ("prefill", "decode"):
        for k in ("tp", "pp", "ep", "batch", "instances"):
            assert isinstance(best[role][k], int) and best[role][k] >= 1
    if best["mode"] == "disagg":
        assert best["ratio"] == f"{best['prefill']['instances']}P{best['decode']['instances']}D"
    for k in ("ttft_ms", "tpot_ms", "output_tokens_per_s_per_gpu", "goodput_rps"):
        assert isinstance(best[k], float) and best[k] > 0
    assert best["ttft_ms"] <= 1000 and best["tpot_ms"] <= 30
    assert isinstance(doc["pareto"], list) and doc["pareto"]
    assert isinstance(doc["searched"], int) and doc["searched"] > 0
    assert isinstance(doc["search_time_s"], float)
    assert set(doc["launch"]) == {"vllm", "sglang", "trtllm", "dynamo"}


def test_without_sla_maximises_throughput_per_gpu():
    r = runner.invoke(app, DONE + ["--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    sla = json.loads(runner.invoke(app, DONE + SLA + ["--json"]).stdout)
    assert doc["best"]["goodput_rps"] >= sla["best"]["goodput_rps"]
    # without targets the highest throughput for the budget wins (docs/SPEC.md §3.4): the most goodput
    # (requests/s of the whole deployment), whatever GPUs of the budget it takes
    alts = doc["alternatives"].values()
    assert doc["best"]["goodput_rps"] == pytest.approx(max(a["goodput_rps"] for a in alts))


def test_too_tight_sla_exits_3_with_tightest_values(tmp_path):
    out = tmp_path / "launch"
    r = runner.invoke(app, DONE + ["--ttft-ms", "1", "--tpot-ms", "1", "--emit", "vllm", "--out", str(out)])
    assert r.exit_code == 3
    err = _err(r)
    assert "tightest reachable" in err and "TTFT" in err and "TPOT" in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written unless the plan succeeded


def test_emit_writes_launch_files_and_plan(tmp_path):
    out = tmp_path / "launch"
    r = runner.invoke(
        app, DONE + SLA + ["--mode", "disagg", "--emit", "vllm,sglang", "--out", str(out), "--json"]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    names = {p.name for p in out.iterdir()}
    assert "plan.json" in names and "vllm_proxy.sh" in names and "sglang_router.sh" in names
    assert set(doc["launch"]) == {"vllm", "sglang"}
    assert json.loads((out / "plan.json").read_text())["best"] == doc["best"]
    text = (out / "vllm_proxy.sh").read_text()
    assert f"{doc['best']['ttft_ms']:.1f} ms" in text


@pytest.mark.parametrize(
    "args",
    [
        ["--emit", "tgi"],
        ["--mode", "both"],
        ["--gpus", "sixteen"],
        ["--engine", "nope"],
    ],
)
def test_bad_input_exits_2(args):
    base = list(DONE)
    if args[0] == "--gpus":
        base[base.index("--gpus") + 1] = args[1]
        args = []
    r = runner.invoke(app, base + args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in _err(r)


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None, reason="matplotlib installed")
def test_plot_without_matplotlib_is_a_clear_usage_error(tmp_path):
    r = runner.invoke(app, DONE + ["--plot", str(tmp_path / "front.png")])
    assert r.exit_code == 2
    assert "matplotlib" in _err(r)
    assert not (tmp_path / "front.png").exists()


def test_plot_with_matplotlib_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "front.png"
    r = runner.invoke(app, DONE + ["--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mixed_hardware_pools():
    r = runner.invoke(
        app,
        [*serve_plan("8,8", 4000, 500, "llama-3.1-70b", "h100-sxm:prefill,a100-sxm-80gb:decode"), "--json"],
    )
    assert r.exit_code == 0, r.output
    best = json.loads(r.stdout)["best"]
    assert best["mode"] == "disagg"
    assert (best["prefill"]["hardware"], best["decode"]["hardware"]) == ("h100-sxm", "a100-sxm-80gb")


def test_mixed_pools_title_names_each_pool(cli):
    """The people's view names one count per pool (it once printed the inputs' dict)."""
    r = cli(*serve_plan("8,8", 4000, 500, "llama-3.1-70b", "h100-sxm:prefill,a100-sxm-80gb:decode"))
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("llama-3.1-70b on 8 x h100-sxm + 8 x a100-sxm-80gb  isl=4000")


def test_fix_exclude_and_headroom_flags(cli_json):
    flags = "--mode disagg --fix prefill.tp=4,decode.tp=8 --memory-headroom decode=12".split()
    doc = cli_json(*DONE, *SLA, *flags)
    assert (doc["best"]["prefill"]["tp"], doc["best"]["decode"]["tp"]) == (4, 8)
    assert doc["best"]["decode"]["free_memory_gib"] >= 12
    assert doc["inputs"]["memory_headroom_gib"]["h100-sxm"]["decode"] == 12
    r = runner.invoke(app, DONE + ["--exclude", "decode.tp<0x"])
    assert r.exit_code == 2 and "exclude" in _err(r)
