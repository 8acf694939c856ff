"""Serving under load: continuous batching with chunked prefill at a concurrency or a request rate.

One colocated instance runs an engine loop (vLLM V1, SGLang, TRT-LLM inflight batching; Orca, Yu et
al. OSDI 2022; Sarathi-Serve, Agrawal et al. OSDI 2024): every iteration decodes one token for each
of ``d`` running requests and, while prompts are waiting, also carries up to ``budget - d`` prompt
tokens (the token budget ``max_num_batched_tokens``). Iteration times come from the cost model's
mixed-batch :func:`~roofplan.costmodel.serve.step_time` through :func:`round_time`, the one serving
step function the analytic model, the simulator (:mod:`roofplan.costmodel.serve_sim`) and the
planner share.

Steady state of one instance at arrival rate ``lam`` (requests/s), lengths L (prompt) and O (output):

* decode batch (Little's law): d = lam · (E[O] - 1) · t̄, with t̄ the mean iteration time;
* mixed iterations: each arrival needs ceil(L / budget) chunked iterations when alone; when arrivals
  outpace iterations, every iteration is mixed. Mixed iterations per second
  m = min(1 / t̄, lam · E[ceil(L / b)]), fraction f = m · t̄ of iterations, carrying c = lam·E[L]/m
  prompt tokens each; t̄ = f · t_mix(c) + (1 - f) · t_dec;
* the prefill queue is an M/G/1 server of prompt tokens at the full-budget rate (b - d) / t_mix(b):
  service S = L · t_mix(b) / (b - d), utilisation rho = lam · E[S], mean wait by
  Pollaczek-Khinchine W = lam · E[S²] / (2 (1 - rho)) (Kleinrock, Queueing Systems I, §5.6).
  The wait of a request is 0 with probability 1 - rho and else exponential with mean W / rho (the
  standard exponential tail of M/G/1 waits, exact for M/M/1 and in heavy traffic);
* TTFT = wait + the rest of the iteration in progress (length-biased: E[t²] / (2 t̄)) +
  ceil(L / b_req) mixed iterations (b_req = b / (m_pp · dp): a request lives in one pipeline
  microbatch and on one attention-DP rank);
* TPOT of a request = the mean of its O - 1 iteration times: t_dec + (t_mix - t_dec) · K / (O - 1)
  with K ~ Binomial(O - 1, f) mixed iterations among them.

Length variance enters through the moments: the context of a running request is time-weighted
(long outputs stay longer: E[L·O + O²/2] / E[O]), the KV occupancy is d times that, E[S²] grows the
queue, and the percentiles sample the lengths. A closed loop of C clients has no Poisson wait: the
rate solves C = lam · (E[TTFT] + (E[O] - 1) · t̄) (Little's law), and beyond the largest
sustainable rate the extra clients wait (again by Little's law).

Sustainable: rho < 1 and d within the engine's max sequences and the KV cache. The largest such rate
is found by bisection over the monotone feasibility of the fixed point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.hardware.engines import EngineProfile
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec

#: Budget for engines without a token budget (whole prompts at once): the largest prompt, at least.
DEFAULT_BUDGET = 8192
#: Percentiles reported next to the means.
PERCENTILES = (50, 90, 99)
#: Requests sampled for the percentiles (fixed seed: the output is deterministic).
PCT_SAMPLES = 20000
_ITER = 30


@dataclass(frozen=True)
class Instance:
    """Colocated instance(s): the model, device, engine profile and a ServeConfigs of length 1 (one
    instance) or N (N candidate shapes evaluated at once; ``budget`` / ``max_seqs`` then override
    the engine's token budget and sequence cap per candidate)."""

    model: ModelSpec
    hw: DeviceSpec
    engine: EngineProfile
    cfg: serve_model.ServeConfigs
    budget: np.ndarray | None = None
    max_seqs: np.ndarray | None = None

    @property
    def pp(self) -> int:
        return int(self.cfg.pp[0])

    @property
    def dp(self) -> int:
        return int(self.cfg.dp[0])

    @property
    def share(self):
        """pp x dp per config: a request lives in one microbatch on one attention-DP rank."""
        s = self.cfg.pp * self.cfg.dp
        return int(s[0]) if len(self.cfg) == 1 else s.astype(float)


def round_time(inst: Instance, prefill_tokens, prefill_context, decode_seqs, decode_context, prefill_seqs=None):
    """Seconds of one scheduler iteration of an instance (arrays broadcast): every running request
    advances one token and ``prefill_tokens`` prompt tokens are processed. With pp > 1 the requests
    form m = min(d, pp) microbatches (vLLM virtual engines) and an iteration is pp stage times of one
    microbatch, the composition of ``serve_step``'s decode and of the planner's colocated steady
    state (:mod:`roofplan.solver.colocated`)."""
    d = np.asarray(decode_seqs, dtype=float)
    pp = inst.cfg.pp.astype(float)
    m = np.clip(d, 1.0, pp if len(pp) > 1 else pp[0]) if np.any(pp > 1) else 1.0
    p = np.asarray(prefill_tokens, dtype=float)
    ps = None if prefill_seqs is None else np.asarray(prefill_seqs, dtype=float) / m
    return np.asarray(
        serve_model.step_time(inst.model, inst.hw, inst.engine, inst.cfg, p / m, prefill_context, d / m,
                              decode_context, prefill_seqs=ps),
        dtype=float,
    )


def token_budget(inst: Instance, isl_max: int):
    """Tokens one iteration may carry: the per-candidate ``budget``, else the engine's
    ``max_num_batched_tokens``, else whole prompts (at least DEFAULT_BUDGET)."""
    if inst.budget is not None:
        return np.asarray(inst.budget, dtype=float)
    return int(inst.engine.max_num_batched_tokens or max(DEFAULT_BUDGET, int(isl_max)))


def kv_capacity_tokens(inst: Instance):
    """KV-cache tokens one instance holds (all attention-DP ranks): the cost model's memory plan
    with the engine's sequence cap lifted, for 1024-token requests, times 1024 (float for one
    instance, an array for N candidates)."""
    eng = inst.engine.replace(max_num_seqs=None)
    c = inst.cfg
    cfg = serve_model.ServeConfigs(tp=c.tp, pp=c.pp, ep=c.ep, dp=c.dp, batch=1, isl=1023, osl=1, dtype=c.dtype,
                                   kv_dtype=c.kv_dtype, engine=c.engine)
    cap = serve_model.serve_memory(inst.model, inst.hw, eng, cfg).max_batch.astype(float) * 1024.0
    return float(cap[0]) if len(cap) == 1 else cap


def seq_cap(inst: Instance):
    """Most requests one instance runs: per-candidate ``max_seqs``, else the engine's cap (inf)."""
    if inst.max_seqs is not None:
        return np.asarray(inst.max_seqs, dtype=float)
    return float(inst.engine.max_num_seqs or np.inf)


@dataclass(frozen=True)
class Moments:
    """What the steady state needs from the lengths."""

    isl: float
    osl: float
    isl_sq: float
    L_vals: np.ndarray  # distinct prompt lengths
    L_w: np.ndarray  # their probabilities
    pre_ctx: float  # mean attended context of a prompt token: E[L (L+1) / 2] / E[L]
    dec_ctx: float  # time-weighted context of a running request: E[L O + O^2 / 2] / E[O]
    budget: int | np.ndarray
    share: int | np.ndarray  # pp x dp: a request's prompt gets 1/share of an iteration's prompt tokens

    def b_req(self, d) -> np.ndarray:
        """Prompt tokens of one request per iteration with ``d`` requests decoding."""
        return np.maximum(self.budget - np.asarray(d, dtype=float), 1.0) / self.share

    def steps(self, d) -> np.ndarray:
        """E[ceil(L / b_req)]: iterations a prompt needs when it has the budget to itself."""
        br = np.asarray(self.b_req(d))[..., None]
        return (np.ceil(self.L_vals / br) * self.L_w).sum(axis=-1)


def moments(inst: Instance, isl: np.ndarray, osl: np.ndarray) -> Moments:
    L = np.asarray(isl, dtype=float)
    Lo = np.asarray(osl, dtype=float)
    vals, counts = np.unique(L, return_counts=True)
    return Moments(
        isl=float(L.mean()),
        osl=float(Lo.mean()),
        isl_sq=float((L * L).mean()),
        L_vals=vals,
        L_w=counts / counts.sum(),
        pre_ctx=float((L * (L + 1) / 2).mean() / L.mean()),
        dec_ctx=float((L * Lo + Lo * Lo / 2).mean() / Lo.mean()),
        budget=token_budget(inst, int(L.max())),
        share=inst.share,
    )


@dataclass
class SteadyState:
    """Steady state of one instance at the rates ``lam`` (arrays, one entry per rate)."""

    lam: np.ndarray
    d: np.ndarray  # mean running (decoding) requests
    t_mean: np.ndarray  # mean iteration seconds (= mean TPOT)
    t_mix: np.ndarray
    t_dec: np.ndarray
    f: np.ndarray  # fraction of iterations carrying prompt tokens
    rho: np.ndarray  # prefill-server utilisation
    wait: np.ndarray  # mean prefill queueing (P-K), seconds
    ttft: np.ndarray  # mean TTFT
    max_seqs: float | np.ndarray
    sustainable: np.ndarray


def state_at(inst: Instance, mo: Moments, d, *, poisson: bool = True) -> SteadyState:
    """The steady state in which ``d`` requests decode, in closed form (vectorised over ``d``).

    With lam·t̄ = d / (E[O] - 1) (Little's law), the mixed fraction f = min(1, lam·t̄·E[steps]) and
    the prompt tokens per mixed iteration c = E[L]·lam·t̄ / f follow from d alone; then t_mix,
    t_dec, t̄ and lam = d / ((E[O] - 1)·t̄). lam grows with d, so a rate's state is found by
    bisection over d (:func:`steady_state`)."""
    d = np.atleast_1d(np.asarray(d, dtype=float))
    cap_seqs = kv_capacity_tokens(inst) / max(mo.dec_ctx, 1.0)
    max_seqs = np.minimum(seq_cap(inst), cap_seqs)
    b = np.asarray(mo.budget, dtype=float)
    bd = np.maximum(b - d, 1.0)
    per_t = d / max(mo.osl - 1.0, 1e-3)  # arrivals per mean iteration, lam · t̄
    f = np.minimum(per_t * mo.steps(d), 1.0)
    c = np.minimum(mo.isl * per_t / np.maximum(f, 1e-12), bd)
    t_dec = round_time(inst, 0.0, 0.0, d, mo.dec_ctx)
    t_mix = round_time(inst, np.maximum(c, 1.0), mo.pre_ctx, d, mo.dec_ctx)
    t_mean = f * t_mix + (1.0 - f) * t_dec
    lam = per_t / t_mean
    t_full = round_time(inst, bd, mo.pre_ctx, d, mo.dec_ctx)
    s_per_tok = t_full / bd
    rho = lam * mo.isl * s_per_tok
    sustainable = (rho < 1.0) & (d <= max_seqs * (1 + 1e-9))
    wait = np.where(
        sustainable & poisson, lam * mo.isl_sq * s_per_tok**2 / (2.0 * np.maximum(1.0 - rho, 1e-12)), 0.0
    )
    wait = np.where(sustainable, wait, np.inf)
    # a Poisson arrival lands in an iteration with probability proportional to its length and waits
    # for the rest of it: E[t^2] / (2 E[t]) (renewal theory; Kleinrock I, §5.2)
    res = (f * t_mix**2 + (1.0 - f) * t_dec**2) / (2.0 * t_mean) if poisson else 0.0
    ttft = wait + res + mo.steps(d) * t_mix
    return SteadyState(lam, d, t_mean, t_mix, t_dec, f, rho, wait, ttft, max_seqs, sustainable)


def _bisect(ok, lo, hi, rounds: int) -> np.ndarray:
    """Per entry, the largest x in [lo, hi] with ok(x) true, for ok monotone (true then false)."""
    lo = np.asarray(lo, dtype=float).copy()
    hi = np.asarray(hi, dtype=float).copy()
    for _ in range(rounds):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid)
    return lo


def _max_seqs(inst: Instance, mo: Moments) -> np.ndarray:
    cap = kv_capacity_tokens(inst) / max(mo.dec_ctx, 1.0)
    return np.broadcast_to(np.minimum(seq_cap(inst), cap), (len(inst.cfg),)).astype(float)


def saturation(inst: Instance, mo: Moments, rounds: int = _ITER) -> np.ndarray:
    """Largest sustainable decode batch d of every candidate (bisection; rho grows with d)."""
    hi = _max_seqs(inst, mo)
    return _bisect(lambda d: state_at(inst, mo, d).sustainable, np.zeros_like(hi), hi, rounds)


def capacity(inst: Instance, mo: Moments) -> np.ndarray:
    """Largest sustainable request rate of every candidate (requests/s per instance)."""
    d = saturation(inst, mo)
    return np.where(d > 0, state_at(inst, mo, np.maximum(d, 1e-9)).lam, 0.0)


def max_rate(inst: Instance, mo: Moments) -> float:
    """Largest sustainable request rate of one instance."""
    return float(capacity(inst, mo)[0])


def steady_state(inst: Instance, mo: Moments, lam, *, poisson: bool = True) -> SteadyState:
    """The steady state at arrival rate ``lam`` (per instance; broadcast over the candidates):
    bisection over d of lam(d) = lam. Beyond the saturation batch the state is marked
    unsustainable (``sustainable`` False, infinite wait)."""
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    hi = np.broadcast_to(_max_seqs(inst, mo), lam.shape).copy() if len(inst.cfg) > 1 else np.full(
        lam.shape, _max_seqs(inst, mo)[0])
    d = _bisect(lambda x: state_at(inst, mo, x, poisson=poisson).lam <= lam, np.zeros_like(hi), hi, _ITER)
    st = state_at(inst, mo, np.maximum(d, 1e-12), poisson=poisson)
    over = st.lam < lam * (1 - 1e-6)  # even the largest batch does not carry lam
    st.sustainable = st.sustainable & ~over
    st.wait = np.where(st.sustainable, st.wait, np.inf)
    st.ttft = np.where(st.sustainable, st.ttft, np.inf)
    st.lam = lam
    return st


@dataclass
class LoadResult:
    """Means, percentiles and rates of a deployment of ``instances`` identical instances."""

    mode: str  # "concurrency" | "rate"
    instances: int
    rate_rps: float  # requests/s to the whole deployment
    max_rate_rps: float  # largest sustainable rate of the deployment
    concurrency: float  # requests in flight (whole deployment)
    running_per_instance: float  # decoding requests per instance
    ttft_s: dict  # {"mean": .., "p50": .., "p90": .., "p99": ..}
    tpot_s: dict
    latency_s: dict
    output_tokens_per_s: float
    total_tokens_per_s: float
    utilisation: float  # rate / largest sustainable rate
    prefill_utilisation: float
    mixed_fraction: float
    kv_occupancy: float  # KV tokens in use / capacity
    queue_wait_s: float
    budget: int
    max_seqs: float

    samples: dict = field(default_factory=dict)  # metric -> per-request seconds of the sampled requests

    def percentile(self, metric: str, p: float) -> float:
        """The ``p``-th percentile of "ttft", "tpot" or "latency" (seconds) over the sampled requests."""
        x = self.samples[metric]
        x = x[np.isfinite(x)]
        return float(np.percentile(x, p)) if len(x) else float("nan")


def _summary(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"mean": float("nan"), **{f"p{p}": float("nan") for p in PERCENTILES}}
    return {"mean": float(x.mean()), **{f"p{p}": float(np.percentile(x, p)) for p in PERCENTILES}}


def request_samples(st: SteadyState, mo: Moments, isl, osl, *, poisson: bool, seed: int = 0, n=PCT_SAMPLES):
    """Per-request TTFT, TPOT and end-to-end latency of ``n`` sampled requests at steady state
    ``st`` (its first entry): lengths drawn from the workload, waits from the M/G/1 tail, the mixed
    iterations among a request's decode steps from Binomial(O-1, f)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(isl), n)
    L = np.asarray(isl, dtype=float)[idx]
    Lo = np.asarray(osl, dtype=float)[idx]
    rho, wait, f = float(st.rho[0]), float(st.wait[0]), float(st.f[0])
    t_mix, t_dec = float(st.t_mix[0]), float(st.t_dec[0])
    if poisson and rho > 0 and wait > 0:
        busy = rng.random(n) < rho
        w = np.where(busy, rng.exponential(wait / rho, n), 0.0)
        in_mix = rng.random(n) < f * t_mix / max(f * t_mix + (1.0 - f) * t_dec, 1e-30)  # length-biased
        res = rng.random(n) * np.where(in_mix, t_mix, t_dec)
    else:
        w = np.full(n, wait)
        res = np.zeros(n)
    ttft = w + res + np.ceil(L / float(mo.b_req(st.d[0]))) * t_mix
    steps = np.maximum(Lo - 1.0, 0.0)
    k = rng.binomial(steps.astype(np.int64), min(max(f, 0.0), 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(steps > 0, t_dec + (t_mix - t_dec) * k / steps, np.nan)
    latency = ttft + steps * np.nan_to_num(tpot)
    return ttft, tpot, latency


def _result(inst, mo, st, isl, osl, *, mode, instances, conc, extra_wait=0.0, poisson=True, seed=0,
            max_rate_rps=None):
    ttft, tpot, lat = request_samples(st, mo, isl, osl, poisson=poisson, seed=seed)
    ttft = ttft + extra_wait
    lat = lat + extra_wait
    lam = float(st.lam[0])
    mr = max_rate(inst, mo) if max_rate_rps is None else max_rate_rps
    kv_cap = kv_capacity_tokens(inst)
    res = LoadResult(
        mode=mode,
        instances=instances,
        rate_rps=lam * instances,
        max_rate_rps=mr * instances,
        concurrency=conc,
        running_per_instance=float(st.d[0]),
        ttft_s=_summary(ttft),
        tpot_s=_summary(tpot),
        latency_s=_summary(lat),
        output_tokens_per_s=lam * instances * mo.osl,
        total_tokens_per_s=lam * instances * (mo.osl + mo.isl),
        utilisation=lam / mr if mr > 0 else float("inf"),
        prefill_utilisation=float(st.rho[0]),
        mixed_fraction=float(st.f[0]),
        kv_occupancy=float(st.d[0]) * mo.dec_ctx / kv_cap if kv_cap > 0 else float("inf"),
        queue_wait_s=float(st.wait[0]) + extra_wait,
        budget=int(mo.budget),
        max_seqs=float(st.max_seqs),
    )
    res.samples = {"ttft": ttft, "tpot": tpot, "latency": lat}
    return res


def open_loop(inst: Instance, isl, osl, rate: float, instances: int = 1, seed: int = 0) -> LoadResult:
    """Poisson arrivals at ``rate`` requests/s split by a random router over ``instances`` replicas
    (each sees Poisson at rate/instances). Raises nothing: check ``utilisation < 1``."""
    mo = moments(inst, isl, osl)
    lam = rate / instances
    st = steady_state(inst, mo, lam, poisson=True)
    conc = lam * (float(st.ttft[0]) + (mo.osl - 1.0) * float(st.t_mean[0])) * instances
    return _result(inst, mo, st, isl, osl, mode="rate", instances=instances, conc=conc, seed=seed)


def closed_loop(inst: Instance, isl, osl, concurrency: int, instances: int = 1, seed: int = 0) -> LoadResult:
    """``concurrency`` clients over ``instances`` replicas, each sending its next request when the
    previous one ends. The per-instance rate solves Little's law; when it would exceed the largest
    sustainable rate the rate is that rate and the surplus clients wait in the queue."""
    mo = moments(inst, isl, osl)
    C = concurrency / instances
    d_sat = saturation(inst, mo)

    def in_flight(d):
        st = state_at(inst, mo, np.maximum(d, 1e-12), poisson=False)
        return st.lam * (st.ttft + (mo.osl - 1.0) * st.t_mean)

    # Little's law: in flight = d + lam·TTFT, increasing in d; saturated when even d_sat falls short
    d = d_sat if in_flight(d_sat)[0] <= C else _bisect(lambda x: in_flight(x) <= C, np.zeros(1), d_sat, _ITER)
    st = state_at(inst, mo, np.maximum(d, 1e-12), poisson=False)
    lam = float(st.lam[0])
    mr = float(state_at(inst, mo, np.maximum(d_sat, 1e-12)).lam[0])
    life = float(st.ttft[0]) + (mo.osl - 1.0) * float(st.t_mean[0])
    extra = max(C / lam - life, 0.0) if lam > 0 else math.inf
    return _result(inst, mo, st, isl, osl, mode="concurrency", instances=instances, conc=float(concurrency),
                   extra_wait=extra, poisson=False, seed=seed, max_rate_rps=mr)


# ------------------------------------------------------------------------------------------------
# percentiles in closed form and goodput (the planner: fixed lengths, many candidates at once)
# ------------------------------------------------------------------------------------------------
def _z(p: float) -> float:
    """Standard normal quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(min(max(p, 1e-12), 1 - 1e-12))


def quantiles(st: SteadyState, mo: Moments, p: float, *, poisson: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The ``p``-th percentile (0-100) of TTFT and of TPOT at steady state ``st`` for fixed lengths,
    vectorised over its entries: the quantiles of the distributions :func:`request_samples` draws
    from. Wait: 0 with probability 1 - rho, else exponential with mean W / rho, so its quantile is
    (W / rho) · ln(rho / (1 - q)) when q > 1 - rho; the mean residual iteration is added. TPOT: the
    normal approximation of Binomial(O - 1, f) mixed iterations."""
    q = p / 100.0
    rho = np.clip(st.rho, 1e-12, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        w_q = np.where((q > 1.0 - rho) & (st.wait > 0), st.wait / rho * np.log(rho / (1.0 - q)), 0.0)
    w_q = np.where(st.sustainable, w_q, np.inf)
    res = (st.f * st.t_mix**2 + (1.0 - st.f) * st.t_dec**2) / (2.0 * st.t_mean) if poisson else 0.0
    ttft = w_q + res + np.ceil(mo.isl / mo.b_req(st.d)) * st.t_mix
    n = max(mo.osl - 1.0, 1.0)
    k = np.clip(st.f + _z(q) * np.sqrt(st.f * (1.0 - st.f) / n), 0.0, 1.0)
    tpot = st.t_dec + (st.t_mix - st.t_dec) * k
    return ttft, tpot


def goodput(inst: Instance, mo: Moments, p: float, ttft_s=None, tpot_s=None, rounds: int = _ITER):
    """DistServe goodput of every candidate: the highest Poisson rate at which ``p`` % of requests
    meet both ``ttft_s`` and ``tpot_s`` (None: no target). Bisection over the decode batch d (the
    percentiles grow with it). Returns (goodput rps per instance, capacity rps, the state there)."""
    d_sat = saturation(inst, mo)
    cap = np.where(d_sat > 0, state_at(inst, mo, np.maximum(d_sat, 1e-9)).lam, 0.0)

    def meets(d):
        st = state_at(inst, mo, np.maximum(d, 1e-9))
        t1, t2 = quantiles(st, mo, p)
        ok = st.sustainable.copy()
        if ttft_s is not None:
            ok &= t1 <= ttft_s
        if tpot_s is not None:
            ok &= t2 <= tpot_s
        return ok

    d = _bisect(meets, np.zeros_like(d_sat), d_sat, rounds)
    st = state_at(inst, mo, np.maximum(d, 1e-9))
    g = np.where((d > 0) & meets(d), st.lam, 0.0)
    return g, cap, st
