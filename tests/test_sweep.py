"""roofplan sweep: spec validation, deterministic rows, resume, local vs Ray, CLI exit codes."""

from __future__ import annotations

import csv
import importlib.util
import json

import pytest
from typer.testing import CliRunner

import roofplan
from roofplan.cli.app import app
from roofplan.errors import InputError
from roofplan.sweep import run_sweep
from roofplan.sweep.run import COLUMNS, run_scenario
from roofplan.sweep.spec import expand

SPEC = {
    "prices": {"h100-sxm": 2.0},
    "train": {
        "models": ["llama-3.1-8b"],
        "hardware": ["h100-sxm", "a100-sxm-80gb"],
        "gpus": [8, 16],
        "workloads": [{"global_batch": 64, "seq_len": 4096, "tokens": "1T"}],
        "objectives": ["throughput", "energy"],
    },
    "serve": {
        "models": ["llama-3.1-8b"],
        "hardware": ["h100-sxm", "h100-sxm:prefill,a100-sxm-80gb:decode"],
        "gpus": [8],
        "workloads": [{"isl": 1000, "osl": 200}],
        "slas": [{"ttft_ms": 500, "tpot_ms": 30}],
        "objectives": ["cost", "energy"],
    },
    "scenarios": [
        {
            "kind": "train",
            "model": "llama-3.1-405b",
            "hardware": "a100-sxm-40gb",
            "gpus": 8,
            "global_batch": 64,
            "seq_len": 4096,
        }
    ],
}


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_grid_expands_in_spec_order_with_stable_ids():
    scen, prices = expand(SPEC)
    assert prices == {"h100-sxm": 2.0}
    assert len(scen) == 2 * 2 * 2 + 2 * 2 + 1  # train grid, serve grid, one listed
    assert [s["index"] for s in scen] == list(range(len(scen)))
    # last grid key fastest: objective, then gpus, then hardware
    assert [(s["hardware"], s["gpus"], s["objective"]) for s in scen[:3]] == [
        ("h100-sxm", 8, "throughput"),
        ("h100-sxm", 8, "energy"),
        ("h100-sxm", 16, "throughput"),
    ]
    assert scen[0]["tokens"] == 1e12
    again, _ = expand(SPEC)
    assert [s["id"] for s in again] == [s["id"] for s in scen]
    assert len({s["id"] for s in scen}) == len(scen)


@pytest.mark.parametrize(
    "patch, key",
    [
        ({"train": {**SPEC["train"], "gpus": [0]}}, "train.gpus[0]"),
        ({"serve": {**SPEC["serve"], "workloads": [{"isl": 10}]}}, "serve.workloads[0].osl"),
        ({"serve": {**SPEC["serve"], "objectives": ["throughput"]}}, "serve.objectives[0]"),
        ({"train": {**SPEC["train"], "models": ["no-such-model"]}}, "model"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_spec_names_the_key(patch, key):
    with pytest.raises(InputError) as exc:
        expand({**SPEC, **patch})
    assert exc.value.field == key


def test_row_equals_the_public_api_plan():
    scen, prices = expand(SPEC)
    s = scen[1]  # llama-3.1-8b, h100-sxm, 8 GPUs, energy, with the 2 $/h price
    row = run_scenario(s, prices)
    hw = roofplan.load_hardware("h100-sxm").with_price(2.0)
    plan = roofplan.plan_training(
        "llama-3.1-8b", hw, gpus=8, global_batch=64, seq_len=4096, tokens=1e12, objective="energy", top=1
    )
    assert row["status"] == "ok"
    assert row["tokens_per_s"] == plan.best["tokens_per_s"]
    assert row["cost_to_train_usd"] == pytest.approx(plan.best["cost_to_train_usd"])
    assert row["energy_to_train_kwh"] == plan.best["energy_to_train_kwh"]
    infeasible = run_scenario(scen[-1], prices)  # 405B on 8 A100 40GB: nothing fits
    assert infeasible["status"] == "infeasible" and "smallest change" in infeasible["reason"]


def test_sweep_outputs_resume_and_process_pool_equal_inline(tmp_path):
    a = run_sweep(SPEC, tmp_path / "a", workers=1)
    rows = _rows(tmp_path / "a" / "results.csv")
    assert list(rows[0]) == list(COLUMNS)
    assert [int(r["index"]) for r in rows] == list(range(a["scenarios"]))
    assert a["status"] == {"infeasible": 1, "ok": a["scenarios"] - 1}
    b = run_sweep(SPEC, tmp_path / "b", workers=2)
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    # resume: drop half the journal, rerun, same table; only the missing rows ran
    journal = (tmp_path / "b" / "rows.jsonl").read_text().splitlines()
    (tmp_path / "b" / "rows.jsonl").write_text("\n".join(journal[: len(journal) // 2]) + "\n{truncated")
    c = run_sweep(SPEC, tmp_path / "b", workers=1)
    assert c["resumed"] == len(journal) // 2
    assert c["timing"]["scenarios_run"] == len(journal) - len(journal) // 2
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    sa = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert set(sa["best"]) and sa["best"] == b["best"]


@pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray not installed (pip install 'roofplan[ray]')"
)
def test_ray_two_workers_equal_local_row_for_row(tmp_path):
    run_sweep(SPEC, tmp_path / "local", workers=1)
    run_sweep(SPEC, tmp_path / "ray", ray=True, workers=2)
    assert _rows(tmp_path / "ray" / "results.csv") == _rows(tmp_path / "local" / "results.csv")


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot_writes_one_png_per_workload(tmp_path):
    doc = run_sweep(SPEC, tmp_path / "out", workers=1, plot_dir=tmp_path / "plots")
    assert len(doc["files"]["plots"]) == 2  # one training and one serving workload
    assert all((tmp_path / "plots" / p.split("/")[-1]).stat().st_size > 1000 for p in doc["files"]["plots"])


def test_cli_bad_spec_exits_2_with_one_line(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "serve:\n  models: [llama-3.1-8b]\n  hardware: [h100-sxm]\n  gpus: [8]\n  workloads: [{isl: -1, osl: 5}]\n"
    )
    r = CliRunner().invoke(app, ["sweep", str(p), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        "error: serve.workloads[0].isl: -1 is not valid; a positive integer"
    ]


def test_cli_json_summary(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "train:\n  models: [llama-3.1-8b]\n  hardware: [h100-sxm]\n  gpus: [8]\n"
        "  workloads: [{global_batch: 64, seq_len: 4096}]\n"
    )
    r = CliRunner().invoke(app, ["sweep", str(p), "--out", str(tmp_path / "o"), "--workers", "1", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["scenarios"] == 1 and doc["status"] == {"ok": 1}


def test_ray_flag_without_an_address_means_a_local_cluster():
    from roofplan.cli.common import fill_optional_values

    assert fill_optional_values(["sweep", "s.yaml", "--ray", "--workers", "2"]) == [
        "sweep",
        "s.yaml",
        "--ray",
        "local",
        "--workers",
        "2",
    ]
    assert fill_optional_values(["sweep", "s.yaml", "--ray"]) == ["sweep", "s.yaml", "--ray", "local"]
    assert fill_optional_values(["sweep", "s.yaml", "--ray", "auto"]) == ["sweep", "s.yaml", "--ray", "auto"]


def test_a_changed_price_reruns_only_the_scenarios_it_affects():
    base, _ = expand(SPEC)
    cheaper, _ = expand({**SPEC, "prices": {"h100-sxm": 1.0}})
    changed = [a["id"] != b["id"] for a, b in zip(base, cheaper)]
    uses_h100 = ["h100-sxm" in s["hardware"] for s in base]
    assert changed == uses_h100


def _overlay(tmp_path, name="h100-fit.yaml", hardware="h100-sxm", sustained=0.6):
    (tmp_path / name).write_text(
        f"schema: roofplan.calibration/v1\nhardware: {hardware}\nefficiency: {{sustained_compute: {sustained}}}\n"
    )
    return name


def test_calibration_overlay_applies_to_its_device_only(tmp_path):
    """A spec's calibration overlay reaches the planner for the scenarios on the device it was
    fitted for (the row equals plan_training with that overlay), leaves the other devices alone,
    and is part of the scenario id (a changed fit reruns on resume)."""
    name = _overlay(tmp_path)
    doc = {
        "train": {
            "models": ["llama-3.1-8b"],
            "hardware": ["h100-sxm", "a100-sxm-80gb"],
            "gpus": [8],
            "workloads": [{"global_batch": 64, "seq_len": 4096}],
        }
    }
    plain, _ = expand(doc)
    fitted, _ = expand({**doc, "calibration": name}, base=tmp_path)
    assert [s.get("calibration") for s in fitted] == [name, None]
    assert fitted[0]["id"] != plain[0]["id"] and fitted[1]["id"] == plain[1]["id"]
    row, row_plain = run_scenario(fitted[0]), run_scenario(plain[0])
    overlay = {"hardware": "h100-sxm", "efficiency": {"sustained_compute": 0.6}}
    plan = roofplan.plan_training(
        "llama-3.1-8b", "h100-sxm", gpus=8, global_batch=64, seq_len=4096, top=1, calibration=overlay
    )
    assert row["tokens_per_s"] == plan.best["tokens_per_s"]
    assert row["tokens_per_s"] < row_plain["tokens_per_s"]  # 0.6 of peak sustained against the catalog's 0.84
    assert run_scenario(fitted[1])["tokens_per_s"] == run_scenario(plain[1])["tokens_per_s"]
    refit, _ = expand({**doc, "calibration": _overlay(tmp_path, "refit.yaml", sustained=0.7)}, base=tmp_path)
    assert refit[0]["id"] != fitted[0]["id"]


@pytest.mark.parametrize("node, field", [("missing.yaml", "calibration"), ([None], "calibration[0]")])
def test_bad_calibration_names_the_key(tmp_path, node, field):
    with pytest.raises(InputError) as exc:
        expand({**SPEC, "calibration": node}, base=tmp_path)
    assert exc.value.field == field


def test_two_overlays_for_one_mixed_pool_are_refused(tmp_path):
    a = _overlay(tmp_path)
    b = _overlay(tmp_path, "a100.yaml", hardware="a100-sxm-80gb")
    with pytest.raises(InputError) as exc:
        expand({**SPEC, "calibration": [a, b]}, base=tmp_path)
    assert exc.value.field == "calibration" and "h100-fit.yaml, a100.yaml" in str(exc.value)


def test_outputs_never_follow_planted_links(tmp_path):
    """results.csv and summary.json are written through the safe writer (a link planted at the name
    is replaced, its target untouched); a link planted at the journal is an input error."""
    doc = {"scenarios": [SPEC["scenarios"][0]]}
    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("keep")
    for name in ("results.csv", "summary.json"):
        (out / name).symlink_to(victim)
    run_sweep(doc, out, workers=1)
    assert victim.read_text() == "keep"
    assert not (out / "results.csv").is_symlink() and _rows(out / "results.csv")[0]["status"] == "infeasible"
    other = tmp_path / "other"
    other.mkdir()
    (other / "rows.jsonl").symlink_to(victim)
    with pytest.raises(InputError) as exc:
        run_sweep(doc, other, workers=1)
    assert exc.value.field == "out" and victim.read_text() == "keep"
