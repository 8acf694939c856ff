"""Colocated serving: continuous batching with chunked prefill, in steady state.

One instance holds ``C`` running requests (concurrency). Every engine step decodes one token for
each of them; steps that have prompt work pending also carry a prefill chunk of ``chunk`` tokens
(Sarathi-Serve, Agrawal et al. OSDI 2024 §4: "stall-free batching" with a token budget; DeepSpeed-
FastGen "Dynamic SplitFuse"; vLLM ``--max-num-batched-tokens`` = chunk + C).

Steady state (token balance): requests leave at the rate they enter. Per step, ``C/osl`` requests
finish decoding, so ``C/osl`` prompts of ``isl`` tokens must be prefilled per step on average. A
fraction ``f`` of steps carries a chunk, hence

    f · chunk = C · isl / osl        (f <= 1, else the budget cannot keep the decode slots full)

With ``T_mix`` the time of a step with a chunk and ``T_dec`` of a pure decode step (both from the
cost model's mixed-batch :func:`~roofplan.costmodel.serve.step_time`, Vidur/Sarathi style):

* TPOT (mean time between a request's tokens) = f·T_mix + (1-f)·T_dec
* TTFT = ceil(isl / chunk) · T_mix (a prompt's chunks ride consecutive mixed steps)

With pipeline parallelism the requests form m = min(C, pp) microbatches (vLLM virtual engines);
a round in which every request advances one token is pp stage times of one microbatch (the
composition the cost model's ``serve_step`` uses for decode), each microbatch carrying chunk/m
prompt tokens. Attention-DP ranks (MoE) each schedule their own requests, so a rank carries
chunk/dp of the chunk: TTFT = ceil(isl·m·dp / chunk) rounds.
* throughput = C / TPOT output tokens/s; request rate = C / (osl · TPOT)

Speculative decoding, prefix caching and expert skew (``features``): a round yields E tokens per
request (TPOT = the mean round / E; a request leaves after osl/E rounds), prompt chunks compute only
the prefix-cache miss, and the busiest EP rank paces the MoE layers
(:func:`~roofplan.costmodel.serve_features.colocated_rounds`).

Attended context: a prompt's chunks attend on average to (isl+1)/2 keys (the causal triangle averaged
over its chunks); decoding requests to isl + osl/2 (their mean context over the O steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel.serve_features import colocated_rounds
from roofplan.solver.serve_space import Shapes


@dataclass
class ColocatedArrays:
    """Steady-state metrics of colocated candidates (arrays of length N)."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    rate_rps: np.ndarray  # requests/s one instance sustains
    tokens_per_s: np.ndarray  # output tokens/s of one instance
    mix_fraction: np.ndarray  # f: share of steps carrying a prefill chunk
    t_mix_s: np.ndarray
    t_decode_s: np.ndarray
    fits: np.ndarray  # KV of C requests fits and f <= 1
    max_batch: np.ndarray
    balanced: np.ndarray  # f <= 1
    busy_s: np.ndarray | None = None  # per mean step: compute- plus memory-bound time (power model)


def colocated_metrics(
    model,
    hw,
    engine,
    shapes: Shapes,
    concurrency,
    chunk,
    *,
    isl: int,
    osl: int,
    dtype: str,
    kv_dtype: str | None,
    engine_name: str,
    features=None,
) -> ColocatedArrays:
    """Evaluate every (shape, concurrency, chunk) candidate at once (all arrays length N).
    ``features`` = (SpecDecode or None, prefix-hit tokens, expert skew) adds speculative decoding
    (E tokens per request per round), prefix caching (only the miss is prefilled) and skewed expert
    load (:func:`~roofplan.costmodel.serve_features.colocated_rounds`)."""
    C = np.asarray(concurrency, dtype=np.int64)
    chunk = np.asarray(chunk, dtype=float)
    cfg = serve_model.ServeConfigs(
        tp=shapes.tp,
        pp=shapes.pp,
        ep=shapes.ep,
        dp=shapes.dp,
        batch=C,
        isl=np.full(len(C), isl, dtype=np.int64),
        osl=np.full(len(C), osl, dtype=np.int64),
        dtype=dtype,
        kv_dtype=kv_dtype,
        engine=engine_name,
    )
    # Pipeline parallel: the running requests are split into m = min(C, pp) microbatches, one per
    # virtual engine (vLLM), and a round (every request advances one token) takes pp stage times of
    # one microbatch -- the same composition as the cost model's static decode (serve_step).
    m = np.minimum(C, shapes.pp).astype(float)
    spec, hit, skew = features or (None, 0, 1.0)
    r = colocated_rounds(
        model, hw, engine, cfg, C, chunk, m, isl=isl, osl=osl, spec=spec, prefix_hit=hit, expert_skew=skew
    )
    mix, dec, E = r.mixed, r.decode, r.tokens_per_round
    t_mix = np.asarray(mix.total, dtype=float)
    t_dec = np.asarray(dec.total, dtype=float)
    # a request leaves after osl/E rounds; its replacement's miss must be prefilled meanwhile
    f = C * float(r.prompt_tokens) / (float(osl) / E * chunk)
    balanced = f <= 1.0
    fc = np.minimum(f, 1.0)
    tpot = (fc * t_mix + (1.0 - fc) * t_dec) / E
    # a request lives in one microbatch and on one attention-DP rank, so its prompt advances
    # chunk/(m·dp) tokens per round; the API server's per-request time comes on top (serve_load)
    ttft = np.ceil(r.prompt_tokens * m * shapes.dp / chunk) * t_mix + float(engine.request_overhead_s)
    mb = r.max_batch
    fits = (C <= mb) & balanced
    tokens = C / tpot
    busy = (fc * (mix.compute + mix.memory) + (1.0 - fc) * (dec.compute + dec.memory)) / E
    return ColocatedArrays(ttft, tpot, tokens / osl, tokens, f, t_mix, t_dec, fits, mb, balanced, busy)
