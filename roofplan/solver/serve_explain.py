"""Why a serving search found nothing: the smallest change that would fit, as an InfeasibleError
(exit 3) naming the tightest latencies reached, the GPUs a fitting instance or pair needs, or the
GPUs a rate needs."""

from __future__ import annotations

import math

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.errors import InfeasibleError
from roofplan.solver.serve_disagg import flatten, kv_matrix
from roofplan.solver.serve_request import MAX_SERVE_GPUS, use_gpus
from roofplan.solver.serve_roles import kv_transfer_time, serve_configs
from roofplan.solver.serve_space import instance_shapes


def raise_infeasible(
    model, pools, budget, colo, pre, dec, ttft_s, tpot_s, rate, mode, isl, osl, kv_dtype, eng, common
):
    """Explain why nothing was chosen with the smallest change that would fit."""
    hw_txt = " + ".join(p.name for p in pools)
    cap_txt = str(budget.total) if budget.total is not None else "+".join(map(str, budget.per_pool.values()))
    if not any(np.any(R.fits) for R in colo + pre + dec):
        raise _no_fit(model, pools, eng, f"{cap_txt} x {hw_txt}", mode, isl=isl, osl=osl, **common)
    best_ttft, best_tpot = _tightest_ms(model, colo, pre, dec, isl=isl, kv_dtype=kv_dtype)
    reach = []
    if best_ttft is not None:
        reach.append(f"TTFT {best_ttft:.1f} ms")
    if best_tpot is not None:
        reach.append(f"TPOT {best_tpot:.2f} ms")
    targets = []
    if ttft_s is not None:
        targets.append(f"TTFT <= {ttft_s * 1e3:g} ms")
    if tpot_s is not None:
        targets.append(f"TPOT <= {tpot_s * 1e3:g} ms")
    details = {"tightest_ttft_ms": best_ttft, "tightest_tpot_ms": best_tpot}
    sla_ok = (ttft_s is None or (best_ttft is not None and best_ttft <= ttft_s * 1e3 + 1e-9)) and (
        tpot_s is None or (best_tpot is not None and best_tpot <= tpot_s * 1e3 + 1e-9)
    )
    if rate is not None and sla_ok:
        # The targets are reachable; the rate is not, within the budget.
        need = _gpus_for_rate(model, pools, colo, pre, dec, ttft_s, rate, isl, kv_dtype)
        msg = f"no deployment of {model.name} on {cap_txt} x {hw_txt} sustains {rate:g} requests/s" + (
            f" within {' and '.join(targets)}" if targets else ""
        )
        raise InfeasibleError(
            msg,
            (
                f"about {need} GPUs are needed (--gpus {need}) or a lower --rate"
                if need <= MAX_SERVE_GPUS
                else f"about {need:.3g} GPUs would be needed, more than the {MAX_SERVE_GPUS:,} a plan can use: "
                "lower --rate"
            )
            if need
            else "lower --rate",
            details,
        )
    msg = f"no deployment of {model.name} on {cap_txt} x {hw_txt} ({mode}) meets " + (
        " and ".join(targets) if targets else "the request"
    )
    pair = _smallest_pair(pre, dec)
    if sla_ok and not any(np.any(R.ok) for R in colo) and pair is not None:
        # Each target is reachable, but a prefill and a decode instance do not fit together.
        details["smallest_disagg_gpus"] = pair
        raise InfeasibleError(
            msg + " within the budget",
            use_gpus(pair, "the smallest prefill + decode pair that meets the targets needs")
            + ("" if mode == "disagg" or not colo else " or relax the targets for colocated serving"),
            details,
        )
    hint = ("the tightest reachable are " + " and ".join(reach) + " (each on its own)") if reach else ""
    hint += "; relax --ttft-ms/--tpot-ms or add GPUs" if hint else "relax --ttft-ms/--tpot-ms or add GPUs"
    raise InfeasibleError(msg, hint, details)


def _no_fit(model, pools, eng, where: str, mode: str, *, isl, osl, **common) -> InfeasibleError:
    """No candidate fits in memory: the GPUs the smallest fitting instance needs (on any pool),
    or, when none fits at all, smaller precisions or lengths."""
    need = _min_gpus_to_fit(model, pools, eng, isl=isl, osl=osl, **common)
    what = f"{model.name} ({model.params_total / 1e9:.0f}B parameters) does not fit on {where}"
    if need is None:
        return InfeasibleError(what, "try a smaller --dtype/--kv-dtype or shorter --isl/--osl")
    more = " or more (disaggregation needs one prefill and one decode instance)" if mode == "disagg" else ""
    return InfeasibleError(what, use_gpus(need, "the smallest instance that fits needs") + more)


def _tightest_ms(model, colo, pre, dec, *, isl, kv_dtype) -> tuple[float | None, float | None]:
    """The lowest TTFT and TPOT (ms) any fitting candidate reaches, each on its own: colocated
    instances as they are; a prefill instance's fastest pass plus the quickest KV transfer to a
    fitting decode instance (None where no candidate fits)."""
    ttfts, tpots = [], []
    for R in colo:
        if np.any(R.fits):
            ttfts.append(float(np.min(R.ttft_s[R.fits])))
            tpots.append(float(np.min(R.tpot_s[R.fits])))
    fit_d = [R for R in dec if np.any(R.fits)]
    for R in pre:
        if np.any(R.fits) and fit_d:
            i = int(np.argmin(np.where(R.fits, R.ttft_s, np.inf)))
            kv = min(
                float(
                    np.min(
                        kv_transfer_time(
                            model,
                            R,
                            Rd,
                            np.full(int(np.count_nonzero(Rd.fits)), i),
                            np.nonzero(Rd.fits)[0],
                            isl=isl,
                            kv_dtype=kv_dtype,
                        )
                    )
                )
                for Rd in fit_d
            )
            ttfts.append(float(R.ttft_s[i]) + kv)
    for R in fit_d:
        tpots.append(float(np.min(R.tpot_s[R.fits])))
    return (min(ttfts) * 1e3 if ttfts else None, min(tpots) * 1e3 if tpots else None)


def _gpus_for_rate(model, pools, colo, pre, dec, ttft_s, rate, isl, kv_dtype) -> int | None:
    """GPUs the best requests/s per GPU reached needs for ``rate``, in whole nodes beyond one node
    (None when no candidate has a rate)."""
    per_gpu = _best_rate_per_gpu(model, colo, pre, dec, ttft_s, isl, kv_dtype)
    need = math.ceil(rate / per_gpu) if per_gpu else None
    dpn = max(p.hw.devices_per_node for p in pools)
    if need and need > dpn:  # whole nodes
        need = math.ceil(need / dpn) * dpn
    return need


def _smallest_pair(pre, dec) -> int | None:
    """GPUs of the smallest prefill instance plus the smallest decode instance meeting the targets
    (KV transfer not included; a lower bound for a disaggregated deployment)."""
    gp = [int(np.min(R.gpus[R.ok])) for R in pre if np.any(R.ok)]
    gd = [int(np.min(R.gpus[R.ok])) for R in dec if np.any(R.ok)]
    return min(gp) + min(gd) if gp and gd else None


def _best_rate_per_gpu(model, colo, pre, dec, ttft_s, isl, kv_dtype) -> float | None:
    """Highest requests/s per GPU of any SLA-meeting configuration (fluid ratio for disagg)."""
    best = 0.0
    for R in colo:
        if np.any(R.ok):
            best = max(best, float(np.max(R.rate[R.ok] / R.gpus[R.ok])))
    _, prefs = flatten(model, pre, ttft_s is not None) if pre else (None, [])
    _, drefs = flatten(model, dec, False) if dec else (None, [])
    if prefs and drefs:
        kv = kv_matrix(model, prefs, drefs, isl=isl, kv_dtype=kv_dtype)
        ttft = np.array([R.ttft_s[i] for R, i in prefs])[:, None] + kv
        ok = ttft <= ttft_s if ttft_s is not None else np.ones_like(kv, dtype=bool)
        gpr = (
            np.array([R.gpus[i] / R.rate[i] for R, i in prefs])[:, None]
            + np.array([R.gpus[i] / R.rate[i] for R, i in drefs])[None, :]
        )
        if np.any(ok):
            best = max(best, float(np.max(1.0 / gpr[ok])))
    return best or None


def _min_gpus_to_fit(model, pools, eng, *, isl, osl, dtype, kv_dtype, engine_name) -> int | None:
    """Devices of the smallest instance that holds the model and one request, on any pool."""
    best = None
    for pool in pools:
        shapes = instance_shapes(model, pool.hw.devices_per_node, 4096, engine_name)
        if len(shapes) == 0:
            continue
        cfg = serve_configs(
            shapes, np.ones(len(shapes), dtype=np.int64), isl, osl, dtype, kv_dtype, engine_name
        )
        fits = np.asarray(serve_model.serve_step(model, pool.hw, cfg, eng).fits, dtype=bool)
        if np.any(fits):
            g = int(np.min(shapes.gpus[fits]))
            best = g if best is None else min(best, g)
    return best
