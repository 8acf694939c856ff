"""Discrete-event simulation of a serving deployment, iteration by iteration.

Each instance runs the engine loop of continuous batching (Orca; vLLM V1 scheduler):

1. arrivals up to the current time join the waiting queue (FCFS);
2. admission: a waiting request starts when fewer than ``max_seqs`` requests run and the KV cache has
   free blocks for its prompt (paged KV, ``block`` tokens a block, Kwon et al. SOSP 2023);
3. the iteration decodes one token for every running request and gives the rest of the token budget
   (``budget - d``) to prompts in admission order, at most ``budget / (pp·dp)`` tokens of one
   prompt (chunked prefill, Sarathi-Serve);
4. when the running requests' KV no longer fits, the most recently admitted decoding request is
   preempted: its blocks are freed and it returns to the head of the queue to recompute its prompt
   and the tokens it produced (vLLM's recompute preemption);
5. the iteration lasts the cost model's :func:`~roofplan.costmodel.serve_load.round_time` of its
   (prompt tokens, their mean context, decoding requests, their mean context).

Iteration times are read from a table of ``round_time`` built with one vectorised call over a grid
of the four arguments and interpolated multilinearly (:class:`StepTable`), which keeps the loop
free of numpy calls: >= 10,000 requests in well under 2 s on one core
(``benchmarks/bench_simulate.py``). The KV blocks of decoding requests are counted as a fluid
(tokens / block + half a block per request) rather than request by request.

Deployments: ``instances`` colocated replicas behind a router (round robin, or uniformly random
which makes each replica's arrivals Poisson), or xPyD disaggregation: prefill instances run
prompt-only iterations (requests leave after their first token), the KV cache then travels
``transfer_s(isl)`` seconds to a decode instance (round robin), which admits it straight into
decoding. A prefill instance with pp stages is a tandem of pp equal stages fed from one queue:
a pass occupies the first stage for 1/pp of its time and its prompts are done pp - 1 stage times
later (at most pp passes in flight, vLLM's batch queue; the GPipe steady state the planner's
prefill rate assumes). TTFT is counted when the decode instance holds the KV (the first token is
streamed from there).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.serve_features import SpecDecode
from roofplan.costmodel.serve_load import Instance, kv_capacity_tokens, round_time, token_budget
from roofplan.errors import InputError

#: vLLM's default KV block size (tokens per block).
BLOCK_TOKENS = 16
ROUTERS = ("round-robin", "random")


def _grid(lo: float, hi: float, n: int, anchors=()) -> list[float]:
    g = set(np.geomspace(max(lo, 1.0), max(hi, lo + 1.0, 2.0), n).round(3).tolist())
    g.update(float(a) for a in anchors if lo <= a <= hi)
    return sorted(g)


def iteration_time(
    inst: Instance,
    prefill_tokens,
    prefill_context,
    decode_seqs,
    decode_context,
    spec: SpecDecode | None = None,
    expert_skew: float = 1.0,
) -> np.ndarray:
    """:func:`~roofplan.costmodel.serve_load.round_time` of ``inst`` with speculative decoding
    ``spec`` and the busiest EP rank's ``expert_skew`` (one code path: the analytic model's)."""
    return round_time(
        dataclasses.replace(inst, spec=spec),
        prefill_tokens,
        prefill_context,
        decode_seqs,
        decode_context,
        expert_skew=expert_skew,
    )


class StepTable:
    """``round_time`` of one instance on a grid of (prompt tokens, prompt context, decoding
    requests, decode context), evaluated in one vectorised call; :meth:`__call__` interpolates."""

    def __init__(
        self,
        inst: Instance,
        budget: int,
        max_seqs: int,
        max_ctx: float,
        anchors: dict | None = None,
        time_fn=round_time,
    ):
        a = anchors or {}
        self.p = [0.0] + _grid(1, budget, 20, a.get("p", ()))
        self.cp = _grid(1, max_ctx, 7, a.get("cp", ()))
        self.d = sorted(
            set(range(0, min(max_seqs, 32) + 1)) | set(_grid(32, max(max_seqs, 33), 16, a.get("d", ())))
        )
        self.cd = _grid(1, max_ctx, 7, a.get("cd", ()))
        P, CP, D, CD = np.meshgrid(self.p, self.cp, self.d, self.cd, indexing="ij")
        t = time_fn(inst, P.ravel(), CP.ravel(), D.ravel(), CD.ravel())
        self.table = t.tolist()
        self.shape = P.shape
        self._s = (
            self.shape[1] * self.shape[2] * self.shape[3],
            self.shape[2] * self.shape[3],
            self.shape[3],
        )

    @staticmethod
    def _locate(g: list[float], x: float) -> tuple[int, float]:
        i = bisect_right(g, x) - 1
        if i < 0:
            return 0, 0.0
        if i >= len(g) - 1:  # beyond the grid: linear extrapolation from the last cell
            i = len(g) - 2
        return i, (x - g[i]) / (g[i + 1] - g[i])

    def __call__(self, p: float, cp: float, d: float, cd: float) -> float:
        ip, wp = self._locate(self.p, p)
        ic, wc = self._locate(self.cp, cp)
        idd, wd = self._locate(self.d, d)
        ik, wk = self._locate(self.cd, cd)
        s0, s1, s2 = self._s
        t = self.table
        out = 0.0
        for a, fa in ((ip, 1 - wp), (ip + 1, wp)):
            if fa == 0.0:
                continue
            for b, fb in ((ic, 1 - wc), (ic + 1, wc)):
                if fb == 0.0:
                    continue
                for c, fc in ((idd, 1 - wd), (idd + 1, wd)):
                    if fc == 0.0:
                        continue
                    base = a * s0 + b * s1 + c * s2 + ik
                    out += fa * fb * fc * ((1 - wk) * t[base] + (wk * t[base + 1] if wk else 0.0))
        return out


@dataclass
class SimResult:
    """Per-request times (seconds; NaN where undefined) and counters of one simulation."""

    arrival_s: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    latency_s: np.ndarray
    wait_s: np.ndarray  # arrival to the first iteration that computes the prompt (queueing)
    isl: np.ndarray
    osl: np.ndarray
    makespan_s: float
    iterations: int
    preemptions: int
    mean_running: float  # time-averaged decoding requests per instance
    busy_fraction: float  # share of time instances iterate

    def summary(self, key: str, skip: float = 0.1) -> dict:
        """Mean and percentiles over the requests after the first ``skip`` share (warm-up)."""
        x = getattr(self, key)
        order = np.argsort(self.arrival_s, kind="stable")
        x = x[order][int(len(x) * skip) :]
        x = x[np.isfinite(x)]
        if len(x) == 0:
            return {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
        return {"mean": float(x.mean()), **{f"p{p}": float(np.percentile(x, p)) for p in (50, 90, 99)}}


def _closed_loop_arrivals(
    step,
    arrival: list[float],
    kv_prompt,
    gen_target,
    closed: int,
    prefix: int = 0,
    per_round: float = 1.0,
    burst_start: bool = False,
) -> None:
    """A closed loop of ``closed`` clients: the first C requests start spread over one request
    lifetime (its decoding iterations, ``per_round`` tokens each; desynchronised clients), the rest
    wait for completions (arrival = inf, in place). A spread over more than one lifetime would let
    a client's second request meet a later client's first; with fixed lengths such a bunch then
    prefills, decodes and finishes together for the rest of the run. ``burst_start``: the first C
    start together at 0 instead, as ``vllm bench serve --max-concurrency C`` launches its clients
    (vllm/benchmarks/serve.py ``benchmark``: one asyncio task per request, gated by a semaphore of
    C, so the first C pass at once); with fixed lengths the clients then stay in lock-step."""
    n = len(arrival)
    c0 = min(closed, n)
    if burst_start:
        arrival[:] = [0.0] * c0 + [float("inf")] * (n - c0)
        return
    ctx = prefix + sum(kv_prompt) / n + sum(gen_target) / (2 * n)
    life = max(sum(gen_target) / n / per_round, 1.0) * step(0.0, 1.0, float(c0), ctx)
    arrival[:] = [life * k / c0 for k in range(c0)] + [float("inf")] * (n - c0)


class _Requests:
    """Per-request state of one simulated instance (lists indexed by request) and the per-request
    events: entering decoding, completion, preemption, the end of a prompt. The engine loop of
    :func:`run_instance` keeps the per-iteration totals (running requests, their context) itself."""

    def __init__(self, arrival, prompt, kv_prompt, gen_target, closed, api_s=0.0, per_round=1.0):
        n = len(arrival)
        self.api_s = api_s  # the API server's per-request time: a closed loop's next request waits for it
        self.per_round = per_round  # tokens a decoding request gains per iteration (speculative: E)
        self.n, self.arrival, self.kv_prompt, self.gen_target, self.closed = (
            n,
            arrival,
            kv_prompt,
            gen_target,
            closed,
        )
        self.first = [float("nan")] * n
        self.finish = [float("nan")] * n
        self.begun = [
            float("nan")
        ] * n  # start of the first iteration that computes its prompt (or admits it)
        self.gen = [0] * n  # tokens produced
        self.todo = list(prompt)  # prompt tokens still to compute
        self.done_pre = [0] * n
        self.base = [0] * n  # context when entering decoding
        self.start = [0] * n  # iteration index when entering decoding
        self.epoch = [0] * n
        self.heap: list = []  # (finish iteration, request, epoch)
        self.order: list[int] = []  # decoding requests by admission, for LIFO preemption
        self.decoding: set = set()
        self.waiting: deque = deque()
        self.finished = 0

    def enter_decode(self, i: int, it: int) -> int:
        """Request i decodes from iteration ``it``; returns its context (KV tokens)."""
        self.base[i] = self.kv_prompt[i] + self.gen[i]
        self.start[i] = it
        left = self.gen_target[i] - self.gen[i]
        rounds = left if self.per_round == 1.0 else math.ceil(left / self.per_round)
        heapq.heappush(self.heap, (it + rounds, i, self.epoch[i]))
        self.decoding.add(i)
        self.order.append(i)
        return self.base[i]

    def complete(self, i: int, now: float) -> None:
        """Request i is done at ``now``; a closed loop sends the next request then."""
        self.finish[i] = now
        self.finished += 1
        k = self.finished - 1
        if self.closed is not None and self.closed + k < self.n:
            self.arrival[self.closed + k] = now + self.api_s

    def preempt_newest(self, it: int) -> int:
        """vLLM recompute preemption of the most recently admitted decoding request: it returns to
        the head of the queue to recompute its prompt and the tokens it produced; returns the
        context it held."""
        order, decoding = self.order, self.decoding
        while order and order[-1] not in decoding:
            order.pop()
        v = order.pop()
        decoding.discard(v)
        grown = (it - self.start[v]) * self.per_round
        self.gen[v] = min(self.gen[v] + int(round(grown)), self.gen_target[v] - 1)
        self.epoch[v] += 1
        self.todo[v] = self.kv_prompt[v] + self.gen[v]
        self.done_pre[v] = 0
        self.waiting.appendleft(v)
        return self.base[v] + grown

    def prompt_done(self, i: int, now: float, it: int, block: int) -> tuple[int, int]:
        """Request i's prompt is computed at ``now``: its first token, then decoding (or done).
        Returns (prompt blocks released, context entering decoding or -1)."""
        freed = -(-(self.kv_prompt[i] + self.gen[i]) // block)
        self.todo[i] = 0
        if self.gen[i] == 0:
            self.gen[i] = 1
            self.first[i] = now
        if self.gen[i] >= self.gen_target[i]:
            self.complete(i, now)
            return freed, -1
        return freed, self.enter_decode(i, it)


def run_instance(
    step: Callable[[float, float, float, float], float],
    arrival: list[float],
    prompt: list[int],
    kv_prompt: list[int],
    gen_target: list[int],
    *,
    budget: int,
    share: int,
    max_seqs: float,
    kv_blocks: int,
    block: int = BLOCK_TOKENS,
    closed: int | None = None,
    prefix: int = 0,
    api_s: float = 0.0,
    per_round: float = 1.0,
    burst_start: bool = False,
    drain_stages: int = 0,
) -> tuple[list[float], list[float], list[float], dict]:
    """Simulate one instance. Request i arrives at ``arrival[i]`` (sorted), must compute
    ``prompt[i]`` prompt tokens (0: its KV arrives ready, disaggregated decode), holds ``kv_prompt[i]``
    tokens of KV once admitted and produces ``gen_target[i]`` tokens (the first at the end of its
    prefill). ``closed=C``: a closed loop of C clients instead -- the first C requests arrive at 0
    and each completion sends the next one, which reaches the engine ``api_s`` (the API server's
    per-request time) later (``arrival`` is overwritten in place). ``prefix``: tokens
    of every prompt already in the prefix cache (shared, held outside ``kv_blocks``): prompts and
    decoding requests attend to them on top of their own tokens. ``per_round``: tokens a decoding
    request gains per iteration (speculative decoding: E, as a mean). ``burst_start``: the closed
    loop's first C requests all start at 0 (:func:`_closed_loop_arrivals`). ``drain_stages``: a
    pipelined prefill instance whose ``step`` is the first stage's share of a pass: the prompts a
    pass completes are done that many further stage times later. Returns (first-token
    times, finish times, first-decode times, counters)."""
    n = len(arrival)
    if closed is not None:
        _closed_loop_arrivals(step, arrival, kv_prompt, gen_target, closed, prefix, per_round, burst_start)
    R = _Requests(arrival, prompt, kv_prompt, gen_target, closed, api_s, per_round)
    first, begun, gen, todo, done_pre = R.first, R.begun, R.gen, R.todo, R.done_pre
    base, start, epoch, heap, decoding, waiting = R.base, R.start, R.epoch, R.heap, R.decoding, R.waiting
    cap_req = max(budget // share, 1)
    t = 0.0
    it = nxt = d = sum_ctx = preempt = 0
    blocks_pre = 0  # blocks held by admitted, not-yet-decoding requests
    area_d = busy = 0.0
    prefilling: list[int] = []
    while R.finished < n:
        while nxt < n and arrival[nxt] <= t:
            waiting.append(nxt)
            nxt += 1
        if d == 0 and not prefilling and not waiting:
            t = arrival[nxt]
            continue
        # admission (prompt blocks reserved up front)
        used = sum_ctx / block + 0.5 * d + blocks_pre
        while waiting and d + len(prefilling) < max_seqs:
            i = waiting[0]
            need = -(-(kv_prompt[i] + gen[i]) // block)
            if used + need > kv_blocks and (d or prefilling):
                break
            waiting.popleft()
            used += need
            if todo[i] > 0:
                prefilling.append(i)
                blocks_pre += need
            else:  # KV already here (disaggregated decode, or nothing to compute)
                gen[i] = max(gen[i], 1)
                if first[i] != first[i]:
                    first[i] = begun[i] = t
                d += 1
                sum_ctx += R.enter_decode(i, it)
        # preemption when the decoding requests' next tokens do not fit
        while d > 1 and (sum_ctx + d) / block + 0.5 * d + blocks_pre > kv_blocks:
            d -= 1
            sum_ctx -= R.preempt_newest(it)
            preempt += 1
        # build the iteration
        left = budget - d
        p = 0
        ctx_w = 0.0
        for i in prefilling:
            if left <= 0:
                break
            take = min(todo[i] - done_pre[i], left, cap_req)
            if begun[i] != begun[i]:
                begun[i] = t
            ctx_w += take * (prefix + done_pre[i] + (take + 1) / 2.0)
            done_pre[i] += take
            p += take
            left -= take
        if p == 0 and d == 0:
            if nxt < n:
                t = max(t, arrival[nxt])
                continue
            break  # nothing can run (a prompt larger than the budget with no room): stop
        dt = step(float(p), ctx_w / p if p else 1.0, float(d), sum_ctx / d + prefix if d else 1.0)
        t += dt
        it += 1
        busy += dt
        area_d += d * dt
        sum_ctx += d * per_round
        while heap and heap[0][0] <= it:
            f_it, i, ep = heapq.heappop(heap)
            if ep != epoch[i] or i not in decoding:
                continue
            decoding.discard(i)
            d -= 1
            sum_ctx -= base[i] + (it - start[i]) * per_round
            gen[i] = gen_target[i]
            R.complete(i, t)
        still = []
        for i in prefilling:
            if done_pre[i] < todo[i]:
                still.append(i)
                continue
            freed, ctx = R.prompt_done(i, t + drain_stages * dt, it, block)
            blocks_pre -= freed
            if ctx >= 0:
                d += 1
                sum_ctx += ctx
        prefilling = still
    stats = {
        "iterations": it,
        "preemptions": preempt,
        "area_d": area_d,
        "busy": busy,
        "end": t,
        "begun": begun,
    }
    return R.first, R.finish, [float(x) for x in start], stats


def _route(n: int, k: int, router: str, rng) -> np.ndarray:
    if router not in ROUTERS:
        raise InputError("--router", router, "one of " + ", ".join(ROUTERS))
    return np.arange(n) % k if router == "round-robin" else rng.integers(0, k, n)


def poisson_arrivals(n: int, rate: float, seed: int = 0) -> np.ndarray:
    """n Poisson arrival times at ``rate`` requests/s (first at 0)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, n)
    gaps[0] = 0.0
    return np.cumsum(gaps)


def _instance_limits(
    inst: Instance,
    isl,
    osl,
    prefix: int = 0,
    spec: SpecDecode | None = None,
) -> tuple[int, float, int, float]:
    """(token budget, sequence cap, free KV blocks, longest context) of an instance; a cached prefix
    of ``prefix`` tokens holds its blocks once per attention-DP rank; a draft network's weights and
    KV take their room (serve_features.memory_model)."""
    budget = token_budget(inst, int(np.max(isl)))
    held = dataclasses.replace(inst, spec=spec)
    blocks = int(kv_capacity_tokens(held) // BLOCK_TOKENS) - inst.dp * -(-int(prefix) // BLOCK_TOKENS)
    max_seqs = float(inst.engine.max_num_seqs or 10**9)
    max_ctx = float(np.max(np.asarray(isl) + np.asarray(osl)))
    return budget, max_seqs, blocks, max_ctx


def _table(
    inst: Instance,
    isl,
    osl,
    budget,
    max_seqs,
    blocks,
    max_ctx,
    prefill_only=False,
    prefix=0,
    spec: SpecDecode | None = None,
    expert_skew: float = 1.0,
    stages: int = 1,
) -> StepTable:
    """The step table over the contexts this workload reaches (prompts of ``isl`` tokens of which
    ``prefix`` are cached: chunks of the miss at context prefix + (miss+1)/2); ``stages`` > 1: the
    time one of that many equal pipeline stages takes of each iteration."""
    mean_ctx = float(np.mean(np.asarray(isl) + np.asarray(osl) / 2.0))
    seq_cap = int(min(max_seqs, max(blocks, 0) * BLOCK_TOKENS / max(mean_ctx - prefix, 1.0) * 2 + 8))
    u = np.unique(np.asarray(isl) - prefix)
    few = u if len(u) <= 4 else u[:0]  # grid points at the prompt lengths of a fixed-length workload
    anchors = {
        "p": [float(x) for x in few],
        "cp": [prefix + (float(x) + 1) / 2 for x in few],
        "cd": [mean_ctx],
    }
    plain = spec is None and expert_skew == 1.0 and stages == 1
    fn = (
        round_time
        if plain
        else (lambda i, *a: iteration_time(i, *a, spec=spec, expert_skew=expert_skew) / stages)
    )
    return StepTable(inst, budget, 0 if prefill_only else max(seq_cap, 1), max_ctx, anchors, time_fn=fn)


def _times(first, finish, osl):
    first = np.asarray(first, dtype=float)
    finish = np.asarray(finish, dtype=float)
    o = np.asarray(osl, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(o > 1, (finish - first) / (o - 1.0), np.nan)
    return first, finish, tpot


@dataclass
class _Counters:
    """Per-instance counters of :func:`run_instance` summed over the instances of a deployment."""

    iterations: int = 0
    preemptions: int = 0
    area_d: float = 0.0  # decoding requests x seconds
    busy: float = 0.0
    end: float = 0.0

    def add(self, st: dict, decoding: bool = True) -> None:
        """Add one instance's ``stats``; prefill-only instances (``decoding=False``) add no
        decode area and do not set the end of the run."""
        self.iterations += st["iterations"]
        self.preemptions += st["preemptions"]
        self.busy += st["busy"]
        if decoding:
            self.area_d += st["area_d"]
            self.end = max(self.end, st["end"])


def _sim_result(
    arr, ttft, first_abs, fin, wait, isl, osl, tot: _Counters, start: float, decoding, busy
) -> SimResult:
    """The SimResult of a run: per-request times from the send times ``arr``, first-token times
    ``first_abs`` and finish times ``fin``; the span from ``start`` to the last decoding instance's
    end; the mean running batch per decoding instance (``decoding`` of them) and the busy share
    per instance (``busy`` of them)."""
    _, _, tpot = _times(first_abs, fin, osl)
    span = max(tot.end - start, 1e-12)
    return SimResult(
        arr,
        ttft,
        tpot,
        fin - arr,
        wait,
        isl,
        osl,
        span,
        tot.iterations,
        tot.preemptions,
        tot.area_d / span / decoding,
        tot.busy / span / busy,
    )


def simulate_colocated(
    inst: Instance,
    isl,
    osl,
    arrival_s=None,
    *,
    instances: int = 1,
    router: str = "round-robin",
    seed: int = 0,
    concurrency: int | None = None,
    prefix_hit: int = 0,
    spec: SpecDecode | None = None,
    expert_skew: float = 1.0,
    burst_start: bool = False,
) -> SimResult:
    """``instances`` colocated replicas of ``inst`` behind a router, fed ``arrival_s`` or a closed
    loop of ``concurrency`` clients (split evenly over the replicas; ``burst_start``: the clients'
    first requests all start at 0, see :func:`_closed_loop_arrivals`). A request reaches the engine
    the engine's ``request_overhead_s`` after its client sends it (the API server's time); TTFT and
    latency count from the send. ``prefix_hit``: prompt tokens
    every request finds in the prefix cache (one shared copy per attention-DP rank): prompts
    compute and hold KV for the rest only. ``spec``: speculative decoding, each decoding request
    gaining E = ``spec.tokens_per_step`` tokens per iteration; ``expert_skew``: the busiest EP rank's
    routed load over the mean."""
    isl = np.asarray(isl, dtype=np.int64)
    osl = np.asarray(osl, dtype=np.int64)
    arr = np.zeros(len(isl)) if arrival_s is None else np.array(arrival_s, dtype=float)
    api = float(inst.engine.request_overhead_s)
    budget, max_seqs, blocks, max_ctx = _instance_limits(inst, isl, osl, prefix_hit, spec)
    table = _table(
        inst,
        isl,
        osl,
        budget,
        max_seqs,
        blocks,
        max_ctx,
        prefix=prefix_hit,
        spec=spec,
        expert_skew=expert_skew,
    )
    miss = isl - int(prefix_hit)
    where = _route(len(arr), instances, router, np.random.default_rng(seed + 1))
    ttft = np.full(len(arr), np.nan)
    fin = np.full(len(arr), np.nan)
    wait = np.full(len(arr), np.nan)
    tot = _Counters()
    for k in range(instances):
        idx = np.nonzero(where == k)[0]
        if len(idx) == 0:
            continue
        a = (arr[idx] + api).tolist()  # engine arrivals
        clients = (
            None if concurrency is None else max(concurrency // instances + (k < concurrency % instances), 1)
        )
        f, e, _, st = run_instance(
            table,
            a,
            miss[idx].tolist(),
            miss[idx].tolist(),
            osl[idx].tolist(),
            budget=budget,
            share=inst.pp * inst.dp,
            max_seqs=max_seqs,
            kv_blocks=blocks,
            closed=clients,
            prefix=int(prefix_hit),
            api_s=api,
            per_round=1.0 if spec is None else spec.tokens_per_step,
            burst_start=burst_start,
        )
        arr[idx] = np.asarray(a) - api  # the clients' send times
        wait[idx] = np.asarray(st["begun"]) - np.asarray(a)
        ttft[idx] = np.asarray(f) - arr[idx]
        fin[idx] = e
        tot.add(st)
    return _sim_result(
        arr, ttft, ttft + arr, fin, wait, isl, osl, tot, float(arr.min()), instances, instances
    )


def simulate_disagg(
    prefill: Instance,
    decode: Instance,
    isl,
    osl,
    arrival_s,
    *,
    prefill_instances: int,
    decode_instances: int,
    transfer_s: Callable[[np.ndarray], np.ndarray],
    router: str = "round-robin",
    seed: int = 0,
    prefix_hit: int = 0,
    spec: SpecDecode | None = None,
    expert_skew: float = 1.0,
) -> SimResult:
    """xPyD: prompts on ``prefill_instances`` replicas of ``prefill``, then after the KV transfer
    ``transfer_s(isl)`` the decode on ``decode_instances`` replicas of ``decode``. ``prefix_hit``
    as in :func:`simulate_colocated`, on both sides (``transfer_s`` ships what it charges for);
    ``spec`` on the decode side, ``expert_skew`` on both."""
    isl = np.asarray(isl, dtype=np.int64)
    osl = np.asarray(osl, dtype=np.int64)
    arr = np.asarray(arrival_s, dtype=float)
    n = len(arr)
    rng = np.random.default_rng(seed + 1)
    ones = [1] * n
    hit = int(prefix_hit)
    miss = isl - hit
    bp, sp, kp, cp = _instance_limits(prefill, isl, np.ones_like(osl), hit)
    # pp > 1: one queue in front of a tandem of pp stages; the table holds the first stage's time
    depth = prefill.pp
    tab_p = _table(
        prefill,
        isl,
        np.ones_like(osl),
        bp,
        sp,
        kp,
        cp,
        prefill_only=True,
        prefix=hit,
        expert_skew=expert_skew,
        stages=depth,
    )
    wp = _route(n, prefill_instances, router, rng)
    ready = np.full(n, np.nan)
    wait = np.full(n, np.nan)
    tot = _Counters()
    api = float(prefill.engine.request_overhead_s)  # the prefill side's API server takes the request
    for k in range(prefill_instances):
        idx = np.nonzero(wp == k)[0]
        if len(idx) == 0:
            continue
        f, _, _, st = run_instance(
            tab_p,
            (arr[idx] + api).tolist(),
            miss[idx].tolist(),
            miss[idx].tolist(),
            [ones[0]] * len(idx),
            budget=bp,
            share=prefill.dp,
            max_seqs=sp,
            kv_blocks=kp,
            prefix=hit,
            drain_stages=depth - 1,
        )
        ready[idx] = np.asarray(f) + np.asarray(transfer_s(isl[idx]), dtype=float)
        wait[idx] = np.asarray(st["begun"]) - (arr[idx] + api)
        tot.add(st, decoding=False)
    bd, sd, kd, cd = _instance_limits(decode, isl, osl, hit, spec)
    tab_d = _table(decode, isl, osl, bd, sd, kd, cd, prefix=hit, spec=spec, expert_skew=expert_skew)
    order = np.argsort(ready, kind="stable")
    wd = np.empty(n, dtype=np.int64)
    wd[order] = _route(n, decode_instances, router, rng)
    first = np.full(n, np.nan)
    fin = np.full(n, np.nan)
    for k in range(decode_instances):
        idx = order[wd[order] == k]
        if len(idx) == 0:
            continue
        f, e, _, st = run_instance(
            tab_d,
            ready[idx].tolist(),
            [0] * len(idx),
            miss[idx].tolist(),
            osl[idx].tolist(),
            budget=bd,
            share=decode.pp * decode.dp,
            max_seqs=sd,
            kv_blocks=kd,
            prefix=hit,
            per_round=1.0 if spec is None else spec.tokens_per_step,
        )
        first[idx] = f
        fin[idx] = e
        tot.add(st)
    busy_instances = prefill_instances + decode_instances
    return _sim_result(
        arr, first - arr, first, fin, wait, isl, osl, tot, float(arr[0]), decode_instances, busy_instances
    )
