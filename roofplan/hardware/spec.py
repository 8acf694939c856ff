"""Typed hardware specs: device, memory tiers, fabrics, calibratable efficiencies.

A catalog YAML (one per device id under ``roofplan/catalogs/``) is parsed into a frozen
:class:`DeviceSpec`. All quantities are SI: FLOP/s, bytes, bytes/s (per direction), seconds, watts.
Sources live next to every number in the YAML; this module only carries the values.

The :class:`Efficiency` fields are the knobs of the cost model that ``roofplan calibrate`` fits
(achievable fractions of peak and fixed latencies). Their defaults in each catalog come from
datasheets and published microbenchmarks (see ``docs/reference/hardware.md`` §16).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from roofplan.errors import InputError

#: Bytes per element of each numeric type used by the cost model.
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    # FP8 with one fp32 scale per 128 x 128 weight block (DeepSeek-V3 and Qwen FP8 checkpoints,
    # ``weight_block_size`` [128, 128]): 1 + 4 / 16384 bytes a weight
    "fp8_block": 1.0 + 4.0 / 16384.0,
    "int8": 1.0,
    "int4": 0.5,
    # NVFP4 / MXFP4: 4-bit elements plus one 8-bit scale per 16 (NVFP4) elements = 4.5 bits
    "fp4": 0.5625,
}

#: Physical range (inclusive, SI units) of every catalog and overlay number, by quantity kind;
#: :data:`FIELD_BOUNDS` narrows single fields. Each is 2-3 orders of magnitude beyond any device
#: in the catalogs (H100: 989 TFLOP/s BF16, 3.35 TB/s HBM, 450 GB/s NVLink, 1-2 us link latency,
#: 700 W) so new hardware fits, while 1e308 or 5e-324 (which make a step time infinite or zero)
#: do not. ``count`` is devices per node / devices sharing a tier; ``number`` a unitless size.
QUANTITY_BOUNDS: dict[str, tuple[float, float]] = {
    "flops": (1e6, 1e18),
    "bytes": (1.0, 2.0**50),
    "bandwidth": (1e6, 1e15),
    "time": (0.0, 1.0),
    "power": (1.0, 1e5),
    "usd_per_hour": (0.0, 1e4),
    "count": (1, 2**16),
    "fraction": (1e-3, 1.0),
    "number": (1e-3, 2.0**20),
}
#: Tighter ranges of single fields (dotted catalog path): device memory up to 2^40 bytes (1 TiB,
#: 7x the H200's 141 GB), an all-reduce speed-up of in-network reduction up to 10x.
FIELD_BOUNDS: dict[str, tuple[float, float]] = {
    "memory.hbm.capacity": (2.0**20, 2.0**40),
    "memory.sram.capacity": (1.0, 2.0**40),
    "efficiency.nvls_speedup": (0.1, 10.0),
}


def out_of_bounds(path: str, kind: str, value: float, zero_ok: bool = False) -> str | None:
    """None when ``value`` is inside the declared range of field ``path`` (a quantity of ``kind``),
    else the allowed range as text for the error message. ``zero_ok``: 0 means "not set"."""
    lo, hi = FIELD_BOUNDS.get(path) or QUANTITY_BOUNDS.get(kind, (0.0, float("inf")))
    if value == 0 and zero_ok:
        return None
    if lo <= value <= hi:
        return None
    zero = "0 or " if zero_ok and lo > 0 else ""
    unit = {
        "flops": " FLOP/s",
        "bytes": " B",
        "bandwidth": " B/s",
        "time": " s",
        "power": " W",
        "usd_per_hour": " USD/h",
    }.get(kind, "")
    return f"expected {zero}a number in [{lo:g}, {hi:g}]{unit}"


#: Fabric topologies the collective model understands.
TOPOLOGIES = ("switch", "full_mesh", "partial_mesh", "ring", "torus")


@dataclass(frozen=True)
class MemoryTier:
    """One level of the memory hierarchy of a device.

    ``name`` is one of ``sram`` (on-chip), ``hbm`` (device memory), ``ddr`` (device-attached DDR,
    SN40L) or ``host`` (host DRAM reached through the host link). ``bandwidth_Bps`` is the peak
    bandwidth the device sees to that tier (for ``host``: the host link, PCIe, per direction).
    ``shared_by`` is how many devices share the capacity (host DRAM of a node is shared by all).
    """

    name: str
    capacity_bytes: float
    bandwidth_Bps: float
    shared_by: int = 1


@dataclass(frozen=True)
class Fabric:
    """A communication fabric as one device sees it.

    ``bandwidth_Bps`` is the per-device, per-direction aggregate into the fabric (NVLink 450 GB/s
    for H100, one NIC's line rate for inter-node). ``topology`` decides the collective algorithm:
    ``switch`` (NVSwitch: any group gets the full per-device bandwidth), ``full_mesh`` (HCCS,
    Infinity Fabric on MI300X: a group of g devices uses g-1 of the n-1 point-to-point links, so its
    bandwidth is ``bandwidth * (g-1)/(n-1)``), ``partial_mesh`` (MI250X Frontier node: pairs of GCDs
    share a fast package link ``pair_bandwidth_Bps``, the rest is slower), ``ring``/``torus``.
    ``in_network_reduction`` marks NVLink SHARP (NVLS) switches.
    """

    name: str
    topology: str
    bandwidth_Bps: float
    latency_s: float
    pair_bandwidth_Bps: float | None = None
    in_network_reduction: bool = False


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of peak and fixed costs; fitted by ``roofplan calibrate``.

    * ``gemm_max``: fraction of dense peak reached by large GEMMs (MAMF / peak, docs/reference/hardware.md §16c).
    * Operator-library parameters (:mod:`roofplan.costmodel.ops`, fitted per device by
      ``tools/fit_ops.py`` on measured kernel tables, or datasheet priors; the catalog says which):
      ``gemm_hbm`` / ``gemm_hbm_fp8`` / ``gemm_hbm_fp8_block``: HBM fraction a GEMM streams its
      operands at; ``gemm_floor_s`` (and ``_fp8_s``, ``_fp8_block_s``): fixed time of one GEMM
      kernel (launch or graph replay, epilogue; FP8 adds the scale computation);
      ``gemm_max_fp8_block``: tensor-core fraction of block-scaled FP8; ``gemm_max_deepgemm`` /
      ``gemm_hbm_deepgemm`` / ``gemm_floor_deepgemm_s``: the same class as SGLang runs it (DeepGEMM with
      its fused per-token-group quantisation, :func:`roofplan.costmodel.ops.gemm_time`
      ``kernels="deepgemm"``; 0 = the block-FP8 class's values); ``gemm_max_fp4`` /
      ``gemm_hbm_fp4`` / ``gemm_floor_fp4_s``: the W4A4 FP4 class (0 = the FP8 class's value);
      ``gemm_fp4_tile_n``: the weight-side tile of that class's kernels, which then never split K
      (0 = the generic 64-wide tiles with split-K); ``gemm_k_half``: K at which
      the main loop reaches half its steady state; ``gemm_blend``: p of the p-norm that blends the
      compute and memory times (infinity = max); ``gemm_cta_intensity``: on SM80 devices, the
      FLOPs per operand byte a CTA tile must reach for its L2/shared-memory feed not to stall the
      tensor cores (0 = the 64-element tile quantum of Hopper-class kernels; > 0 = the SM80
      candidate tiles of :data:`roofplan.costmodel.ops.SM80_TILES`); ``gemm_floor_wo_s``: fixed
      time of a weight-only (W4A16 / W8A16) GEMM kernel (0 = ``gemm_floor_s``);
      ``gemm_floor_gemv_s``: the same for the CUDA-core GEMV kernels (weight-only, SmoothQuant
      int8) that run up to :data:`roofplan.costmodel.ops.GEMV_MAX_M` rows where the device
      characterises SM80 tiles; ``gemm_gemv_cta_Bps``: weight bytes per second one GEMV CTA streams
      through its K loop (0 = the GEMV is priced as the HBM stream of its CTAs);
      ``gemm_wo_dequant_rate``: weights per second the device dequantises in a weight-only GEMM's
      main loop, once per M tile (0 = dequantisation hidden); ``gemm_occupancy``: fraction of the SMs whose CTAs
      saturate HBM; ``attn_max_fp8``, ``attn_half_len`` (KV length at which prefill attention
      reaches half of ``attn_max``), ``attn_floor_s``, ``attn_score_flops`` (cost of the softmax
      per score element in matmul FLOPs: the special-function units' throughput); ``decode_hbm``
      (HBM fraction of the paged-KV read), ``decode_seq_s`` (per-sequence cost),
      ``decode_floor_s``, ``decode_occupancy`` (SMs, as a fraction, whose CTAs half-saturate HBM),
      ``decode_split_len`` (KV tokens per flash-decoding split); ``xqa_*`` / ``mmha_*`` (TensorRT-LLM's
      decode kernels on Hopper, :mod:`roofplan.costmodel.trtllm_decode`; ``xqa_hbm`` 0 = not
      characterised, the generic decode model applies; ``mmha_reread_Bps``: the rate MMHA's
      per-query-head CTAs re-read a shared KV head at, 0 = not modelled); ``fa_*`` (FlashAttention-3 paged decode as vLLM
      and SGLang run it, :mod:`roofplan.costmodel.flash_decode`; ``fa_hbm`` 0 = not characterised); ``fa_prefill_*``
      (FlashAttention-3 prefill as vLLM and SGLang run it, :func:`roofplan.costmodel.ops.prefill_attention_time`
      ``kernels="flash"``: the ``attn_max`` / ``attn_half_len`` / ``attn_floor_s`` / ``attn_score_flops``
      of that kernel, ``fa_prefill_max_fp8`` its FP8 kernel over an FP8 cache, 0 = ``fa_prefill_max``,
      ``fa_prefill_cache_hbm`` the HBM fraction of the engine's cache-write kernel, 0 = ``hbm``; ``fa_prefill_max`` 0 = not characterised, TensorRT-LLM's attention op applies); ``triton_decode_hbm`` (HBM fraction of the paged-KV read
      of vLLM V1's Triton unified attention on ROCm, ``EngineProfile.rocm_triton_attention``; 0 = not
      characterised, ``decode_hbm`` applies); ``mla_*`` (TensorRT-LLM's FlashMLA decode of MLA models on Hopper,
      :mod:`roofplan.costmodel.mla_decode`; ``mla_hbm`` 0 = not characterised); ``moe_gemm`` (grouped-GEMM
      efficiency relative to one dense GEMM of the stacked rows; ``moe_gemm_fp8`` /
      ``moe_gemm_fp8_block`` per class, 0 = ``moe_gemm``), ``moe_stream`` (the fraction of a dense
      GEMM's weight and activation stream the engines' fused MoE kernels reach, where it differs from
      their compute efficiency; 0 = the class's ``moe_gemm``), ``moe_floor_s``; ``moe_mma`` ... (the
      grouped-GEMM launch-grid model of TensorRT-LLM's MoE kernels, :func:`roofplan.costmodel.ops.grouped_gemm_time`;
      ``moe_mma`` 0 = not characterised, the stacked-GEMM model with ``moe_gemm`` applies):
      ``moe_mma`` / ``moe_mma_fp8`` / ``moe_mma_fp8_block`` (fraction of an SM's share of the dense
      peak a tile's MMA reaches, per class, 0 = ``moe_mma``), ``moe_cta_Bps`` (per-CTA stream rate of
      a tile's k-slabs), ``moe_hbm`` (HBM fraction of the touched experts' weight read),
      ``moe_tile_s`` (per-tile prologue/epilogue), ``moe_grid_floor_s`` (fixed cost of the kernel sequence), ``moe_expert_s`` / ``moe_expert_fp8_block_s`` (cost
      per local expert), ``moe_permute_Bps`` / ``moe_permute_fp8_block_Bps`` (stream rate of the
      permute, activation and finalize kernels); ``moe_mma_mxfp4`` / ``moe_cta_mxfp4_Bps`` /
      ``moe_mxfp4_floor_s`` (the Triton MXFP4 weight-only MoE TensorRT-LLM runs on SM90,
      :func:`roofplan.costmodel.ops.triton_mxfp4_gemm_time`; ``moe_mma_mxfp4`` 0 = not
      characterised, the weight-only grouped-GEMM tiles apply); ``moe_mma_fp4`` (the launch-grid
      MMA fraction of the NVFP4 W4A4 class, 0 = ``moe_mma``) and ``moe_hbm_fp4`` (its weight-read HBM
      fraction, 0 = ``moe_hbm``) and ``moe_expert_fp4_s`` (its cost per local expert, 0 =
      ``moe_expert_s``); ``moe_tile_arch`` (the SM architecture
      whose CUTLASS grouped-GEMM candidate tiles the launch grid takes: 90 Hopper, 100 Blackwell
      B200/GB200, :data:`roofplan.costmodel.ops.MOE_TILES_SM100`); ``elementwise_floor_s``;
      ``gdn_*`` (the linear-attention kernels of a Gated DeltaNet / Mamba-2 layer as vLLM runs
      them, :mod:`roofplan.costmodel.linear_mixer`: floor and HBM fraction of the decode conv-state
      update, of the recurrent state update (blended by a p-norm of power ``gdn_recurrent_blend``)
      and of the prefill causal conv; the chunked prefill scan's floor, the fraction of an SM's
      share of the 16-bit peak its chunk loop reaches and its per-CTA fixed cost; a 0 floor / HBM /
      MMA fraction = not characterised: ``elementwise_floor_s`` / ``hbm`` / ``attn_max`` apply);
      ``nccl_ll_latency_s`` / ``nccl_ll128_latency_s`` (per-phase latency of NCCL's LL and LL128
      protocols, 0 = not characterised: Simple only; ``intra_latency_s`` is Simple's),
      ``nvls_min_ranks`` (smallest group NCCL runs NVLink SHARP on); ``intra_bw_pair`` (bus
      bandwidth fraction of 2-rank groups on a switch, 0 = ``intra_bw``); ``custom_ar_latency_s`` and
      ``custom_ar_bw`` (the engine-neutral custom all-reduce, the fastest of one-shot, two-shot and
      NCCL: latency and fraction of the fabric); ``custom_ar_trtllm_latency_s`` /
      ``custom_ar_vllm_latency_s`` / ``custom_ar_sglang_latency_s`` (base latency of that engine's
      custom all-reduce kernel; 0 = not characterised: the engine-neutral model prices it),
      ``custom_ar_peer_latency_s`` (their latency per peer rank: flags and barriers),
      ``custom_ar_one_shot_bw`` / ``custom_ar_two_shot_bw`` (fabric fraction of their one-shot and
      two-shot phases; 0 = ``custom_ar_bw``), each engine dispatching by its own rule
      (:mod:`roofplan.engines.allreduce`).
    * ``attn_max``: fraction of dense peak reached by fused (FlashAttention-style) attention.
    * ``hbm``: fraction of peak HBM bandwidth reached by streaming kernels (docs/reference/hardware.md §16b).
    * ``intra_bw`` / ``inter_bw``: fraction of fabric bandwidth a collective's bus bandwidth
      reaches inside a node / across nodes (nccl-tests busbw / link rate, docs/reference/hardware.md §16a).
    * ``intra_latency_s`` / ``inter_latency_s``: per-step alpha of a collective.
    * ``kernel_launch_s``: fixed overhead of one kernel launch (no CUDA graphs).
    * ``nvls_speedup``: all-reduce bus-bandwidth gain of in-switch reduction where the fabric
      has it (H100 NVLS 480 vs ring 370 GB/s, docs/reference/hardware.md §16a); 1.0 elsewhere.
    * ``intra_step_latency_s``: extra latency per ring step inside a node; a ring collective over
      g ranks takes g-1 steps per phase (NCCL's tuning model, ``src/graph/tuning.cc``: latency =
      base + nsteps x hwLat). 0 keeps the flat per-phase ``intra_latency_s``.
    * ``gemm_max_fp8``: ``gemm_max`` for FP8 GEMMs (MAMF at FP8 / FP8 dense peak, docs/reference/hardware.md
      §16c: H100 0.709, H200 0.734, B200 0.763); 0 means the same fraction as ``gemm_max``.
    * ``moe_balance``: MoE router load balance, mean / maximum routed tokens per expert-parallel
      rank (1 = perfectly balanced, as in benchmarks run with Megatron's
      ``--moe-router-force-load-balancing``). The most loaded rank sets the pace of the expert
      GEMMs and of the all-to-all, so routed work is divided by it. The default 1/1.1 is the
      typical capacity factor 1.0-1.25 of GShard (Lepikhin et al. 2021 §2.2) and Switch
      Transformer (Fedus et al. 2022 §2.2) read as the peak-to-mean load a dropless run absorbs.
    * ``ep_overlap``: fraction of the dependency-limited ideal of the 1F1B expert-parallel
      all-to-all overlap (Megatron ``--overlap-moe-expert-parallel-comm``) that a real run hides;
      below 1 because the communication kernels wait for SMs held by persistent GEMMs and slow
      the computation they share the GPU with. The default 0.41 is the h100-sxm catalog's fit
      (Megatron-MoE-ModelZoo Qwen3-235B overlap on/off pair), which devices without a measurement reuse.
    * ``ep_a2a_bw``: fraction of the NIC line rate the expert-parallel all-to-all reaches across
      nodes (dispatch/combine of many medium messages to all peers at once, RDMA-direct in DeepEP);
      0 means the same fraction as the ring collectives' ``inter_bw``.
    * ``sustained_compute``: fraction of the benchmark tensor-core throughput (``gemm_max``,
      ``gemm_max_fp8``, ``attn_max``, all measured on isolated kernels: MAMF keeps the fastest of
      100 iterations, docs/reference/hardware.md §16c) that a long training run sustains. Matmuls on the H100 are
      power-limited: at the 700 W board limit the SM clock drops under dense tensor-core load and
      more so when HBM and NVLink draw power at the same time (H. He, "Strangely, Matrix
      Multiplications on GPUs Run Faster When Given 'Predictable' Data", 2024). Memory-bound
      kernels are not scaled (the memory clock is not throttled). 1.0 = benchmarks are sustained.
    """

    gemm_max: float = 0.8
    attn_max: float = 0.6
    hbm: float = 0.85
    intra_bw: float = 0.8
    inter_bw: float = 0.8
    intra_latency_s: float = 8e-6
    inter_latency_s: float = 15e-6
    kernel_launch_s: float = 5e-6
    nvls_speedup: float = 1.0
    intra_step_latency_s: float = 0.0
    gemm_max_fp8: float = 0.0
    moe_balance: float = 1.0 / 1.1
    ep_overlap: float = 0.41
    ep_a2a_bw: float = 0.0
    sustained_compute: float = 1.0
    gemm_max_fp8_block: float = 0.0
    gemm_max_fp4: float = 0.0
    gemm_hbm_fp4: float = 0.0
    gemm_floor_fp4_s: float = 0.0
    gemm_fp4_tile_n: float = 0.0
    gemm_hbm: float = 0.8
    gemm_hbm_fp8: float = 0.0
    gemm_hbm_fp8_block: float = 0.0
    gemm_floor_s: float = 3e-6
    gemm_floor_fp8_s: float = 6e-6
    gemm_max_deepgemm: float = 0.0
    gemm_hbm_deepgemm: float = 0.0
    gemm_floor_deepgemm_s: float = 0.0
    gemm_floor_fp8_block_s: float = 6e-6
    gemm_k_half: float = 128.0
    gemm_blend: float = 4.0
    gemm_occupancy: float = 0.5
    gemm_cta_intensity: float = 0.0
    gemm_floor_wo_s: float = 0.0
    gemm_floor_gemv_s: float = 0.0
    gemm_gemv_cta_Bps: float = 0.0
    gemm_wo_dequant_rate: float = 0.0
    attn_max_fp8: float = 0.0
    attn_half_len: float = 512.0
    attn_floor_s: float = 10e-6
    attn_score_flops: float = 256.0
    decode_hbm: float = 0.8
    decode_seq_s: float = 0.5e-6
    decode_floor_s: float = 8e-6
    decode_occupancy: float = 0.5
    decode_split_len: float = 512.0
    xqa_hbm: float = 0.0
    xqa_preprocess_s: float = 0.0
    xqa_fused_floor_s: float = 0.0
    xqa_merge_s: float = 0.0
    xqa_hmma_ctas_per_sm: float = 1.0
    xqa_hmma_cta_s: float = 0.0
    xqa_hmma_cta_Bps: float = 20e9
    xqa_qgmma_ctas_per_sm: float = 1.0
    xqa_qgmma_cta_s: float = 0.0
    xqa_qgmma_cta_Bps: float = 70e9
    xqa_qgmma_elem_rate: float = 300e9
    mmha_blocks_per_sm: float = 4.0
    mmha_cta_s: float = 0.0
    mmha_cta_Bps: float = 50e9
    mmha_elem_rate: float = 6e9
    mmha_fp8_cvt_rate: float = 1e12
    mmha_reread_Bps: float = 0.0
    fa_hbm: float = 0.0
    fa_prefill_max: float = 0.0
    fa_prefill_max_fp8: float = 0.0
    fa_prefill_cache_hbm: float = 0.0
    fa_prefill_half_len: float = 0.0
    fa_prefill_floor_s: float = 0.0
    fa_prefill_score_flops: float = 0.0
    triton_decode_hbm: float = 0.0
    fa_floor_s: float = 0.0
    fa_cta_s: float = 0.0
    fa_cta_Bps: float = 50e9
    fa_ctas_per_sm: float = 1.5
    fa_combine_s: float = 0.0
    fa_max_splits: float = 32.0
    fa_fp8_cvt_rate: float = 30e9
    mla_hbm: float = 0.0
    mla_mma: float = 0.6
    mla_mma_fp8: float = 0.6
    mla_qo_Bps: float = 1e12
    mla_floor_s: float = 0.0
    mla_combine_s: float = 0.0
    mla_meta_s: float = 0.0
    moe_gemm: float = 0.8
    moe_gemm_fp8: float = 0.0
    moe_gemm_fp8_block: float = 0.0
    moe_stream: float = 0.0
    moe_floor_s: float = 30e-6
    moe_mma: float = 0.0
    moe_mma_fp8: float = 0.0
    moe_mma_fp8_block: float = 0.0
    moe_cta_Bps: float = 0.0
    moe_hbm: float = 0.0
    moe_tile_s: float = 0.0
    moe_grid_floor_s: float = 0.0
    moe_expert_s: float = 0.0
    moe_expert_fp8_block_s: float = 0.0
    moe_permute_Bps: float = 0.0
    moe_permute_fp8_block_Bps: float = 0.0
    moe_mma_mxfp4: float = 0.0
    moe_cta_mxfp4_Bps: float = 0.0
    moe_mxfp4_floor_s: float = 0.0
    moe_mma_fp4: float = 0.0
    moe_hbm_fp4: float = 0.0
    moe_expert_fp4_s: float = 0.0
    moe_tile_arch: float = 90.0
    elementwise_floor_s: float = 2e-6
    gdn_conv_update_floor_s: float = 0.0
    gdn_conv_update_hbm: float = 0.0
    gdn_recurrent_floor_s: float = 0.0
    gdn_recurrent_hbm: float = 0.0
    gdn_recurrent_blend: float = 2.0
    gdn_conv_floor_s: float = 0.0
    gdn_conv_hbm: float = 0.0
    gdn_chunk_floor_s: float = 0.0
    gdn_chunk_mma: float = 0.0
    gdn_chunk_cta_s: float = 0.0
    intra_bw_pair: float = 0.0
    nccl_ll_latency_s: float = 0.0
    nccl_ll128_latency_s: float = 0.0
    nvls_min_ranks: float = 4.0
    custom_ar_latency_s: float = 5e-6
    custom_ar_bw: float = 0.8
    custom_ar_trtllm_latency_s: float = 0.0
    custom_ar_vllm_latency_s: float = 0.0
    custom_ar_sglang_latency_s: float = 0.0
    custom_ar_peer_latency_s: float = 0.0
    custom_ar_one_shot_bw: float = 0.0
    custom_ar_two_shot_bw: float = 0.0

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator as software schedules it (an MI250X GCD, an SN40L socket), with its node."""

    id: str
    name: str
    vendor: str
    peak_flops: dict[str, float]  # dtype -> dense FLOP/s (or OP/s for int types)
    tiers: tuple[MemoryTier, ...]
    devices_per_node: int
    intra: Fabric
    inter: Fabric
    tdp_w: float | None
    price_per_hour: float | None
    efficiency: Efficiency = field(default_factory=Efficiency)
    dataflow: bool = False  # SN40L: a decoder layer runs as one fused on-chip pipeline
    source: str = ""
    #: streaming multiprocessors / compute units the GEMM wave model spreads tiles over
    #: (None: no wave quantisation, only tile padding)
    compute_units: int | None = None
    idle_w: float | None = None  # board power with nothing running (catalog ``power.idle``)
    max_w: float | None = None  # board power fully active (``power.max``; None: the TDP)
    price_date: str | None = None  # when ``price_per_hour`` was read (``price.date``)

    # -- lookups -------------------------------------------------------------------------------
    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for ``dtype``; an unsupported dtype is a user error (exit 2)."""
        try:
            return self.peak_flops[dtype]
        except KeyError:
            allowed = ", ".join(sorted(self.peak_flops))
            raise InputError("dtype", dtype, f"{self.id} supports {allowed}") from None

    def tier(self, name: str) -> MemoryTier | None:
        for t in self.tiers:
            if t.name == name:
                return t
        return None

    @property
    def hbm(self) -> MemoryTier:
        t = self.tier("hbm")
        assert t is not None, "every catalog has an hbm tier (validated on load)"
        return t

    @property
    def hbm_bytes(self) -> float:
        return self.hbm.capacity_bytes

    @property
    def hbm_Bps(self) -> float:
        return self.hbm.bandwidth_Bps

    def with_price(self, usd_per_hour: float, date: str | None = None) -> DeviceSpec:
        """A copy with another price per device-hour (``--price DEVICE=$/h``)."""
        return dataclasses.replace(self, price_per_hour=float(usd_per_hour), price_date=date)

    def with_efficiency(self, **changes: float) -> DeviceSpec:
        """A copy with some efficiency parameters replaced (calibration overlays, invariants)."""
        return dataclasses.replace(self, efficiency=dataclasses.replace(self.efficiency, **changes))


def usd_per_million_tokens(usd_per_hour, tokens_per_s):
    """Dollars per million tokens of a deployment that costs ``usd_per_hour`` (all its devices at
    ``price_per_hour`` each) and produces ``tokens_per_s``: (USD/h / 3600 s/h) / (tokens/s) x 1e6.
    Scalars or numpy arrays."""
    return usd_per_hour / 3600.0 / tokens_per_s * 1e6
