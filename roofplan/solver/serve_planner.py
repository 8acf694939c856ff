"""The serving planner: colocated vs prefill/decode-disaggregated deployments for a GPU budget.

Pipeline (all candidates of a role are evaluated in one vectorised cost-model call):

1. Instance shapes (:mod:`roofplan.solver.serve_space`) on each device pool.
2. *Colocated* candidates: shape x concurrency x prefill chunk, in the chunked-prefill steady
   state of :mod:`roofplan.solver.colocated`. A deployment is ``k`` identical instances.
3. *Disaggregated* candidates (DistServe, Zhong et al. OSDI 2024; Splitwise, Patel et al. ISCA
   2024; Mooncake, Qin et al. FAST 2025): prefill instances (shape x prompts per pass; TTFT from the
   cost model's prefill of the batch) and decode instances (shape x concurrency; TPOT from its
   decode steps). The KV cache of the prompts is shipped from the prefill to the decode instance
   (``kv_transfer_bytes`` over NVLink when both sit in one node, else over the NICs, one stream per
   KV shard) and charged to TTFT. The prefill:decode ratio and the two configurations are chosen by
   the integer program of :mod:`roofplan.solver.pd_ilp`.
4. ``mode="auto"`` keeps the better of the two (more goodput in the budget; or, with ``rate``, the
   fewest GPUs / lowest price), ties going to colocated (one engine type, no KV transfer).
5. The Pareto front of output tokens/s per GPU against tokens/s per user (1/TPOT) over both modes.

Goodput (DistServe §2): requests/s served within the TTFT and TPOT targets. The model is
deterministic (no queueing): a configuration either meets the targets at its operating point or it
does not, so goodput is the sustained request rate of the deployments that meet them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel.train_memory import default_memory_headroom_bytes
from roofplan.errors import InputError
from roofplan.models.spec import ModelSpec
from roofplan.solver import robust
from roofplan.solver.pd_ilp import Budget
from roofplan.solver.serve_disagg import best_disagg
from roofplan.solver.serve_explain import raise_infeasible
from roofplan.solver.serve_front import pareto_points
from roofplan.solver.serve_placement import placement
from roofplan.solver.serve_request import (
    MAX_SERVE_GPUS,
    MODES,
    OBJECTIVES,
    ROLES,
    Pool,
    as_pools,
    check_percentile,
    check_request,
    effective_objective,
    hf_id,
    parse_budget,
    parse_constraints,
    parse_headroom,
)
from roofplan.solver.serve_result import SCHEMA, Deployment, InstancePlan, ServePlan, pick
from roofplan.solver.serve_roles import (
    RoleCandidates,
    apply_limits,
    evaluate_colocated,
    evaluate_colocated_percentile,
    evaluate_decode,
    evaluate_prefill,
    free_bytes,
    kv_streams,
    kv_transfer_time,
    prune,
    queue_decode,
    queue_prefill,
    unit_cost,
)
from roofplan.solver.serve_space import instance_shapes

__all__ = [
    "MAX_SERVE_GPUS",
    "MODES",
    "OBJECTIVES",
    "ROLES",
    "SCHEMA",
    "Deployment",
    "InstancePlan",
    "Pool",
    "RoleCandidates",
    "ServePlan",
    "evaluate_decode",
    "evaluate_prefill",
    "kv_streams",
    "kv_transfer_time",
    "placement",
    "plan_serving",
    "prune",
]

#: Candidates the simulator tries with a percentile SLA before the analytic pick is kept, flagged.
CONFIRM_TRIES = 4


@dataclass
class _Search:
    """What one search holds: the request as the planner uses it and the evaluated candidates."""

    model: ModelSpec
    pools: list[Pool]
    budget: Budget
    engine: object  # EngineProfile
    isl: int
    osl: int
    ttft_s: float | None
    tpot_s: float | None
    rate: float | None
    mode: str
    objective: str
    common: dict  # dtype, kv_dtype, engine_name
    features: tuple | None
    slo_percentile: float | None
    headroom: dict = field(
        default_factory=dict
    )  # role -> GiB a candidate must leave free (None: the default)
    constraints: tuple = ()  # solver.constraints.Constraint with a role
    band: float | None = None  # colocated picks: the serving error band of the tie-break (None: off)
    colo: list[RoleCandidates] = field(default_factory=list)
    pre: list[RoleCandidates] = field(default_factory=list)
    dec: list[RoleCandidates] = field(default_factory=list)
    searched: int = 0
    rejected: dict = field(default_factory=dict)

    @property
    def mixed(self) -> bool:
        return len(self.pools) > 1

    @property
    def kv_dtype(self):
        return self.common["kv_dtype"]

    def count(self, rejected: dict) -> None:
        for k, v in rejected.items():
            self.rejected[k] = self.rejected.get(k, 0) + v

    @property
    def candidates(self) -> list[RoleCandidates]:
        return self.colo + self.pre + self.dec


def best_colocated(
    cands: list[RoleCandidates], budget: Budget, rate, objective, osl, band: float | None = None
) -> Deployment | None:
    """k identical colocated instances on one pool: k = floor(cap / gpus) (throughput: most goodput,
    then fewest GPUs) or the fewest k meeting ``rate`` (lowest cost, then fewest GPUs). With
    ``band`` (a fraction: the serving error band) the pick is the simplest of the candidates whose
    score is within the band of the best (:func:`roofplan.solver.robust.serve_simplicity_key`),
    then the best score: a 2 % win of a two-stage pipeline is no reason to run one."""
    parts = []
    for n, R in enumerate(cands):
        idx = np.nonzero(R.ok)[0]
        if len(idx) == 0:
            continue
        cap = budget.cap(R.pool.name)
        g = R.gpus[idx].astype(np.int64)
        r = R.rate[idx]
        if rate is None:
            k = cap // g
            score = -(k * r)  # smaller is better: the negated goodput
        else:
            # clipped before the int cast: a huge --rate (1e308) once overflowed it into garbage
            with np.errstate(over="ignore", divide="ignore"):
                k = np.minimum(np.ceil(rate / r - 1e-12), cap + 1).astype(np.int64)
            k = np.maximum(k, 1)
            score = k * unit_cost(R, objective)[idx]
        good = (k >= 1) & (k * g <= cap)
        if np.any(good):
            s = R.shapes
            simple = robust.serve_simplicity_key(*(x[idx][good] for x in (s.tp, s.pp, s.ep, s.dp)))
            parts.append(
                (np.full(int(good.sum()), n), idx[good], k[good], score[good], (k * g)[good], simple)
            )
    if not parts:
        return None
    which, idx, k, score, gpus = (np.concatenate([p[j] for p in parts]) for j in range(5))
    simple = [np.concatenate([p[5][j] for p in parts]) for j in range(2)]
    order = np.lexsort((gpus, score))
    if band is not None:
        best = score[order[0]]
        tied = score <= best + band * abs(best)
        order = np.lexsort((gpus, score, *simple[::-1], ~tied))
    j = order[0]
    R = cands[int(which[j])]
    return _colocated_deployment(R, int(idx[j]), int(k[j]), (float(score[j]), int(gpus[j])), osl)


def _colocated_deployment(R: RoleCandidates, i: int, k: int, key: tuple, osl: int) -> Deployment:
    """``k`` instances of colocated candidate ``i`` of ``R``."""
    inst = InstancePlan.of(R, i, k)
    gpus = k * int(R.gpus[i])
    price = R.pool.hw.price_per_hour
    return Deployment(
        mode="colocated",
        prefill=inst,
        decode=inst,
        gpus=gpus,
        goodput_rps=k * float(R.rate[i]),
        ttft_s=float(R.ttft_s[i]),
        tpot_s=float(R.tpot_s[i]),
        osl=osl,
        price_per_hour=(gpus * price) if price else None,
        instances=k,
        power_w=None if R.power_w is None else k * float(R.power_w[i]),
        rank_key=key,
        ref=(R, i),
    )


def _headroom(best: Deployment, rate) -> dict:
    """How far the pick's operating rate is from the rate at which its P-th percentile stops meeting
    the targets (its goodput): with ``rate``, (goodput - rate) / rate. Without a rate the pick is
    the one with the most goodput and is reported at it; a headroom would be 0 by construction and
    say nothing, so it is None (the text said "headroom 0.0 %", which read as a plan at its limit)."""
    g = float(best.goodput_rps)
    op = float(rate) if rate is not None else g
    pct = 100.0 * (g - op) / op if rate is not None and op > 0 else None
    return {"rate_rps": op, "sla_limit_rps": g, "headroom_pct": pct}


def _need_bytes(S: _Search, pool: Pool, role: str) -> float:
    """Free bytes per device an instance of ``role`` on ``pool`` must leave."""
    gib = S.headroom.get(role)
    return default_memory_headroom_bytes(pool.hw.hbm_bytes) if gib is None else float(gib) * 2**30


def engine_for(S: _Search, pool: Pool, role: str):
    """The engine profile an instance of ``role`` runs on ``pool``: the request's, with the share
    of HBM it leaves unused raised to the headroom where it leaves less. The engines preallocate
    their KV pool (vLLM ``--gpu-memory-utilization``, SGLang ``--mem-fraction-static``), so the
    headroom is what they must leave, and the launch files carry the raised fraction. TRT-LLM's
    fraction of the memory left after the weights cannot be raised once for every shape: those
    instances are checked one by one (:func:`~roofplan.solver.serve_roles.apply_limits`)."""
    eng = S.engine
    if eng.reserve_of_free:
        return eng
    cap = float(pool.hw.hbm_bytes)
    left = max(cap * eng.memory_reserve_fraction, float(eng.runtime_reserve_bytes))
    need = _need_bytes(S, pool, role)
    if left >= need or need >= cap:
        return eng
    return eng.replace(memory_reserve_fraction=need / cap)


def _evaluate(S: _Search) -> None:
    """Evaluate every role's candidates on every pool (rejections counted by reason)."""
    common = S.common
    for pool in S.pools:
        shapes = instance_shapes(S.model, pool.hw.devices_per_node, S.budget.cap(pool.name), S.engine.name)
        S.count(shapes.rejected)
        if len(shapes) == 0:
            continue
        if S.mode in ("auto", "colocated") and not S.mixed:
            eng = engine_for(S, pool, "colocated")
            req = dict(isl=S.isl, osl=S.osl, ttft_s=S.ttft_s, tpot_s=S.tpot_s, features=S.features, **common)
            if S.slo_percentile is None:
                R = evaluate_colocated(S.model, pool, eng, shapes, **req)
            else:
                R = evaluate_colocated_percentile(S.model, pool, eng, shapes, p=S.slo_percentile, **req)
            S.colo.append(_limited(S, R, eng))
        if S.mode not in ("auto", "disagg"):
            continue
        if "prefill" in pool.roles:
            eng = engine_for(S, pool, "prefill")
            R = evaluate_prefill(
                S.model, pool, eng, shapes, isl=S.isl, ttft_s=S.ttft_s, features=S.features, **common
            )
            if S.slo_percentile is not None:
                queue_prefill(S.model, R, isl=S.isl, kv_dtype=S.kv_dtype, p=S.slo_percentile, ttft_s=S.ttft_s)
            S.pre.append(_limited(S, R, eng))
        if "decode" in pool.roles:
            eng = engine_for(S, pool, "decode")
            R = evaluate_decode(
                S.model,
                pool,
                eng,
                shapes,
                isl=S.isl,
                osl=S.osl,
                tpot_s=S.tpot_s,
                features=S.features,
                **common,
            )
            if S.slo_percentile is not None:
                queue_decode(R, osl=S.osl, p=S.slo_percentile, ttft_s=S.ttft_s)
            S.dec.append(_limited(S, R, eng))
    for R in S.candidates:
        S.searched += R.searched
        S.count(R.rejected)


def _limited(S: _Search, R: RoleCandidates, eng) -> RoleCandidates:
    """``R`` with the memory headroom of its role and the user's constraints applied."""
    free = free_bytes(S.model, R, eng, isl=S.isl, osl=S.osl, **S.common)
    apply_limits(R, free, _need_bytes(S, R.pool, R.role), S.constraints)
    return R


def _confirmed(
    S: _Search, best: Deployment, best_colo: Deployment | None, best_dis: Deployment | None, req: dict
):
    """Run the top picks through the simulator until one meets the percentile targets
    (CONFIRM_TRIES at most); none confirmed: the analytic pick, flagged. Returns (best, simulated,
    best colocated, turned down): the last lists every candidate the simulator refuted before the
    pick, in the order tried, each with its simulated percentiles (:func:`_turned_down`)."""
    from roofplan.solver.serve_goodput import confirm

    first, tried_dis, colo_failed = None, False, 0
    simulated: dict = {}
    refuted: list[dict] = []
    for _ in range(CONFIRM_TRIES):
        pool = next(pool for pool in S.pools if pool.name == best.decode.hardware)
        op_rate = float(S.rate) if S.rate is not None else float(best.goodput_rps)
        eng = engine_for(S, pool, best.decode.role)
        simulated = confirm(S.model, pool.hw, eng, best.to_json(), req, S.slo_percentile, op_rate)
        first = first or (best, simulated, best_colo)
        if simulated["meets_sla"]:
            return best, simulated, best_colo, refuted
        refuted.append(_turned_down(best, simulated))
        if best is best_dis:
            tried_dis = True
        else:  # drop this colocated candidate
            colo_failed += 1
            R, i = best_colo.ref
            R.ok[i] = False
            best_colo = best_colocated(S.colo, S.budget, S.rate, S.objective, S.osl, S.band)
        if tried_dis or best_dis is None:
            best = best_colo
        elif colo_failed >= 2:  # the colocated model misses: give the disaggregated pick its turn
            best = best_dis
        else:
            best = pick(best_colo, best_dis)
        if best is None:
            break
    # none confirmed: the first pick stands, flagged; the others tried are still reported
    return (*first, refuted[1:])


def _turned_down(d: Deployment, simulated: dict) -> dict:
    """What the plan reports of a candidate the simulator refuted: its layout, its analytic
    goodput and latencies, and the simulated percentiles that missed the targets."""
    j = d.to_json()
    keep = ("tp", "pp", "ep", "dp", "batch", "instances")
    return {
        "mode": j["mode"],
        "ratio": j["ratio"],
        "instances": j.get("instances"),
        "prefill": {k: j["prefill"][k] for k in keep if k in j["prefill"]},
        "decode": {k: j["decode"][k] for k in keep if k in j["decode"]},
        "gpus": j["gpus"],
        "ttft_ms": j["ttft_ms"],
        "tpot_ms": j["tpot_ms"],
        "goodput_rps": j["goodput_rps"],
        "simulated": simulated,
    }


def _request_doc(S: _Search, ttft_ms, tpot_ms, rate) -> dict:
    """The ``inputs`` part of the plan document."""
    eng, pools = S.engine, S.pools
    request = {
        "model": S.model.name,
        "model_id": hf_id(S.model),
        "moe": S.model.moe is not None,
        "hardware": ",".join(f"{p.name}:{r}" for p in pools for r in p.roles if r != "colocated")
        if S.mixed
        else pools[0].name,
        "gpus": S.budget.total if S.budget.total is not None else dict(S.budget.per_pool),
        "isl": S.isl,
        "osl": S.osl,
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
        "rate": rate,
        "mode": S.mode,
        "engine": eng.name,
        "dtype": S.common["dtype"],
        "kv_dtype": S.kv_dtype,
        "objective": S.objective,
        # the largest share any instance leaves unused (the launch files' memory fraction)
        "memory_reserve_fraction": max(
            engine_for(S, p, r).memory_reserve_fraction for p in pools for r in p.roles
        ),
        "reserve_of_free": eng.reserve_of_free,
        "slo_percentile": S.slo_percentile,
        "memory_headroom_gib": {
            p.name: {
                r: (
                    S.headroom[r]
                    if S.headroom.get(r) is not None
                    else default_memory_headroom_bytes(p.hw.hbm_bytes) / 2**30
                )
                for r in p.roles
            }
            for p in pools
        },
        "constraints": [("exclude " if c.exclude else "fix ") + c.text for c in S.constraints],
    }
    if S.features:
        request["speculative"] = S.features[0].to_json() if S.features[0] is not None else None
        request["prefix_hit_tokens"] = S.features[1]
        request["expert_skew"] = S.features[2]
    return request


def _features(mode: str, isl: int, speculative, prefix_hit, expert_skew) -> tuple[tuple | None, str]:
    """(SpecDecode or None, prefix-hit tokens, expert skew) when any is asked for, and the mode
    (every mode takes them, under a percentile target too: the colocated goodput prices them,
    :func:`roofplan.solver.serve_goodput.colocated_goodput`)."""
    if speculative is None and prefix_hit is None and expert_skew == 1.0:
        return None, mode
    from roofplan.costmodel.serve_features import resolve_prefix_hit

    return (speculative, resolve_prefix_hit(prefix_hit, isl), float(expert_skew)), mode


def _setup(
    model: ModelSpec,
    hw,
    engine,
    *,
    gpus,
    isl,
    osl,
    ttft_ms,
    tpot_ms,
    rate,
    mode,
    dtype,
    kv_dtype,
    objective,
    speculative,
    prefix_hit,
    expert_skew,
    slo_percentile,
    memory_headroom=None,
    constraints=(),
) -> _Search:
    """Check the request and hold it as the search uses it."""
    if not isinstance(model, ModelSpec):
        raise InputError("model", model, "a resolved ModelSpec (roofplan.plan_serving resolves ids)")
    pools = as_pools(hw)
    budget = parse_budget(gpus, pools)
    check_request(model, isl, osl, ttft_ms, tpot_ms, rate, mode, dtype, kv_dtype)
    if objective not in OBJECTIVES:
        raise InputError("objective", objective, ", ".join(OBJECTIVES))
    check_percentile(slo_percentile)
    objective = effective_objective(pools, objective)
    if len(pools) > 1 and mode == "colocated":
        raise InputError("mode", mode, "auto or disagg with separate prefill and decode hardware")
    features, mode = _features(mode, isl, speculative, prefix_hit, expert_skew)
    return _Search(
        model=model,
        pools=pools,
        budget=budget,
        engine=engine,
        isl=isl,
        osl=osl,
        ttft_s=ttft_ms / 1e3 if ttft_ms is not None else None,
        tpot_s=tpot_ms / 1e3 if tpot_ms is not None else None,
        rate=rate,
        mode=mode,
        objective=objective,
        common=dict(dtype=dtype, kv_dtype=kv_dtype, engine_name=engine.name),
        features=features,
        slo_percentile=slo_percentile,
        headroom=parse_headroom(memory_headroom),
        constraints=parse_constraints(constraints),
    )


def plan_serving(
    model: ModelSpec,
    hw,
    engine,
    *,
    gpus,
    isl: int,
    osl: int,
    ttft_ms: float | None = None,
    tpot_ms: float | None = None,
    rate: float | None = None,
    mode: str = "auto",
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    objective: str = "gpus",
    speculative=None,
    prefix_hit=None,
    expert_skew: float = 1.0,
    slo_percentile: float | None = None,
    memory_headroom=None,
    constraints=(),
    error_bands: dict | None = None,
    robust_choice: bool = True,
) -> ServePlan:
    """Search serving deployments of ``model`` on ``gpus`` devices of ``hw`` (docs/SPEC.md §3.4).

    ``model`` is a ModelSpec, ``hw`` a DeviceSpec, {role: DeviceSpec} or a list of
    :class:`~roofplan.solver.serve_request.Pool`, ``engine`` an engine profile
    (:func:`roofplan.hardware.engines.load_engine`): :func:`roofplan.plan_serving` resolves ids
    and renders the launch files. Without ``ttft_ms``/``tpot_ms``/``rate`` the deployment with the
    highest throughput for the budget wins. ``rate`` (requests/s) asks for the fewest GPUs
    (``objective="gpus"``), the lowest price per hour (``"cost"``) or the least power
    (``"energy"``) that sustain it. Raises :class:`InfeasibleError` when no deployment meets the
    targets, naming the tightest TTFT and TPOT any deployment reaches. ``speculative``
    (SpecDecode), ``prefix_hit`` (tokens or a fraction of isl) and ``expert_skew`` (max/mean
    routed tokens per EP rank) model speculative decoding, prefix caching and skewed expert load
    for colocated, prefill and decode instances, with ``slo_percentile`` too.

    ``slo_percentile`` (0-100): the targets hold for that percentile of requests under Poisson
    arrivals, and deployments are ranked by goodput from the queueing model
    (:mod:`roofplan.solver.serve_goodput`); the pick is then run through the simulator
    (``best["simulated"]``) and its headroom reported (``best["headroom"]``). None: the
    deterministic operating-point model of the module docstring.

    ``memory_headroom``: free GiB per device every instance must leave at its operating point (one
    number, or per role ``{"prefill": 4, "decode": 8}`` / ``"prefill=4,decode=8"``); default the
    training planner's rule, 5 % of the pool's HBM + 1 GiB. ``constraints``: per-role
    ``{"fix": "prefill.tp=4,decode.tp=8", "exclude": "decode.batch>256"}`` (or Constraint objects).
    Rejections are counted as ``headroom`` and ``constraint``; every instance reports its
    ``free_memory_gib``. ``error_bands`` (:func:`roofplan.resolve.error_bands`) gives the pick's
    band: the p90 error of the validated serving rows of its decode device. With ``robust_choice``
    the colocated pick is the simplest of the colocated candidates within that band of the best
    (:func:`roofplan.solver.robust.serve_simplicity_key`).
    """
    if error_bands is None:
        raise TypeError(
            "plan_serving needs error_bands (roofplan.resolve.error_bands(): the door reads them)"
        )
    t0 = time.perf_counter()
    S = _setup(
        model,
        hw,
        engine,
        gpus=gpus,
        isl=isl,
        osl=osl,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        rate=rate,
        mode=mode,
        dtype=dtype,
        kv_dtype=kv_dtype,
        objective=objective,
        speculative=speculative,
        prefix_hit=prefix_hit,
        expert_skew=expert_skew,
        slo_percentile=slo_percentile,
        memory_headroom=memory_headroom,
        constraints=constraints,
    )
    _evaluate(S)
    if S.colo and robust_choice:
        S.band = robust.serve_error_band(error_bands, S.pools[0].hw.id).fraction
    best_colo = best_colocated(S.colo, S.budget, rate, S.objective, osl, S.band) if S.colo else None
    best_dis, pd_info = (None, {})
    if S.pre and S.dec:
        best_dis, pd_info = best_disagg(
            S.model,
            S.pre,
            S.dec,
            S.budget,
            isl=isl,
            osl=osl,
            ttft_s=S.ttft_s,
            rate=rate,
            objective=S.objective,
            kv_dtype=kv_dtype,
        )
    feasible = int(sum(np.count_nonzero(R.ok) for R in S.candidates))
    if best_colo is None and best_dis is None:
        raise_infeasible(
            S.model,
            S.pools,
            S.budget,
            S.colo,
            S.pre,
            S.dec,
            S.ttft_s,
            S.tpot_s,
            rate,
            S.mode,
            isl,
            osl,
            kv_dtype,
            engine,
            S.common,
        )
    best, simulated, refuted = pick(best_colo, best_dis), None, []
    if slo_percentile is not None:
        req = _simulated_request(
            S, isl=isl, osl=osl, dtype=dtype, kv_dtype=kv_dtype, ttft_ms=ttft_ms, tpot_ms=tpot_ms
        )
        best, simulated, best_colo, refuted = _confirmed(S, best, best_colo, best_dis, req)
    alternatives = {name: b for name, b in (("colocated", best_colo), ("disagg", best_dis)) if b is not None}
    band = robust.serve_error_band(error_bands, best.decode.hardware)
    chosen = _chosen(best, pd_info, slo_percentile, rate, simulated, band, refuted)
    front, series = pareto_points(
        S.model, S.colo, S.pre, S.dec, S.budget, osl=osl, isl=isl, ttft_s=S.ttft_s, kv_dtype=kv_dtype
    )
    return ServePlan(
        deployment=chosen,
        pareto=front,
        searched=S.searched,
        search_time_s=time.perf_counter() - t0,
        rejected=S.rejected,
        alternatives=alternatives,
        request=_request_doc(S, ttft_ms, tpot_ms, rate),
        feasible=feasible,
        frontier=series,
    )


def _simulated_request(S, *, isl, osl, dtype, kv_dtype, ttft_ms, tpot_ms) -> dict:
    """The request the percentile pick is simulated with: its lengths, precisions and targets,
    and the serving features (speculative decoding, prefix caching, expert skew) as modelled."""
    req = {
        "isl": isl,
        "osl": osl,
        "dtype": dtype,
        "kv_dtype": kv_dtype,
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
    }
    if S.features is not None:
        req.update(speculative=S.features[0], prefix_hit=S.features[1], expert_skew=S.features[2])
    return req


def _chosen(best: Deployment, pd_info: dict, slo_percentile, rate, simulated, band, refuted) -> Deployment:
    """The pick with what only the chosen deployment reports: its error band, placement, ILP
    statistics, percentile headroom, the simulator's verdict and the candidates it turned down
    first (its alternative entry stays without them)."""
    from dataclasses import replace

    extra = {"error_band_pct": band.pct, "error_band": band.label, "placement": placement(best.to_json())}
    if pd_info:
        extra["ilp"] = pd_info
    if slo_percentile is not None:
        extra["slo_percentile"] = float(slo_percentile)
        extra["headroom"] = _headroom(best, rate)
        extra["simulated"] = simulated
        extra["simulator_rejected"] = refuted
    return replace(best, extra=extra)
