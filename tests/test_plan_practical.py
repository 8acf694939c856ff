"""Plans a practitioner accepts: memory headroom, constraints, error bands, robust choice."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from roofplan import (
    estimate_training,  # ids resolved at the door
    plan_training,
    resolve,
)
from roofplan.cli.app import app
from roofplan.costmodel.train_memory import default_memory_headroom_bytes
from roofplan.errors import InputError
from roofplan.solver import constraints as cons
from roofplan.solver import robust
from tests.commands import PLAN_TRAIN_70B
from tests.picks import estimate_of_pick

ROOT = Path(__file__).resolve().parents[1]
GiB = 2**30
runner = CliRunner()
L70 = {"gpus": 64, "global_batch": 512, "seq_len": 8192}


@pytest.fixture(scope="module")
def plan70():
    return plan_training("llama-3.1-70b", "h100-sxm", top=5, **L70)


# -- memory headroom ---------------------------------------------------------------------------------
def test_default_headroom_is_five_percent_plus_one_gib():
    assert default_memory_headroom_bytes(80 * GiB) == pytest.approx(5.0 * GiB)
    assert default_memory_headroom_bytes(40 * GiB) == pytest.approx(3.0 * GiB)


def test_every_pick_keeps_the_headroom_and_reports_its_free_memory(plan70):
    assert plan70.inputs["memory_headroom_gib"] == pytest.approx(5.0)
    for c in plan70.candidates:
        mem = c["memory_gib_per_gpu"]
        assert c["free_memory_gib"] == pytest.approx(mem["capacity"] - mem["total"], rel=1e-12)
        assert c["free_memory_gib"] >= 5.0


def test_every_configuration_is_feasible_or_rejected_once(plan70):
    assert plan70.searched == plan70.feasible + sum(plan70.rejected.values())
    tight = plan_training(
        "llama-3.1-70b",
        "h100-sxm",
        placement=False,
        memory_headroom_gib=30,
        constraints={"exclude": "cp>1"},
        **L70,
    )
    assert tight.searched == tight.feasible + sum(tight.rejected.values())
    assert tight.rejected["headroom"] > 0 and tight.rejected["constraint"] > 0
    assert all(c["free_memory_gib"] >= 30 and c["cp"] == 1 for c in tight.candidates)
    # more headroom removes configurations: never more feasible ones
    assert tight.feasible < plan70.feasible


def test_headroom_out_of_range_is_bad_input():
    for bad in (-1, 80, "x"):
        with pytest.raises(InputError):
            plan_training(
                "llama-3.1-8b", "h100-sxm", gpus=8, global_batch=64, seq_len=4096, memory_headroom_gib=bad
            )


# -- constraints --------------------------------------------------------------------------------------
def test_constraint_parsing():
    fix = cons.parse("tp=8, pp=16,recompute=full,sp=on", exclude=False, field="fix")
    assert [(c.key, c.op, c.value) for c in fix] == [
        ("tp", "=", 8),
        ("pp", "=", 16),
        ("recompute", "=", 2),
        ("sp", "=", 1),
    ]
    exc = cons.parse("cp>1,zero>=3", exclude=True, field="exclude")
    arrays = {"tp": np.array([1, 1, 1]), "cp": np.array([1, 2, 1]), "zero": np.array([1, 1, 3])}
    assert cons.mask(exc, arrays).tolist() == [True, False, False]
    for text, exclude in (
        ("tp8", False),
        ("tp>8", False),
        ("foo=1", True),
        ("recompute<full", True),
        ("tp=x", False),
        ("offload=disk", True),
    ):
        with pytest.raises(InputError):
            cons.parse(text, exclude=exclude, field="exclude" if exclude else "fix")


def test_fully_fixed_layout_equals_estimate():
    fix = "tp=8,pp=4,dp=2,cp=1,vpp=1,mb=1,zero=1,recompute=selective,offload=none,sp=on,tp_overlap=off"
    plan = plan_training("llama-3.1-70b", "h100-sxm", constraints={"fix": fix}, **L70)
    b = plan.best
    assert (
        b["tp"],
        b["pp"],
        b["dp"],
        b["vpp"],
        b["micro_batch"],
        b["zero"],
        b["recompute"],
        b["tp_comm_overlap"],
    ) == (8, 4, 2, 1, 1, 1, "selective", False)
    est = estimate_training(
        "llama-3.1-70b",
        "h100-sxm",
        tp=8,
        pp=4,
        dp=2,
        cp=1,
        vpp=1,
        global_batch=512,
        micro_batch=1,
        seq_len=8192,
        recompute="selective",
        sequence_parallel=True,
        zero=1,
    )
    e = est.to_json()
    for k in ("step_time_s", "tokens_per_s", "mfu"):
        assert b[k] == pytest.approx(e[k], rel=1e-12)
    assert b["memory_gib_per_gpu"]["total"] == pytest.approx(e["memory_gib_per_gpu"]["total"], rel=1e-12)


def test_cli_constraints_bad_syntax_and_infeasible():
    base = PLAN_TRAIN_70B
    bad = runner.invoke(app, base + ["--fix", "tp8"])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1 and "fix" in bad.stderr
    inf = runner.invoke(app, base + ["--fix", "tp=1,pp=1,zero=0"])
    assert inf.exit_code == 3 and "drop the constraints" in inf.stderr
    ok = runner.invoke(app, base + ["--exclude", "cp>1", "--memory-headroom", "10", "--json", "--top", "3"])
    assert ok.exit_code == 0, ok.stderr
    doc = json.loads(ok.stdout)
    for c in doc["candidates"]:
        assert c["cp"] == 1 and c["free_memory_gib"] >= 10
        assert {"free_memory_gib", "error_band_pct", "warnings"} <= set(c)


BANDS = resolve.error_bands()


# -- error bands --------------------------------------------------------------------------------------
def test_error_band_file_is_in_step_with_validate():
    """catalogs/error_bands.json is what tools/error_bands.py computes from `roofplan validate` now."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import error_bands
    finally:
        sys.path.pop(0)
    stored = (ROOT / "roofplan" / "catalogs" / "error_bands.json").read_text()
    assert stored == error_bands.text(), "error bands are stale: run `python tools/error_bands.py --write`"


def test_band_is_the_p90_of_the_groups_absolute_errors():
    from roofplan.models.loader import load_model
    from roofplan.validation.suite import read_cases, run_suite

    res = run_suite(
        cases=[c for c in read_cases() if c.kind == "train" and c.str("hardware") == "a100-sxm-80gb"]
    )
    errs = sorted(abs(r.error) for r in res.results)
    band = robust.error_band(BANDS, "a100-sxm-80gb", load_model("gpt3-175b"))
    assert band.rows == len(errs) >= robust.MIN_ROWS
    k = -(-9 * len(errs) // 10) - 1  # nearest rank: the ceil(0.9 n)-th smallest
    assert band.pct == pytest.approx(100 * errs[k], abs=0.005)
    assert f"{band.rows} validated a100-sxm-80gb dense training rows" in band.label
    # no validated row on MI300X: the band falls back to every training row
    assert "all devices" in robust.error_band(BANDS, "mi300x", load_model("llama-3.1-8b")).label


def test_serve_pick_carries_the_p90_of_its_devices_serving_rows():
    """plan serve's pick names its band: the nearest-rank p90 of the |error| of the validated
    serving rows (static, max-throughput, speculative, under load) of its device, from validate."""
    from roofplan import plan_serving
    from roofplan.validation.suite import read_cases, run_suite

    kinds = ("serve_step", "serve_throughput", "serve_spec", "serve_load")
    res = run_suite(cases=[c for c in read_cases() if c.kind in kinds and c.str("hardware") == "h100-sxm"])
    errs = sorted(abs(r.error) for r in res.results if r.error is not None)
    k = -(-9 * len(errs) // 10) - 1
    best = plan_serving("llama-3.1-8b", "h100-sxm", gpus=8, isl=2000, osl=200, emit_launch=False).to_json()[
        "best"
    ]
    assert best["error_band_pct"] == pytest.approx(100 * errs[k], abs=0.005)
    assert f"p90 of {len(errs)} validated h100-sxm serving rows" in best["error_band"]


def test_gpt3_on_1024_a100_keeps_headroom_and_flags_mfu_above_published():
    plan = plan_training("gpt3-175b", "a100-sxm-80gb", gpus=1024, global_batch=1536, seq_len=2048, top=3)
    b = plan.best
    assert b["free_memory_gib"] >= plan.inputs["memory_headroom_gib"]
    ref = robust.best_published_mfu(BANDS, "a100-sxm-80gb", plan.model, "bf16")
    over = b["mfu"] > ref["mfu"] * (1 + b["error_band_pct"] / 100)
    assert over == any("exceeds the best published" in w for w in b["warnings"])


# -- robust choice ------------------------------------------------------------------------------------
def _arrays(**kw):
    base = {
        "tp": 1,
        "pp": 1,
        "dp": 8,
        "cp": 1,
        "ep": 1,
        "vpp": 1,
        "recompute": 0,
        "recompute_layers": 0,
        "zero": 1,
        "offload": 0,
        "micro_batch": 1,
        "sequence_parallel": 0,
    }
    rows = [base | r for r in kw["rows"]]
    return {k: np.array([r[k] for r in rows]) for k in base}


def test_tie_break_rule():
    rows = [
        {"offload": 1, "zero": 1},
        {"cp": 2},
        {"tp": 2, "pp": 2},
        {"tp": 2},
        {"tp": 2, "pp": 2, "vpp": 2},
        {"tp": 2, "recompute": 2},
        {"tp": 2, "zero": 2},
    ]
    a = _arrays(rows=rows)
    order = robust.simplicity_order(a, np.zeros(len(rows)), np.zeros(len(rows))).tolist()
    # tp only; tp + ZeRO-2 (recompute ranks before ZeRO); tp + full recompute; tp x pp; tp x pp x vpp;
    # CP; offload last
    assert order == [3, 6, 5, 2, 4, 1, 0]
    # equal keys: more free memory first, then the higher score
    a = _arrays(rows=[{}, {}, {}])
    assert robust.simplicity_order(a, [1.0, 3.0, 3.0], [5.0, 1.0, 2.0]).tolist() == [2, 1, 0]
    # partial full recompute (4 layers) is simpler than recomputing every layer (0 = all)
    a = _arrays(rows=[{"recompute": 2, "recompute_layers": 0}, {"recompute": 2, "recompute_layers": 4}])
    assert robust.simplicity_order(a, [0, 0], [0, 0]).tolist() == [1, 0]


def test_tied_candidates_come_first_simplest_first(plan70):
    cands = plan70.candidates
    band = cands[0]["error_band_pct"] / 100
    fastest = plan70.why.get("fastest", plan70.best)["tokens_per_s"]
    assert fastest >= max(c["tokens_per_s"] for c in cands)
    tied = [c for c in cands if c["tied_with_best"]]
    assert cands[: len(tied)] == tied and tied[0] is plan70.best
    for c in cands:
        assert c["tied_with_best"] == (c["tokens_per_s"] >= fastest * (1 - band) * (1 - 1e-12))
    rest = [c["tokens_per_s"] for c in cands[len(tied) :]]
    assert rest == sorted(rest, reverse=True)
    if plan70.best["tokens_per_s"] < fastest:
        assert "within the error band" in plan70.why["summary"]


def test_tp_comm_overlap_is_searched_and_only_kept_where_faster():
    """Each pick's overlap setting is the faster of the two for its configuration (the cost model
    re-evaluated with the other setting is never faster), and only Megatron emits it."""
    plan = plan_training("llama-3.1-70b", "h100-sxm", top=5, placement=False, **L70)
    assert any(c["tp_comm_overlap"] for c in plan.candidates)
    for c in plan.candidates:
        kw = {
            k: c[k]
            for k in (
                "tp",
                "pp",
                "dp",
                "cp",
                "vpp",
                "micro_batch",
                "recompute",
                "sequence_parallel",
                "zero",
                "offload",
            )
        }
        other = estimate_training(
            "llama-3.1-70b",
            "h100-sxm",
            global_batch=512,
            seq_len=8192,
            tp_comm_overlap=not c["tp_comm_overlap"],
            **kw,
        ).to_json()
        assert other["tokens_per_s"] <= c["tokens_per_s"] * (1 + 1e-9) or not other["fits"]
    b = plan.best
    if b["tp_comm_overlap"]:
        assert "--tp-comm-overlap" in plan.launch["megatron"] and "deepspeed" not in plan.launch
    ds = plan_training("llama-3.1-70b", "h100-sxm", top=3, placement=False, emit="deepspeed", **L70)
    assert not any(c["tp_comm_overlap"] for c in ds.candidates)


def test_streamed_robust_pool_finds_the_simplest_tied_configuration():
    """Brute force over the whole space (one cost-model call, no streaming or pools): the simplest
    configuration within the band of the fastest, by the tie-break rule, is the planner's #1."""
    from roofplan.costmodel.train import check_train_config, train_step
    from roofplan.hardware.catalog import load_hardware
    from roofplan.models.loader import load_model
    from roofplan.solver.space import enumerate_space
    from roofplan.solver.train_planner import _configs

    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    kw = {"gpus": 16, "global_batch": 128, "seq_len": 8192}
    plan = plan_training(model, hw, placement=False, tp_comm_overlap=False, **kw)
    space = enumerate_space(model, hw, dtype="bf16", **kw)
    a = space.arrays
    cfg = _configs(a, "bf16", 8, True)
    ok = check_train_config(model, cfg) == 0
    a = {k: v[ok] for k, v in a.items()}
    arr = train_step(model, hw, cfg.take(ok))
    free = arr.capacity - arr.mem_total
    good = np.asarray(arr.fits) & (free >= default_memory_headroom_bytes(hw.hbm_bytes))
    band = plan.best["error_band_pct"] / 100
    tps = np.where(good, arr.tokens_per_s, 0.0)
    tied = np.flatnonzero(tps >= tps.max() * (1 - band))
    sub = {k: v[tied] for k, v in a.items()}
    first = tied[robust.simplicity_order(sub, free[tied], tps[tied])[0]]
    b = plan.best
    for k in ("tp", "pp", "dp", "cp", "vpp", "micro_batch", "zero"):
        assert b[k] == int(a[k][first]), k
    assert b["tokens_per_s"] == pytest.approx(float(arr.tokens_per_s[first]), rel=1e-12)


def test_mfu_classes():
    from roofplan.models.loader import load_model

    assert robust.mfu_class(load_model("llama-3.1-405b")) == "dense-large"  # 405 B >= 100 B
    assert robust.mfu_class(load_model("gpt3-175b")) == "dense-large"
    assert robust.mfu_class(load_model("llama-3.1-70b")) == "dense-small"
    assert robust.mfu_class(load_model("mixtral-8x22b")) == "moe"
    ref = robust.best_published_mfu(BANDS, "h100-sxm", load_model("llama-3.1-405b"), "bf16")
    band = robust.ErrorBand(8.0, 7, "h100-sxm dense")
    assert (
        robust.mfu_warning(BANDS, ref["mfu"] * 1.079, band, "h100-sxm", load_model("llama-3.1-405b"), "bf16")
        is None
    )
    assert "exceeds" in robust.mfu_warning(
        BANDS, ref["mfu"] * 1.081, band, "h100-sxm", load_model("llama-3.1-405b"), "bf16"
    )


def test_expert_tensor_parallelism_is_searched_for_moe():
    """MoE layouts with experts unsplit by TP (ETP = 1) are in the space; a plan fixed to one
    equals `estimate train --etp 1` of it, and Megatron gets the degree."""
    kw = {"gpus": 64, "global_batch": 256, "seq_len": 4096}
    plan = plan_training(
        "mixtral-8x22b", "h100-sxm", top=3, placement=False, constraints={"fix": "etp=1,tp=2"}, **kw
    )
    b = plan.best
    assert (b["tp"], b["etp"]) == (2, 1)
    assert plan.searched == plan.feasible + sum(plan.rejected.values())
    est = estimate_of_pick("mixtral-8x22b", b)
    assert b["step_time_s"] == pytest.approx(est["step_time_s"], rel=1e-12)
    assert "--expert-tensor-parallel-size 1" in plan.launch["megatron"]
    dense = plan_training("llama-3.1-8b", "h100-sxm", gpus=8, global_batch=64, seq_len=4096, placement=False)
    assert all(c["etp"] == c["tp"] for c in dense.candidates)


def test_moe_dispatcher_is_searched_and_a_fixed_one_equals_estimate():
    """DeepEP fixed: the pick equals `estimate train --moe-dispatcher deepep` of it and Megatron
    gets the flex dispatcher; free choice picks whichever the cost model finds faster for that
    layout (alltoall and deepep of the same layout compared against estimate)."""
    kw = {"gpus": 64, "global_batch": 256, "seq_len": 4096, "placement": False, "top": 2}
    fixed = plan_training(
        "mixtral-8x22b", "h100-sxm", constraints={"fix": "tp=2,ep=8,dispatcher=deepep"}, **kw
    )
    b = fixed.best
    assert b["moe_dispatcher"] == "deepep"
    assert b["step_time_s"] == pytest.approx(estimate_of_pick("mixtral-8x22b", b)["step_time_s"], rel=1e-12)
    assert "--moe-token-dispatcher-type flex --moe-enable-deepep" in fixed.launch["megatron"]
    layout = (
        ",".join(f"{k}={b[k]}" for k in ("tp", "pp", "cp", "ep", "vpp", "zero")) + f",mb={b['micro_batch']}"
    )
    free = plan_training(
        "mixtral-8x22b", "h100-sxm", constraints={"fix": layout + ",recompute=" + b["recompute"]}, **kw
    ).best
    times = {
        d: estimate_of_pick("mixtral-8x22b", dict(free, moe_dispatcher=d))["step_time_s"]
        for d in ("alltoall", "deepep")
    }
    assert free["moe_dispatcher"] == min(times, key=times.get)


def test_fp8_recipe_is_searched_and_a_fixed_one_equals_estimate():
    kw = {"gpus": 16, "global_batch": 128, "seq_len": 4096, "placement": False, "top": 2, "dtype": "fp8"}
    plan = plan_training("llama-3.1-8b", "h100-sxm", **kw)
    b = plan.best
    other = "current" if b["fp8_recipe"] == "delayed" else "delayed"
    mine, alt = (
        estimate_of_pick("llama-3.1-8b", dict(b, fp8_recipe=r))["step_time_s"]
        for r in (b["fp8_recipe"], other)
    )
    assert b["step_time_s"] == pytest.approx(mine, rel=1e-12) and mine <= alt
    assert (
        f"--fp8-recipe {'delayed' if b['fp8_recipe'] == 'delayed' else 'tensorwise'}"
        in plan.launch["megatron"]
    )
    cur = plan_training("llama-3.1-8b", "h100-sxm", constraints={"fix": "fp8_recipe=current"}, **kw).best
    assert cur["fp8_recipe"] == "current"
    assert cur["step_time_s"] == pytest.approx(
        estimate_of_pick("llama-3.1-8b", cur)["step_time_s"], rel=1e-12
    )
    bf16 = plan_training("llama-3.1-8b", "h100-sxm", **dict(kw, dtype="bf16")).best
    assert bf16["fp8_recipe"] == "current"  # not searched outside fp8: the estimate's default
