"""Per-layer op table of the training step: every GEMM, attention core, MoE and memory-bound op of a
decoder layer, named, timed with the operator library (:mod:`roofplan.costmodel.ops`).

One micro-batch on one device, one lane per configuration (struct of arrays). :func:`step_lanes`
derives once, from a model, a device and the configurations, the arrays every term reads
(:class:`StepLanes`); :func:`layer_ops` builds the :class:`LayerOps` table. The table keeps every
op's time under its name and, on demand (:meth:`LayerOps.table`), its FLOPs and HBM bytes, so a
breakdown can name what a layer spends its time on. The step evaluates the table once per distinct
layer shape (:func:`layer_ops_by_shape`, :meth:`StepLanes.distinct`). Sources of each formula are in
the docstrings below and in :mod:`roofplan.costmodel.train_time`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel import linear_mixer
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.lanes import distinct_rows
from roofplan.costmodel.ops import (
    balanced_token_tiles,
    gemm_efficiency,
    gemm_time,
    grouped_gemm_time,
    has_grouped_moe_model,
    prefill_attention_time,
)
from roofplan.costmodel.roofline import gemm_bytes, gemm_flops, memory_time, roofline_time, sustained
from roofplan.costmodel.shapes import ModelShapes, model_shapes
from roofplan.costmodel.train_configs import TrainConfigs
from roofplan.costmodel.train_memory import ParamPlacement, param_placement
from roofplan.hardware.spec import DeviceSpec, Efficiency
from roofplan.models.spec import ModelSpec

#: Bytes of one weight element in device memory. fp8 training keeps bf16 weights and casts per
#: GEMM (Transformer Engine), so fp8 changes GEMM peak, not storage.
WEIGHT_BYTES = 2.0
#: Bytes of one stored activation element (bf16/fp16; TE's fp8 keeps bf16 layer I/O).
ACT_BYTES = 2.0
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


@dataclass
class StepLanes:
    """Everything the step's terms read, derived once per call: the model's shapes, the device,
    the configurations as float lanes, and the per-configuration counts (micro-batches, tokens per
    device, layers per stage, recomputed fraction)."""

    s: ModelShapes
    model: ModelSpec
    hw: DeviceSpec
    cfg: TrainConfigs
    e: Efficiency  # the device's efficiency (memory-bound kernels keep their HBM fraction)
    e_tc: Efficiency  # tensor-core kernels at ``sustained_compute`` (power-limited clocks)
    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    cp: np.ndarray
    ep: np.ndarray
    v: np.ndarray
    mb: np.ndarray
    gb: np.ndarray
    seq: np.ndarray
    etp: np.ndarray  # expert tensor parallelism (0 in the config = tp)
    sp: np.ndarray  # sequence parallelism on (and tp > 1)
    micro: np.ndarray  # micro-batches per step per pipeline
    tokens: np.ndarray  # tokens of one micro-batch on one device
    sp_div: np.ndarray  # tp where sequence parallelism shards the h-sized tensors, else 1
    place: ParamPlacement
    n_s: np.ndarray  # layers per stage (most loaded)
    n_moe: np.ndarray
    n_dense: np.ndarray
    rc_frac: np.ndarray  # fraction of the stage's layers fully recomputed
    sel: np.ndarray  # 1 where selective recompute is on
    fp8: bool
    flash: bool
    dropout: bool
    imb: float  # MoE load imbalance: hottest rank's slots over the mean
    gk: dict = field(repr=False)
    gk_bf16: dict = field(repr=False)
    _distinct: dict = field(default_factory=dict, repr=False)  # Distinct by knob names (cache)

    @property
    def bw(self) -> float:
        return self.hw.hbm_Bps

    @property
    def drop(self) -> float:
        return 1.0 if self.dropout else 0.0

    def mem(self, nbytes, launches=1.0):
        """A memory-bound kernel moving ``nbytes`` HBM bytes (roofline.memory_time)."""
        return memory_time(nbytes, bandwidth_Bps=self.bw, eff=self.e, launches=launches)

    def distinct(self, knobs: tuple[str, ...]) -> Distinct:
        """The distinct values of the :class:`TrainConfigs` columns ``knobs`` as lanes of their own
        (:class:`Distinct`), built once per call of the step and shared by the terms that read
        only those knobs."""
        if knobs not in self._distinct:
            # a grouping by some of these knobs stands for them in one column (its rows)
            known = [k for k, d in self._distinct.items() if d.row is not None and set(k) <= set(knobs)]
            base = max(known, key=len, default=())
            columns = [self._distinct[base].row] if base else []
            rep, row = distinct_rows(columns + [getattr(self.cfg, k) for k in knobs if k not in base])
            if 2 * len(rep) > len(row):  # little is repeated: gathering would not pay
                self._distinct[knobs] = Distinct(self, None)
            else:
                self._distinct[knobs] = Distinct(step_lanes(self.model, self.hw, self.cfg.take(rep)), row)
        return self._distinct[knobs]


@dataclass
class Distinct:
    """A term evaluated once per distinct value of a few knobs and gathered back to every lane.

    ``lanes`` holds one lane per distinct row of the knobs, ``row`` the row of each lane of the
    full :class:`StepLanes` (None: ``lanes`` is the full one). numpy arithmetic is elementwise, so
    a term that reads only those knobs gives every lane exactly the number it would have computed
    on its own; the terms that use this name the knobs they read (:data:`LAYER_SHAPE_FIELDS`,
    ``train_comm.PLACEMENT_FIELDS``), and ``tests/test_train_lanes.py`` checks it bit for bit."""

    lanes: StepLanes
    row: np.ndarray | None

    def gather(self, x):
        """``x`` (one value per distinct row, or a scalar) at every lane."""
        if self.row is None or not isinstance(x, np.ndarray) or x.ndim != 1:
            return x
        return x[self.row]

    def each(self, term, *args):
        """``term(lanes, *args)`` gathered to every lane (each element of a returned tuple)."""
        out = term(self.lanes, *args)
        return tuple(map(self.gather, out)) if isinstance(out, tuple) else self.gather(out)


def _hw_for(hw: DeviceSpec, cfg: TrainConfigs) -> DeviceSpec:
    if cfg.gpus_per_node and cfg.gpus_per_node != hw.devices_per_node:
        return dataclasses.replace(hw, devices_per_node=int(cfg.gpus_per_node))
    return hw


def step_lanes(model: ModelSpec, hw: DeviceSpec, cfg: TrainConfigs) -> StepLanes:
    """Derive the lanes of ``cfg`` on ``hw`` for ``model`` (pure)."""
    s = model_shapes(model)
    hw = _hw_for(hw, cfg)
    f64 = np.float64
    tp, pp, dp = cfg.tp.astype(f64), cfg.pp.astype(f64), cfg.dp.astype(f64)
    cp, ep, v = cfg.cp.astype(f64), cfg.ep.astype(f64), cfg.vpp.astype(f64)
    mb, gb, seq = cfg.micro_batch.astype(f64), cfg.global_batch.astype(f64), cfg.seq_len.astype(f64)
    sp = cfg.sequence_parallel & (cfg.tp > 1)
    rc = cfg.recompute
    fp8 = cfg.dtype == "fp8"
    e_tc = sustained(hw.efficiency)
    # The operator library picks the FP8 class's fractions (MAMF, §16c) from the dtype; Transformer
    # Engine's casts are priced in :func:`fp8_casts`, so the GEMMs leave out their own quantisation.
    gk = {
        "hw": hw,
        "dtype": cfg.dtype,
        "eff": e_tc,
        "act_bytes": ACT_BYTES,
        "weight_bytes": WEIGHT_BYTES,
        "quantise": False,
    }
    # Parallel folding (MCore v0.10+, Liu et al. 2025 "MoE Parallel Folding"): the MoE layers
    # regroup the tp*cp*dp ranks of a stage as ETP (innermost) x EP x expert-DP.
    etp = np.where(cfg.etp > 0, cfg.etp, cfg.tp).astype(f64)
    place = param_placement(s, tp, pp, ep, v, etp)
    n_s, n_moe = place.layers_per_stage, place.moe_per_stage
    rc_layers = np.where(
        rc == 2, np.where(cfg.recompute_layers > 0, np.minimum(cfg.recompute_layers, n_s), n_s), 0.0
    )
    return StepLanes(
        s=s,
        model=model,
        hw=hw,
        cfg=cfg,
        e=hw.efficiency,
        e_tc=e_tc,
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=ep,
        v=v,
        mb=mb,
        gb=gb,
        seq=seq,
        etp=etp,
        sp=sp,
        micro=gb / (mb * dp),
        tokens=mb * seq / cp,
        sp_div=np.where(sp, tp, 1.0),
        place=place,
        n_s=n_s,
        n_moe=n_moe,
        n_dense=n_s - n_moe,
        rc_frac=rc_layers / n_s,
        sel=np.where(rc == 1, 1.0, 0.0),
        fp8=fp8,
        flash=bool(cfg.flash_attention),
        dropout=model.linear_bias if cfg.dropout is None else bool(cfg.dropout),
        imb=1.0 / hw.efficiency.moe_balance,
        gk=gk,
        # GEMMs outside Transformer Engine's FP8 autocast (LM head, MoE router) run in BF16
        gk_bf16={**gk, "dtype": "bf16" if fp8 else cfg.dtype},
    )


@dataclass
class LayerOps:
    """Forward time of each named op of one decoder layer (one micro-batch, one device), plus the
    backward and chunked variants the step composes. ``gemm_shapes`` keeps (m, n, k, count) of
    every GEMM and ``mem_bytes`` the HBM bytes of every memory-bound op, for :meth:`table`."""

    qkv: object
    o_proj: object
    mlp_up: object
    mlp_down: object
    moe_mlp: object = 0.0  # router + routed experts (grouped) + shared experts
    router: object = 0.0
    experts_up: object = 0.0  # grouped GEMMs of the local experts
    experts_down: object = 0.0
    shared_up: object = 0.0
    shared_down: object = 0.0
    attn_f: object = 0.0  # attention core forward
    attn_b: object = 0.0  # attention core backward
    attn_sel: object = 0.0  # attention core recomputed by selective recompute
    elementwise_dense: object = 0.0
    elementwise_moe: object = 0.0
    cast_f_dense: object = 0.0  # FP8 casts/transposes (Transformer Engine)
    cast_b_dense: object = 0.0
    cast_f_moe: object = 0.0
    cast_b_moe: object = 0.0
    attn_proj_f_chunked: object = 0.0  # QKV + O forward as userbuffers chunks
    mlp_f_chunked: object = 0.0
    attn_proj_b_chunked: object = 0.0
    mlp_b_chunked: object = 0.0
    moe_sent: object = 0.0  # routed token slots this device dispatches
    moe_slots: object = 0.0  # routed token slots this device's expert shards process
    embedding: object = 0.0  # the pipeline's ends, forward + backward (:func:`_ends`)
    head: object = 0.0
    gemm_shapes: dict = field(default_factory=dict, repr=False)
    mem_bytes: dict = field(default_factory=dict, repr=False)
    operand_bytes: float = ACT_BYTES  # GEMM operand bytes in the table (1 under FP8: cast operands)
    #: Lanes of ``gemm_shapes`` / ``mem_bytes`` of each lane of the times (None: the same lanes); a
    #: table taken from the distinct layer shapes (:meth:`take`) keeps those per shape.
    shape_rows: object = None

    @property
    def attn_proj(self):
        return self.qkv + self.o_proj

    def take(self, index) -> LayerOps:
        """The table of the lanes at ``index`` (integer indices into this table's lanes); scalar
        entries stay scalars."""

        taken: dict = {}  # one gather per array, however many fields share it

        def pick(v):
            if not (isinstance(v, np.ndarray) and v.ndim == 1):
                return v
            if id(v) not in taken:
                taken[id(v)] = v[index]
            return taken[id(v)]

        kw = {f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self)}
        kw["gemm_shapes"], kw["mem_bytes"] = self.gemm_shapes, self.mem_bytes  # gathered in table()
        kw["shape_rows"] = np.asarray(index) if self.shape_rows is None else self.shape_rows[index]
        return LayerOps(**kw)

    @property
    def mlp_dense(self):
        return self.mlp_up + self.mlp_down

    def table(self) -> list[tuple[str, object, object, object]]:
        """(name, forward seconds, forward FLOPs, forward HBM bytes) of every named op."""
        lanes = self.shape_rows

        def at(v):
            return v[lanes] if lanes is not None and isinstance(v, np.ndarray) and v.ndim == 1 else v

        rows = []
        for name, (m, n, k, count) in self.gemm_shapes.items():
            ob = self.operand_bytes
            rows.append(
                (
                    name,
                    getattr(self, name),
                    at(count * gemm_flops(m, n, k)),
                    at(gemm_bytes(m * count, n, k, ob, ob * count, out_bytes=ACT_BYTES)),
                )
            )
        for name, nbytes in self.mem_bytes.items():
            rows.append((name, getattr(self, name), 0.0, at(nbytes)))
        return rows


def _chunked(L: StepLanes, m, n, k, chunks, sm_frac=0.0):
    """``chunks`` GEMMs of m/chunks rows each, on the 1 - sm_frac of the SMs left to them."""
    return chunks * gemm_time(m / chunks, n, k, **L.gk) / (1.0 - sm_frac)


def dense_gemms(L: StepLanes) -> LayerOps:
    """The projections and the dense MLP, whole and as userbuffers chunks (UB_RS_SPLITS)."""
    s, t = L.s, L.tokens
    w_qkv, w_o, w_up, w_ffn = s.qkv_out / L.tp, s.o_in / L.tp, s.mlp_up / L.tp, s.ffn / L.tp
    o = gemm_time(t, s.h, w_o, **L.gk)
    down = gemm_time(t, s.h, w_ffn, **L.gk)
    ops = LayerOps(
        qkv=gemm_time(t, w_qkv, s.h, **L.gk),
        o_proj=o,
        mlp_up=gemm_time(t, w_up, s.h, **L.gk),
        mlp_down=down,
        operand_bytes=1.0 if L.fp8 else ACT_BYTES,
        gemm_shapes={
            "qkv": (t, w_qkv, s.h, 1.0),
            "o_proj": (t, s.h, w_o, 1.0),
            "mlp_up": (t, w_up, s.h, 1.0),
            "mlp_down": (t, s.h, w_ffn, 1.0),
        },
    )
    ub = np.where(L.cfg.tp > 1, 1.0, 0.0) if L.cfg.tp_comm_overlap else np.zeros_like(L.tp)
    ag_ch = np.where(ub > 0, L.tp, 1.0)
    rs_ch = ag_ch if L.fp8 else np.where(ub > 0, UB_RS_SPLITS, 1.0)
    sm_proj, sm_fc2 = (0.0, 0.0) if L.fp8 else (ub * UB_RS_SM_FRACTION_PROJ, ub * UB_RS_SM_FRACTION_FC2)
    ops.attn_proj_f_chunked = _chunked(L, t, w_qkv, s.h, ag_ch) + _chunked(L, t, s.h, w_o, rs_ch, sm_proj)
    ops.mlp_f_chunked = _chunked(L, t, w_up, s.h, ag_ch) + _chunked(L, t, s.h, w_ffn, rs_ch, sm_fc2)
    # backward: wgrads and dgrads as 2 x forward, the dgrads of proj and FC2 in all-gather chunks
    ops.attn_proj_b_chunked = 2.0 * ops.attn_proj - o + _chunked(L, t, w_o, s.h, ag_ch)
    ops.mlp_b_chunked = 2.0 * ops.mlp_dense - down + _chunked(L, t, w_ffn, s.h, ag_ch)
    return ops


def _grouped_gemm(m, n, k, count, *, hw, dtype, eff):
    """``count`` GEMMs of shape (m x k) @ (k x n) run as one grouped kernel (MoE experts), priced
    by the operator library's MoE term: the grouped kernel's launch grid at ``m`` rows per expert
    where the catalog characterises it (:func:`roofplan.costmodel.ops.grouped_gemm_time`), else one
    GEMM of the stacked rows over all experts' weights at the grouped-GEMM efficiency ``moe_gemm``
    (:func:`roofplan.costmodel.ops.moe_time`)."""
    if has_grouped_moe_model(hw, eff):
        tiles = balanced_token_tiles(m, count)
        kw = {"dtype": dtype, "eff": eff, "weight_bytes": WEIGHT_BYTES, "act_bytes": ACT_BYTES}
        return grouped_gemm_time(tiles, m * count, count, n, k, hw, **kw)
    return (
        gemm_time(
            m * count,
            n,
            k,
            hw,
            dtype=dtype,
            eff=eff,
            weight_bytes=WEIGHT_BYTES * count,
            act_bytes=ACT_BYTES,
            quantise=False,
        )
        / eff.moe_gemm
    )


def moe_gemms(L: StepLanes, ops: LayerOps) -> tuple:
    """Router, routed experts (grouped GEMM at the hottest rank's load) and shared experts of a MoE
    layer; returns (ffn elements the experts activate, permute bytes) for the memory-bound ops.

    MoE load imbalance: the most loaded expert-parallel rank receives 1/moe_balance times the mean
    number of routed token slots and paces the expert GEMMs and the all-to-all."""
    s, t, etp = L.s, L.tokens, L.etp
    sent = t * s.top_k * L.imb  # routed token slots of this device's tokens
    # slots this device's expert shards process: every expert replica (1/etp of its width) sees
    # the slots of etp/tp of the tokens' owners; equal to ``sent`` when etp = tp
    slots = sent * etp / L.tp
    local = s.experts / L.ep
    m_e = slots / local  # per-expert GEMM rows (grouped GEMM)
    kw = {"hw": L.hw, "dtype": L.cfg.dtype, "eff": L.e_tc}
    ops.router = gemm_time(t, s.experts, s.h, **L.gk_bf16)  # not FP8
    ops.experts_up = _grouped_gemm(m_e, s.expert_up / etp, s.h, local, **kw)
    ops.experts_down = _grouped_gemm(m_e, s.h, s.expert_ffn / etp, local, **kw)
    moe = ops.router + ops.experts_up + ops.experts_down
    ops.gemm_shapes.update(
        {
            "router": (t, s.experts, s.h, 1.0),
            "experts_up": (m_e, s.expert_up / etp, s.h, local),
            "experts_down": (m_e, s.h, s.expert_ffn / etp, local),
        }
    )
    if s.shared_ffn:
        ops.shared_up = gemm_time(t, s.shared_up / L.tp, s.h, **L.gk)
        ops.shared_down = gemm_time(t, s.h, s.shared_ffn / L.tp, **L.gk)
        moe = moe + (ops.shared_up + ops.shared_down)
        ops.gemm_shapes.update(
            {
                "shared_up": (t, s.shared_up / L.tp, s.h, 1.0),
                "shared_down": (t, s.h, s.shared_ffn / L.tp, 1.0),
            }
        )
    ops.moe_mlp, ops.moe_sent, ops.moe_slots = moe, sent, slots
    return slots * s.expert_ffn / etp + t * s.shared_ffn / L.tp, 4.0 * sent * s.h * ACT_BYTES / L.sp_div


def flash_kernel(L: StepLanes, q_len, kv_len, causal_fraction):
    """(forward, backward) seconds of one fused attention kernel of the micro-batch on this
    device's heads: the prefill kernel without a KV cache; the backward kernel does
    FLASH_BWD_RATIO x the work at FLASH_BWD_EFF_RATIO of the rate."""
    s, e, tp = L.s, L.e, L.tp
    fwd = prefill_attention_time(
        L.mb,
        q_len,
        kv_len,
        s.heads / tp,
        np.maximum(s.kv_width / (s.qk_dim + s.v_head) / tp, 1.0),
        s.qk_dim,
        L.hw,
        eff=L.e_tc,
        v_head_dim=s.v_head,
        causal_fraction=causal_fraction,
        kv_cache=False,
    )
    return fwd, (fwd - e.attn_floor_s) * FLASH_BWD_RATIO / FLASH_BWD_EFF_RATIO + e.attn_floor_s


def attention_core(L: StepLanes, ops: LayerOps) -> None:
    """Attention core forward/backward: fused FlashAttention from the operator library, or the 2021
    stack's two batched GEMMs around a fused scale-mask-softmax and dropout (Megatron SC21)."""
    s, e, b, seq, cp, tp = L.s, L.e, ACT_BYTES, L.seq, L.cp, L.tp
    score = L.mb * (s.heads / tp) * (seq / cp) * seq  # this device's heads, query chunk, all keys
    if L.flash:

        def kernel(q_len, kv_len, causal_fraction):
            return flash_kernel(L, q_len, kv_len, causal_fraction)

        # Context parallel (Transformer Engine ``AttnFuncWithCPAndKVP2P``, load-balanced causal
        # split: each rank holds chunks r and 2cp-1-r of 2cp): not one kernel over all keys but
        # one per ring step over a seq/cp-long key block. Step 0 is causal over the rank's own
        # chunks (half the scores); each of the cp-1 others is unmasked and covers half of the
        # block (the rank's later query chunk against all received keys, or all its queries
        # against the received earlier chunk), so the rows are seq/cp or seq/(2cp) keys long and
        # the kernels run lower on the length curve (``attn_half_len``). The ring synchronises
        # every step, so the rank with the short-key steps (all queries x half the keys) paces.
        # Same FLOPs as the single kernel: seq^2/(2 cp) scores per rank.
        blk = seq / cp
        f1, b1 = kernel(seq, seq, CAUSAL_FRACTION_FLASH)
        f0, b0 = kernel(blk, blk, CAUSAL_FRACTION_FLASH)
        fr, br = kernel(blk, blk / 2.0, 1.0)
        ring = cp > 1
        f = np.where(ring, f0 + (cp - 1.0) * fr, f1)
        bk = np.where(ring, b0 + (cp - 1.0) * br, b1)
        # context parallel (Transformer Engine p2p ring): each of the cp steps merges its partial
        # output into an fp32 accumulator; the backward accumulates dq and dk/dv likewise.
        merge = CP_MERGE_BYTES * cp * L.tokens / tp
        ops.attn_f = f + np.where(cp > 1, L.mem(merge * s.o_in, launches=cp), 0.0)
        ops.attn_b = bk + np.where(
            cp > 1, L.mem(merge * (s.qk_dim * s.heads + s.kv_width), launches=2.0 * cp), 0.0
        )
        ops.attn_sel = 0.0  # the backward kernel already recomputes scores
        return
    drop = L.drop
    qkvo_bytes = L.tokens * (s.qk_dim * s.heads + s.kv_width + s.o_in) / tp * b
    heads_mb = L.mb * s.heads / tp  # batched GEMMs: one tile grid per (sample, head)
    attn_dt = "bf16" if L.fp8 else L.cfg.dtype
    peak_attn = L.hw.peak("bf16" if L.fp8 and "bf16" in L.hw.peak_flops else L.cfg.dtype)
    eff1 = gemm_efficiency(heads_mb * seq / cp, seq, s.qk_dim, L.hw, dtype=attn_dt, eff=L.e_tc)
    eff2 = gemm_efficiency(heads_mb * seq / cp, s.v_head, seq, L.hw, dtype=attn_dt, eff=L.e_tc)
    bmm1 = roofline_time(
        2.0 * score * s.qk_dim, score * b + qkvo_bytes / 2, peak_attn, eff1, L.bw, e.hbm, e.kernel_launch_s
    )
    bmm2 = roofline_time(
        2.0 * score * s.v_head, score * b + qkvo_bytes / 2, peak_attn, eff2, L.bw, e.hbm, e.kernel_launch_s
    )
    softmax_f = L.mem(score * (2.0 * b + drop * (2.0 * b + 1.0)), launches=1.0 + drop)
    softmax_b = L.mem(score * (3.0 * b + drop * (2.0 * b + 1.0)), launches=1.0 + drop)
    ops.attn_f = bmm1 + bmm2 + softmax_f
    ops.attn_b = 2.0 * (bmm1 + bmm2) + softmax_b
    ops.attn_sel = ops.attn_f


def elementwise(L: StepLanes, ops: LayerOps, ffn_elems_moe, permute_bytes) -> None:
    """Memory-bound ops: 2 norms (read+write), 2 residual adds with dropout (read x and residual,
    write, mask), the MLP activation (read inputs, write output), fused RoPE; with SP the h-sized
    ones are sharded over TP. MoE layers add the permute/unpermute of the routed tokens."""
    s, b, t = L.s, ACT_BYTES, L.tokens
    elem_h = t * (4.0 * b + 2.0 * (3.0 * b + L.drop)) * s.h / L.sp_div
    # Fused rotary embedding (Megatron ``apply_rope_fusion``) reads and writes q and k; none with
    # learned absolute positions; MLA rotates only its decoupled rope part.
    if L.model.learned_positions:
        rope_w = 0.0
    elif L.model.mla:
        rope_w = (s.heads + 1.0) * L.model.mla.qk_rope_head_dim / L.tp
    else:
        rope_w = (s.qk_dim * s.heads + s.kv_width / 2.0) / L.tp
    elem_h = elem_h + t * rope_w * 2.0 * b
    dense = elem_h + t * (s.act_mult + 1.0) * b * s.ffn / L.tp
    ops.elementwise_dense = L.mem(dense, launches=ELEMENTWISE_LAUNCHES)
    ops.mem_bytes["elementwise_dense"] = dense
    if s.moe_layers:
        moe = elem_h + (s.act_mult + 1.0) * b * ffn_elems_moe + permute_bytes
        ops.elementwise_moe = L.mem(moe, launches=ELEMENTWISE_LAUNCHES)
        ops.mem_bytes["elementwise_moe"] = moe


def fp8_casts(L: StepLanes, ops: LayerOps) -> None:
    """Transformer Engine FP8 (Hopper): every GEMM input is cast bf16 -> fp8 in the forward (read
    2 B, write 1 B); in the backward the output gradient is cast and transposed (read 2 B, write
    2 x 1 B) and the saved fp8 input transposed for wgrad (read 1, write 1). All three GEMMs of a
    linear layer (fprop, dgrad, wgrad) run in FP8: TE's recipes default to
    ``override_linear_precision = (False, False, False)``; attention core, LM head and the MoE
    router stay BF16. Current scaling (FP8-CS) first reduces each tensor's amax: one more 2-byte
    read; delayed scaling takes the scale from the amax history and reduces amaxes asynchronously."""
    if not L.fp8:
        return
    s, t = L.s, L.tokens
    cs = 1.0 if L.cfg.fp8_recipe == "current" else 0.0
    # With sequence parallelism the inputs of the all-gathered GEMMs (QKV, FC1; backward: the
    # output gradients of proj and FC2) get one scale for the whole TP group: current scaling
    # all-reduces the amax over TP before casting (TE ``with_amax_reduction``, tp_group).
    amax_ar = cs * np.where(L.sp, collective_time("all_reduce", 4.0, L.tp, L.hw, 1.0), 0.0)

    def casts(in_w, gout_w, fused_w):
        """Cast traffic of inputs ``in_w`` wide (``fused_w`` of them cast inside the norm kernel,
        forward only: the saved FP8 input is still transposed for wgrad) and output gradients
        ``gout_w`` wide, per token."""
        fwd_b = t * (3.0 + 2.0 * cs) * (in_w - fused_w)
        bwd_b = t * ((4.0 + 2.0 * cs) * gout_w + 2.0 * in_w)
        return L.mem(fwd_b, launches=4.0) + 2.0 * amax_ar, L.mem(bwd_b, launches=8.0) + 2.0 * amax_ar

    # The h-wide GEMM inputs next to a TP all-gather (forward: QKV and FC1 inputs; backward: the
    # output gradients of proj and FC2) are cast on this rank's sequence-parallel shard, before
    # the all-gather, which then moves FP8 (TE ``gather_along_first_dim(..., quantizer=...)`` in
    # ``Linear``/``LayerNormLinear``; "All-gather is not supported with FP8 column-wise data":
    # the row-wise FP8 data is gathered). The QKV and FC1 inputs come out of a LayerNorm/RMSNorm:
    # TE's ``LayerNormLinear``/``LayerNormMLP`` pass the input quantizer to the norm
    # (``with_quantized_norm``), whose kernel writes FP8 directly under delayed scaling; current
    # scaling needs the finished tensor's amax first, so it still casts in a kernel of its own.
    h_in = s.h / L.sp_div
    normed_in = (1.0 - cs) * h_in  # casts fused into the norm (delayed scaling)
    ops.cast_f_dense, ops.cast_b_dense = casts(
        2.0 * h_in + (s.o_in + s.ffn) / L.tp, 2.0 * h_in + (s.qkv_out + s.mlp_up) / L.tp, 2.0 * normed_in
    )
    if s.moe_layers:
        # MoE layer: the experts' h-wide inputs (forward) and output gradients (backward) are cast
        # per routed slot this rank's experts process (kk x etp/tp per token, ``moe_gemms``); the
        # shared experts' are h-wide on the shard; the router stays BF16.
        kk = s.top_k * L.imb
        h_exp = s.h * kk * L.etp / L.tp + (h_in if s.shared_ffn else 0.0)
        ops.cast_f_moe, ops.cast_b_moe = casts(
            h_in + h_exp + (s.o_in + kk * s.expert_ffn + s.shared_ffn) / L.tp,
            h_in + h_exp + (s.qkv_out + kk * s.expert_up + s.shared_up) / L.tp,
            normed_in,
        )


#: Backward of the chunked gated-delta-rule scan relative to its forward kernels (a prior: no
#: measured backward table). FLA's ``chunk_gated_delta_rule_bwd`` recomputes the chunk states, then
#: runs the state products again for dq, dk, dv, the gate and beta gradients and the state
#: gradient walked backwards over the chunks; counted as FlashAttention-2's backward ratio.
LINEAR_MIXER_BWD_RATIO = FLASH_BWD_RATIO


def window_share_of_scores(window, kind: str, seq):
    """Share of the causal sequence's full s x s score matrix a windowed layer computes: a sliding
    window of w keys sum_i min(i, w) ~ s w - w^2 / 2 scores; chunks of c tokens, causal inside
    each, s c / 2 (Llama 4 ``attention_chunk_size``)."""
    w = np.minimum(float(window), seq)
    if kind == "chunked":
        return w / (2.0 * seq)
    return (seq * w - w * w / 2.0) / (seq * seq)


def mixer_core(L: StepLanes, ops: LayerOps) -> None:
    """A hybrid stack's token mixers, averaged over the layers as the op table's mean layer is:
    the full-attention layers' core of :func:`attention_core`; windowed layers (sliding or chunked)
    the same fused kernel over the scores their window leaves (:func:`window_share_of_scores`, rows
    as long as the window); linear layers (Gated DeltaNet / Mamba-2, whose kernel shape the
    spec gives) their own kernels, costmodel.linear_mixer's causal conv and chunked scan over the
    micro-batch's sequences with heads and conv channels split over tp, backward
    :data:`LINEAR_MIXER_BWD_RATIO` x forward (the one serving prices at prefill). A plain
    transformer keeps its core; so does a stack without the fused kernel (the 2021 stack)."""
    model = L.model
    lin = model.linear if (model.linear is not None and model.linear.heads) else None
    win = model.window if L.flash else None
    if lin is None and win is None:
        return
    layers = float(model.layers)
    f = b = 0.0
    full = 1.0
    if lin is not None:
        share = lin.layers / layers
        fwd = linear_mixer.prefill_time(
            L.mb, L.seq / L.cp, lin.heads / L.tp, lin.key_dim, lin.value_dim, lin.conv_dim / L.tp,
            lin.conv_kernel, L.hw, L.e_tc,
        )  # fmt: skip
        f, b, full = f + share * fwd, b + share * LINEAR_MIXER_BWD_RATIO * fwd, full - share
    if win is not None:
        share = win.layers / layers
        frac = window_share_of_scores(win.window, win.kind, L.seq)
        # rows as long as the window (short rows run low on the kernel's length curve, as a
        # windowed kernel's do), the share of them computed giving the window's scores; a window
        # at least the sequence is the causal kernel itself
        kv = np.minimum(float(win.window), L.seq)
        wf, wb = flash_kernel(L, L.seq / L.cp, kv, frac * L.seq / kv)
        f, b, full = f + share * wf, b + share * wb, full - share
    ops.attn_f = full * ops.attn_f + f
    ops.attn_b = full * ops.attn_b + b
    # selective recompute re-runs the full-attention core only: a windowed kernel's backward
    # recomputes its scores as the full one's does, the scan's backward its own states
    ops.attn_sel = full * ops.attn_sel


def layer_ops(L: StepLanes) -> LayerOps:
    """The op table of one decoder layer of each kind (dense, MoE) for every lane."""
    ops = dense_gemms(L)
    ffn_elems_moe = permute_bytes = 0.0
    if L.s.moe_layers:
        ffn_elems_moe, permute_bytes = moe_gemms(L, ops)
    attention_core(L, ops)
    mixer_core(L, ops)
    elementwise(L, ops, ffn_elems_moe, permute_bytes)
    fp8_casts(L, ops)
    ops.embedding, ops.head = _ends(L)
    return ops


#: The :class:`TrainConfigs` lanes the op table reads (:func:`layer_ops`, down to the operator
#: library): two configurations that agree on these have the same table.
LAYER_SHAPE_FIELDS = ("micro_batch", "seq_len", "cp", "tp", "sequence_parallel", "ep", "etp")


def layer_ops_by_shape(L: StepLanes) -> LayerOps:
    """:func:`layer_ops` of every lane, evaluated once per distinct layer shape
    (:data:`LAYER_SHAPE_FIELDS`) and gathered back: the same numbers at a fraction of the cost,
    since a search repeats a few hundred shapes over a million configurations."""
    shapes = L.distinct(LAYER_SHAPE_FIELDS)
    ops = layer_ops(shapes.lanes)
    return ops if shapes.row is None else ops.take(shapes.row)


@dataclass
class LayerTimes:
    """Forward/backward seconds of one dense and one MoE layer, their GEMM share, the attention
    core (what can hide context-parallel transfers) and the selectively recomputed part."""

    f_dense: object
    b_dense: object
    f_moe: object
    b_moe: object
    gemm_dense: object
    gemm_moe: object
    attn_f: object
    attn_b: object
    sel: object = 0.0


def layer_times(L: StepLanes, ops: LayerOps) -> LayerTimes:
    """Sum a layer's ops: forward, and backward as two GEMMs per forward GEMM (activation and
    weight gradients), the attention core's backward, twice the memory-bound traffic and the
    backward FP8 casts."""
    if L.hw.dataflow:
        return dataflow_layer_times(L, ops)
    moe = bool(L.s.moe_layers)
    g_attn, g_dense = ops.attn_proj, ops.mlp_dense
    f_moe = g_attn + ops.moe_mlp + ops.attn_f + ops.elementwise_moe + ops.cast_f_moe if moe else 0.0
    b_moe = (
        2.0 * (g_attn + ops.moe_mlp) + ops.attn_b + 2.0 * ops.elementwise_moe + ops.cast_b_moe if moe else 0.0
    )
    return LayerTimes(
        f_dense=g_attn + g_dense + ops.attn_f + ops.elementwise_dense + ops.cast_f_dense,
        b_dense=2.0 * (g_attn + g_dense) + ops.attn_b + 2.0 * ops.elementwise_dense + ops.cast_b_dense,
        f_moe=f_moe,
        b_moe=b_moe,
        gemm_dense=g_attn + g_dense,
        gemm_moe=g_attn + ops.moe_mlp,
        attn_f=ops.attn_f,
        attn_b=ops.attn_b,
        sel=ops.attn_sel,
    )


def dataflow_layer_times(L: StepLanes, ops: LayerOps) -> LayerTimes:
    """SN40L: a decoder layer is one fused on-chip pipeline; HBM sees the layer's weights and its
    input/output only, so the layer is one roofline (Prabhakar et al., SN40L, 2024)."""
    s, tp, t, e = L.s, L.tp, L.tokens, L.e
    peak = L.hw.peak(L.cfg.dtype)
    score = L.mb * (s.heads / tp) * (L.seq / L.cp) * L.seq
    w_dense = s.dense_layer_params / tp * WEIGHT_BYTES
    fl_dense = gemm_flops(t, s.qkv_out + s.o_in + s.mlp_up + s.ffn, s.h) / tp
    eff_l = gemm_efficiency(t, s.mlp_up / tp, s.h, L.hw, dtype=L.cfg.dtype, eff=L.e_tc)
    attn_fl = 2.0 * score * (s.qk_dim + s.v_head) * CAUSAL_FRACTION_FLASH
    io = 2.0 * t * s.h * ACT_BYTES
    f_dense = roofline_time(fl_dense + attn_fl, w_dense + io, peak, eff_l, L.bw, e.hbm, e.kernel_launch_s)
    f_moe = 0.0
    # the attention share of the fused layer is what can hide context-parallel transfers
    attn_f = f_dense * attn_fl / (fl_dense + attn_fl)
    if s.moe_layers:
        w_moe = (
            s.moe_layer_nonexpert_params / tp + s.moe_layer_expert_params / (L.ep * L.etp)
        ) * WEIGHT_BYTES
        fl_moe = (
            gemm_flops(t, s.qkv_out + s.o_in + s.experts + s.shared_up + s.shared_ffn, s.h) / tp
            + gemm_flops(ops.moe_slots, s.expert_up + s.expert_ffn, s.h) / L.etp
        )
        f_moe = roofline_time(fl_moe + attn_fl, w_moe + io, peak, eff_l, L.bw, e.hbm, e.kernel_launch_s)
        attn_moe = f_moe * attn_fl / (fl_moe + attn_fl)
        attn_f = (L.n_dense * attn_f + L.n_moe * attn_moe) / L.n_s
    return LayerTimes(
        f_dense=f_dense,
        b_dense=2.0 * f_dense,
        f_moe=f_moe,
        b_moe=2.0 * f_moe,
        gemm_dense=f_dense,
        gemm_moe=f_moe,
        attn_f=attn_f,
        attn_b=2.0 * attn_f,
        sel=0.0,
    )


@dataclass
class StageCompute:
    """Compute of one pipeline stage per micro-batch (seconds): forward, backward (with the
    recomputed forward before it), the embedding/LM-head ends, and the pieces the communication
    terms overlap with (GEMMs, attention blocks, the userbuffers chunking penalty)."""

    fwd: object
    bwd: object
    head: object
    ends: object
    gemm_stage: object
    ub_pen: object
    att_f: object  # attention block (projections + core) of a layer, forward
    att_b: object
    attn_f: object  # attention core alone (hides CP transfers)
    attn_b: object
    lay_f_moe: object
    lay_b_moe: object

    @property
    def per_microbatch(self):
        return self.fwd + self.bwd + self.ends


def _ub_penalty(L: StepLanes, ops: LayerOps):
    """Extra GEMM time of the userbuffers chunking per stage and micro-batch (forward, recomputed
    forward, backward); charged to TP communication where the overlap is used."""
    if L.hw.dataflow:
        return np.zeros_like(L.tp)
    g_dense = ops.mlp_dense
    ub_attn_f, ub_attn_b = (
        ops.attn_proj_f_chunked - ops.attn_proj,
        ops.attn_proj_b_chunked - 2.0 * ops.attn_proj,
    )
    return L.n_dense * (
        (ub_attn_f + ops.mlp_f_chunked - g_dense) * (1.0 + L.rc_frac)
        + ub_attn_b
        + ops.mlp_b_chunked
        - 2.0 * g_dense
    ) + L.n_moe * (ub_attn_f * (1.0 + L.rc_frac) + ub_attn_b)


def _ends(L: StepLanes):
    """Embedding (first stage): gather rows (read + write b bytes/elem) forward, fp32 scatter-add
    of the gradient (read + write 4 bytes/elem) backward. LM head GEMM (forward + 2 backward) and
    Megatron's vocab-parallel cross-entropy on fp32 logits: cast (write), max, exp-sum, loss (3
    reads), softmax gradient (read + write): 7 x 4 B. The output layer is Megatron's own
    ColumnParallelLinear, outside Transformer Engine's FP8 autocast (which wraps the decoder block
    only): it stays BF16 in an FP8 run. With ``cross_entropy="te"`` the fused kernel makes three
    passes over the bf16 logits instead (``TrainConfigs.cross_entropy``). Returns (embedding, head)."""
    s, t = L.s, L.tokens
    emb = L.mem(t * s.h * ACT_BYTES * 2.0) + L.mem(t * s.h * 4.0 * 2.0)
    head_g = gemm_time(t, s.vocab / L.tp, s.h, **L.gk_bf16)
    if L.cfg.cross_entropy == "te":
        # Transformer Engine's fused kernel: online-softmax read, then read and in-place write of
        # the gradient, all on the bf16 logits (3 x 2 B, 3 launches)
        ce = L.mem(t * s.vocab / L.tp * ACT_BYTES * 3.0, launches=3.0)
    else:
        ce = L.mem(t * s.vocab / L.tp * 4.0 * 7.0, launches=6.0)
    return emb, 3.0 * head_g + ce


def stage_compute(L: StepLanes, ops: LayerOps) -> StageCompute:
    """Per stage and micro-batch: forward, backward (+ recompute forward before it), ends."""
    s = L.s
    lt = layer_times(L, ops)
    g_attn = 0.0 if L.hw.dataflow else ops.attn_proj
    fwd = L.n_dense * lt.f_dense + L.n_moe * lt.f_moe
    rcmp = L.rc_frac * fwd + L.sel * (L.n_dense * lt.sel + L.n_moe * lt.sel)
    if s.mla_q_rank and not L.hw.dataflow:
        # selective recompute of MLA re-runs the Q and KV up-projections before the backward
        # (``mla_up_proj`` recompute module; memory in train_memory._layer_base)
        kv_lora = s.mla_kv_rank - (s.kv_width - s.mla_kv_up_out) / s.heads  # latent minus the rope key
        g_mla_up = gemm_time(L.tokens, s.mla_q_up_out / L.tp, s.mla_q_rank, **L.gk) + gemm_time(
            L.tokens, s.mla_kv_up_out / L.tp, kv_lora, **L.gk
        )
        rcmp = rcmp + L.sel * L.n_s * g_mla_up
    emb, head = ops.embedding, ops.head
    bwd = L.n_dense * lt.b_dense + L.n_moe * lt.b_moe + rcmp
    ends = np.where(L.pp > 1, np.maximum(emb, head), emb + head)
    if L.cfg.split_accounts_ends:
        # the end stages hold one decoder layer fewer, so a stage paces the pipeline with the
        # larger of a middle stage's layers and an end stage's layers plus its embedding or head
        ends = np.where(L.pp > 1, np.maximum(ends - (fwd + bwd) / L.n_s, 0.0), ends)
    return StageCompute(
        fwd=fwd,
        bwd=bwd,
        head=head,
        ends=ends,
        gemm_stage=L.n_dense * lt.gemm_dense + L.n_moe * lt.gemm_moe,
        ub_pen=_ub_penalty(L, ops),
        att_f=lt.attn_f + g_attn,
        att_b=lt.attn_b + 2.0 * g_attn,
        attn_f=lt.attn_f,
        attn_b=lt.attn_b,
        lay_f_moe=lt.f_moe,
        lay_b_moe=lt.b_moe,
    )
