"""The training op table: named ops with hand-derived FLOPs/bytes, and the step as their sum."""

import numpy as np

from roofplan.costmodel.train import TrainConfigs, train_step
from roofplan.costmodel.train_ops import layer_ops, stage_compute, step_lanes
from roofplan.hardware.catalog import load_hardware
from roofplan.models.spec import ModelSpec

LLAMA = ModelSpec(name="llama-test", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336,
                  vocab=128256, gated_mlp=True, tied_embeddings=False)
H100 = load_hardware("h100-sxm")


def _cfg(**kw):
    base = {"tp": 2, "pp": 1, "dp": 4, "cp": 1, "ep": 1, "vpp": 1, "micro_batch": 1, "global_batch": 32,
            "seq_len": 4096, "recompute": 0, "recompute_layers": 0, "sequence_parallel": True, "zero": 1, "offload": 0}
    base.update(kw)
    return TrainConfigs(**{k: np.atleast_1d(v) for k, v in base.items()})


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
    layer = layer_activation_bytes(L.s, tokens=L.tokens, seq_len=L.seq, tp=L.tp, sp=L.sp, scores=False,
                                   dropout=False, moe_imbalance=L.imb)
    assert np.allclose(base.mem_activations - off.mem_activations, 3 * layer)
    # a slow host link: 1 GB/s makes every copy exposed beyond its neighbour's compute
    slow = dataclasses.replace(H100, tiers=tuple(
        MemoryTier("host", t.capacity_bytes, 1e9, t.shared_by) if t.name == "host" else t for t in H100.tiers))
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
