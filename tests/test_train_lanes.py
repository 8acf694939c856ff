"""Evaluating the training terms once per distinct value and gathering them back changes no number.

The fast path of :func:`~roofplan.costmodel.train.train_step` prices the per-layer op table once per
distinct layer shape (:func:`~roofplan.costmodel.train_ops.layer_ops_by_shape`); these tests compare
it, lane by lane and to the last bit, with the plain evaluation over every lane, on configurations
that vary every knob (so a term that starts reading a knob outside the shape key fails here).
"""

import dataclasses

import numpy as np
import pytest

import roofplan.costmodel.train_time as train_time
from roofplan.costmodel.lanes import distinct_rows
from roofplan.costmodel.train import TrainConfigs, check_train_config, train_step
from roofplan.costmodel.train_comm import PLACEMENT_FIELDS
from roofplan.costmodel.train_ops import (
    LAYER_SHAPE_FIELDS,
    Distinct,
    StepLanes,
    layer_ops,
    layer_ops_by_shape,
    step_lanes,
)
from roofplan.hardware.catalog import load_hardware
from roofplan.models.loader import load_model


def test_distinct_rows_groups_equal_rows_and_only_those():
    rng = np.random.default_rng(7)
    for _trial in range(40):
        n = int(rng.integers(1, 3000))
        cols = [rng.integers(0, 10 ** int(rng.integers(1, 10)), n) for _ in range(int(rng.integers(1, 6)))]
        cols += [rng.random(n) < 0.3, np.full(n, 5), rng.choice([2048, 4096, 131072], n)]
        cols = [cols[-3], *cols]  # a boolean first, then wide integer ranges after it
        rep, row = distinct_rows(cols)
        for c in cols:
            assert np.array_equal(c[rep][row], c)  # every lane's row holds its own values
        keys = {tuple(int(c[i]) for c in cols) for i in rep}
        assert len(keys) == len(rep)  # and no two groups hold the same values
    rep, row = distinct_rows([np.zeros(0, dtype=int)])
    assert len(rep) == len(row) == 0


def _configs(model, n=1500, seed=0, **fixed):
    """Valid configurations drawn from few values per knob, so that layer shapes repeat."""
    rng = np.random.default_rng(seed)
    size = 8 * n
    pick = lambda vals: rng.choice(np.asarray(vals), size=size)
    tp, dp, mb, pp = pick([1, 2, 4, 8]), pick([1, 2, 4, 8, 16]), pick([1, 2, 4]), pick([1, 2, 4])
    kw = {
        "tp": tp,
        "pp": pp,
        "dp": dp,
        "cp": pick([1, 1, 2, 4]),
        "ep": pick([1, 2, 4, 8]) if model.moe else 1,
        "etp": pick([0, 0, 1]) if model.moe else 0,
        "vpp": pick([1, 1, 2]),
        "micro_batch": mb,
        "global_batch": mb * dp * pp * pick([2, 4, 8]),
        "seq_len": pick([2048, 4096, 8192]),
        "recompute": pick([0, 1, 2]),
        "recompute_layers": pick([0, 0, 1]),
        "sequence_parallel": pick([True, False]) & (tp > 1),
        "zero": pick([0, 1, 2, 3]),
        "offload": pick([0, 0, 1, 2]),
        "act_offload_layers": pick([0, 0, 0, 1]),
    }
    kw.update(fixed)
    cfg = TrainConfigs(**kw)
    ok = np.flatnonzero(check_train_config(model, cfg) == 0)[:n]
    assert len(ok) > 200
    return cfg.take(ok)


CASES = [
    ("llama-3.1-8b", "h100-sxm", {}),
    ("llama-3.1-8b", "h100-sxm", {"dtype": "fp8", "tp_comm_overlap": True}),
    ("llama-3.1-8b", "h100-sxm", {"dtype": "fp8", "fp8_recipe": "delayed", "gpus_per_node": 4}),
    ("gpt3-175b", "a100-sxm-80gb", {"flash_attention": False, "dtype": "fp16"}),
    ("mixtral-8x7b", "h100-sxm", {"moe_dispatcher": "deepep"}),
    ("deepseek-v3", "h200-sxm", {"dtype": "fp8", "split_accounts_ends": True}),
    ("llama-3.1-70b", "sn40l", {}),
    ("qwen3-8b", "mi300x", {"tp_comm_overlap": True}),
]


@pytest.mark.parametrize("model_id, hw_id, scalars", CASES)
def test_shape_grouped_step_equals_plain_step_bit_for_bit(model_id, hw_id, scalars, monkeypatch):
    model, hw = load_model(model_id), load_hardware(hw_id)
    cfg = _configs(model, n=8000 if model.moe else 1500, **scalars)
    for knobs in (LAYER_SHAPE_FIELDS, LAYER_SHAPE_FIELDS + ("recompute",), PLACEMENT_FIELDS):  # grouped paths
        assert 2 * len(distinct_rows([getattr(cfg, f) for f in knobs])[0]) < len(cfg)
    L = step_lanes(model, hw, cfg)
    grouped, plain = layer_ops_by_shape(L), layer_ops(L)
    for f in dataclasses.fields(plain):
        if f.name not in ("gemm_shapes", "mem_bytes", "shape_rows"):
            a, b = np.broadcast_arrays(getattr(grouped, f.name), getattr(plain, f.name))
            assert np.array_equal(a, b), f.name
    for row_g, row_p in zip(grouped.table(), plain.table(), strict=True):  # names, FLOPs, bytes per op
        assert row_g[0] == row_p[0]
        for a, b in zip(row_g[1:], row_p[1:]):
            assert np.array_equal(*np.broadcast_arrays(a, b)), row_g[0]
    fast = train_step(model, hw, cfg)
    monkeypatch.setattr(StepLanes, "distinct", lambda self, knobs: Distinct(self, None))  # every lane itself
    slow = train_step(model, hw, cfg)
    for f in dataclasses.fields(slow):
        assert np.array_equal(getattr(fast, f.name), getattr(slow, f.name)), f.name


def test_blocked_step_equals_one_pass_bit_for_bit(monkeypatch):
    """A large input runs in blocks of BLOCK_LANES lanes: the same numbers as one pass."""
    model, hw = load_model("mixtral-8x7b"), load_hardware("h100-sxm")
    cfg = _configs(model, n=1000)
    whole = train_step(model, hw, cfg)
    monkeypatch.setattr(train_time, "BLOCK_LANES", 64)  # 1000 lanes -> 16 blocks of 63
    blocked = train_step(model, hw, cfg)
    for f in dataclasses.fields(whole):
        assert np.array_equal(getattr(whole, f.name), getattr(blocked, f.name)), f.name
