"""TensorRT-LLM's FlashMLA decode model (costmodel.mla_decode): grid rules, dispatch, and accuracy
on the held-back half of TensorRT-LLM 1.3.0rc20's measured MLA generation tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from roofplan.calibration.formats import read_measurements
from roofplan.calibration.op_rows import held_back, predict_rows
from roofplan.costmodel import mla_decode, ops, serve
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model

DATA = Path(__file__).parent / "data"
_ROWS = [
    m for m in read_measurements(DATA / "measured_kernels_hopper.csv") if m.row.get("impl") == "trtllm_mla"
]


def _rows(hw_id, held):
    return [m for m in _ROWS if m.hardware == hw_id and held_back(m) == held]


def test_grid_pads_heads_to_64_row_tiles_and_splits_the_sms_into_parts():
    """FlashMLA: ceil(heads / 64) M blocks; get_mla_metadata's num_sm_parts = SMs // M blocks."""
    assert mla_decode.m_blocks(np.array([1, 16, 64, 65, 128])).tolist() == [1, 1, 1, 2, 2]
    assert mla_decode.sm_parts(np.array([8, 64, 128]), 132.0).tolist() == [132, 132, 66]


def test_compute_bound_time_is_the_padded_tiles_of_one_part():
    """Hand calculation: 128 heads, 1024 sequences of 16384 tokens, KV stream made free: the time
    is each of 66 parts' share of 64-token tiles times one 64x64 tile (QK 576 + PV 512) at the
    tile rate, plus the serial scheduler's per-sequence cost, the per-(sequence, head) Q/O traffic
    and the floor (no sequence is split: 256 tiles each, shares of 3972)."""
    hw = load_hardware("h100-sxm")
    eff = hw.with_efficiency(mla_hbm=1e9).efficiency
    b, L, h, sms, peak = 1024.0, 16384.0, 128.0, 132.0, hw.peak("bf16")
    tile = 2 * 64 * 64 * (576 + 512) / (peak / sms * eff.mla_mma)
    want = (
        np.ceil(b * L / 64 / 66) * tile
        + b * eff.mla_meta_s
        + b * h * (576 + 512) * 2 / eff.mla_qo_Bps
        + eff.mla_floor_s
    )
    got = float(mla_decode.mla_decode_time(b, L, h, 1152.0, False, hw.hbm_Bps, peak, sms, eff))
    assert got == pytest.approx(want, rel=1e-12)


def test_heads_below_64_cost_the_same_tensor_work():
    """Padded 64-row tiles: with the KV stream made free, 1 and 64 heads per GPU differ only by
    their Q/O traffic (the tiles and the grid are the same); 128 heads double the tiles per SM."""
    hw = load_hardware("h200-sxm")
    eff = hw.with_efficiency(mla_hbm=1e9, mla_qo_Bps=1e30).efficiency
    args = (256.0, 8192.0)
    t = [
        float(mla_decode.mla_decode_time(*args, h, 1152.0, False, hw.hbm_Bps, hw.peak("bf16"), 132.0, eff))
        for h in (1, 64, 128)
    ]
    assert t[0] == pytest.approx(t[1], rel=1e-12)
    # no sequence is split at either grid (128 tiles each, shares of 249 / 497 tiles)
    kernel = [x - eff.mla_floor_s - 256.0 * eff.mla_meta_s for x in t]
    assert kernel[2] == pytest.approx(2.0 * kernel[1], rel=0.02)


def test_mla_rows_take_the_flashmla_model_only_where_characterised():
    """Rows of impl trtllm_mla use FlashMLA on Hopper; a catalog with mla_hbm 0 falls back to the
    generic decode model, and a latent FlashMLA does not take (head_dim != 576) does too."""
    hw = load_hardware("h100-sxm")
    generic = hw.with_efficiency(mla_hbm=0.0)
    args = (64, 4096, 128, 1, 576)
    kw = {"kv_bytes_per_token": 1152.0, "dispatch": "trtllm_mla"}
    fm = float(ops.decode_attention_time(*args, hw, **kw))
    assert fm != float(ops.decode_attention_time(*args, generic, **kw))
    other = (64, 4096, 128, 1, 320)
    assert float(ops.decode_attention_time(*other, hw, **kw)) == float(
        ops.decode_attention_time(*other, generic, **kw)
    )


def test_tensorrt_llm_serving_of_an_mla_model_dispatches_to_flashmla():
    model = load_model("deepseek-v3")
    assert serve.decode_kernels("trtllm", model) == "trtllm_mla"
    assert serve.decode_kernels("sglang", model) == "shared"
    assert serve.decode_kernels("vllm", model) == "shared"
    assert serve.decode_head_dim(model, "trtllm_mla", load_hardware("h200-sxm").efficiency) == 576.0
    assert serve.decode_kernels("trtllm", load_model("llama-3.1-8b")) == "trtllm"


@pytest.mark.parametrize("hw_id", ["h100-sxm", "h200-sxm"])
def test_held_back_mla_decode_rows_within_target(hw_id):
    """The family's target (median <= 10 %, p90 <= 25 %) on the odd log2 size bins, which the fit
    of tools/fit_ops.py never saw; and better than the generic decode model on them."""
    rows = _rows(hw_id, held=True)
    assert len(rows) >= 300
    hw = load_hardware(hw_id)
    target = np.array([m.target for m in rows])
    e = np.abs(predict_rows(rows, hw) / target - 1.0)
    g = np.abs(predict_rows(rows, hw.with_efficiency(mla_hbm=0.0)) / target - 1.0)
    assert np.median(e) <= 0.10 and np.quantile(e, 0.9) <= 0.25, (np.median(e), np.quantile(e, 0.9))
    assert np.median(e) < np.median(g) and np.quantile(e, 0.9) < np.quantile(g, 0.9)


@pytest.mark.parametrize("hw_id", ["h100-sxm", "h200-sxm"])
def test_many_heads_per_gpu_are_no_longer_underpredicted(hw_id):
    """128 heads per GPU (TP 1, the compute-bound case): held-back signed median within 5 %."""
    rows = [m for m in _rows(hw_id, held=True) if m.row["heads"] == 128]
    assert len(rows) >= 30
    e = predict_rows(rows, load_hardware(hw_id)) / np.array([m.target for m in rows]) - 1.0
    assert abs(np.median(e)) <= 0.05
