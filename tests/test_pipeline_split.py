"""Uneven pipeline stages: the layer split, the search space that admits it, the Megatron flags."""

import numpy as np

from roofplan.costmodel.train_memory import pipeline_split
from roofplan.launch import megatron
from roofplan.models.loader import load_model
from roofplan.solver.space import pipeline_split_ok
from tests.test_launch_train import EST, _config, flag, script_argv


def test_llama3_405b_on_16_stages_matches_the_published_layout():
    # Dubey et al. 2024 §3.3.2: 126 layers on PP16, first and last stage one layer short of 8.
    first, middle, last = (int(x) for x in pipeline_split(126, 16))
    assert (first, middle, last) == (7, 8, 7)
    assert first + 14 * middle + last == 126


def test_split_always_sums_to_the_layers_and_never_exceeds_the_middle_stage():
    layers = np.arange(2, 200)
    for pp in (2, 3, 4, 8, 16, 32):
        first, middle, last = pipeline_split(layers, pp)
        ok = first > 0
        assert np.all(first[ok] + (pp - 2) * middle[ok] + last[ok] == layers[ok])
        assert np.all((first[ok] <= middle[ok]) & (last[ok] <= middle[ok]) & (last[ok] >= 1))


def test_uneven_split_only_with_plain_1f1b():
    assert bool(pipeline_split_ok(126, 16, 1))
    assert not bool(pipeline_split_ok(126, 16, 2))
    assert bool(pipeline_split_ok(128, 16, 2))


def test_megatron_emits_first_and_last_stage_layers_for_an_uneven_split():
    m = load_model("llama-3.1-405b")
    c = _config(
        model="llama-3.1-405b",
        gpus=16384,
        tp=8,
        pp=16,
        dp=128,
        cp=1,
        vpp=1,
        global_batch=2048,
        recompute="none",
        recompute_layers=0,
    )
    argv = script_argv(megatron.emit(m, c, EST)[megatron.SCRIPT])
    assert int(flag(argv, "--pipeline-model-parallel-size")) == 16
    assert int(flag(argv, "--decoder-first-pipeline-num-layers")) == 7
    assert int(flag(argv, "--decoder-last-pipeline-num-layers")) == 7


def test_even_split_emits_no_uneven_flags():
    m = load_model("llama-3.1-70b")
    argv = script_argv(megatron.emit(m, _config(vpp=1), EST)[megatron.SCRIPT])
    assert "--decoder-first-pipeline-num-layers" not in argv
