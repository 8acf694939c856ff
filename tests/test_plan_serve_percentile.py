"""``plan serve --slo-percentile``: goodput from the queueing model, confirmed by the simulator."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from roofplan import plan_serving
from roofplan.cli.app import app
from roofplan.costmodel import serve_load as SL
from tests.commands import serve_plan

REQ = dict(isl=1000, osl=200, engine="vllm", emit_launch=False)


@pytest.fixture(scope="module")
def inst(vllm_8b_instance):
    return vllm_8b_instance


def test_closed_form_quantiles_match_the_sampled_requests(inst):
    isl, osl = np.array([1000]), np.array([200])
    mo = SL.moments(inst, isl, osl)
    for rate in (6.0, 15.0):
        r = SL.open_loop(inst, isl, osl, rate)
        st = SL.steady_state(inst, mo, rate)
        t1, t2 = SL.quantiles(st, mo, 90)
        assert t1[0] == pytest.approx(r.percentile("ttft", 90), rel=0.05)
        assert t2[0] == pytest.approx(r.percentile("tpot", 90), rel=0.02)


def test_goodput_is_where_the_percentile_meets_the_target(inst):
    isl, osl = np.array([1000]), np.array([200])
    mo = SL.moments(inst, isl, osl)
    g, cap, st = SL.goodput(inst, mo, 90, ttft_s=None, tpot_s=0.02)
    assert 0 < g[0] < cap[0]
    below = SL.quantiles(SL.steady_state(inst, mo, 0.98 * g[0]), mo, 90)[1][0]
    above = SL.quantiles(SL.steady_state(inst, mo, 1.02 * g[0]), mo, 90)[1][0]
    assert below <= 0.02 < above
    # a stricter percentile admits less load
    g99 = SL.goodput(inst, mo, 99, ttft_s=0.2, tpot_s=0.02)[0][0]
    g50 = SL.goodput(inst, mo, 50, ttft_s=0.2, tpot_s=0.02)[0][0]
    assert g99 < g50


def test_percentile_plan_is_confirmed_and_reports_headroom():
    plan = plan_serving("llama-3.1-8b", "h100-sxm", gpus=2, ttft_ms=300, tpot_ms=25, slo_percentile=90, **REQ)
    b = plan.best
    assert b["slo_percentile"] == 90
    assert b["ttft_ms"] <= 300 * (1 + 1e-6) and b["tpot_ms"] <= 25 * (1 + 1e-6)
    sim = b["simulated"]
    assert sim["meets_sla"]
    assert sim["ttft_p90_ms"] <= 300 * sim["tolerance"] and sim["tpot_p90_ms"] <= 25 * sim["tolerance"]
    assert b["headroom"]["sla_limit_rps"] == pytest.approx(b["goodput_rps"])


def test_with_a_rate_the_fewest_gpus_meeting_the_percentile():
    one = plan_serving("llama-3.1-8b", "h100-sxm", gpus=8, ttft_ms=300, tpot_ms=25, slo_percentile=90, **REQ)
    per_gpu = one.best["goodput_rps"] / one.best["gpus"]
    rate = 2.5 * per_gpu  # needs about three GPUs' worth of the best per-GPU goodput
    plan = plan_serving(
        "llama-3.1-8b", "h100-sxm", gpus=8, ttft_ms=300, tpot_ms=25, rate=rate, slo_percentile=90, **REQ
    )
    b = plan.best
    assert b["goodput_rps"] >= rate
    assert b["gpus"] >= 3
    h = b["headroom"]
    assert h["headroom_pct"] == pytest.approx(100 * (b["goodput_rps"] - rate) / rate)
    assert h["headroom_pct"] >= 0


def test_slo_percentile_flag():
    base = [*serve_plan(2, 1000, 200), "--ttft-ms", "300", "--tpot-ms", "25", "--engine", "vllm"]
    r = CliRunner().invoke(app, base + ["--slo-percentile", "150"])
    assert r.exit_code == 2 and "slo_percentile" in r.stderr
    r = CliRunner().invoke(app, base + ["--slo-percentile", "99", "--json"])
    assert r.exit_code == 0, r.output
    best = json.loads(r.stdout)["best"]
    assert best["slo_percentile"] == 99 and "tpot_p99_ms" in best["simulated"]


def test_without_a_rate_no_rate_headroom_is_claimed():
    """Maximising goodput, the pick runs at its goodput: its rate headroom would be 0 by
    construction, so none is reported (the text printed "headroom 0.0 %")."""
    plan = plan_serving("llama-3.1-8b", "h100-sxm", gpus=2, ttft_ms=300, tpot_ms=25, slo_percentile=90, **REQ)
    h = plan.best["headroom"]
    assert h["headroom_pct"] is None and h["rate_rps"] == h["sla_limit_rps"] == plan.best["goodput_rps"]


def test_colocated_pick_is_the_simplest_within_the_serving_band():
    """Llama 3.1 8B on 8 H100 at TTFT 200 ms / TPOT 20 ms: 4 x tp1 pp2 (TTFT-bound) predicts 1.6 %
    more p90 goodput than 8 x tp1 pp1 (TPOT-bound), far inside the serving band; the robust pick
    is the one without a pipeline, and without the tie-break the pipeline wins."""
    kw = dict(
        isl=2048, osl=512, ttft_ms=200, tpot_ms=20, slo_percentile=90, emit_launch=False, mode="colocated"
    )
    raw = plan_serving("llama-3.1-8b", "h100-sxm", gpus=8, robust_choice=False, **kw).best
    best = plan_serving("llama-3.1-8b", "h100-sxm", gpus=8, **kw).best
    assert (raw["decode"]["tp"], raw["decode"]["pp"]) == (1, 2)
    assert (best["decode"]["tp"], best["decode"]["pp"]) == (1, 1)
    band = best["error_band_pct"] / 100
    assert raw["goodput_rps"] * (1 - band) <= best["goodput_rps"] < raw["goodput_rps"]


def test_a_pick_the_simulator_turns_down_is_reported(monkeypatch):
    """When the simulator refutes the analytic pick the plan falls back to the next candidate, and
    says so: the refuted deployment (the pick without confirmation), its analytic goodput and the
    simulated percentiles that missed, in the JSON and in the text."""
    from roofplan.solver import serve_goodput

    real, calls = serve_goodput.confirm, []

    def refute_first(*a, **k):
        out = real(*a, **k)
        calls.append(out)
        return {**out, "meets_sla": False} if len(calls) == 1 else out

    kw = dict(gpus=2, ttft_ms=300, tpot_ms=25, slo_percentile=90, **REQ)
    honest = plan_serving("llama-3.1-8b", "h100-sxm", **kw).best
    assert honest["simulator_rejected"] == []
    monkeypatch.setattr(serve_goodput, "confirm", refute_first)
    best = plan_serving("llama-3.1-8b", "h100-sxm", **kw).best
    (turned,) = best["simulator_rejected"]
    same = ("mode", "ratio", "gpus", "goodput_rps")
    assert {k: turned[k] for k in same} == {k: honest[k] for k in same}
    assert (
        turned["decode"]["tp"] == honest["decode"]["tp"] and turned["decode"]["pp"] == honest["decode"]["pp"]
    )
    assert (
        turned["simulated"]["ttft_p90_ms"] == calls[0]["ttft_p90_ms"] and not turned["simulated"]["meets_sla"]
    )
    assert best["simulated"]["meets_sla"] and best["goodput_rps"] <= honest["goodput_rps"]
    calls.clear()
    r = CliRunner().invoke(
        app, [*serve_plan(2, 1000, 200), "--ttft-ms", "300", "--tpot-ms", "25", "--engine", "vllm"]
    )
    assert r.exit_code == 0, r.output
    assert "turned down first: " + turned["mode"] in " ".join(r.stdout.split())
