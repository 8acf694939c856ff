"""Vectorised predictions of operator measurement rows (one kernel each) with the operator library.

``roofplan calibrate`` fits against these predictions, ``roofplan validate --measurements`` reports
them, and ``tools/fit_ops.py`` fits the catalogs' per-device operator parameters with them: one
predictor per row kind, so the three can never disagree. Rows are :class:`Measurement` objects of
the kinds in :data:`roofplan.calibration.formats.OP_KINDS`; predictions are seconds.
"""

from __future__ import annotations

import numpy as np

from roofplan.calibration.formats import (
    ATTENTION_FLASH_IMPLS,
    CUSTOM_IMPLS,
    LINEAR_CONV_KERNEL,
    MOE_FUSED_IMPLS,
    MOE_MIN_LATENCY,
)
from roofplan.costmodel import linear_mixer, ops
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.serve import ENGINE_GEMM_KERNELS
from roofplan.engines.allreduce import GENERIC, STRATEGIES
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec

#: What a "size" is for each kind when rows are banded (tables of ``validate --measurements``) and
#: when alternate log2 bins are held back from a fit.
SIZE_MEASURES = {
    "gemm": "FLOPs 2mnk",
    "attention": "FLOPs of the call",
    "decode_attention": "KV bytes read",
    "moe": "FLOPs of the routed tokens",
    "linear_attention": "state elements x new tokens",
    "collective": "message bytes",
}


def _col(ms, key) -> np.ndarray:
    return np.array([m.row[key] for m in ms], dtype=float)


def _cols(ms, *keys) -> list[np.ndarray]:
    """The columns ``keys`` of rows ``ms`` as float arrays, in order (the positional arguments of an
    operator time)."""
    return [_col(ms, k) for k in keys]


def row_size(m) -> float:
    """The size a row is banded by (see :data:`SIZE_MEASURES`)."""
    r = m.row
    if m.kind == "gemm":
        return 2.0 * r["m"] * r["n"] * r["k"]
    if m.kind == "attention":
        return 4.0 * r["batch"] * r["heads"] * r["seq_len"] * r["kv_len"] * r["head_dim"]
    if m.kind == "decode_attention":
        return r["batch"] * r["kv_len"] * 2.0 * r["kv_heads"] * r["head_dim"]
    if m.kind == "moe":
        return 6.0 * r["tokens"] * r["topk"] * r["hidden"] * r["moe_ffn"] / r["tp"]
    if m.kind == "linear_attention":
        return r["batch"] * r["seq_len"] * r["heads"] * r["head_dim"] ** 2
    return r["bytes"]


def _groups(ms, key):
    out: dict = {}
    for i, m in enumerate(ms):
        out.setdefault(m.row[key] if isinstance(key, str) else key(m), []).append(i)
    return out.items()


def _per_group(ms, key, time_of) -> np.ndarray:
    """``time_of(rows, group)`` for each group of rows sharing ``key`` (a column name or a function
    of the row), put back in the rows' order: one vectorised call per group of scalar settings."""
    out = np.empty(len(ms))
    for group, idx in _groups(ms, key):
        out[idx] = time_of([ms[i] for i in idx], group)
    return out


def _gemm(ms, hw: DeviceSpec) -> np.ndarray:
    """One GEMM per row; a row naming an engine runs that engine's kernel library
    (costmodel.serve.ENGINE_GEMM_KERNELS: SGLang's block FP8 on DeepGEMM)."""

    def time_of(sub, group):
        dtype, impl = group
        kernels = ENGINE_GEMM_KERNELS.get(impl, "trtllm")
        return ops.gemm_time(*_cols(sub, "m", "n", "k"), hw, dtype=dtype, kernels=kernels)

    return _per_group(ms, lambda m: (m.row["dtype"], m.row.get("impl", "")), time_of)


def _attention(ms, hw: DeviceSpec) -> np.ndarray:
    def time_of(sub, group):
        dtype, kv_dtype, causal, direction, impl = group
        shape = _cols(sub, "batch", "seq_len", "kv_len", "heads", "kv_heads", "head_dim")
        kernels = "flash" if impl in ATTENTION_FLASH_IMPLS else "trtllm"
        t = ops.prefill_attention_time(
            *shape, hw, dtype=dtype, kv_dtype=kv_dtype, causal=causal, kernels=kernels
        )
        # backward: FlashAttention-2 counts 2.5x the forward work
        return t if direction == "fwd" else t * {"bwd": 2.5, "fwd_bwd": 3.5}[direction]

    def key(m):
        r = m.row
        return r["dtype"], r["kv_dtype"], r["causal"], r["direction"], r.get("impl", "")

    return _per_group(ms, key, time_of)


def _decode_attention(ms, hw: DeviceSpec) -> np.ndarray:
    def time_of(sub, group):
        kv_dtype, impl = group
        shape = _cols(sub, "batch", "kv_len", "heads", "kv_heads", "head_dim")
        # an absorbed MLA row caches one latent of head_dim elements per token (no separate V)
        latent = shape[4] * DTYPE_BYTES.get(kv_dtype, 2.0) if impl == "trtllm_mla" else None
        return ops.decode_attention_time(
            *shape,
            hw,
            kv_dtype=kv_dtype,
            q_len=_col(sub, "seq_len"),
            dispatch=impl,
            kv_bytes_per_token=latent,
        )

    return _per_group(ms, lambda m: (m.row["kv_dtype"], m.row["impl"]), time_of)


def _moe(ms, hw: DeviceSpec) -> np.ndarray:
    def time_of(sub, group):
        dtype, dist, gated, impl = group
        shape = _cols(sub, "tokens", "hidden", "moe_ffn", "experts", "topk")
        ep, tp = _cols(sub, "ep", "tp")
        # TensorRT-LLM's MoE kernels (cutlass grouped GEMM sequences) unless the row names an
        # engine's fused MoE (MOE_FUSED_IMPLS), which the stacked-GEMM model prices
        kernels = "shared" if impl in MOE_FUSED_IMPLS else "trtllm"
        return ops.moe_time(
            *shape, hw, ep=ep, tp=tp, dtype=dtype, distribution=dist, gated=gated, kernels=kernels
        )

    def key(m):
        return m.row["dtype"], m.row["distribution"], m.row["gated"], m.row.get("impl")

    return _per_group(ms, key, time_of)


def _linear_attention(ms, hw: DeviceSpec) -> np.ndarray:
    """One Gated DeltaNet kernel per row (costmodel.linear_mixer): the conv over q, k and v
    (2 x kv_heads + heads channels of head_dim), the recurrent state of heads x head_dim^2."""

    def time_of(sub, group):
        op, dtype = group
        b, s, h, hk, d = _cols(sub, "batch", "seq_len", "heads", "kv_heads", "head_dim")
        conv_dim, width = (2.0 * hk + h) * d, LINEAR_CONV_KERNEL
        if op == "conv_update":
            return linear_mixer.conv_update_time(b, conv_dim, width, hw)
        if op == "recurrent_update":
            return linear_mixer.recurrent_update_time(b, h, d, d, hw, state_bytes=DTYPE_BYTES[dtype])
        if op == "conv":
            return linear_mixer.conv_time(b, s, conv_dim, width, hw)
        return linear_mixer.chunk_scan_time(b, s, h, d, d, hw)

    return _per_group(ms, lambda m: (m.row["op"], m.row["dtype"]), time_of)


def _collective(ms, hw: DeviceSpec) -> np.ndarray:
    out = np.empty(len(ms))
    ranks, nodes = _col(ms, "ranks"), _col(ms, "nodes")
    packed = np.minimum(ranks, hw.devices_per_node)
    per_node = np.where(nodes > 0, ranks / np.maximum(nodes, 1), packed)
    # per_node members on each node sit devices_per_node / per_node ranks apart (Megatron rank
    # order, collectives.group_layout)
    stride = hw.devices_per_node / per_node
    for (op, impl, dtype), idx in _groups(ms, lambda m: (m.row["op"], m.row["impl"], m.row["dtype"])):
        idx = np.array(idx)
        nbytes = _col([ms[i] for i in idx], "bytes")
        if impl in CUSTOM_IMPLS:  # custom_<engine>: that engine's dispatch rule
            rule = STRATEGIES[impl.removeprefix("custom_")] if impl != "custom" else GENERIC
            out[idx] = ops.custom_allreduce_time(nbytes, ranks[idx], hw, strategy=rule)
        else:
            # NVLS reduces 16/32-bit floats in the switch (multimem.ld_reduce); int8 runs the ring
            nvls = True if impl == "nvls" else (False if dtype in ("int8", "fp8") else None)
            out[idx] = collective_time(op, nbytes, ranks[idx], hw, stride[idx], nvls=nvls)
    return out


PREDICTORS = {
    "gemm": _gemm,
    "attention": _attention,
    "decode_attention": _decode_attention,
    "moe": _moe,
    "linear_attention": _linear_attention,
    "collective": _collective,
}


def predict_op_rows(kind: str, ms: list, hw: DeviceSpec) -> np.ndarray:
    """Predicted seconds of operator rows of one ``kind`` on ``hw``."""
    return PREDICTORS[kind](ms, hw)


def predict_rows(ms: list, hw: DeviceSpec) -> np.ndarray:
    """Predicted seconds of operator rows of any kinds on ``hw``, in their order (one vectorised
    call per kind)."""
    return _per_group(ms, lambda m: m.kind, lambda sub, kind: predict_op_rows(kind, sub, hw))


def held_back(m) -> bool:
    """Whether a measured row belongs to the held-back half: rows whose size (see
    :data:`SIZE_MEASURES`) falls in an odd log2 bin. Splitting by shape, not by random rows, keeps
    neighbouring shapes of a sweep out of the fit together, so the held-back error measures how
    the model carries to sizes it was not fitted on."""
    return int(np.floor(np.log2(max(row_size(m), 1.0)))) % 2 == 1


def size_band(m) -> str:
    """Decade of a row's size for the per-band tables, e.g. ``1e6-1e7``."""
    e = int(np.floor(np.log10(max(row_size(m), 1.0))))
    return f"1e{e}-1e{e + 1}"


def family(m) -> str:
    """Family a row is reported under: the kind, with collectives split by implementation and the
    NVFP4 min-latency MoE rows (another kernel sequence than the CUTLASS one the MoE model prices,
    measured on the same shapes) apart from the other MoE rows."""
    if m.kind == "collective":
        return "custom_allreduce" if m.row["impl"] in CUSTOM_IMPLS else "nccl"
    if m.kind == "moe" and m.row.get("impl") == MOE_MIN_LATENCY:
        return "moe_min_latency"
    if m.kind == "moe" and m.row.get("impl") in MOE_FUSED_IMPLS:
        return "moe_" + m.row["impl"]
    if m.kind == "gemm" and m.row.get("impl") in ENGINE_GEMM_KERNELS:
        return "gemm_" + m.row["impl"]
    if m.kind == "attention" and m.row.get("impl") in ATTENTION_FLASH_IMPLS:
        return "attention_" + m.row["impl"]
    if m.kind == "linear_attention":  # each engine's GDN kernels are their own family
        return "linear_attention_" + m.row["impl"]
    return m.kind
