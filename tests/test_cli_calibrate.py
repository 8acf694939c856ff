"""`roofplan calibrate` through the typer app (docs/SPEC.md §3.5, §4) and `--calibration` end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from roofplan.cli.app import app
from tests.commands import ESTIMATE_SERVE_8B, ESTIMATE_TRAIN_8B
from tests.synthetic import VLLM_4MS, serve_step_csv

FIX = Path(__file__).parent / "fixtures" / "calibration"
runner = CliRunner()


def test_calibrate_json_writes_a_loadable_overlay(tmp_path, cli):
    out = tmp_path / "ov.yaml"
    r = cli("calibrate", str(FIX / "ops_h100.csv"), "--hardware", "h100-sxm", "--out", str(out), "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "roofplan.calibrate/v1" and doc["hardware"] == "h100-sxm"
    assert doc["skipped_other_hardware"] == 1  # the one a100 row of the fixture
    assert doc["median_abs_error_after"] < doc["median_abs_error_before"]
    written = yaml.safe_load(out.read_text())
    assert written == doc["overlay"]
    assert written["schema"] == "roofplan.calibration/v1" and written["inputs"] == [str(FIX / "ops_h100.csv")]
    fitted = {p["name"]: p["after"] for p in doc["params"] if p["informed"] and p["after"] != p["before"]}
    assert written["efficiency"] == fitted and fitted
    assert not any(p["after"] != p["before"] for p in doc["params"] if not p["informed"])
    assert {r["id"] for r in written["fit"]["residuals"]} == {r["id"] for r in doc["residuals"]}


def test_calibrate_tables_show_uninformed_parameters(tmp_path, cli):
    out = tmp_path / "net.yaml"
    r = cli(
        "calibrate",
        str(FIX / "nccl_all_reduce_h100_8gpu.txt"),
        str(FIX / "all_gather_perf_2node.txt"),
        "--hardware",
        "h100-sxm",
        "--out",
        str(out),
    )
    assert r.exit_code == 0, r.stderr
    assert "Parameters" in r.stdout and "Residuals" in r.stdout
    assert "not informed" in r.stdout  # collectives say nothing about GEMM efficiency
    doc = yaml.safe_load(out.read_text())
    assert "gemm_max" not in doc["efficiency"] and "intra_bw" in doc["efficiency"]
    assert doc["fit"]["measurements"] == 28


def test_malformed_csv_exits_2_naming_the_line(tmp_path, cli):
    out = tmp_path / "ov.yaml"
    r = cli("calibrate", str(FIX / "malformed.csv"), "--hardware", "h100-sxm", "--out", str(out))
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "malformed.csv line 4 k" in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_bad_inputs_exit_2(tmp_path, cli):
    ops = str(FIX / "ops_h100.csv")
    for argv in (
        ["calibrate", ops, "--hardware", "no-such-gpu"],
        ["calibrate", ops, "--hardware", "h100-sxm", "--params", "gemm_max,warp_speed"],
        ["calibrate", str(tmp_path / "missing.csv"), "--hardware", "h100-sxm"],
    ):
        r = cli(*argv)
        assert r.exit_code == 2, (argv, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


def test_nccl_output_without_op_needs_the_hint(tmp_path, cli):
    text = (FIX / "nccl_all_reduce_h100_8gpu.txt").read_text()
    plain = tmp_path / "run1.log"
    plain.write_text("\n".join(ln for ln in text.splitlines() if "Collective test" not in ln))
    r = cli("calibrate", str(plain), "--hardware", "h100-sxm")
    assert r.exit_code == 2 and "--op" in r.stderr
    r = cli("calibrate", str(plain), "--hardware", "h100-sxm", "--op", "allreduce", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["measurements"] == 16
    shutil.copy(plain, tmp_path / "all_reduce_perf_16.txt")  # the file name names the test
    r = cli("calibrate", str(tmp_path / "all_reduce_perf_16.txt"), "--hardware", "h100-sxm", "--json")
    assert r.exit_code == 0, r.stderr


def _slow_gemm_overlay(tmp_path: Path) -> tuple[Path, float]:
    """Calibrate from GEMM timings taken on an H100 that reaches gemm_max = 0.5 (synthesised with the
    roofline primitive) and return the overlay path and the catalog's gemm_max."""
    from roofplan.costmodel.ops import gemm_time
    from roofplan.hardware.catalog import load_hardware

    hw = load_hardware("h100-sxm")
    slow = hw.with_efficiency(gemm_max=0.5)
    lines = ["m,n,k,dtype,time_ms"]
    for s in (4096, 8192, 16384):
        t = float(gemm_time(s, s, s, slow))
        lines.append(f"{s},{s},{s},bf16,{t * 1e3!r}")
    (tmp_path / "gemm.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "slow.yaml"
    r = runner.invoke(
        app,
        [
            "calibrate",
            str(tmp_path / "gemm.csv"),
            "--hardware",
            "h100-sxm",
            "--params",
            "gemm_max",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert yaml.safe_load(out.read_text())["efficiency"]["gemm_max"] == pytest.approx(0.5, rel=0.01)
    return out, hw.efficiency.gemm_max


def test_overlay_changes_estimate_train_within_the_gemm_bound(tmp_path, cli):
    overlay, catalog_max = _slow_gemm_overlay(tmp_path)
    argv = [*ESTIMATE_TRAIN_8B, "--dp", "8", "--json"]
    base = cli(*argv)
    slow = cli(*argv + ["--calibration", str(overlay)])
    assert base.exit_code == 0 and slow.exit_code == 0, (base.stderr, slow.stderr)
    t0, t1 = json.loads(base.stdout)["step_time_s"], json.loads(slow.stdout)["step_time_s"]
    # Slower GEMMs make the step slower, but by no more than the GEMM slow-down itself.
    assert 1.05 < t1 / t0 <= catalog_max / 0.5 * 1.001


def test_overlay_applies_in_validate_to_its_own_hardware_only(tmp_path, cli):
    from roofplan.costmodel.ops import gemm_time
    from roofplan.hardware.catalog import load_hardware

    overlay, _ = _slow_gemm_overlay(tmp_path)
    base = cli("validate", "--kind", "op_gemm", "--json")
    cal = cli("validate", "--kind", "op_gemm", "--json", "--calibration", str(overlay))
    assert base.exit_code == 0 and cal.exit_code == 0, (base.stderr, cal.stderr)
    before = {c["id"]: c for c in json.loads(base.stdout)["cases"]}
    after = {c["id"]: c for c in json.loads(cal.stdout)["cases"]}
    hw = load_hardware("h100-sxm", calibration=overlay)
    assert any(c["hardware"] == "h100-sxm" for c in after.values())
    for cid, c in after.items():
        if c["hardware"] != "h100-sxm":
            assert c["predicted"] == before[cid]["predicted"]
            continue
        # The suite's op_gemm rows are Llama-2-7B gate+up GEMMs: isl tokens x 4096 @ 4096 x 2*11008 (fp16).
        tokens = int(cid.rsplit("-", 1)[1])
        expect = float(gemm_time(tokens, 2 * 11008, 4096, hw, dtype="fp16")) * 1e3
        assert c["predicted"] == pytest.approx(expect, rel=1e-9)
        assert c["predicted"] >= before[cid]["predicted"]


def test_engine_overlay_changes_estimate_serve_by_the_fitted_overhead(tmp_path, cli):
    """Decode-step rows predicted with a 4 ms vLLM step overhead -> calibrate -> `estimate serve
    --calibration` moves TPOT by exactly the fitted change of the per-step overhead (it is paid once
    per decode step)."""
    from roofplan.engines.catalog import load_engine

    truth = VLLM_4MS
    points = [(1, 512, "decode_step_ms"), (8, 1024, "decode_step_ms"), (32, 2048, "decode_step_ms")]
    (tmp_path / "decode.csv").write_text(serve_step_csv(points, truth, prefix="d"))
    out = tmp_path / "vllm.yaml"
    r = cli(
        "calibrate",
        str(tmp_path / "decode.csv"),
        "--hardware",
        "h100-sxm",
        "--params",
        "vllm.step_overhead_s",
        "--out",
        str(out),
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    fitted = yaml.safe_load(out.read_text())["engines"]["vllm"]["step_overhead_s"]
    assert fitted == pytest.approx(4e-3, rel=0.05)
    # The suite's plain vllm rows schedule synchronously (vLLM < 0.14); the profile schedules
    # asynchronously and hides a host step shorter than the GPU's, so compare synchronous runs.
    sync = tmp_path / "sync.yaml"
    sync.write_text(yaml.safe_dump({"engines": {"vllm": {"async_scheduling": False}}}))
    overlay = yaml.safe_load(out.read_text())
    overlay["engines"]["vllm"]["async_scheduling"] = False
    out.write_text(yaml.safe_dump(overlay))
    argv = [*ESTIMATE_SERVE_8B, "--engine", "vllm", "--json"]
    base = json.loads(cli(*argv + ["--calibration", str(sync)]).stdout)
    cal = json.loads(cli(*argv + ["--calibration", str(out)]).stdout)
    delta_ms = (fitted - load_engine("vllm").step_overhead_s) * 1e3
    assert cal["tpot_ms"] - base["tpot_ms"] == pytest.approx(delta_ms, rel=1e-6)
