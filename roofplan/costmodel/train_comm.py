"""Communication terms of the training step: one function each for TP, CP, EP, PP and DP/ZeRO, and
the overlap budget the background traffic draws from.

All use :func:`roofplan.costmodel.collectives.collective_time` with Megatron's rank order (TP
stride 1, CP stride tp, PP stride tp*cp*dp; the gradient group is the dp*cp ranks at stride tp;
EP groups reuse those ranks at stride tp, expert gradients reduce over dp*cp/ep ranks at stride
tp*ep; a ring or pipeline spanning nodes is paced by its inter-node hop). Each term returns the
exposed seconds per micro-batch (TP, CP, EP) or per step (PP, DP) and what it hides behind, so
that :class:`OverlapBudget` never counts one second of compute twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.collectives import collective_time, group_layout
from roofplan.costmodel.train_memory import fsdp_under_pipeline, grad_bytes_per_param
from roofplan.costmodel.train_ops import (
    ACT_BYTES,
    LAYER_SHAPE_FIELDS,
    WEIGHT_BYTES,
    LayerOps,
    StageCompute,
    StepLanes,
)
from roofplan.hardware.spec import DeviceSpec

#: Megatron DDP gradient bucket (``--ddp-bucket-size`` default 40M elements): the last bucket's
#: reduce cannot overlap with backward.
DDP_BUCKET_PARAMS = 40e6
#: Fraction of the SMs that the expert-parallel all-to-all kernels occupy while they overlap with
#: computation: 20 of the 132 SMs of an H800/H100 (DeepSeek-V3 report, arXiv 2412.19437 §3.2.2:
#: "only 20 SMs are sufficient to fully utilize the bandwidths of IB and NVLink"; Megatron-Bridge
#: sets DeepEP to 20 SMs when the EP overlap is on). Overlapped computation runs on the rest, so
#: each hidden second of all-to-all still costs this fraction of a second of compute.
EP_COMM_SM_FRACTION = 20.0 / 132.0


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


@dataclass
class TPComm:
    """Tensor-parallel communication per stage and micro-batch: raw, exposed (after userbuffers
    overlap), and one all-gather of a layer's activation (the PP gather reuses it)."""

    raw: object
    exposed: object
    all_gather: object

    @property
    def hidden(self):
        return self.raw - self.exposed


def _tp_pair(L: StepLanes):
    """(one f/g conjugate pair's communication, the same inside a decoder layer, one all-gather of
    a layer's activation) per micro-batch: all-reduce, or reduce-scatter + all-gather with SP.
    Reads only the layer shape (:data:`~roofplan.costmodel.train_ops.LAYER_SHAPE_FIELDS`)."""
    tp, sp, hw = L.tp, L.sp, L.hw
    act = L.tokens * L.s.h * ACT_BYTES
    if bool(np.any(L.cfg.tp > 1)):
        ag_tp = collective_time("all_gather", act, tp, hw, 1.0)  # reduce-scatter costs the same
        if bool(np.any(~sp & (L.cfg.tp > 1))):
            t_tp1 = np.where(sp, 2.0 * ag_tp, collective_time("all_reduce", act, tp, hw, 1.0))
        else:
            t_tp1 = 2.0 * ag_tp  # one f/g conjugate pair's communication
    else:
        t_tp1 = ag_tp = np.zeros_like(tp)
    t_layer = t_tp1
    if L.fp8 and bool(np.any(sp)):
        # FP8 with sequence parallelism: the all-gather of each pair moves the FP8 cast of the
        # shard (1 byte, see train_ops.fp8_casts); the reduce-scatter stays BF16. The embedding
        # and LM head pair (outside the FP8 autocast) stays BF16.
        ag8 = collective_time("all_gather", act * 0.5, tp, hw, 1.0)
        t_layer = np.where(sp, ag8 + ag_tp, t_tp1)
    return t_tp1, t_layer, ag_tp


def tp_comm(L: StepLanes, sc: StageCompute) -> TPComm:
    """TP all-reduce (or reduce-scatter + all-gather with SP) 2x forward, 2x backward, 2x per
    recomputed forward per layer, plus the ends. With ``--tp-comm-overlap`` Transformer Engine's
    userbuffers split each GEMM into tp chunks pipelined with a ring exchange (all-gather chunks
    arrive while earlier ones multiply; reduce-scatter chunks leave as they finish): the last
    chunk's transfer of each pipelined collective stays exposed. The chunked GEMMs (``ub_pen``)
    are the price of the overlap; the recipes pick the overlap method per GEMM by tuning, so the
    overlap is kept only where it pays for itself."""
    t_tp1, t_layer, ag_tp = L.distinct(LAYER_SHAPE_FIELDS).each(_tp_pair)
    tp_stage = t_layer * L.n_s * (4.0 + 2.0 * L.rc_frac) + t_tp1 * np.where(L.pp > 1, 1.0, 2.0)
    if not L.cfg.tp_comm_overlap:
        return TPComm(raw=tp_stage, exposed=tp_stage, all_gather=ag_tp)
    tp_ov = np.maximum(tp_stage - sc.gemm_stage * (3.0 + L.rc_frac), tp_stage / np.maximum(L.tp, 1.0))
    use_ov = tp_ov + sc.ub_pen < tp_stage
    return TPComm(raw=tp_stage, exposed=np.where(use_ov, tp_ov + sc.ub_pen, tp_stage), all_gather=ag_tp)


@dataclass
class CPComm:
    """Context-parallel ring exposed per micro-batch, and the parts hidden in forward/backward."""

    exposed: object
    hid_fwd: object
    hid_bwd: object


def _cp_ring(L: StepLanes):
    """Seconds of one layer's K/V ring pass (cp-1 p2p steps at the slowest hop's pace); reads only
    the layer shape."""
    cp, tp = L.cp, L.tp
    kv = L.tokens * L.s.kv_width / tp * ACT_BYTES
    return (cp - 1.0) * collective_time("p2p", kv, cp, L.hw, _slowest_hop(tp, cp, L.hw))


def cp_comm(L: StepLanes, sc: StageCompute) -> CPComm:
    """Ring attention: K/V chunks passed cp-1 times, overlapped with the attention core; a ring
    spanning nodes runs at the pace of its slowest (inter-node) hop. Backward passes twice the
    bytes (K/V and their gradients) and recomputed forwards pass them again."""
    zero = np.zeros_like(L.tp)
    if not bool(np.any(L.cfg.cp > 1)):
        return CPComm(zero, zero, zero)
    ring = L.distinct(LAYER_SHAPE_FIELDS).each(_cp_ring)
    exp_f, exp_b = np.maximum(ring - sc.attn_f, 0.0), np.maximum(2.0 * ring - sc.attn_b, 0.0)
    return CPComm(
        exposed=L.n_s * (exp_f * (1.0 + L.rc_frac) + exp_b),
        hid_fwd=L.n_s * (ring - exp_f),
        hid_bwd=L.n_s * ((2.0 * ring - exp_b) + (ring - exp_f) * L.rc_frac),
    )


def ep_comm(L: StepLanes, ops: LayerOps, sc: StageCompute, tp: TPComm, cp: CPComm):
    """Expert-parallel dispatch + combine all-to-all per micro-batch; returns (exposed, compute
    busy hiding it).

    Each rank dispatches its routed token slots (of its sequence-parallel shard) to the ranks
    holding their experts and combines the results back: two all-to-alls per MoE layer in the
    forward, two in the backward, two per recomputed forward, over the dp*cp ranks at stride tp
    (per-node deduplicated with DeepEP).

    With the 1F1B A2A overlap (Megatron-Core ``combined_1f1b`` schedule, MCore v0.14, after
    DualPipe, DeepSeek-V3 §3.2.1) each steady-state step runs one micro-batch's forward with
    another's backward, layer by layer, and each all-to-all hides behind one compute block of the
    other direction: backward combine || forward attention, forward dispatch || backward MLP,
    backward dispatch || forward MLP, forward combine || backward attention. Exposed per block
    pair = max(0, comm - compute), compute net of what already hides TP/CP transfers; the hidden
    transfer keeps EP_COMM_SM_FRACTION of the SMs busy. Never more than without the overlap.
    """
    zero = np.zeros_like(L.tp)
    s, cfg = L.s, L.cfg
    if not (s.moe_layers and bool(np.any(cfg.ep > 1))):
        return zero, zero
    a2a_bytes = ops.moe_sent * s.h * ACT_BYTES / L.sp_div
    if cfg.moe_dispatcher == "deepep":
        a2a_bytes = a2a_bytes * _node_dedup(L.ep, L.etp, s.top_k, L.hw)
    a2a = collective_time("all_to_all", a2a_bytes, L.ep, _a2a_hw(L.hw), L.etp)
    ep_raw = L.n_moe * a2a * (4.0 + 2.0 * L.rc_frac)
    if not cfg.ep_comm_overlap:
        return ep_raw, zero
    net = np.clip(1.0 - (tp.hidden + cp.hid_fwd + cp.hid_bwd) / np.maximum(sc.fwd + sc.bwd, 1e-30), 0.0, 1.0)
    mlp_f, mlp_b = (
        np.maximum(sc.lay_f_moe - sc.att_f, 0.0) * net,
        np.maximum(sc.lay_b_moe - sc.att_b, 0.0) * net,
    )
    blocks = (sc.att_f * net, mlp_b, mlp_f, sc.att_b * net)
    hidden = L.e.ep_overlap * L.n_moe * sum(np.minimum(a2a, blk) for blk in blocks)
    steady = ep_raw - hidden * (1.0 - EP_COMM_SM_FRACTION)
    # Warm-up forwards and cool-down backwards run alone: p-1 per rank under 1F1B, 2(p-1) +
    # (v-1)p chunks on the first rank when interleaved, plus the one extra warm-up micro-batch the
    # overlap schedules (Megatron ``schedules.py``); no pipeline: the first forward and last backward.
    pp, v = L.pp, L.v
    warm = np.where(v > 1, 2.0 * (pp - 1.0) + (v - 1.0) * pp + 1.0, 1.0)
    frac = np.clip(1.0 - warm / (L.micro * v), 0.0, 1.0)
    # Megatron runs the overlap without a pipeline or with the interleaved schedule, and not
    # under full recomputation (``transformer_config.py`` asserts).
    applies = (cfg.recompute != 2) & ((cfg.pp == 1) | (cfg.vpp > 1))
    return (
        np.where(applies, frac * steady + (1.0 - frac) * ep_raw, ep_raw),
        np.where(applies, frac * hidden, 0.0),
    )


def pp_comm(L: StepLanes, tp: TPComm):
    """Pipeline p2p of the boundary activations per step (SC21 scatter/gather: 1/tp of the
    activation over the network, then an all-gather over NVLink without SP), forward and backward
    of every chunk. With ``--overlap-p2p-communication`` interleaved 1F1B hides the steady-phase
    transfers; the warm-up chunks of the first rank, 2(p-1) + (v-1)p forward passes (Megatron-Core
    ``get_num_warmup_microbatches`` of the interleaved schedule), and as many backward ones in the
    flush stay exposed, out of 2 v m chunk passes per step."""
    pp, v = L.pp, L.v
    if not bool(np.any(L.cfg.pp > 1)):
        return np.zeros_like(L.tp)
    act = L.tokens * L.s.h * ACT_BYTES
    # DeepSpeed's PipelineEngine does the same (``is_pipe_partitioned = is_model_parallel``: a
    # PartitionedTensor of 1/tp is sent and all-gathered on arrival)
    p2p = collective_time("p2p", act / L.tp, pp, L.hw, _slowest_hop(L.tp * L.cp * L.dp, pp, L.hw))
    gather = np.where(L.sp, 0.0, tp.all_gather)
    t_pp = np.where(pp > 1, 2.0 * v * L.micro * (p2p + gather), 0.0)
    if L.cfg.overlap_p2p_comm:
        warm = 2.0 * (pp - 1.0) + (v - 1.0) * pp
        t_pp = t_pp * np.where(v > 1, np.minimum(1.0, warm / np.maximum(v * L.micro, 1.0)), 1.0)
    return t_pp


class OverlapBudget:
    """The compute windows background traffic (DP/ZeRO collectives, offload transfers) hides in.

    Background traffic hides behind compute that is not already hiding TP/CP/EP communication;
    all overlaps draw from the same windows (the whole step's compute, the last micro-batch's
    backward, the first micro-batch's forward), so no compute time is counted twice and a faster
    device or an extra overlap can only shorten the step.
    """

    def __init__(self, L: StepLanes, sc: StageCompute, tp: TPComm, cp: CPComm, ep_cover, t_compute):
        hidden = tp.hidden  # behind forward (1) and backward + recompute (2 + rc) GEMMs
        hid_fwd = hidden / (3.0 + L.rc_frac) + cp.hid_fwd
        hid_bwd = hidden * (2.0 + L.rc_frac) / (3.0 + L.rc_frac) + cp.hid_bwd
        ep_cover_bwd = ep_cover * sc.bwd / np.maximum(sc.fwd + sc.bwd, 1e-30)
        self.all = np.maximum(t_compute - L.micro * (hid_fwd + hid_bwd + ep_cover), 0.0)
        bwd = np.clip(sc.bwd + np.where(L.pp > 1, 0.0, sc.head) - hid_bwd - ep_cover_bwd, 0.0, None)
        fwd = np.clip(sc.fwd - hid_fwd, 0.0, None)
        # Interleaved schedule: each of the v model chunks syncs on its own. Megatron-Core
        # (``schedules.py`` forward_backward_pipelining_with_interleaving: ``grad_sync_func`` /
        # ``param_sync_func`` per model chunk) launches a chunk's gradient reduce-scatter as soon
        # as its last backward is done, and prefetches the next chunk's parameter all-gather at
        # its first forward. On the first rank backward runs chunk by chunk in groups of p
        # micro-batches, so chunk k's last backward is followed by k p more chunk backwards, and
        # chunk k's first forward comes after k p chunk forwards. The first-synced chunks'
        # (v-1)/v of the traffic hides behind those ((v-1) p - 1 chunk passes of 1/v of a stage);
        # the last chunk's 1/v has only its own pass (``fwd``/``bwd`` windows, 1/v of a stage).
        v = L.v
        self.chunked = v > 1
        self.early_frac = (v - 1.0) / v
        self.bwd_early = np.maximum((v - 1.0) * L.pp - 1.0, 0.0) / v * bwd
        self.fwd_early = np.maximum((v - 1.0) * L.pp - 1.0, 0.0) / v * fwd
        self.bwd = bwd / v
        self.fwd = fwd / v
        self.used_all = np.zeros_like(L.tp)
        self.used_bwd = np.zeros_like(L.tp)

    def hide(self, amount, enabled, window=None, floor_frac=0.0):
        """Exposed part of ``amount`` overlapped with ``window`` ("bwd": the last backward, an
        array: that window, None: the step's free compute); ``floor_frac`` of it never hides (the
        last DDP bucket)."""
        if not enabled:
            return amount
        in_bwd = isinstance(window, str)
        room = self.all - self.used_all  # a fresh array: the steps below work in place
        if in_bwd:
            np.minimum(room, self.bwd - self.used_bwd, out=room)
        elif window is not None:
            np.minimum(room, window, out=room)
        hideable = (
            amount if isinstance(floor_frac, float) and floor_frac == 0.0 else amount * (1.0 - floor_frac)
        )
        hidden = np.minimum(hideable, np.maximum(room, 0.0, out=room), out=room)
        self.used_all += hidden
        if in_bwd:
            self.used_bwd += hidden
        return amount - hidden


#: The :class:`TrainConfigs` lanes the data-parallel collectives read: the parameters on a device
#: (tp, pp, vpp, ep, etp) and the dense and expert DP groups (dp, cp).
PLACEMENT_FIELDS = ("tp", "pp", "vpp", "dp", "cp", "ep", "etp")


def _dp_collective(L: StepLanes, op: str, bytes_per_param):
    """``op`` over the dense DP group (dp*cp ranks, stride tp) and the expert DP group
    (tp*dp*cp/(ep*etp) ranks, stride etp*ep; Megatron's expert-data-parallel group), evaluated once
    per distinct placement (:data:`PLACEMENT_FIELDS`)."""
    return L.distinct(PLACEMENT_FIELDS).each(_dp_collective_lanes, op, bytes_per_param)


def _dp_collective_lanes(L: StepLanes, op: str, bytes_per_param):
    """:func:`_dp_collective` on every lane of ``L``."""
    t = collective_time(op, L.place.dense * bytes_per_param, L.dp * L.cp, L.hw, L.tp)
    if L.s.moe_layers:
        t = t + collective_time(op, L.place.expert * bytes_per_param, expert_dp(L), L.hw, L.etp * L.ep)
    return t


def expert_dp(L: StepLanes):
    """Expert data-parallel size: tp*dp*cp / (ep*etp)."""
    return L.tp * (L.dp * L.cp) / (L.ep * L.etp)


def dp_comm(L: StepLanes, budget: OverlapBudget):
    """Exposed DP gradient all-reduce, or ZeRO reduce-scatter + all-gather, or ZeRO-3 gathers per
    micro-batch, per step, after hiding what the budget allows."""
    cfg, zero, micro = L.cfg, L.cfg.zero, L.micro
    g_b = grad_bytes_per_param(cfg.dtype, cfg.grad_reduce_in_fp32)
    # DeepSpeed's PipelineEngine reduces after the last micro-batch (``ReduceGrads``), and its
    # ZeRO-1 all-gathers the updated parameters after the optimizer step: nothing overlaps.
    overlap_grad = cfg.overlap_grad_reduce and cfg.pipeline_engine != "deepspeed"
    overlap_gather = cfg.overlap_param_gather and cfg.pipeline_engine != "deepspeed"
    sharded = zero >= 1
    zeros = np.zeros_like(L.tp)
    any_sharded, any_plain = bool(np.any(sharded)), not bool(np.all(sharded))
    rs_grad = _dp_collective(L, "reduce_scatter", g_b) if any_sharded else zeros
    ar_grad = _dp_collective(L, "all_reduce", g_b) if any_plain else zeros
    t_grad = np.where(sharded, rs_grad, ar_grad)
    t_gather = np.where(sharded, _dp_collective(L, "all_gather", WEIGHT_BYTES), 0.0) if any_sharded else zeros
    bucket = np.minimum(1.0, DDP_BUCKET_PARAMS / np.maximum(L.place.total, 1.0))
    # FSDP2 under a pipeline (fsdp_under_pipeline): one all-gather per step, hidden behind the first
    # forward like ZeRO-1's, and one reduce-scatter after the stage's last backward, exposed
    fsdp_pp = fsdp_under_pipeline(zero, L.pp)
    fsdp_rs = np.where(fsdp_pp, t_grad, 0.0)
    is_z3 = (zero >= 3) & ~fsdp_pp
    # ZeRO-3: weights gathered for forward, backward and each recomputed forward, gradients
    # reduce-scattered, every micro-batch (DeepSpeed stage 3 / FSDP); prefetch hides it behind compute.
    z3 = np.where(is_z3, micro * (t_gather * (2.0 + L.rc_frac) + t_grad), 0.0)
    # ZeRO-2 with a pipeline: every micro-batch's gradients are reduce-scattered into the shard
    # (FSDP without no_sync, Llama 3 §3.3.2), hidden behind the whole step like ZeRO-3's traffic
    rs_every = (zero == 2) & (L.pp > 1)
    z3 = z3 + np.where(rs_every, micro * t_grad, 0.0)
    grad = np.where(is_z3 | rs_every | fsdp_pp, 0.0, t_grad)
    gather = np.where(is_z3, 0.0, t_gather)
    if bool(np.any(budget.chunked)):
        # the first-synced chunks of an interleaved pipeline (OverlapBudget); v = 1 leaves all to the last
        early = np.where(budget.chunked, budget.early_frac, 0.0)
        grad_early = budget.hide(grad * early, overlap_grad, budget.bwd_early)
        gather_early = budget.hide(gather * early, overlap_gather, budget.fwd_early)
        grad, gather = grad * (1.0 - early), gather * (1.0 - early)
    else:
        grad_early = gather_early = 0.0
    grad_exposed = grad_early + budget.hide(grad, overlap_grad, "bwd", bucket)
    gather_exposed = gather_early + budget.hide(gather, overlap_gather, budget.fwd, bucket)
    z3_exposed = budget.hide(z3, cfg.overlap_param_gather, None, bucket / np.maximum(micro, 1.0))
    return grad_exposed + gather_exposed + z3_exposed + fsdp_rs + tied_embedding_comm(L, g_b)


def tied_embedding_comm(L: StepLanes, g_b: float):
    """All-reduce of a tied embedding's gradients between the first and the last pipeline stage,
    after the pipeline flush and outside any overlap (Megatron-Core ``finalize_model_grads``
    ``_allreduce_word_embedding_grads``; DeepSpeed ``ReduceTiedGrads``): vocab x h / tp gradients
    over the 2 ranks (p-1) x tp*cp*dp apart."""
    if not (L.s.tied and bool(np.any(L.cfg.pp > 1))):
        return 0.0
    nbytes = L.s.vocab * L.s.h / L.tp * g_b
    stride = (L.pp - 1.0) * L.tp * L.cp * L.dp
    return np.where(L.pp > 1, collective_time("all_reduce", nbytes, 2.0, L.hw, stride), 0.0)
