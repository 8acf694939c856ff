"""The Pareto front of a serving search: output tokens/s per GPU against tokens/s per user, over
colocated and disaggregated candidates."""

from __future__ import annotations

import numpy as np

from roofplan.solver import pareto as pareto_mod
from roofplan.solver.serve_disagg import flatten
from roofplan.solver.serve_result import InstancePlan
from roofplan.solver.serve_roles import kv_transfer_time

#: Points of the Pareto front reported in JSON (evenly thinned, ends kept).
PARETO_POINTS = 24


def pareto_points(model, colo, pre, dec, budget, *, osl, isl, ttft_s, kv_dtype):
    """Front of output tokens/s per GPU vs tokens/s per user over both modes.

    Colocated points are single instances at their operating point. A disaggregated point pairs a
    decode instance with the prefill configuration that costs the fewest GPUs per request/s among
    those meeting the TTFT target, at the fluid (rate-matched) ratio: GPUs per request/s =
    g_p/r_p + g_d/r_d (DistServe §4.1 per-GPU goodput), kept only when one decode instance and its
    share of prefill instances fit the GPU budget (a single-pool budget; per-pool budgets are
    checked by the ILP only).
    """
    xs, ys, meta = [], [], []
    series: dict[str, tuple[list, list]] = {}
    for R in colo:
        idx = np.nonzero(R.fits & ((R.ttft_s <= ttft_s) if ttft_s is not None else True))[0]
        x = 1.0 / R.tpot_s[idx]
        y = R.rate[idx] * osl / R.gpus[idx]
        xs.append(x)
        ys.append(y)
        meta += [("colocated", R, int(i), None, None) for i in idx]
    _, prefs = flatten(model, pre, ttft_s is not None) if pre else (None, [])
    if prefs and dec:
        gpr_p = np.array([R.gpus[i] / R.rate[i] for R, i in prefs])
        rate_p = np.array([R.rate[i] for R, i in prefs])
        gpus_p = np.array([R.gpus[i] for R, i in prefs], dtype=float)
        ttft_p = np.array([R.ttft_s[i] for R, i in prefs])
        for Rd in dec:
            idx = np.nonzero(Rd.fits)[0]
            if len(idx) == 0:
                continue
            kv = np.empty((len(prefs), len(idx)))
            for a, (Rp, i) in enumerate(prefs):
                kv[a] = kv_transfer_time(model, Rp, Rd, np.full(len(idx), i), idx, isl=isl, kv_dtype=kv_dtype)
            ok = (ttft_p[:, None] + kv <= ttft_s) if ttft_s is not None else np.ones_like(kv, dtype=bool)
            # one decode instance plus its fluid share of prefill instances must fit the budget
            share = (Rd.rate[idx][None, :] / rate_p[:, None]) * gpus_p[:, None] + Rd.gpus[idx][None, :]
            cap = budget.cap(Rd.pool.name) if budget.total is not None else np.inf
            ok &= share <= cap
            cost = np.where(ok, gpr_p[:, None], np.inf)
            a_best = np.argmin(cost, axis=0)
            has = np.isfinite(cost[a_best, np.arange(len(idx))])
            gpr = cost[a_best, np.arange(len(idx))] + Rd.gpus[idx] / Rd.rate[idx]
            x = 1.0 / Rd.tpot_s[idx]
            y = np.where(has, osl / gpr, np.nan)
            xs.append(x)
            ys.append(y)
            meta += [
                ("disagg", Rd, int(j), prefs[int(a)], float(kv[a, k]))
                for k, (j, a) in enumerate(zip(idx, a_best))
            ]
    if not xs:
        return [], series
    X = np.concatenate(xs)
    Y = np.concatenate(ys)
    modes = np.array([m[0] for m in meta])
    for mname in ("colocated", "disagg"):
        sel = np.nonzero(modes == mname)[0]
        if len(sel):
            f = sel[pareto_mod.pareto_front(X[sel], Y[sel])]
            series[mname] = (X[f].tolist(), Y[f].tolist())
    front = pareto_mod.thin(pareto_mod.pareto_front(X, Y), PARETO_POINTS)
    out = []
    for k in front:
        mode, R, i, pref, kv_s = meta[k]
        point = {
            "mode": mode,
            "tokens_per_s_per_user": float(X[k]),
            "output_tokens_per_s_per_gpu": float(Y[k]),
            "tpot_ms": float(R.tpot_s[i] * 1e3),
        }
        if mode == "colocated":
            point["ttft_ms"] = float(R.ttft_s[i] * 1e3)
            point["instance"] = InstancePlan.of(R, i, 1).to_json()
        else:
            Rp, ip = pref
            point["ttft_ms"] = float((Rp.ttft_s[ip] + kv_s) * 1e3)
            point["prefill"] = InstancePlan.of(Rp, ip, 1).to_json()
            point["decode"] = InstancePlan.of(R, i, 1).to_json()
            ratio = R.rate[i] / Rp.rate[ip]  # prefill instances per decode instance (fluid)
            point["prefill_per_decode"] = float(ratio)
        out.append(point)
    return out, series
