"""Serving under load: the analytic steady state, the simulator, and their agreement.

Every expected value is derived here from the cost model's iteration time (``round_time``), from
queueing theory (Little's law, Pollaczek-Khinchine for M/D/1) or from the other model; nothing
pins a predicted number.
"""

import math

import numpy as np
import pytest

import roofplan
from roofplan import estimate_serving, serving
from roofplan.costmodel import serve as serve_model
from roofplan.costmodel import serve_load as SL
from roofplan.costmodel import serve_sim as SS
from roofplan.errors import InfeasibleError
from roofplan.workload import make_workload
from tests.specs import instance
from tests.synthetic import fixed


@pytest.fixture(scope="module")
def inst(vllm_8b_instance):
    return vllm_8b_instance


def test_round_time_is_the_cost_model_step_time(inst):
    t = SL.round_time(inst, 512.0, 256.5, 8.0, 1100.0)
    ref = serve_model.step_time(inst.model, inst.hw, inst.engine, inst.cfg, 512.0, 256.5, 8.0, 1100.0)
    assert t[0] == pytest.approx(float(ref[0]), rel=1e-12)


def test_closed_loop_of_one_is_one_prefill_then_decode_steps(inst):
    isl, osl = fixed(1, 1000, 200)
    r = SL.closed_loop(inst, isl, osl, 1)
    ctx = 1000 + 200 / 2
    t_dec = SL.round_time(inst, 0.0, 0.0, 1.0, ctx)[0]
    t_pre = SL.round_time(inst, 1000.0, 500.5, 1.0, ctx)[0]
    # a lone client: its prompt rides one iteration (next to its own... no other decodes), then O-1 decodes
    assert r.tpot_s["mean"] == pytest.approx(t_dec, rel=0.02)
    # plus the API server's per-request time (vLLM: 49.6 ms), with no iteration to wait for
    assert r.ttft_s["mean"] == pytest.approx(t_pre + inst.engine.request_overhead_s, rel=0.05)
    assert r.rate_rps == pytest.approx(1.0 / (r.ttft_s["mean"] + 199 * r.tpot_s["mean"]), rel=0.02)


@pytest.mark.parametrize("conc", [8, 64])
def test_closed_loop_obeys_littles_law(inst, conc):
    isl, osl = fixed(1, 1000, 200)
    r = SL.closed_loop(inst, isl, osl, conc)
    assert r.rate_rps * r.latency_s["mean"] == pytest.approx(conc, rel=0.02)
    assert r.output_tokens_per_s == pytest.approx(r.rate_rps * 200, rel=1e-9)
    assert r.utilisation < 1.0


def test_tpot_under_load_exceeds_the_static_batch(inst):
    """Continuous batching carries prompt chunks in decode iterations: TPOT at concurrency 64 is
    above the static batch-64 decode step, and its percentiles are ordered."""
    isl, osl = fixed(1, 1000, 200)
    r = SL.closed_loop(inst, isl, osl, 64)
    static = estimate_serving(inst.model, inst.hw, batch=64, isl=1000, osl=200, engine="vllm")
    assert r.tpot_s["mean"] > float(static.arrays.tpot_s[0])
    for m in (r.ttft_s, r.tpot_s, r.latency_s):
        assert m["p50"] <= m["p90"] <= m["p99"]


def test_ttft_grows_with_rate_and_the_rate_limit_is_sharp(inst):
    isl, osl = fixed(1, 1000, 200)
    mo = SL.moments(inst, isl, osl)
    mr = SL.max_rate(inst, mo)
    ttfts = [SL.open_loop(inst, isl, osl, f * mr).ttft_s["mean"] for f in (0.2, 0.5, 0.8)]
    assert ttfts[0] < ttfts[1] < ttfts[2]
    assert SL.steady_state(inst, mo, 0.99 * mr).sustainable[0]
    assert not SL.steady_state(inst, mo, 1.02 * mr).sustainable[0]


def test_instances_split_the_rate(inst):
    isl, osl = fixed(1, 1000, 200)
    one = SL.open_loop(inst, isl, osl, 5.0)
    four = SL.open_loop(inst, isl, osl, 20.0, instances=4)
    assert four.ttft_s["mean"] == pytest.approx(one.ttft_s["mean"], rel=1e-9)
    assert four.max_rate_rps == pytest.approx(4 * one.max_rate_rps, rel=1e-9)


def test_unsustainable_rate_names_the_largest_rate():
    wl = make_workload(isl=1000, osl=200)
    with pytest.raises(InfeasibleError) as e:
        roofplan.estimate_serving_load("llama-3.1-8b", "h100-sxm", workload=wl, rate=1e4, engine="vllm")
    mr = e.value.details["max_rate_rps"]
    assert f"{mr:.4g}" in str(e.value)
    ok = roofplan.estimate_serving_load("llama-3.1-8b", "h100-sxm", workload=wl, rate=0.9 * mr, engine="vllm")
    assert ok.result.utilisation == pytest.approx(0.9, rel=1e-3)


def test_output_length_variance_raises_kv_occupancy_and_the_latency_tail(inst):
    """Same mean lengths: a long-tailed osl keeps long requests resident longer (time-weighted
    context E[L·O + O²/2]/E[O] > L + E[O]/2) and spreads end-to-end latency."""
    n = 8000
    isl = np.full(n, 1000)
    osl_var = make_workload(isl=1000, osl_dist="lognormal:200,300", n=n).osl
    isl_f, osl_f = fixed(1, 1000, int(round(osl_var.mean())))
    a = SL.open_loop(inst, isl_f, osl_f, 5.0)
    b = SL.open_loop(inst, isl, osl_var, 5.0)
    assert b.kv_occupancy / b.running_per_instance > a.kv_occupancy / a.running_per_instance
    assert b.latency_s["p99"] > 1.5 * a.latency_s["p99"]


# ------------------------------------------------------------------------------------------------
# simulator
# ------------------------------------------------------------------------------------------------
def test_step_table_matches_round_time_off_grid(inst):
    tab = SS.StepTable(inst, 8192, 256, 4096)
    for p, cp, d, cd in ((0, 1, 37, 1500), (700, 350, 12, 900), (3000, 1500, 100, 2500)):
        assert tab(p, cp, d, cd) == pytest.approx(SL.round_time(inst, p, cp, d, cd)[0], rel=0.03)


@pytest.mark.parametrize("frac", [0.3, 0.5])
def test_simulator_agrees_with_the_analytic_steady_state(inst, frac):
    isl, osl = fixed(6000, 1000, 200)
    mr = SL.max_rate(inst, SL.moments(inst, isl[:1], osl[:1]))
    rate = frac * mr
    a = SL.open_loop(inst, isl[:1], osl[:1], rate)
    s = SS.simulate_colocated(inst, isl, osl, SS.poisson_arrivals(len(isl), rate, seed=1))
    assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.05)
    assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.10)
    assert s.mean_running == pytest.approx(a.running_per_instance, rel=0.06)


def _closed_loops(inst, clients: int, n: int):
    """The analytic and the simulated closed loop of ``clients`` over ``n`` prompts of 1,000
    tokens with outputs uniform over 200 +- 20% (seeded: desynchronised returns)."""
    rng = np.random.default_rng(3)
    isl, osl = np.full(n, 1000), rng.integers(160, 241, n)
    return SL.closed_loop(inst, isl, osl, clients), SS.simulate_colocated(inst, isl, osl, concurrency=clients)


def test_closed_loop_simulation_agrees(inst):
    """32 clients: with fixed lengths the simulator's mean TPOT and running batch match the analytic
    closed loop; its mean TTFT is compared with outputs uniform over 200 +- 20%, since requests of
    identical lengths that share a prompt iteration come back together (lock-step): with decode
    attention on FlashAttention-3's CTA waves the fixed-length simulated TTFT jumps 80 -> 91 -> 96
    -> 133 ms at 24 / 28 / 32 / 36 clients while the analytic one moves 83 -> 88 ms; with the
    length spread the simulator gives 84.7 / 88.8 / 91.4 / 89.4 ms against 83.3 / 86.0 / 87.0 /
    88.0 analytic (the 10% of the 64-client test below)."""
    isl, osl = fixed(4000, 1000, 200)
    a = SL.closed_loop(inst, isl[:1], osl[:1], 32)
    s = SS.simulate_colocated(inst, isl, osl, concurrency=32)
    assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.03)
    assert s.mean_running == pytest.approx(a.running_per_instance, rel=0.05)
    a, s = _closed_loops(inst, 32, 4000)
    assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.10)


def test_closed_loop_of_many_clients_agrees_with_the_simulator_at_64(inst):
    """64 clients, outputs uniform over 200 +- 20% (desynchronised returns): the simulator's mean
    TTFT, TPOT and running batch match the analytic closed loop, whose prompts now queue behind the
    other clients' (before: 88 ms analytic against 102 ms simulated)."""
    a, s = _closed_loops(inst, 64, 6000)
    assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.03)
    assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.10)
    assert s.mean_running == pytest.approx(a.running_per_instance, rel=0.05)
    # the TTFT tail: the wait behind the other clients is drawn from the M/G/1 law, so the analytic
    # percentiles spread as the simulated ones do (before: p50 = p90 = p99 = the mean, 28% under
    # the simulated p90)
    assert a.ttft_s["p50"] < a.ttft_s["p90"] < a.ttft_s["p99"]
    assert a.ttft_s["p90"] == pytest.approx(s.summary("ttft_s")["p90"], rel=0.15)


def test_closed_loop_of_128_clients_agrees_with_the_simulator(inst):
    """128 clients, outputs uniform over 200 +- 20%: the prompts arriving with a request (sent back
    together, or during the rest of the iteration in progress) ride in its prompt iteration
    (iteration-level batching), so the analytic mean TTFT matches the simulator's (before: 107.6 ms
    analytic against 127.8 simulated, 16% under; the simulated prompt iteration was 56 ms against
    one prompt's 33.5)."""
    a, s = _closed_loops(inst, 128, 6000)
    assert s.summary("ttft_s")["mean"] == pytest.approx(a.ttft_s["mean"], rel=0.05)
    assert s.summary("tpot_s")["mean"] == pytest.approx(a.tpot_s["mean"], rel=0.03)


def test_fixed_lengths_lock_step_in_the_simulator(inst):
    """Identical lengths: requests that share a prompt iteration end in the same iteration and, with
    the same API-server time, come back together, so the bunches merge and never split; the
    simulated mean TTFT at 64 clients is then far above the one with outputs of 200 +- 20% (same
    mean). The analytic model has no bunches to merge: its TTFT is the same for both workloads
    and matches the spread one, the divergence is the simulator's lock-step."""
    rng = np.random.default_rng(3)
    isl, spread = np.full(6000, 1000), rng.integers(160, 241, 6000)
    same = np.full(6000, int(round(spread.mean())))
    sim_same = SS.simulate_colocated(inst, isl, same, concurrency=64).summary("ttft_s")["mean"]
    sim_spread = SS.simulate_colocated(inst, isl, spread, concurrency=64).summary("ttft_s")["mean"]
    a_same = SL.closed_loop(inst, isl[:1], same[:1], 64).ttft_s["mean"]
    a_spread = SL.closed_loop(inst, isl, spread, 64).ttft_s["mean"]
    assert sim_same > 1.3 * sim_spread
    assert a_same == pytest.approx(a_spread, rel=0.02)
    # 2.9% apart with vLLM's asynchronous scheduling and its 0.6 ms host step (6.2% with the
    # earlier 1.5 ms prior, which hid behind the GPU less)
    assert a_spread == pytest.approx(sim_spread, rel=0.05)


def test_many_clients_queue_like_poisson_arrivals_plus_the_returns_together(inst):
    """Palm-Khintchine: the prompts of many desynchronised clients superpose to a Poisson stream, so
    at 64 clients the closed loop's TTFT is the open loop's at the same rate, plus the prompts sent
    back together with it: each of the other d - 1 decoding requests ends in its predecessor's
    iteration with probability 1 / (O - 1), and their 1000-token prompts ride in its prompt
    iteration at the marginal step time of a full-budget iteration (hand calculation from
    round_time). One client finds no queue and no company (its prompt's iterations plus the API
    time)."""
    isl, osl = fixed(1, 1000, 200)
    c = SL.closed_loop(inst, isl, osl, 64)
    o = SL.open_loop(inst, isl, osl, c.rate_rps)
    d = c.running_per_instance
    b = SL.token_budget(inst, 1000)
    ctx = 1000 + 200 / 2
    per_token = (SL.round_time(inst, b - d, 500.5, d, ctx)[0] - SL.round_time(inst, 0.0, 0.0, d, ctx)[0]) / (
        b - d
    )
    together = (d - 1.0) / 199.0 * 1000.0 * per_token
    assert together > 0.03 * o.ttft_s["mean"]  # the term matters at 64 clients
    assert c.ttft_s["mean"] == pytest.approx(o.ttft_s["mean"] + together, rel=0.02)
    mo = SL.moments(inst, isl, osl)
    st = SL.state_at(inst, mo, np.array([1.0]), poisson=False)
    assert SL.closed_loop_wait(inst, mo, st, 1)[0] == 0.0
    assert SL.closed_loop_co_batch(mo, st, 1)[0] == 0.0
    assert SL.closed_loop_wait(inst, mo, st, 64)[0] == pytest.approx(
        SL.prefill_wait(inst, mo, st.d, st.lam * 63 / 64)[1][0], rel=1e-12
    )


def test_prefill_queue_waits_follow_md1(inst):
    """Prompts of two token budgets and one output token: the instance is a single FCFS server with
    deterministic service D (two full-budget chunks, no decode tokens sharing the budget), so the
    mean wait follows Pollaczek-Khinchine for M/D/1, W = rho·D / (2(1 - rho)), and grows without
    bound as rho -> 1."""
    b = SL.token_budget(inst, 1)
    L = 2 * b
    isl, osl = fixed(12000, L, 1)
    D = (
        SL.round_time(inst, b, (b + 1) / 2, 0.0, 1.0)[0]
        + SL.round_time(inst, b, b + (b + 1) / 2, 0.0, 1.0)[0]
    )
    base = SS.simulate_colocated(inst, isl[:2000], osl[:2000], SS.poisson_arrivals(2000, 0.01 / D, seed=2))
    # the simulator's service (no queue at rho = 0.01): TTFT less the API server's time
    S = base.summary("ttft_s")["p50"] - inst.engine.request_overhead_s
    assert S == pytest.approx(D, rel=0.02)  # its step-time table against the cost model
    waits, pk = {}, {}
    for rho in (0.5, 0.8):
        lam = rho / D
        s = SS.simulate_colocated(inst, isl, osl, SS.poisson_arrivals(len(isl), lam, seed=2))
        waits[rho] = s.summary("wait_s")["mean"]
        r = lam * S
        pk[rho] = r * S / (2 * (1 - r))
        assert waits[rho] == pytest.approx(pk[rho], rel=0.15)
    assert waits[0.8] / waits[0.5] == pytest.approx(pk[0.8] / pk[0.5], rel=0.2)


def test_kv_pressure_preempts_and_every_request_finishes():
    tight = instance("llama-3.1-70b", tp=2, isl=1000, osl=1000)
    cap = SL.kv_capacity_tokens(tight)
    assert 2000 < cap < 200_000  # a small KV cache next to 70 GB of weights per GPU
    isl, osl = fixed(600, 1000, 1000)
    s = SS.simulate_colocated(tight, isl, osl, SS.poisson_arrivals(600, 50.0, seed=0))
    assert s.preemptions > 0
    assert np.all(np.isfinite(s.latency_s))
    assert np.all(s.latency_s >= s.ttft_s)


def test_disaggregated_ttft_includes_the_kv_transfer():
    wl = make_workload(isl=4000, osl=50)
    kw = dict(workload=wl, rate=0.5, tp=4, engine="vllm", mode="disagg", requests=400)
    sim = roofplan.simulate_serving("llama-3.1-70b", "h100-sxm", **kw)
    p = instance("llama-3.1-70b", tp=4, isl=4000, osl=50)
    xfer = float(serving.kv_transfer_s(p, p, [4000], False)[0])
    t_pre = SL.round_time(p, 4000.0, 2000.5, 0.0, 1.0)[0]
    # at rho ~ 0.1 most prompts find the prefill instance idle: TTFT median ~ the API server's
    # time + prefill + transfer
    api = p.engine.request_overhead_s
    assert sim.to_json()["ttft_p50_ms"] / 1e3 == pytest.approx(api + t_pre + xfer, rel=0.1)
    assert xfer > 0


def test_simulate_and_estimate_share_the_json_keys():
    wl = make_workload(isl=1000, osl=200)
    est = roofplan.estimate_serving_load(
        "llama-3.1-8b", "h100-sxm", workload=wl, rate=4.0, engine="vllm"
    ).to_json()
    sim = roofplan.simulate_serving(
        "llama-3.1-8b", "h100-sxm", workload=wl, rate=4.0, engine="vllm", requests=2000
    ).to_json()
    need = {f"{m}_{s}ms" for m in ("ttft", "tpot", "latency") for s in ("", "p50_", "p90_", "p99_")}
    need |= {"output_tokens_per_s", "utilisation", "schema", "inputs", "memory_gib_per_gpu"}
    assert need <= set(est) and need <= set(sim)
    assert sim["utilisation"] == pytest.approx(est["utilisation"], rel=0.05)
    assert math.isclose(sim["output_tokens_per_s"], 4.0 * 200, rel_tol=0.08)


def test_validation_rows_under_load_are_predicted_and_tpot_within_bounds():
    """The suite's closed-loop rows (gpustack performance lab, Qwen3-8B on H100 at concurrency 4,
    vLLM / SGLang / TensorRT-LLM): every row predicted; TPOT within 25 % (measured today: 2-21 %).
    TTFT is under-predicted by 70-86 %: the model has no per-request API-server time
    (HTTP, chat template, tokenisation), which dominates a 233-token prefill."""
    from roofplan.validation.suite import read_cases, run_suite

    res = run_suite(cases=[c for c in read_cases() if c.kind == "serve_load"])
    assert len(res.results) >= 6
    assert all(r.predicted and r.predicted > 0 for r in res.results)
    tpot = [abs(r.error) for r in res.results if r.case.metric == "tpot_ms_mean"]
    assert max(tpot) <= 0.25


def test_serve_load_rows_held_back_from_the_fit_meet_the_target():
    """Issue 11's target on the H100 rows the per-request API-server time was not fitted on:
    median |error| <= 10 %, TTFT and TPOT apart (the fit rows are tools/fit_request_overhead.py's;
    all of them are H100 rows). The H200 rows (another client, guidellm, and vLLM 0.17) miss it
    on TTFT; tests/test_validation_load.py bounds them."""
    import importlib.util
    from pathlib import Path

    from roofplan.validation.suite import predict, read_cases

    path = Path(__file__).resolve().parent.parent / "tools" / "fit_request_overhead.py"
    spec = importlib.util.spec_from_file_location("fit_request_overhead", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fit_rows = set(tool.FIT_ROWS.values())
    errs: dict[str, list[float]] = {"ttft_ms_mean": [], "tpot_ms_mean": []}
    for c in read_cases():
        if c.kind == "serve_load" and c.id not in fit_rows and c.str("hardware") == "h100-sxm":
            errs[c.metric].append(abs(predict(c) / float(c.row["value"]) - 1))
    assert len(errs["ttft_ms_mean"]) >= 6 and len(errs["tpot_ms_mean"]) >= 8
    for metric, e in errs.items():
        assert np.median(e) <= 0.10, metric


def test_pipelined_prefill_queues_once_in_front_of_its_first_stage():
    """A pp=4 prefill instance taking one 4000-token prompt a pass is a tandem of four equal
    deterministic stages: the queue forms only in front of the first (service S = pass / 4, the
    rate the planner's prefill candidates assume), so the mean wait is Pollaczek-Khinchine's
    M/D/1 with that S, and a prompt's own time is still the whole pass. (Four independent
    full-pass servers fed round robin would wait about four times longer at the same load.)"""
    import dataclasses

    p = instance("llama-3.1-70b", tp=2, pp=4, isl=4000, osl=2)
    p = dataclasses.replace(p, engine=p.engine.replace(max_num_batched_tokens=4000))
    d = instance("llama-3.1-70b", tp=8, isl=4000, osl=2)
    pass_s = SL.round_time(p, 4000.0, 2000.5, 0.0, 1.0)[0]
    S = pass_s / 4
    n = 12000
    isl, osl = fixed(n, 4000, 2)

    def run(rate):
        return SS.simulate_disagg(
            p,
            d,
            isl,
            osl,
            SS.poisson_arrivals(n, rate, seed=3),
            prefill_instances=1,
            decode_instances=1,
            transfer_s=lambda x: np.zeros(len(x)),
        )

    idle = run(0.01 / S)
    api = p.engine.request_overhead_s
    assert idle.summary("ttft_s")["p50"] - api == pytest.approx(pass_s, rel=0.03)
    rho = 0.7
    wait = run(rho / S).summary("wait_s")["mean"]
    assert wait == pytest.approx(rho * S / (2 * (1 - rho)), rel=0.15)
