"""The serving planner: SLA compliance, invariants of the chosen deployment, infeasibility messages,
KV-transfer charge, mixed device pools and the Pareto front."""

import math

import numpy as np
import pytest

from roofplan import plan_serving
from roofplan.costmodel.collectives import collective_time
from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model
from roofplan.solver.pareto import pareto_front, text_plot

M70 = "llama-3.1-70b"
REQ = dict(gpus=16, isl=4000, osl=500)


@pytest.fixture(scope="module")
def sla_plan():
    return plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, **REQ)


@pytest.fixture(scope="module")
def free_plan():
    return plan_serving(M70, "h100-sxm", **REQ)


def _check_deployment(b, osl, budget):
    assert b["gpus"] <= budget
    assert b["output_tokens_per_s"] == pytest.approx(b["goodput_rps"] * osl)
    assert b["output_tokens_per_s_per_gpu"] == pytest.approx(b["output_tokens_per_s"] / b["gpus"])
    p, d = b["prefill"], b["decode"]
    if b["mode"] == "disagg":
        x, y = p["instances"], d["instances"]
        assert b["ratio"] == f"{x}P{y}D"
        assert b["gpus"] == x * p["tp"] * p["pp"] * p["dp"] + y * d["tp"] * d["pp"] * d["dp"]
        # flow balance: requests/s is what the slower side sustains
        assert b["goodput_rps"] == pytest.approx(
            min(x * p["rate_rps_per_instance"], y * d["rate_rps_per_instance"])
        )
        # Little's law on a decode instance: B requests each held for osl steps of TPOT
        assert d["rate_rps_per_instance"] * osl * d["tpot_ms"] / 1e3 == pytest.approx(d["batch"])
        assert b["ttft_ms"] == pytest.approx(p["ttft_ms"] + b["kv_transfer_ms"])
    else:
        k = b["instances"]
        assert b["gpus"] == k * p["tp"] * p["pp"] * p["dp"]
        assert b["goodput_rps"] == pytest.approx(k * p["rate_rps_per_instance"])
        assert p["rate_rps_per_instance"] * osl * p["tpot_ms"] / 1e3 == pytest.approx(p["batch"])  # Little
        assert p["max_num_batched_tokens"] == p["chunk"] + p["batch"]


def test_best_meets_the_sla(sla_plan):
    doc = sla_plan.to_json()
    b = doc["best"]
    assert b["ttft_ms"] <= 1000 and b["tpot_ms"] <= 30
    _check_deployment(b, 500, 16)
    for alt in doc["alternatives"].values():
        assert alt["ttft_ms"] <= 1000 and alt["tpot_ms"] <= 30
        _check_deployment(alt, 500, 16)
    # auto keeps the alternative with the most goodput
    assert b["goodput_rps"] == pytest.approx(max(a["goodput_rps"] for a in doc["alternatives"].values()))
    assert doc["searched"] > doc["feasible"] > 0


def test_relaxing_the_sla_never_lowers_throughput(sla_plan, free_plan):
    assert free_plan.best["goodput_rps"] >= sla_plan.best["goodput_rps"] * (1 - 1e-9)
    assert free_plan.best["gpus"] <= 16


def test_modes_are_respected():
    colo = plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, mode="colocated", **REQ)
    dis = plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, mode="disagg", **REQ)
    auto = plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, **REQ)
    assert colo.best["mode"] == "colocated" and colo.best["ratio"] is None
    assert dis.best["mode"] == "disagg"
    assert auto.best["goodput_rps"] == pytest.approx(max(colo.best["goodput_rps"], dis.best["goodput_rps"]))


def test_too_tight_sla_names_the_tightest_reachable():
    with pytest.raises(InfeasibleError) as e:
        plan_serving(M70, "h100-sxm", ttft_ms=1, tpot_ms=1, **REQ)
    d = e.value.details
    assert "TTFT" in str(e.value) and "TPOT" in str(e.value)
    assert f"{d['tightest_ttft_ms']:.1f}" in str(e.value) and f"{d['tightest_tpot_ms']:.2f}" in str(e.value)
    # each tightest value is really reachable (with the other target free) ...
    p = plan_serving(M70, "h100-sxm", ttft_ms=d["tightest_ttft_ms"] * 1.001, **REQ)
    assert p.best["ttft_ms"] <= d["tightest_ttft_ms"] * 1.001
    p = plan_serving(M70, "h100-sxm", tpot_ms=d["tightest_tpot_ms"] * 1.001, **REQ)
    assert p.best["tpot_ms"] <= d["tightest_tpot_ms"] * 1.001
    # ... and nothing is below it
    with pytest.raises(InfeasibleError):
        plan_serving(M70, "h100-sxm", tpot_ms=d["tightest_tpot_ms"] * 0.99, **REQ)


def test_model_that_does_not_fit_suggests_gpus():
    with pytest.raises(InfeasibleError) as e:
        plan_serving("llama-3.1-405b", "h100-sxm", gpus=4, isl=2000, osl=200)
    assert "--gpus" in str(e.value)
    need = int(str(e.value).split("--gpus ")[1].split()[0])
    # 405B bf16 weights alone are > 4 x 80 GB; the suggested size really plans
    assert need > 4
    plan_serving("llama-3.1-405b", "h100-sxm", gpus=need, isl=2000, osl=200)


def test_rate_mode_uses_fewest_gpus():
    p1 = plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, rate=1.0, **REQ)
    p3 = plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, rate=3.0, **REQ)
    for p, r in ((p1, 1.0), (p3, 3.0)):
        assert p.best["goodput_rps"] >= r * (1 - 1e-9)
    assert p1.best["gpus"] <= p3.best["gpus"] <= 16
    with pytest.raises(InfeasibleError) as e:
        plan_serving(M70, "h100-sxm", ttft_ms=1000, tpot_ms=30, rate=500.0, **REQ)
    assert "GPUs are needed" in str(e.value)


def test_kv_transfer_hand_calculation(sla_plan):
    b = sla_plan.to_json()["alternatives"].get("disagg")
    if b is None:
        pytest.skip("no disaggregated deployment met the SLA")
    m = load_model(M70)
    hw = load_hardware("h100-sxm")
    p, d = b["prefill"], b["decode"]
    # Llama-3.1-70B KV: 2 (K,V) x 80 layers x 8 KV heads x 128 x 2 bytes = 327,680 B per token
    assert m.kv_bytes_per_token("bf16") == 2 * 80 * 8 * 128 * 2
    nbytes = 4000 * 327_680 * p["batch"]
    streams = min(p["pp"] * min(p["tp"], 8), d["pp"] * min(d["tp"], 8))  # dense: dp = 1
    same_node = p["gpus_per_instance"] + d["gpus_per_instance"] <= 8
    if same_node:
        bw, lat = hw.intra.bandwidth_Bps * hw.efficiency.intra_bw, hw.efficiency.intra_latency_s
    else:
        bw, lat = hw.inter.bandwidth_Bps * hw.efficiency.inter_bw, hw.efficiency.inter_latency_s
    assert b["kv_transfer_ms"] == pytest.approx((nbytes / streams / bw + lat) * 1e3, rel=1e-9)
    assert collective_time("p2p", 1.0, 2, hw, stride=8) > 0  # the primitive the planner uses


def test_mixed_pools_keep_roles_and_budgets():
    p = plan_serving(M70, "h100-sxm:prefill,a100-sxm-80gb:decode", gpus="8,8", isl=4000, osl=500, tpot_ms=40)
    b = p.best
    assert b["mode"] == "disagg"
    assert b["prefill"]["hardware"] == "h100-sxm" and b["decode"]["hardware"] == "a100-sxm-80gb"
    assert b["prefill"]["instances"] * b["prefill"]["gpus_per_instance"] <= 8
    assert b["decode"]["instances"] * b["decode"]["gpus_per_instance"] <= 8
    nodes = {e["hardware"]: set(e["nodes"]) for e in b["placement"]}
    assert not nodes["h100-sxm"] & nodes["a100-sxm-80gb"]  # each pool has its own nodes
    with pytest.raises(InputError):
        plan_serving(
            M70, "h100-sxm:prefill,a100-sxm-80gb:decode", gpus=16, isl=4000, osl=500, mode="colocated"
        )


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(mode="both"), "mode"),
        (dict(isl=200_000), "isl+osl"),
        (dict(ttft_ms=-5), "ttft_ms"),
        (dict(engine="tgi"), "engine"),
        (dict(gpus="8,8"), "gpus"),
        (dict(kv_dtype="fp4"), "kv_dtype"),
    ],
)
def test_bad_input_is_an_input_error(kwargs, field):
    args = dict(REQ, **kwargs)
    with pytest.raises(InputError) as e:
        plan_serving(M70, "h100-sxm", **args)
    assert e.value.field == field


def test_moe_plan_uses_expert_and_attention_dp():
    p = plan_serving("mixtral-8x7b", "h100-sxm", gpus=8, isl=2000, osl=200)
    configs = [c for pt in p.pareto for c in (pt.get("instance"), pt.get("prefill"), pt.get("decode")) if c]
    b = p.best
    configs += [b["prefill"], b["decode"]]
    for c in configs:  # EP over all tp x dp ranks or none (vLLM/SGLang); experts (8) divisible by ep
        assert c["ep"] in (1, c["tp"] * c["dp"]) and 8 % c["ep"] == 0
    assert any(c["ep"] > 1 or c["dp"] > 1 for c in configs) or b["prefill"]["tp"] >= 1


def test_pareto_front_hand_points_and_plan_front(free_plan):
    x = np.array([1.0, 2.0, 3.0, 2.0, 0.5])
    y = np.array([5.0, 4.0, 1.0, 3.0, 5.0])
    # (2,3) is dominated by (2,4); (0.5,5) by (1,5)
    assert list(pareto_front(x, y)) == [0, 1, 2]
    pts = free_plan.pareto
    assert pts
    xs = [p["tokens_per_s_per_user"] for p in pts]
    ys = [p["output_tokens_per_s_per_gpu"] for p in pts]
    assert xs == sorted(xs)
    assert all(ys[i] > ys[i + 1] for i in range(len(ys) - 1))  # non-dominated along increasing x
    for p in pts:
        assert p["tokens_per_s_per_user"] == pytest.approx(1e3 / p["tpot_ms"])
    plot = text_plot(free_plan.frontier)
    assert "tokens/s per user" in plot and len(plot.splitlines()) > 10


def test_no_sla_maximises_throughput_per_gpu(free_plan):
    doc = free_plan.to_json()
    best = doc["best"]["output_tokens_per_s_per_gpu"]
    assert best == pytest.approx(max(a["output_tokens_per_s_per_gpu"] for a in doc["alternatives"].values()))
    # and no colocated operating point on the front, replicated over the budget, serves more
    for pt in doc["pareto"]:
        if pt["mode"] == "colocated":
            inst = pt["instance"]
            k = 16 // inst["gpus_per_instance"]
            assert k * inst["rate_rps_per_instance"] <= doc["best"]["goodput_rps"] * (1 + 1e-9)
    assert math.isfinite(doc["search_time_s"])


def test_calibration_overlay_is_applied():
    slow = {"schema": "roofplan.calibration/v1", "hardware": "h100-sxm", "efficiency": {"hbm": 0.4}}
    base = plan_serving(M70, "h100-sxm", tpot_ms=30, mode="colocated", **REQ)
    cal = plan_serving(M70, "h100-sxm", tpot_ms=30, mode="colocated", calibration=slow, **REQ)
    # decode is memory bound: less achievable HBM bandwidth can only cost throughput
    assert cal.best["goodput_rps"] < base.best["goodput_rps"]
    # an overlay for another device is refused on a single pool, skipped on a mixed pool's other device
    other = dict(slow, hardware="a100-sxm-80gb")
    with pytest.raises(InputError):
        plan_serving(M70, "h100-sxm", calibration=other, **REQ)
    plan_serving(
        M70, "h100-sxm:prefill,a100-sxm-80gb:decode", gpus="8,8", isl=4000, osl=500, calibration=other
    )


def test_pruned_ilp_equals_brute_force_over_every_candidate():
    """The planner (dominance pruning + ILP) against an exhaustive search over every evaluated
    prefill/decode candidate pair and every instance count within the budget."""
    from roofplan.engines.catalog import load_engine
    from roofplan.solver import serve_planner as sp
    from roofplan.solver.serve_space import instance_shapes

    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    gpus, isl, osl, ttft = 6, 2000, 200, 0.25
    plan = plan_serving(model, hw, gpus=gpus, isl=isl, osl=osl, ttft_ms=ttft * 1e3, tpot_ms=20, mode="disagg")
    eng = load_engine("generic")
    pool = sp.Pool(hw, ("prefill", "decode"))
    shapes = instance_shapes(model, 8, gpus)
    common = dict(dtype="bf16", kv_dtype=None, engine_name="generic")
    P = sp.evaluate_prefill(model, pool, eng, shapes, isl=isl, ttft_s=ttft, **common)
    D = sp.evaluate_decode(model, pool, eng, shapes, isl=isl, osl=osl, tpot_s=0.020, **common)
    best = 0.0
    for i in np.nonzero(P.ok)[0]:
        js = np.nonzero(D.ok)[0]
        kv = sp.kv_transfer_time(model, P, D, np.full(len(js), i), js, isl=isl, kv_dtype=None)
        for j in js[P.ttft_s[i] + kv <= ttft]:
            for x in range(1, gpus // P.gpus[i] + 1):
                y = (gpus - x * P.gpus[i]) // D.gpus[j]
                if y >= 1:
                    best = max(best, min(x * P.rate[i], y * D.rate[j]))
    assert best > 0
    assert plan.best["goodput_rps"] == pytest.approx(best, rel=1e-9)
