"""The kernels of a linear-attention (Gated DeltaNet) or state-space (Mamba-2) token mixer.

A Gated DeltaNet layer (Yang et al., "Gated Delta Networks", ICLR 2025; Qwen3-Next / Qwen3.5)
runs, besides its projections (priced as GEMMs by the caller), two kernels per step:

* **decode** (one new token per sequence): ``causal_conv1d_update`` reads and writes each
  sequence's conv window (``conv_dim x (conv_kernel - 1)`` 16-bit elements) and the token's
  ``conv_dim`` channels; the fused recurrent gated-delta-rule update reads and writes each
  sequence's recurrent state (``heads x key_dim x value_dim`` elements at the engine's state
  dtype, fp32 by default in vLLM and SGLang for Qwen3.5). Both are HBM streams over a floor; the
  recurrent update's floor and stream overlap (a p-norm of power ``gdn_recurrent_blend``).
* **prefill** (``s`` new tokens per sequence): ``causal_conv1d_fn`` streams the tokens' channels in
  and out; the chunked scan (the WY-form chunk algorithm of Yang et al., "Parallelizing Linear
  Transformers with the Delta Rule over Sequence Length", NeurIPS 2024; FlashInfer's GDN prefill
  kernel under vLLM) runs one CTA per (sequence, head), one resident per SM, which walks the
  sequence's chunks of :data:`CHUNK` tokens in order: waves of CTAs over the SMs, each costing a
  fixed ``gdn_chunk_cta_s`` (state load and store) plus, per chunk, its tensor-core FLOPs at
  ``gdn_chunk_mma`` of one SM's share of the 16-bit peak.

The ``gdn_*`` parameters are fitted per device on vLLM 0.24.0's measured GDN kernel tables
(aiconfigurator-core 0.12.0, ``linear_attention/vllm/0.24.0/gdn_perf``; ``tools/fit_ops.py``). A
Mamba-2 layer runs the same shapes of kernels (conv update and selective-state update at decode,
conv and chunked SSD scan at prefill) and takes the same parameters as its prior: no measured
Mamba-2 table of vLLM's kernels is characterised. Pure functions over numpy arrays; seconds.
"""

from __future__ import annotations

import numpy as np

from roofplan.costmodel.ops import peak16
from roofplan.hardware.spec import DeviceSpec, Efficiency

#: Tokens per chunk of the chunked gated-delta-rule scan (FLA ``chunk_gated_delta_rule`` and
#: FlashInfer's GDN prefill: BT = 64).
CHUNK = 64.0
#: Bytes of a conv-window element and of an activation: the model dtype (bf16).
ACT_BYTES = 2.0


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _floor(eff: Efficiency, value: float) -> float:
    return value or eff.elementwise_floor_s


def _hbm(eff: Efficiency, value: float) -> float:
    return value or eff.hbm


def chunk_flops_per_token(key_dim, value_dim):
    """Tensor-core FLOPs per token and head of the chunked delta-rule scan with chunks of ``C``:
    the intra-chunk products K K^T, Q K^T and the WY factors (4 C d_k), the intra-chunk attention
    onto values (C d_v), and the state's three d_k x d_v products (the update K^T U, the
    correction W S, the output Q S), two FLOPs per multiply-add."""
    dk, dv = _f(key_dim), _f(value_dim)
    return 2.0 * (4.0 * CHUNK * dk + CHUNK * dv + 3.0 * dk * dv)


def conv_update_time(seqs, conv_dim, conv_kernel, hw: DeviceSpec, eff: Efficiency | None = None):
    """Seconds of ``causal_conv1d_update`` for ``seqs`` sequences of one new token: each reads and
    writes its conv window and the token's channels, 16-bit."""
    eff = hw.efficiency if eff is None else eff
    nbytes = _f(seqs) * _f(conv_dim) * (2.0 * (_f(conv_kernel) - 1.0) + 2.0) * ACT_BYTES
    stream = nbytes / (hw.hbm_Bps * _hbm(eff, eff.gdn_conv_update_hbm))
    return _floor(eff, eff.gdn_conv_update_floor_s) + stream


def recurrent_update_time(
    seqs, heads, key_dim, value_dim, hw: DeviceSpec, eff: Efficiency | None = None, state_bytes=4.0
):
    """Seconds of the fused recurrent gated-delta-rule (or selective-state) update of one token:
    every (sequence, head) state of ``key_dim x value_dim`` elements read and written once."""
    eff = hw.efficiency if eff is None else eff
    nbytes = 2.0 * _f(seqs) * _f(heads) * _f(key_dim) * _f(value_dim) * _f(state_bytes)
    stream = nbytes / (hw.hbm_Bps * _hbm(eff, eff.gdn_recurrent_hbm))
    floor = _floor(eff, eff.gdn_recurrent_floor_s)
    p = eff.gdn_recurrent_blend
    return (floor**p + stream**p) ** (1.0 / p)


def conv_time(seqs, new_tokens, conv_dim, conv_kernel, hw: DeviceSpec, eff: Efficiency | None = None):
    """Seconds of ``causal_conv1d_fn`` over ``seqs`` prompts of ``new_tokens`` tokens: the channels
    read and written once, plus each sequence's final conv window written to its state."""
    eff = hw.efficiency if eff is None else eff
    b, c = _f(seqs), _f(conv_dim)
    nbytes = (b * _f(new_tokens) * c * 2.0 + b * c * (_f(conv_kernel) - 1.0)) * ACT_BYTES
    return _floor(eff, eff.gdn_conv_floor_s) + nbytes / (hw.hbm_Bps * _hbm(eff, eff.gdn_conv_hbm))


def chunk_scan_time(
    seqs, new_tokens, heads, key_dim, value_dim, hw: DeviceSpec, eff: Efficiency | None = None
):
    """Seconds of the chunked gated-delta-rule scan over ``seqs`` prompts of ``new_tokens`` tokens
    and ``heads`` heads: ceil(seqs x heads / SMs) waves of CTAs, each a fixed cost plus its
    ceil(new_tokens / CHUNK) chunks in order at ``gdn_chunk_mma`` of one SM's 16-bit peak."""
    eff = hw.efficiency if eff is None else eff
    # without a known SM count the device is one unit: the scan's FLOPs at the 16-bit peak
    sms = float(hw.compute_units or 1)
    per_sm = peak16(hw) / sms * (eff.gdn_chunk_mma or eff.attn_max)
    chunk_s = CHUNK * chunk_flops_per_token(key_dim, value_dim) / per_sm
    waves = np.ceil(_f(seqs) * _f(heads) / sms)
    chunks = np.ceil(_f(new_tokens) / CHUNK)
    return _floor(eff, eff.gdn_chunk_floor_s) + waves * (eff.gdn_chunk_cta_s + chunks * chunk_s)


def decode_time(seqs, heads, key_dim, value_dim, conv_dim, conv_kernel, hw, eff=None, state_bytes=4.0):
    """Seconds of one mixer layer's decode kernels (conv update + recurrent update); 0 without
    sequences."""
    t = conv_update_time(seqs, conv_dim, conv_kernel, hw, eff) + recurrent_update_time(
        seqs, heads, key_dim, value_dim, hw, eff, state_bytes
    )
    return np.where(_f(seqs) > 0, t, 0.0)


def prefill_time(seqs, new_tokens, heads, key_dim, value_dim, conv_dim, conv_kernel, hw, eff=None):
    """Seconds of one mixer layer's prefill kernels (causal conv + chunked scan); 0 without
    prompts."""
    t = conv_time(seqs, new_tokens, conv_dim, conv_kernel, hw, eff) + chunk_scan_time(
        seqs, new_tokens, heads, key_dim, value_dim, hw, eff
    )
    return np.where((_f(seqs) > 0) & (_f(new_tokens) > 0), t, 0.0)
