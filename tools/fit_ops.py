"""Fit the operator library's per-device parameters to measured kernel tables (development time).

    python tools/fit_ops.py tests/data/measured_kernels_hopper.csv [--hardware h100-sxm] [--write]

For each device in the file and each operator family, the family's parameters (see
``roofplan.costmodel.ops`` and ``Efficiency``) are fitted by bounded least squares on log
residuals (soft-L1 loss, so a few odd kernels do not steer the fit) to the rows of EVEN log2 size
bins only; the rows of odd bins are held back (``roofplan.calibration.op_rows.held_back``).
Families are fitted in dependency order (GEMM first: MoE reuses its parameters; decode attention
reuses its occupancy). On Hopper and Blackwell (B200/GB200: the SM100 tile set of the catalog's
``moe_tile_arch``) the MoE rows fit the launch-grid parameters (MOE_GRID_PARAMS) by differential
evolution instead, as the decode-kernel parameters are (the NVFP4 min-latency rows, family
``moe_min_latency``, are another kernel sequence and are not fitted), and the custom all-reduce rows
fit each engine's kernel latency and the shared one-/two-shot parameters of the engines' dispatch
rules (CUSTOM_AR_LATENCY, CUSTOM_AR_SHARED) jointly. The tool prints median and p90 |error| of the fitted and the held-back
half per family and size band; ``--write`` puts the values into the built-in catalog YAMLs with a
source string naming the table and the split. roofplan never imports this at run time.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import differential_evolution, least_squares

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roofplan.calibration.formats import read_measurements  # noqa: E402
from roofplan.calibration.op_rows import family, held_back, predict_rows, size_band  # noqa: E402
from roofplan.hardware.catalog import load_hardware  # noqa: E402

#: TensorRT-LLM decode-kernel parameters (costmodel.trtllm_decode), fitted on ``impl=trtllm`` decode
#: rows of devices where TensorRT-LLM runs XQA / masked MHA (Hopper; A100, whose SM80 build has the
#: HMMA XQA and MMHA kernels but no QGMMA; B200/GB200, whose 1.3.0rc20 tables follow the same
#: dispatch: groups over 32 cost as much as that many KV heads); the launch grid's waves make the cost piecewise constant
#: in the occupancies, so these are fitted by differential evolution.
XQA_DEVICES = ("h100-sxm", "h200-sxm", "a100-sxm-80gb", "b200-sxm", "gb200-nvl72")
XQA_PARAMS = [
    ("xqa_hbm", 0.6, 1.0),
    ("xqa_preprocess_s", 1e-6, 20e-6),
    ("xqa_fused_floor_s", 1e-6, 20e-6),
    ("xqa_merge_s", 1e-8, 30e-6),
    ("xqa_hmma_ctas_per_sm", 0.5, 8.0),
    ("xqa_hmma_cta_s", 1e-8, 20e-6),
    ("xqa_hmma_cta_Bps", 1e9, 200e9),
    ("xqa_qgmma_ctas_per_sm", 0.5, 8.0),
    ("xqa_qgmma_cta_s", 1e-8, 20e-6),
    ("xqa_qgmma_cta_Bps", 1e9, 200e9),
    ("xqa_qgmma_elem_rate", 1e9, 5e12),
    ("mmha_blocks_per_sm", 1.0, 16.0),
    ("mmha_cta_s", 1e-8, 20e-6),
    ("mmha_cta_Bps", 1e9, 200e9),
    ("mmha_elem_rate", 1e9, 2e12),
    ("mmha_fp8_cvt_rate", 1e9, 2e12),
]
#: Fitted only on the SM100 tables (group-64 rows over one KV head; Hopper keeps 0, not modelled).
MMHA_REREAD = ("mmha_reread_Bps", 5e11, 1e13)
MMHA_REREAD_DEVICES = ("b200-sxm", "gb200-nvl72")
#: Kernel-model parameters that only rows with an 8-bit KV cache inform (the QGMMA kernel, FP8
#: conversion in MMHA): not fitted on a table without such rows (A100's: bf16 caches only).
FP8_KV_PARAMS = {
    "xqa_fused_floor_s",
    "xqa_qgmma_ctas_per_sm",
    "xqa_qgmma_cta_s",
    "xqa_qgmma_cta_Bps",
    "xqa_qgmma_elem_rate",
    "mmha_fp8_cvt_rate",
    "mla_mma_fp8",
}
#: FlashAttention-3 decode parameters (costmodel.flash_decode), fitted in the same way on the
#: ``impl=flash`` decode rows (vLLM's measured tables) of the same devices.
FA_PARAMS = [
    ("fa_hbm", 0.5, 1.0),
    ("fa_floor_s", 1e-6, 30e-6),
    ("fa_cta_s", 1e-8, 20e-6),
    ("fa_cta_Bps", 1e9, 300e9),
    ("fa_ctas_per_sm", 0.5, 8.0),
    ("fa_combine_s", 1e-8, 30e-6),
    ("fa_max_splits", 1.0, 128.0),
    ("fa_fp8_cvt_rate", 1e9, 5e12),
]
#: FlashMLA decode parameters (costmodel.mla_decode), fitted in the same way on the ``impl=trtllm_mla``
#: decode rows (TensorRT-LLM's measured MLA generation tables) of the same devices.
MLA_PARAMS = [
    ("mla_hbm", 0.5, 1.0),
    ("mla_mma", 0.2, 1.0),
    ("mla_mma_fp8", 0.2, 1.0),
    ("mla_qo_Bps", 1e10, 1e13),
    ("mla_floor_s", 1e-6, 30e-6),
    ("mla_combine_s", 1e-8, 30e-6),
    ("mla_meta_s", 1e-11, 1e-6),
]
#: MoE launch-grid parameters (costmodel.ops.grouped_gemm_time / moe_time), fitted on the moe rows
#: of devices whose MoE rows are TensorRT-LLM's grouped-GEMM kernels (Hopper: SM90 CUTLASS 3.x;
#: B200/GB200: SM100 CUTLASS; A100: the SM80 CUTLASS 2.x grouped GEMM, its own tiles,
#: ops.MOE_TILES_SM80); the CTA waves make the cost piecewise constant, so these are fitted by
#: differential evolution. Elsewhere the stacked-GEMM parameters of FAMILIES["moe"] are fitted.
MOE_GRID_DEVICES = ("h100-sxm", "h200-sxm", "a100-sxm-80gb", "b200-sxm", "gb200-nvl72")
MOE_GRID_PARAMS = [
    ("moe_mma", 0.2, 1.0),
    ("moe_mma_fp8", 0.2, 1.0),
    ("moe_mma_fp8_block", 0.1, 1.0),
    ("moe_cta_Bps", 5e9, 2e12),
    ("moe_hbm", 0.4, 1.0),
    ("moe_tile_s", 1e-8, 10e-6),
    ("moe_grid_floor_s", 1e-6, 60e-6),
    ("moe_expert_s", 1e-9, 2e-6),
    ("moe_expert_fp8_block_s", 1e-9, 2e-6),
    ("moe_permute_Bps", 1e11, 5e12),
    ("moe_permute_fp8_block_Bps", 1e11, 5e12),
    ("moe_mma_mxfp4", 0.05, 1.0),
    ("moe_cta_mxfp4_Bps", 1e9, 1e12),
    ("moe_mxfp4_floor_s", 1e-6, 150e-6),
    ("moe_mma_fp4", 0.1, 1.0),
    ("moe_hbm_fp4", 0.2, 1.0),
    ("moe_expert_fp4_s", 1e-9, 2e-6),
]
#: Where the launch-grid fit starts (catalog values of 0 mean "not characterised").
MOE_GRID_START = {
    "moe_mma": 0.7,
    "moe_mma_fp8": 0.7,
    "moe_mma_fp8_block": 0.3,
    "moe_cta_Bps": 2e11,
    "moe_hbm": 0.85,
    "moe_tile_s": 1e-6,
    "moe_grid_floor_s": 15e-6,
    "moe_expert_s": 1e-8,
    "moe_expert_fp8_block_s": 3e-7,
    "moe_permute_Bps": 1e12,
    "moe_permute_fp8_block_Bps": 5e11,
    "moe_mma_mxfp4": 0.4,
    "moe_cta_mxfp4_Bps": 5e10,
    "moe_mxfp4_floor_s": 60e-6,
    "moe_mma_fp4": 0.5,
    "moe_hbm_fp4": 0.5,
    "moe_expert_fp4_s": 1.5e-7,
}
#: Devices whose custom all-reduce rows are fitted with each engine's dispatch rule
#: (roofplan.engines.allreduce, the engines' SM90 rules); elsewhere the engine-neutral model
#: (FAMILIES["custom_allreduce"]) is fitted to all custom rows.
CUSTOM_AR_RULE_DEVICES = ("h100-sxm", "h200-sxm")
#: custom all-reduce row ``impl`` -> its engine's kernel latency (fitted where that engine has rows).
CUSTOM_AR_LATENCY = {
    "custom_trtllm": ("custom_ar_trtllm_latency_s", 0.2e-6, 40e-6),
    "custom_vllm": ("custom_ar_vllm_latency_s", 0.2e-6, 40e-6),
    "custom_sglang": ("custom_ar_sglang_latency_s", 0.2e-6, 40e-6),
}
#: Shared by the engines' kernels on one device: the latency per peer and the one-shot fabric
#: fraction; the two-shot fraction only where an engine's rule runs two-shot (vLLM, SGLang: AUTO
#: of TensorRT-LLM never does).
CUSTOM_AR_SHARED = [("custom_ar_peer_latency_s", 1e-9, 2e-6), ("custom_ar_one_shot_bw", 0.1, 1.0)]
CUSTOM_AR_TWO_SHOT = ("custom_ar_two_shot_bw", 0.1, 1.0)


def custom_ar_rule_params(rows):
    """The dispatch-rule parameters the custom all-reduce ``rows`` of one device inform."""
    impls = {m.row["impl"] for m in rows}
    params = [CUSTOM_AR_LATENCY[i] for i in CUSTOM_AR_LATENCY if i in impls]
    if not params:
        return []
    two = impls & {"custom_vllm", "custom_sglang"}
    return params + CUSTOM_AR_SHARED + ([CUSTOM_AR_TWO_SHOT] if two else [])


#: decode row ``impl`` -> (parameters, report/fitted key) of the kernel models fitted on XQA_DEVICES.
KERNEL_MODELS = {
    "trtllm": (XQA_PARAMS, "decode_attention_trtllm"),
    "flash": (FA_PARAMS, "decode_attention_flash"),
    "trtllm_mla": (MLA_PARAMS, "decode_attention_mla"),
}
#: family -> (parameter, lower, upper); fitted in this order.
FAMILIES = {
    "gemm": [
        ("gemm_max", 0.3, 1.0),
        ("gemm_max_fp8", 0.3, 1.0),
        ("gemm_max_fp8_block", 0.3, 1.0),
        ("gemm_hbm", 0.3, 1.0),
        ("gemm_hbm_fp8", 0.3, 1.0),
        ("gemm_hbm_fp8_block", 0.3, 1.0),
        ("gemm_floor_s", 0.5e-6, 40e-6),
        ("gemm_floor_fp8_s", 0.5e-6, 40e-6),
        ("gemm_floor_fp8_block_s", 0.5e-6, 40e-6),
        ("gemm_max_fp4", 0.1, 1.0),
        ("gemm_hbm_fp4", 0.2, 1.0),
        ("gemm_floor_fp4_s", 0.5e-6, 40e-6),
        ("gemm_k_half", 1.0, 4096.0),
        ("gemm_cta_intensity", 8.0, 256.0),
        ("gemm_floor_wo_s", 0.5e-6, 40e-6),
        ("gemm_floor_gemv_s", 0.5e-6, 40e-6),
        ("gemm_gemv_cta_Bps", 5e8, 1e11),
        ("gemm_wo_dequant_rate", 1e11, 1e15),
    ],
    "attention": [
        ("attn_max", 0.2, 1.0),
        ("attn_max_fp8", 0.1, 1.0),
        ("attn_half_len", 1.0, 16384.0),
        ("attn_floor_s", 0.5e-6, 100e-6),
        ("attn_score_flops", 1.0, 4096.0),
    ],
    # SGLang's GEMMs (impl=sglang rows): its block-FP8 DeepGEMM kernel (ops.gemm_time
    # kernels="deepgemm"); its cuBLAS bf16 rows check the TensorRT-LLM-fitted bf16 class
    "gemm_sglang": [
        ("gemm_max_deepgemm", 0.3, 1.0),
        ("gemm_hbm_deepgemm", 0.3, 1.0),
        ("gemm_floor_deepgemm_s", 0.5e-6, 40e-6),
    ],
    # vLLM's FlashAttention-3 prefill (impl=vllm rows; ops.prefill_attention_time kernels="flash"),
    # which serving under vLLM and SGLang takes; SGLang's rows (attention_sglang) check it
    "attention_vllm": [
        ("fa_prefill_max", 0.2, 1.0),
        ("fa_prefill_max_fp8", 0.1, 1.0),
        ("fa_prefill_cache_hbm", 0.05, 1.0),
        ("fa_prefill_half_len", 1.0, 16384.0),
        ("fa_prefill_floor_s", 0.5e-6, 100e-6),
        ("fa_prefill_score_flops", 1.0, 4096.0),
    ],
    "decode_attention": [
        ("decode_hbm", 0.2, 1.0),
        ("decode_seq_s", 1e-9, 20e-6),
        ("decode_floor_s", 0.5e-6, 100e-6),
        ("decode_occupancy", 0.01, 1.0),
        ("decode_split_len", 16.0, 65536.0),
    ],
    "moe": [
        ("moe_gemm", 0.1, 1.5),
        ("moe_gemm_fp8", 0.1, 1.5),
        ("moe_gemm_fp8_block", 0.1, 1.5),
        ("moe_floor_s", 0.5e-6, 200e-6),
    ],
    # vLLM's fused MoE (impl=vllm rows): the stacked-GEMM model serving under vLLM and SGLang takes
    # (ops.moe_time kernels="shared"); on the launch-grid devices these are its only MoE rows, so
    # its parameters are fitted here rather than on TensorRT-LLM's kernels
    "moe_vllm": [
        ("moe_gemm", 0.1, 1.5),
        ("moe_gemm_fp8", 0.05, 1.5),
        ("moe_gemm_fp8_block", 0.1, 1.5),
        ("moe_stream", 0.2, 1.5),
        ("moe_floor_s", 0.5e-6, 200e-6),
    ],
    # vLLM's Gated DeltaNet kernels (impl=vllm rows; costmodel.linear_mixer), which serving under
    # every engine takes; SGLang's and TensorRT-LLM's rows (their own families) check them
    "linear_attention_vllm": [
        ("gdn_conv_update_floor_s", 0.3e-6, 20e-6),
        ("gdn_conv_update_hbm", 0.1, 1.0),
        ("gdn_recurrent_floor_s", 0.3e-6, 20e-6),
        ("gdn_recurrent_hbm", 0.1, 1.0),
        ("gdn_recurrent_blend", 1.0, 8.0),
        ("gdn_conv_floor_s", 0.3e-6, 20e-6),
        ("gdn_conv_hbm", 0.1, 1.0),
        ("gdn_chunk_floor_s", 0.1e-6, 50e-6),
        ("gdn_chunk_mma", 0.05, 1.0),
        ("gdn_chunk_cta_s", 0.0, 50e-6),
    ],
    "nccl": [
        ("intra_bw", 0.3, 1.0),
        ("intra_bw_pair", 0.2, 1.0),
        ("intra_latency_s", 0.5e-6, 40e-6),
        ("intra_step_latency_s", 0.0, 10e-6),
        ("nccl_ll_latency_s", 0.5e-6, 40e-6),
        ("nccl_ll128_latency_s", 0.5e-6, 40e-6),
        ("nvls_speedup", 1.0, 2.0),
    ],
    "custom_allreduce": [("custom_ar_latency_s", 0.2e-6, 40e-6), ("custom_ar_bw", 0.1, 1.0)],
}
#: GEMM parameters fitted only on SM80 devices (catalog ``gemm_cta_intensity`` > 0): the SM80
#: tile choice and TensorRT-LLM's SM80 weight-only kernels (fixed costs of the CUTLASS GEMM and the
#: batched GEMV, the GEMV CTA's stream rate, dequantisation rate).
SM80_GEMM_PARAMS = (
    "gemm_cta_intensity",
    "gemm_floor_wo_s",
    "gemm_floor_gemv_s",
    "gemm_gemv_cta_Bps",
    "gemm_wo_dequant_rate",
)
#: Starting points of parameters whose catalog value is 0 ("not characterised"): NCCL's own
#: base latencies of LL / LL128 on NVLink (src/graph/tuning.cc, order of a few microseconds).
START = {
    "intra_bw_pair": 0.6,
    "nccl_ll_latency_s": 3e-6,
    "nccl_ll128_latency_s": 4e-6,
    "gemm_max_fp8_block": 0.6,
    "gemm_hbm_fp8": 0.75,
    "gemm_hbm_fp8_block": 0.75,
    "gemm_max_fp4": 0.5,
    "gemm_hbm_fp4": 0.7,
    "gemm_floor_fp4_s": 6e-6,
    "attn_max_fp8": 0.5,
    "moe_gemm_fp8": 0.8,
    "moe_gemm_fp8_block": 0.8,
    "moe_stream": 0.9,
    "gemm_max_deepgemm": 0.7,
    "gemm_hbm_deepgemm": 0.75,
    "gemm_floor_deepgemm_s": 8e-6,
    "fa_prefill_max": 0.7,
    "fa_prefill_max_fp8": 0.4,
    "fa_prefill_cache_hbm": 0.5,
    "fa_prefill_half_len": 256.0,
    "fa_prefill_floor_s": 10e-6,
    "fa_prefill_score_flops": 64.0,
    "gdn_conv_update_floor_s": 2e-6,
    "gdn_conv_update_hbm": 0.7,
    "gdn_recurrent_floor_s": 4e-6,
    "gdn_recurrent_hbm": 0.8,
    "gdn_conv_floor_s": 2e-6,
    "gdn_conv_hbm": 0.6,
    "gdn_chunk_floor_s": 5e-6,
    "gdn_chunk_mma": 0.5,
    "gdn_chunk_cta_s": 5e-6,
    "custom_ar_trtllm_latency_s": 3e-6,
    "custom_ar_vllm_latency_s": 4e-6,
    "custom_ar_sglang_latency_s": 3e-6,
    "custom_ar_peer_latency_s": 1e-7,
    "custom_ar_one_shot_bw": 0.6,
    "custom_ar_two_shot_bw": 0.6,
}
#: What each fixture's rows are, for the catalog source strings.
PROVENANCE = {
    "measured_kernels_hopper.csv": "aiconfigurator-core 0.12.0 measured tables, TensorRT-LLM 1.3.0rc20 / NCCL 2.29.2",
    "measured_kernels_blackwell.csv": "aiconfigurator-core 0.12.0 measured tables, TensorRT-LLM 1.3.0rc20 / NCCL 2.29.2",
    "measured_kernels_a100.csv": "aiconfigurator-core 0.12.0 measured tables, TensorRT-LLM 1.0.0 / NCCL 2.27.3",
    "measured_kernels_published.csv": "published microbenchmarks, each row's source column: ROCm blogs, rccl-tests, "
    "hipblaslt-bench, aiter, torch_npu matmul and attention timings",
}
#: (fixture, family) -> the measured tables of that family's rows, where one family spans several.
TABLES = {
    ("measured_kernels_hopper.csv", "moe_vllm"): "moe_perf of moe/vllm/0.24.0: vLLM's Triton fused MoE, bf16 "
    "and fp8_block; its FlashInfer CUTLASS rows (per-tensor fp8) are not fitted",
    ("measured_kernels_hopper.csv", "linear_attention_vllm"): "gdn_perf of linear_attention/vllm/0.24.0: "
    "vLLM's Gated DeltaNet kernels (causal_conv1d_update, the packed fused recurrent decode, "
    "causal_conv1d_fn, FlashInfer's chunked gated delta rule), fp32 state",
    ("measured_kernels_hopper.csv", "gemm_sglang"): "gemm_perf of gemm/sglang/0.5.14: SGLang's DeepGEMM "
    "block-FP8 GEMM (sglang_deepgemm_gemm_nt_f8f8bf16) and cuBLAS bf16",
    ("measured_kernels_hopper.csv", "attention_vllm"): "context_attention_perf of attention/vllm/0.24.0: "
    "vLLM's FlashAttention-3 prefill (vllm_flash_attn_fa3: the cache write and the kernel)",
    ("measured_kernels_blackwell.csv", "linear_attention_vllm"): "gdn_perf of linear_attention/vllm/0.24.0: "
    "vLLM's Gated DeltaNet kernels, fp32 state",
    ("measured_kernels_hopper.csv", "custom_allreduce"): "custom_allreduce_perf of comm/trtllm/1.3.0rc20, "
    "comm/vllm/0.24.0 and comm/sglang/0.5.14, CUDA-graph rows",
}
#: NVLS group sizes tried (a discrete choice, picked by the fitted half's cost).
NVLS_MIN_RANKS = (2.0, 4.0, 8.0)
#: (LL, LL128, Simple) base latencies the NCCL fit starts from, seconds.
NCCL_STARTS = ((3e-6, 4e-6, 8e-6), (5e-6, 12e-6, 20e-6), (2e-6, 6e-6, 25e-6))


def predict(rows, hw) -> np.ndarray:
    return predict_rows(rows, hw)


def errors(rows, hw) -> np.ndarray:
    return predict(rows, hw) / np.array([m.target for m in rows]) - 1.0


#: Parameters that belong to one GEMM/attention dtype class: fitted only when rows of that class exist.
CLASS_PARAMS = {
    "fp8": (
        "gemm_max_fp8",
        "gemm_hbm_fp8",
        "gemm_floor_fp8_s",
        "moe_gemm_fp8",
        "moe_mma_fp8",
        "attn_max_fp8",
    ),
    "fp8_block": (
        "gemm_max_fp8_block",
        "gemm_hbm_fp8_block",
        "gemm_floor_fp8_block_s",
        "moe_gemm_fp8_block",
        "moe_mma_fp8_block",
        "moe_expert_fp8_block_s",
        "moe_permute_fp8_block_Bps",
    ),
    "fp4": (
        "gemm_max_fp4",
        "gemm_hbm_fp4",
        "gemm_floor_fp4_s",
        "moe_mma_fp4",
        "moe_hbm_fp4",
        "moe_expert_fp4_s",
    ),
    "mxfp4_wo": ("moe_mma_mxfp4", "moe_cta_mxfp4_Bps", "moe_mxfp4_floor_s"),
}


def informed(params, rows):
    """``params`` without the dtype-class parameters no row of ``rows`` exercises."""
    from roofplan.costmodel.ops import gemm_class

    present = {gemm_class(m.row.get("dtype", "bf16")) for m in rows}
    present |= {m.row.get("dtype") for m in rows}  # the MXFP4 weight-only MoE parameters
    drop = {n for c, names in CLASS_PARAMS.items() if c not in present for n in names}
    return [p for p in params if p[0] not in drop]


def fit_family(rows, hw, params):
    """Bounded soft-L1 least squares of log(predicted/measured) over ``params`` (log-scaled)."""
    target = np.log(np.array([m.target for m in rows]))
    names = [p[0] for p in params]
    lo = np.log([max(p[1], 1e-12) for p in params])
    hi = np.log([p[2] for p in params])
    start = {n: v for n, v in START.items() if not getattr(hw.efficiency, n)}
    x0 = np.clip(
        np.log([max(start.get(n, getattr(hw.efficiency, n)), 1e-12) for n in names]), lo + 1e-9, hi - 1e-9
    )

    def with_x(x):
        return hw.with_efficiency(**{n: float(np.exp(v)) for n, v in zip(names, x, strict=True)})

    def fun(x):
        return np.log(np.maximum(predict(rows, with_x(x)), 1e-12)) - target

    res = least_squares(fun, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.05, x_scale=1.0)
    return with_x(res.x), float(np.sum(np.log1p(res.fun**2 / 0.05**2)))


def fit_family_global(rows, hw, params, generations: int = 150, start=None):
    """Differential evolution (fixed seed) of the same objective as :func:`fit_family`, for
    costs that are piecewise constant in some parameters (kernel waves), then returned as is."""
    target = np.log(np.array([m.target for m in rows]))
    names = [p[0] for p in params]
    bounds = [(np.log(p[1]), np.log(p[2])) for p in params]
    start = start or {}
    x0 = [
        float(np.clip(np.log(max(getattr(hw.efficiency, n) or start.get(n, 0.0), 1e-12)), lo, hi))
        for n, (lo, hi) in zip(names, bounds, strict=True)
    ]

    def with_x(x):
        return hw.with_efficiency(**{n: float(np.exp(v)) for n, v in zip(names, x, strict=True)})

    def cost(x):
        r = np.log(np.maximum(predict(rows, with_x(x)), 1e-12)) - target
        return float(np.mean(np.sqrt(1.0 + (r / 0.05) ** 2) - 1.0))

    res = differential_evolution(
        cost, bounds, seed=0, maxiter=generations, popsize=15, tol=1e-7, polish=False, x0=x0
    )
    return with_x(res.x), float(res.fun)


def summary(errs) -> str:
    a = np.abs(errs)
    return f"{len(a):5d} rows  median {np.median(a):6.1%}  p90 {np.quantile(a, 0.9):6.1%}  signed median {np.median(errs):+6.1%}"


#: --params restriction (None: every parameter of each family).
ONLY: set | None = None


def fit_device(rows, hw_id: str):
    hw = load_hardware(hw_id)
    report = {}
    fitted: dict = {}
    for fam, params in FAMILIES.items():
        sub = [m for m in rows if family(m) == fam]
        if not sub:
            continue
        if fam == "decode_attention" and hw_id in XQA_DEVICES:
            for impl, (kparams, key) in KERNEL_MODELS.items():
                mine = [m for m in sub if m.row.get("impl") == impl]
                if not any(m.row.get("kv_dtype") == "fp8" for m in mine):
                    kparams = [p for p in kparams if p[0] not in FP8_KV_PARAMS]
                if impl == "trtllm" and hw_id in MMHA_REREAD_DEVICES:
                    kparams = kparams + [MMHA_REREAD]
                if mine and (ONLY is None or ONLY & {p[0] for p in kparams}):
                    hw, _ = fit_family_global([m for m in mine if not held_back(m)], hw, kparams)
                    fitted[key] = [p[0] for p in kparams]
                    report[key] = mine
            continue  # the generic decode parameters keep their catalog values on these devices
        if fam == "moe" and hw_id in MOE_GRID_DEVICES:
            params = [p for p in informed(MOE_GRID_PARAMS, sub) if ONLY is None or p[0] in ONLY]
            if hw.efficiency.moe_tile_arch >= 100:  # the Triton MXFP4 model restates SM90's kernel
                params = [p for p in params if p[0] not in CLASS_PARAMS["mxfp4_wo"]]
            if params:
                fit_rows = [m for m in sub if not held_back(m)]
                hw, _ = fit_family_global(fit_rows, hw, params, generations=100, start=MOE_GRID_START)
                fitted[fam] = [p[0] for p in params]
                report[fam] = sub
            continue  # the stacked-GEMM parameters keep their catalog values on these devices
        fit_rows = [m for m in sub if not held_back(m)]
        if fam == "custom_allreduce" and hw_id in CUSTOM_AR_RULE_DEVICES:
            rule = [m for m in sub if m.row["impl"] != "custom"]
            params = [p for p in custom_ar_rule_params(rule) if ONLY is None or p[0] in ONLY]
            if params:
                hw, _ = fit_family([m for m in rule if not held_back(m)], hw, params)
                fitted[fam] = [p[0] for p in params]
                report[fam] = rule
            continue  # the engine-neutral parameters keep their catalog values on these devices
        params = [p for p in informed(params, sub) if ONLY is None or p[0] in ONLY]
        if not hw.efficiency.gemm_cta_intensity:  # SM80 tiles only where the catalog says SM80
            params = [p for p in params if p[0] not in SM80_GEMM_PARAMS]
        if not params:
            continue
        fitted[fam] = [p[0] for p in params]
        if fam == "nccl" and "nvls_min_ranks" not in (ONLY or {"nvls_min_ranks"}):
            hw, _ = fit_family(fit_rows, hw, params)
        elif fam == "nccl":
            # the protocol min() has several basins: start from each NVLS threshold and from a few
            # physically ordered (LL < LL128 < Simple) latency triples, keep the cheapest fit
            best = None
            for g in NVLS_MIN_RANKS:
                for ll, ll128, simple in NCCL_STARTS:
                    start = hw.with_efficiency(
                        nvls_min_ranks=g,
                        nccl_ll_latency_s=ll,
                        nccl_ll128_latency_s=ll128,
                        intra_latency_s=simple,
                    )
                    cand, cost = fit_family(fit_rows, start, params)
                    if best is None or cost < best[1]:
                        best = (cand, cost)
            hw = best[0]
        else:
            hw, _ = fit_family(fit_rows, hw, params)
        report[fam] = sub
    return hw, report, fitted


def print_report(hw, report, fitted) -> None:
    for fam, sub in report.items():
        names = fitted[fam] + (["nvls_min_ranks"] if fam == "nccl" else [])
        print(f"== {hw.id} {fam}: " + ", ".join(f"{n}={getattr(hw.efficiency, n):.4g}" for n in names))
        for part, rows in (
            ("fitted", [m for m in sub if not held_back(m)]),
            ("held back", [m for m in sub if held_back(m)]),
        ):
            if not rows:
                continue
            e = errors(rows, hw)
            print(f"   {part:9s} {summary(e)}")
            if fam == "custom_allreduce":  # each engine's rows apart (the target holds per engine)
                impls = np.array([m.row["impl"] for m in rows])
                for impl in sorted(set(impls)):
                    print(f"      {impl:12s} {summary(e[impls == impl])}")
            bands: dict = {}
            for m, x in zip(rows, e, strict=True):
                bands.setdefault(size_band(m), []).append(x)
            for b in sorted(bands, key=lambda s: int(s.split("-")[0][2:])):
                print(f"      {b:12s} {summary(np.array(bands[b]))}")


_LINE = re.compile(r"^  (?P<name>[A-Za-z0-9_]+): \{value: (?P<value>[^,]+), source: .*\}$")


def write_catalog(hw, fitted, table: str) -> None:
    """Replace or append the fitted efficiency lines of ``hw``'s built-in catalog YAML."""
    fams = list(fitted)
    path = ROOT / "roofplan" / "catalogs" / f"{hw.id}.yaml"
    lines = path.read_text().splitlines()
    start = lines.index("efficiency:")
    nvls = "nccl" in fams and "nvls_min_ranks" in (ONLY or {"nvls_min_ranks"})  # searched, not given
    names = [n for fam in fams for n in fitted[fam]] + (["nvls_min_ranks"] if nvls else [])
    for name in names:
        value = getattr(hw.efficiency, name)
        shown = f"{value * 1e6:.4g} us" if name.endswith("_s") else f"{value:.4g}"
        fam = next(f for f in fams if name in fitted[f] or (f == "nccl" and name == "nvls_min_ranks"))
        where = f"{table} ({PROVENANCE.get(table, 'published tables')}"
        where += f"; {TABLES[table, fam]})" if (table, fam) in TABLES else ")"
        src = f"fit: tools/fit_ops.py on the {fam} rows of {where}, even log2 size bins; odd bins held back"
        new = f'  {name}: {{value: {shown}, source: "{src}"}}'
        for i in range(start + 1, len(lines)):
            m = _LINE.match(lines[i])
            if m and m.group("name") == name:
                lines[i] = new
                break
            if lines[i] and not lines[i].startswith("  "):
                lines.insert(i, new)
                break
        else:
            lines.append(new)
    path.write_text("\n".join(lines) + "\n")


def explain(hw, rows, columns) -> None:
    """Signed median and count of errors per group of row columns (where the model misses)."""
    groups: dict = {}
    for m, e in zip(rows, errors(rows, hw), strict=True):
        groups.setdefault(tuple(m.row[c] for c in columns), []).append(e)
    for key in sorted(groups):
        v = np.array(groups[key])
        print(
            f"{key}: n={len(v):4d} signed median {np.median(v):+6.1%}  median |e| {np.median(np.abs(v)):6.1%}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--hardware", action="append", help="only these catalog ids")
    ap.add_argument(
        "--write", action="store_true", help="write the fitted values into roofplan/catalogs/*.yaml"
    )
    ap.add_argument(
        "--params",
        help="only these parameters (comma-separated); the rest keep their catalog values "
        "(for small published tables that inform a few parameters only)",
    )
    ap.add_argument(
        "--explain",
        nargs=2,
        metavar=("FAMILY", "COLUMNS"),
        help="after fitting, the signed median error of FAMILY's rows grouped by COLUMNS (a,b,...)",
    )
    args = ap.parse_args()
    global ONLY
    ONLY = {p.strip() for p in args.params.split(",")} if args.params else None
    rows = read_measurements(args.files)
    devices = sorted({m.hardware for m in rows if not args.hardware or m.hardware in args.hardware})
    for dev in devices:
        hw, report, fitted = fit_device([m for m in rows if m.hardware == dev], dev)
        if args.explain:
            explain(hw, report.get(args.explain[0], []), args.explain[1].split(","))
        else:
            print_report(hw, report, fitted)
        if args.write:
            table = next(
                Path(f).name for f in args.files if any(m.hardware == dev for m in read_measurements(f))
            )
            write_catalog(hw, fitted, table)
    _ = dataclasses


if __name__ == "__main__":
    main()
