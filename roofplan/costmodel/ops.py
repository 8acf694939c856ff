"""The operator library: time of one kernel on one device, vectorised, shared by training and serving.

Every function takes numpy arrays (or scalars) of shapes and returns seconds; one call prices one
kernel or a million. The parameters are the device's :class:`~roofplan.hardware.spec.Efficiency`
fields, fitted per device to measured kernel tables by ``tools/fit_ops.py`` (H100/H200: the
measured performance database of ``aiconfigurator-core``; other devices: published microbenchmarks
or datasheet priors, each named in its catalog's source string). Nothing here is fitted per case.

Terms and their physics:

* **GEMM** (:func:`gemm_time`): roofline of tensor-core time and operand streaming, blended by a
  p-norm (the two pipelines overlap imperfectly: ``p = gemm_blend``; p -> inf is the pure max of
  Williams et al., CACM 2009). Tensor-core time counts the work of the *tiles* the kernel launches:
  M and N are padded to the 64-element quantum of Hopper CUTLASS/cuBLAS tile shapes (tile
  quantisation), tiles are spread over ``compute_units`` SMs in waves (wave quantisation), and a
  GEMM with fewer tiles than SMs splits K across CTAs (split-K, as cuBLAS heuristics do for narrow
  outputs) at the price of writing partial sums. The main loop reaches ``k/(k + gemm_k_half)`` of
  its steady state (pipeline prologue/epilogue). Few CTAs cannot saturate HBM either: streaming
  runs at ``min(1, ctas / (SMs x gemm_occupancy))`` of the GEMM's HBM fraction. Each kernel has a
  fixed floor (launch, or CUDA-graph replay, plus epilogue). FP8 per-tensor GEMMs as engines run
  them quantise the activation first (a bf16 read and an fp8 write of M x K, the measured Linear
  includes it; NVIDIA Transformer Engine ``Float8CurrentScaling``); block-scaled FP8 (DeepSeek-V3
  1x128 / 128x128 scales, DeepGEMM) quantises per token group in the same way and has no split-K.
  On SM80 devices (``gemm_cta_intensity`` > 0) the tile is instead the best of the Ampere kernels'
  candidate CTA tiles (:data:`SM80_TILES`: padding x waves x the tile's operand reuse against
  ``gemm_cta_intensity``), weight-only GEMMs pay their dequantisation (``gemm_wo_dequant_rate``)
  and their own floor, and up to :data:`GEMV_MAX_M` rows the weight-only and SmoothQuant int8
  GEMMs are TensorRT-LLM's CUDA-core GEMVs, paced by each CTA's serial K loop.
* **Prefill attention** (:func:`prefill_attention_time`): FlashAttention FLOPs (Dao et al. 2022) at
  ``attn_max`` of the compute dtype's peak, with the CTA waves of (batch x heads x query tiles of
  128) and a saturating length term ``s/(s + attn_half_len)`` (softmax rescaling and the causal
  diagonal dominate short rows), plus Q/K/V/O and the KV-cache write streamed from HBM, plus a floor.
* **Decode attention** (:func:`decode_attention_time`): the paged KV cache read once per KV head
  (GQA groups share it; Kwon et al., SOSP 2023), at ``decode_hbm`` of HBM bandwidth and limited by
  the number of (sequence x KV head x KV split of ``decode_split_len`` tokens; flash-decoding,
  FlashInfer / TensorRT-LLM XQA multi-block mode) CTAs (``decode_occupancy`` of the SMs saturate
  HBM), plus a per-sequence cost (page-table walk,
  the softmax merge of flash-decoding splits, the output write) and a floor.
* **MoE** (:func:`moe_time`): the grouped GEMMs of the local experts (gate+up, down) at the rows each
  expert receives; a skewed router (power-law expert loads, the measured tables' generator) loads
  one rank most, and that rank sets the pace (:func:`router_load`, :func:`router_stats`). Where the
  catalog characterises TensorRT-LLM's SM90 or SM100 grouped kernels (``moe_tile_arch`` names the
  tile set), each grouped GEMM is priced from its
  launch grid (:func:`grouped_gemm_time`: per expert ceil(m_e / token tile) x ceil(n / weight tile)
  CTAs in waves over the SMs, a tile costing the larger of its MMA and its k-slab stream, bounded
  below by the touched experts' weight read), plus the permute / activation / finalize streams, a
  cost per local expert and a floor (on SM80 the CUTLASS 2.x grouped GEMM's tiles,
  :data:`MOE_TILES_SM80`); elsewhere as one GEMM of the stacked rows over the touched
  experts' weights at a grouped-GEMM efficiency, plus the permute bytes and a floor.
* **Collectives** (:func:`roofplan.costmodel.collectives.collective_time`,
  :func:`custom_allreduce_time`): the alpha-beta model of :mod:`roofplan.costmodel.collectives`
  (ring/tree over the node hierarchy) for NCCL, taking the fastest of NCCL's LL / LL128 / Simple
  protocols for the size and NVLink SHARP only from ``nvls_min_ranks`` ranks; the engines' custom
  all-reduce (vLLM/SGLang/TensorRT-LLM) as one-shot (every rank reads all peers' buffers, (g-1)·B
  per rank), two-shot (reduce-scatter + all-gather, 2(g-1)/g·B), in-switch multimem or NCCL, chosen
  by the engine's dispatch rule (:mod:`roofplan.engines.allreduce`).
* **Elementwise** (:func:`elementwise_time`): bytes over HBM bandwidth plus a floor per kernel.
* **Linear mixers** (:mod:`roofplan.costmodel.linear_mixer`): a Gated DeltaNet / Mamba-2 layer's conv
  and recurrent-state kernels, HBM streams of the conv windows and states over floors at decode, the
  causal conv and the chunked scan (waves of per-(sequence, head) CTAs walking their chunks) at prefill.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from roofplan.costmodel import flash_decode, mla_decode, trtllm_decode
from roofplan.costmodel.collectives import collective_time
from roofplan.engines.allreduce import GENERIC, AllReduceStrategy
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec, Efficiency

#: GEMM compute classes and what they mean for the kernel (weight bytes from DTYPE_BYTES).
#: ``fp8``: per-tensor scaled W8A8 with dynamic activation quantisation; ``fp8_block``: block-scaled
#: (1x128 activation groups, 128x128 weight blocks); ``int8``: SmoothQuant W8A8, priced in the 8-bit
#: class on the int8 peak; ``int4`` / ``int8_wo`` / ``mxfp4_wo``: weight-only W4A16 / W8A16 / MXFP4
#: (dequantised in registers onto the 16-bit tensor cores).
GEMM_DTYPES = ("bf16", "fp16", "fp8", "fp8_block", "int8", "int4", "int8_wo", "mxfp4_wo", "fp32", "tf32")
#: Bytes per weight element of the GEMM formats that DTYPE_BYTES does not name.
WEIGHT_BYTES = {**DTYPE_BYTES, "fp8_block": 1.0, "int8_wo": 1.0, "mxfp4_wo": 0.53125}
#: The weight-only (mixed-input) formats: dequantised in registers onto the 16-bit tensor cores.
WEIGHT_ONLY = ("int4", "int8_wo", "mxfp4_wo")
#: Tile quantum of M and N (elements): Hopper CUTLASS/cuBLAS tiles are multiples of 64.
TILE = 64.0
#: Weight-side (N) tile of the NVFP4 W4A4 GEMMs on Blackwell (the catalogs' ``gemm_fp4_tile_n``;
#: 0 elsewhere, e.g. MI355X's aiter FP4 GEMMs keep the generic grid): the SM100 block-scaled FP4 kernels run
#: 128-wide weight tiles (TensorRT-LLM ``cutlass_heuristic.cpp`` ``FP4_ONLY`` candidates
#: CtaShape128x{64,128,256}) and no split-K; the measured B200 NVFP4 rows at 16 tokens take
#: 13.6-16.1 us for N = 1024..16384 at K = 4096 (one wave up to 148 x 128 columns) but grow
#: linearly with K (8.3 -> 37.6 us for K = 1024..16384 at N = 4096): few CTAs, each streaming
#: its K, not HBM, set the pace.
FP4_TILE_N = 128.0
#: Smallest K slice a split-K CTA takes (elements).
SPLIT_K_MIN = 256.0
#: CTA tiles (M x N, elements; M = tokens) of the SM80 (Ampere, mma.sync) GEMM kernels: cuBLAS's
#: ``ampere_*_s16816gemm_*`` family (64x64 to 256x128) for the 16-bit GEMMs, with the CUTLASS 2.x
#: 32x128 of TensorRT-LLM. A CTA tile reuses each operand element tile_n (A) or tile_m (B) times,
#: so its intensity is tm*tn/(tm+tn) FLOPs per operand element; below ``gemm_cta_intensity`` the
#: L2 / shared-memory feed (not HBM) limits the tensor cores.
SM80_TILES = (
    (32.0, 128.0),
    (64.0, 64.0),
    (64.0, 128.0),
    (128.0, 64.0),
    (128.0, 128.0),
    (128.0, 256.0),
    (256.0, 128.0),
)
#: TensorRT-LLM's SM80 CUTLASS candidates (``cutlass_heuristic.cpp`` ``get_candidate_tiles``) for
#: SmoothQuant int8 (``Int8``: CtaShape32x128, 64x128, 128x64, 64x64, 128x256, 256x128) and for the
#: weight-only fpA_intB GEMM (``WeightOnly``: CtaShape16x128, 16x256, 32x128, 64x128, 128x128).
SM80_TILES_INT8 = (
    (32.0, 128.0),
    (64.0, 128.0),
    (128.0, 64.0),
    (64.0, 64.0),
    (128.0, 256.0),
    (256.0, 128.0),
)
SM80_TILES_WO = ((16.0, 128.0), (16.0, 256.0), (32.0, 128.0), (64.0, 128.0), (128.0, 128.0))
#: Rows up to which TensorRT-LLM runs its CUDA-core GEMV kernels instead of CUTLASS: the weight-only
#: batched GEMV (``WeightOnlyQuantMatmulPlugin``: ``m < SMALL_M_FAST_PATH`` = 5) and the SmoothQuant
#: int8 GEMV (``SmoothQuantGemmPlugin``: ``m <= 4``, ``smooth_quant::int8_sq_launcher``).
GEMV_MAX_M = 4.0
#: The GEMVs' launch: one CTA of 128 threads takes all M rows and a few output columns over the
#: whole K (no split-K): weight-only ``weightOnlyBatchedGemv`` (``kernelDispatcher.h``,
#: ``kernel.h``) CtaN = 8 interleaved groups of kInterleave = 128 x 8 / (64 x weight bits) columns;
#: SmoothQuant ``int8SQ.cu`` CtaN = 2 columns. 16 such CTAs fit an SM80 SM (2048 threads).
GEMV_CTAS_PER_SM = 16.0
#: The dtypes that have a GEMV kernel on SM80.
GEMV_DTYPES = (*WEIGHT_ONLY, "int8")


def gemv_columns(dtype: str) -> float:
    """Output columns one CUDA-core GEMV CTA computes (:data:`GEMV_MAX_M`)."""
    if dtype == "int8":
        return 2.0
    return 8.0 * 128.0 * 8.0 / (64.0 * WEIGHT_BYTES[dtype] * 8.0)


#: Query rows per FlashAttention CTA (FA2/FA3 forward tile, Dao 2023; Shah et al. 2024).
ATTN_Q_TILE = 128.0
#: FlashAttention-3's (SM90) query tile for head dimensions up to 96 (hopper/tile_size.h).
FA3_SMALL_HEAD_Q_TILE = 192.0


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def gemm_class(dtype: str) -> str:
    """Parameter class of a GEMM dtype: ``bf16`` (16/32-bit and weight-only), ``fp8``, ``fp8_block``,
    ``fp4`` (W4A4 NVFP4/MXFP4 on Blackwell-class tensor cores)."""
    if dtype in ("fp8", "int8"):
        return "fp8"
    if dtype in ("fp8_block", "fp4"):
        return dtype
    return "bf16"


def gemm_params(eff: Efficiency, dtype: str) -> tuple[float, float, float]:
    """(tensor-core fraction, HBM fraction, floor seconds) of a GEMM class on this device."""
    c = gemm_class(dtype)
    if c == "fp8":
        return (eff.gemm_max_fp8 or eff.gemm_max, eff.gemm_hbm_fp8 or eff.gemm_hbm, eff.gemm_floor_fp8_s)
    if c == "fp8_block":
        return (
            eff.gemm_max_fp8_block or eff.gemm_max_fp8 or eff.gemm_max,
            eff.gemm_hbm_fp8_block or eff.gemm_hbm_fp8 or eff.gemm_hbm,
            eff.gemm_floor_fp8_block_s,
        )
    if c == "fp4":
        return (
            eff.gemm_max_fp4 or eff.gemm_max_fp8 or eff.gemm_max,
            eff.gemm_hbm_fp4 or eff.gemm_hbm_fp8 or eff.gemm_hbm,
            eff.gemm_floor_fp4_s or eff.gemm_floor_fp8_s,
        )
    if dtype in WEIGHT_ONLY and eff.gemm_floor_wo_s:
        return eff.gemm_max, eff.gemm_hbm, eff.gemm_floor_wo_s
    return eff.gemm_max, eff.gemm_hbm, eff.gemm_floor_s


def peak16(hw: DeviceSpec) -> float:
    """The device's dense 16-bit tensor-core peak (bf16, or fp16 where it has no bf16 rate)."""
    return hw.peak("bf16") if "bf16" in hw.peak_flops else hw.peak("fp16")


def gemm_peak(hw: DeviceSpec, dtype: str) -> float:
    """Dense tensor-core peak a GEMM of ``dtype`` runs at (weight-only int4 computes in 16-bit)."""
    if dtype == "fp8_block":
        return hw.peak("fp8")
    if dtype in WEIGHT_ONLY:  # weight-only formats dequantise onto 16-bit tensor cores
        return peak16(hw)
    return hw.peak(dtype)


def gemm_parallelism(
    m, n, k, compute_units: float | None, tile_n: float = 0.0, *, eff: Efficiency | None = None, dtype="bf16"
):
    """(tile utilisation, CTAs, split-K factor) of an (M x K) @ (K x N) GEMM.

    Utilisation = (useful / padded tile area) x (CTAs / (waves x SMs)); without a known SM count
    only tile padding is modelled and the CTAs are taken as filling the device. Where ``eff``
    characterises SM80 tiles (``gemm_cta_intensity`` > 0) the kernel is the best of
    :func:`sm80_parallelism`; otherwise tiles are the 64-element quantum of Hopper-class kernels,
    and ``tile_n`` > 0 (:func:`gemm_tile_n`: Blackwell's NVFP4 kernels) tiles the weight side by
    that width and never splits K."""
    if eff is not None and eff.gemm_cta_intensity > 0 and compute_units:
        return sm80_parallelism(m, n, k, float(compute_units), eff.gemm_cta_intensity, dtype)
    m, n, k = _f(m), _f(n), _f(k)
    tn = tile_n or TILE
    tiles = np.ceil(m / TILE) * np.ceil(n / tn)
    pad = (m * n) / (np.ceil(m / TILE) * TILE * np.ceil(n / tn) * tn)
    if not compute_units:
        return pad, tiles, np.ones_like(tiles)
    sms = float(compute_units)
    most = 1.0 if tile_n else np.maximum(np.floor(k / SPLIT_K_MIN), 1.0)
    splits = np.clip(np.floor(sms / tiles), 1.0, most)
    ctas = tiles * splits
    wave = ctas / (np.ceil(ctas / sms) * sms)
    return pad * wave, ctas, splits


def sm80_parallelism(m, n, k, sms: float, intensity: float, dtype="bf16"):
    """:func:`gemm_parallelism` of an SM80 GEMM: of the candidate tiles (:data:`SM80_TILES`,
    :data:`SM80_TILES_INT8`, :data:`SM80_TILES_WO`) the heuristic runs the one of highest
    utilisation = padding x waves x min(1, tile intensity / ``intensity``) (a small tile wastes no
    padding and fills the waves, but re-reads its operands from L2 more often per FLOP), each
    with split-K where its tiles leave SMs idle, as with the 64-element quantum."""
    m, n, k = _f(m), _f(n), _f(k)
    gemv = None
    if dtype in GEMV_DTYPES:
        ctas = np.ceil(n / gemv_columns(dtype)) + 0.0 * m
        gemv = (ctas / (np.ceil(ctas / sms) * sms), ctas, np.ones_like(ctas))
    best = None
    cands = SM80_TILES_WO if dtype in WEIGHT_ONLY else SM80_TILES_INT8 if dtype == "int8" else SM80_TILES
    for tm, tn in sorted(cands, key=lambda t: -t[0] * t[1]):  # ties: the larger tile (fewer L2 reads)
        tiles = np.ceil(m / tm) * np.ceil(n / tn)
        pad = (m * n) / (tiles * tm * tn)
        splits = np.clip(np.floor(sms / tiles), 1.0, np.maximum(np.floor(k / SPLIT_K_MIN), 1.0))
        ctas = tiles * splits
        wave = ctas / (np.ceil(ctas / sms) * sms)
        util = pad * wave * min(1.0, tm * tn / (tm + tn) / intensity)
        if best is None:
            best = (util, ctas, splits)
        else:
            take = util > best[0]
            best = tuple(np.where(take, a, b) for a, b in zip((util, ctas, splits), best, strict=True))
    if gemv is not None:
        small = m <= GEMV_MAX_M
        best = tuple(np.where(small, a, b) for a, b in zip(gemv, best, strict=True))
    return best


def gemm_tile_n(eff: Efficiency, dtype: str) -> float:
    """Weight-side tile of a GEMM of ``dtype`` where the device's kernels fix it and do not split K
    (``gemm_fp4_tile_n`` for the NVFP4 class, :data:`FP4_TILE_N` on Blackwell), else 0."""
    return eff.gemm_fp4_tile_n if gemm_class(dtype) == "fp4" else 0.0


def gemm_efficiency(
    m, n, k, hw: DeviceSpec, *, dtype: str = "bf16", eff: Efficiency | None = None, _par=None
):
    """Achieved fraction of the dtype's dense peak for the tensor-core part of a GEMM: the class's
    ``gemm_max`` x tile and wave utilisation x the main-loop term of the K slice each CTA runs."""
    eff = hw.efficiency if eff is None else eff
    util, _, splits = (
        gemm_parallelism(
            np.maximum(_f(m), 1.0), n, k, hw.compute_units, gemm_tile_n(eff, dtype), eff=eff, dtype=dtype
        )
        if _par is None
        else _par
    )
    k_slice = _f(k) / splits
    return gemm_params(eff, dtype)[0] * np.maximum(util * k_slice / (k_slice + eff.gemm_k_half), 1e-4)


def gemm_components(
    m,
    n,
    k,
    hw: DeviceSpec,
    *,
    dtype: str = "bf16",
    eff: Efficiency | None = None,
    weight_bw_Bps=None,
    act_in_hbm=1.0,
    weight_bytes=None,
    act_bytes=None,
    out_bytes=None,
    quantise=True,
    kernels: str = "trtllm",
):
    """(tensor-core seconds, streaming seconds, fixed seconds) of one GEMM kernel; see :func:`gemm_time`."""
    eff = hw.efficiency if eff is None else eff
    if kernels == "deepgemm" and dtype == "fp8_block" and eff.gemm_max_deepgemm > 0:
        eff = dataclasses.replace(
            eff,
            gemm_max_fp8_block=eff.gemm_max_deepgemm,
            gemm_hbm_fp8_block=eff.gemm_hbm_deepgemm or eff.gemm_hbm_fp8_block,
            gemm_floor_fp8_block_s=eff.gemm_floor_deepgemm_s or eff.gemm_floor_fp8_block_s,
        )
    m, n, k = np.maximum(_f(m), 1.0), _f(n), _f(k)
    c = gemm_class(dtype)
    _, ghbm, floor = gemm_params(eff, dtype)
    gemv = bool(dtype in GEMV_DTYPES and eff.gemm_cta_intensity and hw.compute_units)  # SM80 GEMVs
    if gemv and eff.gemm_floor_gemv_s:
        floor = np.where(m <= GEMV_MAX_M, eff.gemm_floor_gemv_s, floor)
    wb = WEIGHT_BYTES[dtype] if weight_bytes is None else weight_bytes
    ab_in = (
        {"bf16": min(DTYPE_BYTES.get(dtype, 2.0), 2.0), "fp4": 0.5625}.get(c, 1.0)
        if act_bytes is None
        else act_bytes
    )
    ob = 2.0 if out_bytes is None else out_bytes
    par = gemm_parallelism(m, n, k, hw.compute_units, gemm_tile_n(eff, dtype), eff=eff, dtype=dtype)
    _, ctas, splits = par
    t_c = (
        2.0
        * m
        * n
        * k
        / (gemm_peak(hw, dtype) * gemm_efficiency(m, n, k, hw, dtype=dtype, eff=eff, _par=par))
    )
    if dtype in WEIGHT_ONLY and eff.gemm_wo_dequant_rate:
        # each row of M tiles (at most the largest weight-only tile's rows) dequantises the weights
        t_c = t_c + np.ceil(m / max(t[0] for t in SM80_TILES_WO)) * n * k / eff.gemm_wo_dequant_rate
    hbm = hw.hbm_Bps * ghbm
    mem_par = (
        np.minimum(1.0, ctas / (float(hw.compute_units) * eff.gemm_occupancy)) if hw.compute_units else 1.0
    )
    w_bw = hbm if weight_bw_Bps is None else np.minimum(_f(weight_bw_Bps), hbm)
    t_m = (k * n * wb / w_bw + act_in_hbm * (m * k * ab_in + m * n * ob * splits) / hbm) / mem_par
    if gemv and eff.gemm_gemv_cta_Bps:
        # the GEMV: the HBM stream, or each CTA's serial K loop over its columns' weights at
        # ``gemm_gemv_cta_Bps`` in waves of the resident CTAs, whichever is longer
        waves = np.ceil(ctas / (float(hw.compute_units) * GEMV_CTAS_PER_SM))
        cta = waves * gemv_columns(dtype) * k * WEIGHT_BYTES[dtype] / eff.gemm_gemv_cta_Bps
        t_m = np.where(m <= GEMV_MAX_M, np.maximum(t_m * mem_par, cta), t_m)
    if quantise and c in (
        "fp8",
        "fp8_block",
        "fp4",
    ):  # dynamic activation quantisation: bf16 read, low-bit write
        fixed = floor + act_in_hbm * m * k * 3.0 / hbm + np.zeros_like(t_c)
    else:  # the FP8 classes' floors hold their quantisation kernels; the GEMM alone has the 16-bit one
        fixed = (eff.gemm_floor_s if c != "bf16" else floor) + np.zeros_like(t_c)
    return t_c, t_m, fixed


def blend(t_compute, t_memory, eff: Efficiency):
    """Compute and memory time of one kernel combined: the p-norm with p = ``gemm_blend`` (p = 4,
    the catalogs' value, is evaluated with multiplications and square roots: a power is ~10x dearer
    and this runs for every GEMM of a million-configuration search)."""
    a, b = np.asarray(t_compute, dtype=float), np.asarray(t_memory, dtype=float)
    p = eff.gemm_blend
    if p == 4.0:
        a2, b2 = a * a, b * b
        return np.sqrt(np.sqrt(a2 * a2 + b2 * b2))
    return (a**p + b**p) ** (1.0 / p)


def gemm_time(
    m,
    n,
    k,
    hw: DeviceSpec,
    *,
    dtype: str = "bf16",
    eff: Efficiency | None = None,
    weight_bw_Bps=None,
    act_in_hbm=1.0,
    weight_bytes=None,
    act_bytes=None,
    out_bytes=None,
    quantise=True,
    kernels: str = "trtllm",
):
    """Seconds of one (M x K) @ (K x N) GEMM kernel (M = tokens, N = output features, K = input).

    ``weight_bw_Bps`` overrides the bandwidth the weights stream at (weights in a slower tier);
    ``act_in_hbm`` = 0 keeps activations on chip (dataflow devices); ``quantise`` False leaves out
    the FP8 activation cast (Transformer Engine training prices its casts itself). ``eff``
    defaults to the device's own; callers pass :func:`roofplan.costmodel.roofline.sustained` for
    long runs. ``kernels``: the kernel library (``"trtllm"``: TensorRT-LLM's, the catalog's GEMM
    classes; ``"deepgemm"``: block-scaled FP8 as SGLang runs it, DeepGEMM with its fused
    per-token-group quantisation, at the ``gemm_*_deepgemm`` parameters where characterised)."""
    eff = hw.efficiency if eff is None else eff
    t_c, t_m, fixed = gemm_components(
        m,
        n,
        k,
        hw,
        dtype=dtype,
        eff=eff,
        weight_bw_Bps=weight_bw_Bps,
        act_in_hbm=act_in_hbm,
        weight_bytes=weight_bytes,
        act_bytes=act_bytes,
        out_bytes=out_bytes,
        quantise=quantise,
        kernels=kernels,
    )
    return blend(t_c, t_m, eff) + fixed


def prefill_attention_time(
    batch,
    seq_len,
    kv_len,
    heads,
    kv_heads,
    head_dim,
    hw: DeviceSpec,
    *,
    dtype: str = "bf16",
    kv_dtype: str = "bf16",
    causal=True,
    eff: Efficiency | None = None,
    act_in_hbm=1.0,
    v_head_dim=None,
    kv_bytes_per_token=None,
    causal_fraction=None,
    kv_cache=True,
    kernels: str = "trtllm",
):
    """Seconds of one fused prefill attention kernel (FlashAttention / TRT-LLM FMHA) over ``batch``
    sequences of ``seq_len`` new query tokens attending to ``kv_len`` keys (kv_len >= seq_len with
    a cached prefix), including the write of the new K/V into the paged cache.
    ``kv_bytes_per_token`` overrides the cached bytes per token and layer (MLA latent);
    ``causal_fraction`` overrides the computed share of the score matrix (context-parallel ranks
    see balanced causal chunks); ``kv_cache`` False (training) leaves out the cache preprocessing.
    ``kernels``: ``"trtllm"`` TensorRT-LLM's attention op (its QKV preprocessing applies RoPE and
    writes the cache, then the FMHA), ``"flash"`` FlashAttention-3 as vLLM and SGLang call it
    (the cache write, then the kernel; RoPE is the model's own kernel, :func:`rope_time`) at the
    ``fa_prefill_*`` parameters where the device characterises them."""
    eff = hw.efficiency if eff is None else eff
    flash = kernels == "flash" and eff.fa_prefill_max > 0
    if flash:
        # over an FP8 cache vLLM runs FA3's FP8 kernel (Q quantised, K/V descaled): the 8-bit class
        dtype = "fp8" if kv_dtype == "fp8" else dtype
        eff = dataclasses.replace(
            eff,
            attn_max=eff.fa_prefill_max,
            attn_max_fp8=eff.fa_prefill_max_fp8 or eff.fa_prefill_max,
            attn_half_len=eff.fa_prefill_half_len or eff.attn_half_len,
            attn_floor_s=eff.fa_prefill_floor_s,
            attn_score_flops=eff.fa_prefill_score_flops or eff.attn_score_flops,
        )
    b, s, kv = _f(batch), np.maximum(_f(seq_len), 1.0), np.maximum(_f(kv_len), 1.0)
    h, hk, d = _f(heads), _f(kv_heads), _f(head_dim)
    dv = d if v_head_dim is None else _f(v_head_dim)
    causal_frac = np.where(causal, 1.0 - 0.5 * s / kv, 1.0) if causal_fraction is None else causal_fraction
    # tensor-core FLOPs plus the softmax's exponentials, counted as ``attn_score_flops`` matmul
    # FLOPs per score element (FlashAttention-3, Shah et al. 2024 §3: H100 SXM5 has 989 TFLOPS of
    # matmul but 3.9 TFLOPS of MUFU exp, 256x less, so small head dims are exp-bound)
    flops = b * h * s * kv * causal_frac * (2.0 * (d + dv) + eff.attn_score_flops)
    fp8 = dtype == "fp8"
    peak = hw.peak("fp8") if fp8 and "fp8" in hw.peak_flops else peak16(hw)
    amax = (eff.attn_max_fp8 or eff.attn_max) if fp8 else eff.attn_max
    # FlashAttention-3's SM90 forward tiles 192 query rows for head dims up to 96, 128 above
    # (hopper/tile_size.h tile_size_fwd_sm90, vLLM's fork of FlashAttention as well)
    q_tile = np.where(d <= 96.0, FA3_SMALL_HEAD_Q_TILE, ATTN_Q_TILE) if flash else ATTN_Q_TILE
    ctas = b * h * np.ceil(s / q_tile)
    sms = float(hw.compute_units or 0.0)
    wave = ctas / (np.ceil(ctas / sms) * sms) if sms else 1.0
    util = np.maximum(wave * kv / (kv + eff.attn_half_len), 1e-4)
    t_c = flops / (peak * amax * util)
    ab = 1.0 if fp8 else 2.0
    per_tok = (
        hk * (d + dv) * DTYPE_BYTES.get(kv_dtype, 2.0)
        if kv_bytes_per_token is None
        else _f(kv_bytes_per_token)
    )
    hbm = hw.hbm_Bps * eff.hbm
    t_m = b * (act_in_hbm * s * h * (d + dv) * ab + kv * per_tok) / hbm  # Q, O, K, V once
    # the QKV preprocessing kernel before the FMHA (RoPE on Q and K, the new K/V into the paged
    # cache; TensorRT-LLM ``QKVPreprocessing``, vLLM ``reshape_and_cache``): reads the 16-bit
    # projections of the new tokens, writes the rotated Q and the cache entries
    new_kv = b * s * per_tok
    if flash:  # the engine's cache write (vLLM reshape_and_cache_flash): K/V read, paged slots written
        cache = (act_in_hbm * b * s * hk * (d + dv) * 2.0 + new_kv) / (
            hw.hbm_Bps * (eff.fa_prefill_cache_hbm or eff.hbm)
        )
        t_pre = cache if kv_cache else 0.0
    else:
        rope = act_in_hbm * b * s * (h * d * 2.0 * 2.0 + hk * (d + dv) * 2.0)
        t_pre = (rope + new_kv) / hbm if kv_cache else 0.0
    return np.maximum(t_c, t_m) + t_pre + eff.attn_floor_s


def rope_time(
    tokens, heads, kv_heads, head_dim, hw: DeviceSpec, *, eff: Efficiency | None = None, act_in_hbm=1.0
):
    """Seconds of the rotary-embedding kernel an engine runs before FlashAttention (vLLM / SGLang
    ``rotary_emb``, in place): the 16-bit Q and K of ``tokens`` read and written once, plus one
    elementwise floor (:func:`elementwise_time`)."""
    nbytes = act_in_hbm * _f(tokens) * (_f(heads) + _f(kv_heads)) * _f(head_dim) * 2.0 * 2.0
    return elementwise_time(nbytes, hw, eff=eff)


def decode_attention_time(
    batch,
    kv_len,
    heads,
    kv_heads,
    head_dim,
    hw: DeviceSpec,
    *,
    kv_dtype: str = "bf16",
    eff: Efficiency | None = None,
    q_len=1.0,
    kv_bytes_per_token=None,
    shared_kv=True,
    dispatch: str = "shared",
):
    """Seconds of one decode attention kernel: ``batch`` sequences of ``q_len`` query tokens each
    reading ``kv_len`` cached tokens. ``kv_bytes_per_token`` overrides K+V bytes per token and
    layer on this device (MLA latent); ``shared_kv`` False re-reads K/V once per query head.
    ``dispatch`` names the kernel library: ``"trtllm"``, TensorRT-LLM's XQA / masked-MHA kernels
    (:mod:`roofplan.costmodel.trtllm_decode`); ``"flash"``, FlashAttention-3 paged decode as vLLM
    and SGLang run it (:mod:`roofplan.costmodel.flash_decode`); ``"trtllm_mla"``, TensorRT-LLM's FlashMLA for an
    absorbed MLA latent of ``head_dim`` 576 (:mod:`roofplan.costmodel.mla_decode`); each where the device's catalog
    characterises it. Otherwise (and for ``"shared"``) the generic model below; ``"triton"`` (vLLM
    V1's Triton unified attention on ROCm) is the generic model with the KV stream at the device's
    ``triton_decode_hbm`` of HBM bandwidth instead of ``decode_hbm``."""
    eff = hw.efficiency if eff is None else eff
    if dispatch == "triton" and eff.triton_decode_hbm > 0:
        eff = dataclasses.replace(eff, decode_hbm=eff.triton_decode_hbm)
    b, L = _f(batch), np.maximum(_f(kv_len), 1.0)
    hk, d = _f(kv_heads), _f(head_dim)
    per_tok = (
        2.0 * hk * d * DTYPE_BYTES.get(kv_dtype, 2.0)
        if kv_bytes_per_token is None
        else _f(kv_bytes_per_token)
    )
    fp8_kv = DTYPE_BYTES.get(kv_dtype, 2.0) < 2.0
    if (
        dispatch == "trtllm"
        and shared_kv
        and trtllm_decode.has_xqa_model(eff)
        and hw.compute_units
        and trtllm_decode.covers_cache("fp8" in hw.peak_flops, fp8_kv)
    ):
        return trtllm_decode.trtllm_decode_time(
            b, L, heads, hk, d, per_tok, fp8_kv, hw.hbm_Bps, float(hw.compute_units), eff
        )
    if (
        dispatch == "trtllm_mla"
        and mla_decode.has_mla_model(eff)
        and mla_decode.covers_shape(d)
        and hw.compute_units
    ):
        return mla_decode.mla_decode_time(
            b,
            L,
            heads,
            per_tok,
            fp8_kv,
            hw.hbm_Bps,
            peak16(hw),
            float(hw.compute_units),
            eff,
        )
    if dispatch == "flash" and shared_kv and flash_decode.has_fa3_model(eff) and hw.compute_units:
        return flash_decode.fa3_decode_time(
            b, L, hk, d, per_tok, fp8_kv, hw.hbm_Bps, float(hw.compute_units), eff
        )
    reread = 1.0 if shared_kv else _f(heads) / np.maximum(hk, 1.0)
    kv_bytes = b * L * per_tok * reread
    ctas = b * np.maximum(hk, 1.0) * np.maximum(L / eff.decode_split_len, 1.0)
    sms = float(hw.compute_units or 0.0)
    par = np.maximum(ctas / (ctas + sms * eff.decode_occupancy), 1e-9) if sms else 1.0  # smooth saturation
    t_m = kv_bytes / (hw.hbm_Bps * eff.decode_hbm * par)
    t_c = 4.0 * b * _f(heads) * _f(q_len) * L * d / (peak16(hw) * eff.attn_max)
    return np.maximum(t_m, t_c) + b * eff.decode_seq_s + eff.decode_floor_s


#: Draws of the skewed-router generator averaged by :func:`router_load` (fixed seed: deterministic).
ROUTER_DRAWS = 256
#: CTA tiles (weight rows x token columns) TensorRT-LLM's SM90 grouped GEMM autotunes over
#: (``cutlass_heuristic.cpp`` ``get_candidate_tiles_sm90`` with ``GROUPED_GEMM``: CtaShape128x16,
#: 128x32, 128x64, 128x128, 128x256 and 256x128, x128B in K). The MoE GEMM runs transposed (the
#: experts' weights are the M operand, the expert's token copies the N operand), so the token
#: columns of a tile are the small side that follows the load.
MOE_TILES = ((128.0, 16.0), (128.0, 32.0), (128.0, 64.0), (128.0, 128.0), (128.0, 256.0), (256.0, 128.0))
#: The same for weight-only (mixed-input) grouped GEMMs (``WEIGHT_ONLY``: 64 and 128 weight rows
#: by 16 to 128 token columns).
MOE_TILES_WO = tuple((w, t) for w in (64.0, 128.0) for t in (16.0, 32.0, 64.0, 128.0))
#: The block-scaled FP8 grouped GEMM (DeepGEMM's kernel as TensorRT-LLM ports it,
#: ``fp8_blockscale_gemm``): token blocks of 64 or 128 rows (BLOCK_M), weight blocks of 128 or 256
#: columns (BLOCK_N), the 128-wide K step of the scales.
MOE_TILES_FP8_BLOCK = ((128.0, 64.0), (128.0, 128.0), (256.0, 64.0), (256.0, 128.0))
#: The same on SM80 devices (``gemm_cta_intensity`` > 0), where TensorRT-LLM's MoE runs the
#: CUTLASS 2.x grouped GEMM over the SM80 candidates of ``get_candidate_tiles`` (the 16-bit
#: ``base_configs``: CtaShape32x128, 64x128, 128x128, tokens x weight columns; ``WeightOnly``:
#: 16x128, 16x256, 32x128, 64x128, 128x128), written as weight rows x token columns.
MOE_TILES_SM80 = ((128.0, 32.0), (128.0, 64.0), (128.0, 128.0))
MOE_TILES_WO_SM80 = ((128.0, 16.0), (256.0, 16.0), (128.0, 32.0), (128.0, 64.0), (128.0, 128.0))
#: The same on Blackwell (SM100, B200/GB200; ``moe_tile_arch`` 100): TensorRT-LLM's
#: ``cutlass_heuristic.cpp`` ``get_candidate_configs_sm100`` with ``GROUPED_GEMM`` offers 64- and
#: 128-row tiles by 32 to 256 token columns (1-SM and 2-SM cluster variants of the same per-SM tile;
#: no 256-row tile, no 16-column tile outside FP8).
MOE_TILES_SM100 = tuple((w, t) for w in (64.0, 128.0) for t in (32.0, 64.0, 128.0, 256.0))
#: SM100 per-tensor FP8 adds the 128x16 tile (``FP8_ONLY``).
MOE_TILES_SM100_FP8 = MOE_TILES_SM100 + ((128.0, 16.0),)
#: SM100 NVFP4 W4A4 (``FP4_ONLY``): 128 weight rows by 64 (SM100 only), 128 or 256 token columns.
MOE_TILES_SM100_FP4 = ((128.0, 64.0), (128.0, 128.0), (128.0, 256.0))
#: Token columns of the candidate tiles, for the per-expert tile counts of :func:`router_load`.
TOKEN_TILES = (16.0, 32.0, 64.0, 128.0, 256.0)
#: Weight columns of a CTA of the Triton ``matmul_ogs`` kernel TensorRT-LLM runs for W4A16 MXFP4
#: MoE on SM90 (aiconfigurator-core 0.12.0 ``sdk/common.py`` ``MoEQuantMode.w4a16_mxfp4``: "GPT-OSS's
#: triton_kernels mxfp4 path"; triton_kernels ``matmul_ogs_details/opt_flags_details/opt_flags_nvidia.py``
#: ``compute_block_n``: 128 with the Hopper MX-scale layout at 4 warps; ``compute_block_k``: 128 for
#: 4-bit weights without native MXFP tensor cores).
MXFP4_TRITON_BLOCK_N = 128.0
#: The same kernel on CDNA 3 (gfx942, vLLM's MXFP4 MoE on ROCm): triton_kernels
#: ``matmul_ogs_details/opt_flags.py`` ``make_default_opt_flags_amd`` takes block_m = max(32,
#: min(next power of two of tokens per expert, 64)) (128 from 512 tokens per expert at n >= 2048),
#: block_n 256 / block_k 128 for 4-bit weights (the 32x256x128 specialisation profiled in
#: ROCm/triton#970) and splits K over max(1, CUs // grid) when the grid underfills the device.
MXFP4_TRITON_BLOCK_N_CDNA = 256.0


def router_load(distribution: str, experts, ep, tokens, topk=1.0):
    """(share of the token copies the most loaded expert-parallel rank receives, relative to the
    balanced 1/ep; expected distinct experts that rank's copies hit) for ``tokens`` tokens routed
    to ``topk`` of ``experts`` experts each, uniformly at random (``balanced``), by the measured MoE
    tables' balanced generator (``round_robin``) or by their skewed one (``power_law_<alpha>``,
    :func:`_power_law_rank0`)."""
    share, touched, _ = router_stats(distribution, experts, ep, tokens, topk)
    return share, touched


def router_stats(distribution: str, experts, ep, tokens, topk=1.0):
    """:func:`router_load`'s (share, experts hit) and, for each token tile of :data:`TOKEN_TILES`,
    the expected tiles sum_e ceil(m_e / tile) of the busiest rank's experts (m_e copies each): the
    token side of the grouped GEMM's launch grid."""
    E, ep, T, k = (
        np.array(x, dtype=float) for x in np.broadcast_arrays(_f(experts), _f(ep), _f(tokens), _f(topk))
    )
    if distribution == "round_robin":
        keys = np.stack([E.ravel(), ep.ravel(), T.ravel(), k.ravel()], axis=1)
        uniq, inv = np.unique(keys, axis=0, return_inverse=True)
        stats = np.array([_round_robin_rank0(*(int(v) for v in key)) for key in uniq])[inv.ravel()]
        shape = E.shape
        tiles = np.stack([stats[:, 2 + i].reshape(shape) for i in range(len(TOKEN_TILES))])
        return stats[:, 0].reshape(shape), stats[:, 1].reshape(shape), tiles
    if not distribution or distribution == "balanced":
        copies = T * k / ep
        e_local = np.maximum(E / ep, 1.0)
        # independent uniform picks: the expected distinct experts of ``copies`` draws
        hit = e_local * (1.0 - np.power(1.0 - 1.0 / e_local, copies))
        per = copies / np.maximum(hit, 1e-9)
        tiles = np.stack([hit * np.ceil(np.maximum(per, 1e-9) / t - 1e-9) for t in TOKEN_TILES])
        return np.ones_like(E), hit, tiles
    alpha = float(distribution.removeprefix("power_law_"))
    keys = np.stack([E.ravel(), ep.ravel(), T.ravel(), k.ravel()], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    stats = np.array([_power_law_rank0(*(int(v) for v in key), alpha) for key in uniq])
    out = stats[inv.ravel()]
    shape = E.shape
    tiles = np.stack([out[:, 2 + i].reshape(shape) for i in range(len(TOKEN_TILES))])
    return out[:, 0].reshape(shape), out[:, 1].reshape(shape), tiles


def _rank_stats(mine, tokens: int, topk: int, ep: int) -> tuple[float, ...]:
    """(load share relative to tokens x topk / ep, experts hit, token tiles per :data:`TOKEN_TILES`)
    of one rank's expert loads ``mine`` (draws x local experts), averaged over the draws."""
    tiles = [float(np.ceil(mine / t).sum(axis=1).mean()) for t in TOKEN_TILES]
    share = float(mine.sum(axis=1).mean() / max(tokens * topk / max(ep, 1), 1e-30))
    return (share, float((mine > 0).sum(axis=1).mean()), *tiles)


@functools.lru_cache(maxsize=4096)
def _round_robin_rank0(experts: int, ep: int, tokens: int, topk: int) -> tuple[float, ...]:
    """(load share, experts hit, token tiles per :data:`TOKEN_TILES`) of rank 0 under
    aiconfigurator's balanced router (``balanced_logits`` of its MoE collectors, the "balanced"
    rows of its measured tables), replayed exactly: with stride = ceil(experts / topk), token i's
    j-th copy goes to expert (i + j x stride) mod experts, or, with fewer tokens than the stride,
    to int(i x stride / tokens + j x stride) mod experts (a token's copies that land on one expert
    count once: the router keeps distinct experts). Rank 0 holds experts [0, experts / ep) and is
    the rank measured (nothing is swapped, unlike the skewed router): one token always sends a
    copy to expert 0, so rank 0 reads one expert's weights even with fewer copies than ranks."""
    stride = -(-experts // max(topk, 1))
    i = np.arange(tokens, dtype=float)[:, None]
    j = np.arange(topk, dtype=float)[None, :]
    first = i if tokens >= stride else i * stride / tokens
    chosen = np.floor(first + j * stride).astype(np.int64) % experts
    rows = np.repeat(np.arange(tokens), topk)
    flat = np.unique(rows * experts + chosen.ravel())  # distinct experts per token
    loads = np.bincount(flat % experts, minlength=experts).astype(float)
    per_rank = max(experts // max(ep, 1), 1)
    return _rank_stats(loads[None, :per_rank], tokens, topk, ep)


@functools.lru_cache(maxsize=4096)
def _power_law_rank0(experts: int, ep: int, tokens: int, topk: int, alpha: float) -> tuple[float, ...]:
    """Mean (load share, experts hit, token tiles per :data:`TOKEN_TILES`) of the busiest rank under
    aiconfigurator's skewed router (``power_law_logits_v3`` of aiconfigurator's MoE collectors,
    the generator of its measured ``moe_perf`` tables): each expert's load is an independent draw
    from a power law truncated to [1, 0.8 x tokens] (to [0.01, 2] when tokens x topk <= experts),
    scaled to tokens x topk in all and rounded (the remainder one by one to the largest draws), no
    expert above ``tokens`` (a token picks an expert once); experts sit on ranks in contiguous
    blocks and the busiest block is measured. Averaged over ``ROUTER_DRAWS`` draws of a fixed seed."""
    rng = np.random.default_rng(0)
    u = rng.random((ROUTER_DRAWS, experts))
    lo, hi = (1.0, 0.8 * tokens) if tokens * topk > experts else (0.01, 2.0)
    a1 = 1.0 - alpha
    x = ((hi**a1 - lo**a1) * u + lo**a1) ** (1.0 / a1)
    target = tokens * topk
    loads = np.round(x / x.sum(axis=1, keepdims=True) * target)
    # the rounding remainder goes one by one to the largest experts (or is taken from the smallest);
    # experts rounded to the same load take it in turn across the ranks (with fewer copies than
    # experts most round to 0: the measured one-token rows of 8 copies cost the weight read of
    # 8/ep experts at ep = 2, 4, 8, not of 8, so the remainder is spread over the ranks)
    delta = target - loads.sum(axis=1)
    per_rank = max(experts // max(ep, 1), 1)
    spread = (np.arange(experts) % per_rank) * experts + np.arange(experts) // per_rank
    order = np.lexsort((np.broadcast_to(spread, loads.shape), -loads), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(experts)[None, :], axis=1)
    pos = np.where(delta[:, None] >= 0, rank, experts - 1 - rank)  # from the top, or from the bottom
    step = np.abs(delta)[:, None]
    extra = np.floor(step / experts) + (pos < np.mod(step, experts))
    loads = np.clip(loads + np.sign(delta)[:, None] * extra, 0.0, tokens)
    blocks = loads[:, : per_rank * max(ep, 1)].reshape(ROUTER_DRAWS, -1, per_rank)
    sums = blocks.sum(axis=2)
    hot = np.argmax(sums, axis=1)
    return _rank_stats(blocks[np.arange(ROUTER_DRAWS), hot], tokens, topk, ep)


def moe_class(dtype: str) -> str:
    """Grouped-GEMM class of a MoE dtype: ``wo`` for the weight-only (mixed-input) formats (int4 /
    int8 / MXFP4 weights dequantised in registers onto the 16-bit tensor cores: the ``bf16``
    parameters, the weight-only tiles), otherwise the GEMM class."""
    return "wo" if dtype in WEIGHT_ONLY else gemm_class(dtype)


def has_grouped_moe_model(hw: DeviceSpec, eff: Efficiency | None = None) -> bool:
    """Whether the device's catalog characterises the grouped-GEMM launch-grid model
    (:func:`grouped_gemm_time`; ``moe_mma`` > 0 and a known SM count)."""
    eff = hw.efficiency if eff is None else eff
    return eff.moe_mma > 0 and bool(hw.compute_units)


def balanced_token_tiles(rows_per_expert, experts):
    """Token tiles (indexed like :data:`TOKEN_TILES`) of ``experts`` problems of
    ``rows_per_expert`` rows each (a balanced router, training's grouped GEMMs)."""
    m, e = _f(rows_per_expert), _f(experts)
    return np.stack([e * np.ceil(np.maximum(m, 1e-9) / t - 1e-9) for t in TOKEN_TILES])


def moe_tiles(moe_cls: str, eff: Efficiency) -> tuple:
    """Candidate (weight rows, token columns) CTA tiles of a grouped-GEMM class on the catalog's
    ``moe_tile_arch``: SM90 (:data:`MOE_TILES`) or SM100 (:data:`MOE_TILES_SM100`); the
    weight-only and block-scaled FP8 kernels keep their tiles on both. SM80 devices
    (``gemm_cta_intensity`` > 0) run the CUTLASS 2.x grouped GEMM (:data:`MOE_TILES_SM80`)."""
    if eff.gemm_cta_intensity > 0:  # SM80: the CUTLASS 2.x grouped GEMM's tiles
        return MOE_TILES_WO_SM80 if moe_cls == "wo" else MOE_TILES_SM80
    if moe_cls == "wo":
        return MOE_TILES_WO
    if moe_cls == "fp8_block":
        return MOE_TILES_FP8_BLOCK
    if eff.moe_tile_arch >= 100.0:
        return {"fp8": MOE_TILES_SM100_FP8, "fp4": MOE_TILES_SM100_FP4}.get(moe_cls, MOE_TILES_SM100)
    return MOE_TILES


def grouped_gemm_time(
    token_tiles,
    copies,
    experts_hit,
    n,
    k,
    hw: DeviceSpec,
    *,
    dtype="bf16",
    eff=None,
    weight_bw_Bps=None,
    weight_bytes=None,
    act_bytes=None,
):
    """Seconds of one grouped GEMM (one problem per touched expert, weights n x k each, ``copies``
    token copies in all) as its launch grid runs: for each candidate CTA tile of the class on the
    catalog's architecture (:func:`moe_tiles`; the autotuner keeps the fastest) the CTAs are the experts' token tiles (``token_tiles``, indexed like
    :data:`TOKEN_TILES`) x ceil(n / weight rows), in waves over the SMs; a tile costs ``moe_tile_s``
    (prologue, epilogue) plus the larger of its MMA time (at ``moe_mma*`` of the SM's share of the
    dtype's dense peak) and the stream of its weight and activation k-slabs at the per-CTA rate
    ``moe_cta_Bps``. Bounded below by every touched expert's weights (and the activations) read
    once at ``moe_hbm`` of HBM bandwidth (``weight_bw_Bps`` caps the weights' tier)."""
    eff = hw.efficiency if eff is None else eff
    n, k, copies, hit = _f(n), _f(k), _f(copies), _f(experts_hit)
    c = moe_class(dtype)
    wb = WEIGHT_BYTES.get(dtype, 2.0) if weight_bytes is None else weight_bytes
    # NVFP4 activations: E2M1 nibbles and an E4M3 scale per 16 elements
    ab = ({"bf16": 2.0, "wo": 2.0, "fp4": 0.5625}.get(c, 1.0)) if act_bytes is None else act_bytes
    mma = {"fp8": eff.moe_mma_fp8, "fp8_block": eff.moe_mma_fp8_block, "fp4": eff.moe_mma_fp4}.get(c, 0.0)
    mma = mma or eff.moe_mma
    sms = float(hw.compute_units)
    sm_flops = gemm_peak(hw, dtype) / sms * mma
    best = None
    for w_rows, t_cols in moe_tiles(c, eff):
        ctas = token_tiles[TOKEN_TILES.index(t_cols)] * np.ceil(n / w_rows)
        t_mma = 2.0 * w_rows * t_cols * k / sm_flops
        t_stream = (w_rows * wb + t_cols * ab) * k / eff.moe_cta_Bps
        t = np.ceil(ctas / sms) * (eff.moe_tile_s + np.maximum(t_mma, t_stream))
        best = t if best is None else np.minimum(best, t)
    # the block-scaled FP4 kernels read their weights at a lower HBM fraction (as the dense NVFP4
    # GEMMs do: gemm_hbm_fp4)
    hbm = hw.hbm_Bps * ((eff.moe_hbm_fp4 if c == "fp4" else 0.0) or eff.moe_hbm)
    w_bw = hbm if weight_bw_Bps is None else np.minimum(_f(weight_bw_Bps), hbm)
    return np.maximum(best, hit * n * k * wb / w_bw + copies * (k * ab + n * 2.0) / hbm)


def moe_time(
    tokens,
    hidden,
    ffn,
    experts,
    topk,
    hw: DeviceSpec,
    *,
    ep=1.0,
    tp=1.0,
    dtype: str = "bf16",
    gated=True,
    distribution: str = "balanced",
    eff: Efficiency | None = None,
    weight_bw_Bps=None,
    kernels: str = "shared",
):
    """Seconds of one MoE layer's expert computation on one device (routing, permute, the grouped
    gate/up and down GEMMs of its ``experts/ep`` local experts, unpermute and combine), for
    ``tokens`` tokens entering the layer over the whole expert-parallel group (each of the ``ep``
    ranks receives ``tokens x topk / ep`` token copies when routing is balanced, more on the hot
    rank of a skewed router, :func:`router_load`; dispatch/combine communication is priced
    separately by the all-to-all). Measured so in the TensorRT-LLM MoE tables (``num_tokens`` per
    layer, aiconfigurator-core 0.12.0 ``moe_perf``). ``kernels`` names the MoE kernel library:
    ``"trtllm"``, TensorRT-LLM's cutlass MoE sequence, is priced from its launch grid
    (:func:`_moe_time_grid`) where the catalog characterises it (:func:`has_grouped_moe_model`);
    otherwise (and for ``"shared"``: vLLM's / SGLang's fused MoE kernels, whose per-expert setup
    and permute differ) one GEMM of the stacked rows (:func:`_moe_time_stacked`)."""
    eff = hw.efficiency if eff is None else eff
    T, h, f = _f(tokens), _f(hidden), _f(ffn) / _f(tp)
    E, k, ep = _f(experts), _f(topk), _f(ep)
    up = 2.0 if gated else 1.0
    args = (T, h, f, E, k, ep, up, hw, dtype, distribution, eff, weight_bw_Bps)
    # W4A16 MXFP4 is one kernel under every engine (TensorRT-LLM on SM90, vLLM's Triton backend on
    # ROCm and Hopper: triton_kernels matmul_ogs), priced by its launch grid where characterised
    triton = dtype == "mxfp4_wo" and eff.moe_mma_mxfp4 > 0 and bool(hw.compute_units)
    grid = triton or (kernels == "trtllm" and has_grouped_moe_model(hw, eff))
    return _moe_time_grid(*args) if grid else _moe_time_stacked(*args, every_copy=kernels == "shared")


def _moe_time_grid(T, h, f, E, k, ep, up, hw, dtype, distribution, eff, weight_bw_Bps):
    """:func:`moe_time` as TensorRT-LLM's kernel sequence runs it: the two grouped GEMMs
    (:func:`grouped_gemm_time`) at the busiest rank's per-expert loads (:func:`router_stats`); the
    permute (with the FP8 activation cast), the activation between the GEMMs and the finalize
    (unpermute, top-k reduction) streaming their bytes at ``moe_permute_Bps``
    (``moe_permute_fp8_block_Bps`` with the 1x128 block quantisation: these kernels gather and
    scatter rows through the permutation); ``moe_grid_floor_s`` for the sequence and
    ``moe_expert_s`` (``moe_expert_fp8_block_s``, ``moe_expert_fp4_s``) per local expert, touched or not (the measured
    one-token rows grow with experts / ep at equal weights read: the per-expert problem list and
    scale layout the grouped kernels set up)."""
    share, touched, tiles = router_stats(distribution, E, ep, T, k)
    copies = T * k / ep * share  # token copies arriving at the busiest rank's experts
    if dtype == "mxfp4_wo" and eff.moe_mma_mxfp4 > 0:
        return _moe_time_triton_mxfp4(tiles, copies, touched, T * k / E, h, f, up, hw, eff, weight_bw_Bps)
    kw = {"dtype": dtype, "eff": eff, "weight_bw_Bps": weight_bw_Bps}
    g = grouped_gemm_time(tiles, copies, touched, up * f, h, hw, **kw) + grouped_gemm_time(
        tiles, copies, touched, h, f, hw, **kw
    )
    # permute (16-bit read and write), activation (read up x f, write f), finalize (read the
    # copies' outputs, write the tokens')
    moved = copies * (h * 2.0 * 3.0 + f * 2.0 * (up + 1.0)) + T / ep * h * 2.0
    c = moe_class(dtype)
    block = c == "fp8_block"
    bw = (eff.moe_permute_fp8_block_Bps if block else 0.0) or eff.moe_permute_Bps
    bw = np.minimum(bw, hw.hbm_Bps * eff.hbm)
    # the block-scaled classes set up each local expert's scale layout as well (NVFP4 on B200: one
    # token over 256 local experts takes 68 us, over 32 experts 32 us; BF16 35 and 23 us)
    per_expert = {"fp8_block": eff.moe_expert_fp8_block_s, "fp4": eff.moe_expert_fp4_s}.get(c, 0.0)
    per_expert = per_expert or eff.moe_expert_s
    return g + moved / bw + eff.moe_grid_floor_s + np.maximum(E / ep, 1.0) * per_expert


def triton_mxfp4_gemm_time(
    token_tiles, copies, experts_hit, tokens_per_expert, n, k, hw: DeviceSpec, *, eff, weight_bw_Bps=None
):
    """Seconds of one Triton ``matmul_ogs`` grouped GEMM with MXFP4 weights and bf16 activations on
    SM90 (the kernel TensorRT-LLM and vLLM run for W4A16 MXFP4 MoE on Hopper,
    :data:`MXFP4_TRITON_BLOCK_N`; on CDNA 3 with the AMD flags, :data:`MXFP4_TRITON_BLOCK_N_CDNA`,
    split-K CTAs each streaming k / split, the split's reduction not priced):
    the token block is not autotuned but set from the mean copies per expert over all experts
    (``tokens_per_expert``; triton_kernels ``routing.routing``: block_m = next power of two of
    tokens x topk // experts, clipped to 16..128), the weight block is 128 columns, so the CTAs are the experts' token tiles x
    ceil(n / 128), in waves over the SMs. A tile costs ``moe_tile_s`` plus the larger of its MMA at
    ``moe_mma_mxfp4`` of the SM's share of the 16-bit peak (the weights are upcast in registers:
    Hopper has no MXFP4 tensor-core path) and the stream of its weight and activation k-slabs at
    ``moe_cta_mxfp4_Bps`` (the dequantisation, E2M1 nibbles and an E8M0 scale per 32, runs in the
    mainloop). Bounded below by the touched experts' weights read once at ``moe_hbm``."""
    n, k, copies, hit = _f(n), _f(k), _f(copies), _f(experts_hit)
    wb, sms = WEIGHT_BYTES["mxfp4_wo"], float(hw.compute_units)
    per_expert = np.maximum(np.floor(_f(tokens_per_expert)), 1.0)
    pow2 = 2.0 ** np.ceil(np.log2(per_expert))
    cdna = hw.vendor == "AMD"  # CDNA 3 flags (MXFP4_TRITON_BLOCK_N_CDNA), else the SM90 ones
    if cdna:
        block_n = MXFP4_TRITON_BLOCK_N_CDNA
        block_m = np.where((per_expert >= 512.0) & (n >= 2048.0), 128.0, np.clip(pow2, 32.0, 64.0))
    else:
        block_n, block_m = MXFP4_TRITON_BLOCK_N, np.clip(pow2, 16.0, 128.0)
    sm_flops = gemm_peak(hw, "mxfp4_wo") / sms * eff.moe_mma_mxfp4
    t = np.zeros_like(block_m)
    for bm in (16.0, 32.0, 64.0, 128.0):
        ctas = token_tiles[TOKEN_TILES.index(bm)] * np.ceil(n / block_n)
        split = np.maximum(np.floor(sms / np.maximum(ctas, 1.0)), 1.0) if cdna else 1.0
        t_mma = 2.0 * block_n * bm * k / split / sm_flops
        t_stream = (block_n * wb + bm * 2.0) * k / split / eff.moe_cta_mxfp4_Bps
        waves = np.ceil(ctas * split / sms)
        t = np.where(block_m == bm, waves * (eff.moe_tile_s + np.maximum(t_mma, t_stream)), t)
    hbm = hw.hbm_Bps * eff.moe_hbm
    w_bw = hbm if weight_bw_Bps is None else np.minimum(_f(weight_bw_Bps), hbm)
    return np.maximum(t, hit * n * k * wb / w_bw + copies * (k + n) * 2.0 / hbm)


def _moe_time_triton_mxfp4(tiles, copies, touched, per_expert, h, f, up, hw, eff, weight_bw_Bps):
    """:func:`moe_time` of W4A16 MXFP4 on SM90 as TensorRT-LLM's Triton MoE runs it: the two
    ``matmul_ogs`` GEMMs (:func:`triton_mxfp4_gemm_time`; the gather of the routed rows is fused into
    the first, the activation into its epilogue, the scatter and top-k combine into the second) and
    ``moe_mxfp4_floor_s``, the fixed cost of the sequence (routing, the GEMMs' launches: the measured
    rows take about 70 us at one token and one local expert, where the weights read take 4 us)."""
    kw = {"eff": eff, "weight_bw_Bps": weight_bw_Bps}
    g = triton_mxfp4_gemm_time(tiles, copies, touched, per_expert, up * f, h, hw, **kw)
    g = g + triton_mxfp4_gemm_time(tiles, copies, touched, per_expert, h, f, hw, **kw)
    return g + eff.moe_mxfp4_floor_s


def _moe_time_stacked(T, h, f, E, k, ep, up, hw, dtype, distribution, eff, weight_bw_Bps, every_copy=False):
    """:func:`moe_time` where the grouped kernels are not characterised (and for the engines' fused
    MoE kernels): one GEMM of the stacked rows (the tiles of all experts share the waves) over the
    touched experts' weights, its compute at the class's grouped-GEMM efficiency ``moe_gemm*``
    relative to a dense GEMM and its weight and activation stream at ``moe_stream`` of a dense
    GEMM's (0: the same ``moe_gemm*``), plus the permute and unpermute bytes and ``moe_floor_s``.
    ``every_copy`` (the engines' fused MoE, vLLM's ``fused_experts``): the top-k reduction reads the
    output slot of every token copy, local expert or not (with expert parallelism over all-gathered
    tokens the slots of other ranks' experts are zeros it still sums), so the unpermute traffic is
    that of all T·k copies rather than of the rank's T·k/ep."""
    share, touched = router_load(distribution, E, ep, T, k)
    assignments = T * k / ep * share  # token copies arriving at the busiest rank's experts
    wb = WEIGHT_BYTES.get(dtype, 2.0) * touched
    c = gemm_class(dtype)
    grouped = {"fp8": eff.moe_gemm_fp8, "fp8_block": eff.moe_gemm_fp8_block}.get(c, 0.0) or eff.moe_gemm
    stream = eff.moe_stream or grouped
    kw = {"dtype": dtype, "eff": eff, "weight_bw_Bps": weight_bw_Bps, "weight_bytes": wb}
    g = 0.0
    for n_, k_ in ((up * f, h), (h, f)):  # gate/up, then down
        t_c, t_m, fixed = gemm_components(assignments, n_, k_, hw, **kw)
        g = g + blend(t_c / grouped, t_m / stream, eff) + fixed / grouped
    copies = T * k if every_copy else assignments
    per_assign = copies * h * 2.0 * 4.0 / (hw.hbm_Bps * eff.hbm)  # permute + unpermute r/w, bf16
    return g + per_assign + eff.moe_floor_s


def elementwise_time(nbytes, hw: DeviceSpec, *, eff: Efficiency | None = None, kernels=1.0):
    """Seconds of memory-bound kernels (norms, rotary, activations, quantise) moving ``nbytes``."""
    eff = hw.efficiency if eff is None else eff
    return _f(nbytes) / (hw.hbm_Bps * eff.hbm) + kernels * eff.elementwise_floor_s


def custom_allreduce_time(
    nbytes, ranks, hw: DeviceSpec, *, eff: Efficiency | None = None, strategy: AllReduceStrategy = GENERIC
):
    """Seconds of an engine's custom all-reduce inside one node, as the engine's dispatch rule
    ``strategy`` (:data:`roofplan.engines.allreduce.STRATEGIES`) picks the algorithm for each
    message and group size: one-shot (each rank reads the (g-1) peer buffers over NVLink and
    reduces locally: one latency, (g-1)·B per rank), two-shot (reduce-scatter then all-gather: two
    latencies, 2(g-1)/g·B per rank), multimem (two-shot with the reduction and the broadcast in the
    NVSwitch, at the device's ``nvls_speedup`` over two-shot) or NCCL (collectives.py).

    The rule is priced where the device characterises the engine's kernel (its
    ``strategy.latency`` field > 0): latency ``L = strategy.latency + (g-1)·custom_ar_peer_latency_s``,
    one-shot at ``custom_ar_one_shot_bw`` and two-shot at ``custom_ar_two_shot_bw`` of the fabric's
    per-device bandwidth. Elsewhere (and for :data:`GENERIC`) the engine-neutral model takes the
    fastest of one-shot, two-shot (``custom_ar_latency_s``, ``custom_ar_bw``) and NCCL."""
    eff = hw.efficiency if eff is None else eff
    B, g = np.broadcast_arrays(_f(nbytes), _f(ranks))
    fabric = hw.intra.bandwidth_Bps
    nccl = collective_time("all_reduce", B, g, hw)
    if not strategy.characterised(eff):
        L, bw = eff.custom_ar_latency_s, fabric * eff.custom_ar_bw
        one = L + (g - 1.0) * B / bw
        two = 2.0 * L + 2.0 * (g - 1.0) / g * B / bw
        return np.where(g > 1, np.minimum(np.minimum(one, two), nccl), 0.0)
    L = getattr(eff, strategy.latency) + (g - 1.0) * eff.custom_ar_peer_latency_s
    bw1 = fabric * (eff.custom_ar_one_shot_bw or eff.custom_ar_bw)
    bw2 = fabric * (eff.custom_ar_two_shot_bw or eff.custom_ar_bw)
    one = L + (g - 1.0) * B / bw1
    two = 2.0 * L + 2.0 * (g - 1.0) / g * B / bw2
    multimem = 2.0 * L + 2.0 * (g - 1.0) / g * B / (bw2 * eff.nvls_speedup)
    t = np.choose(strategy.algorithm(B, g), [one, two, multimem, nccl])  # order of ALGORITHMS
    return np.where(g > 1, t, 0.0)
