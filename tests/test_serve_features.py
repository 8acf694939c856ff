"""Speculative decoding and prefix caching (roofplan.costmodel.serve_features).

Expected values: hand calculations (Leviathan et al. eq. 1, the miss-only prefill), invariants
(no feature = serve_step; a draft that is never accepted cannot speed decoding up)."""

from __future__ import annotations

import numpy as np
import pytest

from roofplan import load_hardware, load_model
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.serve import ServeConfigs, serve_step, step_time
from roofplan.costmodel.serve_features import SpecDecode, resolve_prefix_hit, serve_step_ext
from roofplan.engines.catalog import load_engine
from roofplan.errors import InputError
from tests.specs import instance

HW = load_hardware("h200-sxm")
DS = load_model("deepseek-v3")
L8 = load_model("llama-3.1-8b")
SG = load_engine("sglang")


def _cfg(batch=16, isl=2000, osl=500, tp=8, dtype="fp8"):
    return ServeConfigs.single(
        tp=tp, pp=1, ep=1, dp=1, batch=batch, isl=isl, osl=osl, dtype=dtype, engine="sglang"
    )


def test_expected_tokens_per_step_hand_calculation():
    assert SpecDecode("ngram", 3, 0.5).tokens_per_step == pytest.approx((1 - 0.5**4) / 0.5)  # 1.875
    assert SpecDecode("mtp", 1, 0.85).tokens_per_step == pytest.approx(1.85)
    assert SpecDecode("eagle3", 4, 1.0).tokens_per_step == 5.0


def test_no_feature_is_serve_step():
    cfg = _cfg()
    a, b = serve_step(DS, HW, cfg, SG), serve_step_ext(DS, HW, cfg, SG)
    assert a.tpot_s[0] == b.tpot_s[0] and a.ttft_s[0] == b.ttft_s[0]


def test_verify_step_is_the_mixed_step_and_tpot_divides_by_accepted_tokens():
    """ngram (no draft cost): TPOT = one mixed step of B decode + B*k verify tokens, / E."""
    cfg = _cfg(batch=8)
    spec = SpecDecode("ngram", 3, 0.6)
    got = serve_step_ext(L8, HW, cfg, SG, spec=spec).tpot_s[0]
    ctx = 2000 + 500 / 2
    step = step_time(L8, HW, SG, cfg, 8 * 3, ctx, 8, ctx, prefill_seqs=8 * 3)[0]
    assert got == pytest.approx(step / spec.tokens_per_step)


def test_never_accepted_drafts_slow_decoding_and_draft_layers_cost_time():
    cfg = _cfg(batch=32)
    base = serve_step(DS, HW, cfg, SG).tpot_s[0]
    assert serve_step_ext(DS, HW, cfg, SG, spec=SpecDecode("ngram", 3, 0.0)).tpot_s[0] > base
    mtp = serve_step_ext(DS, HW, cfg, SG, spec=SpecDecode("mtp", 3, 0.0)).tpot_s[0]
    ngram = serve_step_ext(DS, HW, cfg, SG, spec=SpecDecode("ngram", 3, 0.0)).tpot_s[0]
    assert mtp > ngram  # three MTP-layer forwards on top of the same verify pass
    assert serve_step_ext(DS, HW, cfg, SG, spec=SpecDecode("mtp", 1, 0.85)).tpot_s[0] < base


def test_mtp_adds_one_layer_of_weights_and_kv():
    cfg = _cfg(batch=1)
    base = serve_step(DS, HW, cfg, SG)
    spec = serve_step_ext(DS, HW, cfg, SG, spec=SpecDecode.of("mtp"))
    assert spec.mem_kv_cache[0] == pytest.approx(base.mem_kv_cache[0] * 62 / 61)
    assert spec.max_batch[0] <= base.max_batch[0]


def test_prefix_hit_prefills_only_the_miss():
    """The hit tokens are not prefilled: TTFT with a hit of h equals the prefill of isl - h new
    tokens over a context h + (miss + 1)/2, and each request holds KV for miss + osl tokens."""
    cfg = _cfg(batch=4, isl=4000, osl=200)
    hit = serve_step_ext(L8, HW, cfg, SG, prefix_hit=3000)
    expect = step_time(L8, HW, SG, cfg, 4 * 1000, 3000 + 1001 / 2, 0.0, 0.0, prefill_seqs=4)[0]
    assert hit.ttft_s[0] == pytest.approx(expect)
    base = serve_step(L8, HW, cfg, SG)
    assert hit.ttft_s[0] < base.ttft_s[0] and hit.max_batch[0] > 3 * base.max_batch[0]
    assert hit.tpot_s[0] == base.tpot_s[0]  # decode still attends to the whole context


def test_prefix_hit_forms_and_bad_values():
    assert resolve_prefix_hit(0.75, 4000) == 3000 and resolve_prefix_hit(1024, 4000) == 1024
    assert resolve_prefix_hit(None, 10) == 0
    for bad in (4000, -1, 1.5, "x"):
        with pytest.raises(InputError, match="prefix-hit"):
            resolve_prefix_hit(bad, 4000)
    with pytest.raises(InputError, match="spec-method"):
        SpecDecode.of("medusa")
    with pytest.raises(InputError, match="spec-accept"):
        SpecDecode("mtp", 1, 1.5)
    assert np.isclose(SpecDecode.of("eagle3").acceptance, 0.64)


def test_expert_skew_loads_only_expert_parallel_ranks():
    """Skew = max/mean routed tokens per EP rank: it slows EP instances (their busiest rank's
    expert GEMMs and all-to-all bytes grow) and leaves instances without EP as they are."""
    ep8 = ServeConfigs.single(
        tp=1, pp=1, ep=8, dp=8, batch=64, isl=2000, osl=100, dtype="fp8", engine="sglang"
    )
    tp8 = _cfg(batch=64, isl=2000, osl=100)
    uniform = serve_step(DS, HW, ep8, SG)
    skewed = serve_step_ext(DS, HW, ep8, SG, expert_skew=2.0)
    assert skewed.ttft_s[0] > uniform.ttft_s[0] and skewed.tpot_s[0] > uniform.tpot_s[0]
    assert serve_step_ext(DS, HW, tp8, SG, expert_skew=2.0).ttft_s[0] == serve_step(DS, HW, tp8, SG).ttft_s[0]
    with pytest.raises(InputError, match="expert-skew"):
        serve_step_ext(DS, HW, ep8, SG, expert_skew=0.9)


def test_windowed_and_sparse_attention_cut_long_context_cost():
    """gpt-oss: half the layers read only their last 128 tokens; DeepSeek-V3.2: the MLA core reads
    the top-2048 latents (plus every 128-wide indexer key) where V3 reads them all."""
    oss = load_model("gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2  # K and V, 8 KV heads x 64, bf16
    assert oss.kv_read_bytes(32768.0) == per_layer * (18 * 32768 + 18 * 128)
    assert oss.attention_context(32768.0) == pytest.approx((18 * 32768 + 18 * 128) / 36)
    v32, v3 = load_model("deepseek-v3.2"), load_model("deepseek-v3")
    assert v32.kv_read_bytes(65536.0) == 61 * 2 * (2048 * 576 + 65536 * 128)
    cfg = ServeConfigs.single(
        tp=8, pp=1, ep=1, dp=1, batch=8, isl=65536, osl=100, dtype="fp8", engine="sglang"
    )
    assert serve_step(v32, HW, cfg, SG).tpot_s[0] < serve_step(v3, HW, cfg, SG).tpot_s[0]
    assert serve_step(v32, HW, cfg, SG).ttft_s[0] < serve_step(v3, HW, cfg, SG).ttft_s[0]


def test_attention_dp_without_ep_pays_the_gather_and_combine_all_reduces():
    """ep = 1, dp = 8, tp = 1: the experts are split over the 8 attention ranks, so each of the 58
    MoE layers all-reduces the gathered T x 7168 bf16 activations twice (SGLang's dp_gather, then the
    experts' partial sums). Before, the instance charged no communication at all (tp = 1). Floor:
    a ring all-reduce moves 2 (g-1)/g of the buffer over one rank's NVLink, 450 GB/s per direction
    (H200 SXM datasheet)."""
    from roofplan.costmodel.serve import step_breakdown

    plain = load_engine("sglang").replace(custom_allreduce=False)
    cfg = ServeConfigs.single(
        tp=1, pp=1, ep=1, dp=8, batch=64, isl=2000, osl=100, dtype="fp8", engine="sglang"
    )
    parts = step_breakdown(DS, HW, plain, cfg, 0.0, 0.0, 64.0, 2050.0)
    buffer = 64 * 7168 * 2  # the 64 decode tokens of all 8 ranks, bf16 activations
    floor = 58 * 2 * (2 * 7 / 8 * buffer / 450e9)
    assert parts.comm[0] >= floor
    assert parts.comm[0] == pytest.approx(
        58 * 2 * float(collective_time("all_reduce", buffer, 8, HW)), rel=1e-9
    )
    # dp = 1 keeps the TP all-reduce of one rank's tokens after attention and the MoE (2 per layer)
    tp8 = ServeConfigs.single(
        tp=8, pp=1, ep=1, dp=1, batch=64, isl=2000, osl=100, dtype="fp8", engine="sglang"
    )
    t8 = step_breakdown(DS, HW, plain, tp8, 0.0, 0.0, 64.0, 2050.0)
    ar = float(collective_time("all_reduce", buffer, 8, HW))
    head = float(collective_time("all_gather", 64 * DS.vocab * 4.0, 8, HW))
    assert t8.comm[0] == pytest.approx(61 * 2 * ar + head, rel=1e-9)


def _colocated(model, spec=None, hit=0, skew=1.0, tp=1, ep=1, dp=1, C=16, chunk=512, isl=2000, osl=500):
    from roofplan.solver.colocated import colocated_metrics
    from roofplan.solver.serve_space import Shapes

    one = np.array([1])
    shapes = Shapes(tp=one * tp, pp=one, dp=one * dp, ep=one * ep)
    feats = None if spec is None and not hit and skew == 1.0 else (spec, hit, skew)
    return colocated_metrics(
        model,
        HW,
        SG,
        shapes,
        np.array([C]),
        np.array([chunk]),
        isl=isl,
        osl=osl,
        dtype="fp8",
        kv_dtype=None,
        engine_name="sglang",
        features=feats,
    )


def test_colocated_speculative_decoding_hand_composition():
    """n-gram drafts (no draft network): a decode round verifies C x k draft tokens at the decode
    context, a mixed round adds the 512-token chunk at its causal context (the query-weighted mean
    context); a round yields E = (1-a^4)/(1-a) tokens per request, so a request leaves after osl/E
    rounds and TPOT is the mean round over E (Leviathan et al. eq. 1)."""
    spec = SpecDecode("ngram", 3, 0.5)
    E = (1 - 0.5**4) / 0.5
    C, chunk, isl, osl = 16, 512, 2000, 500
    cfg = _cfg(batch=C, isl=isl, osl=osl, tp=1)
    ctx, pre = isl + osl / 2, (isl + 1) / 2
    t_dec = step_time(L8, HW, SG, cfg, C * 3, ctx, C, ctx, prefill_seqs=C * 3)[0]
    t_mix = step_time(
        L8,
        HW,
        SG,
        cfg,
        C * 3 + chunk,
        (C * 3 * ctx + chunk * pre) / (C * 3 + chunk),
        C,
        ctx,
        prefill_seqs=C * 3 + chunk / isl,
    )[0]
    f = C * isl / (osl / E * chunk)
    got = _colocated(L8, spec=spec)
    assert got.mix_fraction[0] == pytest.approx(f)
    assert got.tpot_s[0] == pytest.approx((f * t_mix + (1 - f) * t_dec) / E, rel=1e-9)
    api = SG.request_overhead_s  # the engine's per-request API-server time comes first
    assert got.ttft_s[0] == pytest.approx(api + np.ceil(isl / chunk) * t_mix, rel=1e-9)
    # a draft that is never accepted cannot beat plain decoding
    assert _colocated(L8, spec=SpecDecode("ngram", 3, 0.0)).tpot_s[0] > _colocated(L8).tpot_s[0]
    # an MTP layer on DeepSeek-V3 at the published acceptance speeds decoding up
    assert (
        _colocated(DS, spec=SpecDecode.of("mtp"), tp=8, C=64).tpot_s[0] < _colocated(DS, tp=8, C=64).tpot_s[0]
    )


def test_colocated_prefix_hit_prefills_only_the_miss():
    """1500 of 2000 prompt tokens cached: a chunk computes miss tokens at context 1500 + 501/2,
    one prompt needs ceil(500 / 512) = 1 mixed round, the token balance needs C x 500 / osl prompt
    tokens per round, and each request holds KV for its miss only (more requests fit)."""
    C, chunk, isl, osl, hit = 16, 512, 2000, 500, 1500
    cfg = _cfg(batch=C, isl=isl, osl=osl, tp=1)
    t_mix = step_time(L8, HW, SG, cfg, chunk, hit + 501 / 2, C, isl + osl / 2, prefill_seqs=chunk / 500)[0]
    got, base = _colocated(L8, hit=hit), _colocated(L8)
    assert got.ttft_s[0] == pytest.approx(SG.request_overhead_s + t_mix, rel=1e-9)
    assert got.mix_fraction[0] == pytest.approx(C * 500 / (osl * chunk))
    assert got.ttft_s[0] < base.ttft_s[0] and got.tpot_s[0] < base.tpot_s[0]
    assert got.max_batch[0] > base.max_batch[0]


def test_colocated_expert_skew_paces_only_expert_parallel_instances():
    uniform = _colocated(DS, tp=1, ep=8, dp=8, C=64)
    skewed = _colocated(DS, skew=2.0, tp=1, ep=8, dp=8, C=64)
    assert skewed.tpot_s[0] > uniform.tpot_s[0] and skewed.ttft_s[0] > uniform.ttft_s[0]
    assert _colocated(DS, skew=2.0, tp=8, C=64).tpot_s[0] == _colocated(DS, tp=8, C=64).tpot_s[0]


def test_colocated_plans_take_speculative_decoding_and_emit_it():
    """--mode colocated with a draft method plans (it was refused), the plan's TPOT is the colocated
    steady state with E tokens per round, and the colocated vLLM launch file carries the draft."""
    from roofplan import plan_serving

    args = dict(gpus=1, isl=2000, osl=500, tpot_ms=20, mode="colocated", engine="vllm")
    plain = plan_serving("llama-3.1-8b", "h200-sxm", **args)
    spec = plan_serving("llama-3.1-8b", "h200-sxm", speculative=SpecDecode.of("eagle3"), **args)
    assert spec.best["mode"] == "colocated" and spec.request["speculative"]["method"] == "eagle3"
    assert spec.best["tpot_ms"] <= 20 and plain.request.get("speculative") is None
    vllm = "\n".join(spec.launch["vllm"].values())
    assert '"method":"eagle3","num_speculative_tokens":3' in vllm


def test_prefix_hit_ships_only_the_miss_to_the_decode_side():
    """Llama 3.1 8B holds 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 B = 131,072 B per token: a
    2000-token prompt with 1500 cached ships 500 x 131,072 B; in the planner a prefill pass with
    that hit costs the transfer of 500-token prompts."""
    from roofplan.costmodel.serve import kv_transfer_bytes
    from roofplan.solver.serve_planner import Pool, evaluate_prefill, kv_transfer_time
    from roofplan.solver.serve_space import instance_shapes

    assert float(kv_transfer_bytes(L8, 2000, "bf16", 1500)) == 500 * 131072
    assert float(kv_transfer_bytes(L8, 2000, "bf16")) == 2000 * 131072
    pool = Pool(load_hardware("h200-sxm"), ("prefill", "decode", "colocated"))
    shapes = instance_shapes(L8, 8, 8, "vllm")
    vllm = load_engine("vllm")
    common = dict(isl=2000, dtype="bf16", kv_dtype=None, engine_name="vllm")
    plain = evaluate_prefill(L8, pool, vllm, shapes, **common)
    hit = evaluate_prefill(L8, pool, vllm, shapes, features=(None, 1500, 1.0), **common)
    assert hit.prefix_hit == 1500 and np.array_equal(hit.batch, plain.batch)
    idx = np.arange(len(plain.batch))
    t_hit = kv_transfer_time(L8, hit, hit, idx, idx, isl=2000, kv_dtype=None)
    t_500 = kv_transfer_time(L8, plain, plain, idx, idx, isl=500, kv_dtype=None)
    t_full = kv_transfer_time(L8, plain, plain, idx, idx, isl=2000, kv_dtype=None)
    assert np.allclose(t_hit, t_500, rtol=1e-12) and np.all(t_hit < t_full)


def test_simulator_prefix_hit_prefills_the_miss_at_the_cached_context():
    """Requests far apart (0.01 req/s) mostly run alone: with 3000 of 4000 prompt tokens cached, TTFT is
    the API server's time plus one iteration of the 1000 missed tokens at mean context 3000 +
    1001/2 (the cost model's step, a grid point of the simulator's table), and decoding attends to
    the whole 4000-token prompt."""
    from roofplan import simulate_serving
    from roofplan.costmodel import serve_load
    from roofplan.workload import make_workload

    wl = make_workload(isl=4000, osl=50)
    args = dict(workload=wl, rate=0.01, requests=20, engine="vllm")
    hit = simulate_serving("llama-3.1-8b", "h100-sxm", prefix_hit=3000, **args).to_json()
    full = simulate_serving("llama-3.1-8b", "h100-sxm", **args).to_json()
    inst = instance("llama-3.1-8b", "h100-sxm", "vllm", isl=4000, osl=50)
    one = float(serve_load.round_time(inst, 1000.0, 3000 + 1001 / 2, 0.0, 1.0)[0])
    api = inst.engine.request_overhead_s  # the API server's per-request time comes first
    assert hit["ttft_p50_ms"] == pytest.approx((api + one) * 1e3, rel=1e-6)  # the mean has one overlap
    assert hit["inputs"]["prefix_hit_tokens"] == 3000 and 0 < hit["utilisation"] < 1  # analytic, with the hit
    assert full["ttft_ms"] - api * 1e3 > 2 * (hit["ttft_ms"] - api * 1e3)
    decode = float(serve_load.round_time(inst, 0.0, 1.0, 1.0, 4000 + 25.5)[0])
    assert hit["tpot_ms"] == pytest.approx(decode * 1e3, rel=0.02)
    # the full prompt's run has more mixed iterations: 0.15 ms (2.1%) of TPOT apart
    assert hit["tpot_ms"] == pytest.approx(full["tpot_ms"], rel=0.03)


def test_simulator_disaggregated_prefix_hit_ships_less():
    from roofplan import simulate_serving
    from roofplan.workload import make_workload

    args = dict(
        workload=make_workload(isl=4000, osl=50), rate=0.01, requests=20, engine="vllm", mode="disagg"
    )
    hit = simulate_serving("llama-3.1-8b", "h100-sxm", prefix_hit=0.75, **args).to_json()
    full = simulate_serving("llama-3.1-8b", "h100-sxm", **args).to_json()
    assert hit["inputs"]["prefix_hit_tokens"] == 3000 and hit["ttft_ms"] < full["ttft_ms"]


def test_simulator_speculative_decoding_lone_request_hand_composition():
    """A lone request (0.01 req/s) with n-gram drafts (k = 3, a = 0.5: E = 1.875 tokens per round)
    decodes in ceil(299 / E) = 160 rounds, each a verify pass of its 3 draft tokens at the decode
    context (the cost model's speculative round), so TPOT = 160 x round / 299; without drafts the
    same simulation is slower per token, and a never-accepted draft is slower still."""
    from roofplan import simulate_serving
    from roofplan.costmodel.serve_sim import iteration_time
    from roofplan.workload import make_workload

    args = dict(workload=make_workload(isl=2000, osl=300), rate=0.01, requests=20, engine="vllm")
    spec = SpecDecode("ngram", 3, 0.5)
    got = simulate_serving("llama-3.1-8b", "h100-sxm", speculative=spec, **args).to_json()
    inst = instance("llama-3.1-8b", "h100-sxm", "vllm", isl=2000, osl=300)
    one = float(iteration_time(inst, 0.0, 1.0, 1.0, 2000 + 150.0, spec=spec)[0])
    assert got["tpot_p50_ms"] == pytest.approx(160 * one / 299 * 1e3, rel=0.02)
    assert got["inputs"]["speculative"]["method"] == "ngram" and 0 < got["utilisation"] < 1
    plain = simulate_serving("llama-3.1-8b", "h100-sxm", **args).to_json()
    never = simulate_serving(
        "llama-3.1-8b", "h100-sxm", speculative=SpecDecode("ngram", 3, 0.0), **args
    ).to_json()
    assert got["tpot_ms"] < plain["tpot_ms"] < never["tpot_ms"]


def test_percentile_plans_with_serving_features_are_confirmed_by_the_simulator():
    """The simulator models prefix hits, speculative decoding and expert skew, so a percentile plan
    with them is simulated (it was skipped)."""
    from roofplan import plan_serving

    args = dict(gpus=2, isl=2000, osl=300, ttft_ms=1500, tpot_ms=30, engine="vllm", slo_percentile=90)
    p = plan_serving("llama-3.1-8b", "h100-sxm", prefix_hit=0.5, speculative=SpecDecode.of("eagle3"), **args)
    sim = p.best["simulated"]
    assert sim["meets_sla"] is not None and sim["requests"] > 0 and sim["tpot_p90_ms"] > 0
    skewed = plan_serving("qwen3.5-35b-a3b", "h100-sxm", expert_skew=1.5, **args)
    assert skewed.best["simulated"]["meets_sla"] is not None and skewed.request["expert_skew"] == 1.5


def test_simulator_expert_skew_slows_only_expert_parallel_instances():
    """The simulator's iterations are the cost model's with the busiest EP rank at 2x the mean load
    (step_parts): an EP8 instance is slower, a TP8 instance without EP is unchanged."""
    from roofplan.costmodel.serve_sim import iteration_time

    ep8 = instance("deepseek-v3", "h200-sxm", "sglang", tp=1, ep=8, dp=8, dtype="fp8", isl=2000, osl=100)
    tp8 = instance("deepseek-v3", "h200-sxm", "sglang", tp=8, dtype="fp8", isl=2000, osl=100)
    grid = (
        np.array([0.0, 512.0]),
        np.array([1.0, 256.5]),
        np.array([64.0, 64.0]),
        np.array([2050.0, 2050.0]),
    )
    assert np.all(iteration_time(ep8, *grid, expert_skew=2.0) > iteration_time(ep8, *grid))
    assert np.array_equal(iteration_time(tp8, *grid, expert_skew=2.0), iteration_time(tp8, *grid))
    cfg = ServeConfigs.single(
        tp=1, pp=1, ep=8, dp=8, batch=64, isl=2000, osl=100, dtype="fp8", engine="sglang"
    )
    want = serve_step_ext(DS, HW, cfg, SG, expert_skew=2.0).tpot_s[0]  # the static decode step, B = 64
    got = iteration_time(ep8, 0.0, 1.0, np.array([64.0]), np.array([2050.0]), expert_skew=2.0)[0]
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_planner_ttft_holds_the_api_servers_time_but_not_its_rate():
    """The client's TTFT holds the engine's per-request API-server time (``request_overhead_s``, as
    the load model and the simulator count it); the server runs beside the GPU, so a prefill
    instance's rate and a colocated instance's TPOT are the GPU's alone."""
    import dataclasses

    from roofplan.solver.serve_planner import Pool, evaluate_colocated, evaluate_prefill
    from roofplan.solver.serve_space import instance_shapes

    pool = Pool(load_hardware("h100-sxm"), ("prefill", "decode", "colocated"))
    shapes = instance_shapes(L8, 2, 2, "vllm")
    vllm = load_engine("vllm")
    bare = dataclasses.replace(vllm, request_overhead_s=0.0)
    assert vllm.request_overhead_s > 0.01  # fitted: tens of ms
    common = dict(isl=2000, dtype="bf16", kv_dtype=None, engine_name="vllm")
    with_api, without = (evaluate_prefill(L8, pool, e, shapes, **common) for e in (vllm, bare))
    assert np.allclose(with_api.ttft_s - without.ttft_s, vllm.request_overhead_s, rtol=0, atol=1e-12)
    assert np.array_equal(with_api.rate, without.rate)
    colo = [evaluate_colocated(L8, pool, e, shapes, osl=200, **common) for e in (vllm, bare)]
    assert np.allclose(colo[0].ttft_s - colo[1].ttft_s, vllm.request_overhead_s, rtol=0, atol=1e-12)
    assert np.array_equal(colo[0].tpot_s, colo[1].tpot_s)


def test_mtp_needs_a_model_with_an_mtp_module():
    """vLLM, SGLang and TRT-LLM load the MTP draft from the checkpoint (DeepSeek-V3's
    num_nextn_predict_layers = 1); Llama 3.1 has none, so asking for it is a bad request."""
    from roofplan import estimate_serving

    with pytest.raises(InputError, match="no MTP module"):
        estimate_serving(L8, "h100-sxm", tp=1, batch=8, isl=1000, osl=200, speculative=SpecDecode.of("mtp"))
    assert estimate_serving(
        L8, "h100-sxm", tp=1, batch=8, isl=1000, osl=200, speculative=SpecDecode.of("eagle3")
    )
