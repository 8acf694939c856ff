"""Candidates of one serving role (prefill, decode or colocated) on one pool, evaluated as arrays.

Every candidate of a role is evaluated in one vectorised cost-model call
(:func:`roofplan.costmodel.serve.serve_step`); rejections are counted by reason. Also here: the
KV-cache transfer between a prefill and a decode candidate and the dominance pruning that keeps
the disaggregation program small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel.collectives import p2p_between
from roofplan.costmodel.power import serve_power_w
from roofplan.models.spec import ModelSpec
from roofplan.solver.colocated import colocated_metrics
from roofplan.solver.serve_request import Pool
from roofplan.solver.serve_space import (
    CHUNK_GRID,
    MAX_PREFILL_TOKENS,
    Shapes,
    batch_grid,
    cross,
)


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
    free_bytes: np.ndarray | None = None  # device memory each candidate leaves free
    batch_is_cap: bool = False  # batch is the engine's sequence cap, not requests in flight (percentile)
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


def serve_configs(shapes: Shapes, batch, isl, osl, dtype, kv_dtype, engine_name):
    """The cost model's ServeConfigs of ``shapes`` at ``batch`` (one entry per candidate)."""
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

    return serve_step_ext(
        model, hw, cfg, engine, spec=features[0], prefix_hit=features[1], expert_skew=features[2]
    )


def evaluate_prefill(
    model,
    pool: Pool,
    engine,
    shapes: Shapes,
    *,
    isl,
    dtype,
    kv_dtype,
    engine_name,
    ttft_s=None,
    features=None,
) -> RoleCandidates:
    """Prefill-only instances: ``B`` prompts per pass (B·isl <= MAX_PREFILL_TOKENS, or one prompt).

    TTFT of the pass = the cost model's prefill of B prompts (first token included) plus the engine's
    per-request API-server time (``request_overhead_s``, as in the load model). Throughput:
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
    cfg = serve_configs(s, B, isl, 1, dtype, kv_dtype, engine_name)
    arr = _serve_arrays(model, pool.hw, cfg, engine, features)
    gpu_s = np.asarray(arr.ttft_s, dtype=float)
    # the client's TTFT also holds the API server's per-request time, which runs beside the GPU
    # (it delays each request, not the passes: the rate is the GPU's)
    ttft = gpu_s + float(engine.request_overhead_s)
    fits = np.asarray(arr.fits, dtype=bool)
    m = np.minimum(B, s.pp).astype(float)
    rate = B * (m + s.pp - 1.0) / (m * gpu_s)
    ok = _within_sla(rejected, fits, ttft, ttft_s, "ttft_sla")
    power = _instance_power(pool, s, arr.prefill_compute_s, arr.prefill_memory_s, gpu_s)
    R = _one_phase("prefill", pool, s, B, ttft, np.full(len(B), np.nan), rate, fits, ok, rejected, power)
    R.prefix_hit = int(features[1]) if features else 0
    return R


def _one_phase(role, pool, s, B, ttft, tpot, rate, fits, ok, rejected, power) -> RoleCandidates:
    """Candidates of a prefill or decode role (no prefill chunk); searched includes the
    candidates the attention-DP balance removed."""
    return RoleCandidates(
        role,
        pool,
        s,
        B,
        None,
        ttft,
        tpot,
        rate,
        fits,
        ok,
        len(B) + rejected.get("dp_balance", 0),
        rejected,
        power,
    )


def _instance_power(pool: Pool, s: Shapes, compute_s, memory_s, total_s) -> np.ndarray | None:
    """W per instance: its GPUs at the power model's draw for these iteration parts."""
    per_gpu = serve_power_w(pool.hw, compute_s, memory_s, total_s)
    return None if per_gpu is None else per_gpu * s.gpus


def _within_sla(rejected: dict, fits, latency, limit, reason: str):
    """Candidates that fit in memory and meet ``limit`` (if any); rejections counted by reason."""
    _count(rejected, "oom", ~fits)
    return _meets(rejected, fits, latency, limit, reason)


def _meets(rejected: dict, ok, latency, limit, reason: str):
    """``ok`` narrowed to the candidates whose ``latency`` is within ``limit`` (all when there is
    no limit); the ones it drops are counted under ``reason``."""
    if limit is None:
        return ok.copy()
    _count(rejected, reason, ok & (latency > limit))
    return ok & (latency <= limit)


def evaluate_decode(
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
    tpot_s=None,
    features=None,
) -> RoleCandidates:
    """Decode-only instances at concurrency ``B``: TPOT = the cost model's mean decode step over the
    O steps; one instance finishes B requests every O·TPOT seconds."""
    rejected: dict = {}
    s, (B,) = cross(shapes, batch_grid())
    s, (B,) = _balanced_dp(s, [B], rejected)
    cfg = serve_configs(s, B, isl, osl, dtype, kv_dtype, engine_name)
    arr = _serve_arrays(model, pool.hw, cfg, engine, features)
    tpot = np.asarray(arr.tpot_s, dtype=float)
    fits = np.asarray(arr.fits, dtype=bool)
    rate = B / (osl * tpot)
    ok = _within_sla(rejected, fits, tpot, tpot_s, "tpot_sla")
    power = _instance_power(pool, s, arr.decode_compute_s, arr.decode_memory_s, tpot)
    return _one_phase("decode", pool, s, B, np.full(len(B), np.nan), tpot, rate, fits, ok, rejected, power)


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
    """Colocated instances (shape x concurrency x prefill chunk) in the chunked-prefill steady
    state of :mod:`roofplan.solver.colocated`, with speculative decoding / prefix caching / expert
    skew when ``features`` is given."""
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
    ok = _meets(rejected, m.fits, m.ttft_s, ttft_s, "ttft_sla")
    ok = _meets(rejected, ok, m.tpot_s, tpot_s, "tpot_sla")
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
    p,
    ttft_s=None,
    tpot_s=None,
    features=None,
) -> RoleCandidates:
    """Colocated candidates (shape x token budget) rated by their P-th percentile goodput under
    Poisson arrivals (:func:`roofplan.solver.serve_goodput.colocated_goodput`). ``batch`` is the
    saturation batch (the engine's sequence cap that does not limit the goodput), ``chunk`` the
    rest of the token budget; TTFT/TPOT are the P-th percentiles at the goodput."""
    from roofplan.solver.serve_goodput import colocated_goodput

    rejected: dict = {}
    s, budget, g, cap, t1, t2, d_sat, fits = colocated_goodput(
        model,
        pool,
        engine,
        shapes,
        isl=isl,
        osl=osl,
        dtype=dtype,
        kv_dtype=kv_dtype,
        engine_name=engine_name,
        p=p,
        ttft_s=ttft_s,
        tpot_s=tpot_s,
        features=features,
    )
    batch = np.maximum(np.ceil(d_sat), 1).astype(np.int64)
    batch = batch + (-batch) % s.dp  # whole requests per attention-DP rank
    chunk = budget - batch
    roomy = chunk >= 1
    _count(rejected, "oom", ~fits)
    _count(rejected, "chunk_budget", fits & ~roomy)
    # a goodput whose percentiles are not finite (a queue at saturation) meets no target
    meets = (g > 0) & np.isfinite(t1) & np.isfinite(t2)
    _count(rejected, "percentile_sla", fits & roomy & ~meets)
    ok = fits & roomy & meets
    chunk = np.maximum(chunk, 1)
    return RoleCandidates(
        "colocated",
        pool,
        s,
        batch,
        chunk,
        t1,
        t2,
        g,
        fits & roomy,
        ok,
        len(g),
        rejected,
        _saturated_power(
            model,
            pool,
            engine,
            s,
            batch,
            chunk,
            isl=isl,
            osl=osl,
            dtype=dtype,
            kv_dtype=kv_dtype,
            engine_name=engine_name,
        ),
        batch_is_cap=True,
    )


def _saturated_power(model, pool: Pool, engine, s: Shapes, batch, chunk, **kw) -> np.ndarray | None:
    """W per colocated instance kept busy at ``batch`` requests with ``chunk``-token prefill chunks
    (the steady state of :mod:`roofplan.solver.colocated`), as for prefill and decode instances: an
    instance loaded below that draws less, so J/token is an upper bound there."""
    if serve_power_w(pool.hw, 0.0, 0.0, 1.0) is None:
        return None
    m = colocated_metrics(model, pool.hw, engine, s, batch, chunk, **kw)
    return _instance_power(pool, s, m.busy_s, 0.0, m.tpot_s)


def queue_prefill(model, R: RoleCandidates, *, isl, kv_dtype, p, ttft_s) -> None:
    """Limit each prefill candidate's rate to its P-th percentile TTFT goodput (M/D/1 queue in
    front of it; KV transfer to an instance of its own shape), in place."""
    from roofplan.solver.serve_goodput import prefill_goodput

    idx = np.arange(len(R.batch))
    kv = kv_transfer_time(model, R, R, idx, idx, isl=isl, kv_dtype=kv_dtype)
    r = prefill_goodput(R.rate, R.ttft_s, kv, p, None if ttft_s is None else (1 - DECODE_SLOT_SHARE) * ttft_s)
    _cap_rate(R, r)


#: Share of the TTFT target a request may wait for a decode slot (disaggregated, percentile SLA).
DECODE_SLOT_SHARE = 0.1


def queue_decode(R: RoleCandidates, *, osl, p, ttft_s) -> None:
    """Limit each decode candidate's rate so that its P-th percentile slot wait stays within
    DECODE_SLOT_SHARE of the TTFT target (in place)."""
    from roofplan.solver.serve_goodput import decode_goodput

    slack = None if ttft_s is None else DECODE_SLOT_SHARE * ttft_s
    r = decode_goodput(R.rate, R.batch, R.tpot_s, osl, p, slack)
    _cap_rate(R, r)


def _cap_rate(R: RoleCandidates, goodput) -> None:
    """Replace each candidate's rate by its percentile ``goodput`` where that is positive; the
    candidates with none (no rate meets the percentile target) are no longer ok (in place)."""
    lost = R.ok & (goodput <= 0)
    _count(R.rejected, "percentile_sla", lost)
    R.rate = np.where(goodput > 0, goodput, R.rate)
    R.ok = R.ok & ~lost


def kv_transfer_time(model, P: RoleCandidates, D: RoleCandidates, pi, dj, *, isl, kv_dtype) -> np.ndarray:
    """Seconds to ship the KV cache of one prefill pass (B prompts) from prefill option ``pi`` to
    decode option ``dj`` (broadcast), the prefix-cache hit excluded (``P.prefix_hit``: the decode
    side holds the shared prefix). One point-to-point stream per KV shard, in parallel, each on
    its own device's link (NVLink inside a node, the NIC across nodes: Mooncake §3, DistServe §4.3
    place pairs to keep the transfer on NVLink when they fit in one node)."""
    pi = np.asarray(pi)
    dj = np.asarray(dj)
    nbytes = (
        np.asarray(serve_model.kv_transfer_bytes(model, isl, kv_dtype, P.prefix_hit), dtype=float)
        * P.batch[pi]
    )
    streams = np.minimum(P.streams(model)[pi], D.streams(model)[dj])
    per_stream = nbytes / np.maximum(streams, 1)
    same_node = (P.pool is D.pool) & (P.gpus[pi] + D.gpus[dj] <= P.pool.hw.devices_per_node)
    return p2p_between(per_stream, P.pool.hw, D.pool.hw, same_node)


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


def unit_cost(R: RoleCandidates, objective: str) -> np.ndarray:
    """What one instance of each candidate costs under ``objective``: $/h, W or GPUs."""
    if objective == "energy" and R.power_w is not None:
        return np.asarray(R.power_w, dtype=float)
    if objective == "cost" and R.pool.hw.price_per_hour:
        return R.gpus * float(R.pool.hw.price_per_hour)
    return R.gpus.astype(float)


def free_bytes(model, R: RoleCandidates, engine, *, isl, osl, dtype, kv_dtype, engine_name) -> np.ndarray:
    """Device memory each candidate leaves free: HBM less what the engine holds, which is its
    preallocated pool (weights, KV cache, activation workspace: the ``usable`` memory of
    :func:`roofplan.costmodel.serve.serve_memory`) or, should the candidate's batch need more,
    that (weights in HBM, the KV cache of its batch, activations)."""
    out = 1 if R.role == "prefill" else osl
    cfg = serve_configs(R.shapes, R.batch, isl, out, dtype, kv_dtype, engine_name)
    mem = serve_model.serve_memory(model, R.pool.hw, engine, cfg)
    # a sequence cap holds no memory itself: the engine admits what its pool holds
    held = mem.usable if R.batch_is_cap else np.maximum(mem.usable, mem.weights_hbm + mem.kv + mem.act)
    return np.asarray(mem.capacity - held, dtype=float)


def apply_limits(R: RoleCandidates, free: np.ndarray, headroom_bytes: float, constraints=()) -> None:
    """Keep the candidates that leave ``headroom_bytes`` free and satisfy the user's constraints
    for this role, in place; among candidates otherwise accepted the others are counted as
    ``constraint`` and ``headroom``."""
    from roofplan.solver import constraints as cons

    R.free_bytes = free
    mine = tuple(c for c in constraints if c.role in (None, R.role))
    cols = {
        "tp": R.shapes.tp,
        "pp": R.shapes.pp,
        "ep": R.shapes.ep,
        "dp": R.shapes.dp,
        "batch": R.batch,
        "chunk": R.chunk if R.chunk is not None else np.zeros_like(R.batch),
    }
    allowed = cons.mask(mine, cols)
    _count(R.rejected, "constraint", R.ok & ~allowed)
    short = free < headroom_bytes
    _count(R.rejected, "headroom", R.ok & allowed & short)
    R.fits = R.fits & allowed & ~short
    R.ok = R.ok & R.fits
