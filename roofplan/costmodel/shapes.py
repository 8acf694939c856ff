"""The model-shapes object: the dimension vocabulary of the cost model, derived once per model.

Hidden size, heads, query/key and value head widths, KV width, FFN widths, experts and top-k,
vocabulary, and layers by kind, plus parameter and FLOP counts. Everything here depends on the
model only (not on the parallel configuration), so the vectorised step models (training and
serving) read plain floats, and no step function derives a dimension from a ModelSpec again. Weight shapes follow :class:`~roofplan.models.spec.ModelSpec`
(Hugging Face layouts): a decoder layer is QKV projection, attention core, O projection and a
dense or mixture-of-experts MLP.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from roofplan.models.spec import ModelSpec


@dataclass(frozen=True)
class ModelShapes:
    h: float  # hidden size
    layers: int
    heads: float
    qk_dim: float  # per-head query/key width
    v_head: float  # per-head value width
    kv_width: float  # K+V activation width per token of one layer (all heads/groups)
    qkv_out: float  # output width of the fused QKV projection(s): attention weights minus O / h
    o_in: float  # input width of the O projection (heads x value dim)
    vocab: float
    mlp_up: float  # output width of the dense MLP's first GEMM (2*ffn gated, ffn plain)
    ffn: float
    act_mult: float  # activation-function reads per ffn element (gated: 2 inputs, plain: 1)
    moe_layers: int
    dense_layers: int
    experts: float
    top_k: float
    expert_up: float  # first-GEMM output width of one routed expert
    expert_ffn: float
    shared_up: float  # first-GEMM output width of all shared experts together
    shared_ffn: float
    # parameters (for memory, gradients, optimizer, DP traffic)
    dense_layer_params: float
    moe_layer_nonexpert_params: float  # attention, norms, router, shared experts (TP-sharded)
    moe_layer_expert_params: float  # routed experts of one layer (EP x TP sharded)
    embedding_params: float  # input embedding (+ positions, final norm); first stage
    head_params: float  # untied LM head; last stage (0 when tied)
    tied: bool
    # FLOPs
    matmul_params_active: float
    attn_flops_per_token_ctx: float  # forward attention FLOPs per token per context token (all layers)
    # MLA (DeepSeek-V2/V3): latent widths kept per token when the up-projections are recomputed
    # (Megatron ``--recompute-modules mla_up_proj``), and the up-projections' shapes
    mla_q_rank: float = 0.0  # q_lora_rank
    mla_kv_rank: float = 0.0  # kv_lora_rank + qk_rope_head_dim (compressed KV and shared rope key)
    mla_q_up_out: float = 0.0  # heads x (qk_nope + qk_rope)
    mla_kv_up_out: float = 0.0  # heads x (qk_nope + v_head)


def _attention_matmul_params(model: ModelSpec) -> float:
    """Weights of the attention projections only (no biases, no q/k or latent norms)."""
    h = model.hidden
    if model.mla:
        m = model.mla
        return model.attention_params() - (m.q_lora_rank or 0) - m.kv_lora_rank
    return h * (model.heads + 2 * model.kv_heads) * model.head_dim + model.heads * model.head_dim * h


def _matmul_params_active(model: ModelSpec, attn: float) -> float:
    """Weights multiplied by one token: attention projections, the active MLP matrices (router,
    top-k routed and shared experts in MoE layers) and the LM head (tied or not); the embedding
    lookup, norms and biases are not matmuls (the "N" of 6N, Kaplan et al. 2020 Table 1)."""
    h = model.hidden
    mats = 3 if model.gated_mlp else 2
    dense = model.dense_layers * (attn + mats * h * model.ffn)
    moe = 0.0
    if model.moe:
        m = model.moe
        moe = model.moe_layers * (
            attn
            + h * m.num_experts
            + m.top_k * mats * h * m.expert_ffn
            + m.shared_experts * mats * h * m.shared_ffn_size
        )
    return dense + moe + model.vocab * h


@lru_cache(maxsize=256)
def model_shapes(model: ModelSpec) -> ModelShapes:
    """Derive the cost-model constants of ``model`` (cached; ModelSpec is frozen and hashable)."""
    h = model.hidden
    o_in = model.v_dim
    attn = _attention_matmul_params(model)
    qkv_out = (attn - o_in * h) / h
    if model.mla:
        kv_width = model.heads * (
            model.mla.qk_nope_head_dim + model.mla.qk_rope_head_dim + model.mla.v_head_dim
        )
    else:
        kv_width = 2 * model.kv_heads * model.head_dim
    gated = model.gated_mlp
    moe = model.moe
    dense_layer = model.layer_params(False)
    if moe:
        expert = moe.num_experts * model.mlp_params(moe.expert_ffn)
        moe_total = model.layer_params(True, active=False)
        moe_nonexpert, moe_expert = moe_total - expert, expert
    else:
        moe_nonexpert = moe_expert = 0.0
    return ModelShapes(
        h=h,
        layers=model.layers,
        heads=model.heads,
        qk_dim=model.q_dim / model.heads,
        v_head=model.v_dim / model.heads,
        kv_width=kv_width,
        qkv_out=qkv_out,
        o_in=o_in,
        vocab=model.vocab,
        mlp_up=(2 if gated else 1) * model.ffn,
        ffn=model.ffn,
        act_mult=2.0 if gated else 1.0,
        moe_layers=model.moe_layers,
        dense_layers=model.dense_layers,
        experts=moe.num_experts if moe else 0,
        top_k=moe.top_k if moe else 0,
        expert_up=(2 if gated else 1) * moe.expert_ffn if moe else 0,
        expert_ffn=moe.expert_ffn if moe else 0,
        shared_up=(2 if gated else 1) * moe.shared_experts * moe.shared_ffn_size if moe else 0,
        shared_ffn=moe.shared_experts * moe.shared_ffn_size if moe else 0,
        dense_layer_params=dense_layer,
        moe_layer_nonexpert_params=moe_nonexpert,
        moe_layer_expert_params=moe_expert,
        embedding_params=model.embedding_params(),
        head_params=model.head_params(),
        tied=model.tied_embeddings,
        matmul_params_active=_matmul_params_active(model, attn),
        attn_flops_per_token_ctx=model.attention_flops_per_token(1.0),
        **_mla_widths(model),
    )


def _mla_widths(model: ModelSpec) -> dict:
    """Latent and up-projection widths of MLA (DeepSeek-V2 §2.1.2-2.1.3); empty without MLA or
    without a query latent (queries projected directly)."""
    m = model.mla
    if m is None or not m.q_lora_rank:
        return {}
    return {
        "mla_q_rank": float(m.q_lora_rank),
        "mla_kv_rank": float(m.kv_lora_rank + m.qk_rope_head_dim),
        "mla_q_up_out": float(model.heads * (m.qk_nope_head_dim + m.qk_rope_head_dim)),
        "mla_kv_up_out": float(model.heads * (m.qk_nope_head_dim + m.v_head_dim)),
    }
