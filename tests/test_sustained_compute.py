"""``sustained_compute`` (power-limited tensor-core clocks in long runs) slows compute-bound work in
training and serving alike and leaves memory-bound work alone."""

import pytest

from roofplan.costmodel.roofline import sustained
from roofplan.costmodel.serve import ServeConfigs, serve_step
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model


def test_sustained_scales_only_tensor_core_fractions():
    e = load_hardware("a100-sxm-80gb").with_efficiency(sustained_compute=0.5).efficiency
    s = sustained(e)
    assert s.gemm_max == pytest.approx(e.gemm_max / 2) and s.attn_max == pytest.approx(e.attn_max / 2)
    assert s.hbm == e.hbm and s.intra_bw == e.intra_bw and s.kernel_launch_s == e.kernel_launch_s


def test_serving_prefill_slows_and_batch1_decode_does_not():
    model = load_model("llama-3.1-8b")
    full = load_hardware("h100-sxm").with_efficiency(sustained_compute=1.0)
    half = full.with_efficiency(sustained_compute=0.5)
    cfg = ServeConfigs.single(tp=1, batch=1, isl=8192, osl=16)
    a, b = serve_step(model, full, cfg), serve_step(model, half, cfg)
    # prefill of 8k tokens on an 8B model is compute bound: nearly twice as slow at half the clock
    assert float(b.ttft_s[0]) > 1.6 * float(a.ttft_s[0])
    # batch-1 decode reads the weights: the clock barely matters
    assert float(b.tpot_s[0]) == pytest.approx(float(a.tpot_s[0]), rel=0.05)
