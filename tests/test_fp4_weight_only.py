"""fp4 weights on a device without FP4 tensor cores are weight-only MXFP4 (W4A16): 4.25 bits a weight
streamed (E2M1 nibbles plus one E8M0 scale per 32, OCP MX spec v1.0), compute on the 16-bit units.
vLLM's MXFP4 MoE takes its Triton backend on ROCm and Triton / Marlin on Hopper, all with bf16
activations (vllm/model_executor/layers/quantization/mxfp4.py); FP4 devices keep W4A4."""

import numpy as np
import pytest

from roofplan.costmodel.ops import gemm_params
from roofplan.costmodel.serve import _gemm_dtype, serve_step
from roofplan.costmodel.serve_configs import ServeConfigs, compute_dtype
from roofplan.engines.catalog import load_engine
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model

GENERIC = load_engine("generic")


@pytest.mark.parametrize("hw_id", ["mi300x", "h100-sxm", "a100-sxm-80gb"])
def test_fp4_without_fp4_units_is_weight_only(hw_id):
    hw = load_hardware(hw_id)
    assert "fp4" not in hw.peak_flops
    cdt = compute_dtype(hw, "fp4")
    assert cdt in ("bf16", "fp16")
    assert _gemm_dtype("fp4", cdt) == "mxfp4_wo"


def test_fp4_on_fp4_device_stays_w4a4():
    hw = load_hardware("b200-sxm")
    assert compute_dtype(hw, "fp4") == "fp4" and _gemm_dtype("fp4", "fp4") == "fp4"
    # int4 keeps its rules: W4A8 where FP8 units exist, else weight-only
    assert _gemm_dtype("int4", compute_dtype(load_hardware("h100-sxm"), "int4")) == "fp8"
    assert _gemm_dtype("int4", compute_dtype(load_hardware("a100-sxm-80gb"), "int4")) == "int4"


def test_fp4_decode_streams_four_and_a_quarter_bits_a_weight():
    # batch-1 decode is the weight stream: the fp4 decoder layers at 0.53125 bytes a weight against
    # the bf16 run's 2, both at the 16-bit GEMM class's HBM fraction (the weight-only class), the LM
    # head 16-bit in both (the embedding is a lookup); per-kernel floors do not shrink with the bytes,
    # so the ratio lies between the byte ratio and 1 (within 0.15 of it). H100: its 16-bit GEMM
    # class keeps a batch-1 weight-only GEMM memory-bound (on MI300X the class's fitted M-tile
    # efficiency makes a 4-bit batch-1 GEMM compute-bound, which this ratio cannot test)
    hw, m = load_hardware("h100-sxm"), load_model("llama-3.1-8b")
    args = dict(tp=1, pp=1, ep=1, dp=1, batch=1, isl=1, osl=1, kv_dtype="bf16")
    bf16 = serve_step(m, hw, ServeConfigs.single(dtype="bf16", **args), GENERIC)
    fp4 = serve_step(m, hw, ServeConfigs.single(dtype="fp4", **args), GENERIC)
    ends = m.embedding_params() + m.head_params()
    body = m.params_total - ends
    head = m.vocab * m.hidden
    ratio = (body * 0.53125 + 2 * head) / (2 * (body + head))
    got = float(np.ravel(fp4.decode_memory_s)[0] / np.ravel(bf16.decode_memory_s)[0])
    assert ratio - 0.01 <= got <= ratio + 0.15
    # priced as W4A8 (1-byte weights at the fp8 class, as before) the ratio is far above
    hbm16, hbm8 = gemm_params(hw.efficiency, "bf16")[1], gemm_params(hw.efficiency, "fp8")[1]
    w4a8 = (body / hbm8 + 2 * head / hbm16) / (2 * (body + head) / hbm16)
    assert got < w4a8 - 0.1
