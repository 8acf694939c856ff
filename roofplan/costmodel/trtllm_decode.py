"""TensorRT-LLM's decode attention kernels on Hopper: which kernel runs, its launch grid, its time.

TensorRT-LLM picks one of three generation-phase attention kernels per call, and each launches a
grid whose shape decides how well the KV-cache read fills the GPU. The rules below restate
TensorRT-LLM 1.x (``kernels/decoderMaskedMultiheadAttention``):

* **Which kernel** (:func:`kernel_choice`). The A100 (SM80) build has the HMMA XQA and MMHA
  kernels but no QGMMA, so there only 16-bit caches are priced here (:func:`covers_cache`). XQA takes query-head groups of 2..32 (vanilla MHA and
  larger groups run the masked multi-head attention kernel, "MMHA"). With an FP8 KV cache and
  16-bit activations XQA always runs, on Hopper as the QGMMA kernel that also applies RoPE and
  appends the new token itself ("MMHA does not support this combination",
  ``decoderXQARunner.cpp::shouldUse``). With a 16-bit cache XQA (the HMMA kernel) runs only when
  ``kv_heads x batch x max(1, kv_len // 128) x 4 >= SMs`` (``mayHavePerfGain``), otherwise MMHA.
* **XQA grid** (:func:`xqa_blocks_per_sequence`): one CTA per (sequence, KV head, KV split); the
  split count starts at ``kv_len // 128``, is capped at ``round(sqrt(8 x count))`` and cut so that
  the grid stays within 8 waves of the SMs, and at most 6000 sub-sequences in all
  (``kernelUtils.h::computeMultiBlockCount``, ``decoderXQAConstants.h``).
* **MMHA grid** (:func:`mmha_grid`): one CTA per (sequence, query head, KV tile). Below
  ``4 x SMs`` CTAs the block grows from 256 to 512 or 1024 threads and the KV is split into
  ``ceil(SMs x resident blocks / (batch x heads))`` tiles, at most one per unrolled KV loop
  (``block / threads-per-16-byte-value x 8`` tokens) and at most ``max(ceil(SMs / (batch x heads)),
  4)`` (``decoderMaskedMultiheadAttentionLaunch.h``).

**Time.** A CTA streams its KV chunk at a per-CTA rate (latency-bound: a CTA keeps a fixed number
of loads in flight) after a fixed prologue; CTAs run in waves of ``SMs x resident CTAs``; the whole
kernel can go no faster than the KV bytes over ``xqa_hbm`` of HBM bandwidth (MMHA, whose CTAs
each serve one query head, no faster than the cache re-read once per query head at
``mmha_reread_Bps``, where fitted: on B200 a 64-query-head group over one KV head takes as long
as 64 KV heads do, 614 vs 594 us at batch 16 and 8192 tokens). QGMMA converts every
FP8 element for each query head of its group; MMHA multiplies every cached element once per query
head on CUDA cores (and converts it when the cache is FP8), at per-CTA rates that scale with its
block size. A split grid pays one reduction (``xqa_merge_s``). The fixed cost is the separate QKV
preprocessing kernel plus launch (``xqa_preprocess_s``) or, for the fused QGMMA kernel, its own
floor (``xqa_fused_floor_s``). The per-CTA parameters are fitted per device on TensorRT-LLM's
measured generation-attention tables (``tools/fit_ops.py``); a device without them has
``xqa_hbm = 0`` and uses the generic decode model of :mod:`roofplan.costmodel.ops`.
"""

from __future__ import annotations

import numpy as np

from roofplan.hardware.spec import Efficiency

#: KV tokens per XQA split before multi-block mode adds another (``kMinHistoryTokensPerBlock``).
XQA_MIN_TOKENS_PER_BLOCK = 128.0
#: Waves of the SMs the XQA grid is cut back to (``kTargetWaveFactor``).
XQA_TARGET_WAVES = 8.0
#: XQA runs only with at least SMs / 4 blocks (``kEnableMinBlockFactor``).
XQA_MIN_BLOCK_FACTOR = 4.0
#: Sub-sequences the multi-block workspace holds (``kXQA_MAX_NUM_SUB_SEQ``).
XQA_MAX_SUB_SEQ = 6000.0
#: Largest query-head group XQA takes (``head_grp_size > 32`` is refused).
XQA_MAX_GROUP = 32.0
#: MMHA's default block and its 16-byte vector loads.
MMHA_BLOCK = 256.0
MMHA_VECTOR_BYTES = 16.0


def has_xqa_model(eff: Efficiency) -> bool:
    """Whether this device carries fitted TensorRT-LLM decode-kernel parameters."""
    return eff.xqa_hbm > 0


def covers_cache(has_fp8_units: bool, fp8_kv: bool) -> bool:
    """Whether the fitted kernels price this cache: an 8-bit cache runs the QGMMA kernel, which
    needs FP8 tensor cores (Hopper's warpgroup MMA); on a device without them (A100, SM80, where
    TensorRT-LLM keeps no FP8 KV cache) such a cache is left to the generic decode model."""
    return bool(has_fp8_units or not fp8_kv)


def kernel_choice(batch, kv_len, heads, kv_heads, fp8_kv, sms: float):
    """(QGMMA XQA, HMMA XQA) masks; what is neither runs MMHA (module docstring)."""
    group = heads / kv_heads
    xqa_ok = (group > 1.0) & (group <= XQA_MAX_GROUP)
    blocks = kv_heads * batch * np.maximum(1.0, np.floor(kv_len / XQA_MIN_TOKENS_PER_BLOCK))
    qgmma = xqa_ok & fp8_kv
    hmma = xqa_ok & ~fp8_kv & (blocks * XQA_MIN_BLOCK_FACTOR >= sms)
    return qgmma, hmma


def xqa_blocks_per_sequence(batch, kv_len, kv_heads, sms: float):
    """KV splits per (sequence, KV head) of TensorRT-LLM's XQA multi-block mode."""
    mb = np.floor(kv_len / XQA_MIN_TOKENS_PER_BLOCK)
    mb = np.maximum(np.minimum(mb, np.round(np.sqrt(mb * 8.0))), 1.0)
    adj = batch * kv_heads * mb / sms / XQA_TARGET_WAVES
    mb = np.maximum(np.where(adj > 1.0, np.floor(mb / np.maximum(adj, 1.0)), mb), 1.0)
    return np.maximum(np.minimum(mb, np.floor(XQA_MAX_SUB_SEQ / batch)), 1.0)


def mmha_grid(batch, kv_len, heads, head_dim, sms: float, resident: float):
    """(threads per block, KV tiles per (sequence, head), resident blocks per SM) of MMHA;
    ``resident`` = blocks of 256 threads one SM holds."""
    bh = batch * heads
    big = bh >= sms * 4.0
    factor = np.minimum(np.ceil(sms * resident / bh), resident)
    block = np.where(big, MMHA_BLOCK, np.where(factor >= 4, 1024.0, np.where(factor >= 2, 512.0, MMHA_BLOCK)))
    per_sm = np.maximum(np.floor(resident * MMHA_BLOCK / block), 1.0)
    threads_per_value = head_dim * 2.0 / MMHA_VECTOR_BYTES
    tokens_per_loop = np.ceil(block / threads_per_value) * 8.0
    balanced = np.ceil(sms * per_sm / bh)
    most = np.minimum(np.ceil((kv_len + 1.0) / tokens_per_loop), np.maximum(np.ceil(sms / bh), 4.0))
    tiles = np.where(big, 1.0, np.clip(balanced, 1.0, np.maximum(most, 1.0)))
    return block, tiles, per_sm


def cta_waves(ctas, sms: float, per_sm):
    """Waves of ``ctas`` CTAs over ``sms`` SMs holding ``per_sm`` resident CTAs each."""
    return np.ceil(ctas / np.maximum(np.round(sms * per_sm), 1.0))


def xqa_time(batch, kv_len, heads, kv_heads, head_dim, tok_bytes, fp8_kv, hbm_floor, sms: float, eff):
    """Seconds of the XQA kernel (HMMA or QGMMA by ``fp8_kv``), without its fixed cost.
    ``tok_bytes``: K+V bytes of one token of one KV head; ``hbm_floor``: KV bytes over HBM."""
    mb = xqa_blocks_per_sequence(batch, kv_len, kv_heads, sms)
    chunk = np.ceil(kv_len / mb)
    group = heads / kv_heads
    cta_s = np.where(fp8_kv, eff.xqa_qgmma_cta_s, eff.xqa_hmma_cta_s)
    cta_bps = np.where(fp8_kv, eff.xqa_qgmma_cta_Bps, eff.xqa_hmma_cta_Bps)
    per_sm = np.where(fp8_kv, eff.xqa_qgmma_ctas_per_sm, eff.xqa_hmma_ctas_per_sm)
    convert = np.where(fp8_kv, 2.0 * head_dim * group / max(eff.xqa_qgmma_elem_rate, 1.0), 0.0)
    per_cta = cta_s + chunk * (tok_bytes / cta_bps + convert)
    t = np.maximum(cta_waves(batch * kv_heads * mb, sms, per_sm) * per_cta, hbm_floor)
    return t + np.where(mb > 1.0, eff.xqa_merge_s, 0.0)


def mmha_time(batch, kv_len, heads, head_dim, tok_bytes, fp8_kv, hbm_floor, sms: float, eff):
    """Seconds of the masked multi-head attention kernel, without its fixed cost."""
    block, tiles, per_sm = mmha_grid(
        batch, kv_len, heads, head_dim, sms, max(round(eff.mmha_blocks_per_sm), 1)
    )
    width = block / MMHA_BLOCK
    chunk = np.ceil(kv_len / tiles)
    elem = 2.0 * head_dim / eff.mmha_elem_rate + np.where(fp8_kv, 2.0 * head_dim / eff.mmha_fp8_cvt_rate, 0.0)
    per_token = np.maximum(tok_bytes / eff.mmha_cta_Bps, elem) / width
    per_cta = eff.mmha_cta_s + chunk * per_token
    # each query head's CTAs stream their KV head's cache: a head shared by many query heads
    # (XQA refuses groups above 32) is read once per query head, through L2 at mmha_reread_Bps
    reread = batch * heads * kv_len * tok_bytes / eff.mmha_reread_Bps if eff.mmha_reread_Bps else 0.0
    t = np.maximum(cta_waves(batch * heads * tiles, sms, per_sm) * per_cta, np.maximum(hbm_floor, reread))
    return t + np.where(tiles > 1.0, eff.xqa_merge_s, 0.0)


def trtllm_decode_time(batch, kv_len, heads, kv_heads, head_dim, per_tok, fp8_kv, hbm_Bps, sms: float, eff):
    """Seconds of TensorRT-LLM's decode attention for ``batch`` sequences of ``kv_len`` cached
    tokens; ``per_tok`` = K+V bytes per token and layer of all ``kv_heads``."""
    b, L, h, hk = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (batch, kv_len, heads, kv_heads)))
    b, hk = np.maximum(b, 1.0), np.maximum(hk, 1.0)  # a decode call runs at least one sequence
    d, fp8 = np.asarray(head_dim, dtype=float), np.asarray(fp8_kv, dtype=bool)
    tok = per_tok / hk
    hbm = b * L * per_tok / (hbm_Bps * eff.xqa_hbm)
    qgmma, hmma = kernel_choice(b, L, h, hk, fp8, sms)
    t_xqa = xqa_time(b, L, h, hk, d, tok, fp8, hbm, sms, eff)
    t_mmha = mmha_time(b, L, h, d, tok, fp8, hbm, sms, eff)
    fixed = np.where(qgmma, eff.xqa_fused_floor_s, eff.xqa_preprocess_s)
    return np.where(qgmma | hmma, t_xqa, t_mmha) + fixed
