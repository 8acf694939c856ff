"""FlashAttention-3 paged decode on Hopper (vLLM's and SGLang's decode kernel): split-KV grid and time.

FlashAttention-3 (Shah et al. 2024; ``hopper/flash_api.cpp``, ``hopper/heuristics.h``) runs decode
with the query-head group packed into one M block (``pack_gqa``), so its grid is one CTA per
(sequence, KV head, KV split). The split count is its ``num_splits_heuristic``: none when the
(sequence x KV head) blocks already fill 80% of the SMs; otherwise the smallest count, up to
``min(fa_max_splits, SMs, KV blocks of FA_BLOCK_N tokens)``, whose wave efficiency
``n/ceil(n)`` (n = blocks x splits / SMs) is within 85% of the best one. A split grid adds the
combine kernel (``fa_combine_s``).

**Time.** A CTA streams its KV chunk at a per-CTA rate after a fixed prologue (``fa_cta_s``); an
FP8 cache is converted element by element in the CTA (``fa_fp8_cvt_rate``); CTAs run in waves of
``SMs x fa_ctas_per_sm``; no kernel is faster than its KV bytes at ``fa_hbm`` of HBM bandwidth;
plus a fixed cost (launch, the paged-cache append, ``fa_floor_s``). The parameters are fitted per
device on vLLM's measured FlashAttention-3 generation-attention tables (``tools/fit_ops.py``); a
device without them has ``fa_hbm = 0`` and uses the generic decode model of
:mod:`roofplan.costmodel.ops`.
"""

from __future__ import annotations

import numpy as np

from roofplan.costmodel.trtllm_decode import cta_waves
from roofplan.hardware.spec import Efficiency

#: KV tokens per FlashAttention-3 decode tile (``kBlockN`` of the head-dim 128 forward kernels).
FA_BLOCK_N = 128.0
#: Splits are taken while the unsplit grid fills less than this share of the SMs.
FA_SPLIT_BELOW = 0.8
#: The heuristic takes the fewest splits within this share of the best wave efficiency.
FA_EFFICIENCY_SHARE = 0.85


def has_fa3_model(eff: Efficiency) -> bool:
    """Whether this device carries fitted FlashAttention-3 decode parameters."""
    return eff.fa_hbm > 0


def fa3_num_splits(blocks, kv_blocks, sms: float, max_splits: float):
    """KV splits of FlashAttention-3's ``num_splits_heuristic`` for ``blocks`` (sequence x KV head)
    M blocks over ``kv_blocks`` KV tiles each."""
    blocks, kv_blocks = np.broadcast_arrays(
        np.asarray(blocks, dtype=float), np.asarray(kv_blocks, dtype=float)
    )
    flat_b, flat_n = blocks.ravel(), kv_blocks.ravel()
    most = max(int(max_splits), 1)
    s = np.arange(1, most + 1, dtype=float)[None, :]
    cap = np.minimum(np.minimum(most, sms), flat_n)[:, None]
    waves = flat_b[:, None] * s / sms
    eff = np.where(s <= cap, waves / np.ceil(waves), 0.0)
    good = eff >= FA_EFFICIENCY_SHARE * eff.max(axis=1, keepdims=True)
    chosen = np.argmax(good & (s <= cap), axis=1) + 1.0
    return np.where(flat_b < FA_SPLIT_BELOW * sms, chosen, 1.0).reshape(blocks.shape)


def fa3_decode_time(batch, kv_len, kv_heads, head_dim, per_tok, fp8_kv, hbm_Bps, sms: float, eff):
    """Seconds of FlashAttention-3 decode for ``batch`` sequences of ``kv_len`` cached tokens;
    ``per_tok`` = K+V bytes per token and layer of all ``kv_heads``."""
    b, L, hk = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (batch, kv_len, kv_heads)))
    b, hk = np.maximum(b, 1.0), np.maximum(hk, 1.0)  # a decode call runs at least one sequence
    d, fp8 = np.asarray(head_dim, dtype=float), np.asarray(fp8_kv, dtype=bool)
    kv_blocks = np.ceil(L / FA_BLOCK_N)
    splits = fa3_num_splits(b * hk, kv_blocks, sms, eff.fa_max_splits)
    chunk = np.minimum(np.ceil(kv_blocks / splits) * FA_BLOCK_N, L)
    convert = np.where(fp8, 2.0 * d / eff.fa_fp8_cvt_rate, 0.0)
    per_cta = eff.fa_cta_s + chunk * (per_tok / hk / eff.fa_cta_Bps + convert)
    waves = cta_waves(b * hk * splits, sms, eff.fa_ctas_per_sm)
    hbm = b * L * per_tok / (hbm_Bps * eff.fa_hbm)
    return np.maximum(waves * per_cta, hbm) + np.where(splits > 1.0, eff.fa_combine_s, 0.0) + eff.fa_floor_s
