"""fp4 weights on a device without FP4 tensor cores are weight-only MXFP4 (W4A16): 4.25 bits a weight
streamed (E2M1 nibbles plus one E8M0 scale per 32, OCP MX spec v1.0), compute on the 16-bit units.
vLLM's MXFP4 MoE takes its Triton backend on ROCm and Triton / Marlin on Hopper, all with bf16
activations (vllm/model_executor/layers/quantization/mxfp4.py); FP4 devices keep W4A4."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from roofplan.costmodel.ops import gemm_params
from roofplan.costmodel.serve import _gemm_dtype, serve_step, step_inputs
from roofplan.costmodel.serve_configs import ServeConfigs, compute_dtype
from roofplan.costmodel.serve_memory import weight_bytes_per_device
from roofplan.engines.catalog import load_engine
from roofplan.hardware.catalog import load_hardware
from roofplan.hardware.spec import DTYPE_BYTES
from roofplan.models.hf_config import spec_from_hf_dict
from roofplan.models.loader import load_model

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

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


def test_gpt_oss_keeps_its_non_expert_weights_bf16_under_fp4_experts():
    # config.json quantization_config: MXFP4 experts; self_attn, mlp.router, embed_tokens and lm_head
    # not converted (bf16). The weight bytes differ from an all-fp4 checkpoint by exactly the decoder's
    # non-expert params x (2 - fp4 bytes); the experts are 36 layers x 128 x 3 x 2880 x 2880 by hand
    oss = load_model("gpt-oss-120b")
    assert oss.dense_dtype == "bf16"
    cfg = ServeConfigs.single(dtype="fp4", batch=1, isl=1, osl=1)
    experts = 36 * 128 * 3 * 2880 * 2880
    non_expert = oss.params_total - oss.embedding_params() - oss.head_params() - experts
    kept = float(weight_bytes_per_device(oss, cfg)[0])
    all_fp4 = float(weight_bytes_per_device(dataclasses.replace(oss, dense_dtype=None), cfg)[0])
    assert kept - all_fp4 == pytest.approx(non_expert * (2.0 - DTYPE_BYTES["fp4"]), rel=1e-9)
    # a bf16 run is unchanged by the note (nothing is narrower than the kept dtype)
    bf16 = ServeConfigs.single(dtype="bf16", batch=1, isl=1, osl=1)
    assert float(weight_bytes_per_device(oss, bf16)[0]) == float(
        weight_bytes_per_device(dataclasses.replace(oss, dense_dtype=None), bf16)[0]
    )
    # the step prices attention / router GEMMs in the 16-bit class, the experts weight-only MXFP4
    s = step_inputs(oss, load_hardware("mi300x"), GENERIC, cfg, 0.0, 0.0, 1.0, 1024.0)
    assert (s.dense_gemm_dtype, s.dense_weight_bytes) == ("bf16", 2.0)
    assert (s.gemm_dtype, s.weight_bytes) == ("mxfp4_wo", DTYPE_BYTES["fp4"])


def test_hf_reader_takes_the_dense_dtype_from_quantization_config():
    doc = json.loads((FIXTURES / "gpt-oss-20b" / "config.json").read_text())
    assert spec_from_hf_dict(doc).dense_dtype == "bf16"
    doc.pop("quantization_config")
    assert spec_from_hf_dict(doc).dense_dtype is None
