"""``sustained_compute`` (power-limited tensor-core clocks in long training runs) slows compute-bound
training work and leaves memory-bound work alone; serving prices kernels as measured (the operator
library's parameters are kernel timings), so it does not apply there."""

import pytest

from roofplan.costmodel.roofline import sustained
from roofplan.costmodel.serve import ServeConfigs, serve_step
from roofplan.engines.catalog import load_engine


def test_sustained_scales_only_tensor_core_fractions(a100):
    e = a100.with_efficiency(sustained_compute=0.5).efficiency
    s = sustained(e)
    assert s.gemm_max == pytest.approx(e.gemm_max / 2) and s.attn_max == pytest.approx(e.attn_max / 2)
    assert s.hbm == e.hbm and s.intra_bw == e.intra_bw and s.kernel_launch_s == e.kernel_launch_s


def test_serving_uses_the_measured_kernel_rates(h100, llama8b):
    model = llama8b
    full = h100.with_efficiency(sustained_compute=1.0)
    half = full.with_efficiency(sustained_compute=0.5)
    cfg = ServeConfigs.single(tp=1, batch=1, isl=8192, osl=16)
    eng = load_engine("generic")
    a, b = serve_step(model, full, cfg, eng), serve_step(model, half, cfg, eng)
    assert float(b.ttft_s[0]) == float(a.ttft_s[0]) and float(b.tpot_s[0]) == float(a.tpot_s[0])


def test_training_compute_slows_with_the_sustained_clock(h100):
    from roofplan import estimate_training  # ids resolved at the door

    hw = h100
    kw = dict(tp=1, pp=1, dp=8, global_batch=64, micro_batch=1, seq_len=8192)
    full = estimate_training("llama-3.1-8b", hw.with_efficiency(sustained_compute=1.0), **kw)
    half = estimate_training("llama-3.1-8b", hw.with_efficiency(sustained_compute=0.5), **kw)
    # an 8B model at 8k tokens per microbatch is compute bound: nearly twice as slow at half the clock
    assert 1.6 < half.step_time_s / full.step_time_s <= 2.0
