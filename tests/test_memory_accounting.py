"""Pipeline activation memory against Megatron's accounting, derived by hand.

Llama-3.1-405B (h 16384, 128 heads, 8 KV heads of 128, SwiGLU ffn 53248, no dropout) at TP8 with
sequence parallelism, bf16, FlashAttention, 8192 tokens per microbatch. Korthikanti et al. 2022
Table 2 term by term, bytes per token per layer:

* LayerNorm inputs and QKV/MLP GEMM inputs, SP-sharded: (2 + 2 + 2 + 2) x 16384 / 8 = 16384
* Q, K, V: 2 x (16384 + 1024 + 1024) / 8 = 4608; O-projection input: 2 x 16384 / 8 = 4096
* MLP gate and up outputs: 2 x 2 x 53248 / 8 = 26624; down-projection input: 2 x 53248 / 8 = 13312
* FlashAttention's fp32 log-sum-exp: 4 x 128 / 8 = 64

65,088 bytes. Meta's layout TP8 PP16 DP128 (Dubey et al. 2024 Table 4) splits 126 layers as
7 + 14 x 8 + 7. Under 1F1B stage i holds min(16 - i, m) microbatches: stage 0 holds 16 x 7 = 112
layers' worth (plus the token ids), stage 1 holds 15 x 8 = 120, which is the peak.
"""

from __future__ import annotations

import dataclasses

import pytest

from roofplan import estimate_training  # ids resolved at the door

GiB = 2**30
PER_TOKEN_LAYER = 16384 + 4608 + 4096 + 26624 + 13312 + 64
META = dict(tp=8, pp=16, dp=128, global_batch=2048, micro_batch=1, seq_len=8192)


def _mem(**kw):
    est = estimate_training("llama-3.1-405b", "h100-sxm", **(META | kw))
    return est.to_json()["memory_gib_per_gpu"], est


def test_uneven_1f1b_peak_is_the_second_stage():
    mem, _ = _mem(zero=1)
    assert mem["activations"] * GiB == pytest.approx(120 * 8192 * PER_TOKEN_LAYER, rel=1e-9)


def test_even_1f1b_peak_is_the_first_stage_holding_every_layer():
    """128 layers on 16 stages (an even split): the first stage holds 16 microbatches of 8 layers,
    i.e. every layer once (Megatron's ``theoretical_memory_usage``), plus 16 x 8192 token ids."""
    from roofplan.costmodel.shapes import model_shapes
    from roofplan.costmodel.train_memory import activation_bytes
    from roofplan.models.loader import load_model

    s = model_shapes(dataclasses.replace(load_model("llama-3.1-405b"), layers=128))
    acts = activation_bytes(
        s,
        micro_batch=1,
        seq_len=8192,
        tp=8,
        pp=16,
        cp=1,
        vpp=1,
        microbatches=16,
        sp=True,
        recompute=0,
        recompute_layers=0,
        flash=True,
        dropout=False,
        layers_per_stage=8,
    )
    assert float(acts) == pytest.approx(16 * (8 * 8192 * PER_TOKEN_LAYER + 8192 * 8), rel=1e-9)


def test_fewer_microbatches_than_stages_hold_fewer_in_flight():
    """With m = 4 microbatches (global batch 512 over DP 128) no stage holds more than 4: the
    peak is stage 1's 4 x 8 layers (stage 0: 4 x 7)."""
    mem, _ = _mem(zero=1, global_batch=512)
    assert mem["activations"] * GiB == pytest.approx(4 * 8 * 8192 * PER_TOKEN_LAYER, rel=1e-9)


def test_meta_layout_fits_with_sharded_gradients():
    """Meta trained this layout with FSDP sharding gradients (Dubey et al. 2024 §3.3.1): ZeRO-2
    divides the fp32 gradients by the 128 data-parallel ranks and the layout fits 80 GiB; with
    Megatron's unsharded fp32 main_grad (ZeRO-1) it does not."""
    z1, _ = _mem(zero=1)
    z2, est = _mem(zero=2)
    assert z2["gradients"] == pytest.approx(z1["gradients"] / 128, rel=1e-9)
    assert z2["activations"] == z1["activations"]
    assert est.fits and z2["total"] < 80.0
    assert z1["total"] > 80.0
