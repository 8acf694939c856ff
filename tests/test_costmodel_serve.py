"""Serving cost model against hand calculations and invariants.

Devices are built here from docs/reference/hardware.md numbers (not the catalogs) so the expectations are
independent of catalog fitting; models are the published shapes."""

import dataclasses

import numpy as np
import pytest

from roofplan import estimate_serving
from roofplan.costmodel.serve import (
    ServeConfigs,
    check_serve_config,
    kv_bytes_per_token_per_device,
    kv_transfer_bytes,
    max_batch,
    serve_step,
    step_time,
)
from roofplan.engines.catalog import load_engine
from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec, Efficiency, Fabric, MemoryTier
from roofplan.models.spec import MLASpec, ModelSpec, MoESpec
from tests.spec_keys import SERVE_ESTIMATE_KEYS
from tests.specs import LLAMA_8B

GENERIC = load_engine("generic")

# H100 SXM5 (docs/reference/hardware.md §4): 989.4 TFLOPS bf16, 1978.9 fp8, 80 GB at 3.35 TB/s, NVLink 450 GB/s/dir
H100 = DeviceSpec(
    id="h100-test",
    name="H100 SXM (test)",
    vendor="nvidia",
    peak_flops={"bf16": 989.4e12, "fp16": 989.4e12, "fp8": 1978.9e12, "int8": 1978.9e12},
    tiers=(MemoryTier("hbm", 80e9, 3.35e12),),
    devices_per_node=8,
    intra=Fabric("nvlink4", "switch", 450e9, 3e-6),
    inter=Fabric("ndr", "switch", 50e9, 5e-6),
    tdp_w=700,
    price_per_hour=None,
    efficiency=Efficiency(gemm_max=0.8, hbm=0.9),
)
# A100 SXM4 80GB (docs/reference/hardware.md §2): 312 TFLOPS bf16, no fp8, 2.039 TB/s
A100 = dataclasses.replace(
    H100,
    id="a100-test",
    peak_flops={"bf16": 312e12, "fp16": 312e12, "int8": 624e12},
    tiers=(MemoryTier("hbm", 80e9, 2.039e12),),
    intra=Fabric("nvlink3", "switch", 300e9, 3e-6),
)

LLAMA2_70B = ModelSpec(
    name="llama-2-70b",
    layers=80,
    hidden=8192,
    heads=64,
    kv_heads=8,
    head_dim=128,
    ffn=28672,
    vocab=32000,
    max_seq_len=4096,
)
LLAMA31_8B = dataclasses.replace(LLAMA_8B, name="llama-3.1-8b", max_seq_len=131072)
#: Mixtral 8x7B: the Llama 3 8B attention and FFN widths, a 32000 vocabulary, 8 experts, top 2.
MIXTRAL = dataclasses.replace(
    LLAMA_8B,
    name="mixtral-8x7b",
    vocab=32000,
    max_seq_len=32768,
    moe=MoESpec(num_experts=8, top_k=2, expert_ffn=14336),
)
DSV3 = ModelSpec(
    name="deepseek-v3",
    layers=61,
    hidden=7168,
    heads=128,
    kv_heads=128,
    head_dim=128,
    ffn=18432,
    vocab=129280,
    max_seq_len=163840,
    moe=MoESpec(num_experts=256, top_k=8, expert_ffn=2048, shared_experts=1, first_dense_layers=3),
    mla=MLASpec(
        kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, q_lora_rank=1536
    ),
)
QWEN3_14B = ModelSpec(
    name="qwen3-14b",
    layers=40,
    hidden=5120,
    heads=40,
    kv_heads=8,
    head_dim=128,
    ffn=17408,
    vocab=151936,
    qk_norm=True,
)


def _cfg(**kw):
    return ServeConfigs.single(**kw)


# -- the memory-bound floor --------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [H100, A100])
@pytest.mark.parametrize("tp", [1, 2, 4, 8])
@pytest.mark.parametrize("engine", ["generic", "vllm", "sglang", "trtllm"])
def test_decode_batch1_never_faster_than_weight_read(hw, tp, engine):
    model = LLAMA2_70B if tp >= 2 else LLAMA31_8B
    a = serve_step(model, hw, _cfg(tp=tp, batch=1, isl=512, osl=64, dtype="bf16"), load_engine(engine))
    # every matmul weight (all layers + LM head; the input embedding is a lookup) read once per
    # step at the datasheet bandwidth: the absolute floor of one decode step
    h, f, kv = model.hidden, model.ffn, model.kv_heads * model.head_dim
    per_layer = h * (h + 2 * kv) + h * h + 3 * h * f
    floor = (model.layers * per_layer + model.vocab * h) * 2 / tp / hw.hbm_Bps
    assert a.tpot_s[0] >= floor
    # ... and not absurdly above it: fixed costs (all-reduce latency, launches, scheduler) at most
    # double the achievable-bandwidth floor even at TP 8, batch 1
    assert a.tpot_s[0] <= 2.5 * floor / hw.efficiency.hbm


def test_fp8_weights_halve_the_decode_floor():
    args = dict(tp=1, batch=1, isl=1, osl=1, kv_dtype="bf16")
    bf16 = serve_step(LLAMA31_8B, H100, _cfg(dtype="bf16", **args), GENERIC)
    fp8 = serve_step(LLAMA31_8B, H100, _cfg(dtype="fp8", **args), GENERIC)
    # quantised checkpoints quantise the decoder's linear layers; the embedding and the LM head
    # stay 16-bit (ModelOpt hf_quant_config.json excludes lm_head)
    m = LLAMA31_8B
    ends = m.embedding_params() + m.head_params()
    body = m.params_total - ends
    assert bf16.mem_weights[0] == pytest.approx(2 * m.params_total)
    assert fp8.mem_weights[0] == pytest.approx(body + 2 * ends)
    # the memory-bound part of the step is the weight stream of the layers plus the LM head, each
    # GEMM class at its own measured HBM fraction (ops.gemm_params), plus fixed per-kernel floors
    # that do not shrink with the bytes: the ratio lies between the byte ratio and 1
    from roofplan.costmodel.ops import gemm_params

    hbm16, hbm8 = gemm_params(H100.efficiency, "bf16")[1], gemm_params(H100.efficiency, "fp8")[1]
    streamed = body + m.vocab * m.hidden  # the input embedding is a lookup
    ratio = (body / hbm8 + 2 * m.vocab * m.hidden / hbm16) / (2 * streamed / hbm16)
    got = fp8.decode_memory_s[0] / bf16.decode_memory_s[0]
    assert ratio - 0.01 <= got <= ratio + 0.15
    int4 = serve_step(LLAMA31_8B, H100, _cfg(dtype="int4", **args), GENERIC)
    ratio4 = (body * 0.5 / hbm8 + 2 * m.vocab * m.hidden / hbm16) / (2 * streamed / hbm16)
    got4 = int4.decode_memory_s[0] / bf16.decode_memory_s[0]
    assert ratio4 - 0.01 <= got4 <= ratio4 + 0.15 and got4 < got


def test_fp8_on_device_without_fp8_is_weight_only():
    # A100 has no FP8 units: fp8 weights halve the bytes but compute stays 16-bit, so a compute-bound
    # prefill is not faster than bf16 (within the few % of weight traffic)
    args = dict(tp=1, batch=8, isl=2048, osl=2)
    bf16 = serve_step(LLAMA31_8B, A100, _cfg(dtype="bf16", **args), GENERIC)
    fp8 = serve_step(LLAMA31_8B, A100, _cfg(dtype="fp8", **args), GENERIC)
    # (each kernel's time blends in its weight stream, ops.blend: half the weight bytes shave a little)
    assert fp8.prefill_compute_s[0] == pytest.approx(bf16.prefill_compute_s[0], rel=1e-3)
    assert fp8.prefill_compute_s[0] <= bf16.prefill_compute_s[0]
    h100_bf16 = serve_step(LLAMA31_8B, H100, _cfg(dtype="bf16", **args), GENERIC)
    h100_fp8 = serve_step(LLAMA31_8B, H100, _cfg(dtype="fp8", **args), GENERIC)
    assert h100_fp8.prefill_compute_s[0] < 0.6 * h100_bf16.prefill_compute_s[0]


# -- prefill ---------------------------------------------------------------------------------------
def test_ttft_superlinear_in_isl_at_long_context():
    isl = np.array([1024, 2048, 4096, 8192, 16384, 32768, 65536])
    a = serve_step(LLAMA31_8B, H100, _cfg(tp=1, batch=1, isl=isl, osl=1), GENERIC)
    per_token = a.ttft_s / isl
    assert np.all(np.diff(per_token[2:]) > 0)  # cost per prompt token rises with the context
    assert a.ttft_s[-1] / a.ttft_s[-2] > 2.2  # causal attention O(L^2) dominates at 64k


def test_prefill_is_compute_bound_at_long_prompts():
    a = serve_step(LLAMA31_8B, H100, _cfg(tp=1, batch=1, isl=8192, osl=1), GENERIC)
    flops = 2 * 8192 * (LLAMA31_8B.matmul_params_active)  # GEMM FLOPs alone
    assert a.ttft_s[0] >= flops / (H100.peak("bf16") * H100.efficiency.gemm_max)
    assert a.prefill_compute_s[0] > 0.8 * a.ttft_s[0]


# -- KV cache --------------------------------------------------------------------------------------
def test_kv_bytes_per_token_formulas():
    # GQA: 2 (K,V) x layers x kv_heads x head_dim x bytes
    assert LLAMA2_70B.kv_bytes_per_token("bf16") == 2 * 80 * 8 * 128 * 2 == 327680
    # per device: KV heads sharded up to kv_heads ranks, replicated beyond (tp 16 keeps 1 head per GPU)
    per_dev = kv_bytes_per_token_per_device(
        LLAMA2_70B, ServeConfigs(tp=[1, 4, 8, 16], pp=1, ep=1, dp=1, batch=1, isl=1, osl=1)
    )
    assert per_dev.tolist() == [327680, 81920, 40960, 40960]
    # pipeline stages hold their own layers
    assert float(kv_bytes_per_token_per_device(LLAMA2_70B, _cfg(tp=8, pp=2))[0]) == 20480
    # MLA: (kv_lora_rank + rope dim) per layer, replicated on every TP rank
    assert DSV3.kv_bytes_per_token("bf16") == 61 * (512 + 64) * 2
    assert float(kv_bytes_per_token_per_device(DSV3, _cfg(tp=8, ep=8))[0]) == 61 * 576 * 2
    # fp8 KV halves it; one prompt ships isl tokens of KV
    assert float(kv_transfer_bytes(LLAMA2_70B, 1000, "fp8")) == 1000 * 163840


def test_kv_cache_memory_and_max_batch_by_hand():
    engine = load_engine("generic")
    cfg = _cfg(tp=4, batch=16, isl=3000, osl=1000)
    a = serve_step(LLAMA2_70B, H100, cfg, engine)
    assert a.mem_kv_cache[0] == pytest.approx(16 * 4000 * 327680 / 4)
    # max_batch: KV for isl+osl per request fits next to the weights in 90% of HBM
    kv_seq = 4000 * 327680 / 4
    act_seq = a.mem_activations[0] / 16  # generic engine: workspace grows with the batch
    room = 0.9 * 80e9 - a.mem_weights[0]
    assert int(a.max_batch[0]) == int(room // (kv_seq + act_seq))
    assert max_batch(LLAMA2_70B, H100, cfg, engine)[0] == a.max_batch[0]
    # one more request than max_batch does not fit, max_batch does
    b = int(a.max_batch[0])
    fits = serve_step(
        LLAMA2_70B, H100, ServeConfigs(tp=4, pp=1, ep=1, dp=1, batch=[b, b + 1], isl=3000, osl=1000), engine
    ).fits
    assert fits.tolist() == [True, False]


def test_engine_batch_cap_and_runtime_reserve_shrink_max_batch():
    cfg = _cfg(tp=4, batch=16, isl=3000, osl=1000)
    engine = load_engine("generic").replace(memory_reserve_fraction=0.0)
    base = int(max_batch(LLAMA2_70B, H100, cfg, engine)[0])
    assert int(max_batch(LLAMA2_70B, H100, cfg, engine.replace(max_num_seqs=7))[0]) == 7
    assert int(max_batch(LLAMA2_70B, H100, cfg, engine.replace(max_num_seqs=10**6))[0]) == base
    # a runtime reserve of r bytes costs r / (bytes per request) requests (KV for 4000 tokens
    # of 1/4 of the 327,680 B per token, plus the workspace that grows with the batch)
    a = serve_step(LLAMA2_70B, H100, cfg, engine)
    per_req = 4000 * 327680 / 4 + a.mem_activations[0] / 16
    r = 20 * per_req
    fewer = int(max_batch(LLAMA2_70B, H100, cfg, engine.replace(runtime_reserve_bytes=r))[0])
    assert base - fewer in (19, 20, 21)


def test_weights_that_do_not_fit_give_zero_max_batch():
    a = serve_step(LLAMA2_70B, H100, _cfg(tp=1, batch=1, isl=128, osl=16), GENERIC)
    assert not a.fits[0] and a.max_batch[0] == 0


# -- monotonicity ------------------------------------------------------------------------------------
def _grid():
    return ServeConfigs(
        tp=[1, 2, 4, 8, 8, 8],
        pp=[1, 1, 1, 1, 2, 1],
        ep=1,
        dp=1,
        batch=[1, 8, 64, 256, 32, 1],
        isl=[128, 2048, 512, 1024, 8192, 32768],
        osl=[128, 256, 64, 512, 16, 8],
    )


@pytest.mark.parametrize("engine", ["generic", "vllm", "trtllm"])
def test_more_bandwidth_never_slower(engine):
    engine = load_engine(engine)
    base = serve_step(LLAMA31_8B, H100, _grid(), engine)
    fast_hbm = dataclasses.replace(H100, tiers=(MemoryTier("hbm", 80e9, 4.8e12),))
    fast_link = dataclasses.replace(H100, intra=Fabric("nvlink5", "switch", 900e9, 3e-6))
    for hw in (fast_hbm, fast_link):
        a = serve_step(LLAMA31_8B, hw, _grid(), engine)
        assert np.all(a.ttft_s <= base.ttft_s + 1e-12)
        assert np.all(a.tpot_s <= base.tpot_s + 1e-12)
    assert np.all(serve_step(LLAMA31_8B, fast_hbm, _grid(), engine).tpot_s < base.tpot_s)


def test_decode_step_grows_with_batch_and_context():
    cfg = _cfg(tp=2)
    eng = load_engine("vllm")
    t_b = step_time(LLAMA31_8B, H100, eng, cfg, 0, 0, np.array([1, 8, 64, 256]), 2048)
    t_c = step_time(LLAMA31_8B, H100, eng, cfg, 0, 0, 32, np.array([128, 1024, 8192, 65536]))
    assert np.all(np.diff(t_b) > 0) and np.all(np.diff(t_c) > 0)


def test_mixed_step_costs_at_least_each_part():
    """A Sarathi mixed batch is never cheaper than its prefill chunk or its decodes alone, and
    cheaper than running them as two iterations (weights are read once)."""
    eng = load_engine("vllm")
    cfg = _cfg(tp=2)
    both = step_time(LLAMA31_8B, H100, eng, cfg, 512, 1500, 64, 3000)
    pre = step_time(LLAMA31_8B, H100, eng, cfg, 512, 1500, 0, 0)
    dec = step_time(LLAMA31_8B, H100, eng, cfg, 0, 0, 64, 3000)
    assert both >= max(pre, dec)
    assert both < pre + dec


def test_vectorised_matches_single():
    grid = _grid()
    a = serve_step(LLAMA31_8B, H100, grid, load_engine("vllm"))
    for i in range(len(grid)):
        one = ServeConfigs.single(
            tp=int(grid.tp[i]),
            pp=int(grid.pp[i]),
            batch=int(grid.batch[i]),
            isl=int(grid.isl[i]),
            osl=int(grid.osl[i]),
        )
        b = serve_step(LLAMA31_8B, H100, one, load_engine("vllm"))
        assert b.tpot_s[0] == pytest.approx(a.tpot_s[i], rel=1e-12)
        assert b.ttft_s[0] == pytest.approx(a.ttft_s[i], rel=1e-12)


def test_latency_and_throughput_identities():
    a = serve_step(LLAMA2_70B, H100, _cfg(tp=4, pp=2, batch=24, isl=1000, osl=300), load_engine("sglang"))
    assert a.latency_s[0] == pytest.approx(a.ttft_s[0] + 299 * a.tpot_s[0])
    assert a.output_tokens_per_s[0] == pytest.approx(24 * 300 / a.latency_s[0])
    assert a.output_tokens_per_s_per_gpu[0] == pytest.approx(a.output_tokens_per_s[0] / 8)
    parts = a.decode_compute_s + a.decode_memory_s + a.decode_comm_s + a.decode_overhead_s
    assert parts[0] == pytest.approx(a.tpot_s[0])


# -- fixed costs ---------------------------------------------------------------------------------------
def test_cuda_graphs_and_custom_allreduce_help_small_batches_at_high_tp():
    cfg = _cfg(tp=8, batch=1, isl=256, osl=64)
    eager = load_engine("vllm").replace(cuda_graphs=False)
    graphs = load_engine("vllm")
    nccl = graphs.replace(custom_allreduce=False)
    t_eager = serve_step(LLAMA2_70B, H100, cfg, eager).tpot_s[0]
    t_graph = serve_step(LLAMA2_70B, H100, cfg, graphs).tpot_s[0]
    t_nccl = serve_step(LLAMA2_70B, H100, cfg, nccl).tpot_s[0]
    assert t_eager > t_graph
    assert t_nccl > t_graph
    # eager: the host dispatches every kernel; the step is at least that long (max(GPU, host))
    assert t_eager >= 80 * eager.kernels_per_layer * eager.host_op_s


# -- MoE / MLA / dataflow ------------------------------------------------------------------------------
def test_moe_decode_reads_only_touched_experts():
    eng = load_engine("generic")
    one = serve_step(MIXTRAL, H100, _cfg(tp=1, batch=1, isl=16, osl=2, dtype="fp8"), eng)
    many = serve_step(MIXTRAL, H100, _cfg(tp=1, batch=256, isl=16, osl=2, dtype="fp8"), eng)
    from roofplan.costmodel.ops import gemm_params

    bw = H100.hbm_Bps * gemm_params(H100.efficiency, "fp8")[1]
    # batch 1: top-2 of 8 experts per layer -> about the active parameters (12.9B) stream, not 46.7B;
    # the step also pays per-kernel floors, so it lies between the active and half of all weights
    active_bytes = MIXTRAL.matmul_params_active - MIXTRAL.layers * MIXTRAL.hidden * 8  # router is tiny
    step = (one.decode_memory_s[0] + one.decode_compute_s[0]) * bw
    assert active_bytes <= step <= MIXTRAL.params_total / 2
    # a large batch touches every expert: E(1-(1-k/E)^T) -> E
    assert many.decode_memory_s[0] + many.decode_compute_s[0] > 3 * one.decode_memory_s[0]


def test_expert_parallel_and_mla_config():
    a = serve_step(
        DSV3, H100, _cfg(tp=8, ep=8, batch=32, isl=1024, osl=128, dtype="fp8"), load_engine("sglang")
    )
    # 671B fp8 over 8 GPUs: ~84 GB per GPU does not fit an 80 GB H100
    assert a.mem_weights[0] == pytest.approx(DSV3.params_total / 8, rel=0.02)
    assert not a.fits[0]
    h200 = dataclasses.replace(H100, tiers=(MemoryTier("hbm", 141e9, 4.8e12),))
    b = serve_step(
        DSV3, h200, _cfg(tp=8, ep=8, batch=32, isl=1024, osl=128, dtype="fp8"), load_engine("sglang")
    )
    assert b.fits[0] and b.decode_comm_s[0] > 0


def test_ddr_tier_holds_weights_that_do_not_fit():
    """SN40L-style: weights beyond HBM stream from DDR at its bandwidth, so decode slows down but fits."""
    sn = dataclasses.replace(
        H100,
        id="sn-test",
        peak_flops={"bf16": 638e12},
        dataflow=True,
        tiers=(
            MemoryTier("sram", 0.52e9, 100e12),
            MemoryTier("hbm", 64 * 2**30, 1.6e12),
            MemoryTier("ddr", 1.5 * 2**40, 0.1e12),
        ),
    )
    big = dataclasses.replace(sn, tiers=(MemoryTier("hbm", 1e12, 1.6e12),))
    cfg = _cfg(tp=1, batch=1, isl=128, osl=16)
    spill = serve_step(LLAMA2_70B, sn, cfg, GENERIC)
    fits = serve_step(LLAMA2_70B, big, cfg, GENERIC)
    assert spill.fits[0] and spill.max_batch[0] > 0
    # by hand: HBM part at 1.6 TB/s, the rest at 0.1 TB/s (same efficiency)
    est = estimate_serving(LLAMA2_70B, sn, tp=1, batch=1, isl=128, osl=16)
    ddr_bytes = est.weights_in_ddr_bytes
    assert ddr_bytes > 0
    extra = ddr_bytes / (0.1e12 * 0.9) - ddr_bytes / (1.6e12 * 0.9)
    assert spill.tpot_s[0] - fits.tpot_s[0] == pytest.approx(extra, rel=0.02)


# -- validation of inputs ------------------------------------------------------------------------------
def test_check_serve_config_reasons():
    cfg = ServeConfigs(tp=[1, 3, 5, 8], pp=1, ep=1, dp=1, batch=1, isl=1, osl=1)
    assert check_serve_config(QWEN3_14B, cfg).tolist() == [0, 1, 2, 0]  # 5 divides 40 heads, not 8 kv heads
    assert check_serve_config(LLAMA31_8B, ServeConfigs.single(dp=2)).tolist() == [4]
    assert check_serve_config(MIXTRAL, ServeConfigs.single(tp=2, ep=3)).tolist() == [3]


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(tp=3), "tp"),
        (dict(tp=5), "tp"),
        (dict(dtype="fp6"), "dtype"),
        (dict(kv_dtype="int4"), "kv_dtype"),
        (dict(engine="tgi"), "engine"),
        (dict(batch=0), "batch"),
        (dict(ep=2), "ep"),
    ],
)
def test_estimate_serving_rejects_bad_input(kw, field):
    args = dict(tp=1, batch=4, isl=128, osl=16) | kw
    with pytest.raises(InputError) as e:
        estimate_serving(QWEN3_14B, H100, **args)
    assert e.value.field == field


def test_int4_on_device_without_int4_units_is_fine():
    est = estimate_serving(LLAMA31_8B, A100, batch=1, isl=128, osl=16, dtype="int4")
    assert est.to_json()["inputs"]["compute_dtype"] == "bf16"


def test_estimate_json_document_keys():
    doc = estimate_serving(LLAMA31_8B, H100, tp=2, batch=8, isl=512, osl=64, engine="vllm").to_json()
    assert doc["schema"] == "roofplan.estimate.serve/v1"
    assert set(doc) >= SERVE_ESTIMATE_KEYS
    assert set(doc["memory_gib_per_gpu"]) >= {"weights", "kv_cache", "activations", "total", "capacity"}
    assert set(doc["breakdown_ms"]) == {"prefill", "decode_step"}
    assert doc["latency_ms"] == pytest.approx(doc["ttft_ms"] + 63 * doc["tpot_ms"])
    assert sum(doc["breakdown_ms"]["decode_step"].values()) == pytest.approx(doc["tpot_ms"])


def test_a_padded_decode_batch_costs_its_rows_but_reads_only_the_real_kv():
    """Padding B decode rows up to a CUDA-graph size G adds G - B rows to every token-wise op but no
    KV: the step lies between the unpadded one at B and a real batch of G, and G = B changes nothing."""
    from roofplan.costmodel.serve import ServeConfigs, serve_step
    from roofplan.engines.catalog import load_engine
    from roofplan.hardware.catalog import load_hardware
    from roofplan.models.loader import load_model

    model, hw, engine = load_model("llama-3.1-70b"), load_hardware("h100-sxm"), load_engine("trtllm")

    def cfg(b):
        return ServeConfigs.single(
            tp=8, batch=b, isl=128, osl=2048, dtype="fp8", kv_dtype="fp8", engine="trtllm"
        )

    plain = float(serve_step(model, hw, cfg(434), engine).tpot_s[0])
    same = float(serve_step(model, hw, cfg(434), engine, decode_batch=434).tpot_s[0])
    padded = float(serve_step(model, hw, cfg(434), engine, decode_batch=512).tpot_s[0])
    real = float(serve_step(model, hw, cfg(512), engine).tpot_s[0])
    assert same == plain
    assert plain < padded < real


def test_async_scheduling_hides_host_step_work_behind_the_gpu():
    """Asynchronous scheduling (vLLM >= 0.14's default) overlaps the per-step host work with the
    GPU: step = max(GPU, host) instead of GPU + host. With a host time below the GPU's step the
    synchronous step is exactly step_overhead_s longer; with a host time above it the asynchronous
    step is the host time itself."""
    cfg = _cfg(tp=1)
    eng = load_engine("vllm")
    sync, asyn = eng.replace(async_scheduling=False), eng.replace(async_scheduling=True)
    batch = np.array([1, 16, 128])
    t_sync = step_time(LLAMA31_8B, H100, sync, cfg, 0, 0, batch, 2048)
    t_async = step_time(LLAMA31_8B, H100, asyn, cfg, 0, 0, batch, 2048)
    assert np.all(t_async > eng.step_overhead_s)  # a decode of 16 GB of weights takes ~5 ms
    np.testing.assert_allclose(t_sync - t_async, eng.step_overhead_s, rtol=1e-9)
    slow_host = 0.5  # seconds of host work per step, far above the GPU's ~5 ms
    t_host = step_time(LLAMA31_8B, H100, asyn.replace(step_overhead_s=slow_host), cfg, 0, 0, batch, 2048)
    np.testing.assert_allclose(t_host, slow_host, rtol=1e-9)


def test_per_request_host_time_adds_per_running_request():
    """``host_seq_s`` (vLLM V0's per-sequence host work) adds that many seconds per request an
    iteration runs, decoding or prefilling, in series with the GPU under synchronous scheduling."""
    cfg = _cfg(tp=1)
    eng = load_engine("vllm").replace(async_scheduling=False)
    per = 7e-5
    batch = np.array([1, 16, 64])
    base = step_time(LLAMA31_8B, H100, eng, cfg, 0, 0, batch, 2048)
    more = step_time(LLAMA31_8B, H100, eng.replace(host_seq_s=per), cfg, 0, 0, batch, 2048)
    np.testing.assert_allclose(more - base, per * batch, rtol=1e-9)
    # one prompt chunk beside the decodes is one more request in the iteration
    base = step_time(LLAMA31_8B, H100, eng, cfg, 512, 256.5, batch, 2048)
    more = step_time(LLAMA31_8B, H100, eng.replace(host_seq_s=per), cfg, 512, 256.5, batch, 2048)
    np.testing.assert_allclose(more - base, per * (batch + 1), rtol=1e-9)


def test_block_scaled_fp8_weights_and_their_activation_quantisation():
    """``fp8_block`` (DeepSeek-V3 / Qwen FP8 checkpoints): one fp32 scale per 128 x 128 weight
    block, so the weights are fp8's times 1 + 4/16384; each GEMM's 1 x 128 activation groups are
    quantised in a kernel of their own, so a decode step is never faster than per-tensor fp8's
    (whose static scales fuse the cast into the producing kernel). On a device without FP8 tensor
    cores (A100) both run as 8-bit weights on the 16-bit units: the steps differ only by the scales."""
    eng = load_engine("vllm")
    kw = dict(tp=1, batch=1, isl=512, osl=64)
    per_tensor = serve_step(LLAMA31_8B, H100, _cfg(dtype="fp8", **kw), eng)
    block = serve_step(LLAMA31_8B, H100, _cfg(dtype="fp8_block", **kw), eng)
    assert block.mem_weights[0] == pytest.approx(per_tensor.mem_weights[0] * (1 + 4 / 16384), rel=2e-3)
    assert block.tpot_s[0] > per_tensor.tpot_s[0]
    a_pt = serve_step(LLAMA31_8B, A100, _cfg(dtype="fp8", **kw), eng)
    a_bl = serve_step(LLAMA31_8B, A100, _cfg(dtype="fp8_block", **kw), eng)
    assert a_bl.tpot_s[0] == pytest.approx(a_pt.tpot_s[0], rel=1e-3)
