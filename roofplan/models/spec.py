"""Typed model spec: the shape of a decoder-only transformer and what follows from it.

Covers dense (Llama, Qwen, OPT, GPT-2/3, BLOOM), GQA/MQA, mixture-of-experts (Mixtral, Qwen3-MoE,
DeepSeek-V3 with shared experts and leading dense layers), multi-head latent attention (MLA,
DeepSeek-V2/V3) with DeepSeek Sparse Attention (V3.2, GLM-5), and hybrid stacks: sliding-window or
chunked attention layers (gpt-oss, Llama 4) and linear-attention / state-space mixers with a
constant per-sequence state (Qwen3.5 Gated DeltaNet, Nemotron-H Mamba-2). Parameter counts follow the weight shapes of the Hugging Face implementations
(``modeling_llama.py``, ``modeling_mixtral.py``, ``modeling_deepseek_v3.py``, ``modeling_opt.py``),
so tests can compare them with the published totals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from roofplan.errors import InputError
from roofplan.hardware.spec import DTYPE_BYTES

#: Dtypes a checkpoint's unquantised (non-expert) weights may keep (:attr:`ModelSpec.dense_dtype`).
DENSE_DTYPES = ("bf16", "fp16")

#: Ceiling (inclusive) of every integer field of a model, by field name; the floor is 1 (0 where
#: the field says "none"). The largest published models are two to three orders of magnitude
#: below: Llama-3.1-405B has 126 layers, hidden 16,384, FFN 53,248, 128 heads, vocab 128,256;
#: DeepSeek-V3 256 routed experts, MLA rank 512, 163,840 positions; Llama 4 a 10M-token context.
#: Beyond these nothing is a model, and products of such sizes overflow the cost model's int64 /
#: float64 arithmetic or make one command run for minutes: 2^31 layers once took 100 s, and 10^5
#: layers still take ~19 s and 3 GB to plan; at 10^4 a plan train search takes ~3 s, as long as
#: the largest real problems (see benchmarks/bench_inputs.py).
MODEL_BOUNDS: dict[str, int] = {
    "layers": 10_000,
    "hidden": 2**20,
    "heads": 2**16,
    "kv_heads": 2**16,
    "head_dim": 2**16,
    "ffn": 2**24,
    "vocab": 2**24,
    "max_seq_len": 2**27,
    "learned_positions": 2**27,
    "num_experts": 2**16,
    "top_k": 2**16,
    "expert_ffn": 2**24,
    "shared_experts": 2**10,
    "shared_ffn": 2**24,
    "first_dense_layers": 10_000,
    "kv_lora_rank": 2**16,
    "qk_nope_head_dim": 2**16,
    "qk_rope_head_dim": 2**16,
    "v_head_dim": 2**16,
    "q_lora_rank": 2**16,
    "attn_layers": 10_000,
    "window": 2**27,
    "params": 2**36,
    "state_elems": 2**32,
    "key_dim": 2**16,
    "conv_dim": 2**24,
    "conv_kernel": 2**10,
    "index_heads": 2**16,
    "index_head_dim": 2**16,
    "topk": 2**27,
    "mtp_layers": 10_000,
    "vision_params": 2**36,
}
#: Ceiling of an integer field not declared above (a field added later still gets an int32 bound).
DEFAULT_CEILING = 2**31 - 1
#: Largest parameter count of a model (10^15: 2,500 x Llama-3.1-405B).
MAX_PARAMS = 10**15


def check_count(field: str, value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int in ``[minimum, MODEL_BOUNDS[name]]`` (``DEFAULT_CEILING`` for a name not
    declared there), else InputError on ``field``."""
    ceiling = MODEL_BOUNDS.get(name, DEFAULT_CEILING)
    word = "a positive integer" if minimum else "a non-negative integer"
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(field, value, word + f" (at most {ceiling:,})")
    if value > ceiling:
        raise InputError(field, value, word + f" of at most {ceiling:,}")
    return value


def _require_positive(owner: str, **values: int | None) -> None:
    """Raise :class:`InputError` for the first value that is not an integer in [1, its ceiling]."""
    for name, value in values.items():
        if value is not None:
            check_count(f"{owner}.{name}", value, name)


@dataclass(frozen=True)
class MoESpec:
    """Routed experts (and shared experts) replacing the dense MLP in MoE layers.

    ``first_dense_layers`` leading layers keep a dense MLP of the model's ``ffn`` size
    (DeepSeek-V3 ``first_k_dense_replace`` = 3). ``shared_ffn`` is the intermediate size of one
    shared expert (defaults to ``expert_ffn``).
    """

    num_experts: int
    top_k: int
    expert_ffn: int
    shared_experts: int = 0
    shared_ffn: int = 0
    first_dense_layers: int = 0
    # router (what a training launcher must set to build this MoE): score function, the
    # auxiliary-loss-free expert bias (DeepSeek-V3 "noaux_tc"), the routed-weight scaling, and
    # group-limited routing (n_group / topk_group); defaults are a plain softmax top-k router
    score_function: str = "softmax"
    expert_bias: bool = False
    routed_scaling: float = 1.0
    groups: int = 0
    group_top_k: int = 0

    def __post_init__(self) -> None:
        if self.score_function not in ("softmax", "sigmoid"):
            raise InputError("moe.score_function", self.score_function, "softmax or sigmoid")
        _require_positive("moe", num_experts=self.num_experts, top_k=self.top_k, expert_ffn=self.expert_ffn)
        if self.top_k > self.num_experts:
            raise InputError("moe.top_k", self.top_k, f"at most num_experts ({self.num_experts})")
        for name in ("shared_experts", "shared_ffn", "first_dense_layers"):
            check_count(f"moe.{name}", getattr(self, name), name, minimum=0)

    @property
    def shared_ffn_size(self) -> int:
        return self.shared_ffn or self.expert_ffn


@dataclass(frozen=True)
class MLASpec:
    """Multi-head latent attention (DeepSeek-V2 §2.1): KV compressed to ``kv_lora_rank`` + RoPE key."""

    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    q_lora_rank: int | None = None  # None: queries are projected directly (DeepSeek-V2-Lite)

    def __post_init__(self) -> None:
        for name in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            if getattr(self, name) is None:
                raise InputError(f"mla.{name}", None, "a positive integer (required)")
        _require_positive(
            "mla",
            kv_lora_rank=self.kv_lora_rank,
            qk_nope_head_dim=self.qk_nope_head_dim,
            qk_rope_head_dim=self.qk_rope_head_dim,
            v_head_dim=self.v_head_dim,
            q_lora_rank=self.q_lora_rank,
        )


@dataclass(frozen=True)
class WindowSpec:
    """``layers`` attention layers that see at most ``window`` keys: a sliding window (gpt-oss,
    ``layer_types`` "sliding_attention") or a chunk of ``window`` tokens (Llama 4
    ``attention_chunk_size``; a chunk sees on average half of it, bounded here by the whole)."""

    layers: int
    window: int
    kind: str = "sliding"

    def __post_init__(self) -> None:
        _require_positive("window", layers=self.layers, window=self.window)
        if self.kind not in ("sliding", "chunked"):
            raise InputError("window.kind", self.kind, "sliding or chunked")


@dataclass(frozen=True)
class LinearMixerSpec:
    """``layers`` token mixers without a growing KV cache: linear attention (Gated DeltaNet,
    Qwen3-Next/Qwen3.5) or a state-space layer (Mamba-2, Nemotron-H). ``params`` are one mixer's
    weights; ``state_elems`` the recurrent plus convolution state one sequence keeps in one mixer
    (constant in the context length).

    The kernel shape, for pricing the mixer's own kernels (:mod:`roofplan.costmodel.linear_mixer`):
    ``heads`` recurrent-state heads (Gated DeltaNet ``linear_num_value_heads``, Mamba-2
    ``mamba_num_heads``), ``key_dim`` the state's key side per head (``linear_key_head_dim``,
    Mamba-2 ``ssm_state_size``), ``conv_dim`` the channels of the depthwise causal conv and
    ``conv_kernel`` its width. ``heads`` 0 = not given: only the weights and the state's memory are
    priced."""

    layers: int
    params: int
    state_elems: int
    kind: str = "gated_deltanet"
    heads: int = 0
    key_dim: int = 0
    conv_dim: int = 0
    conv_kernel: int = 4

    def __post_init__(self) -> None:
        _require_positive("linear", layers=self.layers, params=self.params, state_elems=self.state_elems)
        if self.kind not in ("gated_deltanet", "mamba2"):
            raise InputError("linear.kind", self.kind, "gated_deltanet or mamba2")
        for name in ("heads", "key_dim", "conv_dim", "conv_kernel"):
            check_count(f"linear.{name}", getattr(self, name), name, minimum=0)
        if self.heads and not (self.key_dim and self.conv_dim and self.conv_kernel):
            raise InputError("linear.key_dim", self.key_dim, "key_dim, conv_dim and conv_kernel with heads")
        if self.heads and self.recurrent_elems_per_head <= 0:
            raise InputError(
                "linear.state_elems", self.state_elems, "more than conv_dim x (conv_kernel - 1) elements"
            )

    @property
    def conv_state_elems(self) -> int:
        """Convolution window one sequence keeps: conv_dim x (conv_kernel - 1)."""
        return self.conv_dim * (self.conv_kernel - 1)

    @property
    def recurrent_elems_per_head(self) -> float:
        """Recurrent state per head (key_dim x value_dim), what the rest of ``state_elems`` holds."""
        return (self.state_elems - self.conv_state_elems) / self.heads if self.heads else 0.0

    @property
    def value_dim(self) -> float:
        """Value side of one head's recurrent state (Gated DeltaNet ``linear_value_head_dim``,
        Mamba-2 ``mamba_head_dim``)."""
        return self.recurrent_elems_per_head / self.key_dim if self.key_dim else 0.0


@dataclass(frozen=True)
class SparseAttnSpec:
    """DeepSeek Sparse Attention (DeepSeek-V3.2-Exp report §2.1): a lightning indexer of
    ``index_heads`` x ``index_head_dim`` scores every cached token, and the MLA core attends to the
    ``topk`` best. The indexer keeps one ``index_head_dim`` key per token and layer."""

    index_heads: int
    index_head_dim: int
    topk: int

    def __post_init__(self) -> None:
        _require_positive(
            "dsa", index_heads=self.index_heads, index_head_dim=self.index_head_dim, topk=self.topk
        )


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer.

    ``ffn`` is the dense MLP intermediate size; ``gated_mlp`` means SwiGLU-style (three matrices)
    instead of two. ``linear_bias`` marks GPT-style models with biases on every linear layer and
    LayerNorm with bias; ``qkv_bias`` marks Qwen2-style biases on Q/K/V only. ``learned_positions``
    is the size of a learned position-embedding table (GPT-2, OPT), 0 for RoPE/ALiBi.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    gated_mlp: bool = True
    tied_embeddings: bool = False
    max_seq_len: int = 4096
    linear_bias: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    learned_positions: int = 0
    embedding_layernorm: bool = False  # BLOOM's word_embeddings_layernorm
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    attn_layers: int = 0
    attn_output_gate: bool = False
    window: WindowSpec | None = None
    linear: LinearMixerSpec | None = None
    dsa: SparseAttnSpec | None = None
    rope_theta: float = 10000.0  # RoPE base (HF rope_theta); launchers must pass it, defaults differ
    mtp_layers: int = 0  # multi-token-prediction modules trained with the model (DeepSeek-V3: 1)
    #: Weights of a vision encoder + projector shipped in the same checkpoint (Llama 4: 0.87B).
    #: Counted in ``params_total`` (the published totals include them) but in no text-token
    #: FLOP, activation or active count: a text-only request never runs them.
    vision_params: int = 0
    #: Dtype that the weights outside the experts keep in a checkpoint whose experts are quantised
    #: (None: every linear layer takes the serving dtype). gpt-oss ships MXFP4 experts only:
    #: config.json ``quantization_config`` {quant_method: mxfp4, modules_to_not_convert:
    #: self_attn, mlp.router, embed_tokens, lm_head}, the rest bf16 (model card §2). Attention,
    #: router, dense MLPs, embedding and LM head then stay at this dtype when the serving dtype
    #: is narrower; routed and shared experts take the serving dtype.
    dense_dtype: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Reject shapes no implementation can build, naming the field (docs/SPEC.md §4: exit 2)."""
        _require_positive(
            self.name or "model",
            layers=self.layers,
            hidden=self.hidden,
            heads=self.heads,
            kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            ffn=self.ffn,
            vocab=self.vocab,
            max_seq_len=self.max_seq_len,
        )
        if self.heads % self.kv_heads:
            raise InputError(
                f"{self.name or 'model'}.kv_heads", self.kv_heads, f"a divisor of heads ({self.heads})"
            )
        check_count(
            f"{self.name or 'model'}.learned_positions",
            self.learned_positions,
            "learned_positions",
            minimum=0,
        )
        check_count(f"{self.name or 'model'}.attn_layers", self.attn_layers, "attn_layers", minimum=0)
        check_count(f"{self.name or 'model'}.vision_params", self.vision_params, "vision_params", minimum=0)
        if self.attn_layers == 0 and self.full_attention_layers < 0:
            raise InputError(
                f"{self.name or 'model'}.window.layers",
                self.window.layers if self.window else 0,
                f"windowed + linear layers at most layers ({self.layers})",
            )
        if self.dsa is not None and self.mla is None:
            raise InputError(
                f"{self.name or 'model'}.dsa", "set", "used with mla (DeepSeek Sparse Attention)"
            )
        if self.moe is not None and self.moe.first_dense_layers > self.layers:
            raise InputError(
                f"{self.name or 'model'}.moe.first_dense_layers",
                self.moe.first_dense_layers,
                f"at most layers ({self.layers})",
            )
        if self.dense_dtype is not None and self.dense_dtype not in DENSE_DTYPES:
            raise InputError(f"{self.name or 'model'}.dense_dtype", self.dense_dtype, "bf16 or fp16")
        if self.params_total > MAX_PARAMS:
            raise InputError(
                f"{self.name or 'model'}",
                f"{self.params_total:.3g} parameters",
                f"a model of at most {MAX_PARAMS:.0e} parameters",
            )

    def to_dict(self) -> dict:
        """Every field as plain data (nested ``moe``/``mla`` dicts or None): the model YAML schema."""
        return asdict(self)

    @property
    def attention_kind(self) -> str:
        """``mla`` (latent KV), ``mha`` (kv_heads == heads), ``mqa`` (one KV head) or ``gqa``."""
        if self.mla:
            return "mla"
        if self.kv_heads == self.heads:
            return "mha"
        return "mqa" if self.kv_heads == 1 else "gqa"

    # -- layer structure -------------------------------------------------------------------------
    @property
    def moe_layers(self) -> int:
        """Number of layers whose MLP is a mixture of experts."""
        return 0 if self.moe is None else self.layers - self.moe.first_dense_layers

    @property
    def window_layers(self) -> int:
        return self.window.layers if self.window else 0

    @property
    def linear_layers(self) -> int:
        return self.linear.layers if self.linear else 0

    @property
    def full_attention_layers(self) -> int:
        """Attention layers over the whole context (every layer for a plain transformer)."""
        return self.attn_layers or self.layers - self.window_layers - self.linear_layers

    @property
    def dense_layers(self) -> int:
        return self.layers - self.moe_layers

    @property
    def q_dim(self) -> int:
        """Width of the query projection output (heads x per-head query/key dim)."""
        if self.mla:
            return self.heads * (self.mla.qk_nope_head_dim + self.mla.qk_rope_head_dim)
        return self.heads * self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of the attention output before the O projection (heads x value dim)."""
        return self.heads * (self.mla.v_head_dim if self.mla else self.head_dim)

    # -- parameters ------------------------------------------------------------------------------
    def _norm_params(self) -> int:
        return 2 * self.hidden if self.linear_bias else self.hidden

    def _softmax_attention_params(self) -> int:
        """Weights of one softmax attention block (projections, their biases, q/k norms, the DSA
        indexer; not the layer norm)."""
        h = self.hidden
        if self.mla:
            m = self.mla
            qk = m.qk_nope_head_dim + m.qk_rope_head_dim
            if m.q_lora_rank:
                q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * self.heads * qk
            else:
                q = h * self.heads * qk
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank
            kv += m.kv_lora_rank * self.heads * (m.qk_nope_head_dim + m.v_head_dim)
            o = self.heads * m.v_head_dim * h
            return q + kv + o + self._indexer_params()
        qkv_out = (self.heads + 2 * self.kv_heads) * self.head_dim
        p = h * qkv_out + self.heads * self.head_dim * h
        if self.attn_output_gate:
            p += h * self.heads * self.head_dim
        if self.linear_bias:
            p += qkv_out + h
        elif self.qkv_bias:
            p += qkv_out
        if self.qk_norm:
            p += 2 * self.head_dim
        return p

    def _indexer_params(self) -> int:
        """DSA lightning indexer (DeepSeek-V3.2 ``Indexer``): wq_b from the query latent, wk and
        the head-weight projection from the hidden state, a LayerNorm on the key."""
        if self.dsa is None:
            return 0
        d, q_in = self.dsa, (self.mla.q_lora_rank or self.hidden)
        return (
            q_in * d.index_heads * d.index_head_dim
            + self.hidden * d.index_head_dim
            + 2 * d.index_head_dim
            + self.hidden * d.index_heads
        )

    def mixer_params_total(self) -> int:
        """Token-mixer weights of the whole stack: softmax attention (full and windowed) plus the
        linear mixers."""
        softmax = (self.full_attention_layers + self.window_layers) * self._softmax_attention_params()
        return softmax + (self.linear_layers * self.linear.params if self.linear else 0)

    def attention_params(self) -> int:
        """Token-mixer weights per layer: one attention block for a plain transformer; for a
        hybrid stack the mean over its ``layers`` (so per-layer cost-model terms stay right)."""
        if not (self.window or self.linear or self.attn_layers):
            return self._softmax_attention_params()
        return round(self.mixer_params_total() / self.layers)

    def mlp_params(self, ffn: int) -> int:
        """Weights of one dense MLP of intermediate size ``ffn``."""
        mats = 3 if self.gated_mlp else 2
        p = mats * self.hidden * ffn
        if self.linear_bias:
            p += ffn + self.hidden
        return p

    def moe_layer_params(self, active: bool) -> int:
        """Router + experts of one MoE layer; ``active`` counts only top-k routed experts."""
        assert self.moe is not None
        m = self.moe
        routed = m.top_k if active else m.num_experts
        return (
            self.hidden * m.num_experts
            + routed * self.mlp_params(m.expert_ffn)
            + m.shared_experts * self.mlp_params(m.shared_ffn_size)
        )

    def layer_params(self, moe_layer: bool, active: bool = False) -> int:
        mlp = self.moe_layer_params(active) if moe_layer else self.mlp_params(self.ffn)
        return self.attention_params() + mlp + 2 * self._norm_params()

    def embedding_params(self) -> int:
        """Input embedding (+ learned positions, BLOOM's embedding norm) and final norm."""
        p = self.vocab * self.hidden + self.learned_positions * self.hidden + self._norm_params()
        if self.embedding_layernorm:
            p += self._norm_params()
        return p

    def head_params(self) -> int:
        """The LM head (0 when tied to the input embedding)."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def _body_params(self, active: bool) -> int:
        """Decoder stack: every MLP/MoE block, the exact mixer total and two norms per layer."""
        body = self.dense_layers * self.mlp_params(self.ffn)
        if self.moe_layers:
            body += self.moe_layers * self.moe_layer_params(active)
        return body + self.mixer_params_total() + 2 * self.layers * self._norm_params()

    def _params(self, active: bool) -> int:
        return self._body_params(active) + self.embedding_params() + self.head_params()

    @property
    def params_total(self) -> int:
        """Every weight of the checkpoint: the language model plus any vision tower."""
        return self._params(active=False) + self.vision_params

    @property
    def params_active(self) -> int:
        """Parameters touched by one token (top-k experts only), embeddings included."""
        return self._params(active=True)

    @property
    def matmul_params_active(self) -> int:
        """Weights that take part in matrix multiplies for one token: every projection of the
        active path plus the LM head (tied or not); the input embedding is a lookup."""
        return self._body_params(active=True) + self.vocab * self.hidden

    # -- FLOPs -----------------------------------------------------------------------------------
    def attention_flops_per_token(self, context: float) -> float:
        """Forward FLOPs of score and value products for one query attending to ``context`` keys:
        2 x heads x (qk_dim + v_dim) x keys per softmax layer (Kaplan et al. 2020 Table 1), where a
        windowed layer sees at most its window and a DSA layer its top-k (plus the indexer's
        2 x index_heads x index_head_dim per cached key). Linear mixers' recurrences (a few MFLOPs
        per token, against their projections' ~100) are left to their projection weights here;
        their kernels' time is priced in :mod:`roofplan.costmodel.linear_mixer`."""
        qk = self.q_dim // self.heads
        v = self.v_dim // self.heads
        per_key = 2.0 * self.heads * (qk + v)
        if self.dsa is not None:
            index = 2.0 * self.dsa.index_heads * self.dsa.index_head_dim * context
            return self.layers * (per_key * np.minimum(context, self.dsa.topk) + index)
        keys = self.full_attention_layers * context
        if self.window:
            keys = keys + self.window_layers * np.minimum(context, self.window.window)
        return per_key * keys

    def attention_context(self, context):
        """Keys one query effectively attends to at ``context``, averaged over the layers so that a
        plain transformer returns ``context`` itself: attention_flops(context) / attention_flops(1).
        Windowed and DSA layers make it sub-linear (numpy arrays welcome)."""
        if not (self.window or self.dsa):
            return context
        return self.attention_flops_per_token(context) / self.attention_flops_per_token(1.0)

    def kv_read_bytes(self, context, dtype: str = "bf16"):
        """Cache bytes one decode step of one request reads at ``context`` over all layers: every
        full-attention layer's KV, windowed layers' last ``window`` tokens, a DSA layer's top-k
        latents plus every indexer key. ``context`` x :meth:`kv_bytes_per_token` for a plain model."""
        if not (self.window or self.dsa):
            return context * self.kv_bytes_per_token(dtype)
        b = DTYPE_BYTES[dtype]
        if self.dsa is not None:
            latent = self.mla.kv_lora_rank + self.mla.qk_rope_head_dim
            return (
                self.layers
                * b
                * (np.minimum(context, self.dsa.topk) * latent + context * self.dsa.index_head_dim)
            )
        per_layer = self._kv_elems_per_layer() * b
        return per_layer * (
            self.full_attention_layers * context
            + self.window_layers * np.minimum(context, self.window.window)
        )

    def forward_flops_per_token(self, context: float) -> float:
        """Forward FLOPs for one token: 2 x matmul weights + attention over ``context`` keys."""
        return 2.0 * self.matmul_params_active + self.attention_flops_per_token(context)

    # -- KV cache --------------------------------------------------------------------------------
    def _kv_elems_per_layer(self) -> int:
        if self.mla:
            index = self.dsa.index_head_dim if self.dsa else 0
            return self.mla.kv_lora_rank + self.mla.qk_rope_head_dim + index
        return 2 * self.kv_heads * self.head_dim

    def kv_elems_per_token(self) -> int:
        """Cached elements per context token over the full-attention layers: 2·kv_heads·head_dim
        (GQA/MQA/MHA), or the compressed latent plus the decoupled RoPE key (kv_lora_rank + rope
        dim; + the DSA indexer key) for MLA. Windowed and linear layers hold a bounded state
        instead (:meth:`state_elems_per_seq`)."""
        return self.full_attention_layers * self._kv_elems_per_layer()

    def state_elems_per_seq(self) -> int:
        """Cache elements one sequence holds whatever its length: a full window in every windowed
        layer (an upper bound until the context reaches it) plus each linear mixer's state."""
        win = self.window_layers * self.window.window * self._kv_elems_per_layer() if self.window else 0
        return win + (self.linear_layers * self.linear.state_elems if self.linear else 0)

    def linear_state_bytes_per_seq(self, elem_bytes: float = 4.0) -> float:
        """Bytes of the linear mixers' states of one sequence at ``elem_bytes`` per element: fp32
        by default (``mamba_ssm_dtype`` / ``mamba_ssm_cache_dtype`` float32 in the Qwen3.5 and
        Nemotron-H configs); the serving engine may hold it in bf16
        (``EngineProfile.linear_state_bytes``)."""
        return (self.linear_layers * self.linear.state_elems if self.linear else 0) * float(elem_bytes)

    def state_bytes_per_seq(self, dtype: str = "bf16") -> float:
        """Bytes of :meth:`state_elems_per_seq`: windows in the KV dtype, linear-mixer states in
        fp32 (:meth:`linear_state_bytes_per_seq`)."""
        lin = self.linear_layers * self.linear.state_elems if self.linear else 0
        return (self.state_elems_per_seq() - lin) * DTYPE_BYTES[dtype] + self.linear_state_bytes_per_seq()

    def kv_bytes_per_token(self, dtype: str = "bf16") -> float:
        return self.kv_elems_per_token() * DTYPE_BYTES[dtype]
