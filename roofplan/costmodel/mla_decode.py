"""TensorRT-LLM's MLA decode attention on Hopper (FlashMLA): launch grid and time.

For multi-head latent attention (DeepSeek-V2 §2.1, absorbed form of App. C) the generation phase
attends over the compressed latent cache: every query head scores against the same 576-wide
token (``kv_lora_rank`` 512 + decoupled RoPE 64) and accumulates the 512-wide latent as its value,
so the cache has a single "KV head" and each cached token costs ``2 x heads x (576 + 512)`` FLOPs.
On SM90 TensorRT-LLM runs this with its port of DeepSeek's FlashMLA
(``cpp/tensorrt_llm/common/attentionOp.cpp`` includes ``kernels/flashMLA/flash_mla.h``; upstream
``deepseek-ai/FlashMLA``, paged cache in blocks of 64 tokens, for the 512 + 64 latent only). Its grid, restated:

* **Tiles** (:func:`m_blocks`): the query heads of a sequence are one M dimension of
  ``FLASHMLA_BLOCK_M`` = 64 rows; ``ceil(heads / 64)`` M blocks, each padded to 64 rows, so below
  64 heads per GPU the tensor-core work per KV tile does not shrink.
* **SM parts** (:func:`sm_parts`): ``get_mla_metadata`` splits the SMs into
  ``num_sm_parts = SMs // ceil(heads / 64)`` parts; the grid is (M blocks, 1, parts): one wave.
  The scheduler deals every sequence's KV tiles of ``FLASHMLA_BLOCK_N`` = 64 tokens out to the
  parts in equal shares (a sequence may be split across parts; a combine kernel merges splits).

**Time.** Each CTA walks its share of KV tiles; a tile costs the larger of its tensor-core work
(the padded 64-row tile at ``mla_mma`` / ``mla_mma_fp8`` of one SM's share of peak) and nothing
else: the KV stream is bounded for the whole kernel by the cached bytes over ``mla_hbm`` of HBM
bandwidth. Before it, ``get_mla_metadata_kernel`` (one CTA) assigns the tiles to the parts in a
loop that walks the batch serially: ``mla_meta_s`` per sequence. The absorbed query and the output of every
(sequence, head), ``(576 + 512) x 2`` bytes, move through the RoPE/append preprocessing and the
combine kernels at ``mla_qo_Bps``; merging split sequences costs ``mla_combine_s``
(:func:`split_sequences`); ``mla_floor_s`` is the fixed cost of the call (launches, the
RoPE/append preprocessing). The parameters are fitted per device on TensorRT-LLM's measured
MLA generation tables (``tools/fit_ops.py``); a device without them has ``mla_hbm = 0`` and uses
the generic decode model of :mod:`roofplan.costmodel.ops`. (Cross-check, not fitted: FlashMLA's
README states up to 3000 GB/s memory-bound and 580-660 TFLOPS compute-bound on H800 SXM5; the H100
fit gives 0.90 x 3.35 TB/s = 3.0 TB/s and 0.64 x 989 = 634 TFLOPS.)
"""

from __future__ import annotations

import numpy as np

from roofplan.hardware.spec import Efficiency

#: Query rows (heads of one sequence) per FlashMLA tile (its ``block_size_m``, the 64 of ``get_mla_metadata``).
FLASHMLA_BLOCK_M = 64.0
#: KV tokens per FlashMLA tile (its ``block_size_n``; also the paged-cache block size FlashMLA requires).
FLASHMLA_BLOCK_N = 64.0
#: Latent width scored per token (``kv_lora_rank`` 512 + RoPE 64) and the value width (512): the
#: only shape TensorRT-LLM sends to FlashMLA.
FLASHMLA_QK_DIM = 576.0
FLASHMLA_V_DIM = 512.0


def has_mla_model(eff: Efficiency) -> bool:
    """Whether this device carries fitted FlashMLA decode parameters."""
    return eff.mla_hbm > 0


def covers_shape(head_dim) -> bool:
    """Whether FlashMLA runs this latent (576 = 512 + 64, the only one its kernels are built for)."""
    return bool(np.all(np.asarray(head_dim, dtype=float) == FLASHMLA_QK_DIM))


def m_blocks(heads):
    """64-row query tiles per sequence (heads padded up to a multiple of 64)."""
    return np.ceil(np.maximum(np.asarray(heads, dtype=float), 1.0) / FLASHMLA_BLOCK_M)


def sm_parts(heads, sms: float):
    """``num_sm_parts`` of FlashMLA's ``get_mla_metadata``: SMs // M blocks (at least 1)."""
    return np.maximum(np.floor(sms / m_blocks(heads)), 1.0)


def tile_seconds(peak_flops: float, sms: float, mma, fp8_kv):
    """Seconds of one padded 64x64 tile (QK^T over 576, PV over 512) on one SM."""
    flops = 2.0 * FLASHMLA_BLOCK_M * FLASHMLA_BLOCK_N * (FLASHMLA_QK_DIM + FLASHMLA_V_DIM)
    return flops / (peak_flops / sms * np.where(fp8_kv, mma[1], mma[0]))


def mla_decode_time(batch, kv_len, heads, per_tok, fp8_kv, hbm_Bps, peak_flops, sms: float, eff):
    """Seconds of TensorRT-LLM's FlashMLA decode for ``batch`` sequences of ``kv_len`` cached
    latent tokens and ``heads`` query heads on this GPU; ``per_tok`` = cached bytes per token
    and layer (576 elements of the cache dtype); ``peak_flops`` = 16-bit dense tensor peak."""
    b, L, h = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (batch, kv_len, heads)))
    b, h = np.maximum(b, 1.0), np.maximum(h, 1.0)
    fp8 = np.asarray(fp8_kv, dtype=bool)
    parts = sm_parts(h, sms)
    tiles = b * np.ceil(L / FLASHMLA_BLOCK_N)
    t_tile = tile_seconds(peak_flops, sms, (eff.mla_mma, eff.mla_mma_fp8), fp8)
    share = np.ceil(tiles / parts)
    per_cta = share * t_tile
    hbm = b * L * per_tok / (hbm_Bps * eff.mla_hbm)
    qo = b * h * (FLASHMLA_QK_DIM + FLASHMLA_V_DIM) * 2.0 / eff.mla_qo_Bps
    combine = np.where(split_sequences(L, share), eff.mla_combine_s, 0.0)
    meta = b * eff.mla_meta_s
    return np.maximum(per_cta, hbm) + qo + combine + meta + eff.mla_floor_s


def split_sequences(kv_len, share):
    """Whether the scheduler must split sequences across SM parts: a sequence of more KV tiles
    than one part's ``share`` spans several parts, and its partial outputs are merged by the
    combine kernel (which returns at once for unsplit sequences)."""
    return np.ceil(np.asarray(kv_len, dtype=float) / FLASHMLA_BLOCK_N) > share
