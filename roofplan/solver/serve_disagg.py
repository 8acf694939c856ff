"""Prefill/decode disaggregation: the pruned options of each role, the KV-transfer matrix between
them and the integer program of :mod:`roofplan.solver.pd_ilp` that picks the ratio and the two
configurations (DistServe, Zhong et al. OSDI 2024; Splitwise, Patel et al. ISCA 2024)."""

from __future__ import annotations

import time

import numpy as np

from roofplan.solver.pd_ilp import RoleOptions, solve_pd
from roofplan.solver.serve_result import Deployment, InstancePlan
from roofplan.solver.serve_roles import RoleCandidates, kv_transfer_time, prune, unit_cost

#: Wall-clock limit of each CBC solve.
ILP_TIME_LIMIT_S = 20.0


def flatten(model, cands: list[RoleCandidates], use_ttft: bool, objective: str = "gpus"):
    """Pruned options of every pool of a role as one RoleOptions plus back-references; with the
    energy objective the ILP's price is each option's power (W), so "cheapest" is least power."""
    refs = [(R, int(i)) for R in cands for i in prune(model, R, use_ttft)]
    if not refs:
        return None, refs
    gpus = np.array([R.gpus[i] for R, i in refs], dtype=np.int64)
    price = [R.pool.hw.price_per_hour for R, _ in refs]
    opts = RoleOptions(
        gpus=gpus,
        rate=np.array([R.rate[i] for R, i in refs]),
        pool=np.array([R.pool.name for R, _ in refs], dtype=object),
        price=None if any(p is None for p in price) else gpus * np.array(price, dtype=float),
    )
    if objective == "energy":
        opts.price = np.array([unit_cost(R, objective)[i] for R, i in refs], dtype=float)
    return opts, refs


def kv_matrix(model, prefs, drefs, *, isl, kv_dtype) -> np.ndarray:
    """KV transfer seconds for every (prefill option, decode option) pair."""
    kv = np.empty((len(prefs), len(drefs)))
    for a, (Rp, i) in enumerate(prefs):
        # group decode refs by candidate set to vectorise
        by_set: dict[int, list[tuple[int, int]]] = {}
        for b, (Rd, j) in enumerate(drefs):
            by_set.setdefault(id(Rd), []).append((b, j))
        for key, cols in by_set.items():
            Rd = next(R for R, _ in drefs if id(R) == key)
            bs = np.array([c[0] for c in cols])
            js = np.array([c[1] for c in cols])
            kv[a, bs] = kv_transfer_time(model, Rp, Rd, np.full(len(js), i), js, isl=isl, kv_dtype=kv_dtype)
    return kv


def best_disagg(model, pre, dec, budget, *, isl, osl, ttft_s, rate, objective, kv_dtype):
    """Prune each role, build the pair-compatibility matrix (TTFT incl. KV transfer) and solve the
    prefill:decode ILP."""
    P, prefs = flatten(model, pre, ttft_s is not None, objective)
    D, drefs = flatten(model, dec, False, objective)
    info = {"prefill_options": len(prefs), "decode_options": len(drefs)}
    if P is None or D is None:
        return None, info
    kv = kv_matrix(model, prefs, drefs, isl=isl, kv_dtype=kv_dtype)
    ttft = np.array([R.ttft_s[i] for R, i in prefs])[:, None] + kv
    compatible = ttft <= ttft_s if ttft_s is not None else np.ones_like(kv, dtype=bool)
    info["compatible_pairs"] = int(np.count_nonzero(compatible))
    t0 = time.perf_counter()
    sol = solve_pd(
        P,
        D,
        compatible,
        budget,
        target_rps=rate,
        objective="cost" if objective == "energy" else objective,
        time_limit_s=ILP_TIME_LIMIT_S,
    )
    info["solve_time_s"] = time.perf_counter() - t0
    if sol is None:
        return None, info
    info["optimal"] = bool(sol.optimal)
    Rp, i = prefs[sol.prefill]
    Rd, j = drefs[sol.decode]
    kv_s = float(kv[sol.prefill, sol.decode])
    hp, hd = Rp.pool.hw.price_per_hour, Rd.pool.hw.price_per_hour
    price = (
        sol.price
        if objective != "energy"
        else (sol.x * int(Rp.gpus[i]) * hp + sol.y * int(Rd.gpus[j]) * hd if hp and hd else None)
    )
    power = (
        None
        if Rp.power_w is None or Rd.power_w is None
        else sol.x * float(Rp.power_w[i]) + sol.y * float(Rd.power_w[j])
    )
    if rate is None:
        key = (-sol.goodput_rps, sol.gpus)
    else:
        key = (
            (sol.price if objective in ("cost", "energy") and sol.price is not None else float(sol.gpus)),
            sol.gpus,
        )
    best = Deployment(
        mode="disagg",
        prefill=InstancePlan.of(Rp, i, sol.x),
        decode=InstancePlan.of(Rd, j, sol.y),
        ratio=sol.ratio,
        gpus=sol.gpus,
        goodput_rps=sol.goodput_rps,
        ttft_s=float(Rp.ttft_s[i]) + kv_s,
        tpot_s=float(Rd.tpot_s[j]),
        osl=osl,
        price_per_hour=price,
        kv_transfer_s=kv_s,
        power_w=power,
        rank_key=key,
    )
    return best, info
