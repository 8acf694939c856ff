"""Serving under load: continuous batching with chunked prefill at a concurrency or a request rate.

One colocated instance runs an engine loop (vLLM V1, SGLang, TRT-LLM inflight batching; Orca, Yu et
al. OSDI 2022; Sarathi-Serve, Agrawal et al. OSDI 2024): every iteration decodes one token for each
of ``d`` running requests and, while prompts are waiting, also carries up to ``budget - d`` prompt
tokens (the token budget ``max_num_batched_tokens``). Iteration times come from the cost model's
mixed-batch :func:`~roofplan.costmodel.serve.step_time` through :func:`round_time`, the one serving
step function the analytic model, the simulator (:mod:`roofplan.costmodel.serve_sim`) and the
planner share.

Steady state of one instance at arrival rate ``lam`` (requests/s), lengths L (prompt) and O (output),
parametrised by the mean decode batch ``d`` (:func:`state_at`, closed form):

* Little's law: d = lam · (E[O] - 1) · t̄, t̄ the mean iteration time, so lam·t̄ = d / (E[O] - 1);
* a prompt needs ceil(L / b_req) chunked iterations when it has the budget to itself, so the share of
  iterations carrying prompt tokens is f = min(1, lam·t̄ · E[steps]) and each carries
  c = E[L] · lam·t̄ / f prompt tokens; t̄ = f · t_mix(c) + (1 - f) · t_dec and lam = d / ((E[O]-1) t̄).
  lam grows with d, so the state of a given rate is a bisection over d (:func:`steady_state`);
* the prefill queue is an M/G/1 server of prompt tokens at the full-budget rate (b - d) / t_mix(b):
  service S = L · t_mix(b) / (b - d), utilisation rho = lam · E[S], mean wait by
  Pollaczek-Khinchine W = lam · E[S²] / (2 (1 - rho)) (Kleinrock, Queueing Systems I, §5.6).
  The wait of a request is 0 with probability 1 - rho and else exponential with mean W / rho (the
  standard exponential tail of M/G/1 waits, exact for M/M/1 and in heavy traffic);
* TTFT = wait + the rest of the iteration in progress (length-biased: E[t²] / (2 t̄)) +
  ceil(L / b_req) mixed iterations (b_req = (b - d) / (pp · dp): a request lives in one pipeline
  microbatch and on one attention-DP rank) + the prompts that join its prompt iteration after it
  arrived (iteration-level batching: those arriving during the rest of the iteration in progress,
  and in a closed loop the ones sent back together with it; :func:`co_batch`) + the engine's
  per-request API-server time (``EngineProfile.request_overhead_s``: HTTP, chat template,
  tokenisation, hand-off, first chunk);
* TPOT of a request = the mean of its O - 1 iteration times: t_dec + (t_mix - t_dec) · K / (O - 1)
  with K ~ Binomial(O - 1, f) mixed iterations among them.

Length variance enters through the moments: the context of a running request is time-weighted
(long outputs stay longer: E[L·O + O²/2] / E[O]), the KV occupancy is d times that, E[S²] grows the
queue, and the percentiles sample the lengths. A closed loop of C clients has no Poisson wait: the
rate solves C = lam · (E[TTFT] + (E[O] - 1) · t̄) (Little's law), and beyond the largest
sustainable rate the extra clients wait (again by Little's law).

Sustainable: rho < 1 and d within the engine's max sequences and the KV cache; the largest such d
(bisection) gives the largest sustainable rate. :func:`goodput` is the DistServe goodput of many
candidates at once: the highest rate at which P % of requests meet the TTFT and TPOT targets.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel.serve_features import SpecDecode, memory_model, speculative_round
from roofplan.engines.profile import EngineProfile
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec

#: Budget for engines without a token budget (whole prompts at once): the largest prompt, at least.
DEFAULT_BUDGET = 8192
#: Percentiles reported next to the means.
PERCENTILES = (50, 90, 99)
#: Requests sampled for the percentiles (fixed seed: the output is deterministic).
PCT_SAMPLES = 20000
_ITER = 30
#: Representative prompt lengths of a length distribution in the chunk-by-chunk prompt cost.
_REPS = 8


@dataclass(frozen=True)
class Instance:
    """Colocated instance(s): the model, device, engine profile and a ServeConfigs of length 1 (one
    instance) or N (N candidate shapes evaluated at once; ``budget`` / ``max_seqs`` then override
    the engine's token budget and sequence cap per candidate). The serving features
    (:mod:`roofplan.costmodel.serve_features`): ``spec`` speculative decoding (every decoding
    iteration is a speculative round yielding E tokens per request), ``prefix_hit`` prompt tokens
    found in the prefix cache (only the miss is prefilled; one shared copy per attention-DP rank in
    the KV cache) and ``expert_skew`` the busiest EP rank's load."""

    model: ModelSpec
    hw: DeviceSpec
    engine: EngineProfile
    cfg: serve_model.ServeConfigs
    budget: np.ndarray | None = None
    max_seqs: np.ndarray | None = None
    spec: SpecDecode | None = None
    prefix_hit: int = 0
    expert_skew: float = 1.0

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


def round_time(
    inst: Instance,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    prefill_seqs=None,
    expert_skew: float | None = None,
):
    """Seconds of one scheduler iteration of an instance (arrays broadcast): every running request
    advances one token and ``prefill_tokens`` prompt tokens are processed. With pp > 1 the requests
    form m = min(d, pp) microbatches (vLLM virtual engines) and an iteration is pp stage times of one
    microbatch, the composition of ``serve_step``'s decode and of the planner's colocated steady
    state (:mod:`roofplan.solver.colocated`). ``expert_skew`` (default the instance's): the busiest
    EP rank's load (serve.step_parts). With ``inst.spec`` an iteration that decodes is a verify
    pass of its requests' k draft tokens plus k draft forwards
    (:func:`~roofplan.costmodel.serve_features.speculative_round`, same microbatching); a
    prompt-only iteration drafts nothing."""
    skew = inst.expert_skew if expert_skew is None else expert_skew
    d = np.asarray(decode_seqs, dtype=float)
    pp = inst.cfg.pp.astype(float)
    m = np.clip(d, 1.0, pp if len(pp) > 1 else pp[0]) if np.any(pp > 1) else 1.0
    p = np.asarray(prefill_tokens, dtype=float)
    ps = None if prefill_seqs is None else np.asarray(prefill_seqs, dtype=float) / m
    plain = np.asarray(
        serve_model.step_time(
            inst.model,
            inst.hw,
            inst.engine,
            inst.cfg,
            p / m,
            prefill_context,
            d / m,
            decode_context,
            prefill_seqs=ps,
            expert_skew=skew,
        ),
        dtype=float,
    )
    if inst.spec is None:
        return plain
    chunk_seqs = np.where(p > 0, 1.0, 0.0) if ps is None else ps
    spec_t = speculative_round(
        inst.model,
        inst.hw,
        inst.engine,
        inst.cfg,
        inst.spec,
        seqs=d / m,
        context=decode_context,
        all_seqs=d,
        chunk=p / m,
        chunk_context=prefill_context,
        chunk_seqs=chunk_seqs,
        expert_skew=skew,
    ).total
    return np.where(d > 0, np.asarray(spec_t, dtype=float), plain)


def token_budget(inst: Instance, isl_max: int):
    """Tokens one iteration may carry: the per-candidate ``budget``, else the engine's
    ``max_num_batched_tokens``, else whole prompts (at least DEFAULT_BUDGET)."""
    if inst.budget is not None:
        return np.asarray(inst.budget, dtype=float)
    return int(inst.engine.max_num_batched_tokens or max(DEFAULT_BUDGET, int(isl_max)))


def kv_capacity_tokens(inst: Instance):
    """KV-cache tokens one instance holds (all attention-DP ranks): the cost model's memory plan
    with the engine's sequence cap lifted, for 1024-token requests, times 1024 (float for one
    instance, an array for N candidates). With speculative decoding the draft's weights and KV take
    their room (:func:`~roofplan.costmodel.serve_features.memory_model`); the cached prefix is not
    subtracted here (:func:`shared_prefix_tokens`)."""
    eng = inst.engine.replace(max_num_seqs=None)
    c = inst.cfg
    cfg = serve_model.ServeConfigs(
        tp=c.tp,
        pp=c.pp,
        ep=c.ep,
        dp=c.dp,
        batch=1,
        isl=1023,
        osl=1,
        dtype=c.dtype,
        kv_dtype=c.kv_dtype,
        engine=c.engine,
    )
    held = memory_model(inst.model, inst.spec)
    cap = serve_model.serve_memory(held, inst.hw, eng, cfg).max_batch.astype(float) * 1024.0
    return float(cap[0]) if len(cap) == 1 else cap


def shared_prefix_tokens(inst: Instance):
    """KV tokens of the cached prefix: one copy per attention-DP rank (0 without a prefix hit)."""
    dp = inst.cfg.dp.astype(float)
    return float(inst.prefix_hit) * (float(dp[0]) if len(dp) == 1 else dp)


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
    L_rep: np.ndarray  # at most _REPS representative prompt lengths (quantile midpoints) ...
    L_rep_w: np.ndarray  # ... and their weights, for the chunk-by-chunk prompt cost
    pre_ctx: float  # mean attended context of a prompt token: E[L (L+1) / 2] / E[L]
    dec_ctx: float  # time-weighted context of a running request: E[L O + O^2 / 2] / E[O]
    budget: int | np.ndarray
    share: int | np.ndarray  # pp x dp: a request's prompt gets 1/share of an iteration's prompt tokens
    hit: float = 0.0  # prompt tokens found in the prefix cache (isl, isl_sq, L_* and pre_ctx are of the miss)
    per_round: float = 1.0  # output tokens a decoding request gains per iteration (speculative: E)

    @property
    def rounds(self) -> float:
        """Decoding iterations of a mean request after its first token: (E[O] - 1) / E (floored)."""
        return max(self.osl - 1.0, 1e-3) / self.per_round

    def decode_s(self, t_iter):
        """Seconds a mean request decodes after its first token at ``t_iter`` per iteration."""
        return (self.osl - 1.0) / self.per_round * t_iter

    def b_req(self, d) -> np.ndarray:
        """Prompt tokens of one request per iteration with ``d`` requests decoding."""
        return np.maximum(self.budget - np.asarray(d, dtype=float), 1.0) / self.share

    def steps(self, d) -> np.ndarray:
        """E[ceil(L / b_req)]: iterations a prompt needs when it has the budget to itself."""
        br = np.asarray(self.b_req(d))[..., None]
        return (np.ceil(self.L_vals / br) * self.L_w).sum(axis=-1)


def moments(inst: Instance, isl: np.ndarray, osl: np.ndarray) -> Moments:
    """The length moments of a workload on ``inst``: the prompt work counts only the prefix-cache
    miss (isl - ``inst.prefix_hit``, attending to the cached prefix too), the decode context the full
    prompt; with speculative decoding a decoding iteration yields E = ``spec.tokens_per_step``."""
    hit = float(inst.prefix_hit)
    full = np.asarray(isl, dtype=float)
    L = full - hit
    Lo = np.asarray(osl, dtype=float)
    vals, counts = np.unique(L, return_counts=True)
    if len(vals) <= _REPS:
        rep, rep_w = vals, counts / counts.sum()
    else:
        rep, rep_w = np.percentile(L, (np.arange(_REPS) + 0.5) * 100 / _REPS), np.full(_REPS, 1 / _REPS)
    return Moments(
        isl=float(L.mean()),
        osl=float(Lo.mean()),
        isl_sq=float((L * L).mean()),
        L_vals=vals,
        L_w=counts / counts.sum(),
        L_rep=np.asarray(rep, dtype=float),
        L_rep_w=np.asarray(rep_w, dtype=float),
        pre_ctx=hit + float((L * (L + 1) / 2).mean() / L.mean()),
        dec_ctx=float((full * Lo + Lo * Lo / 2).mean() / Lo.mean()),
        budget=token_budget(inst, int(full.max())),
        share=inst.share,
        hit=hit,
        per_round=1.0 if inst.spec is None else float(inst.spec.tokens_per_step),
    )


@dataclass
class SteadyState:
    """Steady state of one instance at the rates ``lam`` (arrays, one entry per rate)."""

    lam: np.ndarray
    d: np.ndarray  # mean running (decoding) requests
    t_mean: np.ndarray  # mean iteration seconds (= mean TPOT x E, E tokens per iteration)
    t_mix: np.ndarray
    t_dec: np.ndarray
    f: np.ndarray  # fraction of iterations carrying prompt tokens
    rho: np.ndarray  # prefill-server utilisation
    wait: np.ndarray  # mean prefill queueing (P-K), seconds
    ttft: np.ndarray  # mean TTFT
    max_seqs: float | np.ndarray
    sustainable: np.ndarray
    k_t: np.ndarray | None = None  # iteration seconds on the decode-batch grid (chain, see below)
    k_w: np.ndarray | None = None  # share of output tokens emitted at each grid point
    api_s: float = 0.0  # the engine's per-request API-server time, in every TTFT (request_overhead_s)
    co_s: np.ndarray | float = (
        0.0  # mean time the prompts joining a request's prompt iteration add (co_batch)
    )
    co_tok_s: np.ndarray | float = 0.0  # seconds one joining prompt token adds to that iteration
    co_room: np.ndarray | float = 0.0  # prompt tokens that iteration has room for besides the request's
    co_rate: np.ndarray | float = 0.0  # prompt tokens per second that may join it (Poisson arrivals)
    front_s: np.ndarray | float = (
        0.0  # the first token's wait for the API server's output pass (frontend_wait)
    )


def prompt_excess(inst: Instance, mo: Moments, d, t_dec) -> np.ndarray:
    """Iteration seconds one prompt adds beyond decode-only iterations when it has the budget to
    itself: ceil(L / b_req) chunks, all of b_req = (b - d) / (pp·dp) tokens but the last, each
    costing step_time(chunk, d) - t_dec (the step time is convex in the prompt tokens -- weights are
    read once per iteration whatever it carries -- so the chunk sizes matter, not only their mean).
    Averaged over the representative prompt lengths; ``inst`` and ``d`` flattened alike."""
    d = np.asarray(d, dtype=float)
    r = np.asarray(mo.b_req(d), dtype=float)
    out = np.zeros_like(d)
    t_r = round_time(inst, r, mo.pre_ctx, d, mo.dec_ctx)
    for L, w in zip(mo.L_rep, mo.L_rep_w):
        full = np.floor(L / r)
        rem = L - full * r
        t_rem = np.where(
            rem > 0, round_time(inst, np.maximum(rem, 1.0), mo.pre_ctx, d, mo.dec_ctx) - t_dec, 0.0
        )
        out = out + w * (full * (t_r - t_dec) + t_rem)
    return out


def state_at(inst: Instance, mo: Moments, d, *, poisson: bool = True) -> SteadyState:
    """The steady state in which ``d`` requests decode, in closed form (vectorised over ``d``).

    With lam·t̄ = d / (E[O] - 1) (Little's law), the mixed fraction f = min(1, lam·t̄·E[steps]) and
    the prompt tokens per mixed iteration c = E[L]·lam·t̄ / f follow from d alone; then t_mix,
    t_dec, t̄ and lam = d / ((E[O] - 1)·t̄). lam grows with d, so a rate's state is found by
    bisection over d (:func:`steady_state`)."""
    d = np.atleast_1d(np.asarray(d, dtype=float))
    max_seqs = _seq_limit(inst, mo)
    b = np.asarray(mo.budget, dtype=float)
    bd = np.maximum(b - d, 1.0)
    per_t = d / mo.rounds  # arrivals per mean iteration, lam · t̄
    f = np.minimum(per_t * mo.steps(d), 1.0)
    c = np.minimum(mo.isl * per_t / np.maximum(f, 1e-12), bd)
    t_dec = round_time(inst, 0.0, 0.0, d, mo.dec_ctx)
    excess = prompt_excess(inst, mo, d, t_dec)
    steps = mo.steps(d)
    # prompts alone in their iterations: t̄ = t_dec + (arrivals per iteration) x excess; when every
    # iteration is mixed, prompts share iterations of c tokens (no less than the alone figure)
    t_alone = t_dec + per_t * excess
    t_shared = round_time(inst, np.maximum(c, 1.0), mo.pre_ctx, d, mo.dec_ctx)
    t_mean = np.where(f < 1.0, t_alone, np.maximum(t_shared, t_alone))
    t_mix = np.where(f < 1.0, t_dec + excess / np.maximum(steps, 1e-12), t_mean)
    lam = per_t / t_mean
    st = SteadyState(lam, d, t_mean, t_mix, t_dec, f, lam, lam, lam, max_seqs, lam > 0)
    return _prefill_queue(inst, mo, st, poisson)


def prefill_wait(inst: Instance, mo: Moments, d, lam) -> tuple[np.ndarray, np.ndarray]:
    """(utilisation, mean wait) of the prefill server with ``d`` requests decoding, fed prompts at
    ``lam`` per second: an M/G/1 queue whose service is the prompt's tokens at the seconds per token
    of a full-budget iteration, wait by Pollaczek-Khinchine, W = lam E[S^2] / (2 (1 - rho))
    (Kleinrock I, §5.6); inf where rho >= 1."""
    d = np.asarray(d, dtype=float)
    bd = np.maximum(np.asarray(mo.budget, dtype=float) - d, 1.0)
    s_per_tok = round_time(inst, bd, mo.pre_ctx, d, mo.dec_ctx) / bd
    rho = np.asarray(lam, dtype=float) * mo.isl * s_per_tok
    wait = np.where(rho < 1.0, lam * mo.isl_sq * s_per_tok**2 / (2.0 * np.maximum(1.0 - rho, 1e-12)), np.inf)
    return rho, wait


def _prefill_queue(inst: Instance, mo: Moments, st: SteadyState, poisson: bool) -> SteadyState:
    """Utilisation, P-K wait, TTFT and sustainability of the prefill server of ``st`` (in place)."""
    d = st.d
    rho, pk = prefill_wait(inst, mo, d, st.lam)
    sustainable = (rho < 1.0) & (d <= st.max_seqs * (1 + 1e-9))
    wait = np.where(sustainable & poisson, pk, 0.0)
    st.wait = np.where(sustainable, wait, np.inf)
    res = _poisson_residual(st) if poisson else 0.0
    # the request also spends the engine's API-server time (HTTP, chat template, tokenisation,
    # hand-off, first streamed chunk) outside the GPU iterations; its client holds it meanwhile
    st.api_s = float(inst.engine.request_overhead_s)
    st.co_tok_s, st.co_room = co_batch(inst, mo, d, st.t_dec)
    st.co_rate = st.lam * mo.isl if poisson else np.zeros_like(st.lam)
    st.co_s = st.co_tok_s * np.minimum(st.co_rate * res, st.co_room)
    st.front_s = frontend_wait(inst.engine, d, st.t_mean)
    st.ttft = st.wait + res + mo.steps(d) * st.t_mix + st.co_s + st.front_s + st.api_s
    st.rho, st.sustainable = rho, sustainable
    return st


def frontend_wait(engine: EngineProfile, d, t_iter) -> np.ndarray:
    """Mean wait of a first token for the API server's pass over the running requests' outputs.

    Every engine step hands the outputs of its d running requests to the API-server process, which
    detokenises and streams them one request after another, ``engine.api_output_s`` each, so a
    pass takes x = d·api_output_s. A new request's first token sits, on average, halfway down its
    pass (x / 2), and the pass is late by the rest of the previous one with probability
    rho = min(x / t_iter, 1) (the share of time the process is busy; its mean rest is again x / 2):
    x / 2 · (1 + rho). At rho = 1 the process cannot keep up with the steps and streams several
    tokens per chunk (the pass then takes each request's accumulated tokens at once), which bounds
    the wait at one pass. 0 where the engine's ``api_output_s`` is 0 (not characterised)."""
    c = float(engine.api_output_s)
    d = np.asarray(d, dtype=float)
    if c <= 0.0:
        return np.zeros_like(d)
    x = c * np.maximum(d, 0.0)
    rho = np.minimum(x / np.maximum(np.asarray(t_iter, dtype=float), 1e-30), 1.0)
    return 0.5 * x * (1.0 + rho)


def co_batch(inst: Instance, mo: Moments, d, t_dec) -> tuple[np.ndarray, np.ndarray]:
    """(seconds per token, room in tokens) of the prompts that join a request's prompt iteration.

    The engine batches at iteration level (Orca, Yu et al. OSDI 2022; vLLM's scheduler): every
    prompt waiting when an iteration starts rides in it, and all of them get their first token when
    it ends. A prompt arriving *after* a request but before its iteration starts (during the rest
    of the iteration in progress) therefore lengthens that request's prompt iteration, which the
    FCFS Pollaczek-Khinchine wait (:func:`prefill_wait`, only the work *ahead*) does not count.
    Each joining token costs the marginal step time of a full-budget iteration over a decode-only
    one, (t(b - d) - t_dec) / (b - d); at most the budget left after the request's own first chunk
    (times pp·dp, the other microbatches' and ranks' shares) joins. For a prompt of more than one
    chunk the first fills its share of the budget and nothing joins."""
    d = np.asarray(d, dtype=float)
    bd = np.maximum(np.asarray(mo.budget, dtype=float) - d, 1.0)
    first = np.minimum(mo.isl, mo.b_req(d))
    room = np.maximum(bd - first * np.asarray(mo.share, dtype=float), 0.0)
    s_tok = np.maximum(round_time(inst, bd, mo.pre_ctx, d, mo.dec_ctx) - t_dec, 0.0) / bd
    return s_tok, room


def _poisson_residual(st: SteadyState) -> np.ndarray:
    """Mean rest of the iteration in progress that a Poisson arrival waits for: it lands in an
    iteration with probability proportional to its length, E[t^2] / (2 E[t]) (renewal theory;
    Kleinrock I, §5.2)."""
    return (st.f * st.t_mix**2 + (1.0 - st.f) * st.t_dec**2) / (2.0 * st.t_mean)


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


def _seq_limit(inst: Instance, mo: Moments):
    """Most requests that run at once: the sequence cap, or the KV cache (less the shared cached
    prefix) over a request's own time-weighted context (its miss and its output)."""
    cap = (kv_capacity_tokens(inst) - shared_prefix_tokens(inst)) / max(mo.dec_ctx - mo.hit, 1.0)
    return np.minimum(seq_cap(inst), cap)


def _max_seqs(inst: Instance, mo: Moments) -> np.ndarray:
    return np.broadcast_to(_seq_limit(inst, mo), (len(inst.cfg),)).astype(float)


def saturation(inst: Instance, mo: Moments, rounds: int = 22) -> np.ndarray:
    """Largest sustainable decode batch d of every candidate (bisection; rho grows with d)."""
    hi = _max_seqs(inst, mo)
    return _bisect(lambda d: state_at(inst, mo, d).sustainable, np.zeros_like(hi), hi, rounds)


#: Points of the grid over [0, saturation batch] on which :func:`peak` looks for the largest rate.
PEAK_POINTS = 24


def peak(inst: Instance, mo: Moments) -> tuple[np.ndarray, np.ndarray]:
    """(decode batch, rate) at which each candidate carries the most requests/s while sustainable.
    lam(d) grows with d until prompt tokens fill the iterations, and may fall beyond (a larger
    batch makes every iteration slower than it adds throughput), so the largest sustainable rate
    is the maximum of lam over the sustainable batches, on a grid up to the saturation batch."""
    d_sat = saturation(inst, mo)
    n = PEAK_POINTS
    big, mb = _on_grid(inst, mo, n)
    x = (np.maximum(d_sat, 1e-9)[:, None] * np.linspace(1.0 / n, 1.0, n)[None, :]).ravel()
    st = state_at(big, mb, x)
    lam = np.where(st.sustainable, st.lam, 0.0).reshape(len(d_sat), n)
    j = np.argmax(lam, axis=1)
    rows = np.arange(len(d_sat))
    d_peak = x.reshape(len(d_sat), n)[rows, j]
    return np.where(d_sat > 0, d_peak, 0.0), np.where(d_sat > 0, lam[rows, j], 0.0)


def capacity(inst: Instance, mo: Moments) -> np.ndarray:
    """Largest sustainable request rate of every candidate (requests/s per instance)."""
    return peak(inst, mo)[1]


def max_rate(inst: Instance, mo: Moments) -> float:
    """Largest sustainable request rate of one instance."""
    return float(capacity(inst, mo)[0])


def prefill_role_rate(inst: Instance, mo: Moments) -> float:
    """Largest request rate one prefill-only instance of a disaggregated deployment can reach: every
    iteration full of prompt tokens (the token budget), nothing decoding; budget / isl prompts per
    iteration. An upper bound (partial batches and the queue only lower it)."""
    tokens = float(np.asarray(mo.budget, dtype=float).ravel()[0])
    prompts = max(tokens / max(mo.isl, 1.0), 1.0)
    t = float(np.asarray(round_time(inst, tokens, mo.pre_ctx, 0.0, 0.0, prompts)).ravel()[0])
    return prompts / t if t > 0 else math.inf


def decode_role_rate(inst: Instance, mo: Moments) -> float:
    """Largest request rate one decode-only instance can reach: its largest running batch (the
    sequence cap or the KV cache over a request's time-weighted context) in pure decode
    iterations, each request staying osl / E of them. An upper bound."""
    d = float(_max_seqs(inst, mo)[0])
    t = float(np.asarray(round_time(inst, 0.0, 0.0, d, mo.dec_ctx)).ravel()[0])
    return d / (mo.osl / mo.per_round * t) if t > 0 and d > 0 else 0.0


_REPEATED: dict = {}


def _on_grid(inst: Instance, mo: Moments, n: int) -> tuple[Instance, Moments]:
    """``inst`` and ``mo`` with every candidate repeated ``n`` times (a grid per candidate)."""
    if len(inst.cfg) == 1:
        return inst, mo
    mb = dataclasses.replace(
        mo,
        budget=np.repeat(np.asarray(mo.budget, dtype=float), n),
        share=np.repeat(np.asarray(mo.share, dtype=float), n),
    )
    return _repeated(inst, n), mb


def _repeated(inst: Instance, n: int) -> Instance:
    """``inst`` with every candidate repeated ``n`` times (a grid per candidate, flattened)."""
    key = (id(inst), n)
    hit = _REPEATED.get(key)
    if hit is not None and hit[0] is inst:
        return hit[1]
    c = inst.cfg
    cfg = serve_model.ServeConfigs(
        **{k: np.repeat(getattr(c, k), n) for k in c._ARRAYS},
        dtype=c.dtype,
        kv_dtype=c.kv_dtype,
        engine=c.engine,
    )
    rep = lambda a: None if a is None else np.repeat(np.asarray(a, dtype=float), n)  # noqa: E731
    out = dataclasses.replace(inst, cfg=cfg, budget=rep(inst.budget), max_seqs=rep(inst.max_seqs))
    if len(_REPEATED) > 64:
        _REPEATED.clear()
    _REPEATED[key] = (inst, out)
    return out


#: Points of the decode-batch grid of :func:`with_batch_chain`.
CHAIN_POINTS = 24
#: Bisection rounds of :func:`goodput` that evaluate the chain (after a mean-field bracket).
CHAIN_ROUNDS = 10


def with_batch_chain(inst: Instance, mo: Moments, st: SteadyState, poisson: bool = True) -> SteadyState:
    """Replace the mean-field decode batch of ``st`` by its stationary distribution.

    Requests enter decoding at rate lam and leave at mu(k) = k / ((E[O] - 1) · t(k)) when k decode,
    a birth-death chain whose stationary law is pi(k) ∝ prod_j lam / mu(j) (Kleinrock I, §3.1),
    taken here as exp of the integral of log(lam / mu) over a grid of k up to the sequence cap. With
    the rate fixed, the iteration time at k is t(k) = t_dec / (1 - lam·excess) while mixed
    iterations are a share f = lam·s·t < 1 (:func:`prompt_excess`: each prompt alone), else
    every iteration is mixed and carries lam·E[L]·t prompt tokens (t solved on the affine
    interpolation of the step time in the prompt tokens). Because t(k) grows with k, the law is
    wider than Poisson and its mean above the mean-field d: the TPOT tail near saturation. The
    mean batch, the token-weighted mean iteration time and the grid (for TPOT percentiles) are
    stored in the returned state."""
    n = CHAIN_POINTS
    lam = np.asarray(st.lam, dtype=float)
    M = len(lam)
    K = np.broadcast_to(np.asarray(st.max_seqs, dtype=float), (M,))
    K = np.where(np.isfinite(K), K, np.maximum(4.0 * st.d, 8.0))
    K = np.minimum(K, 3.0 * st.d + 10.0 * np.sqrt(np.maximum(st.d, 0.0)) + 24.0)  # the law's support
    frac = np.linspace(0.0, 1.0, n)
    x = 0.25 + (np.maximum(K, 1.0)[:, None] - 0.25) * frac[None, :]  # (M, n)
    big, mb = _on_grid(inst, mo, n)
    lam2 = np.repeat(lam, n)
    xf = x.ravel()
    sx = mb.steps(xf)
    b = np.asarray(mb.budget, dtype=float)
    room = np.maximum(b - xf, 1.0)
    c1 = np.minimum(mo.isl / np.maximum(sx, 1e-12), room)
    t_dec = round_time(big, 0.0, 0.0, xf, mo.dec_ctx)
    t_mix1 = round_time(big, np.maximum(c1, 1.0), mo.pre_ctx, xf, mo.dec_ctx)
    t_room = round_time(big, room, mo.pre_ctx, xf, mo.dec_ctx)
    excess = prompt_excess(big, mb, xf, t_dec)
    den = 1.0 - lam2 * excess
    t_part = np.where(den > 0, t_dec / np.maximum(den, 1e-12), np.inf)
    partial = lam2 * sx * t_part < 1.0
    slope = np.where(room > c1, (t_room - t_mix1) / np.maximum(room - c1, 1e-9), 0.0)
    a0 = t_mix1 - slope * c1
    den2 = 1.0 - slope * lam2 * mo.isl
    t_full = np.where(den2 > 0, a0 / np.maximum(den2, 1e-12), np.inf)
    t_full = np.where(lam2 * mo.isl * t_full <= room * (1 + 1e-9), np.maximum(t_full, t_mix1), np.inf)
    t = np.where(partial, t_part, np.maximum(t_full, t_dec + excess / np.maximum(sx, 1e-12))).reshape(M, n)
    t = np.where(np.isfinite(t), t, 1e3)  # prompts exceed the budget there: mu ~ 0, mass piles at K
    mu = x / (mo.rounds * t)
    g = np.log(np.maximum(lam, 1e-300))[:, None] - np.log(np.maximum(mu, 1e-300))
    logp = np.concatenate(
        [np.zeros((M, 1)), np.cumsum(0.5 * (g[:, 1:] + g[:, :-1]) * np.diff(x, axis=1), axis=1)], axis=1
    )
    logp -= logp.max(axis=1, keepdims=True)
    w_dx = np.gradient(x, axis=1)
    pi = np.exp(logp) * w_dx
    pi /= pi.sum(axis=1, keepdims=True)
    tok = pi * x / t
    sus = st.sustainable
    st.d = (pi * x).sum(axis=1)
    st.t_mean = (pi * x).sum(axis=1) / np.maximum(tok.sum(axis=1), 1e-300)
    st.k_t = t
    st.k_w = tok / np.maximum(tok.sum(axis=1, keepdims=True), 1e-300)
    st = _prefill_queue(inst, mo, st, poisson)
    st.sustainable = st.sustainable & sus
    st.wait = np.where(st.sustainable, st.wait, np.inf)
    st.ttft = np.where(st.sustainable, st.ttft, np.inf)
    return st


def steady_state(inst: Instance, mo: Moments, lam, *, poisson: bool = True) -> SteadyState:
    """The steady state at arrival rate ``lam`` (per instance; broadcast over the candidates):
    bisection over d of lam(d) = lam. Beyond the saturation batch the state is marked
    unsustainable (``sustainable`` False, infinite wait)."""
    lam = np.atleast_1d(np.asarray(lam, dtype=float))
    d_pk, cap = peak(inst, mo)
    hi = np.broadcast_to(d_pk, lam.shape).copy() if len(inst.cfg) > 1 else np.full(lam.shape, d_pk[0])
    cap = np.broadcast_to(cap, lam.shape)
    d = _bisect(lambda x: state_at(inst, mo, x, poisson=poisson).lam <= lam, np.zeros_like(hi), hi, _ITER)
    st = state_at(inst, mo, np.maximum(d, 1e-12), poisson=poisson)
    over = (st.lam < lam * (1 - 1e-6)) | (lam > cap * (1 + 1e-9))  # beyond the largest sustainable rate
    st.sustainable = st.sustainable & ~over
    st.wait = np.where(st.sustainable, st.wait, np.inf)
    st.ttft = np.where(st.sustainable, st.ttft, np.inf)
    st.lam = lam
    return with_batch_chain(inst, mo, st, poisson)


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
    # the prompts arriving during its residual join its prompt iteration (co_batch), in proportion
    # to that residual: it stretches by co_stretch (the mean kept, the closed-form quantiles exact)
    co = (co_stretch(st)[0] - 1.0) * res
    front = float(np.asarray(st.front_s).ravel()[0])
    ttft = w + res + co + np.ceil((L - mo.hit) / float(mo.b_req(st.d[0]))) * t_mix + front + st.api_s
    steps = np.maximum(Lo - 1.0, 0.0)
    iters = np.ceil(steps / mo.per_round)  # its decoding iterations (E tokens each, speculative)
    k = rng.binomial(iters.astype(np.int64), min(max(f, 0.0), 1.0))
    t_seen = (t_mix - t_dec) * (k / np.maximum(iters, 1.0) - f)  # mixed iterations among its own
    if st.k_t is not None:  # plus the iteration time at a decode batch drawn from the chain's law
        t_seen = t_seen + rng.choice(st.k_t[0], size=n, p=st.k_w[0] / st.k_w[0].sum())
    else:
        t_seen = t_seen + float(st.t_mean[0])
    tpot = np.where(steps > 0, t_seen / mo.per_round, np.nan)
    latency = ttft + steps * np.nan_to_num(tpot)
    return ttft, tpot, latency


def _result(
    inst,
    mo,
    st,
    isl,
    osl,
    *,
    mode,
    instances,
    conc,
    extra_wait=0.0,
    poisson=True,
    seed=0,
    max_rate_rps=None,
    co_s=0.0,
):
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
        total_tokens_per_s=lam * instances * (mo.osl + mo.isl + mo.hit),
        utilisation=lam / mr if mr > 0 else float("inf"),
        prefill_utilisation=float(st.rho[0]),
        mixed_fraction=float(st.f[0]),
        kv_occupancy=(float(st.d[0]) * (mo.dec_ctx - mo.hit) + shared_prefix_tokens(inst)) / kv_cap
        if kv_cap > 0
        else float("inf"),
        queue_wait_s=float(st.wait[0]) + extra_wait - co_s,  # co_s: in the prompt iteration, not a wait
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
    conc = lam * (float(st.ttft[0]) + mo.decode_s(float(st.t_mean[0]))) * instances
    return _result(inst, mo, st, isl, osl, mode="rate", instances=instances, conc=conc, seed=seed)


def closed_loop(inst: Instance, isl, osl, concurrency: int, instances: int = 1, seed: int = 0) -> LoadResult:
    """``concurrency`` clients over ``instances`` replicas, each sending its next request when the
    previous one ends. The per-instance rate solves Little's law; when it would exceed the largest
    sustainable rate the rate is that rate and the surplus clients wait in the queue."""
    mo = moments(inst, isl, osl)
    C = concurrency / instances
    d_sat, mr_arr = peak(inst, mo)

    def others_wait(st):
        return closed_loop_wait(inst, mo, st, C)

    def in_flight(d):
        st = state_at(inst, mo, np.maximum(d, 1e-12), poisson=False)
        co = closed_loop_co_batch(mo, st, C)
        return st.lam * (st.ttft + others_wait(st) + co + mo.decode_s(st.t_mean))

    # Little's law: in flight = d + lam·TTFT, increasing in d; saturated when even d_sat falls short
    d = d_sat if in_flight(d_sat)[0] <= C else _bisect(lambda x: in_flight(x) <= C, np.zeros(1), d_sat, _ITER)
    st = state_at(inst, mo, np.maximum(d, 1e-12), poisson=False)
    lam = float(st.lam[0])
    mr = float(mr_arr[0])
    queue = float(others_wait(st)[0])
    queue = queue if math.isfinite(queue) else 0.0  # saturated: the surplus clients' wait below
    co = float(closed_loop_co_batch(mo, st, C)[0])
    life = float(st.ttft[0]) + queue + co + mo.decode_s(float(st.t_mean[0]))
    extra = (max(C / lam - life, 0.0) if lam > 0 else math.inf) + co
    residual = closed_loop_residual(st, C, life)
    many = C > 1 and queue > 0.0
    if many:
        # the other clients' prompts as a Poisson stream: the per-request wait and residual
        # iteration are drawn as the open loop's (M/G/1 tail), at the others' rate; the constant
        # keeps the mean residual the closed loop's (an idle engine for a lone arrival)
        rho_o = prefill_wait(inst, mo, st.d, st.lam * (C - 1.0) / C)[0]
        st = dataclasses.replace(st, wait=np.array([queue]), rho=np.asarray(rho_o, dtype=float))
        extra += residual - float(_poisson_residual(st)[0])
    else:
        extra += queue + residual
    return _result(
        inst,
        mo,
        st,
        isl,
        osl,
        mode="concurrency",
        instances=instances,
        conc=float(concurrency),
        extra_wait=extra,
        poisson=many,
        seed=seed,
        max_rate_rps=mr,
        co_s=co,
    )


def closed_loop_wait(inst: Instance, mo: Moments, st: SteadyState, clients: float) -> np.ndarray:
    """Mean wait of a closed-loop request in the prefill queue behind the other clients' prompts.

    Clients whose returns are desynchronised (varying lengths, a varying API-server time) send
    prompts that, superposed over many clients, approach a Poisson stream (Palm-Khintchine theorem;
    Cox & Smith 1954); by the arrival theorem of closed networks an arriving request sees the
    queue of the other C - 1 clients (Sevcik & Mitrani 1981), approximated as in the Bard-Schweitzer
    mean-value analysis by the Pollaczek-Khinchine wait at their share of the rate,
    lam (C - 1) / C (:func:`prefill_wait`). One client never waits; at 64 clients the wait is the
    open loop's. Without it the closed loop assumed evenly spaced prompts that never queue
    (D/D/1), which put TTFT at 64 clients 13% under the simulator (lengths +-20%)."""
    if clients <= 1:
        return np.zeros_like(st.lam)
    return prefill_wait(inst, mo, st.d, st.lam * (clients - 1.0) / clients)[1]


def closed_loop_co_batch(mo: Moments, st: SteadyState, clients: float) -> np.ndarray:
    """Mean time the other clients' prompts add to a closed-loop request's prompt iteration.

    Two groups join it (:func:`co_batch`: iteration-level batching, every prompt waiting when an
    iteration starts rides in it): (1) the requests sent back together with it -- the ones whose
    predecessors finished in the same iteration as its own predecessor (each of the other d - 1
    decoding requests ends in a given iteration with probability 1 / rounds, rounds = its
    decoding iterations), which reach the engine the same API-server time later; and (2) the
    prompts of the other clients arriving during the rest of the iteration in progress (Poisson at
    their rate lam (C - 1) / C, over the length-biased residual E[t^2] / (2 E[t])). With outputs of
    200 +- 20% and 128 clients the analytic TTFT was 16% under the simulator (107.6 vs 127.8 ms)
    without them: the simulated prompt iteration was 56 ms against one prompt's 33.5 ms."""
    if clients <= 1:
        return np.zeros_like(st.lam)
    together = np.maximum(np.minimum(st.d, clients) - 1.0, 0.0) / mo.rounds
    during = st.lam * (clients - 1.0) / clients * _poisson_residual(st)
    return st.co_tok_s * np.minimum((together + during) * mo.isl, st.co_room)


def closed_loop_residual(st: SteadyState, clients: float, life: float) -> float:
    """Mean wait of a closed-loop request for the engine iteration in progress when it arrives.

    Without an API server the next request enters at the iteration boundary where the previous
    one ended (no wait). With one (``st.api_s`` > 0) it reaches the engine core tens of ms after
    that boundary, at a phase the varying API-server time randomises: if any of the other
    ``clients`` - 1 requests is inside the engine then (each is, independently, for the share
    1 - api/life of its life) it waits for the rest of the iteration, E[t^2] / (2 E[t])
    (length-biased residual, Kleinrock I §5.2); alone (one client) the engine is idle."""
    if st.api_s <= 0 or clients <= 1 or life <= 0:
        return 0.0
    inside = min(max(1.0 - st.api_s / life, 0.0), 1.0)
    p_busy = 1.0 - (1.0 - inside) ** (clients - 1.0)
    f, t_mix, t_dec, t_mean = float(st.f[0]), float(st.t_mix[0]), float(st.t_dec[0]), float(st.t_mean[0])
    return p_busy * (f * t_mix**2 + (1.0 - f) * t_dec**2) / (2.0 * max(t_mean, 1e-30))


# ------------------------------------------------------------------------------------------------
# percentiles in closed form and goodput (the planner: fixed lengths, many candidates at once)
# ------------------------------------------------------------------------------------------------
def _z(p: float) -> float:
    """Standard normal quantile."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(min(max(p, 1e-12), 1 - 1e-12))


def wait_quantile(wait_mean, rho, q: float) -> np.ndarray:
    """The q-quantile of an M/G/1 wait whose mean is ``wait_mean`` at utilisation ``rho``: zero with
    probability 1 - rho, else exponential with mean wait_mean / rho, so (wait_mean / rho) ·
    ln(rho / (1 - q)) when q > 1 - rho, else 0 (the exponential tail; exact for M/M/1)."""
    rho = np.clip(np.asarray(rho, dtype=float), 1e-12, None)
    w = np.asarray(wait_mean, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((q > 1.0 - rho) & (w > 0), w / rho * np.log(rho / (1.0 - q)), 0.0)


def co_stretch(st: SteadyState) -> np.ndarray:
    """1 + (mean time the joining prompts add) / (mean residual): the prompts that join a request's
    prompt iteration (:func:`co_batch`) arrive during its residual R, so they add in proportion to
    it and wait + residual + joining = W + k·R with k this factor (the mean of the joining time
    kept, capped by the room in the budget as there)."""
    res = np.asarray(_poisson_residual(st), dtype=float)
    co = np.asarray(st.co_s, dtype=float)
    return 1.0 + np.where(res > 0, co / np.maximum(res, 1e-300), 0.0) * np.ones_like(res)


def _wait_plus_residual_quantile(st: SteadyState, q: float) -> np.ndarray:
    """q-quantile of wait + residual iteration + the prompts joining it (the TTFT before the
    request's own iterations). Wait W: 0 w.p. 1 - rho, else Exp(rate beta = rho / E[W]); residual
    R: uniform over a mixed iteration w.p. pi = f·t_mix / t̄ (length-biased), else over a decode
    iteration, stretched by k = :func:`co_stretch`. For kR uniform on (0, a): P(W + kR <= x) =
    (m - rho·e^{-beta x}(e^{beta m} - 1) / beta) / a with m = min(a, x); the mixture is inverted by
    bisection."""
    rho = np.clip(np.asarray(st.rho, dtype=float), 0.0, 1.0 - 1e-12)
    beta = np.where(st.wait > 0, rho / np.maximum(st.wait, 1e-300), np.inf)
    pi = st.f * st.t_mix / np.maximum(st.t_mean, 1e-300)
    k = co_stretch(st)

    def cdf_u(x, a):
        m = np.minimum(a, x)
        with np.errstate(over="ignore", invalid="ignore"):
            tail = np.where(np.isfinite(beta), rho * np.exp(-beta * x) * np.expm1(beta * m) / beta, 0.0)
        return (m - np.nan_to_num(tail)) / np.maximum(a, 1e-300)

    def cdf(x):
        return pi * cdf_u(x, k * st.t_mix) + (1.0 - pi) * cdf_u(x, k * st.t_dec)

    finite = np.isfinite(st.wait)
    hi = np.where(
        finite, k * st.t_mix + np.nan_to_num(st.wait, posinf=0.0) / np.maximum(rho, 1e-12) * 40.0 + 1e-9, 1.0
    )
    lo = np.zeros_like(hi)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < q
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    return np.where(finite, hi, np.inf)


def md1_wait(lam, service) -> tuple[np.ndarray, np.ndarray]:
    """(mean wait, rho) of an M/D/1 queue (Pollaczek-Khinchine with E[S²] = S²): rho·S / (2(1-rho));
    infinite when rho >= 1."""
    lam = np.asarray(lam, dtype=float)
    s = np.asarray(service, dtype=float)
    rho = lam * s
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(rho < 1.0, rho * s / (2.0 * (1.0 - rho)), np.inf)
    return w, rho


def slot_wait_quantile(lam, slots, hold_s, q: float) -> np.ndarray:
    """q-quantile of the wait for one of ``slots`` decode slots, each held ``hold_s`` seconds, under
    Poisson arrivals at ``lam`` (M/M/c, conservative for the nearly deterministic holding time).
    P(wait) by the Halfin-Whitt approximation of Erlang C, [1 + beta·Phi(beta)/phi(beta)]^-1 with
    beta = (1 - rho)·sqrt(c) (Halfin & Whitt, Oper. Res. 1981); the wait when positive is
    exponential at rate c/hold - lam. Infinite at rho >= 1."""
    from statistics import NormalDist

    lam = np.asarray(lam, dtype=float)
    c = np.maximum(np.asarray(slots, dtype=float), 1.0)
    mu = 1.0 / np.maximum(np.asarray(hold_s, dtype=float), 1e-300)
    rho = lam / (c * mu)
    beta = (1.0 - rho) * np.sqrt(c)
    nd = NormalDist()
    cdf = np.vectorize(nd.cdf)(np.clip(beta, -30, 30))
    pdf = np.exp(-0.5 * np.clip(beta, -30, 30) ** 2) / math.sqrt(2 * math.pi)
    p_wait = np.clip(1.0 / (1.0 + beta * cdf / np.maximum(pdf, 1e-300)), 0.0, 1.0)
    gap = np.maximum(c * mu - lam, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(p_wait > 1.0 - q, np.log(p_wait / (1.0 - q)) / gap, 0.0)
    return np.where(rho < 1.0, w, np.inf)


def quantiles(
    st: SteadyState, mo: Moments, p: float, *, poisson: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The ``p``-th percentile (0-100) of TTFT and of TPOT at steady state ``st`` for fixed lengths,
    vectorised over its entries: the quantiles of the distributions :func:`request_samples` draws
    from: wait + residual iteration inverted exactly (:func:`_wait_plus_residual_quantile`), plus the
    request's own iterations; TPOT by the normal approximation of Binomial(O - 1, f)."""
    q = p / 100.0
    own = np.ceil(mo.isl / mo.b_req(st.d)) * st.t_mix  # mo.isl: the prefix-cache miss
    if poisson:
        wr = _wait_plus_residual_quantile(st, q)  # with the joining prompts (co_stretch)
    else:
        wr = np.asarray(st.wait, dtype=float) + st.co_s
    ttft = np.where(st.sustainable, wr + own + st.front_s + st.api_s, np.inf)
    n = max((mo.osl - 1.0) / mo.per_round, 1.0)
    var = (st.t_mix - st.t_dec) ** 2 * st.f * (1.0 - st.f) / n  # mixed iterations among its own
    if st.k_t is not None:  # plus the spread of the iteration time over the decode-batch law
        var = var + (st.k_w * (st.k_t - st.t_mean[:, None]) ** 2).sum(axis=1)
    tpot = (st.t_mean + _z(q) * np.sqrt(var)) / mo.per_round
    return ttft, tpot


#: Highest share of its capacity a candidate is run at (the queue diverges at capacity).
MAX_UTILISATION = 0.95


def goodput(inst: Instance, mo: Moments, p: float, ttft_s=None, tpot_s=None, rounds: int = _ITER):
    """DistServe goodput of every candidate: the highest Poisson rate, at most MAX_UTILISATION of
    the capacity, at which ``p`` % of requests meet both ``ttft_s`` and ``tpot_s`` (None: no target). Bisection over the decode batch d (the
    percentiles grow with it). Returns (goodput rps per instance, capacity rps, the state there)."""
    d_sat, cap = peak(inst, mo)  # search up to the batch of the largest sustainable rate

    def meets(d, chain=True):
        st = state_at(inst, mo, np.maximum(d, 1e-9))
        if chain and tpot_s is not None:
            st = with_batch_chain(inst, mo, st)
        t1, t2 = quantiles(st, mo, p)
        ok = st.sustainable.copy()
        if ttft_s is not None:
            ok &= t1 <= ttft_s
        if tpot_s is not None:
            ok &= t2 <= tpot_s
        return ok

    d_top = _bisect(
        lambda x: state_at(inst, mo, np.maximum(x, 1e-9)).lam <= MAX_UTILISATION * cap,
        np.zeros_like(d_sat),
        d_sat,
        rounds,
    )
    # the mean-field batch brackets the answer (the chain only widens the TPOT law): bisect without
    # the chain first, then with it below that bound (fewer of the costlier chain evaluations)
    d_mf = _bisect(lambda x: meets(x, chain=False), np.zeros_like(d_sat), d_top, rounds)
    lo = np.where(meets(0.5 * d_mf), 0.5 * d_mf, 0.0)
    d = _bisect(meets, lo, d_mf, CHAIN_ROUNDS)
    st = state_at(inst, mo, np.maximum(d, 1e-9))
    g = np.where((d > 0) & meets(d), st.lam, 0.0)
    return g, cap, with_batch_chain(inst, mo, st)
