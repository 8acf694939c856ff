"""Roofline time of one operation, vectorised over numpy arrays.

time = max(flops / (peak x eff_compute(shape)), bytes / (bandwidth x eff_mem)) + launch overhead

(Williams, Waterman & Patterson, "Roofline", CACM 2009; the achievable-fraction form follows the
"How to Scale Your Model" book, ch. 1). The shape dependence of GEMM efficiency is a saturating
curve in the geometric mean of (M, N, K): small or skinny GEMMs leave tiles and waves of SMs
under-filled, large ones approach the measured maximum (MAMF, hardware.md §16c).

Every function accepts scalars or arrays and broadcasts, so the same code evaluates one
configuration or a million.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from roofplan.hardware.spec import Efficiency


def sustained(eff: Efficiency) -> Efficiency:
    """``eff`` with the tensor-core fractions (``gemm_max``, ``gemm_max_fp8``, ``attn_max``) scaled
    by ``sustained_compute``: long runs hold lower clocks under the board power limit than the
    best-of-N microbenchmarks behind ``gemm_max`` (see ``Efficiency.sustained_compute``)."""
    s = eff.sustained_compute
    if s == 1.0:
        return eff
    return dataclasses.replace(eff, gemm_max=eff.gemm_max * s, gemm_max_fp8=eff.gemm_max_fp8 * s,
                               attn_max=eff.attn_max * s)


def gemm_efficiency(m, n, k, eff: Efficiency):
    """Achievable fraction of dense peak for an (M x K) @ (K x N) GEMM.

    ``gemm_max * s / (s + gemm_half_dim)`` with ``s = (M N K)^(1/3)``: equals ``gemm_max/2`` at
    ``s = gemm_half_dim`` and tends to ``gemm_max`` for large GEMMs.
    """
    s = np.cbrt(np.asarray(m, dtype=float) * n * k)
    return eff.gemm_max * s / (s + eff.gemm_half_dim)


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


def gemm_time(m, n, k, *, peak_flops, bandwidth_Bps, eff: Efficiency, act_bytes=2.0, weight_bytes=2.0,
              launches=1.0):
    """Roofline time of a GEMM, with ``launches`` kernel launches of fixed overhead."""
    return roofline_time(
        gemm_flops(m, n, k),
        gemm_bytes(m, n, k, act_bytes, weight_bytes),
        peak_flops,
        gemm_efficiency(m, n, k, eff),
        bandwidth_Bps,
        eff.hbm,
        launches * eff.kernel_launch_s,
    )


def memory_time(nbytes, *, bandwidth_Bps, eff: Efficiency, launches=1.0):
    """Time of a memory-bound (elementwise, norm, copy) kernel moving ``nbytes``."""
    return np.asarray(nbytes, dtype=float) / (bandwidth_Bps * eff.hbm) + launches * eff.kernel_launch_s
