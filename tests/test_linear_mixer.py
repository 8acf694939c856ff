"""The kernels of a Gated DeltaNet / Mamba-2 layer (costmodel.linear_mixer): hand calculations of
the state streams and the scan's waves, and their place in a serving step."""

import dataclasses

import numpy as np
import pytest

from roofplan.costmodel import linear_mixer
from roofplan.costmodel.serve import ServeConfigs, step_time
from roofplan.engines.catalog import load_engine
from roofplan.errors import InputError
from roofplan.hardware.catalog import load_hardware
from roofplan.models import load_model
from roofplan.models.spec import LinearMixerSpec

H200 = load_hardware("h200-sxm")


def test_recurrent_update_at_large_batch_is_the_state_stream():
    # 1024 sequences x 32 heads x a 128 x 128 fp32 state, read and written: 4.29 GB
    eff = H200.efficiency
    nbytes = 2 * 1024 * 32 * 128 * 128 * 4
    stream = nbytes / (H200.hbm_Bps * eff.gdn_recurrent_hbm)
    t = float(linear_mixer.recurrent_update_time(1024, 32, 128, 128, H200))
    assert stream < t < stream * 1.001
    # vLLM 0.24.0 measures 1.052 ms for this kernel on H200 (aiconfigurator-core 0.12.0 gdn_perf)
    assert t == pytest.approx(1.052e-3, rel=0.05)
    # bf16 state halves the stream
    half = float(linear_mixer.recurrent_update_time(1024, 32, 128, 128, H200, state_bytes=2.0))
    assert half == pytest.approx(t / 2, rel=0.01)


def test_chunk_scan_pays_one_wave_per_sms_sequence_heads():
    eff, sms = H200.efficiency, H200.compute_units
    per_sm = H200.peak("bf16") / sms * eff.gdn_chunk_mma
    flops_chunk = 64 * 2 * (4 * 64 * 128 + 64 * 128 + 3 * 128 * 128)  # 11.5 MFLOP per head and chunk
    wave = eff.gdn_chunk_cta_s + 8 * flops_chunk / per_sm  # 512 tokens: 8 chunks
    one = float(linear_mixer.chunk_scan_time(sms, 512, 1, 128, 128, H200))
    two = float(linear_mixer.chunk_scan_time(sms + 1, 512, 1, 128, 128, H200))
    assert one == pytest.approx(eff.gdn_chunk_floor_s + wave, rel=1e-9)
    assert two - one == pytest.approx(wave, rel=1e-9)
    # the 65th token opens another chunk of every sequence
    assert float(linear_mixer.chunk_scan_time(1, 65, 1, 128, 128, H200)) > float(
        linear_mixer.chunk_scan_time(1, 64, 1, 128, 128, H200)
    )


def test_uncharacterised_device_takes_its_generic_priors():
    hw = load_hardware("mi300x")
    eff = hw.efficiency
    assert eff.gdn_recurrent_hbm == 0
    nbytes = 2 * 4 * 8 * 128 * 128 * 4
    p = eff.gdn_recurrent_blend
    expect = (eff.elementwise_floor_s**p + (nbytes / (hw.hbm_Bps * eff.hbm)) ** p) ** (1 / p)
    assert float(linear_mixer.recurrent_update_time(4, 8, 128, 128, hw)) == pytest.approx(expect)


def _without_kernels(model):
    return dataclasses.replace(model, linear=dataclasses.replace(model.linear, heads=0))


@pytest.mark.parametrize("batch", [1, 64, 256])
def test_decode_step_adds_each_linear_layers_kernels(batch):
    model = load_model("qwen3.5-35b-a3b")
    lin = model.linear
    cfg = ServeConfigs.single(tp=1, batch=batch, isl=1024, osl=256, dtype="bf16")
    engine = load_engine("vllm")
    args = (0.0, 0.0, float(batch), 1100.0)
    gain = step_time(model, H200, engine, cfg, *args) - step_time(
        _without_kernels(model), H200, engine, cfg, *args
    )
    # 30 Gated DeltaNet layers, 32 value heads of 128 x 128 fp32 state, conv over 8192 channels
    assert (lin.layers, lin.heads, lin.key_dim, lin.value_dim, lin.conv_dim) == (30, 32, 128, 128, 8192)
    per_layer = linear_mixer.decode_time(batch, 32, 128, 128, 8192, 4, H200, state_bytes=4.0)
    assert float(gain[0]) == pytest.approx(30 * float(per_layer), rel=1e-6)


def test_tensor_parallel_splits_the_heads():
    model = load_model("qwen3.5-35b-a3b")
    engine = load_engine("vllm")
    args = (0.0, 0.0, 256.0, 1100.0)
    gains = []
    for tp in (1, 2):
        cfg = ServeConfigs.single(tp=tp, batch=256, isl=1024, osl=256, dtype="bf16")
        full = step_time(model, H200, engine, cfg, *args)
        bare = step_time(_without_kernels(model), H200, engine, cfg, *args)
        gains.append(float((full - bare)[0]))
    expect = 30 * float(linear_mixer.decode_time(256, 16, 128, 128, 4096, 4, H200))
    assert gains[1] == pytest.approx(expect, rel=1e-6) and gains[1] < gains[0]


def test_mixer_shape_is_checked():
    with pytest.raises(InputError, match="linear.key_dim"):
        LinearMixerSpec(layers=2, params=10, state_elems=100, heads=2)
    with pytest.raises(InputError, match="linear.state_elems"):
        LinearMixerSpec(layers=2, params=10, state_elems=100, heads=2, key_dim=8, conv_dim=50, conv_kernel=4)
    assert np.isclose(LinearMixerSpec(30, 1, 548864, heads=32, key_dim=128, conv_dim=8192).value_dim, 128)


def test_a_bad_mixer_shape_in_a_model_file_names_the_file():
    from roofplan.models.loader import model_from_dict

    doc = {
        "layers": 4,
        "hidden": 256,
        "heads": 4,
        "kv_heads": 2,
        "head_dim": 64,
        "ffn": 512,
        "vocab": 1000,
        "linear": {"layers": 2, "params": 1000, "state_elems": 100, "heads": 2},
    }
    with pytest.raises(InputError, match=r"^m\.yaml: linear\.key_dim: 0 is not valid"):
        model_from_dict(doc, where="m.yaml", default_name="m")
