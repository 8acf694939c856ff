"""Training step cost model: time, throughput and memory of N parallel configurations at once.

One training step of a decoder-only transformer under Megatron-style TP x CP x EP x DP x PP
(Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
Megatron-LM", SC21; Korthikanti et al. 2022 for sequence parallelism and recomputation). Every
configuration is a lane of numpy arrays (struct of arrays); there is no Python loop over
configurations, so the planner evaluates ~1e6 configurations per second.

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

from roofplan.costmodel.collectives import collective_time, group_layout
from roofplan.costmodel.ops import gemm_efficiency, gemm_time, prefill_attention_time
from roofplan.costmodel.roofline import (
    gemm_flops,
    memory_time,
    roofline_time,
    sustained,
)
from roofplan.costmodel.train_configs import TrainConfigs
from roofplan.costmodel.train_memory import (
    FRAGMENTATION,
    FRAMEWORK_BYTES,
    OPTIMIZER_BYTES_PER_PARAM,
    activation_bytes,
    grad_bytes_per_param,
    param_placement,
)
from roofplan.costmodel.train_shapes import model_shapes
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec

#: Bytes of one weight element in device memory. fp8 training keeps bf16 weights and casts per
#: GEMM (Transformer Engine), so fp8 changes GEMM peak, not storage.
WEIGHT_BYTES = 2.0
#: Bytes of one stored activation element (bf16/fp16; TE's fp8 keeps bf16 layer I/O).
ACT_BYTES = 2.0
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
#: Megatron DDP gradient bucket (``--ddp-bucket-size`` default 40M elements): the last bucket's
#: reduce cannot overlap with backward.
DDP_BUCKET_PARAMS = 40e6
#: Fraction of attention compute that is real work under a causal mask: FlashAttention skips
#: fully masked tiles (about half); materialised scores compute the full s x s product.
CAUSAL_FRACTION_FLASH = 0.5
#: FlashAttention-2 backward FLOPs relative to forward (5 vs 2 matmuls, Dao 2023 §3.2).
FLASH_BWD_RATIO = 2.5
#: Elementwise kernels launched per layer in the forward pass (2 norms, 2 residual/dropout adds,
#: activation, rotary/bias, softmax/dropout); backward launches twice as many.
ELEMENTWISE_LAUNCHES = 8.0
#: FlashAttention backward throughput relative to its forward at the same problem size; the
#: catalogs' ``attn_max`` is the forward fraction. cuDNN fused attention (Transformer Engine's
#: default on Hopper) on H100 SXM, head dim 128, 8k tokens: 518 vs 600 TFLOP/s (Shah et al.,
#: "FlashAttention-3", 2024, Fig. 5-6, the Transformer Engine backend of the H100 rows:
#: ``NVTE_FUSED_ATTN=1``). FlashAttention-2 on A100 shows the same kind of gap (Dao 2023, §4.1:
#: the backward pass reaches a lower fraction of peak than the forward).
FLASH_BWD_EFF_RATIO = 518.0 / 600.0
#: Transformer Engine userbuffers TP overlap (``--tp-comm-overlap``; TE ``CommOverlapP2P`` and
#: ``CommOverlap``): a GEMM whose input is all-gathered by ring exchange runs as tp chunks of M/tp
#: rows (forward QKV and FC1, backward dgrad of proj and FC2); a GEMM whose output is reduce-
#: scattered (forward proj and FC2) runs as tp ring-exchange chunks in the FP8 recipes, and as
#: UB_RS_SPLITS pipelined chunks in the BF16 recipes, whose reduce-scatter kernel keeps num_sm SMs
#: off the GEMM (``set_sm_margin``). Megatron-Bridge ``src/megatron/bridge/training/comm_overlap.py``
#: ``userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192``: proj_fprop num_sm 24, fc2_fprop 16 of the
#: 132 SMs of an H100, num_splits 4; ``userbuffers_fp8_h100_*``: ring exchange, num_sm 1. The
#: backward dgrad of QKV/FC1 and the wgrads overlap their collectives in bulk and stay whole.
UB_RS_SPLITS = 4.0
UB_RS_SM_FRACTION_PROJ = 24.0 / 132.0
UB_RS_SM_FRACTION_FC2 = 16.0 / 132.0
#: Bytes per element and ring step of Transformer Engine's context-parallel output merge
#: (``flash_attn_fwd_out_correction``: read the step's bf16 output, read and write the fp32
#: accumulator: 2 + 4 + 4); the backward accumulates dq and dk/dv the same way.
CP_MERGE_BYTES = 10.0
#: Fraction of the SMs that the expert-parallel all-to-all kernels occupy while they overlap with
#: computation: 20 of the 132 SMs of an H800/H100 (DeepSeek-V3 report, arXiv 2412.19437 §3.2.2:
#: "only 20 SMs are sufficient to fully utilize the bandwidths of IB and NVLink"; Megatron-Bridge
#: sets DeepEP to 20 SMs when the EP overlap is on). Overlapped computation runs on the rest, so
#: each hidden second of all-to-all still costs this fraction of a second of compute.
EP_COMM_SM_FRACTION = 20.0 / 132.0


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


def _hw_for(hw: DeviceSpec, cfg: TrainConfigs) -> DeviceSpec:
    if cfg.gpus_per_node and cfg.gpus_per_node != hw.devices_per_node:
        return dataclasses.replace(hw, devices_per_node=int(cfg.gpus_per_node))
    return hw


def _grouped_gemm(m, n, k, count, *, hw, dtype, eff):
    """``count`` GEMMs of shape (m x k) @ (k x n) run as one grouped kernel (MoE experts): one GEMM
    of the stacked rows over all experts' weights at the grouped-GEMM efficiency ``moe_gemm``
    (the operator library's MoE term, :func:`roofplan.costmodel.ops.moe_time`)."""
    return gemm_time(m * count, n, k, hw, dtype=dtype, eff=eff, weight_bytes=WEIGHT_BYTES * count,
                     act_bytes=ACT_BYTES, quantise=False) / eff.moe_gemm


def _slowest_hop(stride, size, hw: DeviceSpec):
    """Stride to price a chain of ``size`` ranks ``stride`` apart: once the chain spans more than
    one node, some neighbour pair crosses the network and paces every step (ring attention,
    pipeline p2p in steady state), so it is priced as a cross-node hop."""
    spans = stride * size > hw.devices_per_node
    return np.where(spans, np.maximum(stride, float(hw.devices_per_node)), stride)


def _node_dedup(ep, stride, top_k, hw: DeviceSpec):
    """Network bytes of a node-deduplicating dispatcher relative to one copy per routed slot.

    DeepEP sends a token over the network once per destination node and forwards it to the
    expert ranks over NVLink (DeepSeek-V3 report §3.2.2; DeepEP "normal" internode kernels). With
    ``top_k`` experts drawn uniformly over the ``n`` nodes of the EP group a token reaches
    ``n (1 - (1 - 1/n)^k)`` distinct nodes instead of ``k`` slots. DeepSeek-V3's node-limited
    routing (at most M = 4 nodes per token) only caps this further; Megatron-Bridge's DeepSeek-V3
    H100 recipe (8 groups, top-4 groups over 16 nodes) caps at 8 nodes, above the 6.5 expected,
    so the cap is not modelled. The factor scales the whole buffer: the NVLink share it also
    shrinks never binds once the group spans nodes (a NIC is ~9x slower than NVLink).
    """
    _, nodes = group_layout(ep, stride, hw.devices_per_node)
    n = np.maximum(nodes, 1.0)
    return np.where(nodes > 1, n * (1.0 - (1.0 - 1.0 / n) ** top_k) / top_k, 1.0)


def _a2a_hw(hw: DeviceSpec) -> DeviceSpec:
    """``hw`` as the expert-parallel all-to-all sees the network: its NIC at ``ep_a2a_bw`` of line
    rate instead of the ring collectives' ``inter_bw`` (0 keeps ``inter_bw``)."""
    frac = hw.efficiency.ep_a2a_bw
    return hw.with_efficiency(inter_bw=frac) if frac > 0 else hw


def train_step(model: ModelSpec, hw: DeviceSpec, cfg: TrainConfigs) -> TrainArrays:
    """Step time, throughput and memory per device of every configuration in ``cfg`` (pure).

    Invalid configurations (see :func:`check_train_config`) give meaningless numbers; callers
    filter them first.
    """
    s = model_shapes(model)
    hw = _hw_for(hw, cfg)
    e = hw.efficiency
    f64 = np.float64
    tp, pp, dp = cfg.tp.astype(f64), cfg.pp.astype(f64), cfg.dp.astype(f64)
    cp, ep, v = cfg.cp.astype(f64), cfg.ep.astype(f64), cfg.vpp.astype(f64)
    mb, gb, seq = cfg.micro_batch.astype(f64), cfg.global_batch.astype(f64), cfg.seq_len.astype(f64)
    sp = cfg.sequence_parallel & (cfg.tp > 1)
    rc, zero, off = cfg.recompute, cfg.zero, cfg.offload
    flash = bool(cfg.flash_attention)
    dropout = model.linear_bias if cfg.dropout is None else bool(cfg.dropout)
    drop = 1.0 if dropout else 0.0
    b = ACT_BYTES
    peak = hw.peak(cfg.dtype)
    peak_attn = hw.peak("bf16" if cfg.dtype == "fp8" and "bf16" in hw.peak_flops else cfg.dtype)
    bw = hw.hbm_Bps
    fp8 = cfg.dtype == "fp8"
    # A long run sustains only ``sustained_compute`` of the benchmark tensor-core throughput
    # (power-limited SM clock, see Efficiency); memory-bound kernels keep their HBM fraction.
    e_tc = sustained(e)
    # The operator library picks the FP8 class's fractions (MAMF, §16c) from the dtype; Transformer
    # Engine's casts are priced below, so the GEMMs leave out their own activation quantisation.
    gk = {"hw": hw, "dtype": cfg.dtype, "eff": e_tc, "act_bytes": b, "weight_bytes": WEIGHT_BYTES, "quantise": False}
    # GEMMs outside Transformer Engine's FP8 autocast (LM head, MoE router) run in BF16
    gk_bf16 = {**gk, "dtype": "bf16" if fp8 else cfg.dtype}

    micro = gb / (mb * dp)                         # microbatches per step per pipeline
    tokens = mb * seq / cp                          # tokens of one microbatch on one device
    sp_div = np.where(sp, tp, 1.0)
    # Expert tensor parallelism (Megatron ``--expert-tensor-parallel-size``; 0 = tp). With
    # parallel folding (MCore v0.10+, Liu et al. 2025 "MoE Parallel Folding") the MoE layers
    # regroup the tp*cp*dp ranks of a stage as ETP (innermost) x EP x expert-DP.
    etp = np.where(cfg.etp > 0, cfg.etp, cfg.tp).astype(f64)
    place = param_placement(s, tp, pp, ep, v, etp)
    n_s, n_moe = place.layers_per_stage, place.moe_per_stage
    n_dense = n_s - n_moe
    rc_layers = np.where(rc == 2, np.where(cfg.recompute_layers > 0,
                                           np.minimum(cfg.recompute_layers, n_s), n_s), 0.0)
    rc_frac = rc_layers / n_s                       # fraction of the stage's layers fully recomputed

    # ---- one decoder layer, forward, per microbatch -----------------------------------------
    g_o = gemm_time(tokens, s.h, s.o_in / tp, **gk)
    g_down = gemm_time(tokens, s.h, s.ffn / tp, **gk)
    g_attn = gemm_time(tokens, s.qkv_out / tp, s.h, **gk) + g_o
    g_mlp_dense = gemm_time(tokens, s.mlp_up / tp, s.h, **gk) + g_down
    # With userbuffers TP overlap the GEMMs next to a collective run in chunks (UB_RS_SPLITS).
    ub = np.where(cfg.tp > 1, 1.0, 0.0) if cfg.tp_comm_overlap else np.zeros_like(tp)
    ag_ch = np.where(ub > 0, tp, 1.0)
    rs_ch = ag_ch if fp8 else np.where(ub > 0, UB_RS_SPLITS, 1.0)
    sm_proj, sm_fc2 = (0.0, 0.0) if fp8 else (ub * UB_RS_SM_FRACTION_PROJ, ub * UB_RS_SM_FRACTION_FC2)

    def chunked(m, n, k, chunks, sm_frac=0.0):
        """``chunks`` GEMMs of m/chunks rows each, on the 1 - sm_frac of the SMs left to them."""
        return chunks * gemm_time(m / chunks, n, k, **gk) / (1.0 - sm_frac)

    g_attn_f = chunked(tokens, s.qkv_out / tp, s.h, ag_ch) + chunked(tokens, s.h, s.o_in / tp, rs_ch, sm_proj)
    g_mlp_f = chunked(tokens, s.mlp_up / tp, s.h, ag_ch) + chunked(tokens, s.h, s.ffn / tp, rs_ch, sm_fc2)
    # backward: wgrads and dgrads as 2 x forward, the dgrads of proj and FC2 in all-gather chunks
    g_attn_b = 2.0 * g_attn - g_o + chunked(tokens, s.o_in / tp, s.h, ag_ch)
    g_mlp_b = 2.0 * g_mlp_dense - g_down + chunked(tokens, s.ffn / tp, s.h, ag_ch)
    # MoE load imbalance: the most loaded expert-parallel rank receives 1/moe_balance times the
    # mean number of routed token slots and paces the expert GEMMs and the all-to-all.
    imb = 1.0 / e.moe_balance
    if s.moe_layers:
        sent = tokens * s.top_k * imb                           # routed token slots of this device's tokens
        # slots this device's expert shards process: every expert replica (1/etp of its width)
        # sees the slots of etp/tp of the tokens' owners; equal to ``sent`` when etp = tp
        slots = sent * etp / tp
        local_experts = s.experts / ep
        m_e = slots / local_experts                             # per-expert GEMM rows (grouped GEMM)
        g_mlp_moe = (gemm_time(tokens, s.experts, s.h, **gk_bf16)  # router (not FP8)
                     + _grouped_gemm(m_e, s.expert_up / etp, s.h, local_experts, hw=hw, dtype=cfg.dtype, eff=e_tc)
                     + _grouped_gemm(m_e, s.h, s.expert_ffn / etp, local_experts, hw=hw, dtype=cfg.dtype, eff=e_tc))
        if s.shared_ffn:
            g_mlp_moe = g_mlp_moe + (gemm_time(tokens, s.shared_up / tp, s.h, **gk)
                                     + gemm_time(tokens, s.h, s.shared_ffn / tp, **gk))
        ffn_elems_moe = slots * s.expert_ffn / etp + tokens * s.shared_ffn / tp
        permute_bytes = 4.0 * sent * s.h * b / sp_div     # permute/unpermute read+write
    else:
        g_mlp_moe = 0.0
        ffn_elems_moe = 0.0
        permute_bytes = 0.0

    # attention core (score elements of this device: its heads, its query chunk, all keys)
    score = mb * (s.heads / tp) * (seq / cp) * seq
    qkvo_bytes = tokens * (s.qk_dim * s.heads + s.kv_width + s.o_in) / tp * b
    if flash:
        # fused attention from the operator library (the prefill kernel without a KV cache); the
        # backward kernel does FLASH_BWD_RATIO x the work at FLASH_BWD_EFF_RATIO of the rate
        attn_f = prefill_attention_time(
            mb, seq / cp, seq, s.heads / tp, np.maximum(s.kv_width / (s.qk_dim + s.v_head) / tp, 1.0), s.qk_dim, hw,
            eff=e_tc, v_head_dim=s.v_head, causal_fraction=CAUSAL_FRACTION_FLASH, kv_cache=False)
        attn_b = (attn_f - e.attn_floor_s) * FLASH_BWD_RATIO / FLASH_BWD_EFF_RATIO + e.attn_floor_s
        # context parallel (Transformer Engine p2p ring): each of the cp steps merges its partial
        # output into an fp32 accumulator; the backward accumulates dq and dk/dv likewise.
        merge = CP_MERGE_BYTES * cp * tokens / tp
        attn_f = attn_f + np.where(cp > 1, memory_time(merge * s.o_in, bandwidth_Bps=bw, eff=e, launches=cp), 0.0)
        attn_b = attn_b + np.where(cp > 1, memory_time(merge * (s.qk_dim * s.heads + s.kv_width), bandwidth_Bps=bw,
                                                       eff=e, launches=2.0 * cp), 0.0)
        attn_sel = 0.0                              # the backward kernel already recomputes scores
    else:
        # Megatron 2021: two batched GEMMs around a fused scale-mask-softmax kernel and dropout.
        heads_mb = mb * s.heads / tp                # batched GEMMs: one tile grid per (sample, head)
        attn_dt = "bf16" if fp8 else cfg.dtype
        eff1 = gemm_efficiency(heads_mb * seq / cp, seq, s.qk_dim, hw, dtype=attn_dt, eff=e_tc)
        eff2 = gemm_efficiency(heads_mb * seq / cp, s.v_head, seq, hw, dtype=attn_dt, eff=e_tc)
        bmm1 = roofline_time(2.0 * score * s.qk_dim, score * b + qkvo_bytes / 2, peak_attn, eff1, bw, e.hbm,
                             e.kernel_launch_s)
        bmm2 = roofline_time(2.0 * score * s.v_head, score * b + qkvo_bytes / 2, peak_attn, eff2, bw, e.hbm,
                             e.kernel_launch_s)
        softmax_f = memory_time(score * (2.0 * b + drop * (2.0 * b + 1.0)), bandwidth_Bps=bw, eff=e,
                                launches=1.0 + drop)
        softmax_b = memory_time(score * (3.0 * b + drop * (2.0 * b + 1.0)), bandwidth_Bps=bw, eff=e,
                                launches=1.0 + drop)
        attn_f = bmm1 + bmm2 + softmax_f
        attn_b = 2.0 * (bmm1 + bmm2) + softmax_b
        attn_sel = attn_f

    # memory-bound ops: 2 norms (read+write), 2 residual adds with dropout (read x and residual,
    # write, mask), the MLP activation (read inputs, write output); with SP the h-sized ones are
    # sharded over TP.
    elem_h = tokens * (4.0 * b + 2.0 * (3.0 * b + drop)) * s.h / sp_div
    # Fused rotary embedding (Megatron ``apply_rope_fusion``) reads and writes q and k; none with
    # learned absolute positions; MLA rotates only its decoupled rope part.
    if model.learned_positions:
        rope_w = 0.0
    elif model.mla:
        rope_w = (s.heads + 1.0) * model.mla.qk_rope_head_dim / tp
    else:
        rope_w = (s.qk_dim * s.heads + s.kv_width / 2.0) / tp
    elem_h = elem_h + tokens * rope_w * 2.0 * b
    elem_dense = elem_h + tokens * (s.act_mult + 1.0) * b * s.ffn / tp
    elem_moe = elem_h + (s.act_mult + 1.0) * b * ffn_elems_moe + permute_bytes
    el_dense = memory_time(elem_dense, bandwidth_Bps=bw, eff=e, launches=ELEMENTWISE_LAUNCHES)
    el_moe = memory_time(elem_moe, bandwidth_Bps=bw, eff=e, launches=ELEMENTWISE_LAUNCHES) if s.moe_layers else 0.0
    if fp8:
        # Transformer Engine FP8 (Hopper): every GEMM input is cast bf16 -> fp8 in the forward
        # (read 2 B, write 1 B); in the backward the output gradient is cast and transposed
        # (read 2 B, write 2 x 1 B) and the saved fp8 input transposed for wgrad (read 1, write 1).
        # All three GEMMs of a linear layer (fprop, dgrad, wgrad) run in FP8: TE's recipes default to
        # ``override_linear_precision = (False, False, False)``; attention core, LM head (below) and
        # the MoE router stay BF16.
        # Current scaling (FP8-CS) first reduces each tensor's amax: one more 2-byte read; delayed
        # scaling takes the scale from the amax history and reduces amaxes asynchronously.
        cs = 1.0 if cfg.fp8_recipe == "current" else 0.0

        def casts(in_w, gout_w):
            fwd_b = tokens * (3.0 + 2.0 * cs) * in_w
            bwd_b = tokens * ((4.0 + 2.0 * cs) * gout_w + 2.0 * in_w)
            return (memory_time(fwd_b, bandwidth_Bps=bw, eff=e, launches=4.0) + 2.0 * amax_ar,
                    memory_time(bwd_b, bandwidth_Bps=bw, eff=e, launches=8.0) + 2.0 * amax_ar)

        # With sequence parallelism the inputs of the all-gathered GEMMs (QKV, FC1; backward: the
        # output gradients of proj and FC2) get one scale for the whole TP group: current scaling
        # all-reduces the amax over TP before casting (TE ``with_amax_reduction``, tp_group).
        amax_ar = cs * np.where(sp, collective_time("all_reduce", 4.0, tp, hw, 1.0), 0.0)
        cast_f_dense, cast_b_dense = casts(2.0 * s.h + (s.o_in + s.ffn) / tp, 2.0 * s.h + (s.qkv_out + s.mlp_up) / tp)
        if s.moe_layers:
            kk = s.top_k * imb
            cast_f_moe, cast_b_moe = casts(
                s.h * (1.0 + kk) + (s.o_in + kk * s.expert_ffn + s.shared_ffn) / tp + s.h,
                s.h * (1.0 + kk) + (s.qkv_out + kk * s.expert_up + s.shared_up) / tp + s.h)
        else:
            cast_f_moe = cast_b_moe = 0.0
    else:
        cast_f_dense = cast_b_dense = cast_f_moe = cast_b_moe = 0.0

    if hw.dataflow:
        # SN40L: a decoder layer is one fused on-chip pipeline; HBM sees the layer's weights and
        # its input/output only, so the layer is one roofline (Prabhakar et al., SN40L, 2024).
        w_dense = s.dense_layer_params / tp * WEIGHT_BYTES
        fl_dense = gemm_flops(tokens, s.qkv_out + s.o_in + s.mlp_up + s.ffn, s.h) / tp
        eff_l = gemm_efficiency(tokens, s.mlp_up / tp, s.h, hw, dtype=cfg.dtype, eff=e_tc)
        attn_fl = 2.0 * score * (s.qk_dim + s.v_head) * CAUSAL_FRACTION_FLASH
        io = 2.0 * tokens * s.h * b
        lay_f_dense = roofline_time(fl_dense + attn_fl, w_dense + io, peak, eff_l, bw, e.hbm, e.kernel_launch_s)
        lay_f_moe = 0.0
        if s.moe_layers:
            w_moe = (s.moe_layer_nonexpert_params / tp + s.moe_layer_expert_params / (ep * etp)) * WEIGHT_BYTES
            fl_moe = (gemm_flops(tokens, s.qkv_out + s.o_in + s.experts + s.shared_up + s.shared_ffn, s.h) / tp
                      + gemm_flops(slots, s.expert_up + s.expert_ffn, s.h) / etp)
            lay_f_moe = roofline_time(fl_moe + attn_fl, w_moe + io, peak, eff_l, bw, e.hbm, e.kernel_launch_s)
        lay_b_dense, lay_b_moe = 2.0 * lay_f_dense, 2.0 * lay_f_moe
        # the attention share of the fused layer is what can hide context-parallel transfers
        attn_f = lay_f_dense * attn_fl / (fl_dense + attn_fl)
        if s.moe_layers:
            attn_moe = lay_f_moe * attn_fl / (fl_moe + attn_fl)
            attn_f = (n_dense * attn_f + n_moe * attn_moe) / n_s
        attn_b = 2.0 * attn_f
        sel_dense = sel_moe = 0.0
        gemm_dense = lay_f_dense
        gemm_moe = lay_f_moe
    else:
        lay_f_dense = g_attn + g_mlp_dense + attn_f + el_dense + cast_f_dense
        lay_b_dense = 2.0 * (g_attn + g_mlp_dense) + attn_b + 2.0 * el_dense + cast_b_dense
        lay_f_moe = g_attn + g_mlp_moe + attn_f + el_moe + cast_f_moe if s.moe_layers else 0.0
        lay_b_moe = 2.0 * (g_attn + g_mlp_moe) + attn_b + 2.0 * el_moe + cast_b_moe if s.moe_layers else 0.0
        sel_dense = sel_moe = attn_sel
        gemm_dense = g_attn + g_mlp_dense
        gemm_moe = g_attn + g_mlp_moe

    # attention block of a layer (projections + core), forward and backward: the compute the EP
    # overlap pairs with the all-to-alls next to it (the rest of a MoE layer is its MLP block)
    att_f = attn_f + (0.0 if hw.dataflow else g_attn)
    att_b = attn_b + (0.0 if hw.dataflow else 2.0 * g_attn)
    sel = np.where(rc == 1, 1.0, 0.0)
    # per stage and microbatch: forward, backward (+ recompute forward before it)
    fwd = n_dense * lay_f_dense + n_moe * lay_f_moe
    rcmp = rc_frac * fwd + sel * (n_dense * sel_dense + n_moe * sel_moe)
    if s.mla_q_rank and not hw.dataflow:
        # selective recompute of MLA re-runs the Q and KV up-projections before the backward
        # (``mla_up_proj`` recompute module; memory in train_memory._layer_base)
        kv_lora = s.mla_kv_rank - (s.kv_width - s.mla_kv_up_out) / s.heads     # latent minus the rope key
        g_mla_up = (gemm_time(tokens, s.mla_q_up_out / tp, s.mla_q_rank, **gk)
                    + gemm_time(tokens, s.mla_kv_up_out / tp, kv_lora, **gk))
        rcmp = rcmp + sel * n_s * g_mla_up
    bwd = n_dense * lay_b_dense + n_moe * lay_b_moe + rcmp
    gemm_stage = n_dense * gemm_dense + n_moe * gemm_moe
    # extra GEMM time of the userbuffers chunking per stage and microbatch (forward, recomputed
    # forward, backward); charged to TP communication where the overlap is used (below)
    ub_attn_f, ub_attn_b = g_attn_f - g_attn, g_attn_b - 2.0 * g_attn
    ub_pen = (n_dense * ((ub_attn_f + g_mlp_f - g_mlp_dense) * (1.0 + rc_frac) + ub_attn_b + g_mlp_b
                         - 2.0 * g_mlp_dense)
              + n_moe * (ub_attn_f * (1.0 + rc_frac) + ub_attn_b))
    if hw.dataflow:
        ub_pen = np.zeros_like(tp)

    # embedding (first stage): gather rows (read + write b bytes/elem) forward, fp32 scatter-add
    # of the gradient (read + write 4 bytes/elem) backward.
    emb = memory_time(tokens * s.h * b * 2.0, bandwidth_Bps=bw, eff=e) \
        + memory_time(tokens * s.h * 4.0 * 2.0, bandwidth_Bps=bw, eff=e)
    # LM head GEMM (forward + 2 backward) and Megatron's vocab-parallel cross-entropy on fp32
    # logits: cast (write), max, exp-sum, loss (3 reads), softmax gradient (read + write): 7 x 4 B.
    # The output layer is Megatron's own ColumnParallelLinear, outside Transformer Engine's FP8
    # autocast (which wraps the decoder block only): it stays BF16 in an FP8 run.
    head_g = gemm_time(tokens, s.vocab / tp, s.h, **gk_bf16)
    ce_elems = tokens * s.vocab / tp
    head = 3.0 * head_g + memory_time(ce_elems * 4.0 * 7.0, bandwidth_Bps=bw, eff=e, launches=6.0)
    ends = np.where(pp > 1, np.maximum(emb, head), emb + head)
    compute_mb = fwd + bwd + ends

    # ---- tensor parallel ----------------------------------------------------------------------
    act = tokens * s.h * b
    if bool(np.any(cfg.tp > 1)):
        ag_tp = collective_time("all_gather", act, tp, hw, 1.0)   # reduce-scatter costs the same
        if bool(np.any(~sp & (cfg.tp > 1))):
            t_tp1 = np.where(sp, 2.0 * ag_tp, collective_time("all_reduce", act, tp, hw, 1.0))
        else:
            t_tp1 = 2.0 * ag_tp                           # one f/g conjugate pair's communication
    else:
        t_tp1 = ag_tp = np.zeros_like(tp)
    tp_stage = t_tp1 * n_s * (4.0 + 2.0 * rc_frac) + t_tp1 * np.where(pp > 1, 1.0, 2.0)
    if cfg.tp_comm_overlap:
        # TE userbuffers split each GEMM into tp chunks pipelined with a ring exchange
        # (all-gather chunks arrive while earlier ones multiply; reduce-scatter chunks leave as
        # they finish): the last chunk's transfer of each pipelined collective stays exposed.
        tp_ov = np.maximum(tp_stage - gemm_stage * (3.0 + rc_frac), tp_stage / np.maximum(tp, 1.0))
        # The chunked GEMMs (ub_pen) are the price of the overlap; the recipes pick the overlap
        # method per GEMM by tuning, so the overlap is kept only where it pays for itself.
        use_ov = tp_ov + ub_pen < tp_stage
        tp_mb = np.where(use_ov, tp_ov + ub_pen, tp_stage)
    else:
        tp_mb = tp_stage

    # ---- context parallel (ring attention: K/V chunks passed cp-1 times, overlapped) ----------
    if bool(np.any(cfg.cp > 1)):
        kv = tokens * s.kv_width / tp * b
        # a ring spanning nodes runs at the pace of its slowest (inter-node) hop
        ring = (cp - 1.0) * collective_time("p2p", kv, cp, hw, _slowest_hop(tp, cp, hw))
        cp_layer = np.maximum(ring - attn_f, 0.0) * (1.0 + rc_frac) + np.maximum(2.0 * ring - attn_b, 0.0)
        cp_mb = n_s * cp_layer
        # hidden parts: forward, and backward (which includes the recomputed forward)
        cp_hid_fwd = n_s * (ring - np.maximum(ring - attn_f, 0.0))
        cp_hid_bwd = n_s * ((2.0 * ring - np.maximum(2.0 * ring - attn_b, 0.0))
                            + (ring - np.maximum(ring - attn_f, 0.0)) * rc_frac)
    else:
        cp_mb = cp_hid_fwd = cp_hid_bwd = np.zeros_like(tp)

    # ---- expert parallel (dispatch + combine all-to-all, forward, backward, recompute) --------
    # Each rank dispatches its routed token slots (of its sequence-parallel shard) to the ranks
    # holding their experts and combines the results back: two all-to-alls per MoE layer in the
    # forward, two in the backward, two per recomputed forward, over the dp*cp ranks at stride tp.
    if s.moe_layers and bool(np.any(cfg.ep > 1)):
        a2a_bytes = sent * s.h * b / sp_div
        if cfg.moe_dispatcher == "deepep":
            a2a_bytes = a2a_bytes * _node_dedup(ep, etp, s.top_k, hw)
        a2a = collective_time("all_to_all", a2a_bytes, ep, _a2a_hw(hw), etp)
        ep_raw = n_moe * a2a * (4.0 + 2.0 * rc_frac)
        if cfg.ep_comm_overlap:
            # 1F1B A2A overlap (Megatron-Core ``combined_1f1b`` schedule, MCore v0.14, after
            # DualPipe, DeepSeek-V3 §3.2.1): each steady-state step runs one microbatch's forward
            # with another's backward, layer by layer, and each all-to-all hides behind one compute
            # block of the other direction: backward combine || forward attention, forward
            # dispatch || backward MLP, backward dispatch || forward MLP, forward combine ||
            # backward attention. Exposed per block pair = max(0, comm - compute), compute net of
            # what already hides TP/CP transfers; the hidden transfer keeps EP_COMM_SM_FRACTION
            # of the SMs busy. Never more than without the overlap.
            tp_hid = tp_stage - tp_mb
            net = np.clip(1.0 - (tp_hid + cp_hid_fwd + cp_hid_bwd) / np.maximum(fwd + bwd, 1e-30), 0.0, 1.0)
            mlp_f, mlp_b = np.maximum(lay_f_moe - att_f, 0.0) * net, np.maximum(lay_b_moe - att_b, 0.0) * net
            blocks = (att_f * net, mlp_b, mlp_f, att_b * net)
            hidden = e.ep_overlap * n_moe * sum(np.minimum(a2a, blk) for blk in blocks)
            steady = ep_raw - hidden * (1.0 - EP_COMM_SM_FRACTION)
            # Warm-up forwards and cool-down backwards run alone: p-1 per rank under 1F1B,
            # 2(p-1) + (v-1)p chunks on the first rank when interleaved, plus the one extra
            # warm-up microbatch the overlap schedules (Megatron ``schedules.py``); no pipeline:
            # the first forward and the last backward.
            warm = np.where(v > 1, 2.0 * (pp - 1.0) + (v - 1.0) * pp + 1.0, 1.0)
            frac = np.clip(1.0 - warm / (micro * v), 0.0, 1.0)
            # Megatron runs the overlap without a pipeline or with the interleaved schedule, and
            # not under full recomputation (``transformer_config.py`` asserts).
            applies = (rc != 2) & ((cfg.pp == 1) | (cfg.vpp > 1))
            ep_mb = np.where(applies, frac * steady + (1.0 - frac) * ep_raw, ep_raw)
            ep_cover = np.where(applies, frac * hidden, 0.0)      # compute time busy hiding EP
        else:
            ep_mb, ep_cover = ep_raw, np.zeros_like(tp)
    else:
        ep_mb = ep_cover = np.zeros_like(tp)

    stage_mb = compute_mb + tp_mb + cp_mb + ep_mb
    t_compute = micro * compute_mb
    t_tp, t_cp, t_ep = micro * tp_mb, micro * cp_mb, micro * ep_mb
    bubble = (pp - 1.0) / v * stage_mb

    # ---- pipeline p2p (scatter/gather: 1/tp of the activation over the network) -------------
    if bool(np.any(cfg.pp > 1)):
        p2p = collective_time("p2p", act / tp, pp, hw, _slowest_hop(tp * cp * dp, pp, hw))
        gather = np.where(sp, 0.0, ag_tp)
        t_pp = np.where(pp > 1, 2.0 * v * micro * (p2p + gather), 0.0)
        if cfg.overlap_p2p_comm:
            # Interleaved 1F1B hides the steady-phase transfers; the warm-up chunks of the first
            # rank, 2(p-1) + (v-1)p forward passes (Megatron-Core ``get_num_warmup_microbatches``
            # of the interleaved schedule), and as many backward ones in the flush stay exposed,
            # out of 2 v m chunk passes per step.
            warm = 2.0 * (pp - 1.0) + (v - 1.0) * pp
            exposed = np.where(v > 1, np.minimum(1.0, warm / np.maximum(v * micro, 1.0)), 1.0)
            t_pp = t_pp * exposed
    else:
        t_pp = np.zeros_like(tp)

    # ---- data parallel / ZeRO -----------------------------------------------------------------
    g_b = grad_bytes_per_param(cfg.dtype)
    dpcp = dp * cp
    edp = tp * dpcp / (ep * etp)                      # expert data-parallel size
    dense_p, expert_p = place.dense, place.expert
    sharded = zero >= 1

    def dp_collective(op, bytes_per_param):
        """``op`` over the dense DP group (dp*cp ranks, stride tp) and the expert DP group
        (tp*dp*cp/(ep*etp) ranks, stride etp*ep; Megatron's expert-data-parallel group)."""
        t = collective_time(op, dense_p * bytes_per_param, dpcp, hw, tp)
        if s.moe_layers:
            t = t + collective_time(op, expert_p * bytes_per_param, edp, hw, etp * ep)
        return t

    zeros = np.zeros_like(tp)
    any_sharded, any_plain = bool(np.any(sharded)), not bool(np.all(sharded))
    rs_grad = dp_collective("reduce_scatter", g_b) if any_sharded else zeros
    ar_grad = dp_collective("all_reduce", g_b) if any_plain else zeros
    t_grad = np.where(sharded, rs_grad, ar_grad)
    t_gather = np.where(sharded, dp_collective("all_gather", WEIGHT_BYTES), 0.0) if any_sharded else zeros
    bucket = np.minimum(1.0, DDP_BUCKET_PARAMS / np.maximum(place.total, 1.0))
    # Background traffic (DP/ZeRO collectives, offload transfers) hides behind compute that is not
    # already hiding TP/CP communication; all overlaps draw from the same windows (the whole step's
    # compute, the last microbatch's backward, the first microbatch's forward), so no compute time
    # is counted twice and a faster device or an extra overlap can only shorten the step.
    tp_hidden = tp_stage - tp_mb      # hidden behind forward (1) and backward + recompute (2 + rc) GEMMs
    hid_fwd = tp_hidden / (3.0 + rc_frac) + cp_hid_fwd
    hid_bwd = tp_hidden * (2.0 + rc_frac) / (3.0 + rc_frac) + cp_hid_bwd
    ep_cover_bwd = ep_cover * bwd / np.maximum(fwd + bwd, 1e-30)
    win_all = np.maximum(t_compute - micro * (hid_fwd + hid_bwd + ep_cover), 0.0)
    win_bwd = np.clip(bwd + np.where(pp > 1, 0.0, head) - hid_bwd - ep_cover_bwd, 0.0, None)
    win_fwd = np.clip(fwd - hid_fwd, 0.0, None)
    used = {"all": np.zeros_like(tp), "bwd": np.zeros_like(tp)}

    def hide(amount, enabled, window=None, floor_frac=0.0):
        """Exposed part of ``amount`` overlapped with ``window`` (and the step's free compute);
        ``floor_frac`` of it never hides (the last DDP bucket)."""
        if not enabled:
            return amount
        in_bwd = isinstance(window, str)
        room = win_all - used["all"]
        if in_bwd:
            room = np.minimum(room, win_bwd - used["bwd"])
        elif window is not None:
            room = np.minimum(room, window)
        hidden = np.minimum(amount * (1.0 - floor_frac), np.maximum(room, 0.0))
        used["all"] = used["all"] + hidden
        if in_bwd:
            used["bwd"] = used["bwd"] + hidden
        return amount - hidden

    is_z3 = zero >= 3
    # ZeRO-3: weights gathered for forward, backward and each recomputed forward, gradients
    # reduce-scattered, every microbatch (DeepSpeed stage 3 / FSDP); prefetch hides it behind compute.
    z3 = np.where(is_z3, micro * (t_gather * (2.0 + rc_frac) + t_grad), 0.0)
    # ZeRO-2 with a pipeline: every microbatch's gradients are reduce-scattered into the shard
    # (FSDP without no_sync, Llama 3 §3.3.2), hidden behind the whole step like ZeRO-3's traffic
    rs_every = (zero == 2) & (pp > 1)
    z3 = z3 + np.where(rs_every, micro * t_grad, 0.0)
    grad_exposed = hide(np.where(is_z3 | rs_every, 0.0, t_grad), cfg.overlap_grad_reduce, "bwd", bucket)
    gather_exposed = hide(np.where(is_z3, 0.0, t_gather), cfg.overlap_param_gather, win_fwd, bucket)
    z3_exposed = hide(z3, cfg.overlap_param_gather, None, bucket / np.maximum(micro, 1.0))
    t_dp = grad_exposed + gather_exposed + z3_exposed

    # ---- optimizer step and offload ------------------------------------------------------------
    shard = np.where(zero >= 1, dense_p / dpcp + expert_p / edp, place.total)
    t_opt_gpu = memory_time(shard * ADAM_BYTES_PER_PARAM, bandwidth_Bps=bw, eff=e, launches=4.0)
    ddr = hw.tier("ddr")
    host = hw.tier("host")
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
    xfer_exposed = hide(np.where(offloading, t_xfer_grad, 0.0), cfg.overlap_grad_reduce, "bwd")
    # optimizer+params: weights streamed in for forward, backward and recompute every microbatch
    stream = np.where(off >= 2, micro * place.total * WEIGHT_BYTES * (2.0 + rc_frac) / link_bw, 0.0)
    stream_exposed = hide(stream, True)
    t_optimizer = np.where(offloading, 0.0, t_opt_gpu)
    t_offload = np.where(offloading, t_opt_off + xfer_exposed + t_xfer_param, 0.0) + stream_exposed

    step = t_compute + t_tp + t_cp + t_ep + bubble + t_pp + t_dp + t_optimizer + t_offload

    # ---- throughput and FLOPs -------------------------------------------------------------------
    world = tp * pp * dp * cp
    step_tokens = gb * seq
    # Model FLOPs: 6 x matmul weights per token + attention over the full context, no causal
    # halving (PaLM, Chowdhery et al. 2022 App. B; Megatron SC21 eq. 3 counts the same way).
    model_flops = step_tokens * (6.0 * s.matmul_params_active + 3.0 * s.attn_flops_per_token_ctx * seq)
    body_fwd = 2.0 * (s.matmul_params_active - s.vocab * s.h) + s.attn_flops_per_token_ctx * seq
    attn_fwd = s.attn_flops_per_token_ctx * seq
    kv_lora_all = s.mla_kv_rank - ((s.kv_width - s.mla_kv_up_out) / s.heads if s.heads else 0.0)
    mla_up_flops = 2.0 * s.layers * (s.mla_q_rank * s.mla_q_up_out + kv_lora_all * s.mla_kv_up_out)
    recompute_flops = step_tokens * (rc_frac * body_fwd + (sel if not flash else 0.0) * attn_fwd
                                     + sel * mla_up_flops)
    hw_flops = model_flops + recompute_flops
    model_fpg = model_flops / step / world
    hw_fpg = hw_flops / step / world

    # ---- memory ------------------------------------------------------------------------------------
    shard_div = np.where(zero >= 1, 1.0, 0.0)
    w_total = place.total
    zshard = dense_p / dpcp + expert_p / edp
    weights = np.where(zero >= 3, zshard, w_total) * WEIGHT_BYTES
    weights = np.where(off >= 2, 2.0 * weights / n_s, weights)      # a prefetch window of 2 layers
    grads = np.where(zero >= 2, zshard, w_total) * g_b
    optim = np.where(off >= 1, 0.0, np.where(shard_div > 0, zshard, w_total) * OPTIMIZER_BYTES_PER_PARAM)
    acts = activation_bytes(s, micro_batch=mb, seq_len=seq, tp=tp, pp=pp, cp=cp, vpp=v, microbatches=micro,
                            sp=sp, recompute=rc, recompute_layers=cfg.recompute_layers, flash=flash,
                            dropout=dropout, layers_per_stage=n_s, act_bytes=b,
                            gemm_input_bytes=1.0 if fp8 else b, moe_imbalance=imb)
    live = weights + grads + optim + acts
    other = FRAMEWORK_BYTES + FRAGMENTATION * live
    total = live + other
    capacity = np.full_like(total, hw.hbm_bytes)
    fits = total <= capacity
    if host is not None or ddr is not None:
        tier = ddr if ddr is not None else host
        off_bytes = np.where(off >= 1, shard * OPTIMIZER_BYTES_PER_PARAM, 0.0) \
            + np.where(off >= 2, w_total * WEIGHT_BYTES, 0.0)
        fits &= off_bytes <= tier.capacity_bytes / max(tier.shared_by, 1)
    else:
        fits &= off == 0

    return TrainArrays(
        step_time_s=step, tokens_per_s=step_tokens / step, model_flops_per_gpu=model_fpg,
        hardware_flops_per_gpu=hw_fpg, mfu=model_fpg / peak, fits=fits,
        mem_weights=weights, mem_gradients=grads, mem_optimizer=optim, mem_activations=acts, mem_other=other,
        mem_total=total, capacity=capacity,
        t_compute=t_compute, t_tp_comm=t_tp, t_cp_comm=t_cp, t_ep_comm=t_ep, t_pp_bubble=bubble, t_pp_comm=t_pp,
        t_dp_comm=t_dp, t_optimizer=t_optimizer, t_offload=t_offload,
    )
