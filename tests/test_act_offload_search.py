"""Activation offload (Megatron-Core ``--cpu-offloading-num-layers``) searched by ``plan train``."""

from __future__ import annotations

import pytest

from roofplan import plan_training
from roofplan.costmodel.train_memory import default_memory_headroom_bytes
from roofplan.errors import InfeasibleError
from roofplan.launch import megatron, versions
from roofplan.solver import robust
from tests.picks import estimate_of_pick

#: Llama 3.1 8B on one H100 node at a 16K sequence with data parallelism only and no recompute:
#: one micro-batch stores about 1.3 GiB of activations per layer, 42 GiB for the 32 layers.
CASE = {"gpus": 8, "global_batch": 64, "seq_len": 16384, "top": 3}
FIX = "tp=1,cp=1,pp=1,recompute=none"


def _estimate(b: dict, layers: int) -> dict:
    return estimate_of_pick("llama-3.1-8b", b, act_offload_layers=layers)


def test_plan_offloads_the_fewest_layers_that_fit_and_equals_estimate():
    plan = plan_training("llama-3.1-8b", "h100-sxm", emit="megatron", constraints={"fix": FIX}, **CASE)
    b = plan.best
    n = b["act_offload_layers"]
    assert 2 <= n < 32
    headroom = default_memory_headroom_bytes(80 * 2**30) / 2**30

    def free(layers):
        est = _estimate(b, layers)
        return est["memory_gib_per_gpu"]["capacity"] - est["memory_gib_per_gpu"]["total"]

    # without offload (and with one layer fewer) it leaves less than the headroom; with n it fits
    assert free(0) < headroom and free(n - 1) < headroom <= free(n)
    est = _estimate(b, n)
    assert est["inputs"]["act_offload_layers"] == n  # the estimate echoes what it priced
    assert b["step_time_s"] == pytest.approx(est["step_time_s"], rel=1e-12)
    assert b["memory_gib_per_gpu"]["total"] == pytest.approx(est["memory_gib_per_gpu"]["total"], rel=1e-12)
    argv = plan.launch["megatron"].split()
    assert argv[argv.index("--cpu-offloading-num-layers") + 1] == str(n)
    # core_v0.13 has no such flag: not emitted, and why
    old = dict(plan.config(b), zero=1)  # ZeRO-1: what core_v0.13 runs, but for the offload
    assert "activation offload" in megatron.unsupported(old, plan.model, "core_v0.13")
    assert versions.feature("megatron", None, "act_offload")


def test_only_megatron_offloads_activations():
    for fw in ("deepspeed", "torchtitan"):
        try:
            plan = plan_training("llama-3.1-8b", "h100-sxm", emit=fw, constraints={"fix": FIX}, **CASE)
        except InfeasibleError:  # nothing fits without activation offload: also what it should say
            continue
        assert all(c["act_offload_layers"] == 0 for c in plan.candidates)


def test_excluded_offload_is_not_searched():
    plan = plan_training(
        "llama-3.1-8b",
        "h100-sxm",
        emit="megatron",
        constraints={"fix": "tp=1,cp=1,pp=1", "exclude": "act_offload>0"},
        **CASE,
    )
    assert all(c["act_offload_layers"] == 0 for c in plan.candidates)


def test_tie_break_prefers_no_activation_offload():
    """Free to recompute (at a 48K sequence, where offloading beats recomputing attention but only
    within the band), a faster activation-offload candidate loses to full recompute, and the reason
    names it."""
    plan = plan_training(
        "llama-3.1-8b",
        "h100-sxm",
        emit="megatron",
        constraints={"fix": "tp=1,cp=1"},
        **{**CASE, "seq_len": 49152, "top": 8},
    )
    b = plan.best
    assert b["act_offload_layers"] == 0
    faster = [
        c for c in plan.candidates if c["act_offload_layers"] > 0 and c["step_time_s"] < b["step_time_s"]
    ]
    assert faster and all(c["tied_with_best"] for c in faster)
    assert "no activation offload" in robust.simpler_reasons(b, faster[0])


def test_the_offload_flag_is_in_every_release_that_writes_it():
    """--cpu-offloading-num-layers is in the option inventory of each Megatron release the
    launcher writes it for, and not in the one it refuses it for."""
    import json
    from pathlib import Path

    inv = Path(__file__).parent / "data" / "inventories"
    for version in versions.VERSIONS["megatron"]:
        options = json.loads((inv / f"{versions.feature('megatron', version, 'inventory')}.json").read_text())
        has = "--cpu-offloading-num-layers" in options["options"]
        assert has == versions.feature("megatron", version, "act_offload"), version
