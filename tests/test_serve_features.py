"""Speculative decoding and prefix caching (roofplan.costmodel.serve_features).

Expected values: hand calculations (Leviathan et al. eq. 1, the miss-only prefill), invariants
(no feature = serve_step; a draft that is never accepted cannot speed decoding up)."""

from __future__ import annotations

import numpy as np
import pytest

from roofplan import load_hardware, load_model
from roofplan.costmodel.serve import ServeConfigs, serve_step, step_time
from roofplan.costmodel.serve_features import SpecDecode, resolve_prefix_hit, serve_step_ext
from roofplan.errors import InputError
from roofplan.hardware.engines import load_engine

HW = load_hardware("h200-sxm")
DS = load_model("deepseek-v3")
L8 = load_model("llama-3.1-8b")
SG = load_engine("sglang")


def _cfg(batch=16, isl=2000, osl=500, tp=8, dtype="fp8"):
    return ServeConfigs.single(tp=tp, pp=1, ep=1, dp=1, batch=batch, isl=isl, osl=osl, dtype=dtype, engine=SG)


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
    ep8 = ServeConfigs.single(tp=1, pp=1, ep=8, dp=8, batch=64, isl=2000, osl=100, dtype="fp8", engine=SG)
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
    cfg = ServeConfigs.single(tp=8, pp=1, ep=1, dp=1, batch=8, isl=65536, osl=100, dtype="fp8", engine=SG)
    assert serve_step(v32, HW, cfg, SG).tpot_s[0] < serve_step(v3, HW, cfg, SG).tpot_s[0]
    assert serve_step(v32, HW, cfg, SG).ttft_s[0] < serve_step(v3, HW, cfg, SG).ttft_s[0]
