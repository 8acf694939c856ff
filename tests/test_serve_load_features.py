"""The analytic load model with speculative decoding, prefix caching and expert skew.

Expected values come from the simulator run on the same deployment (fixed lengths, stable load,
as in tests/test_serve_load.py), from the cost model's iteration time composed by hand, or from
invariants (Little's law, the tokens a prefix hit leaves to compute); nothing pins a prediction.
"""

import dataclasses
import json

import pytest

from roofplan.costmodel import serve_load as SL
from roofplan.costmodel import serve_sim as SS
from roofplan.costmodel.serve_features import SpecDecode
from tests.specs import instance
from tests.synthetic import fixed

EAGLE = SpecDecode.of("eagle3")  # k = 3, a = 0.64: E = 2.31 tokens per round


@pytest.fixture(scope="module")
def inst(vllm_8b_instance):
    return vllm_8b_instance


def with_features(inst, **feats):
    return dataclasses.replace(inst, **feats)


def sim_kw(feats):
    return dict(
        prefix_hit=feats.get("prefix_hit", 0),
        spec=feats.get("spec"),
        expert_skew=feats.get("expert_skew", 1.0),
    )


@pytest.mark.parametrize(
    "feats", [dict(spec=EAGLE), dict(spec=EAGLE, prefix_hit=500)], ids=["eagle3", "eagle3+hit"]
)
def test_open_loop_with_features_agrees_with_the_simulator(inst, feats):
    isl, osl = fixed(5000, 1000, 200)
    fi = with_features(inst, **feats)
    rate = 0.4 * SL.max_rate(fi, SL.moments(fi, isl[:1], osl[:1]))
    a = SL.open_loop(fi, isl[:1], osl[:1], rate)
    s = SS.simulate_colocated(inst, isl, osl, SS.poisson_arrivals(len(isl), rate, seed=1), **sim_kw(feats))
    assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.05)
    assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.10)
    assert s.mean_running == pytest.approx(a.running_per_instance, rel=0.06)


def test_closed_loop_with_features_agrees_with_the_simulator(inst):
    """Outputs of 200 +- 20 %: with identical lengths the simulated closed loop runs in lock-step
    bunches the analytic steady state does not have (test_serve_load's
    test_fixed_lengths_lock_step_in_the_simulator; here +18 % on TTFT), so the two models are
    compared where both apply. The profile's default (asynchronous) scheduling and the
    synchronous one both agree."""
    import numpy as np

    feats = dict(spec=EAGLE, prefix_hit=500)
    rng = np.random.default_rng(0)
    isl, osl = np.full(4000, 1000), rng.integers(160, 241, 4000)
    for asynchronous in (True, False):
        i = dataclasses.replace(inst, engine=inst.engine.replace(async_scheduling=asynchronous))
        a = SL.closed_loop(with_features(i, **feats), isl, osl, 32)
        s = SS.simulate_colocated(i, isl, osl, concurrency=32, **sim_kw(feats))
        assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.03)
        assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.06)
        assert s.mean_running == pytest.approx(a.running_per_instance, rel=0.03)
        # Little's law holds with E tokens per round as without
        assert a.rate_rps * a.latency_s["mean"] == pytest.approx(32, rel=0.02)


def test_expert_skew_under_load_agrees_with_the_simulator_and_costs_rate():
    """Mixtral at tp 2, ep 2 with the busiest EP rank at 1.6x the mean routed load: the simulator
    and the analytic model agree at 40 % load; the largest sustainable rate falls; an instance
    without expert parallelism is unaffected (skew is per EP rank)."""

    def make(**shape):
        return instance("mixtral-8x7b", isl=1000, osl=200, **shape)

    ep2 = make(tp=2, ep=2)
    isl, osl = fixed(3000, 1000, 200)
    skewed = with_features(ep2, expert_skew=1.6)
    mo = SL.moments(skewed, isl[:1], osl[:1])
    mr = SL.max_rate(skewed, mo)
    a = SL.open_loop(skewed, isl[:1], osl[:1], 0.4 * mr)
    s = SS.simulate_colocated(ep2, isl, osl, SS.poisson_arrivals(len(isl), 0.4 * mr, seed=1), expert_skew=1.6)
    assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.05)
    assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.10)
    assert mr < SL.max_rate(ep2, mo)
    tp2 = make(tp=2)
    assert SL.max_rate(with_features(tp2, expert_skew=1.6), mo) == pytest.approx(
        SL.max_rate(tp2, mo), rel=1e-12
    )


def test_half_prefix_hit_halves_the_prompt_work_at_low_load():
    """isl 2000 with a 50 % hit: a lone client's prompt is one iteration of the 1000 missing tokens
    attending to the 1000 cached ones too (mean context 1000 + 1001/2), its decode attends to the
    full 2000 + 200/2; the prefill server's load is about half (the miss attends to a longer
    context, so a little more than half); the deployment still moves isl + osl tokens a request."""
    inst = instance("llama-3.1-8b", isl=2000, osl=200)
    isl, osl = fixed(1, 2000, 200)
    hit = with_features(inst, prefix_hit=1000)
    r = SL.closed_loop(hit, isl, osl, 1)
    ctx = 2000 + 200 / 2
    t_pre = SL.round_time(inst, 1000.0, 1000 + 1001 / 2, 1.0, ctx)[0]
    t_dec = SL.round_time(inst, 0.0, 0.0, 1.0, ctx)[0]
    assert r.ttft_s["mean"] == pytest.approx(t_pre + inst.engine.request_overhead_s, rel=0.05)
    assert r.tpot_s["mean"] == pytest.approx(t_dec, rel=0.02)
    lo_full = SL.open_loop(inst, isl, osl, 0.5)
    lo_hit = SL.open_loop(hit, isl, osl, 0.5)
    assert 0.5 <= lo_hit.prefill_utilisation / lo_full.prefill_utilisation <= 0.6
    assert lo_hit.total_tokens_per_s == pytest.approx(0.5 * 2200, rel=1e-9)
    assert lo_hit.kv_occupancy < lo_full.kv_occupancy
    assert lo_hit.ttft_s["mean"] < lo_full.ttft_s["mean"]


def test_speculative_lone_request_is_one_round_per_E_tokens(inst):
    """A lone client with n-gram drafts (k = 3, a = 0.5: E = 1.875): TPOT is the speculative round
    of one request (verify pass of its 3 drafts) over E; a never-accepted draft (E = 1) is slower
    than no drafts at all."""
    isl, osl = fixed(1, 1000, 200)
    spec = SpecDecode("ngram", 3, 0.5)
    r = SL.closed_loop(with_features(inst, spec=spec), isl, osl, 1)
    one = SS.iteration_time(inst, 0.0, 0.0, 1.0, 1000 + 100.0, spec=spec)[0]
    assert r.tpot_s["mean"] == pytest.approx(one / 1.875, rel=0.02)
    plain = SL.closed_loop(inst, isl, osl, 1).tpot_s["mean"]
    never = SL.closed_loop(with_features(inst, spec=SpecDecode("ngram", 3, 0.0)), isl, osl, 1).tpot_s["mean"]
    assert r.tpot_s["mean"] < plain < never


def test_the_draft_takes_kv_room_and_the_cached_prefix_one_copy(inst):
    """An EAGLE-3 head is one more layer of weights and KV: the KV cache holds fewer tokens, at most
    32/33 of them for the 32-layer model. A prefix hit is held once, so more requests fit."""
    plain = SL.kv_capacity_tokens(inst)
    assert SL.kv_capacity_tokens(with_features(inst, spec=EAGLE)) < plain * 32 / 33
    assert SL.kv_capacity_tokens(with_features(inst, spec=SpecDecode.of("ngram"))) == plain
    isl, osl = fixed(1, 1000, 200)
    kv_bound = dataclasses.replace(inst, engine=inst.engine.replace(max_num_seqs=None))  # no sequence cap
    hit = with_features(kv_bound, prefix_hit=800)
    full_cap = SL._max_seqs(kv_bound, SL.moments(kv_bound, isl, osl))[0]
    hit_cap = SL._max_seqs(hit, SL.moments(hit, isl, osl))[0]
    # (capacity - 800) / (1100 - 800) against capacity / 1100 (time-weighted contexts)
    assert full_cap == pytest.approx(plain / 1100, rel=1e-9)
    assert hit_cap == pytest.approx((plain - 800) / 300, rel=1e-9)


def test_estimate_serve_under_load_takes_the_feature_flags(cli, one_line_error):
    base = [
        "estimate",
        "serve",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--engine",
        "vllm",
        "--isl",
        "2048",
        "--osl",
        "256",
        "--rate",
        "4",
    ]
    feats = ["--spec-method", "eagle3", "--prefix-hit", "0.5"]
    r = cli(*base, *feats, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    plain = json.loads(cli(*base, "--json").stdout)
    assert doc["inputs"]["speculative"]["method"] == "eagle3" and doc["inputs"]["prefix_hit_tokens"] == 1024
    assert doc["tpot_ms"] < plain["tpot_ms"] and doc["ttft_ms"] < plain["ttft_ms"]
    assert doc["request_rate_rps"] == pytest.approx(4.0) and 0 < doc["utilisation"] < 1
    text = cli(*base, *feats)
    assert text.exit_code == 0 and "speculative" in text.stdout and "prefix-cache hit" in text.stdout
    one_line_error(cli(*base, "--spec-method", "eagle3", "--spec-accept", "1.5"), 2, "spec-accept")
    one_line_error(cli(*base, "--expert-skew", "0.5"), 2, "expert-skew")
    one_line_error(cli(*base, "--prefix-hit", "4000"), 2, "prefix-hit")


def test_percentile_planning_searches_colocated_feature_plans():
    """plan serve --slo-percentile with a prefix hit or speculative decoding now searches colocated
    instances (it was disaggregated only): the pick's P90 under Poisson arrivals at its goodput,
    simulated, meets the targets and agrees with the analytic P90 within 10 %; a 50 % prefix hit
    raises the goodput of one H100 (half the prompt work)."""
    from roofplan import plan_serving  # resolves the ids at the door

    args = dict(
        gpus=1,
        isl=2000,
        osl=300,
        ttft_ms=1500,
        tpot_ms=30,
        engine="vllm",
        slo_percentile=90,
        mode="colocated",
    )
    plain = plan_serving("llama-3.1-8b", "h100-sxm", **args).best
    hit = plan_serving("llama-3.1-8b", "h100-sxm", prefix_hit=0.5, **args).best
    spec = plan_serving("llama-3.1-8b", "h100-sxm", speculative=SpecDecode.of("ngram", 2, 0.5), **args).best
    for b in (plain, hit, spec):
        assert b["mode"] == "colocated" and b["simulated"]["meets_sla"] is True
        assert b["simulated"]["tpot_p90_ms"] == pytest.approx(b["tpot_ms"], rel=0.10)
        assert b["simulated"]["ttft_p90_ms"] == pytest.approx(b["ttft_ms"], rel=0.15)
    assert hit["goodput_rps"] > 1.2 * plain["goodput_rps"]
