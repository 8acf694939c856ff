"""The training op table: named ops with hand-derived FLOPs/bytes, and the step as their sum."""

import numpy as np

from roofplan.costmodel.train import TrainConfigs, train_step
from roofplan.costmodel.train_ops import layer_ops, stage_compute, step_lanes
from roofplan.hardware.catalog import load_hardware
from tests.specs import LLAMA_8B

LLAMA = LLAMA_8B
H100 = load_hardware("h100-sxm")


def _cfg(**kw):
    scalars = {k: kw.pop(k) for k in list(kw) if k in _SCALARS}
    base = {
        "tp": 2,
        "pp": 1,
        "dp": 4,
        "cp": 1,
        "ep": 1,
        "vpp": 1,
        "micro_batch": 1,
        "global_batch": 32,
        "seq_len": 4096,
        "recompute": 0,
        "recompute_layers": 0,
        "sequence_parallel": True,
        "zero": 1,
        "offload": 0,
    }
    base.update(kw)
    return TrainConfigs(**{k: np.atleast_1d(v) for k, v in base.items()}, **scalars)


_SCALARS = (
    "dtype",
    "fp8_recipe",
    "split_accounts_ends",
    "pipeline_engine",
    "cross_entropy",
    "overlap_grad_reduce",
    "overlap_param_gather",
    "grad_reduce_in_fp32",
    "tp_comm_overlap",
)


def test_op_table_flops_and_bytes_by_hand():
    """QKV of Llama-3-8B shapes at TP2: tokens 4096, n = (32 + 2 x 8) x 128 / 2 = 3072, k = 4096;
    FLOPs 2 m n k, bytes (m k + m n) x 2 B activations + k n x 2 B weights."""
    ops = layer_ops(step_lanes(LLAMA, H100, _cfg()))
    rows = {name: (t, fl, by) for name, t, fl, by in ops.table()}
    m, n, k = 4096.0, 3072.0, 4096.0
    assert np.allclose(rows["qkv"][1], 2 * m * n * k)
    assert np.allclose(rows["qkv"][2], 2 * (m * k + m * n) + 2 * k * n)
    # gated MLP up: n = 2 x 14336 / 2
    assert np.allclose(rows["mlp_up"][1], 2 * m * 14336.0 * k)
    assert {"qkv", "o_proj", "mlp_up", "mlp_down", "elementwise_dense"} <= set(rows)
    # every named op takes positive time
    assert all(np.all(np.asarray(t) > 0) for t, _, _ in rows.values())


def test_step_compute_is_the_sum_of_the_table():
    """t_compute = m x (forward + backward + ends) and the forward is layers x (GEMMs + attention core
    + memory-bound ops), with no pipeline, no recompute and BF16 (no casts)."""
    cfg = _cfg()
    L = step_lanes(LLAMA, H100, cfg)
    ops = layer_ops(L)
    sc = stage_compute(L, ops)
    layer_f = ops.qkv + ops.o_proj + ops.mlp_up + ops.mlp_down + ops.attn_f + ops.elementwise_dense
    assert np.allclose(sc.fwd, 32 * layer_f)
    out = train_step(LLAMA, H100, cfg)
    assert np.allclose(out.t_compute, L.micro * (sc.fwd + sc.bwd + sc.ends))
    assert np.allclose(L.micro, 32 / 4)


def test_activation_offload_memory_and_time_by_hand():
    """Offloading N layers' activations frees N - 1 layers' saved tensors (one is on the device
    being copied) and costs, per micro-batch and layer, what each copy needs beyond the next
    layer's forward (out) or backward (back) at the host link's rate."""
    import dataclasses

    from roofplan.costmodel.train_memory import layer_activation_bytes
    from roofplan.hardware.spec import MemoryTier

    cfg0 = _cfg(tp=1, dp=8, global_batch=16)
    cfg4 = _cfg(tp=1, dp=8, global_batch=16, act_offload_layers=4)
    base, off = train_step(LLAMA, H100, cfg0), train_step(LLAMA, H100, cfg4)
    L = step_lanes(LLAMA, H100, cfg4)
    layer = layer_activation_bytes(
        L.s,
        tokens=L.tokens,
        seq_len=L.seq,
        tp=L.tp,
        sp=L.sp,
        scores=False,
        dropout=False,
        moe_imbalance=L.imb,
    )
    assert np.allclose(base.mem_activations - off.mem_activations, 3 * layer)
    # a slow host link: 1 GB/s makes every copy exposed beyond its neighbour's compute
    slow = dataclasses.replace(
        H100,
        tiers=tuple(
            MemoryTier("host", t.capacity_bytes, 1e9, t.shared_by) if t.name == "host" else t
            for t in H100.tiers
        ),
    )
    sc = stage_compute(L, layer_ops(L))
    copy = layer / (1e9 * H100.efficiency.hbm)
    expected = L.micro * 4 * (2 * copy - sc.fwd / 32 - sc.bwd / 32)
    extra = train_step(LLAMA, slow, cfg4).t_offload - train_step(LLAMA, slow, cfg0).t_offload
    assert np.allclose(extra, expected)
    assert np.all(off.step_time_s >= base.step_time_s)


def test_activation_offload_needs_no_pipeline_and_no_recompute():
    """Megatron-Core refuses activation offload with pp > 1, with recompute, or of every layer."""
    import pytest

    from roofplan.costmodel.train import estimate_training
    from roofplan.errors import InputError

    kw = {"global_batch": 8, "micro_batch": 1, "seq_len": 4096}
    estimate_training(LLAMA, H100, dp=8, act_offload_layers=4, **kw)
    for bad in ({"pp": 2, "dp": 4}, {"dp": 8, "recompute": "full"}):
        with pytest.raises(InputError, match="act_offload_layers"):
            estimate_training(LLAMA, H100, act_offload_layers=4, **{**kw, **bad})
    with pytest.raises(InputError, match="act_offload_layers"):
        estimate_training(LLAMA, H100, dp=8, act_offload_layers=32, **kw)


def test_fp8_output_gradient_casts_run_on_the_sequence_parallel_shard_by_hand():
    """Delayed scaling, TP4: the output gradients of proj and FC2 (h wide each) are cast on this
    rank's 1/tp sequence shard before the all-gather: 4 B (cast + transpose) and 2 B (the saved
    input's transpose) per element less on 2h (1 - 1/tp) per token; the QKV/FC1 input casts are
    inside the norm with or without SP, so the forward casts do not change."""
    kw = {"tp": 4, "dp": 2, "global_batch": 2, "dtype": "fp8", "fp8_recipe": "delayed"}
    on, off = (layer_ops(step_lanes(LLAMA, H100, _cfg(sequence_parallel=sp, **kw))) for sp in (True, False))
    t, h = 4096.0, 4096.0
    saved = t * 6.0 * 2 * h * (1 - 1 / 4) / (H100.hbm_Bps * H100.efficiency.hbm)
    assert np.allclose(off.cast_b_dense - on.cast_b_dense, saved)
    assert np.allclose(off.cast_f_dense, on.cast_f_dense)


def test_split_accounting_takes_one_layer_off_the_end_stages():
    """Megatron's account-for-embedding/loss split: the last stage holds one layer fewer, so the
    LM head adds only what it exceeds one layer's forward + backward by (never below zero)."""
    kw = {"tp": 2, "pp": 4, "dp": 1, "global_batch": 8}
    base = stage_compute(*_lanes_ops(_cfg(**kw)))
    split = stage_compute(*_lanes_ops(_cfg(split_accounts_ends=True, **kw)))
    layer = (base.fwd + base.bwd) / 8.0  # 32 layers over 4 stages
    assert np.allclose(split.ends, np.maximum(base.ends - layer, 0.0))
    assert np.allclose(split.fwd, base.fwd)


def _lanes_ops(cfg):
    L = step_lanes(LLAMA, H100, cfg)
    return L, layer_ops(L)


def test_deepspeed_pipeline_reduces_after_the_flush():
    """DeepSpeed's PipelineEngine: the DP traffic equals Megatron's with every overlap off, and
    interleaving is refused."""
    from roofplan.costmodel.train import check_train_config

    kw = {"tp": 2, "pp": 4, "dp": 4, "global_batch": 64, "zero": 1}
    ds = train_step(LLAMA, H100, _cfg(pipeline_engine="deepspeed", **kw))
    plain = train_step(LLAMA, H100, _cfg(overlap_grad_reduce=False, overlap_param_gather=False, **kw))
    overlapped = train_step(LLAMA, H100, _cfg(**kw))
    assert np.allclose(ds.t_dp_comm, plain.t_dp_comm)
    assert np.all(overlapped.t_dp_comm < ds.t_dp_comm)
    assert int(check_train_config(LLAMA, _cfg(pipeline_engine="deepspeed", vpp=2, **kw))[0]) == 3


def test_interleaved_chunks_sync_on_their_own():
    """With v model chunks, (v-1)/v of the DP traffic hides behind the other chunks' passes: with
    every overlap off the step carries all of it; on, an interleaved pipeline exposes at most the
    last chunk's 1/v, and never more than the same layout without interleaving."""
    kw = {"tp": 4, "pp": 4, "dp": 8, "global_batch": 64, "zero": 1, "micro_batch": 2}
    full = train_step(LLAMA, H100, _cfg(vpp=4, overlap_grad_reduce=False, overlap_param_gather=False, **kw))
    v4 = train_step(LLAMA, H100, _cfg(vpp=4, **kw))
    v1 = train_step(LLAMA, H100, _cfg(vpp=1, **kw))
    assert np.all(v4.t_dp_comm <= full.t_dp_comm / 4 + 1e-12)
    assert np.all(v4.t_dp_comm <= v1.t_dp_comm)


def test_bf16_gradient_reduction_halves_the_gradient_buffer():
    """grad_reduce_in_fp32 off: the gradient buffer takes the bf16 parameter dtype (2 B, not 4)."""
    a = train_step(LLAMA, H100, _cfg())
    b = train_step(LLAMA, H100, _cfg(grad_reduce_in_fp32=False))
    assert np.allclose(b.mem_gradients * 2, a.mem_gradients)
    assert np.all(b.t_dp_comm <= a.t_dp_comm)


def test_te_fused_cross_entropy_saves_the_hand_counted_logit_traffic():
    """LM head of Llama-3-8B at TP2, 4096 tokens: 4096 x 128256 / 2 logits. Megatron's unfused
    vocab-parallel cross-entropy moves 7 x 4 B per logit in 6 kernels, Transformer Engine's fused
    one 3 x 2 B in 3 (online-softmax read, gradient read + in-place write); the GEMMs are the same,
    so the heads differ by 22 B per logit at the HBM rate plus three launches."""
    unfused = layer_ops(step_lanes(LLAMA, H100, _cfg())).head
    fused = layer_ops(step_lanes(LLAMA, H100, _cfg(cross_entropy="te"))).head
    logits = 4096.0 * 128256 / 2
    e = H100.efficiency
    by_hand = 22.0 * logits / (H100.hbm_Bps * e.hbm) + 3.0 * e.kernel_launch_s
    assert np.allclose(unfused - fused, by_hand, rtol=1e-9)


def test_context_parallel_attention_runs_one_kernel_per_ring_step_by_hand():
    """CP2 at 8192 tokens, TP2 (16 query heads, 4 KV heads per rank): this rank's 4096 queries do
    the same score work as one kernel against all 8192 keys, but as two kernels over 4096-long key
    blocks: the causal diagonal step (half of 4096 x 4096) and one unmasked step of 4096 queries x
    2048 keys (the pacing rank's half block). Compute-bound, each kernel's time is its FLOPs over
    the rate times (kv + attn_half_len) / kv, so with the floors and the output merge taken off the
    ring / single-kernel ratio is [0.5 (4096 + a)/4096 + 0.5 (2048 + a)/2048] / ((8192 + a)/8192)."""
    from roofplan.costmodel.ops import prefill_attention_time
    from roofplan.costmodel.train_ops import CP_MERGE_BYTES

    L = step_lanes(LLAMA, H100, _cfg(cp=2, seq_len=8192, global_batch=16))
    ops = layer_ops(L)
    e = L.e_tc
    single = prefill_attention_time(
        1, 4096, 8192, 16, 4, 128, H100, eff=e, v_head_dim=128, causal_fraction=0.5, kv_cache=False
    )
    merge = L.mem(CP_MERGE_BYTES * 2 * 4096 / 2 * 4096, launches=2.0)
    a = e.attn_half_len
    by_hand = (0.5 * (4096 + a) / 4096 + 0.5 * (2048 + a) / 2048) / ((8192 + a) / 8192)
    ring = (ops.attn_f - merge - 2 * e.attn_floor_s) / (single - e.attn_floor_s)
    assert np.allclose(ring, by_hand, rtol=1e-3)
    assert np.all(ring > 1.0)  # shorter key rows never run faster
    # without context parallelism the attention is the one causal kernel over the whole sequence
    ops1 = layer_ops(step_lanes(LLAMA, H100, _cfg(seq_len=8192, global_batch=16)))
    whole = prefill_attention_time(
        1, 8192, 8192, 16, 4, 128, H100, eff=e, v_head_dim=128, causal_fraction=0.5, kv_cache=False
    )
    assert np.allclose(ops1.attn_f, whole)


def test_hybrid_stack_prices_its_linear_layers_with_the_serving_kernels():
    """Qwen3.5-27B (48 Gated DeltaNet + 16 attention layers): the mixer core of the mean layer is
    16/64 of the attention core plus 48/64 of the linear layers' prefill kernels over the
    micro-batch (costmodel.linear_mixer, the op serving prices), backward 2.5x that forward."""
    import dataclasses

    from roofplan.costmodel import linear_mixer
    from roofplan.costmodel.train_ops import LINEAR_MIXER_BWD_RATIO
    from roofplan.models import load_model

    model = load_model("qwen3.5-27b")
    plain = dataclasses.replace(model, linear=dataclasses.replace(model.linear, heads=0))
    cfg = _cfg(tp=2, micro_batch=2, seq_len=8192)
    hyb, att = (layer_ops(step_lanes(m, H100, cfg)) for m in (model, plain))
    lin = model.linear
    share = lin.layers / model.layers
    L = step_lanes(model, H100, cfg)
    fwd = linear_mixer.prefill_time(
        2, 8192, lin.heads / 2, lin.key_dim, lin.value_dim, lin.conv_dim / 2, lin.conv_kernel, H100, L.e_tc
    )
    assert share == 48 / 64
    np.testing.assert_allclose(hyb.attn_f, (1 - share) * att.attn_f + share * fwd, rtol=1e-12)
    np.testing.assert_allclose(
        hyb.attn_b, (1 - share) * att.attn_b + share * LINEAR_MIXER_BWD_RATIO * fwd, rtol=1e-12
    )
    # at 8192 tokens a linear layer's kernels cost less than a softmax attention core
    assert float(fwd) < float(np.ravel(att.attn_f)[0])


def test_windowed_layers_price_the_scores_their_window_leaves():
    """gpt-oss (18 of 36 layers a 128-token sliding window): the mean layer's core is half the
    full-attention core plus half a kernel over 128-key rows computing s w - w^2/2 scores; a window
    at least the sequence (Llama 4 Scout's 8192-token chunks at 4096) is the causal kernel."""
    import dataclasses

    from roofplan.costmodel.train_ops import flash_kernel, window_share_of_scores
    from roofplan.models import load_model

    s, w = 8192.0, 128.0
    assert window_share_of_scores(w, "sliding", s) == (s * w - w * w / 2) / (s * s)
    assert window_share_of_scores(2048, "chunked", s) == 2048 / (2 * s)
    assert window_share_of_scores(8192, "chunked", 4096.0) == 0.5  # causal
    model = load_model("gpt-oss-120b")
    plain = dataclasses.replace(model, window=None)
    cfg = _cfg(tp=8, dp=1, ep=1, seq_len=8192)
    L = step_lanes(model, H100, cfg)
    win, full = (layer_ops(step_lanes(m, H100, cfg)) for m in (model, plain))
    share = model.window.layers / model.layers
    wf, wb = flash_kernel(L, s, w, window_share_of_scores(w, "sliding", s) * s / w)
    np.testing.assert_allclose(win.attn_f, (1 - share) * full.attn_f + share * wf, rtol=1e-12)
    np.testing.assert_allclose(win.attn_b, (1 - share) * full.attn_b + share * wb, rtol=1e-12)
    # 3 % of the scores, but 128-key rows sit low on the length curve: a quarter of the time
    assert float(np.ravel(wf)[0]) < 0.3 * float(np.ravel(full.attn_f)[0])
    scout = load_model("llama-4-scout")
    short = _cfg(tp=8, dp=1, ep=1, seq_len=4096)
    a = layer_ops(step_lanes(scout, H100, short))
    b = layer_ops(step_lanes(dataclasses.replace(scout, window=None), H100, short))
    np.testing.assert_allclose(a.attn_f, b.attn_f, rtol=1e-12)
