"""A hybrid model's linear-mixer state is sharded over every tp rank (by the mixer's own heads),
while its full-attention KV is sharded only up to kv_heads ranks."""

from __future__ import annotations

import pytest

from roofplan.costmodel.serve import ServeConfigs
from roofplan.costmodel.serve_memory import kv_bytes_per_token_per_device, state_bytes_per_seq_per_device
from roofplan.models.loader import load_model


def _cfg(tp: int) -> ServeConfigs:
    return ServeConfigs.single(
        tp=tp, pp=1, ep=1, dp=1, batch=1, isl=1, osl=1, dtype="bf16", kv_dtype=None, engine="vllm"
    )


def test_gated_deltanet_state_splits_over_all_tp_ranks():
    """Qwen3.5-35B-A3B (config.json): 30 Gated DeltaNet layers, each holding 32 value heads x 128 x
    128 recurrent state plus a 3 x 8192 causal-conv state in fp32 = 548,864 x 4 bytes; 10
    full-attention layers with 2 KV heads of 256."""
    m = load_model("qwen3.5-35b-a3b")
    per_seq = 30 * (32 * 128 * 128 + 3 * (2 * 16 * 128 + 32 * 128)) * 4.0
    assert float(state_bytes_per_seq_per_device(m, _cfg(1))[0]) == pytest.approx(per_seq)
    assert float(state_bytes_per_seq_per_device(m, _cfg(4))[0]) == pytest.approx(per_seq / 4)
    kv1 = float(kv_bytes_per_token_per_device(m, _cfg(1))[0])
    assert kv1 == pytest.approx(10 * 2 * 2 * 256 * 2.0)
    assert float(kv_bytes_per_token_per_device(m, _cfg(4))[0]) == pytest.approx(kv1 / 2)  # 2 KV heads


def test_a_bf16_linear_state_halves_it_and_the_engine_flag_reaches_the_memory_plan():
    """SGLang ``--mamba-ssm-dtype bfloat16`` (vLLM ``--mamba-ssm-cache-dtype``): the same 548,864
    state elements per Gated DeltaNet layer at 2 bytes; the KV-pool room per request shrinks by
    that much, so the memory plan admits more requests (one H200, fp8 weights, 8192 + 1024)."""
    from roofplan import resolve
    from roofplan.costmodel.serve_memory import serve_memory

    m = load_model("qwen3.5-35b-a3b")
    per_seq = 30 * (32 * 128 * 128 + 3 * (2 * 16 * 128 + 32 * 128)) * 2.0
    assert float(state_bytes_per_seq_per_device(m, _cfg(1), 2.0)[0]) == pytest.approx(per_seq)
    hw, eng = resolve.hardware("h200-sxm"), resolve.engine("sglang")
    cfg = ServeConfigs.single(
        tp=1, pp=1, ep=1, dp=1, batch=1, isl=8192, osl=1024, dtype="fp8", kv_dtype=None, engine="sglang"
    )
    kv_seq = 9216 * float(kv_bytes_per_token_per_device(m, cfg)[0])
    fp32 = int(serve_memory(m, hw, eng, cfg).max_batch[0])
    bf16 = int(serve_memory(m, hw, eng.replace(linear_state_bytes=2.0), cfg).max_batch[0])
    # the room per request is kv + state (+ the logits row): the ratio of batches is the inverse
    # ratio of those sizes, to within the flooring of one request
    logits = m.vocab * 4.0
    expect = fp32 * (kv_seq + 2 * per_seq + logits) / (kv_seq + per_seq + logits)
    assert bf16 == pytest.approx(expect, abs=2)
    assert bf16 > fp32
