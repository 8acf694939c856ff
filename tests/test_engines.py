"""Engine profiles: every shipped profile loads with sourced values; overlays and bad input."""

import pytest
import yaml

from roofplan.engines.catalog import ENGINE_DIR, load_engine
from roofplan.engines.profile import ENGINES, EngineProfile
from roofplan.errors import InputError


@pytest.mark.parametrize("name", ENGINES)
def test_profiles_load_and_every_number_has_a_source(name):
    p = load_engine(name)
    assert p.name == name and 0 <= p.memory_reserve_fraction < 1
    doc = yaml.safe_load((ENGINE_DIR / f"{name}.yaml").read_text())
    assert set(doc) <= set(EngineProfile.field_names())
    for key, item in doc.items():
        if key != "description" and item.get("value") is not None and key != "reserve_of_free":
            assert item.get("source"), f"{name}.{key} has no source"


def test_engines_differ_where_the_products_differ():
    v, s, t = load_engine("vllm"), load_engine("sglang"), load_engine("trtllm")
    assert t.reserve_of_free and not v.reserve_of_free  # free_gpu_memory_fraction vs utilization
    assert t.kernels_per_layer < v.kernels_per_layer  # fused attention plugin
    assert s.step_overhead_s < v.step_overhead_s  # overlap scheduler
    assert v.memory_reserve_fraction == pytest.approx(0.1)  # --gpu-memory-utilization 0.9


def test_calibration_overlay_replaces_engine_fields():
    over = {"schema": "roofplan.calibration/v1", "engines": {"vllm": {"step_overhead_s": 0.004}}}
    assert load_engine("vllm", over).step_overhead_s == 0.004
    assert load_engine("sglang", over) == load_engine("sglang")


def test_unknown_engine_and_bad_fields_are_input_errors():
    with pytest.raises(InputError) as e:
        load_engine("tgi")
    assert e.value.field == "engine"
    with pytest.raises(InputError):
        load_engine("vllm", {"engines": {"vllm": {"warp_speed": 9}}})
    with pytest.raises(InputError):
        load_engine("vllm", {"engines": {"vllm": {"memory_reserve_fraction": 1.5}}})
    with pytest.raises(InputError):
        load_engine("vllm").replace(cuda_graphs="yes")


def test_batch_cap_and_runtime_reserve_fields():
    p = load_engine("vllm").replace(max_num_seqs=256, runtime_reserve_bytes=2**30)
    assert p.max_num_seqs == 256 and isinstance(p.max_num_seqs, int)
    assert p.runtime_reserve_bytes == 2**30
    assert load_engine("trtllm").runtime_reserve_bytes == 2 * 2**30  # fitted once, see trtllm.yaml
    for bad in (
        {"memory_reserve_fraction": 1.5},
        {"max_num_seqs": -1},
        {"runtime_reserve_bytes": "2GiB"},
    ):
        with pytest.raises(InputError):
            load_engine("vllm").replace(**bad)
