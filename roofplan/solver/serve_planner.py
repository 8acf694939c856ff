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

import math
import re
import time
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.power import require_power, serve_power_w
from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec
from roofplan.solver import pareto as pareto_mod
from roofplan.solver.colocated import colocated_metrics
from roofplan.solver.pd_ilp import Budget, RoleOptions, solve_pd
from roofplan.solver.serve_space import (
    CHUNK_GRID,
    MAX_PREFILL_TOKENS,
    Shapes,
    batch_grid,
    cross,
    instance_shapes,
)

SCHEMA = "roofplan.plan.serve/v1"
MODES = ("auto", "colocated", "disagg")
ROLES = ("prefill", "decode")
#: With ``rate``: fewest GPUs, lowest price per hour, or least power (hence least energy per token).
OBJECTIVES = ("gpus", "cost", "energy")
#: Points of the Pareto front reported in JSON (evenly thinned, ends kept).
PARETO_POINTS = 24
#: Wall-clock limit of each CBC solve.
ILP_TIME_LIMIT_S = 20.0
#: Candidates the simulator tries with a percentile SLA before the analytic pick is kept, flagged.
CONFIRM_TRIES = 4
#: Largest GPU budget of one serving plan (``plan serve --gpus``): the emitted launch files give
#: every node its own script listing every node (~5 s and 1.3 GB at 16,384 GPUs, 19 GB at 65,536).
MAX_SERVE_GPUS = 16_384


def _use_gpus(need: int, what: str) -> str:
    """The "use --gpus N" suggestion, or why no budget roofplan accepts would do."""
    if need > MAX_SERVE_GPUS:
        return f"{what} about {need:,} GPUs, more than the {MAX_SERVE_GPUS:,} a plan can use"
    return f"{what} {need} GPUs: use --gpus {need}"


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
@dataclass
class Pool:
    """A pool of identical devices and the roles it serves."""

    hw: DeviceSpec
    roles: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.hw.id


def _load_hw(spec, calibration, *, only_matching: bool = False) -> DeviceSpec:
    """A DeviceSpec with the calibration overlay applied. With several pools (``only_matching``)
    an overlay fitted for one device id is applied to that pool only."""
    from roofplan.hardware.catalog import load_hardware
    from roofplan.hardware.overlay import apply_overlay, load_overlay, overlay_applies

    hw = spec if isinstance(spec, DeviceSpec) else load_hardware(spec)
    if calibration is None:
        return hw
    overlay = load_overlay(calibration)
    if only_matching and not overlay_applies(hw.id, overlay):
        return hw
    return apply_overlay(hw, overlay)


def parse_pools(hardware, calibration=None) -> list[Pool]:
    """``h100-sxm``, a DeviceSpec, ``h100-sxm:prefill,a100-sxm-80gb:decode`` or {role: hw}."""
    if isinstance(hardware, dict):
        items = [(hw, role) for role, hw in hardware.items()]
    elif isinstance(hardware, str) and ("," in hardware or re.search(r":(prefill|decode)$", hardware)):
        items = []
        for part in hardware.split(","):
            part = part.strip()
            name, _, role = part.rpartition(":")
            if not name or role not in ROLES:
                raise InputError(
                    "hardware",
                    hardware,
                    "ID or ID:prefill,ID:decode (e.g. h100-sxm:prefill,a100-sxm-80gb:decode)",
                )
            items.append((name, role))
    else:
        hw = _load_hw(hardware, calibration)
        return [Pool(hw, ("prefill", "decode", "colocated"))]
    roles_seen = [r for _, r in items]
    for role in roles_seen:
        if role not in ROLES:
            raise InputError("hardware", role, "roles are prefill and decode")
    if sorted(roles_seen) != sorted(ROLES):
        raise InputError("hardware", hardware, "name exactly one pool for prefill and one for decode")
    pools: dict[str, Pool] = {}
    for spec, role in items:
        hw = _load_hw(spec, calibration, only_matching=True)
        if hw.id in pools:
            pools[hw.id].roles = tuple(dict.fromkeys(pools[hw.id].roles + (role,)))
        else:
            pools[hw.id] = Pool(hw, (role,))
    for p in pools.values():
        p.roles = tuple(dict.fromkeys(p.roles + ("colocated",)))
    return list(pools.values())


def parse_budget(gpus, pools: list[Pool]) -> Budget:
    """An int (all pools together), ``"8,8"`` / a list (per pool, in --hardware order) or {pool: n}."""

    def positive(v, name="gpus") -> int:
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise InputError(name, v, "a positive integer (or one per pool: 8,8)") from None
        if n < 1 or (isinstance(v, float) and v != n):
            raise InputError(name, v, "a positive integer")
        return n

    if isinstance(gpus, str) and "," in gpus:
        gpus = [g.strip() for g in gpus.split(",")]
    if isinstance(gpus, (list, tuple)):
        if len(gpus) != len(pools):
            raise InputError(
                "gpus",
                ",".join(map(str, gpus)),
                f"one count per hardware pool ({len(pools)}: {', '.join(p.name for p in pools)})",
            )
        return Budget(per_pool={p.name: positive(g) for p, g in zip(pools, gpus)})
    if isinstance(gpus, dict):
        names = {p.name for p in pools}
        per = {}
        for k, v in gpus.items():
            key = next((p.name for p in pools if k == p.name or k in p.roles), None)
            if key is None or key not in names:
                raise InputError("gpus", k, "a pool id or role: " + ", ".join(sorted(names)))
            per[key] = positive(v)
        return Budget(per_pool=per)
    return Budget(total=positive(gpus))


def _check_request(model: ModelSpec, isl, osl, ttft_ms, tpot_ms, rate, mode, dtype, kv_dtype) -> None:
    for name, v in (("isl", isl), ("osl", osl)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(name, v, "a positive integer number of tokens")
    if isl + osl > model.max_seq_len:
        raise InputError("isl+osl", isl + osl, f"at most the model's max_seq_len {model.max_seq_len}")
    for name, v in (("ttft_ms", ttft_ms), ("tpot_ms", tpot_ms), ("rate", rate)):
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v)
        ):
            raise InputError(name, v, "a positive number")
    if mode not in MODES:
        raise InputError("mode", mode, "one of " + ", ".join(MODES))
    if dtype not in serve_model.WEIGHT_DTYPES:
        raise InputError("dtype", dtype, "one of " + ", ".join(serve_model.WEIGHT_DTYPES))
    if kv_dtype is not None and kv_dtype not in serve_model.KV_DTYPES:
        raise InputError("kv_dtype", kv_dtype, "one of " + ", ".join(serve_model.KV_DTYPES))


# ---------------------------------------------------------------------------------------------
# Candidate evaluation per role
# ---------------------------------------------------------------------------------------------
@dataclass
class RoleCandidates:
    """Evaluated candidates of one role on one pool (struct of arrays)."""

    role: str
    pool: Pool
    shapes: Shapes
    batch: np.ndarray
    chunk: np.ndarray | None
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    rate: np.ndarray  # requests/s per instance
    fits: np.ndarray
    ok: np.ndarray  # fits and meets this role's own SLA
    searched: int = 0
    rejected: dict = field(default_factory=dict)
    power_w: np.ndarray | None = None  # W per instance at its operating point (costmodel/power.py)
    prefix_hit: int = 0  # prompt tokens served from the prefix cache: not shipped to the decode side

    @property
    def gpus(self) -> np.ndarray:
        return self.shapes.gpus

    def streams(self, model: ModelSpec) -> np.ndarray:
        return kv_streams(model, self.shapes.tp, self.shapes.pp, self.shapes.dp)


def kv_streams(model: ModelSpec, tp, pp, dp=1) -> np.ndarray:
    """Devices holding distinct KV shards of a pass's requests: each pipeline stage holds its
    layers; tensor ranks split the KV heads (replicas when tp > kv_heads, as the cost model's
    ``_kv_shards``); MLA's latent KV is replicated on every tensor rank (DeepSeek-V2 §2.1.2), so
    only the stages split it; attention-DP ranks hold different requests, each sending its own."""
    tp = np.asarray(tp)
    pp = np.asarray(pp)
    dp = np.asarray(dp)
    if model.mla is not None:
        return (pp * dp).astype(np.int64)
    return (pp * np.minimum(tp, model.kv_heads) * dp).astype(np.int64)


def _count(rejected: dict, reason: str, mask) -> None:
    n = int(np.count_nonzero(mask))
    if n:
        rejected[reason] = rejected.get(reason, 0) + n


def _balanced_dp(s: Shapes, grids: list[np.ndarray], rejected: dict) -> tuple[Shapes, list[np.ndarray]]:
    """Keep candidates whose batch (first grid) splits evenly over the attention-DP ranks: each
    rank schedules whole requests (SGLang DP attention, vLLM DP engines), and the cost model
    spreads the batch evenly over them."""
    keep = grids[0] % s.dp == 0
    _count(rejected, "dp_balance", ~keep)
    idx = np.nonzero(keep)[0]
    return s.take(idx), [g[idx] for g in grids]


def _configs(shapes: Shapes, batch, isl, osl, dtype, kv_dtype, engine_name):
    n = len(shapes)
    return serve_model.ServeConfigs(
        tp=shapes.tp,
        pp=shapes.pp,
        ep=shapes.ep,
        dp=shapes.dp,
        batch=np.asarray(batch, dtype=np.int64),
        isl=np.full(n, isl, dtype=np.int64),
        osl=np.full(n, osl, dtype=np.int64),
        dtype=dtype,
        kv_dtype=kv_dtype,
        engine=engine_name,
    )


def _serve_arrays(model, hw, cfg, engine, features):
    """The cost model's static-batch arrays, with speculative decoding / prefix caching when
    ``features`` = (SpecDecode or None, prefix-hit tokens, expert skew) is given
    (costmodel.serve_features)."""
    if not features:
        return serve_model.serve_step(model, hw, cfg, engine)
    from roofplan.costmodel.serve_features import serve_step_ext

    return serve_step_ext(model, hw, cfg, engine, spec=features[0], prefix_hit=features[1], expert_skew=features[2])


def evaluate_prefill(
    model, pool: Pool, engine, shapes: Shapes, *, isl, dtype, kv_dtype, engine_name, ttft_s=None, features=None
) -> RoleCandidates:
    """Prefill-only instances: ``B`` prompts per pass (B·isl <= MAX_PREFILL_TOKENS, or one prompt).

    TTFT of the pass = the cost model's prefill of B prompts (first token included). Throughput:
    with pp = 1 passes run back to back, B / TTFT requests/s. With pp > 1 the cost model splits the
    pass into m = min(B, pp) microbatches taking (m + pp - 1) stage times; successive passes keep
    the pipeline full (GPipe steady state, Huang et al. 2019), so a pass leaves every m stage
    times: B·(m + pp - 1) / (m·TTFT) requests/s.
    """
    grid = batch_grid()
    grid = grid[(grid * isl <= MAX_PREFILL_TOKENS) | (grid == 1)]
    rejected: dict = {}
    s, (B,) = cross(shapes, grid)
    s, (B,) = _balanced_dp(s, [B], rejected)
    cfg = _configs(s, B, isl, 1, dtype, kv_dtype, engine_name)
    arr = _serve_arrays(model, pool.hw, cfg, engine, features)
    ttft = np.asarray(arr.ttft_s, dtype=float)
    fits = np.asarray(arr.fits, dtype=bool)
    m = np.minimum(B, s.pp).astype(float)
    rate = B * (m + s.pp - 1.0) / (m * ttft)
    ok = _within_sla(rejected, fits, ttft, ttft_s, "ttft_sla")
    power = _instance_power(pool, s, arr.prefill_compute_s, arr.prefill_memory_s, ttft)
    return RoleCandidates(
        "prefill",
        pool,
        s,
        B,
        None,
        ttft,
        np.full(len(B), np.nan),
        rate,
        fits,
        ok,
        len(B) + rejected.get("dp_balance", 0),
        rejected,
        power,
        prefix_hit=int(features[1]) if features else 0,
    )


def _instance_power(pool: Pool, s: Shapes, compute_s, memory_s, total_s) -> np.ndarray | None:
    """W per instance: its GPUs at the power model's draw for these iteration parts."""
    per_gpu = serve_power_w(pool.hw, compute_s, memory_s, total_s)
    return None if per_gpu is None else per_gpu * s.gpus


def _within_sla(rejected: dict, fits, latency, limit, reason: str):
    """Candidates that fit in memory and meet ``limit`` (if any); rejections counted by reason."""
    _count(rejected, "oom", ~fits)
    ok = fits.copy()
    if limit is not None:
        _count(rejected, reason, ok & (latency > limit))
        ok &= latency <= limit
    return ok


def evaluate_decode(
    model, pool: Pool, engine, shapes: Shapes, *, isl, osl, dtype, kv_dtype, engine_name, tpot_s=None,
    features=None,
) -> RoleCandidates:
    """Decode-only instances at concurrency ``B``: TPOT = the cost model's mean decode step over the
    O steps; one instance finishes B requests every O·TPOT seconds."""
    rejected: dict = {}
    s, (B,) = cross(shapes, batch_grid())
    s, (B,) = _balanced_dp(s, [B], rejected)
    cfg = _configs(s, B, isl, osl, dtype, kv_dtype, engine_name)
    arr = _serve_arrays(model, pool.hw, cfg, engine, features)
    tpot = np.asarray(arr.tpot_s, dtype=float)
    fits = np.asarray(arr.fits, dtype=bool)
    rate = B / (osl * tpot)
    ok = _within_sla(rejected, fits, tpot, tpot_s, "tpot_sla")
    power = _instance_power(pool, s, arr.decode_compute_s, arr.decode_memory_s, tpot)
    return RoleCandidates(
        "decode",
        pool,
        s,
        B,
        None,
        np.full(len(B), np.nan),
        tpot,
        rate,
        fits,
        ok,
        len(B) + rejected.get("dp_balance", 0),
        rejected,
        power,
    )


def evaluate_colocated(
    model,
    pool: Pool,
    engine,
    shapes: Shapes,
    *,
    isl,
    osl,
    dtype,
    kv_dtype,
    engine_name,
    ttft_s=None,
    tpot_s=None,
    features=None,
) -> RoleCandidates:
    rejected: dict = {}
    s, (C, chunk) = cross(shapes, batch_grid(), np.array(CHUNK_GRID, dtype=np.int64))
    s, (C, chunk) = _balanced_dp(s, [C, chunk], rejected)
    m = colocated_metrics(
        model,
        pool.hw,
        engine,
        s,
        C,
        chunk,
        isl=isl,
        osl=osl,
        dtype=dtype,
        kv_dtype=kv_dtype,
        engine_name=engine_name,
        features=features,
    )
    _count(rejected, "oom", C > m.max_batch)
    _count(rejected, "chunk_budget", (C <= m.max_batch) & ~m.balanced)
    ok = m.fits.copy()
    if ttft_s is not None:
        _count(rejected, "ttft_sla", ok & (m.ttft_s > ttft_s))
        ok &= m.ttft_s <= ttft_s
    if tpot_s is not None:
        _count(rejected, "tpot_sla", ok & (m.tpot_s > tpot_s))
        ok &= m.tpot_s <= tpot_s
    return RoleCandidates(
        "colocated",
        pool,
        s,
        C,
        chunk,
        m.ttft_s,
        m.tpot_s,
        m.rate_rps,
        m.fits,
        ok,
        len(C) + rejected.get("dp_balance", 0),
        rejected,
        _instance_power(pool, s, m.busy_s, 0.0, m.tpot_s),
    )


def evaluate_colocated_percentile(
    model, pool: Pool, engine, shapes: Shapes, *, isl, osl, dtype, kv_dtype, engine_name, p, ttft_s=None,
    tpot_s=None,
) -> RoleCandidates:
    """Colocated candidates (shape x token budget) rated by their P-th percentile goodput under
    Poisson arrivals (:func:`roofplan.solver.serve_goodput.colocated_goodput`). ``batch`` is the
    saturation batch (the engine's sequence cap that does not limit the goodput), ``chunk`` the
    rest of the token budget; TTFT/TPOT are the P-th percentiles at the goodput."""
    from roofplan.solver.serve_goodput import colocated_goodput

    rejected: dict = {}
    s, budget, g, cap, t1, t2, d_sat, fits = colocated_goodput(
        model, pool, engine, shapes, isl=isl, osl=osl, dtype=dtype, kv_dtype=kv_dtype, engine_name=engine_name,
        p=p, ttft_s=ttft_s, tpot_s=tpot_s)
    batch = np.maximum(np.ceil(d_sat), 1).astype(np.int64)
    batch = batch + (-batch) % s.dp  # whole requests per attention-DP rank
    chunk = budget - batch
    roomy = chunk >= 1
    _count(rejected, "oom", ~fits)
    _count(rejected, "chunk_budget", fits & ~roomy)
    _count(rejected, "percentile_sla", fits & roomy & (g <= 0))
    ok = fits & roomy & (g > 0)
    chunk = np.maximum(chunk, 1)
    return RoleCandidates("colocated", pool, s, batch, chunk, t1, t2, g, fits & roomy, ok, len(g), rejected,
                          _saturated_power(model, pool, engine, s, batch, chunk, isl=isl, osl=osl, dtype=dtype,
                                           kv_dtype=kv_dtype, engine_name=engine_name))


def _saturated_power(model, pool: Pool, engine, s: Shapes, batch, chunk, **kw) -> np.ndarray | None:
    """W per colocated instance kept busy at ``batch`` requests with ``chunk``-token prefill chunks
    (the steady state of :mod:`roofplan.solver.colocated`), as for prefill and decode instances: an
    instance loaded below that draws less, so J/token is an upper bound there."""
    if serve_power_w(pool.hw, 0.0, 0.0, 1.0) is None:
        return None
    m = colocated_metrics(model, pool.hw, engine, s, batch, chunk, **kw)
    return _instance_power(pool, s, m.busy_s, 0.0, m.tpot_s)


def _queue_prefill(model, R: RoleCandidates, *, isl, kv_dtype, p, ttft_s) -> None:
    """Limit each prefill candidate's rate to its P-th percentile TTFT goodput (M/D/1 queue in
    front of it; KV transfer to an instance of its own shape), in place."""
    from roofplan.solver.serve_goodput import prefill_goodput

    idx = np.arange(len(R.batch))
    kv = kv_transfer_time(model, R, R, idx, idx, isl=isl, kv_dtype=kv_dtype)
    r = prefill_goodput(R.rate, R.ttft_s, kv, p, None if ttft_s is None else (1 - DECODE_SLOT_SHARE) * ttft_s)
    lost = R.ok & (r <= 0)
    _count(R.rejected, "percentile_sla", lost)
    R.rate = np.where(r > 0, r, R.rate)
    R.ok = R.ok & ~lost


#: Share of the TTFT target a request may wait for a decode slot (disaggregated, percentile SLA).
DECODE_SLOT_SHARE = 0.1


def _queue_decode(R: RoleCandidates, *, osl, p, ttft_s) -> None:
    """Limit each decode candidate's rate so that its P-th percentile slot wait stays within
    DECODE_SLOT_SHARE of the TTFT target (in place)."""
    from roofplan.solver.serve_goodput import decode_goodput

    slack = None if ttft_s is None else DECODE_SLOT_SHARE * ttft_s
    r = decode_goodput(R.rate, R.batch, R.tpot_s, osl, p, slack)
    lost = R.ok & (r <= 0)
    _count(R.rejected, "percentile_sla", lost)
    R.rate = np.where(r > 0, r, R.rate)
    R.ok = R.ok & ~lost


def _pick(best_colo: dict | None, best_dis: dict | None) -> dict:
    """The better of the two modes (ties to colocated: one engine type, no KV transfer)."""
    if best_colo is not None and best_dis is not None:
        better_dis = best_dis["_key"] < best_colo["_key"] and not math.isclose(
            best_dis["_key"][0], best_colo["_key"][0], rel_tol=1e-9
        )
        return best_dis if better_dis else best_colo
    return best_dis or best_colo


def _headroom(best: dict, rate) -> dict:
    """How far the pick's operating rate is from the rate at which its P-th percentile stops meeting
    the targets (its goodput): with ``rate``, (goodput - rate) / rate; without, it runs at its
    goodput (headroom 0)."""
    g = float(best["goodput_rps"])
    op = float(rate) if rate is not None else g
    return {"rate_rps": op, "sla_limit_rps": g, "headroom_pct": 100.0 * (g - op) / op if op > 0 else None}


def _confirm(model, pools, eng, best, req, p, rate) -> dict:
    from roofplan.solver.serve_goodput import confirm

    hw_id = best["decode"]["hardware"]
    hw = next(pool.hw for pool in pools if pool.name == hw_id)
    return confirm(model, hw, eng, best, req, p, float(rate) if rate is not None else float(best["goodput_rps"]))


# ---------------------------------------------------------------------------------------------
# KV transfer and pruning
# ---------------------------------------------------------------------------------------------
def kv_transfer_time(model, P: RoleCandidates, D: RoleCandidates, pi, dj, *, isl, kv_dtype) -> np.ndarray:
    """Seconds to ship the KV cache of one prefill pass (B prompts) from prefill option ``pi`` to
    decode option ``dj`` (broadcast), the prefix-cache hit excluded (``P.prefix_hit``: the decode
    side holds the shared prefix). One point-to-point stream per KV shard, in parallel, each on
    its own device's link (NVLink inside a node, the NIC across nodes: Mooncake §3, DistServe §4.3
    place pairs to keep the transfer on NVLink when they fit in one node)."""
    pi = np.asarray(pi)
    dj = np.asarray(dj)
    nbytes = np.asarray(serve_model.kv_transfer_bytes(model, isl, kv_dtype, P.prefix_hit), dtype=float) * P.batch[pi]
    streams = np.minimum(P.streams(model)[pi], D.streams(model)[dj])
    per_stream = nbytes / np.maximum(streams, 1)
    hw_p, hw_d = P.pool.hw, D.pool.hw
    same_pool = P.pool is D.pool
    same_node = same_pool & (P.gpus[pi] + D.gpus[dj] <= hw_p.devices_per_node)
    t_intra = collective_time("p2p", per_stream, 2, hw_p, stride=1)
    t_inter = np.maximum(
        collective_time("p2p", per_stream, 2, hw_p, stride=hw_p.devices_per_node),
        collective_time("p2p", per_stream, 2, hw_d, stride=hw_d.devices_per_node),
    )
    return np.where(same_node, t_intra, t_inter)


def _nondominated(keys_min: list[np.ndarray], group: np.ndarray) -> np.ndarray:
    """Indices not dominated within their group, every key minimised (O(n^2), n small)."""
    n = len(group)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    K = np.stack([np.asarray(k, dtype=float) for k in keys_min], axis=1)
    keep = np.ones(n, dtype=bool)
    for start in range(0, n, 512):
        a = K[start : start + 512, None, :]
        le = np.all(K[None, :, :] <= a, axis=2)
        lt = np.any(K[None, :, :] < a, axis=2)
        same = group[None, :] == group[start : start + 512, None]
        dominated = np.any(le & lt & same, axis=1)
        # exact duplicates: keep the first
        eq = np.all(K[None, :, :] == a, axis=2) & same
        first = np.argmax(eq, axis=1)
        dup = first < np.arange(start, min(start + 512, n))
        keep[start : start + 512] = ~dominated & ~dup
    return np.nonzero(keep)[0]


def prune(model, R: RoleCandidates, use_ttft: bool) -> np.ndarray:
    """Indices of the role's SLA-meeting options that the ILP could ever need: fewer GPUs, more
    requests/s, more KV streams (faster transfer) and, for prefill under a TTFT target, lower TTFT
    and fewer prompts per pass (less KV to ship) are each better; an option worse or equal on all
    is dropped (substituting the dominating one keeps the counts and the budget and cannot lower
    the goodput)."""
    idx = np.nonzero(R.ok)[0]
    if len(idx) == 0:
        return idx
    # Cheap first pass: best rate per (gpus, streams[, ttft bucket]) group.
    gp = R.gpus[idx]
    st = R.streams(model)[idx]
    keys = [gp, -R.rate[idx], -st]
    if use_ttft:  # TTFT includes the KV transfer of the pass, which grows with its prompts
        keys += [R.ttft_s[idx], R.batch[idx]]
    group = np.zeros(len(idx), dtype=np.int64)
    if len(idx) > 4000:  # per-(gpus, streams) Pareto only, to bound the quadratic pass
        _, group = np.unique(np.stack([gp, st], axis=1), axis=0, return_inverse=True)
        group = group.reshape(-1)
        sub = _nondominated(keys, group)
        idx = idx[sub]
        keys = [k[sub] for k in keys]
        group = np.zeros(len(idx), dtype=np.int64)
    return idx[_nondominated(keys, group)]


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------
@dataclass
class ServePlan:
    """The chosen deployment, the alternatives and the search statistics. ``to_json()`` is the
    docs/SPEC.md §3.4 document (schema roofplan.plan.serve/v1)."""

    best: dict
    pareto: list
    searched: int
    search_time_s: float
    rejected: dict
    alternatives: dict
    request: dict
    feasible: int = 0
    launch: dict = field(default_factory=dict)  # engine -> {file name: text}
    frontier: dict = field(default_factory=dict)  # mode -> (x list, y list), for plots

    def to_json(self) -> dict:
        from roofplan.plain import with_timing

        return with_timing({
            "schema": SCHEMA,
            "inputs": self.request,
            "best": self.best,
            "alternatives": self.alternatives,
            "pareto": self.pareto,
            "searched": int(self.searched),
            "feasible": int(self.feasible),
            "rejected": dict(self.rejected),
            "search_time_s": float(self.search_time_s),
            "launch": self.launch,
        })


def _hf_id(model: ModelSpec) -> str:
    """The Hugging Face repository of a preset (from its ``source`` URL), else the model name."""
    m = re.search(r"huggingface\.co/([A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+)", model.source or "")
    return m.group(1) if m else model.name


def _inst(R: RoleCandidates, i: int, instances: int) -> dict:
    s = R.shapes
    d = {
        "tp": int(s.tp[i]),
        "pp": int(s.pp[i]),
        "ep": int(s.ep[i]),
        "dp": int(s.dp[i]),
        "batch": int(R.batch[i]),
        "instances": int(instances),
        "gpus_per_instance": int(R.gpus[i]),
        "hardware": R.pool.name,
        "devices_per_node": int(R.pool.hw.devices_per_node),
        "rate_rps_per_instance": float(R.rate[i]),
    }
    if R.chunk is not None:
        d["chunk"] = int(R.chunk[i])
        d["max_num_batched_tokens"] = int(R.chunk[i] + R.batch[i])
    if R.role in ("prefill", "colocated"):
        d["ttft_ms"] = float(R.ttft_s[i] * 1e3)
    if R.role in ("decode", "colocated"):
        d["tpot_ms"] = float(R.tpot_s[i] * 1e3)
    return d


def _summary(
    *, mode, prefill, decode, ratio, gpus, goodput, ttft_s, tpot_s, osl, price, kv_s=None, instances=None,
    power_w=None,
) -> dict:
    out_tps = goodput * osl
    d = {
        "mode": mode,
        "prefill": prefill,
        "decode": decode,
        "ratio": ratio,
        "ttft_ms": ttft_s * 1e3,
        "tpot_ms": tpot_s * 1e3,
        "output_tokens_per_s": out_tps,
        "output_tokens_per_s_per_gpu": out_tps / gpus if gpus else 0.0,
        "tokens_per_s_per_user": 1.0 / tpot_s if tpot_s > 0 else None,
        "goodput_rps": goodput,
        "gpus": int(gpus),
        "price_per_hour": price,
        "power_w": power_w,
        "joules_per_output_token": power_w / out_tps if power_w is not None and out_tps > 0 else None,
    }
    if kv_s is not None:
        d["kv_transfer_ms"] = kv_s * 1e3
    if instances is not None:
        d["instances"] = int(instances)
    return d


def _best_colocated(cands: list[RoleCandidates], budget: Budget, rate, objective, osl) -> dict | None:
    """k identical colocated instances on one pool: k = floor(cap / gpus) (throughput) or the
    fewest k meeting ``rate``."""
    best, best_key = None, None
    for R in cands:
        idx = np.nonzero(R.ok)[0]
        if len(idx) == 0:
            continue
        cap = budget.cap(R.pool.name)
        g = R.gpus[idx].astype(np.int64)
        r = R.rate[idx]
        price = R.pool.hw.price_per_hour
        unit = _unit_cost(R, objective)[idx]
        if rate is None:
            k = cap // g
            good = k >= 1
            G = k * r
            # maximise goodput, then fewest GPUs
            key = np.where(good, -G, np.inf)
            tie = np.where(good, k * g, np.iinfo(np.int64).max)
            order = np.lexsort((tie, key))
            j = order[0]
            if not good[j]:
                continue
            cand_key = (-float(G[j]), int(k[j] * g[j]))
        else:
            # clipped before the int cast: a huge --rate (1e308) once overflowed it into garbage
            with np.errstate(over="ignore", divide="ignore"):
                k = np.minimum(np.ceil(rate / r - 1e-12), cap + 1).astype(np.int64)
            k = np.maximum(k, 1)
            good = k * g <= cap
            if not np.any(good):
                continue
            cost = k * unit
            key = np.where(good, cost, np.inf)
            order = np.lexsort((np.where(good, k * g, np.iinfo(np.int64).max), key))
            j = order[0]
            cand_key = (float(cost[j]), int(k[j] * g[j]))
        if best_key is None or cand_key < best_key:
            i = int(idx[j])
            kk = int(k[j])
            inst = _inst(R, i, kk)
            best_key = cand_key
            best = _summary(
                mode="colocated",
                prefill=inst,
                decode=dict(inst),
                ratio=None,
                gpus=kk * int(g[j]),
                goodput=kk * float(R.rate[i]),
                ttft_s=float(R.ttft_s[i]),
                tpot_s=float(R.tpot_s[i]),
                osl=osl,
                price=(kk * int(g[j]) * price) if price else None,
                instances=kk,
                power_w=None if R.power_w is None else kk * float(R.power_w[i]),
            )
            best["_key"] = cand_key
            best["_ref"] = (R, i)
    return best


def plan_serving(
    model,
    hw,
    *,
    gpus,
    isl: int,
    osl: int,
    ttft_ms: float | None = None,
    tpot_ms: float | None = None,
    rate: float | None = None,
    mode: str = "auto",
    engine: str = "generic",
    dtype: str = "bf16",
    kv_dtype: str | None = None,
    calibration=None,
    objective: str = "gpus",
    emit_launch: bool = True,
    speculative=None,
    prefix_hit=None,
    expert_skew: float = 1.0,
    slo_percentile: float | None = None,
) -> ServePlan:
    """Search serving deployments of ``model`` on ``gpus`` devices of ``hw`` (docs/SPEC.md §3.4).

    Without ``ttft_ms``/``tpot_ms``/``rate`` the deployment with the highest throughput for the
    budget wins. ``rate`` (requests/s) asks for the fewest GPUs (``objective="gpus"``) or the lowest
    price per hour (``objective="cost"``) that sustain it. Raises :class:`InfeasibleError` when no
    deployment meets the targets, naming the tightest TTFT and TPOT any deployment reaches.
    ``speculative`` (SpecDecode), ``prefix_hit`` (tokens or a fraction of isl) and ``expert_skew``
    (max/mean routed tokens per EP rank) model speculative decoding, prefix caching and skewed
    expert load for colocated, prefill and decode instances; with ``slo_percentile`` only
    disaggregated deployments are searched (the percentile colocated model does not take them).

    ``slo_percentile`` (0-100): the targets hold for that percentile of requests under Poisson
    arrivals, and deployments are ranked by goodput from the queueing model
    (:mod:`roofplan.solver.serve_goodput`); the pick is then run through the simulator
    (``best["simulated"]``) and its headroom reported (``best["headroom"]``). None: the
    deterministic operating-point model of the module docstring.
    """
    t0 = time.perf_counter()
    from roofplan.hardware.engines import load_engine
    from roofplan.models.loader import load_model

    model = model if isinstance(model, ModelSpec) else load_model(model)
    pools = parse_pools(hw, calibration)
    budget = parse_budget(gpus, pools)
    _check_request(model, isl, osl, ttft_ms, tpot_ms, rate, mode, dtype, kv_dtype)
    if objective not in OBJECTIVES:
        raise InputError("objective", objective, ", ".join(OBJECTIVES))
    if slo_percentile is not None and (isinstance(slo_percentile, bool) or not isinstance(
            slo_percentile, (int, float)) or not 0 < slo_percentile < 100):
        raise InputError("slo_percentile", slo_percentile, "a percentile between 0 and 100 (e.g. 90)")
    eng = load_engine(engine, calibration)
    objective = _effective_objective(pools, objective)
    mixed = len(pools) > 1
    if mixed and mode == "colocated":
        raise InputError("mode", mode, "auto or disagg with separate prefill and decode hardware")
    ttft_s = ttft_ms / 1e3 if ttft_ms is not None else None
    tpot_s = tpot_ms / 1e3 if tpot_ms is not None else None
    common = dict(dtype=dtype, kv_dtype=kv_dtype, engine_name=eng.name)
    features = None
    if speculative is not None or prefix_hit is not None or expert_skew != 1.0:
        from roofplan.costmodel.serve_features import resolve_prefix_hit

        features = (speculative, resolve_prefix_hit(prefix_hit, isl), float(expert_skew))
        if slo_percentile is not None:  # the percentile (queueing) colocated model does not take them
            if mode == "colocated":
                raise InputError("mode", mode, "auto or disagg under a percentile target (--slo-percentile 0 "
                                 "plans colocated with speculative decoding, prefix caching or expert skew)")
            mode = "disagg"

    searched = 0
    rejected: dict = {}
    colo: list[RoleCandidates] = []
    pre: list[RoleCandidates] = []
    dec: list[RoleCandidates] = []

    def merge(rej: dict) -> None:
        for k, v in rej.items():
            rejected[k] = rejected.get(k, 0) + v

    for pool in pools:
        shapes = instance_shapes(model, pool.hw.devices_per_node, budget.cap(pool.name), eng.name)
        merge(shapes.rejected)
        if len(shapes) == 0:
            continue
        if mode in ("auto", "colocated") and not mixed:
            evaluate = evaluate_colocated if slo_percentile is None else evaluate_colocated_percentile
            extra = {"features": features} if slo_percentile is None else {"p": slo_percentile}
            R = evaluate(model, pool, eng, shapes, isl=isl, osl=osl, ttft_s=ttft_s, tpot_s=tpot_s, **common, **extra)
            colo.append(R)
        if mode in ("auto", "disagg"):
            if "prefill" in pool.roles:
                R = evaluate_prefill(model, pool, eng, shapes, isl=isl, ttft_s=ttft_s, features=features, **common)
                if slo_percentile is not None:
                    _queue_prefill(model, R, isl=isl, kv_dtype=kv_dtype, p=slo_percentile, ttft_s=ttft_s)
                pre.append(R)
            if "decode" in pool.roles:
                R = evaluate_decode(model, pool, eng, shapes, isl=isl, osl=osl, tpot_s=tpot_s, features=features,
                                    **common)
                if slo_percentile is not None:
                    _queue_decode(R, osl=osl, p=slo_percentile, ttft_s=ttft_s)
                dec.append(R)
    for R in colo + pre + dec:
        searched += R.searched
        merge(R.rejected)

    best_colo = _best_colocated(colo, budget, rate, objective, osl) if colo else None
    best_dis, pd_info = (None, {})
    if pre and dec:
        best_dis, pd_info = _best_disagg(
            model,
            pre,
            dec,
            budget,
            isl=isl,
            osl=osl,
            ttft_s=ttft_s,
            rate=rate,
            objective=objective,
            kv_dtype=kv_dtype,
        )

    feasible = int(sum(np.count_nonzero(R.ok) for R in colo + pre + dec))
    if best_colo is None and best_dis is None:
        _raise_infeasible(
            model, pools, budget, colo, pre, dec, ttft_s, tpot_s, rate, mode, isl, osl, kv_dtype, eng, common
        )

    best = _pick(best_colo, best_dis)
    simulated = None
    if slo_percentile is not None:
        req = {"isl": isl, "osl": osl, "dtype": dtype, "kv_dtype": kv_dtype, "ttft_ms": ttft_ms, "tpot_ms": tpot_ms}
        if features is not None:  # speculative decoding, prefix caching and skew, simulated as modelled
            req.update(speculative=features[0], prefix_hit=features[1], expert_skew=features[2])
        first, tried_dis, colo_failed = None, False, 0
        for _ in range(CONFIRM_TRIES):  # the top candidates, until the simulator confirms one
            simulated = _confirm(model, pools, eng, best, req, slo_percentile, rate)
            first = first or (best, simulated, best_colo)
            if simulated["meets_sla"]:
                break
            if best is best_dis:
                tried_dis = True
            else:  # drop this colocated candidate
                colo_failed += 1
                R, i = best_colo["_ref"]
                R.ok[i] = False
                best_colo = _best_colocated(colo, budget, rate, objective, osl)
            if tried_dis or best_dis is None:
                best = best_colo
            elif colo_failed >= 2:  # the colocated model misses: give the disaggregated pick its turn
                best = best_dis
            else:
                best = _pick(best_colo, best_dis)
            if best is None:
                break
        if not simulated["meets_sla"]:
            best, simulated, best_colo = first  # none confirmed: the analytic pick, flagged
    alternatives = {}
    for name, b in (("colocated", best_colo), ("disagg", best_dis)):
        if b is not None:
            alternatives[name] = {k: v for k, v in b.items() if not k.startswith("_")}
    best = {k: v for k, v in best.items() if not k.startswith("_")}
    best["placement"] = placement(best)
    if pd_info:
        best["ilp"] = pd_info
    if slo_percentile is not None:
        best["slo_percentile"] = float(slo_percentile)
        best["headroom"] = _headroom(best, rate)
        best["simulated"] = simulated

    front, series = _pareto(model, colo, pre, dec, budget, osl=osl, isl=isl, ttft_s=ttft_s, kv_dtype=kv_dtype)
    request = {
        "model": model.name,
        "model_id": _hf_id(model),
        "moe": model.moe is not None,
        "hardware": ",".join(f"{p.name}:{r}" for p in pools for r in p.roles if r != "colocated")
        if mixed
        else pools[0].name,
        "gpus": budget.total if budget.total is not None else dict(budget.per_pool),
        "isl": isl,
        "osl": osl,
        "ttft_ms": ttft_ms,
        "tpot_ms": tpot_ms,
        "rate": rate,
        "mode": mode,
        "engine": eng.name,
        "dtype": dtype,
        "kv_dtype": kv_dtype,
        "objective": objective,
        "memory_reserve_fraction": eng.memory_reserve_fraction,
        "reserve_of_free": eng.reserve_of_free,
        "slo_percentile": slo_percentile,
    }
    if features:
        request["speculative"] = features[0].to_json() if features[0] is not None else None
        request["prefix_hit_tokens"] = features[1]
        request["expert_skew"] = features[2]
    plan = ServePlan(
        best=best,
        pareto=front,
        searched=searched,
        search_time_s=time.perf_counter() - t0,
        rejected=rejected,
        alternatives=alternatives,
        request=request,
        feasible=feasible,
        frontier=series,
    )
    if emit_launch:
        plan.launch = emit_launch_files(plan.best, plan.request)
    plan.search_time_s = time.perf_counter() - t0
    return plan


def _effective_objective(pools: list[Pool], objective: str) -> str:
    """Price only when every pool has one (catalog ``price_per_hour``); else GPUs. Energy needs
    every pool's power model (an InputError naming the catalog field otherwise)."""
    if objective == "energy":
        for p in pools:
            require_power(p.hw)
        return "energy"
    if objective == "cost" and all(p.hw.price_per_hour for p in pools):
        return "cost"
    return "gpus"


def _unit_cost(R: RoleCandidates, objective: str) -> np.ndarray:
    """What one instance of each candidate costs under ``objective``: $/h, W or GPUs."""
    if objective == "energy" and R.power_w is not None:
        return np.asarray(R.power_w, dtype=float)
    if objective == "cost" and R.pool.hw.price_per_hour:
        return R.gpus * float(R.pool.hw.price_per_hour)
    return R.gpus.astype(float)


def _flatten(model, cands: list[RoleCandidates], use_ttft: bool, objective: str = "gpus"):
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
        opts.price = np.array([_unit_cost(R, objective)[i] for R, i in refs], dtype=float)
    return opts, refs


def _kv_matrix(model, prefs, drefs, *, isl, kv_dtype) -> np.ndarray:
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


def _best_disagg(model, pre, dec, budget, *, isl, osl, ttft_s, rate, objective, kv_dtype):
    """Prune each role, build the pair-compatibility matrix (TTFT incl. KV transfer) and solve the
    prefill:decode ILP."""
    P, prefs = _flatten(model, pre, ttft_s is not None, objective)
    D, drefs = _flatten(model, dec, False, objective)
    info = {"prefill_options": len(prefs), "decode_options": len(drefs)}
    if P is None or D is None:
        return None, info
    kv = _kv_matrix(model, prefs, drefs, isl=isl, kv_dtype=kv_dtype)
    ttft = np.array([R.ttft_s[i] for R, i in prefs])[:, None] + kv
    compatible = ttft <= ttft_s if ttft_s is not None else np.ones_like(kv, dtype=bool)
    info["compatible_pairs"] = int(np.count_nonzero(compatible))
    t0 = time.perf_counter()
    sol = solve_pd(
        P, D, compatible, budget, target_rps=rate, objective="cost" if objective == "energy" else objective,
        time_limit_s=ILP_TIME_LIMIT_S,
    )
    info["solve_time_s"] = time.perf_counter() - t0
    if sol is None:
        return None, info
    info["optimal"] = bool(sol.optimal)
    Rp, i = prefs[sol.prefill]
    Rd, j = drefs[sol.decode]
    kv_s = float(kv[sol.prefill, sol.decode])
    pinst = _inst(Rp, i, sol.x)
    dinst = _inst(Rd, j, sol.y)
    hp, hd = Rp.pool.hw.price_per_hour, Rd.pool.hw.price_per_hour
    price = sol.price if objective != "energy" else (
        sol.x * int(Rp.gpus[i]) * hp + sol.y * int(Rd.gpus[j]) * hd if hp and hd else None)
    power = (None if Rp.power_w is None or Rd.power_w is None
             else sol.x * float(Rp.power_w[i]) + sol.y * float(Rd.power_w[j]))
    best = _summary(
        mode="disagg",
        prefill=pinst,
        decode=dinst,
        ratio=sol.ratio,
        gpus=sol.gpus,
        goodput=sol.goodput_rps,
        ttft_s=float(Rp.ttft_s[i]) + kv_s,
        tpot_s=float(Rd.tpot_s[j]),
        osl=osl,
        price=price,
        kv_s=kv_s,
        power_w=power,
    )
    if rate is None:
        best["_key"] = (-sol.goodput_rps, sol.gpus)
    else:
        best["_key"] = (
            (sol.price if objective in ("cost", "energy") and sol.price is not None else float(sol.gpus)),
            sol.gpus,
        )
    return best, info


def _pareto(model, colo, pre, dec, budget, *, osl, isl, ttft_s, kv_dtype):
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
    _, prefs = _flatten(model, pre, ttft_s is not None) if pre else (None, [])
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
            point["instance"] = _inst(R, i, 1)
        else:
            Rp, ip = pref
            point["ttft_ms"] = float((Rp.ttft_s[ip] + kv_s) * 1e3)
            point["prefill"] = _inst(Rp, ip, 1)
            point["decode"] = _inst(R, i, 1)
            ratio = R.rate[i] / Rp.rate[ip]  # prefill instances per decode instance (fluid)
            point["prefill_per_decode"] = float(ratio)
        out.append(point)
    return out, series


def _raise_infeasible(
    model, pools, budget, colo, pre, dec, ttft_s, tpot_s, rate, mode, isl, osl, kv_dtype, eng, common
):
    """Explain why nothing was chosen with the smallest change that would fit."""
    hw_txt = " + ".join(p.name for p in pools)
    cap_txt = str(budget.total) if budget.total is not None else "+".join(map(str, budget.per_pool.values()))
    any_fit = any(np.any(R.fits) for R in colo + pre + dec)
    if not any_fit:
        need = _min_gpus_to_fit(model, pools, eng, isl=isl, osl=osl, **common)
        what = (
            f"{model.name} ({model.params_total / 1e9:.0f}B parameters) does not fit on {cap_txt} x {hw_txt}"
        )
        if need is None:
            raise InfeasibleError(what, "try a smaller --dtype/--kv-dtype or shorter --isl/--osl")
        raise InfeasibleError(
            what,
            _use_gpus(need, "the smallest instance that fits needs")
            + (
                " or more (disaggregation needs one prefill and one decode instance)"
                if mode == "disagg"
                else ""
            ),
        )
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
    best_ttft = min(ttfts) * 1e3 if ttfts else None
    best_tpot = min(tpots) * 1e3 if tpots else None
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
        per_gpu = _best_rate_per_gpu(model, colo, pre, dec, ttft_s, isl, kv_dtype)
        need = math.ceil(rate / per_gpu) if per_gpu else None
        dpn = max(p.hw.devices_per_node for p in pools)
        if need and need > dpn:  # whole nodes
            need = math.ceil(need / dpn) * dpn
        msg = f"no deployment of {model.name} on {cap_txt} x {hw_txt} sustains {rate:g} requests/s" + (
            f" within {' and '.join(targets)}" if targets else ""
        )
        raise InfeasibleError(
            msg,
            (f"about {need} GPUs are needed (--gpus {need}) or a lower --rate" if need <= MAX_SERVE_GPUS else
             f"about {need:.3g} GPUs would be needed, more than the {MAX_SERVE_GPUS:,} a plan can use: "
             "lower --rate") if need else "lower --rate",
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
            _use_gpus(pair, "the smallest prefill + decode pair that meets the targets needs")
            + ("" if mode == "disagg" or not colo else " or relax the targets for colocated serving"),
            details,
        )
    hint = ("the tightest reachable are " + " and ".join(reach) + " (each on its own)") if reach else ""
    hint += "; relax --ttft-ms/--tpot-ms or add GPUs" if hint else "relax --ttft-ms/--tpot-ms or add GPUs"
    raise InfeasibleError(msg, hint, details)


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
    _, prefs = _flatten(model, pre, ttft_s is not None) if pre else (None, [])
    _, drefs = _flatten(model, dec, False) if dec else (None, [])
    if prefs and drefs:
        kv = _kv_matrix(model, prefs, drefs, isl=isl, kv_dtype=kv_dtype)
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
        cfg = _configs(shapes, np.ones(len(shapes), dtype=np.int64), isl, osl, dtype, kv_dtype, engine_name)
        fits = np.asarray(serve_model.serve_step(model, pool.hw, cfg, eng).fits, dtype=bool)
        if np.any(fits):
            g = int(np.min(shapes.gpus[fits]))
            best = g if best is None else min(best, g)
    return best


def placement(best: dict) -> list[dict]:
    """Instances packed onto nodes, first fit by decreasing size: an instance of at most one node
    stays inside one node, larger ones take whole nodes, and with node sizes that are multiples of
    the instance sizes no node is left part-empty (the deployment uses ceil(gpus / node) nodes).
    Equal-size prefill and decode instances are interleaved in proportion so P/D neighbours share a
    node's NVLink for the KV transfer, as the transfer time assumed when both fit in one node.
    Node numbers are global; each pool (hardware type) has its own nodes."""
    if best["mode"] == "colocated":
        groups = [("colocated", best["prefill"], best["instances"])]
    else:
        groups = [
            ("prefill", best["prefill"], best["prefill"]["instances"]),
            ("decode", best["decode"], best["decode"]["instances"]),
        ]
    order = sorted(
        (-int(inst["gpus_per_instance"]), (k + 0.5) / n, r, k)
        for r, (role, inst, n) in enumerate(groups)
        for k in range(n)
    )
    pools: dict[str, list] = {g[1]["hardware"]: [] for g in groups}  # prefill pool first
    for _, _, r, k in order:
        pools.setdefault(groups[r][1]["hardware"], []).append((r, k))
    out, node_base = [], 0
    for hw_id, items in pools.items():
        free: list[int] = []  # free GPUs per node of this pool (first fit)
        for r, k in items:
            role, inst, _ = groups[r]
            g, dpn = int(inst["gpus_per_instance"]), int(inst["devices_per_node"])
            if g <= dpn:
                node = next((n for n, f in enumerate(free) if f >= g), None)
                if node is None:
                    free.append(dpn)
                    node = len(free) - 1
                start = dpn - free[node]
                free[node] -= g
                entry_nodes, entry_gpus = [node_base + node], [list(range(start, start + g))]
            else:
                n_nodes = math.ceil(g / dpn)
                first = len(free)
                free.extend([0] * n_nodes)
                entry_nodes = [node_base + first + t for t in range(n_nodes)]
                entry_gpus = [list(range(min(dpn, g - t * dpn))) for t in range(n_nodes)]
            out.append(
                {"role": role, "index": k, "hardware": hw_id, "nodes": entry_nodes, "gpus": entry_gpus}
            )
        node_base += len(free)
    out.sort(key=lambda e: (("prefill", "decode", "colocated").index(e["role"]), e["index"]))
    return out


def emit_launch_files(best: dict, request: dict) -> dict:
    """Launch files of every serving engine for the chosen deployment: {engine: {file: text}}."""
    from roofplan.launch import dynamo, sglang, trtllm, vllm

    return {
        "vllm": vllm.emit(best, request),
        "sglang": sglang.emit(best, request),
        "trtllm": trtllm.emit(best, request),
        "dynamo": dynamo.emit(best, request),
    }
