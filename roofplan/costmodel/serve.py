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
    sched = step_overhead + host_seq x requests in the iteration      (the scheduler's host work)
    step  = max(GPU, host) + sched                  (the host runs ahead of the GPU asynchronously)
    step  = max(GPU + gaps, sched)                  (engines with asynchronous scheduling: the host
                                                     prepares step n+1 while the GPU runs step n)

with the fixed costs from the engine profile (:mod:`roofplan.engines`). The code names
each term: :func:`step_inputs` resolves the batch and rates once; per-op terms
(:func:`attention_projections_term`, :func:`prefill_attention_term`, :func:`decode_attention_term`,
:func:`dense_mlp_term`, :func:`moe_term`, :func:`elementwise_term`, :func:`lm_head_term`) and one
function per parallel dimension (:func:`tp_comm`, :func:`ep_comm`, :func:`dp_moe_comm`,
:func:`pp_comm`) are composed by :func:`decoder_layer`, :func:`stage_overhead` and :func:`step_parts`. Ops per decoder
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

from roofplan.costmodel import linear_mixer, mla_decode, ops
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
    dense_weight_dtype,
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
from roofplan.costmodel.shapes import ModelShapes, model_shapes
from roofplan.engines.profile import EngineProfile
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec, Efficiency
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
_OP_FLOORS = (
    "gemm_floor_s",
    "gemm_floor_fp8_s",
    "gemm_floor_fp8_block_s",
    "attn_floor_s",
    "decode_floor_s",
    "moe_floor_s",
    "moe_grid_floor_s",
    "elementwise_floor_s",
    "gdn_conv_update_floor_s",
    "gdn_recurrent_floor_s",
    "gdn_conv_floor_s",
    "gdn_chunk_floor_s",
)


@dataclass
class StepParts:
    """Time of one engine iteration split into categories that sum to ``total``."""

    compute: np.ndarray
    memory: np.ndarray
    comm: np.ndarray
    overhead: np.ndarray
    total: np.ndarray = field(init=False)
    #: The ``overhead`` is host work that overlaps the GPU (asynchronous scheduling): an iteration
    #: pays only the part of it that exceeds the GPU's time (:func:`_compose`).
    overlaps_gpu: bool = False

    def __post_init__(self) -> None:
        self.total = self.compute + self.memory + self.comm + self.overhead

    def scaled(self, k) -> StepParts:
        return StepParts(
            self.compute * k, self.memory * k, self.comm * k, self.overhead * k, self.overlaps_gpu
        )


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

    def include(self, other: _Acc, weight) -> None:
        """Add another accumulator's parts scaled by ``weight`` (a block present in a share of the layers)."""
        self.compute = self.compute + other.compute * weight
        self.memory = self.memory + other.memory * weight

    def finish(self):
        if self.dataflow:
            c = self.compute >= self.memory
            return np.where(c, self.compute, 0.0), np.where(c, 0.0, self.memory)
        return self.compute, self.memory


def _allreduce(hw: DeviceSpec, engine: EngineProfile, nbytes, size) -> np.ndarray:
    """TP all-reduce: NCCL (collectives.py), or inside a node the engine's custom all-reduce
    (operator library, ``ops.custom_allreduce_time``): by the engine's dispatch rule where the
    device characterises it (the rule sends large messages to NCCL itself), else the fastest of
    one-shot, two-shot and NCCL for messages up to ``custom_allreduce_max_bytes``."""
    nccl = collective_time("all_reduce", nbytes, size, hw)
    if not engine.custom_allreduce:
        return nccl
    rule = engine.allreduce
    custom = ops.custom_allreduce_time(nbytes, size, hw, strategy=rule)
    use = (np.asarray(size) <= hw.devices_per_node) & (np.asarray(size) > 1)
    if not rule.characterised(hw.efficiency):
        use = use & (np.asarray(nbytes) <= engine.custom_allreduce_max_bytes)
    return np.where(use, custom, nccl)


@dataclass
class StepInputs:
    """The quantities every per-op term of one iteration reads, resolved once (arrays over N configs).

    Dimension names are plain so they map onto a shared model-shapes object: ``prefill_tokens``,
    ``decode_seqs``, ``prefill_context``/``decode_context`` (mean attended context),
    ``prefill_seqs``; ``tokens`` = prefill + decode tokens of the instance, ``tokens_rank`` those on
    one attention (dp) rank; ``hidden``; weight/activation bytes per element; the GEMM kernel class."""

    model: ModelSpec
    hw: DeviceSpec
    engine: EngineProfile
    cfg: ServeConfigs
    mem: ServeMemory
    eff: Efficiency  # the device's, with the per-kernel floors zeroed on dataflow devices
    n: int
    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    dp: np.ndarray
    prefill_tokens: np.ndarray
    decode_seqs: np.ndarray
    prefill_context: np.ndarray
    decode_context: np.ndarray
    prefill_seqs: np.ndarray
    gemm_dtype: str
    weight_bytes: float
    dense_gemm_dtype: str  # attention / router / dense-MLP GEMMs: ModelSpec.dense_dtype where kept
    dense_weight_bytes: float
    act_bytes: float
    peak16: float
    hbm_Bps: float
    weight_Bps: np.ndarray
    act_hbm: float
    hidden: float
    kv_token_layer: np.ndarray  # KV-cache bytes per token per layer on one device
    shapes: ModelShapes = None  # the dimension vocabulary shared with training (costmodel/shapes.py)

    @property
    def tokens(self) -> np.ndarray:
        return self.prefill_tokens + self.decode_seqs

    @property
    def tokens_rank(self) -> np.ndarray:
        return self.tokens / self.dp

    @property
    def allreduce_bytes(self) -> np.ndarray:
        """Bytes of the activation one TP all-reduce carries (the tokens of one attention rank)."""
        return self.tokens_rank * self.hidden * self.act_bytes


def _gemm_dtype(weight_dtype: str, cdt: str) -> str:
    """GEMM kernel class (:data:`ops.GEMM_DTYPES`) of ``weight_dtype`` weights computing at ``cdt``:
    weight-only int4 (W4A16) where no W4A8 path exists, weight-only MXFP4 where the device has no
    FP4 tensor cores (``cdt`` then the 16-bit dtype), else the compute dtype."""
    if weight_dtype == "int4" and cdt not in ("fp8", "int8"):
        return "int4"
    if weight_dtype == "fp4" and cdt != "fp4":
        return "mxfp4_wo"
    if weight_dtype == "fp8_block" and cdt == "fp8":
        return "fp8_block"
    return cdt


def step_inputs(
    model,
    hw,
    engine,
    cfg,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    prefill_seqs=None,
    _mem: ServeMemory | None = None,
) -> StepInputs:
    """Broadcast the batch description against the N configs and resolve the per-step rates: the
    compute dtype, weight/activation bytes, HBM and weight-stream bandwidths (weights partly in DDR
    stream at the harmonic mix of the two bandwidths) and the KV bytes per token and layer."""
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

    def vec(x):
        return np.broadcast_to(np.asarray(x, dtype=float), (n,))

    Tp = vec(prefill_tokens)
    Sp = vec(np.where(Tp > 0, 1.0, 0.0) if prefill_seqs is None else prefill_seqs)
    mem = _mem if _mem is not None else serve_memory(model, hw, engine, cfg)
    # kernel-level parameters as measured (operator library): no sustained-clock derating, which
    # stands for training runs' power-limited clocks (Efficiency.sustained_compute)
    eff = hw.efficiency
    if hw.dataflow:  # one fused kernel per decoder layer: no per-operator launch floors
        eff = dataclasses.replace(eff, **{f: 0.0 for f in _OP_FLOORS})
    cdt = compute_dtype(hw, cfg.dtype)
    hw.peak(cdt)  # an unsupported weight dtype is a user error here, before any arithmetic
    hbm = hw.hbm_Bps * eff.hbm
    ddr = hw.tier("ddr")
    if ddr is not None:
        t_per_byte = (mem.weights_hbm / hbm + mem.weights_ddr / (ddr.bandwidth_Bps * eff.hbm)) / np.maximum(
            mem.weights, 1.0
        )
        w_bw = 1.0 / np.maximum(t_per_byte, 1e-30)
    else:
        w_bw = np.full(n, hbm)
    sh = model_shapes(model)
    ddt = dense_weight_dtype(model, cfg.dtype)
    return StepInputs(
        model=model,
        hw=hw,
        engine=engine,
        cfg=cfg,
        mem=mem,
        eff=eff,
        n=n,
        tp=cfg.tp.astype(float),
        pp=cfg.pp.astype(float),
        ep=cfg.ep.astype(float),
        dp=cfg.dp.astype(float),
        prefill_tokens=Tp,
        decode_seqs=vec(decode_seqs),
        prefill_context=vec(prefill_context),
        decode_context=vec(decode_context),
        prefill_seqs=Sp,
        # the GEMM kernel class: weight-only int4 (W4A16) dequantises onto the 16-bit tensor cores,
        # W4A8 onto the fp8 ones; fp4 without FP4 tensor cores is weight-only MXFP4 (W4A16, 4.25
        # bits a weight streamed: serve_configs.compute_dtype); fp8/int8 W8A8 quantise activations
        # per tensor (ops.gemm_components)
        gemm_dtype=_gemm_dtype(cfg.dtype, cdt),
        weight_bytes=DTYPE_BYTES[cfg.dtype],
        dense_gemm_dtype=_gemm_dtype(ddt, compute_dtype(hw, ddt)),
        dense_weight_bytes=DTYPE_BYTES[ddt],
        act_bytes=DTYPE_BYTES[act_dtype(cfg.dtype)],
        peak16=hw.peak(compute_dtype(hw, act_dtype(cfg.dtype))),
        hbm_Bps=hbm,
        weight_Bps=w_bw,
        # dataflow (SN40L): a layer's intermediates stay in on-chip SRAM; only weights and KV touch HBM
        act_hbm=0.0 if hw.dataflow else 1.0,
        hidden=sh.h,
        kv_token_layer=model.kv_bytes_per_token(cfg.kv_dtype_resolved)
        / model.layers
        / kv_shards(model, cfg.tp),
        shapes=sh,
    )


# --- per-op terms of one decoder layer on one device (each books into an _Acc) ------------------------
def gemm_term(s: StepInputs, acc: _Acc, m, n_, k, count=1.0, expert=False) -> None:
    """``count`` GEMM kernels of (m x k) @ (k x n_) with weights streamed at ``s.weight_Bps``
    (operator library: tiles, waves, split-K, floors); ``expert``: an expert's weights, at the
    serving dtype, else the non-expert weights' (:func:`dense_weight_dtype`)."""
    m = np.maximum(m, 0.0)
    dtype, wbytes = (s.gemm_dtype, s.weight_bytes) if expert else (s.dense_gemm_dtype, s.dense_weight_bytes)
    # FP8/INT8 serving checkpoints (ModelOpt, llm-compressor) carry static per-tensor activation
    # scales, and the engines fuse the cast into the kernel that produces the activation (RMSNorm,
    # SiLU x mul): no separate quantisation kernel per GEMM (quantise=False). Block-scaled FP8
    # quantises each 1 x 128 activation group in a kernel of its own before the GEMM (vLLM
    # per_token_group_quant_fp8 in apply_w8a8_block_fp8_linear; SGLang likewise)
    t_c, t_m, fixed = ops.gemm_components(
        m,
        n_,
        k,
        s.hw,
        dtype=dtype,
        eff=s.eff,
        weight_bw_Bps=s.weight_Bps,
        act_in_hbm=s.act_hbm,
        weight_bytes=wbytes,
        act_bytes=None,
        quantise=dtype == "fp8_block",
        kernels=gemm_kernels(s.engine),
    )
    if not s.hw.dataflow:  # one kernel: the blended time, booked to whichever side dominates
        t = ops.blend(t_c, t_m, s.eff) + fixed
        t_c, t_m = np.where(t_c >= t_m, t, 0.0), np.where(t_c >= t_m, 0.0, t)
    acc.add(np.where(m > 0, t_c, 0.0), np.where(m > 0, t_m, 0.0), count)


def attention_projections_term(s: StepInputs, acc: _Acc) -> None:
    """QKV (column-parallel) and O (row-parallel) projections at M = tokens on the rank."""
    sh = s.shapes
    # QKV width with biases and norms (ModelSpec.attention_params; ModelShapes.qkv_out has none)
    qkv_out = (s.model.attention_params() - sh.o_in * sh.h) / s.hidden
    gemm_term(s, acc, s.tokens_rank, qkv_out / s.tp, s.hidden)
    gemm_term(s, acc, s.tokens_rank, s.hidden, sh.o_in / s.tp)


def _kv_heads_device(s: StepInputs):
    """KV heads one device reads (replicated when tp > kv_heads; MLA: every query head's latent)."""
    model = s.model
    return np.maximum(model.kv_heads / s.tp, 1.0) if model.mla is None else model.heads / s.tp


def prefill_attention_term(s: StepInputs, acc: _Acc) -> None:
    """Causal prefill attention over the mean context: the fused FlashAttention kernel (operator
    library; Dao et al. 2022) or, unfused, GEMM-rate scores plus their HBM traffic."""
    model, Tp, cp_, dp, tp = s.model, s.prefill_tokens, s.prefill_context, s.dp, s.tp
    attn_layer = model.attention_flops_per_token(1.0) / model.layers  # FLOPs per key per query token
    q_io = s.act_hbm * (model.q_dim + model.v_dim) / tp * s.act_bytes  # Q read + O write per token
    Tp_r = Tp / dp
    heads_dev = model.heads / tp
    f_pre = Tp_r * model.attention_context(cp_) * attn_layer / tp  # windowed / DSA layers see fewer keys
    b_pre = Tp_r * (q_io + 2 * s.kv_token_layer)  # Q/O once, K/V written to the cache and read
    if s.engine.flash_attention:
        # Sp/dp prompts of Tp_r/(Sp/dp) new tokens whose keys reach back to kv = mean context +
        # (s-1)/2 (a causal chunk after a cached prefix)
        b_seqs = np.maximum(s.prefill_seqs / dp, 1.0)
        s_new = Tp_r / b_seqs
        kv_len = np.maximum(cp_ + (s_new - 1.0) / 2.0, s_new)
        # each query attends to attention_context keys on average (the causal mean, fewer in
        # windowed / sparse layers): the score matrix's computed share of b x s x kv
        attended = np.minimum(model.attention_context(cp_) / np.maximum(kv_len, 1.0), 1.0)
        kernels = prefill_kernels(s.engine)
        t_pre = ops.prefill_attention_time(
            b_seqs,
            np.maximum(s_new, 1.0),
            kv_len,
            heads_dev,
            _kv_heads_device(s),
            model.q_dim / model.heads,
            s.hw,
            kv_dtype=s.cfg.kv_dtype_resolved,
            eff=s.eff,
            act_in_hbm=s.act_hbm,
            v_head_dim=model.v_dim / model.heads,
            kv_bytes_per_token=s.kv_token_layer,
            causal_fraction=attended,
            kernels=kernels,
        )
        if kernels == "flash" and s.eff.fa_prefill_max > 0:  # RoPE: its own kernel
            rope = ops.rope_time(
                Tp_r, heads_dev, _kv_heads_device(s), model.q_dim / model.heads, s.hw, eff=s.eff
            )
            t_pre = t_pre + rope
        t_pre = np.where(Tp > 0, t_pre, 0.0)
        compute_bound = f_pre / (s.peak16 * s.eff.attn_max) >= b_pre / s.hbm_Bps
        acc.add(np.where(compute_bound, t_pre, 0.0), np.where(compute_bound, 0.0, t_pre))
    else:
        scores = (
            Tp_r * cp_ * heads_dev * _UNFUSED_SCORE_BYTES * 2.0
        )  # causal mask computed on the full square
        eff_s = ops.gemm_efficiency(
            np.maximum(Tp_r / np.maximum(s.prefill_seqs / dp, 1.0), 1.0) * heads_dev,
            np.maximum(cp_, 1.0),
            model.head_dim,
            s.hw,
            dtype=act_dtype(s.cfg.dtype),
            eff=s.eff,
        )
        acc.add(2.0 * f_pre / (s.peak16 * np.maximum(eff_s, 1e-6)), (b_pre + scores) / s.hbm_Bps)


#: Decode-attention kernel library of each engine (ops.decode_attention_time ``dispatch``): TensorRT-LLM
#: its own XQA / masked MHA; vLLM and SGLang FlashAttention-3 on Hopper (vLLM's FLASH_ATTN backend,
#: SGLang's ``fa3`` attention backend, their defaults there). MLA runs other kernels (FlashMLA,
#: :func:`decode_kernels`).
ENGINE_DECODE_KERNELS = {"trtllm": "trtllm", "vllm": "flash", "sglang": "flash"}


#: Prefill-attention kernel library of each engine (ops.prefill_attention_time ``kernels``):
#: TensorRT-LLM its attention op (QKV preprocessing + FMHA); vLLM and SGLang FlashAttention-3 on
#: Hopper (vLLM's FLASH_ATTN backend, SGLang's ``fa3``), RoPE before it as the model's own kernel.
ENGINE_PREFILL_KERNELS = {"vllm": "flash", "sglang": "flash"}


def prefill_kernels(engine: EngineProfile) -> str:
    """The ``kernels`` of :func:`ops.prefill_attention_time` for ``engine`` (by its profile name)."""
    return ENGINE_PREFILL_KERNELS.get(engine.name, "trtllm")


#: GEMM kernel library of each engine (ops.gemm_time ``kernels``): SGLang runs block-scaled FP8 on
#: DeepGEMM (``sglang_deepgemm_gemm_nt_f8f8bf16``, its per-token-group quantisation fused); the
#: others the catalog's GEMM classes (fitted on TensorRT-LLM's Linear, which vLLM's large-M
#: block-FP8 GEMMs match to 3 %).
ENGINE_GEMM_KERNELS = {"sglang": "deepgemm"}


def gemm_kernels(engine: EngineProfile) -> str:
    """The ``kernels`` of :func:`ops.gemm_time` for ``engine`` (by its profile name)."""
    return ENGINE_GEMM_KERNELS.get(engine.name, "trtllm")


#: MoE kernel library of each engine (ops.moe_time ``kernels``): TensorRT-LLM its cutlass MoE
#: sequence; vLLM and SGLang their own fused MoE kernels (the stacked-GEMM model).
ENGINE_MOE_KERNELS = {"trtllm": "trtllm"}


def decode_kernels(engine: EngineProfile | str, model, eff=None) -> str:
    """The ``dispatch`` of :func:`ops.decode_attention_time` for this engine and model: an MLA
    model runs TensorRT-LLM's FlashMLA under TensorRT-LLM (``"trtllm_mla"``, where the latent is
    the 512 + 64 FlashMLA takes) and the generic model elsewhere (no measured tables of vLLM's or
    SGLang's MLA kernels are characterised); an engine that runs vLLM V1's Triton unified attention
    on ROCm (``EngineProfile.rocm_triton_attention``) dispatches ``"triton"`` on a device whose
    ``eff`` characterises that kernel (``triton_decode_hbm`` > 0). ``engine`` may be a profile's
    name alone (no ROCm Triton attention then)."""
    name = engine if isinstance(engine, str) else engine.name
    if model.mla is not None:
        return "trtllm_mla" if name == "trtllm" else "shared"
    triton = not isinstance(engine, str) and engine.rocm_triton_attention
    if triton and eff is not None and eff.triton_decode_hbm > 0:
        return "triton"
    return ENGINE_DECODE_KERNELS.get(name, "shared")


def decode_head_dim(model, dispatch: str, eff) -> float:
    """Head dimension handed to the decode kernel: the absorbed latent (kv_lora_rank + RoPE dims,
    DeepSeek-V2 App. C) for FlashMLA on a device that characterises it, else the query head
    dimension (what the generic decode model takes)."""
    if dispatch == "trtllm_mla" and mla_decode.has_mla_model(eff):
        return float(model.mla.kv_lora_rank + model.mla.qk_rope_head_dim)
    return model.q_dim / model.heads


def decode_attention_term(s: StepInputs, acc: _Acc) -> None:
    """Decode attention: each running request reads its paged KV cache (PagedAttention, Kwon et al.
    2023; operator library), GQA-aware and MLA latent-aware (absorbed MLA, DeepSeek-V2 App. C);
    windowed, sparse (DSA) and constant-state layers read fewer cached tokens (ModelSpec.kv_read_bytes)."""
    model, cd_, tp = s.model, s.decode_context, s.tp
    Td_r = s.decode_seqs / s.dp
    reread = 1.0 if (s.engine.gqa_kv_shared or model.mla is not None) else model.heads / model.kv_heads
    if model.mla is not None:
        m = model.mla
        f_dec_tok = 2.0 * model.heads * (2 * m.kv_lora_rank + m.qk_rope_head_dim) / tp
    else:
        f_dec_tok = model.attention_flops_per_token(1.0) / model.layers / tp
    kv_read_layer = (
        model.kv_read_bytes(cd_, s.cfg.kv_dtype_resolved) / model.layers / kv_shards(model, s.cfg.tp)
    )
    kv_tok = s.kv_token_layer
    kv_tokens_read = np.where(kv_tok > 0, kv_read_layer / np.maximum(kv_tok, 1e-30), 0.0)
    f_dec = Td_r * model.attention_context(cd_) * f_dec_tok
    dispatch = decode_kernels(s.engine, model, s.eff)
    t_dec = ops.decode_attention_time(
        Td_r,
        np.maximum(kv_tokens_read, 1.0),
        model.heads / tp,
        _kv_heads_device(s),
        decode_head_dim(model, dispatch, s.eff),
        s.hw,
        eff=s.eff,
        kv_bytes_per_token=kv_tok,
        shared_kv=reread == 1.0,
        kv_dtype=s.cfg.kv_dtype_resolved,
        dispatch=dispatch,
    )
    acc.add(0.0, np.where(s.decode_seqs > 0, np.maximum(t_dec, f_dec / (s.peak16 * s.eff.attn_max)), 0.0))


def linear_mixer_term(s: StepInputs, acc: _Acc) -> None:
    """A linear mixer's own kernels (Gated DeltaNet / Mamba-2; costmodel.linear_mixer) in one of
    its layers, their projections being in :func:`attention_projections_term`: at decode each
    running sequence's conv window and recurrent state read and written (the state at the engine's
    ``linear_state_bytes``), at prefill the causal conv and the chunked scan over each prompt's new
    tokens. Heads and conv channels are split over the tp ranks (vLLM and SGLang shard
    ``num_heads // tp``); the attention ranks (dp) split the sequences."""
    lin, hw, eff = s.model.linear, s.hw, s.eff
    heads, conv_dim = lin.heads / s.tp, lin.conv_dim / s.tp
    dk, dv, width = lin.key_dim, lin.value_dim, lin.conv_kernel
    state_b = s.engine.linear_state_bytes
    decode = linear_mixer.decode_time(s.decode_seqs / s.dp, heads, dk, dv, conv_dim, width, hw, eff, state_b)
    seqs = np.maximum(s.prefill_seqs / s.dp, 1.0)
    new = s.prefill_tokens / s.dp / seqs
    prefill = new > 0
    conv = np.where(prefill, linear_mixer.conv_time(seqs, new, conv_dim, width, hw, eff), 0.0)
    scan = np.where(prefill, linear_mixer.chunk_scan_time(seqs, new, heads, dk, dv, hw, eff), 0.0)
    acc.add(0.0, decode + conv)
    acc.add(scan, 0.0)


def dense_mlp_term(s: StepInputs, acc: _Acc) -> None:
    """Gate/up (column-parallel) and down (row-parallel) GEMMs and the SiLU x mul traffic."""
    mats_in = s.shapes.act_mult
    ffn, Ta = s.shapes.ffn, s.tokens_rank
    gemm_term(s, acc, Ta, s.shapes.mlp_up / s.tp, s.hidden)
    gemm_term(s, acc, Ta, s.hidden, ffn / s.tp)
    acc.add(0.0, s.act_hbm * Ta * (mats_in + 1) * ffn / s.tp * s.act_bytes / s.hbm_Bps)  # activation r/w


def expert_skew_factor(s: StepInputs, expert_skew: float) -> np.ndarray:
    """The busiest EP rank's routed load over the mean (1 without expert parallelism)."""
    return np.where(s.ep > 1, float(expert_skew), 1.0)


def moe_term(s: StepInputs, acc: _Acc, expert_skew: float = 1.0) -> None:
    """Routed experts (sharded ``ep`` ways, each expert split tp x dp / ep ways), the router and the
    shared experts. Only experts touched by the step's tokens are read: T tokens choosing k of E
    uniformly hit E(1-(1-k/E)^T) distinct experts; the busiest EP rank carries ``expert_skew``."""
    mo, h = s.model.moe, s.hidden
    mats_in = 2 if s.model.gated_mlp else 1
    E, k, T = float(mo.num_experts), float(mo.top_k), s.tokens
    etp = s.tp * s.dp / s.ep
    skew = expert_skew_factor(s, expert_skew)
    if s.hw.dataflow:  # fused layer: the touched experts' GEMMs overlap the weight stream
        touched = E * (1.0 - np.power(1.0 - k / E, T))
        touched_dev = touched / s.ep
        rows = (
            np.where(touched > 0, T * k / np.maximum(touched, 1e-9), 0.0) * skew
        )  # tokens per touched expert
        gemm_term(s, acc, rows, mats_in * mo.expert_ffn / etp, h, touched_dev, expert=True)
        gemm_term(s, acc, rows, h, mo.expert_ffn / etp, touched_dev, expert=True)
        acc.add(
            0.0,
            s.act_hbm * rows * touched_dev * (mats_in + 1) * mo.expert_ffn / etp * s.act_bytes / s.hbm_Bps,
        )
    else:  # one grouped-GEMM MoE kernel sequence per layer (operator library)
        t_moe = ops.moe_time(
            T * skew,
            h,
            mo.expert_ffn,
            E,
            k,
            s.hw,
            ep=s.ep,
            tp=etp,
            dtype=s.gemm_dtype,
            gated=s.model.gated_mlp,
            eff=s.eff,
            weight_bw_Bps=s.weight_Bps,
            kernels=ENGINE_MOE_KERNELS.get(s.engine.name, "shared"),
        )
        t_moe = np.where(T > 0, t_moe, 0.0)
        weight_bound = (
            E / s.ep * (mats_in + 1) * h * mo.expert_ffn / etp * s.weight_bytes / s.weight_Bps >= 0.5 * t_moe
        )
        acc.add(np.where(weight_bound, 0.0, t_moe), np.where(weight_bound, t_moe, 0.0))
    gemm_term(s, acc, s.tokens_rank, E, h)  # router
    if mo.shared_experts:
        sf = mo.shared_experts * mo.shared_ffn_size
        gemm_term(s, acc, s.tokens_rank, mats_in * sf / s.tp, h, expert=True)
        gemm_term(s, acc, s.tokens_rank, h, sf / s.tp, expert=True)


def elementwise_term(s: StepInputs, acc: _Acc) -> None:
    """Norms and residual adds: memory-bound traffic plus the per-kernel floors (RoPE is in the
    attention preprocessing)."""
    nbytes = s.act_hbm * s.tokens_rank * s.hidden * s.act_bytes * _ELEMENTWISE_PER_HIDDEN
    acc.add(0.0, ops.elementwise_time(nbytes, s.hw, eff=s.eff, kernels=ELEMENTWISE_KERNELS))


def lm_head_term(s: StepInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(compute, memory, all-gather seconds) of the LM head on the last stage: one sampled token per
    decoding request and per prompt, the logits GEMM (16-bit even in quantised checkpoints,
    serve_memory.weight_bytes_per_device) and a sampling pass over the fp32 logits."""
    model, hw, eff = s.model, s.hw, s.eff
    head = _Acc(s.n, hw.dataflow)
    logits_tok = (s.decode_seqs + s.prefill_seqs) / s.dp
    lc, lm, lf = ops.gemm_components(
        logits_tok,
        model.vocab / s.tp,
        s.hidden,
        hw,
        dtype=act_dtype(s.cfg.dtype),
        eff=eff,
        weight_bw_Bps=s.weight_Bps,
        act_in_hbm=s.act_hbm,
        weight_bytes=s.act_bytes,
        out_bytes=4.0,
    )
    sampling = logits_tok * model.vocab / s.tp * 4.0 * 2 / s.hbm_Bps
    if hw.dataflow:
        head.add(lc, lm + sampling)
    else:
        t_head = ops.blend(lc, lm, eff) + lf
        head.add(
            np.where(lc >= lm, t_head, 0.0),
            np.where(lc >= lm, 0.0, t_head) + ops.elementwise_time(sampling, hw, eff=eff),
        )
    head_c, head_m = head.finish()
    return head_c, head_m, tp_gather_comm(s, logits_tok * model.vocab * 4.0)


# --- communication: one function per parallel dimension -------------------------------------------
def tp_comm(s: StepInputs) -> np.ndarray:
    """TP all-reduce of one attention rank's activations after a row-parallel GEMM (Megatron
    tensor parallelism, Shoeybi et al. 2019): NCCL or the engine's custom all-reduce."""
    return _allreduce(s.hw, s.engine, s.allreduce_bytes, s.cfg.tp)


def tp_gather_comm(s: StepInputs, nbytes) -> np.ndarray:
    """All-gather over the TP group (the vocab-parallel logits)."""
    return collective_time("all_gather", nbytes, s.cfg.tp, s.hw)


def ep_comm(s: StepInputs, expert_skew: float = 1.0) -> np.ndarray:
    """Communication of one MoE layer: with ep > 1 the dispatch + combine all-to-all of the routed
    token copies (DeepEP-style), the busiest rank's share scaled by ``expert_skew``; else the
    all-reduce after the tensor-parallel experts (:func:`dp_moe_comm`)."""
    mo = s.model.moe
    skew = expert_skew_factor(s, expert_skew)
    a2a = 2.0 * collective_time(
        "all_to_all",
        skew * s.tokens / (s.tp * s.dp) * float(mo.top_k) * s.hidden * s.act_bytes,
        s.cfg.ep,
        s.hw,
    )
    return np.where(s.ep > 1, a2a, dp_moe_comm(s))


def dp_moe_comm(s: StepInputs) -> np.ndarray:
    """Without EP the experts are split tp x dp ways. With dp = 1 their partial sums are combined by
    the TP all-reduce of a dense MLP (:func:`tp_comm`). With attention DP (dp > 1) every rank needs
    the tokens of all dp ranks: SGLang gathers them with an all-reduce of the zero-padded global
    T x hidden buffer over the tp x dp group (``layers/dp_attention.py``, ``_dp_gather``), runs the
    experts tensor-parallel over that group, combines their partial sums with a second all-reduce
    of the same buffer, and keeps its own rows (``dp_scatter``, a local copy): two all-reduces of
    the instance's T x hidden activations."""
    gathered = s.tokens * s.hidden * s.act_bytes
    dp_time = 2.0 * _allreduce(s.hw, s.engine, gathered, s.cfg.tp * s.cfg.dp)
    return np.where(s.dp > 1, dp_time, tp_comm(s))


def pp_comm(s: StepInputs) -> np.ndarray:
    """Seconds of one stage-boundary send/recv of one attention rank's activations."""
    return collective_time("p2p", s.allreduce_bytes, np.where(s.pp > 1, 2.0, 1.0), s.hw, stride=s.tp * s.dp)


# --- one iteration ----------------------------------------------------------------------------------
def decoder_layer(s: StepInputs, expert_skew: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(compute, memory, communication) seconds of one decoder layer on one device: the per-op terms,
    dense and MoE blocks weighted by their share of layers."""
    acc = _Acc(s.n, s.hw.dataflow)
    attention_projections_term(s, acc)
    prefill_attention_term(s, acc)
    decode_attention_term(s, acc)
    linear = s.model.linear
    if linear is not None and linear.heads:
        mixer = _Acc(s.n, s.hw.dataflow)
        linear_mixer_term(s, mixer)
        acc.include(mixer, linear.layers / s.model.layers)
    comm = tp_comm(s)  # after the O projection (row-parallel)
    dense_frac = s.shapes.dense_layers / s.shapes.layers
    moe_frac = 1.0 - dense_frac
    if dense_frac > 0:
        dense = _Acc(s.n, s.hw.dataflow)
        dense_mlp_term(s, dense)
        acc.include(dense, dense_frac)
        comm = comm + dense_frac * tp_comm(s)
    if moe_frac > 0:
        moe = _Acc(s.n, s.hw.dataflow)
        moe_term(s, moe, expert_skew)
        acc.include(moe, moe_frac)
        comm = comm + moe_frac * ep_comm(s, expert_skew)
    elementwise_term(s, acc)
    layer_c, layer_m = acc.finish()
    if s.hw.dataflow:
        # SN40L: the TP all-reduces are stages of the one fused decoder-layer kernel ("entire decoder
        # blocks can be automatically fused into a single kernel call", Prabhakar et al., SambaNova
        # SN40L DAC 2025 talk; arXiv:2405.07518), so the weight stream does not stall on them: only
        # the part of a layer's collectives longer than the layer's own compute/memory time shows.
        comm = np.maximum(comm - (layer_c + layer_m), 0.0)
    return layer_c, layer_m, comm


def stage_overhead(s: StepInputs, layers_stage, busy) -> np.ndarray:
    """Overhead seconds of a stage: the GPU's gaps between kernels (kernels x kernel_gap), plus the
    host's launch time where it exceeds the GPU's ``busy`` time (0 when the step replays a CUDA graph)."""
    engine = s.engine
    kernels = 1.0 if s.hw.dataflow else engine.kernels_per_layer
    n_kernels = layers_stage * kernels + 3.0  # + embedding, final norm, LM head / sampler
    gap = n_kernels * engine.kernel_gap_s
    host_op = s.eff.kernel_launch_s if engine.host_op_s is None else engine.host_op_s
    host = np.where(engine.cuda_graphs or s.hw.dataflow, 0.0, n_kernels * host_op)
    return gap + np.maximum(host - (busy + gap), 0.0)


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
    s = step_inputs(
        model,
        hw,
        engine,
        cfg,
        prefill_tokens,
        prefill_context,
        decode_seqs,
        decode_context,
        prefill_seqs,
        _mem,
    )
    layer_c, layer_m, layer_comm = decoder_layer(s, expert_skew)
    head_c, head_m, head_comm = lm_head_term(s)
    layers_stage = np.ceil(model.layers / s.pp)
    compute = layers_stage * layer_c + head_c
    memory = layers_stage * layer_m + head_m
    comm = layers_stage * layer_comm + head_comm
    stage = StepParts(compute, memory, comm, stage_overhead(s, layers_stage, compute + memory + comm))
    zeros = np.zeros(s.n)
    host = engine.step_overhead_s + engine.host_seq_s * (s.decode_seqs + s.prefill_seqs)
    fixed = StepParts(
        zeros, zeros, zeros, np.broadcast_to(host, (s.n,)).astype(float), engine.async_scheduling
    )
    return stage, fixed, pp_comm(s)


def _compose(stage: StepParts, fixed: StepParts, p2p, passes, pp) -> StepParts:
    """``passes`` stage times in sequence plus pp-1 boundary transfers and the per-step overhead:
    all of it, or with asynchronous scheduling (``fixed.overlaps_gpu``) only the part that the GPU's
    time does not cover (the scheduler runs one step ahead; vLLM docs "Asynchronous scheduling")."""
    out = stage.scaled(passes)
    out.comm = out.comm + (pp - 1.0) * p2p
    gpu = out.total + (pp - 1.0) * p2p
    host = np.maximum(fixed.overhead - gpu, 0.0) if fixed.overlaps_gpu else fixed.overhead
    out.overhead = out.overhead + host
    out.total = out.compute + out.memory + out.comm + out.overhead
    return out


def step_time(*args, **kwargs) -> np.ndarray:
    """Seconds of ONE engine iteration over the whole instance that processes ``prefill_tokens``
    new prompt tokens (mean attended context ``prefill_context``; causal prefill of a prompt of L
    tokens has mean context (L+1)/2) plus one token for each of ``decode_seqs`` running requests
    (mean context ``decode_context``). With pp > 1 the iteration passes all stages in sequence
    (no microbatching inside one iteration). ``prefill_seqs`` (default: 1 when prefilling) is the
    number of prompts, which sample one token each. All arguments broadcast over the N configs.
    The arguments are :func:`step_breakdown`'s (one signature for both)."""
    return step_breakdown(*args, **kwargs).total


def step_breakdown(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile,
    cfg: ServeConfigs,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    prefill_seqs=None,
    expert_skew: float = 1.0,
) -> StepParts:
    """:func:`step_time` split into compute-bound, memory-bound, communication and overhead parts
    (the power model's activity, :mod:`roofplan.costmodel.power`); ``expert_skew`` as in
    :func:`step_parts`."""
    stage, fixed, p2p = step_parts(
        model,
        hw,
        engine,
        cfg,
        prefill_tokens,
        prefill_context,
        decode_seqs,
        decode_context,
        prefill_seqs,
        expert_skew=expert_skew,
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
    engine: EngineProfile,
    decode_batch=None,
) -> ServeArrays:
    """TTFT, TPOT, throughput and memory of B requests prefilled together then decoded together.

    With pp > 1 the batch is split into m = min(B, pp) microbatches (vLLM runs pp virtual engines):
    prefill takes (m + pp - 1) stage times of B/m requests (GPipe fill, Huang et al. 2019), every
    decode round pp stage times of B/m requests. TPOT is the decode step at the mean context
    isl + osl/2 (step time is linear in the context). latency = TTFT + (osl-1)·TPOT.
    ``decode_batch`` (>= B): the rows each decode step computes when the engine pads the batch up
    to a captured CUDA graph (TensorRT-LLM's PyTorch backend appends dummy generation requests);
    the B requests' KV is all they read (the same KV bytes spread over the padded rows)."""
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
    Bd = Bm if decode_batch is None else np.maximum(np.asarray(decode_batch, dtype=float) / m, Bm)
    st, fx, p2p = step_parts(model, hw, engine, cfg, 0.0, 0.0, Bd, (isl + osl / 2.0) * Bm / Bd, _mem=mem)
    decode = _compose(st, fx, p2p, pp, pp)

    return static_arrays(cfg, prefill, decode, mem)


def static_arrays(
    cfg: ServeConfigs,
    prefill: StepParts,
    decode: StepParts,
    mem: ServeMemory,
    *,
    kv=None,
    fits=None,
    max_batch_=None,
) -> ServeArrays:
    """The static batch's arrays from its prefill and decode parts (per output token) and memory:
    latency = TTFT + (osl-1)·TPOT, throughput B·osl / latency. ``kv``, ``fits`` and ``max_batch_``
    replace the memory's where features change them (serve_features.feature_memory)."""
    kv = mem.kv if kv is None else kv
    ttft, tpot = prefill.total, decode.total
    B, osl = cfg.batch.astype(float), cfg.osl.astype(float)
    latency = ttft + (osl - 1.0) * tpot
    tps = B * osl / latency
    return ServeArrays(
        ttft_s=ttft,
        tpot_s=tpot,
        latency_s=latency,
        output_tokens_per_s=tps,
        output_tokens_per_s_per_gpu=tps / cfg.devices,
        fits=mem.fits if fits is None else fits,
        max_batch=mem.max_batch if max_batch_ is None else max_batch_,
        mem_weights=mem.weights,
        mem_kv_cache=kv,
        mem_activations=mem.act,
        mem_total=mem.weights_hbm + kv + mem.act,
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
