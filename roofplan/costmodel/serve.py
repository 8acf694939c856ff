"""Serving cost model: prefill, decode and mixed engine iterations, memory and max batch.

Pure functions over numpy arrays (struct of arrays): one code path evaluates one configuration or
the serving planner's whole search space. Nothing here reads files or prints.

One engine iteration (:func:`step_time`) processes ``prefill_tokens`` new prompt tokens plus one
token for each of ``decode_seqs`` running requests, the mixed batch of Sarathi-Serve (Agrawal et
al., OSDI 2024) and Vidur (Agrawal et al., MLSys 2024). Its time on one device is

    GPU   = sum over ops of max(FLOPs / (peak x eff), bytes / (bandwidth x eff))   (roofline.py)
          + collectives (TP all-reduce, EP all-to-all, PP send/recv; collectives.py)
          + kernels x kernel_gap
    host  = kernels x host_op   (0 when the step replays a CUDA graph)
    step  = max(GPU, host) + step_overhead          (the host runs ahead of the GPU asynchronously)

with the fixed costs from the engine profile (:mod:`roofplan.hardware.engines`). Ops per decoder
layer (Megatron/vLLM tensor parallelism, Shoeybi et al. 2019: column-parallel QKV and gate/up,
row-parallel O and down, one all-reduce after each):

* QKV and O projections, dense MLP or routed experts as GEMMs at M = tokens on the rank
  (the operator library, ``ops.gemm_components``: tiles, waves, split-K, floors); weights read once per step;
* attention: prefill FLOPs over the causal context (Kaplan et al. 2020), FlashAttention IO (Dao et
  al. 2022: Q, K, V, O once; scores only when not fused); decode reads the paged KV cache of every
  running request (Kwon et al., SOSP 2023), GQA-aware, MLA latent-aware (DeepSeek-V2 §2.1);
* MoE: only experts actually touched by the step's tokens are read: the expected number of
  distinct experts hit by T tokens choosing k of E uniformly is E·(1-(1-k/E)^T);
* elementwise (norms, residual adds, RoPE, activation) as memory-bound traffic;
* LM head on the last stage for the tokens that sample (one per decoding request and per prompt).

Device specifics come from the catalog: collective topologies (HCCS mesh, MI250X GCD pairs) from
collectives.py; SN40L (``hw.dataflow``) fuses a whole decoder layer into one dataflow kernel, so
weights stream from memory once per step while on-chip intermediates overlap compute
(Prabhakar et al., arXiv:2405.07518): per layer time = max(sum of compute, sum of memory); weights
that do not fit in HBM live in the DDR tier and stream at its bandwidth.

Quantisation: weights in ``dtype`` (bf16/fp16/fp8/int8/int4) set the weight bytes; the compute peak
is that dtype's where the device has the units (fp8 W8A8 on Hopper, int8 SmoothQuant), else 16-bit
(weight-only kernels dequantise in registers); int4 weights compute in fp8 where the device has it,
else 16-bit (W4A8 / W4A16). ``kv_dtype`` sets the KV-cache bytes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel import ops
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.serve_configs import (  # noqa: F401 - re-exported: the serving contract
    KV_DTYPES,
    REJECT_REASONS,
    WEIGHT_DTYPES,
    ServeArrays,
    ServeConfigs,
    act_dtype,
    check_serve_config,
    compute_dtype,
    validate_serve_config,
)
from roofplan.costmodel.serve_memory import (  # noqa: F401 - re-exported: the serving contract
    ServeMemory,
    kv_bytes_per_token_per_device,
    kv_shards,
    kv_transfer_bytes,
    max_batch,
    serve_memory,
)
from roofplan.errors import InputError
from roofplan.hardware.engines import ENGINES, EngineProfile, load_engine
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec
from roofplan.models.spec import ModelSpec

#: Bytes of HBM traffic per token per layer of the unfused elementwise work, in units of the
#: activation element size x hidden: 2 RMSNorms (read + write) and 2 residual adds (2 reads + 1
#: write) = 2*2 + 2*3 = 10 (vLLM fuses add+norm, which this slightly overstates).
_ELEMENTWISE_PER_HIDDEN = 10.0
#: HBM bytes per score element when attention is not fused (HF ``eager_attention_forward``):
#: Q@K^T writes 16-bit scores (2), the mask add reads and writes them (4), softmax in fp32 reads
#: 16-bit and writes 32-bit (6), the cast back reads 32-bit and writes 16-bit (6), P@V reads (2).
_UNFUSED_SCORE_BYTES = 20.0
#: Memory-bound kernels of one decoder layer outside the GEMMs, attention and collectives: two
#: fused residual-add + RMSNorm and the SiLU x mul (vLLM ``models/llama.py``: ``fused_add_rms_norm``,
#: ``SiluAndMul``); each costs the device's ``elementwise_floor_s`` besides its traffic.
ELEMENTWISE_KERNELS = 3.0
#: Per-kernel floors of the operator library (Efficiency fields).
_OP_FLOORS = ("gemm_floor_s", "gemm_floor_fp8_s", "gemm_floor_fp8_block_s", "attn_floor_s", "decode_floor_s",
              "moe_floor_s", "elementwise_floor_s")


@dataclass
class StepParts:
    """Time of one engine iteration split into categories that sum to ``total``."""

    compute: np.ndarray
    memory: np.ndarray
    comm: np.ndarray
    overhead: np.ndarray
    total: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.total = self.compute + self.memory + self.comm + self.overhead

    def scaled(self, k) -> StepParts:
        return StepParts(self.compute * k, self.memory * k, self.comm * k, self.overhead * k)


# ------------------------------------------------------------------------------------------------
# one iteration
# ------------------------------------------------------------------------------------------------
class _Acc:
    """Accumulates per-op roofline times into compute-bound and memory-bound parts.

    Each op costs max(t_compute, t_memory) (roofline.roofline_time); the op's time is booked as
    compute when compute dominates, else as memory, so the categories add up to the op times. For
    a dataflow device the ops of a layer overlap: the layer costs max(sum compute, sum memory)."""

    def __init__(self, n: int, dataflow: bool):
        self.compute = np.zeros(n)
        self.memory = np.zeros(n)
        self.dataflow = dataflow

    def add(self, t_compute, t_memory, times=1.0):
        t_compute = np.asarray(t_compute, dtype=float) * times
        t_memory = np.asarray(t_memory, dtype=float) * times
        if self.dataflow:  # summed first, max taken in .finish()
            self.compute = self.compute + t_compute
            self.memory = self.memory + t_memory
            return
        c = t_compute >= t_memory
        self.compute = self.compute + np.where(c, t_compute, 0.0)
        self.memory = self.memory + np.where(c, 0.0, t_memory)

    def finish(self):
        if self.dataflow:
            c = self.compute >= self.memory
            return np.where(c, self.compute, 0.0), np.where(c, 0.0, self.memory)
        return self.compute, self.memory


def _allreduce(hw: DeviceSpec, engine: EngineProfile, nbytes, size) -> np.ndarray:
    """TP all-reduce: NCCL (collectives.py), or the engine's custom all-reduce for messages up to
    ``custom_allreduce_max_bytes`` inside a node (operator library, ``ops.custom_allreduce_time``)."""
    nccl = collective_time("all_reduce", nbytes, size, hw)
    if not engine.custom_allreduce:
        return nccl
    custom = ops.custom_allreduce_time(nbytes, size, hw)
    use = (np.asarray(nbytes) <= engine.custom_allreduce_max_bytes) & (np.asarray(size) <= hw.devices_per_node)
    return np.where(use & (np.asarray(size) > 1), np.minimum(custom, nccl), nccl)


def step_parts(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile,
    cfg: ServeConfigs,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    prefill_seqs=None,
    _mem: ServeMemory | None = None,
    expert_skew: float = 1.0,
) -> tuple[StepParts, StepParts, np.ndarray]:
    """(stage parts, fixed per-iteration parts, p2p seconds per stage boundary) of one iteration.

    The stage parts are the busiest pipeline stage (layers/pp layers plus the LM head) processing
    the given tokens; callers compose stages into an iteration (see :func:`step_time`).
    ``expert_skew`` (>= 1; 1 = uniform routing) is the routed-token load of the busiest
    expert-parallel rank over the mean: with ep > 1 that rank's expert GEMM rows and its
    dispatch/combine bytes scale by it, and the step waits for it (DeepEP / EPLB literature calls
    it the imbalance ratio max/mean)."""
    n = np.broadcast_shapes(
        (len(cfg),),
        *(
            np.shape(x)
            for x in (prefill_tokens, prefill_context, decode_seqs, decode_context, prefill_seqs)
            if x is not None
        ),
    )[0]
    if n != len(cfg):
        cfg, _mem = cfg.broadcast_to(n), None
    tp, pp, ep, dp = (x.astype(float) for x in (cfg.tp, cfg.pp, cfg.ep, cfg.dp))
    Tp = np.broadcast_to(np.asarray(prefill_tokens, dtype=float), (n,))
    Td = np.broadcast_to(np.asarray(decode_seqs, dtype=float), (n,))
    cp_ = np.broadcast_to(np.asarray(prefill_context, dtype=float), (n,))
    cd_ = np.broadcast_to(np.asarray(decode_context, dtype=float), (n,))
    if prefill_seqs is None:
        prefill_seqs = np.where(Tp > 0, 1.0, 0.0)
    Sp = np.broadcast_to(np.asarray(prefill_seqs, dtype=float), (n,))

    mem = _mem if _mem is not None else serve_memory(model, hw, engine, cfg)
    # kernel-level parameters as measured (operator library): no sustained-clock derating, which
    # stands for training runs' power-limited clocks (Efficiency.sustained_compute)
    eff = hw.efficiency
    if hw.dataflow:  # one fused kernel per decoder layer: no per-operator launch floors
        eff = dataclasses.replace(eff, **{f: 0.0 for f in _OP_FLOORS})
    cdt = compute_dtype(hw, cfg.dtype)
    # the GEMM kernel class: weight-only int4 (W4A16) dequantises onto the 16-bit tensor cores, W4A8
    # onto the fp8 ones; fp8/int8 W8A8 quantise activations per tensor (ops.gemm_components)
    gdt = "int4" if (cfg.dtype == "int4" and cdt not in ("fp8", "int8")) else cdt
    wb = DTYPE_BYTES[cfg.dtype]
    ab = DTYPE_BYTES[act_dtype(cfg.dtype)]
    hw.peak(cdt)  # an unsupported weight dtype is a user error here, before any arithmetic
    peak16 = hw.peak(compute_dtype(hw, act_dtype(cfg.dtype)))
    hbm = hw.hbm_Bps * eff.hbm
    # weights partly in DDR stream at the harmonic mix of the two bandwidths
    ddr = hw.tier("ddr")
    if ddr is not None:
        t_per_byte = (mem.weights_hbm / hbm + mem.weights_ddr / (ddr.bandwidth_Bps * eff.hbm)) / np.maximum(
            mem.weights, 1.0
        )
        w_bw = 1.0 / np.maximum(t_per_byte, 1e-30)
    else:
        w_bw = np.full(n, hbm)

    # dataflow (SN40L): a layer's intermediates stay in on-chip SRAM; only weights and KV touch HBM
    act_hbm = 0.0 if hw.dataflow else 1.0
    T = Tp + Td  # tokens of the step (instance-wide, one microbatch)
    Ta = T / dp  # tokens on one attention (dp) rank
    h = float(model.hidden)
    acc = _Acc(n, hw.dataflow)  # one decoder layer on one device
    comm = np.zeros(n)

    def gemm(m, n_, k, count=1.0, dtype=gdt, w_bytes=wb):
        """count GEMM kernels of (m x k) @ (k x n_) with weights streamed at w_bw (operator library)."""
        m = np.maximum(m, 0.0)
        # FP8/INT8 serving checkpoints (ModelOpt, llm-compressor) carry static per-tensor activation
        # scales, and the engines fuse the cast into the kernel that produces the activation (RMSNorm,
        # SiLU x mul): no separate quantisation kernel per GEMM (quantise=False)
        t_c, t_m, fixed = ops.gemm_components(m, n_, k, hw, dtype=dtype, eff=eff, weight_bw_Bps=w_bw,
                                              act_in_hbm=act_hbm, weight_bytes=w_bytes, act_bytes=None,
                                              quantise=False)
        if not hw.dataflow:  # one kernel: the blended time, booked to whichever side dominates
            t = ops.blend(t_c, t_m, eff) + fixed
            t_c, t_m = np.where(t_c >= t_m, t, 0.0), np.where(t_c >= t_m, 0.0, t)
        acc.add(np.where(m > 0, t_c, 0.0), np.where(m > 0, t_m, 0.0), count)

    # --- attention block --------------------------------------------------------------------------
    o_params = model.v_dim * model.hidden
    qkv_out = (model.attention_params() - o_params) / h
    gemm(Ta, qkv_out / tp, h)
    gemm(Ta, h, model.v_dim / tp)
    heads_dev = model.heads / tp
    attn_layer = model.attention_flops_per_token(1.0) / model.layers  # FLOPs per key per query token
    kv_tok_layer = model.kv_bytes_per_token(cfg.kv_dtype_resolved) / model.layers / kv_shards(model, cfg.tp)
    q_io = act_hbm * (model.q_dim + model.v_dim) / tp * ab  # Q read + O write per token
    # prefill: causal attention over the mean context, FlashAttention IO (Dao et al. 2022)
    Tp_r = Tp / dp
    f_pre = Tp_r * model.attention_context(cp_) * attn_layer / tp  # windowed / DSA layers see fewer keys
    b_pre = Tp_r * (q_io + 2 * kv_tok_layer)  # Q/O once, K/V written to the cache and read
    kv_heads_dev = np.maximum(model.kv_heads / tp, 1.0) if model.mla is None else heads_dev
    if engine.flash_attention:
        # fused prefill kernel (operator library): Sp/dp prompts of Tp_r/(Sp/dp) new tokens whose
        # keys reach back to kv = mean context + (s-1)/2 (a causal chunk after a cached prefix)
        b_seqs = np.maximum(Sp / dp, 1.0)
        s_new = Tp_r / b_seqs
        kv_len = np.maximum(cp_ + (s_new - 1.0) / 2.0, s_new)
        # each query attends to attention_context keys on average (the causal mean, fewer in
        # windowed / sparse layers): the score matrix's computed share of b x s x kv
        attended = np.minimum(model.attention_context(cp_) / np.maximum(kv_len, 1.0), 1.0)
        t_pre = ops.prefill_attention_time(
            b_seqs, np.maximum(s_new, 1.0), kv_len, heads_dev, kv_heads_dev, model.q_dim / model.heads, hw,
            kv_dtype=cfg.kv_dtype_resolved, eff=eff, act_in_hbm=act_hbm, v_head_dim=model.v_dim / model.heads,
            kv_bytes_per_token=kv_tok_layer, causal_fraction=attended)
        t_pre = np.where(Tp > 0, t_pre, 0.0)
        pre_c = f_pre / (peak16 * eff.attn_max)
        acc.add(np.where(pre_c >= b_pre / hbm, t_pre, 0.0), np.where(pre_c >= b_pre / hbm, 0.0, t_pre))
    else:
        scores = (
            Tp_r * cp_ * heads_dev * _UNFUSED_SCORE_BYTES * 2.0
        )  # causal mask computed on the full square
        eff_s = ops.gemm_efficiency(
            np.maximum(Tp_r / np.maximum(Sp / dp, 1.0), 1.0) * heads_dev, np.maximum(cp_, 1.0), model.head_dim, hw,
            dtype=act_dtype(cfg.dtype), eff=eff)
        acc.add(2.0 * f_pre / (peak16 * np.maximum(eff_s, 1e-6)), (b_pre + scores) / hbm)
    # decode: read the cached K/V of every running request (PagedAttention, Kwon et al. 2023)
    Td_r = Td / dp
    reread = 1.0 if (engine.gqa_kv_shared or model.mla is not None) else model.heads / model.kv_heads
    if model.mla is not None:  # absorbed MLA decode: scores and values over the latent (DeepSeek-V2 App. C)
        m = model.mla
        f_dec_tok = 2.0 * model.heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim) / tp
    else:
        f_dec_tok = attn_layer / tp
    # paged decode kernel (operator library): the KV read, per-sequence work and the floor; windowed,
    # sparse (DSA) and constant-state layers read fewer cached tokens (ModelSpec.kv_read_bytes)
    kv_read_layer = model.kv_read_bytes(cd_, cfg.kv_dtype_resolved) / model.layers / kv_shards(model, cfg.tp)
    kv_tokens_read = np.where(kv_tok_layer > 0, kv_read_layer / np.maximum(kv_tok_layer, 1e-30), 0.0)
    f_dec = Td_r * model.attention_context(cd_) * f_dec_tok
    t_dec = ops.decode_attention_time(
        Td_r, np.maximum(kv_tokens_read, 1.0), heads_dev, kv_heads_dev, model.q_dim / model.heads, hw, eff=eff,
        kv_bytes_per_token=kv_tok_layer, shared_kv=reread == 1.0)
    t_dec = np.where(Td > 0, np.maximum(t_dec, f_dec / (peak16 * eff.attn_max)), 0.0)
    acc.add(0.0, t_dec)
    # TP all-reduce after the O projection (row-parallel)
    ar_bytes = Ta * h * ab
    comm = comm + _allreduce(hw, engine, ar_bytes, cfg.tp)

    # --- MLP / MoE block ---------------------------------------------------------------------------
    mats_in = 2 if model.gated_mlp else 1
    dense_frac = model.dense_layers / model.layers
    moe_frac = 1.0 - dense_frac
    if dense_frac > 0:
        acc_before = (acc.compute.copy(), acc.memory.copy())
        gemm(Ta, mats_in * model.ffn / tp, h)
        gemm(Ta, h, model.ffn / tp)
        acc.add(0.0, act_hbm * Ta * (mats_in + 1) * model.ffn / tp * ab / hbm)  # activation (SiLU*mul) r/w
        if moe_frac > 0:  # weight the dense-layer MLP by its share of layers
            acc.compute = acc_before[0] + (acc.compute - acc_before[0]) * dense_frac
            acc.memory = acc_before[1] + (acc.memory - acc_before[1]) * dense_frac
    if moe_frac > 0:
        mo = model.moe
        E, k = float(mo.num_experts), float(mo.top_k)
        etp = tp * dp / ep
        before = (acc.compute.copy(), acc.memory.copy())
        skew = np.where(ep > 1, float(expert_skew), 1.0)  # the busiest EP rank sets the pace
        if hw.dataflow:  # fused layer: the touched experts' GEMMs overlap the weight stream
            touched = E * (1.0 - np.power(1.0 - k / E, T))  # distinct experts hit by T tokens
            touched_dev = touched / ep
            rows = np.where(touched > 0, T * k / np.maximum(touched, 1e-9), 0.0) * skew  # tokens per touched expert
            gemm(rows, mats_in * mo.expert_ffn / etp, h, touched_dev)
            gemm(rows, h, mo.expert_ffn / etp, touched_dev)
            acc.add(0.0, act_hbm * rows * touched_dev * (mats_in + 1) * mo.expert_ffn / etp * ab / hbm)
        else:  # one grouped-GEMM MoE kernel sequence per layer (operator library)
            t_moe = ops.moe_time(T * skew, h, mo.expert_ffn, E, k, hw, ep=ep, tp=etp, dtype=gdt,
                                 gated=model.gated_mlp, eff=eff, weight_bw_Bps=w_bw)
            t_moe = np.where(T > 0, t_moe, 0.0)
            weight_bound = E / ep * (mats_in + 1) * h * mo.expert_ffn / etp * wb / w_bw >= 0.5 * t_moe
            acc.add(np.where(weight_bound, 0.0, t_moe), np.where(weight_bound, t_moe, 0.0))
        gemm(Ta, E, h)  # router
        if mo.shared_experts:
            sf = mo.shared_experts * mo.shared_ffn_size
            gemm(Ta, mats_in * sf / tp, h)
            gemm(Ta, h, sf / tp)
        acc.compute = before[0] + (acc.compute - before[0]) * moe_frac
        acc.memory = before[1] + (acc.memory - before[1]) * moe_frac
        # EP: dispatch + combine all-to-all of the routed token copies (DeepEP-style); else an
        # all-reduce over the TP group as for a dense MLP
        a2a = 2.0 * collective_time("all_to_all", skew * T / (tp * dp) * k * h * ab, cfg.ep, hw)
        comm = comm + moe_frac * np.where(ep > 1, a2a, _allreduce(hw, engine, ar_bytes, cfg.tp))
    if dense_frac > 0:
        comm = comm + dense_frac * _allreduce(hw, engine, ar_bytes, cfg.tp)
    # elementwise: norms, residual adds (memory bound; RoPE is in the attention preprocessing)
    acc.add(0.0, ops.elementwise_time(act_hbm * Ta * h * ab * _ELEMENTWISE_PER_HIDDEN, hw, eff=eff,
                                      kernels=ELEMENTWISE_KERNELS))

    layer_c, layer_m = acc.finish()
    if hw.dataflow:
        # SN40L: the TP all-reduces are stages of the one fused decoder-layer kernel ("entire decoder
        # blocks can be automatically fused into a single kernel call", Prabhakar et al., SambaNova
        # SN40L DAC 2025 talk; arXiv:2405.07518), so the weight stream does not stall on them: only
        # the part of a layer's collectives longer than the layer's own compute/memory time shows.
        comm = np.maximum(comm - (layer_c + layer_m), 0.0)
    layers_stage = np.ceil(model.layers / pp)

    # --- LM head on the last stage: one sampled token per decoding request and per prompt -----------
    head = _Acc(n, hw.dataflow)
    logits_tok = (Td + Sp) / dp
    # the LM head stays 16-bit in quantised checkpoints (serve_memory.weight_bytes_per_device)
    lc, lm, lf = ops.gemm_components(logits_tok, model.vocab / tp, h, hw, dtype=act_dtype(cfg.dtype), eff=eff,
                                     weight_bw_Bps=w_bw, act_in_hbm=act_hbm, weight_bytes=ab, out_bytes=4.0)
    sampling = logits_tok * model.vocab / tp * 4.0 * 2 / hbm  # + sampling pass over fp32 logits
    if hw.dataflow:
        head.add(lc, lm + sampling)
    else:
        t_head = ops.blend(lc, lm, eff) + lf
        head.add(np.where(lc >= lm, t_head, 0.0), np.where(lc >= lm, 0.0, t_head) + ops.elementwise_time(
            sampling, hw, eff=eff))
    head_c, head_m = head.finish()
    head_comm = collective_time("all_gather", logits_tok * model.vocab * 4.0, cfg.tp, hw)

    compute = layers_stage * layer_c + head_c
    memory = layers_stage * layer_m + head_m
    comm_stage = layers_stage * comm + head_comm

    # --- fixed costs -------------------------------------------------------------------------------
    kernels = 1.0 if hw.dataflow else engine.kernels_per_layer
    n_kernels = layers_stage * kernels + 3.0  # + embedding, final norm, LM head / sampler
    gap = n_kernels * engine.kernel_gap_s
    host_op = eff.kernel_launch_s if engine.host_op_s is None else engine.host_op_s
    host = np.where(engine.cuda_graphs or hw.dataflow, 0.0, n_kernels * host_op)
    gpu = compute + memory + comm_stage + gap
    overhead = gap + np.maximum(host - gpu, 0.0)
    stage = StepParts(compute, memory, comm_stage, overhead)
    fixed = StepParts(np.zeros(n), np.zeros(n), np.zeros(n), np.full(n, engine.step_overhead_s))
    p2p = collective_time("p2p", Ta * h * ab, np.where(pp > 1, 2.0, 1.0), hw, stride=tp * dp)
    return stage, fixed, p2p


def _compose(stage: StepParts, fixed: StepParts, p2p, passes, pp) -> StepParts:
    """``passes`` stage times in sequence plus pp-1 boundary transfers and the per-step overhead."""
    out = stage.scaled(passes)
    out.comm = out.comm + (pp - 1.0) * p2p
    out.overhead = out.overhead + fixed.overhead
    out.total = out.compute + out.memory + out.comm + out.overhead
    return out


def step_time(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile | str | None,
    cfg: ServeConfigs,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    prefill_seqs=None,
) -> np.ndarray:
    """Seconds of ONE engine iteration over the whole instance that processes ``prefill_tokens``
    new prompt tokens (mean attended context ``prefill_context``; causal prefill of a prompt of L
    tokens has mean context (L+1)/2) plus one token for each of ``decode_seqs`` running requests
    (mean context ``decode_context``). With pp > 1 the iteration passes all stages in sequence
    (no microbatching inside one iteration). ``prefill_seqs`` (default: 1 when prefilling) is the
    number of prompts, which sample one token each. All arguments broadcast over the N configs."""
    return step_breakdown(
        model, hw, engine, cfg, prefill_tokens, prefill_context, decode_seqs, decode_context, prefill_seqs
    ).total


def step_breakdown(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile | str | None,
    cfg: ServeConfigs,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    prefill_seqs=None,
) -> StepParts:
    """:func:`step_time` split into compute-bound, memory-bound, communication and overhead parts
    (the power model's activity, :mod:`roofplan.costmodel.power`)."""
    engine = load_engine(engine or cfg.engine)
    stage, fixed, p2p = step_parts(
        model, hw, engine, cfg, prefill_tokens, prefill_context, decode_seqs, decode_context, prefill_seqs
    )
    pp = np.broadcast_to(cfg.pp.astype(float), stage.total.shape)
    return _compose(stage, fixed, p2p, pp, pp)


# ------------------------------------------------------------------------------------------------
# static batch: prefill B prompts, decode B requests for osl tokens
# ------------------------------------------------------------------------------------------------
def serve_step(
    model: ModelSpec,
    hw: DeviceSpec,
    cfg: ServeConfigs,
    engine: EngineProfile | str | None = None,
) -> ServeArrays:
    """TTFT, TPOT, throughput and memory of B requests prefilled together then decoded together.

    With pp > 1 the batch is split into m = min(B, pp) microbatches (vLLM runs pp virtual engines):
    prefill takes (m + pp - 1) stage times of B/m requests (GPipe fill, Huang et al. 2019), every
    decode round pp stage times of B/m requests. TPOT is the decode step at the mean context
    isl + osl/2 (step time is linear in the context). latency = TTFT + (osl-1)·TPOT."""
    engine = load_engine(engine or cfg.engine)
    validate_serve_config(model, cfg)
    mem = serve_memory(model, hw, engine, cfg)
    B = cfg.batch.astype(float)
    isl = cfg.isl.astype(float)
    osl = cfg.osl.astype(float)
    pp = cfg.pp.astype(float)
    m = np.minimum(B, pp)
    Bm = B / m

    st, fx, p2p = step_parts(
        model, hw, engine, cfg, Bm * isl, (isl + 1.0) / 2.0, 0.0, 0.0, prefill_seqs=Bm, _mem=mem
    )
    prefill = _compose(st, fx, p2p, m + pp - 1.0, pp)
    st, fx, p2p = step_parts(model, hw, engine, cfg, 0.0, 0.0, Bm, isl + osl / 2.0, _mem=mem)
    decode = _compose(st, fx, p2p, pp, pp)

    ttft = prefill.total
    tpot = decode.total
    latency = ttft + (osl - 1.0) * tpot
    tps = B * osl / latency
    return ServeArrays(
        ttft_s=ttft,
        tpot_s=tpot,
        latency_s=latency,
        output_tokens_per_s=tps,
        output_tokens_per_s_per_gpu=tps / cfg.devices,
        fits=mem.fits,
        max_batch=mem.max_batch,
        mem_weights=mem.weights,
        mem_kv_cache=mem.kv,
        mem_activations=mem.act,
        mem_total=mem.weights_hbm + mem.kv + mem.act,
        capacity=mem.capacity,
        prefill_compute_s=prefill.compute,
        prefill_memory_s=prefill.memory,
        prefill_comm_s=prefill.comm,
        prefill_overhead_s=prefill.overhead,
        decode_compute_s=decode.compute,
        decode_memory_s=decode.memory,
        decode_comm_s=decode.comm,
        decode_overhead_s=decode.overhead,
    )


# ------------------------------------------------------------------------------------------------
# one configuration, with inputs resolved and the docs/SPEC.md §3.2 document
# ------------------------------------------------------------------------------------------------
_GIB = float(2**30)


@dataclass
class ServeEstimate:
    model: ModelSpec
    hardware: DeviceSpec
    engine: EngineProfile
    config: ServeConfigs
    arrays: ServeArrays
    weights_in_ddr_bytes: float = 0.0
    usable_bytes: float = 0.0  # capacity less the engine's reserve
    speculative: object = None  # serve_features.SpecDecode, when speculative decoding is modelled
    prefix_hit: int = 0  # prompt tokens served from the prefix cache
    expert_skew: float = 1.0  # max/mean routed tokens per EP rank

    def to_json(self) -> dict:
        """The ``roofplan.estimate.serve/v1`` document of docs/SPEC.md §3.2."""
        a = self.arrays.row(0)
        c = self.config
        ms = 1e3
        inputs = {
            "model": self.model.name,
            "hardware": self.hardware.id,
            "engine": self.engine.name,
            "tp": int(c.tp[0]),
            "pp": int(c.pp[0]),
            "ep": int(c.ep[0]),
            "dp": int(c.dp[0]),
            "gpus": int(c.devices[0]),
            "batch": int(c.batch[0]),
            "isl": int(c.isl[0]),
            "osl": int(c.osl[0]),
            "dtype": c.dtype,
            "kv_dtype": c.kv_dtype_resolved,
            "compute_dtype": compute_dtype(self.hardware, c.dtype),
            "memory_reserve_fraction": self.engine.memory_reserve_fraction,
        }
        if self.speculative is not None:
            inputs["speculative"] = self.speculative.to_json()
        if self.prefix_hit:
            inputs["prefix_hit_tokens"] = int(self.prefix_hit)
        if self.expert_skew != 1.0:
            inputs["expert_skew"] = float(self.expert_skew)
        doc = {
            "schema": "roofplan.estimate.serve/v1",
            "inputs": inputs,
            "ttft_ms": a["ttft_s"] * ms,
            "tpot_ms": a["tpot_s"] * ms,
            "latency_ms": a["latency_s"] * ms,
            "output_tokens_per_s": a["output_tokens_per_s"],
            "output_tokens_per_s_per_gpu": a["output_tokens_per_s_per_gpu"],
            "fits": bool(a["fits"]),
            "max_batch": int(a["max_batch"]),
            "memory_gib_per_gpu": {
                "weights": a["mem_weights"] / _GIB,
                "kv_cache": a["mem_kv_cache"] / _GIB,
                "activations": a["mem_activations"] / _GIB,
                "total": a["mem_total"] / _GIB,
                "capacity": a["capacity"] / _GIB,
                "usable": self.usable_bytes / _GIB,
                "weights_in_ddr": self.weights_in_ddr_bytes / _GIB,
            },
            "breakdown_ms": {
                "prefill": {
                    "compute": a["prefill_compute_s"] * ms,
                    "memory": a["prefill_memory_s"] * ms,
                    "communication": a["prefill_comm_s"] * ms,
                    "overhead": a["prefill_overhead_s"] * ms,
                },
                "decode_step": {
                    "compute": a["decode_compute_s"] * ms,
                    "memory": a["decode_memory_s"] * ms,
                    "communication": a["decode_comm_s"] * ms,
                    "overhead": a["decode_overhead_s"] * ms,
                },
            },
        }
        return doc


def _resolve_model(model) -> ModelSpec:
    if isinstance(model, ModelSpec):
        return model
    from roofplan.models.loader import load_model

    return load_model(model)


def _resolve_hw(hw, calibration) -> DeviceSpec:
    if isinstance(hw, DeviceSpec):
        if calibration is None:
            return hw
        from roofplan.hardware.overlay import apply_overlay, load_overlay

        return apply_overlay(hw, load_overlay(calibration))
    from roofplan.hardware.catalog import load_hardware

    return load_hardware(hw, calibration=calibration)


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(name, value, "a positive integer")
    return int(value)


def estimate_serving(
    model,
    hw,
    *,
    tp=1,
    pp=1,
    ep=1,
    dp=1,
    batch,
    isl,
    osl,
    dtype="bf16",
    kv_dtype=None,
    engine="generic",
    calibration=None,
    speculative=None,
    prefix_hit=None,
    expert_skew=1.0,
) -> ServeEstimate:
    """Estimate one serving instance at a fixed batch (docs/SPEC.md §3.2); ``.to_json()`` is the document.
    ``model``/``hw`` may be ids, paths or spec objects; bad input raises InputError (exit 2).
    ``speculative`` (a :class:`~roofplan.costmodel.serve_features.SpecDecode`) and ``prefix_hit``
    (tokens, or a fraction of isl) add speculative decoding and prefix caching
    (:mod:`roofplan.costmodel.serve_features`); ``expert_skew`` (max/mean routed tokens per EP rank)
    loads the busiest expert-parallel rank; without them the result is unchanged."""
    if not isinstance(engine, EngineProfile) and engine not in ENGINES:
        raise InputError("engine", engine, "one of " + ", ".join(ENGINES))
    vals = {
        k: _positive_int(k, v)
        for k, v in dict(tp=tp, pp=pp, ep=ep, dp=dp, batch=batch, isl=isl, osl=osl).items()
    }
    m = _resolve_model(model)
    h = _resolve_hw(hw, calibration)
    prof = load_engine(engine, calibration)
    cfg = ServeConfigs(**vals, dtype=dtype, kv_dtype=kv_dtype, engine=prof.name)
    hit = 0
    if speculative is not None or prefix_hit is not None or expert_skew != 1.0:
        from roofplan.costmodel.serve_features import resolve_prefix_hit, serve_step_ext

        hit = resolve_prefix_hit(prefix_hit, vals["isl"])
        arrays = serve_step_ext(m, h, cfg, prof, spec=speculative, prefix_hit=hit, expert_skew=expert_skew)
    else:
        arrays = serve_step(m, h, cfg, prof)
    mem = serve_memory(m, h, prof, cfg)
    return ServeEstimate(
        m,
        h,
        prof,
        cfg,
        arrays,
        weights_in_ddr_bytes=float(mem.weights_ddr[0]),
        usable_bytes=float(mem.usable[0]),
        speculative=speculative,
        prefix_hit=hit,
        expert_skew=float(expert_skew),
    )
