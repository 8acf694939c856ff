"""The training planner: exhaustive optimum, rejection accounting, objectives, SC21, infeasibility."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from roofplan import (
    plan_training,
)
from roofplan.costmodel.train import TrainConfigs, check_train_config, train_step
from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model
from roofplan.solver.plan_types import CONFIG_KEYS
from roofplan.solver.space import SpaceOptions, enumerate_space, state_bytes_lower_bound
from roofplan.solver.train_planner import _configs as configs_of_space
from roofplan.validation.suite import read_cases
from tests.picks import estimate_of_pick


def _divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


@pytest.fixture(scope="module")
def small():
    return load_model("llama-3.1-8b"), load_hardware("h100-sxm")


def test_planner_finds_the_brute_force_optimum(small):
    """Enumerate the whole space here with itertools (independently of solver.space), time every
    valid configuration with the cost model, and compare the best with the planner's winner."""
    model, hw = small
    gpus, gbs, seq = 8, 32, 4096
    rows = []
    for tp, pp, cp in itertools.product(_divisors(gpus), repeat=3):
        if gpus % (tp * pp * cp):
            continue
        dp = gpus // (tp * pp * cp)
        if gbs % dp:
            continue
        vpps = [1] + (
            [v for v in _divisors(model.layers // pp) if v > 1] if pp > 1 and model.layers % pp == 0 else []
        )
        for vpp, mbs in itertools.product(vpps, [m for m in _divisors(gbs // dp) if m <= 16]):
            for rc, sp, zero, off in itertools.product(
                (0, 1, 2), (0, 1) if tp > 1 else (0,), (0, 1, 2, 3), (0, 1, 2)
            ):
                if (off == 2 and zero != 3) or (off >= 1 and zero == 0):
                    continue
                rows.append((tp, pp, dp, cp, vpp, mbs, rc, sp, zero, off))
    a = np.array(rows)
    cfg = TrainConfigs(
        tp=a[:, 0],
        pp=a[:, 1],
        dp=a[:, 2],
        cp=a[:, 3],
        ep=1,
        vpp=a[:, 4],
        micro_batch=a[:, 5],
        global_batch=gbs,
        seq_len=seq,
        recompute=a[:, 6],
        recompute_layers=0,
        sequence_parallel=a[:, 7].astype(bool),
        zero=a[:, 8],
        offload=a[:, 9],
    )
    ok = check_train_config(model, cfg) == 0
    arr = train_step(model, hw, cfg.take(ok))
    best = float(np.max(np.where(arr.fits, arr.tokens_per_s, 0.0)))
    assert best > 0

    plan = plan_training(
        model,
        hw,
        gpus=gpus,
        global_batch=gbs,
        seq_len=seq,
        placement=False,
        robust_choice=False,
        memory_headroom_gib=0,
        # the brute force above has no activation offload (searched per lane that does not fit)
        constraints={"exclude": "act_offload>0"},
    )
    assert plan.best["tokens_per_s"] == pytest.approx(best, rel=1e-12)
    assert plan.feasible == int(np.sum(arr.fits))


def test_rejections_account_for_every_configuration():
    plan = plan_training(
        "llama-3.1-70b", "h100-sxm", gpus=64, global_batch=512, seq_len=8192, placement=False
    )
    # every point of the cross product is either feasible or rejected for exactly one reason
    assert plan.searched == plan.feasible + sum(plan.rejected.values())
    assert plan.evaluated >= plan.feasible
    assert plan.rejected.get("oom", 0) > 0 and plan.rejected.get("divisibility", 0) > 0
    # TP stays inside an 8-GPU node
    assert all(c["tp"] <= 8 for c in plan.candidates)


def test_candidates_are_ranked_feasible_and_consistent():
    plan = plan_training(
        "llama-3.1-70b", "h100-sxm", gpus=64, global_batch=512, seq_len=8192, top=5, robust_choice=False
    )
    cands = plan.candidates
    assert len(cands) == 5 and cands[0] is plan.best
    tps = [c["tokens_per_s"] for c in cands]
    assert tps == sorted(tps, reverse=True)
    for c in cands:
        assert c["tp"] * c["pp"] * c["dp"] * c["cp"] == 64
        assert c["global_batch"] % (c["micro_batch"] * c["dp"]) == 0
        mem = c["memory_gib_per_gpu"]
        assert mem["total"] <= mem["capacity"]
        # tokens per step / step time
        assert c["tokens_per_s"] == pytest.approx(512 * 8192 / c["step_time_s"], rel=1e-9)
        # the winner as an independent single estimate agrees with the planner's numbers
    b = plan.best
    est = estimate_of_pick("llama-3.1-70b", b)
    assert est["tokens_per_s"] == pytest.approx(b["tokens_per_s"], rel=1e-9)


def test_tokens_budget_days_and_dollars():
    hw = load_hardware("h100-sxm")
    plan = plan_training("llama-3.1-8b", hw, gpus=8, global_batch=64, seq_len=4096, tokens=1e12, top=2)
    b = plan.best
    days = 1e12 / b["tokens_per_s"] / 86400
    assert b["time_to_train_days"] == pytest.approx(days)
    assert b["cost_to_train_usd"] == pytest.approx(days * 24 * 8 * hw.price_per_hour)
    assert b["usd_per_million_tokens"] == pytest.approx(
        hw.price_per_hour * 8 / 3600 / b["tokens_per_s"] * 1e6
    )


def test_cost_objective_is_never_more_expensive_than_throughput():
    kw = {"gpus": 64, "global_batch": 512, "seq_len": 4096, "placement": False, "robust_choice": False}
    thr = plan_training("llama-3.1-8b", "h100-sxm", objective="throughput", **kw)
    cost = plan_training("llama-3.1-8b", "h100-sxm", objective="cost", **kw)
    assert cost.best["usd_per_million_tokens"] <= thr.best["usd_per_million_tokens"] * (1 + 1e-12)
    costs = [c["usd_per_million_tokens"] for c in cost.candidates]
    assert costs == sorted(costs)
    # the cost objective also searches smaller GPU counts (fewer GPUs at a higher utilisation)
    assert cost.objective["gpu_counts_searched"][0] == 64 and min(cost.objective["gpu_counts_searched"]) < 64
    assert thr.best["gpus"] == 64


def test_emit_target_restricts_the_search():
    plan = plan_training(
        "llama-3.1-70b", "h100-sxm", gpus=64, global_batch=512, seq_len=8192, emit="deepspeed"
    )
    for c in plan.candidates:
        assert c["cp"] == 1 and c["vpp"] == 1
        assert c["zero"] < 2 or c["pp"] == 1
        assert c["offload"] != "optimizer+params" or c["zero"] == 3
    assert "deepspeed" in plan.launch
    assert any(k.startswith("unsupported_by_deepspeed") for k in plan.rejected)


def test_memory_bound_never_exceeds_the_cost_model(small):
    """The pre-timing prune is a lower bound on the cost model's memory, so it never drops a
    configuration the cost model would fit."""
    _model, hw = small
    for name, gpus in (("llama-3.1-8b", 16), ("mixtral-8x7b", 16)):
        m = load_model(name)
        sp = enumerate_space(m, hw, gpus=gpus, global_batch=128, seq_len=4096, capacity_bytes=float("inf"))
        a = sp.arrays
        cfg = configs_of_space(a, "bf16", None, True)  # as the planner builds them
        ok = check_train_config(m, cfg) == 0
        arr = train_step(m, hw, cfg.take(ok))
        bound = state_bytes_lower_bound(m, {k: v[ok] for k, v in a.items()}, "bf16")
        assert np.all(bound <= arr.mem_total)


def test_cross_node_tp_is_pruned_unless_allowed(small):
    _, hw = small
    model = load_model("gpt3-175b")  # 96 heads: TP 16 and 32 divide them
    no = enumerate_space(model, hw, gpus=32, global_batch=64, seq_len=2048)
    yes = enumerate_space(
        model, hw, gpus=32, global_batch=64, seq_len=2048, opts=SpaceOptions(allow_cross_node_tp=True)
    )
    assert no.arrays["tp"].max() <= 8 and no.rejected["tp_cross_node"] > 0
    assert yes.arrays["tp"].max() > 8 and "tp_cross_node" not in yes.rejected
    assert no.searched == yes.searched


def _sc21_rows():
    seen, out = set(), []
    for c in read_cases():
        if c.kind == "train" and c.id.startswith("sc21-t1") and c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


@pytest.mark.parametrize("case", _sc21_rows(), ids=lambda c: c.id)
def test_planner_beats_or_matches_sc21_table1(case):
    """SC21 Table 1 (Narayanan et al.): search the same GPUs, batch and sequence (fp16, no
    FlashAttention as in the 2021 stack); the winner is at least as fast as the published layout
    evaluated with the same cost model."""
    from roofplan.validation.train_predict import estimate_case

    published = estimate_case(case)
    plan = plan_training(
        case.str("model"),
        case.str("hardware"),
        gpus=case.int("gpus"),
        global_batch=case.int("global_batch"),
        seq_len=case.int("seq_len"),
        dtype="fp16",
        flash_attention=False,
        top=1,
        placement=False,
    )
    assert plan.best["tokens_per_s"] >= published.to_json()["tokens_per_s"] * (1 - 1e-9)


def test_405b_on_eight_a100_40gb_is_infeasible_with_the_smallest_gpu_count():
    with pytest.raises(InfeasibleError) as e:
        plan_training("llama-3.1-405b", "a100-sxm-40gb", gpus=8, global_batch=512, seq_len=8192)
    g = e.value.details["gpus"]
    assert "GPUs" in e.value.suggestion and str(g) in e.value.suggestion
    # the suggestion is the smallest power-of-two multiple: it fits, half of it does not
    assert (
        plan_training(
            "llama-3.1-405b", "a100-sxm-40gb", gpus=g, global_batch=512, seq_len=8192, placement=False
        ).feasible
        > 0
    )
    if g // 2 > 8:
        with pytest.raises(InfeasibleError):
            plan_training("llama-3.1-405b", "a100-sxm-40gb", gpus=g // 2, global_batch=512, seq_len=8192)


@pytest.mark.parametrize(
    "kw,field",
    [
        ({"gpus": 0}, "gpus"),
        ({"objective": "speed"}, "objective"),
        ({"emit": "jax"}, "emit"),
        ({"dtype": "int3"}, "dtype"),
        ({"gpus": 12}, "gpus"),
        ({"tokens": -1}, "tokens"),
        ({"recompute": "some"}, "recompute"),
    ],
)
def test_bad_input_names_the_field(kw, field):
    args = {"gpus": 16, "global_batch": 64, "seq_len": 4096} | kw
    with pytest.raises(InputError) as e:
        plan_training("llama-3.1-8b", "h100-sxm", **args)
    assert e.value.field == field


def test_plan_json_document():
    plan = plan_training("llama-3.1-8b", "h100-sxm", gpus=8, global_batch=64, seq_len=4096, top=3)
    doc = plan.to_json()
    assert doc["schema"] == "roofplan.plan.train/v1"
    for key in (
        "best",
        "candidates",
        "searched",
        "feasible",
        "rejected",
        "search_time_s",
        "launch",
        "placement",
    ):
        assert key in doc
    assert doc["placement"]["method"] in ("ilp", "fallback")
    for key in (
        *CONFIG_KEYS,
        "step_time_s",
        "tokens_per_s",
        "mfu",
        "memory_gib_per_gpu",
        "breakdown_s",
    ):
        assert key in doc["best"]
    assert isinstance(doc["searched"], int) and doc["feasible"] <= doc["searched"]
    assert doc["launch"] and all(isinstance(v, str) for v in doc["launch"].values())
    assert doc["why"]["summary"]


def test_placement_refinement_is_confirmed_by_the_cost_model():
    """Llama-3.1-8B at 16k tokens per sequence on 8 GPUs (TP=PP=CP=1, ZeRO-3): without recompute the
    activations overflow 80 GiB, with every layer recomputed most of HBM sits idle. The placement
    ILP chooses a partial layer count; the cost model re-evaluates that configuration, and the
    refined plan is faster than the enumerated one (which only knows none/all)."""
    kw = {
        "gpus": 8,
        "global_batch": 64,
        "seq_len": 16384,
        "recompute": ["none", "full"],
        "offload": ["none"],
        "tp": 1,
        "pp": 1,
        "cp": 1,
        "zero": [3],
        "top": 3,
    }
    plain = plan_training("llama-3.1-8b", "h100-sxm", placement=False, **kw)
    refined = plan_training("llama-3.1-8b", "h100-sxm", **kw)
    b = refined.best
    assert refined.placement["method"] == "ilp" and refined.placement["applied"]
    assert b["recompute"] == "full" and 0 < b["recompute_layers"] < 32
    assert b["tokens_per_s"] > plain.best["tokens_per_s"]
    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    for c in refined.candidates:
        assert c["offload"] == "none" and c["recompute"] in ("none", "full")  # the user's restriction holds
        cfg = TrainConfigs.single(
            tp=c["tp"],
            pp=c["pp"],
            dp=c["dp"],
            cp=c["cp"],
            vpp=c["vpp"],
            micro_batch=c["micro_batch"],
            global_batch=64,
            seq_len=16384,
            recompute=c["recompute"],
            recompute_layers=c["recompute_layers"],
            sequence_parallel=c["sequence_parallel"],
            zero=c["zero"],
            offload=c["offload"],
        )
        arr = train_step(model, hw, cfg)
        assert bool(arr.fits[0])
        assert float(arr.tokens_per_s[0]) == pytest.approx(c["tokens_per_s"], rel=1e-12)
        # one more recomputed layer would be slower; one fewer would not fit or not be faster
        if c["recompute"] == "full" and 1 < c["recompute_layers"] < 32:
            fewer = TrainConfigs.single(**{**cfg.row(0), "recompute_layers": c["recompute_layers"] - 1})
            a2 = train_step(model, hw, fewer)
            headroom = refined.inputs["memory_headroom_gib"] * 2**30
            fits = bool(a2.fits[0]) and float(a2.capacity[0] - a2.mem_total[0]) >= headroom
            assert not fits or float(a2.tokens_per_s[0]) <= c["tokens_per_s"] * (1 + 1e-12)
