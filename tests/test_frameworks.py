"""The framework rule table (solver/frameworks.py): the search mask of --emit and each launcher's
"not emitted because" line come from it and agree on every configuration of a real search space."""

from __future__ import annotations

import numpy as np
import pytest

from roofplan.hardware.catalog import load_hardware
from roofplan.launch.registry import emitter
from roofplan.models.loader import load_model
from roofplan.solver import frameworks
from roofplan.solver.space import OFFLOAD_NAMES, RECOMPUTE_NAMES, SpaceOptions, enumerate_space


def _config(a: dict, i: int) -> dict:
    c = {k: int(v[i]) for k, v in a.items()}
    c["offload"] = OFFLOAD_NAMES[c["offload"]]
    c["recompute"] = RECOMPUTE_NAMES[c["recompute"]]
    c["etp"] = c["etp"] or c["tp"]  # a plan gives the expert TP degree
    c["dtype"] = "bf16"
    c["tp_comm_overlap"] = False
    return c


@pytest.mark.parametrize("fw", frameworks.FRAMEWORKS)
def test_search_mask_and_launcher_refusals_agree(fw):
    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    space = enumerate_space(
        model, hw, gpus=16, global_batch=64, seq_len=4096, opts=SpaceOptions(max_micro_batch=1)
    )
    a = space.arrays
    a["recompute_layers"] = np.where(
        a["recompute"] == 2, np.arange(len(space)) % 3, 0
    )  # some partial recompute
    mask = frameworks.framework_mask(fw, a)
    assert mask.any() and (~mask).any()
    mod = emitter(fw)
    for i in range(0, len(space), max(1, len(space) // 400)):
        why = mod.unsupported(_config(a, i), model)
        assert (why is None) == bool(mask[i]), (fw, _config(a, i), why)


def test_each_rule_is_the_launchers_message():
    """A configuration breaking one rule is refused by the launcher with that rule's message."""
    base = {
        "tp": 2,
        "pp": 1,
        "cp": 1,
        "vpp": 1,
        "zero": 1,
        "offload": "none",
        "recompute": "none",
        "recompute_layers": 0,
        "tp_comm_overlap": False,
        "etp": 2,
        "dtype": "bf16",
        "model": "llama-3.1-8b",
    }
    cases = {
        ("megatron", "param_offload"): dict(offload="optimizer+params", zero=3),
        ("deepspeed", "cp"): dict(cp=2),
        ("deepspeed", "interleaved"): dict(pp=2, vpp=2),
        ("torchtitan", "zero1"): dict(),
        ("torchtitan", "partial_recompute"): dict(zero=3, recompute="full", recompute_layers=3),
    }
    model = load_model("llama-3.1-8b")
    for (fw, reason), change in cases.items():
        rule = next(r for r in frameworks.RULES[fw] if r.reason == reason)
        assert emitter(fw).unsupported({**base, **change}, model) == rule.message


def test_placement_moves_follow_the_table():
    c = {"zero": 1, "pp": 1, "offload": "none", "recompute": "none", "recompute_layers": 0}
    assert frameworks.expresses(("megatron",), c, offload=1)
    assert not frameworks.expresses(("megatron",), dict(c, zero=3), offload=2)  # no parameter offload
    assert frameworks.expresses(("deepspeed",), dict(c, zero=3), offload=2)
    assert not frameworks.expresses(("torchtitan",), dict(c, zero=3), offload=1)  # all or nothing
    assert not frameworks.expresses(("deepspeed",), dict(c, pp=2), recompute=2, recompute_layers=1)
    assert frameworks.expresses((), c, offload=2)
