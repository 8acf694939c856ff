"""Memory per device of one training configuration, vectorised.

Model state (mixed-precision Adam, Rajbhandari et al. "ZeRO", SC20 §3.1): 2-byte weights, gradients
(fp32 ``main_grad`` for bf16/fp8 — Megatron sets ``accumulate_allreduce_grads_in_fp32`` for bf16 —
and fp16 for the 2021 fp16 stack), 12 bytes of optimizer state per parameter (fp32 master, Adam
m and v). ZeRO-1 (Megatron's distributed optimizer) shards the optimizer over the data-parallel
ranks, ZeRO-2 also the gradients, ZeRO-3 also the weights. This reproduces Megatron-LM's
``megatron/training/theoretical_memory_usage.py`` (18 bytes/param; 6 + 12/dp with the distributed
optimizer) on the most loaded stage (first stage: its layers plus the embedding).

Activations follow Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
Models" (MLSys 2023, §4, Table 2), written per tensor so that GQA, gated MLPs, ffn != 4h, MoE and
FlashAttention are covered; with multi-head attention, plain GeLU MLP and dropout it is exactly the
paper's ``sbh(34 + 5as/h)`` (no parallelism), ``sbh(10 + 24/t + 5as/(ht))`` (TP) and
``sbh(34/t + 5as/(ht))`` (TP + sequence parallelism). Selective recompute drops the attention
score term; full recompute keeps only each layer's input. The first pipeline stage holds ``p``
microbatches in flight under 1F1B and ``p(1 + (p-1)/(pv))`` under the interleaved schedule
(Megatron's formula); the last stage holds one, plus the fp32 logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.lanes import distinct_rows
from roofplan.costmodel.shapes import ModelShapes

GiB = float(2**30)

#: Bytes per parameter of Adam state: fp32 master weights, first and second moments (ZeRO §3.1).
OPTIMIZER_BYTES_PER_PARAM = 12.0
#: CUDA/HIP context, NCCL communicator buffers and GEMM workspaces that every rank allocates
#: outside the model (PyTorch reports ~0.3-0.5 GiB of context; NCCL 4 MiB x channels x peers per
#: communicator, several communicators per rank). A round 1.5 GiB.
FRAMEWORK_BYTES = 1.5 * GiB
#: Fraction of live tensors the caching allocator holds on top as fragmentation
#: (PyTorch CUDA caching allocator: reserved vs allocated typically differs by 5-10 %).
FRAGMENTATION = 0.05
#: Default memory headroom the planner leaves free on every device, on top of the cost model's own
#: ``other`` term (``FRAMEWORK_BYTES`` + ``FRAGMENTATION`` x live, the *typical* allocator overhead).
#: The headroom covers the spread of that overhead, which no static model predicts:
#:
#: * caching-allocator fragmentation: PyTorch's CUDA caching allocator rounds requests into 2 MiB
#:   (small) and 20 MiB (large) segments and never returns split blocks to the driver; its docs
#:   ("CUDA semantics: memory management", ``PYTORCH_CUDA_ALLOC_CONF`` ``max_split_size_mb`` and
#:   ``expandable_segments``) exist because reserved memory grows past allocated memory. Megatron-LM's
#:   ``report_memory`` prints both; reserved runs 5-10 % above allocated, of which the cost model
#:   counts the lower 5 % (``FRAGMENTATION``), so another 5 % of HBM is kept free
#:   (``HEADROOM_FRAGMENTATION``);
#: * workspaces and communicators beyond the counted ones: NCCL allocates ``NCCL_BUFFSIZE`` (4 MiB
#:   default, NCCL environment-variable docs) per channel and peer for every communicator (TP, CP,
#:   DP, PP send/recv, EP and expert-DP groups each have their own) plus NVLink-SHARP buffers on
#:   NVSwitch systems; cuBLAS/cuBLASLt and Transformer Engine keep a 32 MiB workspace per stream;
#:   the CUDA context is 0.3-0.5 GiB with lazy module loading and more without. A round 1 GiB
#:   (``HEADROOM_FIXED_BYTES``).
#:
#: On an 80 GiB device the default is 5 GiB; ``plan train --memory-headroom`` overrides it.
HEADROOM_FRAGMENTATION = 0.05
HEADROOM_FIXED_BYTES = 1.0 * GiB


def default_memory_headroom_bytes(capacity_bytes: float) -> float:
    """The planner's default free memory per device: 5 % of HBM plus 1 GiB (sources above)."""
    return HEADROOM_FRAGMENTATION * float(capacity_bytes) + HEADROOM_FIXED_BYTES


#: Bytes per token of the input ids kept for the embedding backward (int64; Megatron's formula).
TOKEN_ID_BYTES = 8.0
#: Extra routed-token slots per expert over the mean (router load imbalance; GShard's capacity
#: factor and Megatron's ``--moe-expert-capacity-factor`` are typically 1.0-1.25). The step model
#: passes the device's calibratable ``Efficiency.moe_balance`` (its inverse) instead; this is the
#: default of callers without hardware.
MOE_IMBALANCE = 1.1


@dataclass
class ParamPlacement:
    """Parameters held by one device of the most loaded stage (before ZeRO sharding)."""

    dense: np.ndarray  # TP-sharded parameters, replicated over dp*cp
    expert: np.ndarray  # EP x TP sharded expert parameters, replicated over dp*cp/ep
    layers_per_stage: np.ndarray
    moe_per_stage: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.dense + self.expert


def param_placement(s: ModelShapes, tp, pp, ep, vpp, etp=None) -> ParamPlacement:
    """Parameters on the most loaded device: ceil(L / (p v)) layers per virtual stage, times v,
    plus the embedding on the first stage or the LM head (or, when tied, its copy) on the last.
    Routed experts are sharded over EP x ETP; expert tensor parallelism ``etp`` defaults to TP
    (Megatron's default ``expert_tensor_parallel_size``)."""
    per_virtual = np.ceil(s.layers / (pp * vpp))
    n_s = per_virtual * vpp
    moe_frac = s.moe_layers / s.layers
    n_moe = n_s * moe_frac
    n_dense = n_s - n_moe
    layer_dense = n_dense * s.dense_layer_params + n_moe * s.moe_layer_nonexpert_params
    head = s.head_params if not s.tied else s.vocab * s.h
    ends = np.where(pp > 1, np.maximum(s.embedding_params, head), s.embedding_params + s.head_params)
    dense = (layer_dense + ends) / tp
    expert = n_moe * s.moe_layer_expert_params / (ep * (tp if etp is None else etp))
    return ParamPlacement(dense=dense, expert=expert, layers_per_stage=n_s, moe_per_stage=n_moe)


def pipeline_split(layers, pp):
    """Layers of the (first, middle, last) pipeline stages, vectorised.

    Even when ``pp`` divides ``layers``. Otherwise the middle stages take ceil(L/pp) layers (the
    slowest stage, which the cost model prices) and the remainder is split between the first and
    last stages, which also hold the embedding and the loss — Megatron-Core's
    ``--decoder-first-pipeline-num-layers`` / ``--decoder-last-pipeline-num-layers``, as used for
    Llama 3 405B (126 layers on 16 stages, Dubey et al. 2024 §3.3.2). Where no such split exists
    (the remainder is below 2 or above two middle stages) ``first`` is 0.
    """
    layers = np.asarray(layers, dtype=np.int64)
    pp = np.asarray(pp, dtype=np.int64)
    if layers.ndim == 0 and pp.ndim == 1 and len(pp) > 256:
        # a search repeats a few pipeline degrees: split each once (integer division is slow)
        rep, row = distinct_rows([pp])
        if 2 * len(rep) <= len(pp):
            return tuple(x[row] for x in pipeline_split(layers, pp[rep]))
    middle = -(-layers // np.maximum(pp, 1))
    rest = layers - np.maximum(pp - 2, 0) * middle
    even = layers % np.maximum(pp, 1) == 0
    possible = (pp >= 2) & (rest >= 2) & (rest <= 2 * middle)
    first = np.where(even, middle, np.where(possible, rest - rest // 2, 0))
    last = np.where(even, middle, np.where(possible, rest // 2, 0))
    return first, middle, last


def fsdp_under_pipeline(zero, pp):
    """True where ZeRO-3 runs under a pipeline schedule: torchtitan's FSDP2 (``fully_shard``) with
    pipeline parallelism, the only framework here that composes the two (Megatron-LM and
    DeepSpeed refuse it, :mod:`roofplan.solver.frameworks`).

    What FSDP2 then does differs from ZeRO-3 without a pipeline, in memory and in traffic:

    * torchtitan's ``fsdp_reshard_after_forward = "default"`` resolves to *no* resharding after
      forward when PP is on ("to avoid per-microbatch all-gathers, which can be expensive and
      non-overlapped", ``torchtitan/distributed/fsdp.py`` ``get_fsdp_reshard_after_forward_policy``);
    * PyTorch's pipeline stage runs every backward with ``set_reshard_after_backward(False)`` and
      ``set_requires_gradient_sync(False)`` and calls FSDP's post-backward (reduce-scatter, then
      reshard) by hand after the stage's last backward only (``torch/distributed/pipelining/
      stage.py`` ``backward_maybe_with_nosync``).

    So the stage's parameters are all-gathered once per step, by the first micro-batch's forward,
    and stay unsharded (2-byte weights of the whole stage) until the step's last backward; the
    gradients accumulate unsharded in the reduce dtype (FSDP2 ``to_accumulated_grad_if_needed``
    upcasts to ``reduce_dtype``, torchtitan's ``mixed_precision_reduce`` float32) and are
    reduce-scattered once, after the last backward, outside any overlap. Only the fp32 master
    weights and the Adam moments stay sharded over the data-parallel ranks: the memory of ZeRO-1.
    ``"always"`` would reshard after each forward and re-gather in each backward, but the
    unsharded weights are back after every backward (no reshard in backward), so the peak is the
    same at more traffic; the planner does not emit it."""
    return (np.asarray(zero) >= 3) & (np.asarray(pp) > 1)


def grad_bytes_per_param(dtype: str, reduce_in_fp32: bool = True) -> float:
    """fp32 main gradients except on the 2021 fp16 stack (fp16 gradients) and where gradients are
    reduced in 16 bits (``grad_reduce_in_fp32`` off: the buffer takes the bf16 parameter dtype)."""
    return 2.0 if dtype == "fp16" or not reduce_in_fp32 else 4.0


def layer_activation_bytes(
    s: ModelShapes,
    *,
    tokens,
    seq_len,
    tp,
    sp,
    scores: bool,
    dropout: bool,
    act_bytes=2.0,
    gemm_input_bytes=None,
    moe_imbalance=MOE_IMBALANCE,
):
    """Stored activation bytes of one decoder layer for ``tokens`` tokens of sequences of
    ``seq_len`` (Korthikanti Table 2 term by term). ``scores``: the attention score/probability
    tensors are kept (no FlashAttention and no selective recompute)."""
    drop = 1.0 if dropout else 0.0
    sp_div = np.where(sp, tp, 1.0)
    base, _ = _layer_base(s, tokens, tp, sp_div, drop, act_bytes, gemm_input_bytes, moe_imbalance)
    score = tokens * s.heads / tp * seq_len * (act_bytes + drop * (1.0 + act_bytes))
    return base + (score if scores else tokens * 4.0 * s.heads / tp)


def activation_bytes(
    s: ModelShapes,
    *,
    micro_batch,
    seq_len,
    tp,
    pp,
    cp,
    vpp,
    microbatches,
    sp,
    recompute,
    recompute_layers,
    flash,
    dropout,
    layers_per_stage,
    act_bytes=2.0,
    gemm_input_bytes=None,
    moe_imbalance=MOE_IMBALANCE,
    offload_layers=0,
    layer=None,
):
    """Peak activation bytes per device: the maximum over the pipeline stages.

    Plain 1F1B (Narayanan et al. SC21 §2.2; Megatron-Core ``forward_backward_pipelining_without_
    interleaving``): stage ``i`` of ``p`` runs ``p - i - 1`` warm-up forwards before its first
    backward, so it holds ``min(p - i, m)`` microbatches of its own layers. With an even split the
    first stage is the peak (``p`` x L/p = L layers' worth, Megatron's ``theoretical_memory_usage``).
    With the uneven split of :func:`pipeline_split` (first and last stages one layer short, Llama 3
    405B) the second stage holds ``min(p - 1, m)`` microbatches of a full stage, which can exceed the
    first stage's ``min(p, m)`` of a short one (126 layers on 16: 15 x 8 = 120 > 16 x 7 = 112 layers).
    Interleaved 1F1B: the first rank holds ``L (1 + (p-1)/(p v))`` layers' worth (Megatron's
    ``interleaved_schedule_memory_penalty``). The last stage holds one microbatch plus the fp32
    logits.
    ``offload_layers`` layers' saved tensors live in host memory (activation offload, no pipeline
    and no recompute, :class:`TrainConfigs`); one of them is on the device at a time, being
    copied, so they free ``offload_layers - 1`` layers' worth. ``layer``: the per-layer terms of
    :func:`layer_bytes` for these lanes, when the caller has them already."""
    if layer is None:
        layer = layer_bytes(
            s,
            micro_batch=micro_batch,
            seq_len=seq_len,
            tp=tp,
            cp=cp,
            sp=sp,
            recompute=recompute,
            flash=flash,
            dropout=dropout,
            act_bytes=act_bytes,
            gemm_input_bytes=gemm_input_bytes,
            moe_imbalance=moe_imbalance,
        )
    stored_none, working, ckpt, embed, logits = layer
    k = np.where(
        recompute == 2,
        np.where(recompute_layers > 0, np.minimum(recompute_layers, layers_per_stage), layers_per_stage),
        0.0,
    )

    def stage_bytes(n_layers):
        k_n = np.minimum(k, n_layers)
        return k_n * ckpt + (n_layers - k_n) * stored_none

    stage = stage_bytes(layers_per_stage) - np.maximum(np.asarray(offload_layers) - 1.0, 0.0) * stored_none
    # the uneven split's short end stages (plain 1F1B only; interleaving needs an even split)
    n_first, _, n_last = pipeline_split(s.layers, pp)
    uneven = (vpp == 1) & (pp > 1) & (n_first > 0) & (n_first < layers_per_stage)
    first_stage = np.where(uneven, stage_bytes(np.where(uneven, n_first, layers_per_stage)), stage)
    last_stage = np.where(uneven, stage_bytes(np.where(uneven, n_last, layers_per_stage)), stage)
    in_flight = np.where(vpp > 1, pp * (1.0 + (pp - 1.0) / (pp * vpp)), np.minimum(pp, microbatches))
    recompute_working = np.where(recompute == 2, working, 0.0)
    first = in_flight * (first_stage + embed) + recompute_working + np.where(pp > 1, 0.0, logits)
    # the second stage of an uneven split: one microbatch fewer, a full stage of layers
    second = np.where(uneven & (pp > 2), np.minimum(pp - 1.0, microbatches) * stage + recompute_working, 0.0)
    last = last_stage + logits + recompute_working
    return np.where(pp > 1, np.maximum(np.maximum(first, second), last), first)


def layer_bytes(
    s: ModelShapes,
    *,
    micro_batch,
    seq_len,
    tp,
    cp,
    sp,
    recompute,
    flash,
    dropout,
    act_bytes=2.0,
    gemm_input_bytes=None,
    moe_imbalance=MOE_IMBALANCE,
):
    """The per-layer terms :func:`activation_bytes` stacks over a stage: (a layer as stored without
    full recompute, a layer being recomputed or backpropagated, a layer's checkpointed input, the
    embedding's saved tensors, the fp32 logits and their input), bytes for one micro-batch."""
    b = act_bytes
    tokens = micro_batch * seq_len / cp
    drop = 1.0 if dropout else 0.0
    sp_div = np.where(sp, tp, 1.0)
    # selective recompute of an MLA model also recomputes the Q/K/V up-projections
    # (Megatron-Bridge DeepSeek-V3 recipes: ``recompute_modules=["mla_up_proj", ...]``)
    mla_rc = (np.asarray(recompute) == 1) & (s.mla_q_rank > 0)
    base_full, ckpt = _layer_base(s, tokens, tp, sp_div, drop, b, gemm_input_bytes, moe_imbalance, mla_rc)
    # attention scores, materialised without FlashAttention: softmax out, dropout mask and output
    score = tokens * s.heads / tp * seq_len * (b + drop * (1.0 + b))
    lse = tokens * 4.0 * s.heads / tp
    keep_scores = (~np.asarray(flash, dtype=bool)) & (recompute == 0)
    stored_none = base_full + np.where(keep_scores, score, lse)
    working = base_full + np.where(flash, lse, score)  # one layer being recomputed/backpropagated
    embed = tokens * (TOKEN_ID_BYTES + drop * s.h / sp_div)
    logits = tokens * (4.0 * s.h / sp_div + 4.0 * s.vocab / tp)
    return stored_none, working, ckpt, embed, logits


def _layer_base(s: ModelShapes, tokens, tp, sp_div, drop, b, bi=None, imb=MOE_IMBALANCE, mla_rc=False):
    """(activations of one layer without the score tensors, the layer input alone).

    Korthikanti Table 2 per tensor, in bytes per token: LayerNorm inputs (2 x b h), QKV and MLP
    inputs (2 x bi h), dropout masks (2 x h): sharded over TP only with SP. Q, K, V (b) and the
    O-projection input (bi): sharded by heads. MLP: first GEMM output (b, gated: gate and up) and
    the second GEMM's input (bi). ``bi`` is the storage of GEMM inputs: 1 byte under FP8
    (Transformer Engine saves the FP8-cast inputs for the backward GEMMs), else ``b``.
    """
    bi = b if bi is None else bi
    sp_part = (2.0 * b + 2.0 * bi + 2.0 * drop) * s.h / sp_div
    attn_part = (b * (s.qk_dim * s.heads + s.kv_width) + bi * s.o_in) / tp
    if s.mla_q_rank:
        # MLA up-projections recomputed: keep the query and KV latents (computed by the
        # unsharded down-projections, so on every TP rank) instead of the per-head Q, K, V
        attn_part = np.where(mla_rc, b * (s.mla_q_rank + s.mla_kv_rank) + bi * s.o_in / tp, attn_part)
    mlp_dense = (b * s.mlp_up + bi * s.ffn) / tp
    if s.moe_layers:
        k = s.top_k * imb
        mlp_moe = (
            (b * (k * s.expert_up + s.shared_up) + bi * (k * s.expert_ffn + s.shared_ffn)) / tp
            + b * k * s.h / sp_div
            + 4.0 * s.experts
        )  # permuted tokens, router probs
        frac = s.moe_layers / s.layers
        mlp = (1 - frac) * mlp_dense + frac * mlp_moe
    else:
        mlp = mlp_dense
    return tokens * (sp_part + attn_part + mlp), tokens * b * s.h / sp_div
