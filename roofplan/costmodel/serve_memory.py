"""Serving memory per device: weights, KV cache (GQA/MLA aware), activation workspace, the
engine's reserve, and the largest batch whose KV cache fits.

Weights follow vLLM/Megatron sharding (column/row-parallel layers split over tp, experts over ep
with tp·dp/ep-way expert tensor parallelism, vocab-parallel embedding and LM head). The engine
keeps ``memory_reserve_fraction`` of HBM unused (vLLM ``--gpu-memory-utilization``) or of the
memory left after the weights (TRT-LLM ``free_gpu_memory_fraction``) and reserves an activation
workspace sized by its step token budget (vLLM's profile run at ``--max-num-batched-tokens``).
A device with a DDR tier (SN40L) keeps KV and activations in HBM and places the weights that do
not fit there in DDR (Prabhakar et al., arXiv:2405.07518, three-tier memory).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.serve_configs import ServeConfigs, act_dtype, dense_weight_dtype
from roofplan.engines.profile import EngineProfile
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec
from roofplan.models.spec import ModelSpec


def kv_shards(model: ModelSpec, tp) -> np.ndarray:
    """How many ways one layer's KV cache is split over the tp ranks: KV heads are sharded up to
    kv_heads ranks and replicated beyond (vLLM ``num_kv_heads // tp`` with replication); the MLA
    latent is one vector per token, replicated on every tp rank (DeepSeek-V2 MLA in vLLM/SGLang)."""
    tp = np.asarray(tp, dtype=float)
    if model.mla is not None:
        return np.ones_like(tp)
    return np.minimum(tp, float(model.kv_heads))


def kv_bytes_per_token_per_device(model: ModelSpec, cfg: ServeConfigs) -> np.ndarray:
    """KV bytes one device stores per cached token of a request it serves (its layers, its heads)."""
    per_token = model.kv_bytes_per_token(cfg.kv_dtype_resolved)
    return per_token / kv_shards(model, cfg.tp) / cfg.pp


def state_bytes_per_seq_per_device(
    model: ModelSpec, cfg: ServeConfigs, linear_bytes: float = 4.0
) -> np.ndarray:
    """Fixed cache bytes one request holds on a device whatever its length (0 for a plain
    transformer), per pipeline stage: the windows of sliding/chunked layers split like the KV
    cache (:func:`kv_shards`), the linear mixers' states over all tp ranks, since a Gated
    DeltaNet / Mamba-2 layer is sharded by its own heads (16-128 of them, vLLM and SGLang
    ``num_heads // tp``), not by the full-attention layers' KV heads. The linear states take
    ``linear_bytes`` per element (the engine's ``linear_state_bytes``)."""
    win = model.state_bytes_per_seq(cfg.kv_dtype_resolved) - model.linear_state_bytes_per_seq()
    lin = model.linear_state_bytes_per_seq(linear_bytes)
    return (win / kv_shards(model, cfg.tp) + lin / cfg.tp) / cfg.pp


def kv_transfer_bytes(model: ModelSpec, isl, kv_dtype: str | None = "bf16", prefix_hit=0) -> np.ndarray:
    """KV cache of one prompt of ``isl`` tokens, all layers (what PD disaggregation ships). With a
    prefix-cache hit of ``prefix_hit`` tokens only the miss travels: the shared prefix is held once
    by every instance, the decode side included (``serve_features.feature_memory``)."""
    tokens = np.maximum(np.asarray(isl, dtype=float) - np.asarray(prefix_hit, dtype=float), 0.0)
    return tokens * model.kv_bytes_per_token(kv_dtype or "bf16")


def _weight_params_per_device(model: ModelSpec, tp, pp, ep, dp, split: bool = False):
    """Parameters resident on the busiest device: its pipeline stage's layers sharded over tp
    (attention, dense MLPs, shared experts), E/ep experts each split over tp·dp/ep, plus the
    vocab-parallel embedding and LM head (both on one stage when pp = 1). ``split``: return
    (decoder-layer params, embedding + LM-head params, of the decoder's the experts' params:
    routed and shared) separately."""
    tp, pp, ep, dp = (np.asarray(x, dtype=float) for x in (tp, pp, ep, dp))
    attn = model.attention_params() + 2 * model._norm_params()
    dense = model.dense_layers * (attn + model.mlp_params(model.ffn)) / tp
    moe = experts = 0.0
    if model.moe_layers:
        m = model.moe
        etp = tp * dp / ep
        routed = m.num_experts / ep * model.mlp_params(m.expert_ffn) / etp
        shared = m.shared_experts * model.mlp_params(m.shared_ffn_size) / tp
        moe = model.moe_layers * ((attn + model.hidden * m.num_experts) / tp + routed + shared)
        experts = model.moe_layers * (routed + shared) / pp
    body = (dense + moe) / pp
    emb = model.embedding_params() / tp
    head = model.head_params() / tp
    ends = np.where(pp > 1, np.maximum(emb, head), emb + head)
    return (body, ends, experts) if split else body + ends


def weight_bytes_per_device(model: ModelSpec, cfg: ServeConfigs) -> np.ndarray:
    """Weight bytes on the busiest device. Quantised checkpoints (fp8/int8/int4) quantise the
    decoder's linear layers only: the embedding is a table lookup and the LM head is excluded
    (TensorRT Model Optimizer exports list ``lm_head`` under ``exclude_modules`` in
    hf_quant_config.json, e.g. nvidia/Llama-3.1-8B-Instruct-FP8; vLLM's Fp8LinearMethod applies to
    the decoder's Linear layers, VocabParallelEmbedding/ParallelLMHead stay 16-bit), so both stay
    in the 16-bit activation dtype. A checkpoint that quantises its experts only keeps the other
    decoder weights at ``dense_dtype`` (:func:`serve_configs.dense_weight_dtype`)."""
    body, ends, experts = _weight_params_per_device(model, cfg.tp, cfg.pp, cfg.ep, cfg.dp, split=True)
    dense = DTYPE_BYTES[dense_weight_dtype(model, cfg.dtype)]
    return (
        (body - experts) * dense + experts * DTYPE_BYTES[cfg.dtype] + ends * DTYPE_BYTES[act_dtype(cfg.dtype)]
    )


def _act_bytes_per_token(model: ModelSpec, tp, dtype: str) -> np.ndarray:
    """Activation workspace per in-flight token on one device: residual stream and norm output,
    QKV and attention output shards, the gate/up output shard (vLLM's profile run keeps about one
    layer's intermediates alive at a time)."""
    tp = np.asarray(tp, dtype=float)
    b = DTYPE_BYTES[act_dtype(dtype)]
    kv_dim = 2 * model.kv_heads * model.head_dim if model.mla is None else model.mla.kv_lora_rank
    ffn = model.ffn
    if model.moe is not None:
        ffn = max(
            ffn, model.moe.top_k * model.moe.expert_ffn + model.moe.shared_experts * model.moe.shared_ffn_size
        )
    mats = 2 if model.gated_mlp else 1
    return b * (4 * model.hidden + (model.q_dim + kv_dim + model.v_dim) / tp + mats * ffn / tp)


@dataclass
class ServeMemory:
    weights: np.ndarray  # bytes of weights per device
    weights_hbm: np.ndarray  # of which resident in HBM
    weights_ddr: np.ndarray  # of which in the DDR tier (SN40L)
    kv: np.ndarray
    act: np.ndarray
    usable: np.ndarray
    capacity: np.ndarray
    fits: np.ndarray
    max_batch: np.ndarray


def serve_memory(model: ModelSpec, hw: DeviceSpec, engine: EngineProfile, cfg: ServeConfigs) -> ServeMemory:
    weights = weight_bytes_per_device(model, cfg)
    # the engine's runtime (CUDA context, cuBLAS/NCCL workspaces, decoder buffers) takes a fixed
    # amount before the KV cache is sized from what is left
    capacity = np.full(len(cfg), float(hw.hbm_bytes))
    avail = capacity - engine.runtime_reserve_bytes
    if engine.reserve_of_free:
        usable = avail - engine.memory_reserve_fraction * np.maximum(avail - weights, 0.0)
    else:
        usable = np.minimum(capacity * (1.0 - engine.memory_reserve_fraction), avail)
    dp = cfg.dp.astype(float)
    seqs = cfg.batch / dp  # requests per attention rank
    kv_tok = kv_bytes_per_token_per_device(model, cfg)
    kv_seq = (cfg.isl + cfg.osl) * kv_tok + state_bytes_per_seq_per_device(
        model, cfg, engine.linear_state_bytes
    )
    kv = seqs * kv_seq
    act_tok = _act_bytes_per_token(model, cfg.tp, cfg.dtype)
    logits_seq = model.vocab / cfg.tp * 4.0  # fp32 logits of the sampling tokens
    budget = engine.max_num_batched_tokens
    if budget:
        act = budget * act_tok + seqs * logits_seq
        act_fixed, act_seq = budget * act_tok, logits_seq
    else:
        act = seqs * (cfg.isl * act_tok + logits_seq)
        act_fixed, act_seq = 0.0 * act_tok, cfg.isl * act_tok + logits_seq
    ddr = hw.tier("ddr")
    if ddr is not None:
        weights_hbm = np.clip(usable - kv - act, 0.0, weights)
        weights_ddr = weights - weights_hbm
        fits = (kv + act <= usable) & (weights_ddr <= ddr.capacity_bytes / max(ddr.shared_by, 1))
        resident = np.zeros_like(weights)  # weights spill to DDR, KV owns HBM
    else:
        weights_hbm, weights_ddr = weights, np.zeros_like(weights)
        fits = weights + kv + act <= usable
        resident = weights
    room = usable - resident - act_fixed
    per_rank = np.floor(np.maximum(room, 0.0) / (kv_seq + act_seq))
    max_batch = per_rank * dp
    if engine.max_num_seqs:  # the engine runs at most max_num_seqs requests per iteration
        max_batch = np.minimum(max_batch, engine.max_num_seqs)
    max_batch = max_batch.astype(np.int64)
    if ddr is not None:
        max_batch = np.where(weights <= room + ddr.capacity_bytes / max(ddr.shared_by, 1), max_batch, 0)
    return ServeMemory(weights, weights_hbm, weights_ddr, kv, act, usable, capacity, fits, max_batch)


def max_batch(model: ModelSpec, hw: DeviceSpec, cfg: ServeConfigs, engine: EngineProfile):
    """Largest B whose KV cache for isl+osl tokens per request (plus the engine's activation
    workspace and reserve) fits next to the weights; 0 when the weights alone do not fit."""
    return serve_memory(model, hw, engine, cfg).max_batch
