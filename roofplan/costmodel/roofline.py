"""Roofline time of one operation, vectorised over numpy arrays.

time = max(flops / (peak x eff_compute), bytes / (bandwidth x eff_mem)) + launch overhead

(Williams, Waterman & Patterson, "Roofline", CACM 2009; the achievable-fraction form follows the
"How to Scale Your Model" book, ch. 1). Shape-aware kernel times (GEMM tiles and waves, attention,
MoE, collectives) live in the operator library, :mod:`roofplan.costmodel.ops`.

Every function accepts scalars or arrays and broadcasts, so the same code evaluates one
configuration or a million.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from roofplan.hardware.spec import Efficiency


def sustained(eff: Efficiency) -> Efficiency:
    """``eff`` with the tensor-core fractions (``gemm_max``, ``gemm_max_fp8``, ``attn_max``, the
    grouped GEMMs' ``moe_mma``) scaled
    by ``sustained_compute``: long runs hold lower clocks under the board power limit than the
    best-of-N microbenchmarks behind ``gemm_max`` (see ``Efficiency.sustained_compute``)."""
    s = eff.sustained_compute
    if s == 1.0:
        return eff
    return dataclasses.replace(
        eff,
        gemm_max=eff.gemm_max * s,
        gemm_max_fp8=eff.gemm_max_fp8 * s,
        gemm_max_fp8_block=eff.gemm_max_fp8_block * s,
        attn_max=eff.attn_max * s,
        attn_max_fp8=eff.attn_max_fp8 * s,
        moe_mma=eff.moe_mma * s,
        moe_mma_fp8=eff.moe_mma_fp8 * s,
        moe_mma_fp8_block=eff.moe_mma_fp8_block * s,
    )


def gemm_flops(m, n, k):
    """2·M·N·K multiply-adds counted as two FLOPs each."""
    return 2.0 * np.asarray(m, dtype=float) * n * k


def gemm_bytes(m, n, k, act_bytes=2.0, weight_bytes=2.0, out_bytes=None):
    """HBM traffic of a GEMM whose operands are each read once: A (M x K) activations,
    B (K x N) weights, C (M x N) output (FlashAttention-style IO argument, Dao et al. 2022)."""
    out_bytes = act_bytes if out_bytes is None else out_bytes
    m = np.asarray(m, dtype=float)
    return m * k * act_bytes + np.asarray(k, dtype=float) * n * weight_bytes + m * n * out_bytes


def roofline_time(flops, nbytes, peak_flops, compute_eff, bandwidth_Bps, mem_eff, overhead_s=0.0):
    """max(compute time, memory time) + fixed overhead."""
    t_compute = np.asarray(flops, dtype=float) / (peak_flops * compute_eff)
    t_memory = np.asarray(nbytes, dtype=float) / (bandwidth_Bps * mem_eff)
    return np.maximum(t_compute, t_memory) + overhead_s


def memory_time(nbytes, *, bandwidth_Bps, eff: Efficiency, launches=1.0):
    """Time of a memory-bound (elementwise, norm, copy) kernel moving ``nbytes``."""
    return np.asarray(nbytes, dtype=float) / (bandwidth_Bps * eff.hbm) + launches * eff.kernel_launch_s
