"""Serving features on top of :func:`roofplan.costmodel.serve.serve_step`: speculative decoding,
prefix caching and expert-load skew. Pure functions; without them the results equal the plain
cost model's.

**Speculative decoding** (Leviathan et al., ICML 2023; Chen et al. 2023). A draft proposes ``k``
tokens per request, the target verifies them in one pass and keeps the accepted prefix plus one
token of its own. With a per-token acceptance rate ``a`` (independent positions, Leviathan et al.
eq. 1) one verify step yields on average

    E = (1 - a^(k+1)) / (1 - a)      tokens per request   (k + 1 when a = 1)

One decode step costs ``k`` sequential draft steps plus one verify pass; the verify pass is the
target's decode step for the B requests (each reads its KV cache once) plus ``B·k`` extra query
tokens attending to the same context and sampling a token each (the mixed step of
:func:`~roofplan.costmodel.serve.step_parts` with those tokens as prefill tokens). TPOT =
(k·draft + verify) / E; throughput follows from TPOT. Drafts by method:

* ``mtp`` — the model's own multi-token-prediction module (DeepSeek-V3 §2.2: one decoder layer of
  the model's kind plus a 2h x h projection, sharing embedding and head); a draft step is that
  layer and the LM head. Its weights and its KV cache are one more layer of the model.
* ``eagle3`` — an EAGLE-3 head (Li et al. 2025): one dense decoder layer of the target's width
  with the target's LM head; weights and KV of one dense layer.
* ``ngram`` — prompt lookup (vLLM ``method: ngram``): drafts come from the CPU, no GPU cost, no
  memory.

:data:`SPEC_DEFAULTS` gives the published defaults per method; the acceptance rate is workload
dependent and meant to be set by the user.

**Prefix caching** (vLLM automatic prefix caching; SGLang RadixAttention, Zheng et al. 2024). Of a
prompt of ``isl`` tokens the first ``prefix_hit`` are already in the KV cache: prefill computes only
the ``isl - prefix_hit`` missing tokens, which still attend to the whole prefix (mean context
``hit + (miss + 1) / 2``); decode still attends to the full context. The cached prefix is shared by
the requests (one copy per instance), so each request holds KV for its miss and its output only.

**Expert-load skew**: ``expert_skew`` (max / mean routed tokens per expert-parallel rank, 1 =
uniform) is passed to :func:`~roofplan.costmodel.serve.step_parts`, where the busiest EP rank's
expert GEMMs and dispatch/combine bytes scale by it.

Both paths use the same pieces: :func:`serve_step_ext` (the static batch: prefill, then decode) and
:func:`colocated_rounds` (the mixed and decode-only rounds of continuous batching with chunked
prefill, for :mod:`roofplan.solver.colocated`) price a speculative round with
:func:`speculative_round` and size memory with :func:`feature_memory`. In disaggregated serving only
the miss of a prefix-cache hit travels to the decode instance
(:func:`~roofplan.costmodel.serve_memory.kv_transfer_bytes`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.serve import (
    ServeArrays,
    ServeConfigs,
    ServeMemory,
    StepParts,
    _compose,
    max_batch,
    serve_memory,
    serve_step,
    static_arrays,
    step_breakdown,
    step_parts,
    validate_serve_config,
)
from roofplan.costmodel.serve_memory import kv_bytes_per_token_per_device
from roofplan.engines.profile import EngineProfile
from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec

#: method -> (draft tokens k, acceptance rate per token, source). Published defaults.
SPEC_DEFAULTS: dict[str, tuple[int, float, str]] = {
    "mtp": (
        1,
        0.85,
        "DeepSeek-V3 technical report (arXiv 2412.19437) §5.4.3: the second token "
        "predicted by the MTP module is accepted 85-90 % of the time (k = 1); 0.85 taken",
    ),
    "eagle3": (
        3,
        0.64,
        "nebius/EAGLE3-Llama-3.3-70B-Instruct model card, public checkpoint "
        "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B: mean acceptance length 2.77 on MT-bench with "
        "K = 7 at temperature 1, i.e. a = 0.64 per token under E = (1-a^8)/(1-a); k = 3 as "
        "in SGLang's documented EAGLE-3 examples (--speculative-num-steps 3)",
    ),
    "ngram": (
        3,
        0.5,
        "unsourced (typical value: prompt-lookup acceptance depends on how much the "
        "output copies the prompt, high for summarisation and code edits, near 0 for chat)",
    ),
}
SPEC_METHODS = tuple(SPEC_DEFAULTS)


@dataclass(frozen=True)
class SpecDecode:
    """Speculative decoding: ``method`` (mtp, eagle3, ngram), ``draft_tokens`` k per step and the
    per-token ``acceptance`` rate."""

    method: str
    draft_tokens: int
    acceptance: float

    def __post_init__(self) -> None:
        if self.method not in SPEC_DEFAULTS:
            raise InputError("spec-method", self.method, "one of " + ", ".join(SPEC_METHODS))
        k = self.draft_tokens
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 16:
            raise InputError("spec-tokens", k, "an integer draft length from 1 to 16")
        if not 0.0 <= float(self.acceptance) <= 1.0:
            raise InputError("spec-accept", self.acceptance, "an acceptance rate from 0 to 1")

    @classmethod
    def of(cls, method: str, draft_tokens: int | None = None, acceptance: float | None = None) -> SpecDecode:
        """``method`` with its published defaults for whatever is not given."""
        if method not in SPEC_DEFAULTS:
            raise InputError("spec-method", method, "one of " + ", ".join(SPEC_METHODS))
        k, a, _ = SPEC_DEFAULTS[method]
        return cls(
            method, k if draft_tokens is None else draft_tokens, a if acceptance is None else acceptance
        )

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens emitted per verify step (Leviathan et al. 2023 eq. 1)."""
        a, k = float(self.acceptance), self.draft_tokens
        return float(k + 1) if a >= 1.0 else (1.0 - a ** (k + 1)) / (1.0 - a)

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "draft_tokens": self.draft_tokens,
            "acceptance": self.acceptance,
            "tokens_per_step": self.tokens_per_step,
            "default_source": SPEC_DEFAULTS[self.method][2],
        }


def resolve_prefix_hit(prefix_hit, isl: int) -> int:
    """``--prefix-hit``: a token count (>= 1) or a fraction of the prompt (0 <= f < 1), as tokens;
    at least one prompt token is always computed."""
    if prefix_hit is None:
        return 0
    try:
        value = float(prefix_hit)
    except (TypeError, ValueError):
        raise InputError("prefix-hit", prefix_hit, "a token count or a fraction of isl in [0, 1)") from None
    if value < 0 or (value >= 1 and value != int(value)):
        raise InputError("prefix-hit", prefix_hit, "a token count or a fraction of isl in [0, 1)")
    tokens = int(round(value * isl)) if value < 1 else int(value)
    if tokens >= isl:
        raise InputError("prefix-hit", prefix_hit, f"fewer tokens than isl ({isl})")
    return tokens


def draft_model(model: ModelSpec, method: str) -> ModelSpec | None:
    """The draft network as a one-layer model of the target's width (None for n-gram drafts)."""
    if method == "ngram":
        return None
    plain = dict(layers=1, attn_layers=0, window=None, linear=None, name=f"{model.name}-{method}-draft")
    if method == "mtp":  # one decoder layer of the model's own kind (its last-layer structure)
        if model.mtp_layers < 1:  # engines load the MTP module from the checkpoint; it must have one
            raise InputError(
                "spec-method", "mtp", f"{model.name} has no MTP module (mtp_layers 0): use eagle3 or ngram"
            )
        moe = dataclasses.replace(model.moe, first_dense_layers=0) if model.moe else None
        return dataclasses.replace(model, moe=moe, **plain)
    return dataclasses.replace(model, moe=None, dsa=None, **plain)  # EAGLE-3: one dense layer


def memory_model(model: ModelSpec, spec: SpecDecode | None) -> ModelSpec:
    """The target plus the draft's resident weights and KV cache, as one more layer."""
    if spec is None or spec.method == "ngram":
        return model
    extra = dict(layers=model.layers + 1, attn_layers=model.attn_layers + 1 if model.attn_layers else 0)
    if spec.method == "eagle3" and model.moe is not None:  # a dense layer next to the MoE layers
        extra["moe"] = dataclasses.replace(model.moe, first_dense_layers=model.moe.first_dense_layers + 1)
    return dataclasses.replace(model, **extra)


@dataclass
class FeatureMemory:
    """Memory of an instance with the draft's weights and KV and a shared cached prefix."""

    mem: ServeMemory  # of the target + draft, prompts holding KV for their miss only
    kv: np.ndarray  # KV bytes per device, the one copy of the cached prefix included
    max_batch: np.ndarray
    fits: np.ndarray


def feature_memory(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile,
    cfg: ServeConfigs,
    spec: SpecDecode | None,
    prefix_hit: int,
) -> FeatureMemory:
    """The draft's weights and KV are one more layer (:func:`memory_model`); each request holds KV
    for its miss and its output; the cached prefix is one copy per attention rank, which takes the
    room of ceil(prefix / per-request KV) requests on each rank."""
    mem_model = memory_model(model, spec)
    mem_cfg = dataclasses.replace(cfg, isl=np.maximum(cfg.isl - int(prefix_hit), 1)) if prefix_hit else cfg
    mem = serve_memory(mem_model, hw, engine, mem_cfg)
    kv_tok = kv_bytes_per_token_per_device(mem_model, cfg)
    shared = float(prefix_hit) * kv_tok  # one copy of the cached prefix per instance (per attention rank)
    kv = mem.kv + shared
    per_seq = np.maximum((mem_cfg.isl + cfg.osl) * kv_tok, 1.0)
    max_b = np.maximum(mem.max_batch - np.ceil(shared / per_seq) * cfg.dp, 0).astype(np.int64)
    fits = mem.fits & (mem.weights_hbm + kv + mem.act <= mem.usable)
    return FeatureMemory(mem, kv, max_b, fits)


def check_expert_skew(expert_skew) -> float:
    """``--expert-skew`` as a float >= 1 (max/mean routed tokens per EP rank), else exit 2."""
    if not float(expert_skew) >= 1.0:
        raise InputError("expert-skew", expert_skew, "a load ratio max/mean >= 1 (1 = uniform routing)")
    return float(expert_skew)


def speculative_round(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile,
    cfg: ServeConfigs,
    spec: SpecDecode,
    *,
    seqs,
    context,
    all_seqs,
    mem: ServeMemory | None = None,
    expert_skew: float = 1.0,
    chunk=0.0,
    chunk_context=0.0,
    chunk_seqs=0.0,
) -> StepParts:
    """One engine round of speculative decoding, composed over the pp stages: the verify pass (the
    decode step of ``seqs`` requests per microbatch plus their k draft tokens as extra query tokens
    at the same context, each sampling a token; plus ``chunk`` prompt tokens of ``chunk_seqs``
    prompts at ``chunk_context`` when the round also prefills) and k sequential draft forwards over
    all ``all_seqs`` running requests inside the same engine step (no extra step overhead)."""
    k = float(spec.draft_tokens)
    drafted = seqs * k
    tokens = drafted + chunk
    ctx = (drafted * context + chunk * chunk_context) / np.maximum(tokens, 1e-30)
    st, fx, p2p = step_parts(
        model,
        hw,
        engine,
        cfg,
        tokens,
        ctx,
        seqs,
        context,
        prefill_seqs=drafted + chunk_seqs,
        _mem=mem,
        expert_skew=expert_skew,
    )
    pp = np.broadcast_to(cfg.pp.astype(float), st.total.shape)
    verify = _compose(st, fx, p2p, pp, pp)
    draft = draft_model(model, spec.method)
    if draft is None:
        return verify
    d_st, _, _ = step_parts(draft, hw, engine, cfg, 0.0, 0.0, all_seqs, context, expert_skew=expert_skew)
    return StepParts(
        verify.compute + k * d_st.compute,
        verify.memory + k * d_st.memory,
        verify.comm + k * d_st.comm,
        verify.overhead + k * d_st.overhead,
    )


def serve_step_ext(
    model: ModelSpec,
    hw: DeviceSpec,
    cfg: ServeConfigs,
    engine: EngineProfile,
    *,
    spec: SpecDecode | None = None,
    prefix_hit: int = 0,
    expert_skew: float = 1.0,
) -> ServeArrays:
    """:func:`~roofplan.costmodel.serve.serve_step` with speculative decoding and a prefix-cache hit
    of ``prefix_hit`` tokens per prompt (module docstring). Same arrays, same meaning."""
    if spec is None and not prefix_hit and expert_skew == 1.0:
        return serve_step(model, hw, cfg, engine)
    skew = check_expert_skew(expert_skew)
    validate_serve_config(model, cfg)
    hit = float(prefix_hit)
    fm = feature_memory(model, hw, engine, cfg, spec, prefix_hit)
    mem = fm.mem
    B, isl, osl, pp = (
        cfg.batch.astype(float),
        cfg.isl.astype(float),
        cfg.osl.astype(float),
        cfg.pp.astype(float),
    )
    m = np.minimum(B, pp)
    Bm = B / m
    miss = isl - hit
    st, fx, p2p = step_parts(
        memory_model(model, spec),
        hw,
        engine,
        cfg,
        Bm * miss,
        hit + (miss + 1.0) / 2.0,
        0.0,
        0.0,
        prefill_seqs=Bm,
        _mem=mem,
        expert_skew=skew,
    )
    prefill = _compose(st, fx, p2p, m + pp - 1.0, pp)
    ctx = isl + osl / 2.0
    if spec is None:
        st, fx, p2p = step_parts(model, hw, engine, cfg, 0.0, 0.0, Bm, ctx, _mem=mem, expert_skew=skew)
        decode = _compose(st, fx, p2p, pp, pp)
    else:
        decode = speculative_round(
            model, hw, engine, cfg, spec, seqs=Bm, context=ctx, all_seqs=Bm * m, mem=mem, expert_skew=skew
        ).scaled(1.0 / spec.tokens_per_step)
    return static_arrays(cfg, prefill, decode, mem, kv=fm.kv, fits=fm.fits, max_batch_=fm.max_batch)


@dataclass
class ColocatedRounds:
    """The two rounds of a colocated instance's steady state (continuous batching with chunked
    prefill, :mod:`roofplan.solver.colocated`), each composed over the pp stages."""

    mixed: StepParts  # every running request advances and a prefill chunk rides along
    decode: StepParts  # a decode-only round
    tokens_per_round: float  # output tokens a request gains per round (E with speculative decoding)
    prompt_tokens: float  # prompt tokens computed per request (isl less the prefix-cache hit)
    max_batch: np.ndarray


def colocated_rounds(
    model: ModelSpec,
    hw: DeviceSpec,
    engine: EngineProfile,
    cfg: ServeConfigs,
    concurrency,
    chunk,
    microbatches,
    *,
    isl: int,
    osl: int,
    spec: SpecDecode | None = None,
    prefix_hit: int = 0,
    expert_skew: float = 1.0,
) -> ColocatedRounds:
    """Rounds of ``microbatches`` = m microbatches of ``concurrency``/m running requests, the mixed
    one carrying ``chunk``/m prompt tokens. Prompt chunks compute only the miss (``isl - prefix_hit``
    tokens, attending to the cached prefix: mean context hit + (miss + 1)/2); decoding requests
    attend to isl + osl/2. With speculative decoding each round is a :func:`speculative_round` and
    yields E = ``spec.tokens_per_step`` tokens per request. Without features: the cost model's
    mixed and decode steps (:func:`~roofplan.costmodel.serve.step_breakdown`) and ``max_batch``."""
    C, m = concurrency, microbatches
    hit = float(prefix_hit)
    miss = isl - hit
    dec_ctx = isl + osl / 2.0
    pre_ctx = hit + (miss + 1.0) / 2.0
    skew = check_expert_skew(expert_skew)
    if spec is None:
        mixed = step_breakdown(
            model,
            hw,
            engine,
            cfg,
            chunk / m,
            pre_ctx,
            C / m,
            dec_ctx,
            prefill_seqs=chunk / (m * miss),
            expert_skew=skew,
        )
        decode = step_breakdown(model, hw, engine, cfg, 0.0, 0.0, C / m, dec_ctx, expert_skew=skew)
        per_round = 1.0
    else:
        common = dict(seqs=C / m, context=dec_ctx, all_seqs=C, expert_skew=skew)
        mixed = speculative_round(
            model,
            hw,
            engine,
            cfg,
            spec,
            chunk=chunk / m,
            chunk_context=pre_ctx,
            chunk_seqs=chunk / (m * miss),
            **common,
        )
        decode = speculative_round(model, hw, engine, cfg, spec, **common)
        per_round = spec.tokens_per_step
    if spec is None and not prefix_hit:
        mb = max_batch(model, hw, cfg, engine)
    else:
        mb = feature_memory(model, hw, engine, cfg, spec, prefix_hit).max_batch
    return ColocatedRounds(mixed, decode, per_round, miss, np.asarray(mb, dtype=np.int64))
