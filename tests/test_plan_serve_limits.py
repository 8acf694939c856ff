"""plan serve: memory headroom per role and per-role --fix/--exclude (issue 13)."""

from __future__ import annotations

import pytest

import roofplan
from roofplan.costmodel.train_memory import default_memory_headroom_bytes
from roofplan.errors import InfeasibleError, InputError

REQ = dict(isl=4000, osl=500, ttft_ms=1500, tpot_ms=40)


def _plan(**kw):
    """plan serve of Llama 3.1 70B on 16 H100s for the requests and targets of ``REQ``."""
    return roofplan.plan_serving("llama-3.1-70b", "h100-sxm", gpus=16, **REQ, **kw)


def _estimate(inst: dict, **kw) -> dict:
    return roofplan.estimate_serving(
        "llama-3.1-70b",
        inst["hardware"],
        tp=inst["tp"],
        pp=inst["pp"],
        ep=inst["ep"],
        dp=inst["dp"],
        batch=inst["batch"],
        **kw,
    ).to_json()


def test_fixed_roles_equal_estimate_of_that_layout():
    """--fix prefill.tp=4,decode.tp=8: the pick has those layouts, and its decode TPOT and free
    memory are what `estimate serve` gives for that instance and batch."""
    plan = _plan(mode="disagg", emit_launch=False, constraints={"fix": "prefill.tp=4,decode.tp=8"})
    p, d = plan.best["prefill"], plan.best["decode"]
    assert (p["tp"], d["tp"]) == (4, 8)
    est = _estimate(d, isl=4000, osl=500)
    assert d["tpot_ms"] == pytest.approx(est["tpot_ms"], rel=1e-9)
    mem = est["memory_gib_per_gpu"]  # the engine holds its pool (usable), so that is what stays free
    assert d["free_memory_gib"] == pytest.approx(mem["capacity"] - max(mem["usable"], mem["total"]), rel=1e-9)
    assert plan.rejected["constraint"] > 0
    assert plan.request["constraints"] == ["fix prefill.tp=4", "fix decode.tp=8"]


def test_exclude_per_role_and_everywhere():
    plan = _plan(emit_launch=False, constraints={"exclude": "pp>1,decode.batch>64"})
    b = plan.best
    assert b["prefill"]["pp"] == 1 and b["decode"]["pp"] == 1
    if b["mode"] == "disagg":
        assert b["decode"]["batch"] <= 64


def test_headroom_is_left_and_the_launch_files_leave_it():
    """Every instance of the pick leaves the asked-for GiB free: the engines preallocate their KV
    pool, so the share of HBM they leave unused is raised to the headroom (30 of 80 GiB: 0.375),
    and vLLM's --gpu-memory-utilization follows; less KV room never raises the goodput."""
    base = _plan(emit_launch=False)
    tight = _plan(memory_headroom=30, engines=["vllm"])
    for inst in (tight.best["prefill"], tight.best["decode"]):
        assert inst["free_memory_gib"] == pytest.approx(30.0)
    assert tight.request["memory_reserve_fraction"] == pytest.approx(30 / 80)
    assert "--gpu-memory-utilization 0.625" in " ".join(tight.launch["vllm"].values())
    assert tight.best["goodput_rps"] <= base.best["goodput_rps"] * (1 + 1e-12)
    assert tight.rejected.get("oom", 0) > base.rejected.get("oom", 0)
    # the default is the training planner's rule per pool: 5 % of 80 GiB + 1 GiB, which the
    # engine's own 10 % reserve already leaves
    assert (
        base.request["memory_headroom_gib"]["h100-sxm"]["decode"]
        == pytest.approx(default_memory_headroom_bytes(80 * 2**30) / 2**30)
        == pytest.approx(5.0)
    )
    assert base.request["memory_reserve_fraction"] == pytest.approx(0.1)
    assert base.best["decode"]["free_memory_gib"] == pytest.approx(8.0)


def test_headroom_rejections_counted_where_the_reserve_is_a_share_of_what_the_weights_leave():
    """TRT-LLM reserves a share of the memory left after the weights: instances whose weights
    leave it less than the headroom are rejected one by one, counted as headroom."""
    plan = _plan(engine="trtllm", emit_launch=False)
    assert plan.rejected["headroom"] > 0
    for inst in (plan.best["prefill"], plan.best["decode"]):
        assert inst["free_memory_gib"] >= 5.0


def test_headroom_per_role_and_bad_values():
    plan = _plan(mode="disagg", emit_launch=False, memory_headroom="decode=40")
    assert plan.best["decode"]["free_memory_gib"] >= 40
    with pytest.raises(InputError):
        _plan(memory_headroom="x=3")
    with pytest.raises(InputError):
        _plan(constraints={"fix": "train.tp=4"})
    with pytest.raises(InfeasibleError):
        _plan(memory_headroom=79)
