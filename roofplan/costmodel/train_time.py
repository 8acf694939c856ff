"""Training step cost model: time, throughput and memory of N parallel configurations at once.

One training step of a decoder-only transformer under Megatron-style TP x CP x EP x DP x PP
(Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM", SC21; Korthikanti et al. 2022 for sequence parallelism and recomputation). Every
configuration is a lane of numpy arrays (struct of arrays); there is no Python loop over
configurations, so the planner evaluates over 1e6 configurations per second. Terms that read only a
few knobs (the per-layer op table and the ends, TP and CP communication, the DP/ZeRO collectives,
the per-layer activation bytes) run once per distinct value of those knobs and are gathered back
(:meth:`~roofplan.costmodel.train_ops.StepLanes.distinct`): a search repeats a few hundred layer
shapes over a million configurations, and every lane gets the numbers it would compute alone.

Per microbatch and pipeline stage, every op of a decoder layer is a roofline
(:func:`roofplan.costmodel.ops.gemm_time` / ``roofline.memory_time``): QKV and O projections, the
attention core (FlashAttention IO, or materialised scores with fused softmax + dropout as in the
2021 stack), dense or gated MLP, MoE router and experts (active experts with a load-imbalance
factor), norms / residual / dropout (memory bound), embedding, logits and cross-entropy. Backward
is two GEMMs per forward GEMM (activation and weight gradients, same FLOPs), FlashAttention's
backward is 2.5x its forward (Dao 2023, FlashAttention-2 §3.2: 5 vs 2 matmuls) and runs at
518/600 of the forward's rate (cuDNN on H100, FlashAttention-3 paper). Recomputation adds a
forward of the recomputed layers (full) or of the attention core (selective). FP8 adds
Transformer Engine's casts and transposes (current or delayed scaling), the attention core,
LM head and memory-bound ops staying BF16; fused RoPE and TE's context-parallel output merge
are memory-bound ops of their own. Tensor-core kernels run at ``sustained_compute`` of their
benchmark efficiency (power-limited clocks in long runs, see ``Efficiency``).

Communication uses :func:`roofplan.costmodel.collectives.collective_time` with Megatron's rank
order (TP stride 1, CP stride tp, PP stride tp*cp*dp; the gradient group is the dp*cp ranks at
stride tp; EP groups reuse those ranks at stride tp, expert gradients reduce over dp*cp/ep ranks
at stride tp*ep; a ring or pipeline spanning nodes is paced by its inter-node hop): TP all-reduce (or
reduce-scatter + all-gather with SP) 2x forward, 2x backward, 2x per recomputed forward per layer;
CP ring p2p of K/V (overlapped with attention); EP all-to-all dispatch + combine (per-node
deduplicated with DeepEP, overlapped with another microbatch's layers by Megatron's 1F1B A2A
overlap, expert groups folded over TP x DP with expert tensor parallelism); PP p2p of the
boundary activations (SC21 scatter/gather: 1/tp over the network then all-gather over NVLink);
DP gradient all-reduce, or ZeRO reduce-scatter + all-gather, or ZeRO-3 gathers per microbatch.

The code is a short composition of named terms: the per-layer op table
(:mod:`roofplan.costmodel.train_ops`: every GEMM, attention core, MoE and memory-bound op, with its
FLOPs and bytes), one function each for TP, CP, EP, PP and DP/ZeRO communication and the overlap
budget (:mod:`roofplan.costmodel.train_comm`), and here the optimizer/offload term, FLOPs and memory.

Step time = compute + exposed TP/CP/EP comm (per microbatch, times m microbatches) + pipeline
bubble ((p-1)/v stage-microbatch times, Narayanan et al. §2.2) + exposed PP p2p + exposed DP comm
+ optimizer + exposed offload transfers. Overlaps only ever subtract hidden time: TP comm hides
behind the GEMMs (TE userbuffers, last chunk exposed, the chunked GEMMs' extra time charged to it,
kept only where it pays), CP transfers behind attention, and the
background traffic (DP/ZeRO, offload) draws from one budget of the remaining compute (the last
microbatch's backward for gradients, the first forward for parameter gathers), so no compute is
counted twice and more peak, more bandwidth or an extra overlap never lengthens a step (tested).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.roofline import memory_time
from roofplan.costmodel.train_comm import (
    OverlapBudget,
    cp_comm,
    dp_comm,
    ep_comm,
    expert_dp,
    pp_comm,
    tp_comm,
)
from roofplan.costmodel.train_configs import TrainConfigs
from roofplan.costmodel.train_memory import (
    FRAGMENTATION,
    FRAMEWORK_BYTES,
    OPTIMIZER_BYTES_PER_PARAM,
    activation_bytes,
    fsdp_under_pipeline,
    grad_bytes_per_param,
    layer_activation_bytes,
    layer_bytes,
)
from roofplan.costmodel.train_ops import (
    ACT_BYTES,
    LAYER_SHAPE_FIELDS,
    WEIGHT_BYTES,
    StageCompute,
    StepLanes,
    layer_ops_by_shape,
    stage_compute,
    step_lanes,
)
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec

#: HBM bytes per parameter of one Adam step over the local shard: multi-tensor FusedAdam reads
#: fp32 master, m, v and the fp32 gradient and writes master, m, v (28 B), writes the bf16 model
#: weight (2 B); the gradient-norm clip reads the gradients (4 B); zeroing the gradient buffer
#: writes them (4 B). 38 B.
ADAM_BYTES_PER_PARAM = 38.0
#: Host DRAM bandwidth of a two-socket training node (DGX A100: 2 x EPYC 7742, 8 channels of
#: DDR4-3200 each = 2 x 204.8 GB/s, AMD EPYC 7002 datasheet), shared by the node's devices when
#: the CPU runs Adam for offloaded optimizer states (ZeRO-Offload, Ren et al. ATC'21). CPU Adam
#: touches ~32 B/param of fp32 state at about half of peak DRAM bandwidth.
HOST_DRAM_BPS_PER_NODE = 409.6e9
CPU_ADAM_BYTES_PER_PARAM = 32.0
CPU_DRAM_EFFICIENCY = 0.5


@dataclass
class TrainArrays:
    """Cost-model outputs, one lane per configuration: seconds and bytes per device, FLOP/s per GPU."""

    step_time_s: np.ndarray
    tokens_per_s: np.ndarray
    model_flops_per_gpu: np.ndarray
    hardware_flops_per_gpu: np.ndarray
    mfu: np.ndarray
    fits: np.ndarray
    mem_weights: np.ndarray
    mem_gradients: np.ndarray
    mem_optimizer: np.ndarray
    mem_activations: np.ndarray
    mem_other: np.ndarray
    mem_total: np.ndarray
    capacity: np.ndarray
    t_compute: np.ndarray
    t_tp_comm: np.ndarray
    t_cp_comm: np.ndarray
    t_ep_comm: np.ndarray
    t_pp_bubble: np.ndarray
    t_pp_comm: np.ndarray
    t_dp_comm: np.ndarray
    t_optimizer: np.ndarray
    t_offload: np.ndarray

    def take(self, index) -> TrainArrays:
        return TrainArrays(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    @staticmethod
    def concat(parts: list[TrainArrays]) -> TrainArrays:
        """The lanes of ``parts`` one after the other."""
        return TrainArrays(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in dataclasses.fields(TrainArrays)
            }
        )


def optimizer_offload(L: StepLanes, budget: OverlapBudget):
    """Optimizer step on the device, or ZeRO-Offload's CPU Adam with the gradient/parameter
    transfers over the host link (or, on SN40L, the step streamed from the device's own DDR);
    ``offload >= 2`` also streams the weights in for every forward/backward/recompute.
    Returns (optimizer seconds, offload seconds, optimizer shard in parameters)."""
    hw, e, off = L.hw, L.e, L.cfg.offload
    g_b = grad_bytes_per_param(L.cfg.dtype, L.cfg.grad_reduce_in_fp32)
    shard = np.where(
        L.cfg.zero >= 1, L.place.dense / (L.dp * L.cp) + L.place.expert / expert_dp(L), L.place.total
    )
    t_opt_gpu = memory_time(shard * ADAM_BYTES_PER_PARAM, bandwidth_Bps=L.bw, eff=e, launches=4.0)
    ddr, host = hw.tier("ddr"), hw.tier("host")
    if ddr is not None:
        # SN40L: optimizer states live in the device's own DDR; the step streams them from there.
        t_opt_off = shard * ADAM_BYTES_PER_PARAM / (ddr.bandwidth_Bps * e.hbm)
        t_xfer_grad = np.zeros_like(shard)
        t_xfer_param = np.zeros_like(shard)
        link_bw = ddr.bandwidth_Bps * e.hbm
    else:
        link_bw = (host.bandwidth_Bps if host is not None else 32e9) * e.hbm
        t_xfer_grad = shard * g_b / link_bw
        t_xfer_param = shard * WEIGHT_BYTES / link_bw
        node = float(hw.devices_per_node)
        t_opt_off = shard * CPU_ADAM_BYTES_PER_PARAM / (HOST_DRAM_BPS_PER_NODE * CPU_DRAM_EFFICIENCY / node)
    offloading = off >= 1
    xfer_exposed = budget.hide(np.where(offloading, t_xfer_grad, 0.0), L.cfg.overlap_grad_reduce, "bwd")
    # optimizer+params: weights streamed in for forward, backward and recompute every micro-batch
    stream = np.where(off >= 2, L.micro * L.place.total * WEIGHT_BYTES * (2.0 + L.rc_frac) / link_bw, 0.0)
    stream_exposed = budget.hide(stream, True)
    t_optimizer = np.where(offloading, 0.0, t_opt_gpu)
    t_offload = np.where(offloading, t_opt_off + xfer_exposed + t_xfer_param, 0.0) + stream_exposed
    return t_optimizer, t_offload, shard


def activation_offload_time(L: StepLanes, sc: StageCompute):
    """Exposed seconds per step of activation offload (``act_offload_layers``): each offloaded
    layer's saved tensors (:func:`~roofplan.costmodel.train_memory.layer_activation_bytes`) go to
    host memory over the host link during the forward and come back before the backward, each copy
    overlapped with the next layer's forward or backward (Transformer Engine's CPU offload handler
    copies on a side stream, one layer ahead); what a copy needs beyond that layer's compute shows."""
    n_off = np.asarray(L.cfg.act_offload_layers, dtype=np.float64)
    if not bool(np.any(n_off > 0)):
        return 0.0
    host = L.hw.tier("host")
    link = (host.bandwidth_Bps if host is not None else 32e9) * L.e.hbm
    layer = layer_activation_bytes(
        L.s,
        tokens=L.tokens,
        seq_len=L.seq,
        tp=L.tp,
        sp=L.sp,
        scores=not L.flash,
        dropout=L.dropout,
        act_bytes=ACT_BYTES,
        gemm_input_bytes=1.0 if L.fp8 else ACT_BYTES,
        moe_imbalance=L.imb,
    )
    copy = layer / link
    per_layer = np.maximum(copy - sc.fwd / L.n_s, 0.0) + np.maximum(copy - sc.bwd / L.n_s, 0.0)
    return L.micro * n_off * per_layer


def step_flops(L: StepLanes):
    """(model FLOPs, hardware FLOPs) of one step. Model FLOPs: 6 x matmul weights per token +
    attention over the full context, no causal halving (PaLM, Chowdhery et al. 2022 App. B;
    Megatron SC21 eq. 3 counts the same way); hardware FLOPs add the recomputed forwards."""
    s, seq = L.s, L.seq
    step_tokens = L.gb * seq
    model_flops = step_tokens * (6.0 * s.matmul_params_active + 3.0 * s.attn_flops_per_token_ctx * seq)
    body_fwd = 2.0 * (s.matmul_params_active - s.vocab * s.h) + s.attn_flops_per_token_ctx * seq
    attn_fwd = s.attn_flops_per_token_ctx * seq
    kv_lora_all = s.mla_kv_rank - ((s.kv_width - s.mla_kv_up_out) / s.heads if s.heads else 0.0)
    mla_up_flops = 2.0 * s.layers * (s.mla_q_rank * s.mla_q_up_out + kv_lora_all * s.mla_kv_up_out)
    recompute_flops = step_tokens * (
        L.rc_frac * body_fwd + (L.sel if not L.flash else 0.0) * attn_fwd + L.sel * mla_up_flops
    )
    return model_flops, model_flops + recompute_flops


def _layer_memory(L: StepLanes):
    """The per-layer activation terms (:func:`~roofplan.costmodel.train_memory.layer_bytes`);
    they read the layer shape and the recompute mode only."""
    return layer_bytes(
        L.s,
        micro_batch=L.mb,
        seq_len=L.seq,
        tp=L.tp,
        cp=L.cp,
        sp=L.sp,
        recompute=L.cfg.recompute,
        flash=L.flash,
        dropout=L.dropout,
        act_bytes=ACT_BYTES,
        gemm_input_bytes=1.0 if L.fp8 else ACT_BYTES,
        moe_imbalance=L.imb,
    )


def step_memory(L: StepLanes, shard) -> dict:
    """Bytes per device: weights, gradients, optimizer states, activations, framework/allocator
    overhead (:mod:`roofplan.costmodel.train_memory`), and whether it fits HBM (and the host or DDR
    tier for offloaded states)."""
    cfg, s, place = L.cfg, L.s, L.place
    zero, off = cfg.zero, cfg.offload
    w_total = place.total
    zshard = place.dense / (L.dp * L.cp) + place.expert / expert_dp(L)
    # FSDP2 under a pipeline keeps the stage's weights and gradients unsharded (fsdp_under_pipeline)
    unsharded = fsdp_under_pipeline(zero, L.pp)
    weights = np.where((zero >= 3) & ~unsharded, zshard, w_total) * WEIGHT_BYTES
    weights = np.where(off >= 2, 2.0 * weights / L.n_s, weights)  # a prefetch window of 2 layers
    grads = np.where((zero >= 2) & ~unsharded, zshard, w_total) * grad_bytes_per_param(
        cfg.dtype, cfg.grad_reduce_in_fp32
    )
    optim = np.where(off >= 1, 0.0, np.where(zero >= 1, zshard, w_total) * OPTIMIZER_BYTES_PER_PARAM)
    acts = activation_bytes(
        s,
        layer=L.distinct(LAYER_SHAPE_FIELDS + ("recompute",)).each(_layer_memory),
        micro_batch=L.mb,
        seq_len=L.seq,
        tp=L.tp,
        pp=L.pp,
        cp=L.cp,
        vpp=L.v,
        microbatches=L.micro,
        sp=L.sp,
        recompute=cfg.recompute,
        recompute_layers=cfg.recompute_layers,
        flash=L.flash,
        dropout=L.dropout,
        layers_per_stage=L.n_s,
        act_bytes=ACT_BYTES,
        gemm_input_bytes=1.0 if L.fp8 else ACT_BYTES,
        moe_imbalance=L.imb,
        offload_layers=cfg.act_offload_layers,
    )
    live = weights + grads + optim + acts
    other = FRAMEWORK_BYTES + FRAGMENTATION * live
    total = live + other
    capacity = np.full_like(total, L.hw.hbm_bytes)
    fits = total <= capacity
    ddr, host = L.hw.tier("ddr"), L.hw.tier("host")
    if host is not None or ddr is not None:
        tier = ddr if ddr is not None else host
        off_bytes = np.where(off >= 1, shard * OPTIMIZER_BYTES_PER_PARAM, 0.0) + np.where(
            off >= 2, w_total * WEIGHT_BYTES, 0.0
        )
        fits &= off_bytes <= tier.capacity_bytes / max(tier.shared_by, 1)
    else:
        fits &= off == 0
    return {
        "mem_weights": weights,
        "mem_gradients": grads,
        "mem_optimizer": optim,
        "mem_activations": acts,
        "mem_other": other,
        "mem_total": total,
        "capacity": capacity,
        "fits": fits,
    }


#: An input of more than 4 x this many lanes runs in even blocks of at most this many. Each
#: whole-array temporary then stays a fraction of a MiB and is reused by the allocator: with a
#: million lanes (8 MB temporaries) most of a call went into the kernel faulting in fresh pages
#: (1.8 s of system time against 0.7 s of computation, gpt3-175b search space of
#: ``benchmarks/bench_plan_train.py``). Up to 4 blocks' worth one pass is as fast (fewer calls).
BLOCK_LANES = 1 << 15


def train_step(model: ModelSpec, hw: DeviceSpec, cfg: TrainConfigs) -> TrainArrays:
    """Step time, throughput and memory per device of every configuration in ``cfg`` (pure).

    Step = compute + exposed TP/CP/EP comm (per micro-batch, times m) + pipeline bubble + exposed
    PP p2p + exposed DP comm + optimizer + exposed offload. Invalid configurations (see
    :func:`check_train_config`) give meaningless numbers; callers filter them first. Lanes are
    independent, so evaluating them in blocks (:data:`BLOCK_LANES`) changes no number.
    """
    n = len(cfg)
    if n <= 4 * BLOCK_LANES:
        return _train_block(model, hw, cfg)
    size = -(-n // -(-n // BLOCK_LANES))  # even blocks
    return TrainArrays.concat(
        [_train_block(model, hw, cfg.take(slice(i, i + size))) for i in range(0, n, size)]
    )


def _train_block(model: ModelSpec, hw: DeviceSpec, cfg: TrainConfigs) -> TrainArrays:
    """:func:`train_step` of one block of lanes."""
    L = step_lanes(model, hw, cfg)
    ops = layer_ops_by_shape(L)
    sc: StageCompute = stage_compute(L, ops)
    compute_mb = sc.per_microbatch
    tp = tp_comm(L, sc)
    cp = cp_comm(L, sc)
    ep_mb, ep_cover = ep_comm(L, ops, sc, tp, cp)
    micro = L.micro
    t_compute = micro * compute_mb
    # pipeline bubble: (p-1)/v stage-microbatch times (Narayanan et al. §2.2)
    bubble = (L.pp - 1.0) / L.v * (compute_mb + tp.exposed + cp.exposed + ep_mb)
    t_pp = pp_comm(L, tp)
    budget = OverlapBudget(L, sc, tp, cp, ep_cover, t_compute)
    t_dp = dp_comm(L, budget)
    t_optimizer, t_offload, shard = optimizer_offload(L, budget)
    t_offload = t_offload + activation_offload_time(L, sc)
    t_tp, t_cp, t_ep = micro * tp.exposed, micro * cp.exposed, micro * ep_mb
    step = t_compute + t_tp + t_cp + t_ep + bubble + t_pp + t_dp + t_optimizer + t_offload

    world = L.tp * L.pp * L.dp * L.cp
    step_tokens = L.gb * L.seq
    model_flops, hw_flops = step_flops(L)
    model_fpg = model_flops / step / world
    return TrainArrays(
        step_time_s=step,
        tokens_per_s=step_tokens / step,
        model_flops_per_gpu=model_fpg,
        hardware_flops_per_gpu=hw_flops / step / world,
        mfu=model_fpg / L.hw.peak(cfg.dtype),
        t_compute=t_compute,
        t_tp_comm=t_tp,
        t_cp_comm=t_cp,
        t_ep_comm=t_ep,
        t_pp_bubble=bubble,
        t_pp_comm=t_pp,
        t_dp_comm=t_dp,
        t_optimizer=t_optimizer,
        t_offload=t_offload,
        **step_memory(L, shard),
    )
