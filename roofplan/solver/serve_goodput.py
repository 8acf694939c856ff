"""Percentile SLAs in the serving planner: goodput from queueing, confirmed by simulation.

With ``slo_percentile=P`` the planner's candidates are rated by their DistServe goodput (Zhong et
al., OSDI 2024, §2): the highest Poisson request rate at which P % of requests meet both the TTFT
and the TPOT target.

* Colocated: every (instance shape, token budget) candidate is evaluated at once by
  :func:`roofplan.costmodel.serve_load.goodput` (continuous batching with chunked prefill, the
  M/G/1 prefill queue, percentiles of its wait and of the mixed iterations among a request's decode
  steps). The engine's sequence cap is the instance's saturation batch.
* Disaggregated prefill: an M/D/1 queue in front of each prefill instance, service one pass per
  request (1 / the instance's rate); the rate per instance is the highest at which the P-th
  percentile of wait + pass + KV transfer (to an instance of the same shape in another node) meets
  the TTFT target. Decode instances keep their fixed-concurrency TPOT; their rate is limited so that
  the P-th percentile wait for a free decode slot (M/M/c, Halfin-Whitt) stays within a tenth of the
  TTFT target (the planner couples no more than that share of the budget to the decode side).
* :func:`confirm` runs the chosen deployment through the discrete-event simulator
  (:mod:`roofplan.costmodel.serve_sim`) at its operating rate and reports the simulated percentiles.
"""

from __future__ import annotations

import math

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel import serve_load, serve_sim
from roofplan.solver.serve_space import CHUNK_GRID, Shapes, cross

#: Requests simulated to confirm a pick (keeps confirmation well under a second per candidate).
CONFIRM_REQUESTS = 3000
#: Output tokens simulated in one confirmation at most (3000 requests of 2,048 tokens): the
#: simulator's work grows with requests x output length, and 3000 requests of 62,292 output tokens
#: once took 30 s. Longer outputs are confirmed on fewer requests, at least CONFIRM_MIN_REQUESTS.
CONFIRM_TOKENS = 3000 * 2048
CONFIRM_MIN_REQUESTS = 50


def confirm_requests(osl: int) -> int:
    """Requests one confirmation simulates for outputs of ``osl`` tokens."""
    return int(min(CONFIRM_REQUESTS, max(CONFIRM_MIN_REQUESTS, CONFIRM_TOKENS // max(int(osl), 1))))


#: A pick is confirmed when its simulated P-th percentiles are within this factor of the targets:
#: the simulator and the analytic model agree to ~10 % (tests/test_serve_load.py).
CONFIRM_TOLERANCE = 1.10


def colocated_goodput(
    model,
    pool,
    engine,
    shapes: Shapes,
    *,
    isl,
    osl,
    dtype,
    kv_dtype,
    engine_name,
    p,
    ttft_s,
    tpot_s,
    features=None,
):
    """(shapes, budgets, goodput rps, capacity rps, P-th TTFT, P-th TPOT, saturation batch, fits)
    of every shape x token budget (``CHUNK_GRID`` as ``max_num_batched_tokens``). ``features`` =
    (SpecDecode or None, prefix-hit tokens, expert skew), as the planner's other evaluators take
    them: the analytic load model prices them (:class:`~roofplan.costmodel.serve_load.Instance`)."""
    s, (budget,) = cross(shapes, np.array(CHUNK_GRID, dtype=np.int64))
    n = len(s)
    cfg = serve_model.ServeConfigs(
        tp=s.tp,
        pp=s.pp,
        ep=s.ep,
        dp=s.dp,
        batch=1,
        isl=np.full(n, isl),
        osl=np.full(n, osl),
        dtype=dtype,
        kv_dtype=kv_dtype,
        engine=engine_name,
    )
    spec, hit, skew = features or (None, 0, 1.0)
    inst = serve_load.Instance(
        model,
        pool.hw,
        engine,
        cfg,
        budget=budget.astype(float),
        spec=spec,
        prefix_hit=int(hit),
        expert_skew=float(skew),
    )
    isl_a, osl_a = np.array([isl]), np.array([osl])
    mo = serve_load.moments(inst, isl_a, osl_a)
    # the cached prefix (one copy per attention-DP rank) and one request's own KV must fit
    room = np.asarray(serve_load.kv_capacity_tokens(inst)) - serve_load.shared_prefix_tokens(inst)
    fits = room >= isl + osl - int(hit)
    g, cap, st = serve_load.goodput(inst, mo, p, ttft_s, tpot_s)
    t1, t2 = serve_load.quantiles(st, mo, p)
    d_sat = serve_load.saturation(inst, mo)
    g = np.where(fits, g, 0.0)
    return s, budget, g, cap, t1, t2, d_sat, fits


def prefill_goodput(rate, ttft, kv, p: float, ttft_s) -> np.ndarray:
    """Rate per prefill instance at which the P-th percentile of (M/D/1 wait + pass + KV transfer)
    meets ``ttft_s`` (bisection; the wait grows with the rate). Without a target: the capacity."""
    rate = np.asarray(rate, dtype=float)
    if ttft_s is None:
        return rate
    q = p / 100.0

    def ok(lam):
        w, rho = serve_load.md1_wait(lam, 1.0 / rate)
        return (rho < 1.0) & (serve_load.wait_quantile(w, rho, q) + ttft + kv <= ttft_s)

    lo, hi = np.zeros_like(rate), rate.copy()
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid)
    return np.where(ttft + kv <= ttft_s, lo, 0.0)


def decode_goodput(rate, batch, tpot, osl: int, p: float, slack_s) -> np.ndarray:
    """Rate per decode instance at which the P-th percentile wait for one of its ``batch`` slots
    (each held (osl - 1)·TPOT) stays within ``slack_s`` (the TTFT left after the prefill and the
    KV transfer; None: at most MAX_UTILISATION of the slots' rate). Bisection; the wait grows
    with the rate (:func:`roofplan.costmodel.serve_load.slot_wait_quantile`)."""
    rate = np.asarray(rate, dtype=float)
    hold = np.maximum(osl - 1.0, 1.0) * np.asarray(tpot, dtype=float)
    if slack_s is None:
        return serve_load.MAX_UTILISATION * rate
    slack = np.asarray(slack_s, dtype=float)

    def ok(lam):
        return serve_load.slot_wait_quantile(lam, batch, hold, p / 100.0) <= slack

    lo, hi = np.zeros_like(rate), rate.copy()
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid)
    return np.where(slack > 0, lo, 0.0)


def confirm(model, hw, engine, best: dict, request: dict, p: float, rate_rps: float, seed: int = 0) -> dict:
    """Simulate the deployment ``best`` (a plan's best) at ``rate_rps`` requests/s and report its
    P-th percentile TTFT and TPOT against the targets; ``request["speculative"]`` (a SpecDecode) and
    ``request["prefix_hit"]`` (tokens) and ``request["expert_skew"]`` are simulated as the plan
    modelled them."""
    from roofplan.serving import kv_transfer_s

    isl, osl = int(request["isl"]), int(request["osl"])
    n = confirm_requests(osl)
    L, Lo = np.full(n, isl), np.full(n, osl)
    arr = serve_sim.poisson_arrivals(n, rate_rps, seed)
    common = dict(dtype=request["dtype"], kv_dtype=request["kv_dtype"], engine=engine.name)
    spec, hit = request.get("speculative"), int(request.get("prefix_hit") or 0)
    skew = float(request.get("expert_skew") or 1.0)

    def make(d: dict, eng) -> serve_load.Instance:
        cfg = serve_model.ServeConfigs(
            tp=d["tp"],
            pp=d["pp"],
            ep=d["ep"],
            dp=d["dp"],
            batch=1,
            isl=isl,
            osl=osl,
            dtype=common["dtype"],
            kv_dtype=common["kv_dtype"],
            engine=eng.name,
        )
        return serve_load.Instance(model, hw, eng, cfg)

    dec = best["decode"]
    if best["mode"] == "colocated":
        eng = engine.replace(
            max_num_seqs=int(dec["batch"]), max_num_batched_tokens=int(dec["max_num_batched_tokens"])
        )
        res = serve_sim.simulate_colocated(
            make(dec, eng),
            L,
            Lo,
            arr,
            instances=int(best["instances"]),
            prefix_hit=hit,
            spec=spec,
            expert_skew=skew,
        )
    else:
        pre = best["prefill"]
        pi = make(pre, engine.replace(max_num_batched_tokens=max(int(pre["batch"]) * isl, isl)))
        di = make(dec, engine.replace(max_num_seqs=int(dec["batch"])))
        same = int(pre["gpus_per_instance"]) + int(dec["gpus_per_instance"]) <= hw.devices_per_node
        res = serve_sim.simulate_disagg(
            pi,
            di,
            L,
            Lo,
            arr,
            prefill_instances=int(pre["instances"]),
            decode_instances=int(dec["instances"]),
            transfer_s=lambda x: kv_transfer_s(pi, di, x, same, hit),
            prefix_hit=hit,
            spec=spec,
            expert_skew=skew,
        )
    ttft = _pct(res.ttft_s, p)
    tpot = _pct(res.tpot_s, p)
    t_lim, p_lim = request.get("ttft_ms"), request.get("tpot_ms")
    meets = (t_lim is None or ttft * 1e3 <= t_lim * CONFIRM_TOLERANCE) and (
        p_lim is None or tpot * 1e3 <= p_lim * CONFIRM_TOLERANCE
    )
    return {
        "requests": n,
        "rate_rps": rate_rps,
        f"ttft_p{_fmt(p)}_ms": ttft * 1e3,
        f"tpot_p{_fmt(p)}_ms": tpot * 1e3,
        "preemptions": int(res.preemptions),
        "meets_sla": bool(meets),
        "tolerance": CONFIRM_TOLERANCE,
    }


def _pct(x: np.ndarray, p: float) -> float:
    keep = x[int(len(x) * 0.1) :]
    keep = keep[np.isfinite(keep)]
    return float(np.percentile(keep, p)) if len(keep) else math.inf


def _fmt(p: float) -> str:
    return f"{p:g}".replace(".", "_")
