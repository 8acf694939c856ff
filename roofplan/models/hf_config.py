"""Read a Hugging Face ``config.json`` into a :class:`ModelSpec` (no hub access: a local path).

Supported ``model_type`` values and the fields each one reads (names as in the ``transformers``
configuration classes, defaults as in those classes where a real config may omit the key):

* ``llama``, ``mistral``, ``mixtral``, ``qwen2``, ``qwen3``, ``qwen3_moe`` — ``hidden_size``,
  ``intermediate_size``, ``num_hidden_layers``, ``num_attention_heads``, ``vocab_size`` (required);
  ``num_key_value_heads`` (default: heads), ``head_dim`` (default hidden/heads; 128 for Qwen3),
  ``max_position_embeddings``, ``tie_word_embeddings`` (default false). SwiGLU MLP, RMSNorm.
  ``qwen2`` always has Q/K/V biases (``Qwen2Attention``); ``qwen3`` adds Q/K RMSNorm. ``llama``'s
  ``attention_bias`` maps to Q/K/V biases (the O-projection bias, ``hidden`` weights per layer, and
  ``mlp_bias`` are not modelled: < 0.01 % of the parameters).
  ``mixtral``: ``num_local_experts``, ``num_experts_per_tok`` (experts of ``intermediate_size``).
  ``qwen3_moe``: ``num_experts``, ``num_experts_per_tok``, ``moe_intermediate_size``,
  ``decoder_sparse_step``, ``mlp_only_layers``; dense layers are counted as leading dense layers.
* ``deepseek_v3`` (and ``deepseek_v2``) — MLA (``kv_lora_rank``, ``q_lora_rank``,
  ``qk_nope_head_dim``, ``qk_rope_head_dim``, ``v_head_dim``) and DeepSeekMoE
  (``n_routed_experts``, ``num_experts_per_tok``, ``moe_intermediate_size``, ``n_shared_experts``,
  ``first_k_dense_replace``, ``moe_layer_freq``). The multi-token-prediction layers are not part of
  the model (DeepSeek-V3 report: 671B main model).
* ``deepseek_v32``, ``glm_moe_dsa`` (GLM-5), ``kimi_k2`` — as ``deepseek_v3``; where the config
  has ``index_topk`` the DeepSeek Sparse Attention indexer (``index_n_heads``, ``index_head_dim``).
* ``gpt_oss`` — Llama fields plus ``num_local_experts``, ``num_experts_per_tok`` (experts of
  ``intermediate_size``), ``attention_bias``, ``layer_types`` / ``sliding_window`` (windowed layers).
* ``llama4_text`` (inside ``llama4``'s ``text_config``) — ``intermediate_size_mlp`` (dense MLP),
  ``num_local_experts``, ``num_experts_per_tok``, ``intermediate_size`` (routed and the one shared
  expert), ``moe_layers`` or ``interleave_moe_layer_step``, ``attention_chunk_size`` on the RoPE
  layers (``no_rope_layers``; default every 4th layer is global, transformers ``Llama4TextConfig``).
* ``qwen3_5_text``, ``qwen3_5_moe_text`` (inside ``qwen3_5`` / ``qwen3_5_moe``) —
  Qwen3 fields plus ``layer_types`` (or ``full_attention_interval``) of Gated DeltaNet layers
  (``linear_num_key_heads``, ``linear_num_value_heads``, ``linear_key_head_dim``,
  ``linear_value_head_dim``, ``linear_conv_kernel_dim``), ``attn_output_gate``; MoE as
  ``qwen3_moe`` plus ``shared_expert_intermediate_size``. The MTP layers are not counted.
* ``nemotron_h`` — ``hybrid_override_pattern`` (``M`` Mamba-2, ``*`` attention, ``E`` MoE, ``-``
  MLP), Mamba-2 ``mamba_num_heads``, ``mamba_head_dim``, ``n_groups``, ``ssm_state_size``,
  ``conv_kernel``; squared-ReLU MLPs (two matrices); MoE ``n_routed_experts``,
  ``num_experts_per_tok``, ``moe_intermediate_size``, ``moe_shared_expert_intermediate_size``.
  Latent MoE (``moe_latent_size``, Nemotron 3 Super) is refused as not modelled.
* ``gpt2`` — ``n_embd``, ``n_layer``, ``n_head``, ``vocab_size`` (required), ``n_inner`` (default
  4·n_embd), ``n_positions`` (default 1024), ``tie_word_embeddings`` (default true). GELU MLP,
  biases everywhere, learned positions.
* ``opt`` — ``hidden_size``, ``ffn_dim``, ``num_hidden_layers``, ``num_attention_heads``,
  ``vocab_size``; ``max_position_embeddings`` (default 2048; the table has 2 extra rows,
  ``OPTLearnedPositionalEmbedding`` offset), ``enable_bias`` (default true),
  ``tie_word_embeddings`` (default true). ReLU MLP.
* ``bloom`` — ``hidden_size`` or ``n_embed``, ``n_layer``, ``num_attention_heads`` or ``n_head``,
  ``vocab_size``. ALiBi (no position table), embedding LayerNorm, MLP of 4h, tied head; the
  config has no context length, so ``seq_length`` if given else 2048 (the BLOOM training length).
* ``gpt_neox`` — ``hidden_size``, ``intermediate_size``, ``num_hidden_layers``,
  ``num_attention_heads``, ``vocab_size``; ``max_position_embeddings`` (default 2048),
  ``tie_word_embeddings`` (default false). GELU MLP, biases (``attention_bias`` default true), rotary.

A missing required field, an unknown ``model_type`` or malformed JSON raises
:class:`~roofplan.errors.InputError` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roofplan.errors import InputError
from roofplan.inputs import load_json, read_text
from roofplan.models.spec import (
    LinearMixerSpec,
    MLASpec,
    ModelSpec,
    MoESpec,
    SparseAttnSpec,
    WindowSpec,
    check_count,
)

_MISSING = object()

#: The model field each integer config key becomes (its bounds: ``MODEL_BOUNDS``); keys named like
#: the field itself (``kv_lora_rank``) need no entry.
_BOUND_OF = {
    "hidden_size": "hidden",
    "n_embd": "hidden",
    "n_embed": "hidden",
    "word_embed_proj_dim": "hidden",
    "num_attention_heads": "heads",
    "n_head": "heads",
    "num_key_value_heads": "kv_heads",
    "num_hidden_layers": "layers",
    "n_layer": "layers",
    "decoder_sparse_step": "layers",
    "moe_layer_freq": "layers",
    "first_k_dense_replace": "first_dense_layers",
    "intermediate_size": "ffn",
    "ffn_dim": "ffn",
    "n_inner": "ffn",
    "moe_intermediate_size": "expert_ffn",
    "vocab_size": "vocab",
    "max_position_embeddings": "max_seq_len",
    "n_positions": "max_seq_len",
    "seq_length": "max_seq_len",
    "num_local_experts": "num_experts",
    "n_routed_experts": "num_experts",
    "num_experts_per_tok": "top_k",
    "n_shared_experts": "shared_experts",
    "index_n_heads": "index_heads",
    "index_topk": "topk",
    "sliding_window": "window",
    "attention_chunk_size": "window",
    "intermediate_size_mlp": "ffn",
    "interleave_moe_layer_step": "layers",
    "full_attention_interval": "layers",
    "linear_num_key_heads": "heads",
    "linear_num_value_heads": "heads",
    "linear_key_head_dim": "head_dim",
    "linear_value_head_dim": "head_dim",
    "mamba_num_heads": "heads",
    "mamba_head_dim": "head_dim",
    "n_groups": "heads",
    "shared_expert_intermediate_size": "shared_ffn",
    "moe_shared_expert_intermediate_size": "shared_ffn",
}


class _Config:
    """A parsed config.json with field access that reports the file and field on error."""

    def __init__(self, doc: dict, path: Path, section: str = ""):
        self.doc = doc
        self.path = path
        self.section = section  # "vision_config." for a nested block, so messages name it
        self.model_type = str(doc.get("model_type"))[:40]

    def _field(self, key: str) -> str:
        return f"{self.path}: {self.section}{key}"

    def get(self, *keys: str, default: Any = _MISSING) -> Any:
        """The first of ``keys`` present (and not null); ``default`` if none, else InputError."""
        for key in keys:
            if self.doc.get(key) is not None:
                return self.doc[key]
        if default is _MISSING:
            raise InputError(
                self._field(keys[0]),
                None,
                f"required for model_type {self.model_type!r} (missing from the config)",
            )
        return default

    def _key(self, keys: tuple[str, ...]) -> str:
        """The key the value was read from (for the message): the first present, else the first."""
        return next((k for k in keys if self.doc.get(k) is not None), keys[0])

    def int(self, *keys: str, default: Any = _MISSING) -> int:
        """A positive integer field within the bounds of the model field it becomes."""
        value = self.get(*keys, default=default)
        key = self._key(keys)
        return check_count(self._field(key), value, _bound(key))

    def count(self, key: str, default: int) -> int:
        """A non-negative integer field (expert counts, dense-layer counts)."""
        return check_count(self._field(key), self.get(key, default=default), _bound(key), minimum=0)

    def number(self, key: str, default: float) -> float:
        """A positive finite number (rope_theta, routed_scaling_factor)."""
        value = self.get(key, default=default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e12:
            raise InputError(self._field(key), value, "a positive number below 1e12")
        return float(value)

    def bool(self, key: str, default: bool) -> bool:
        value = self.get(key, default=default)
        if not isinstance(value, bool):
            raise InputError(self._field(key), value, "true or false")
        return value


def _bound(key: str) -> str:
    """The MODEL_BOUNDS name bounding config key ``key`` (a key without one gets the default ceiling)."""
    return _BOUND_OF.get(key, key)


def _name(cfg: _Config) -> str:
    """``_name_or_path`` when the config carries it, else the folder holding config.json."""
    name = cfg.doc.get("_name_or_path")
    if isinstance(name, str) and name.strip():
        return name.strip()
    return cfg.path.parent.name if cfg.path.name == "config.json" else cfg.path.stem


def _common(cfg: _Config, *, default_max_pos: int, default_head_dim: int | None = None) -> dict:
    """Fields shared by the Llama-style families (transformers ``LlamaConfig`` and relatives)."""
    hidden = cfg.int("hidden_size")
    heads = cfg.int("num_attention_heads")
    if default_head_dim is None:
        if hidden % heads:
            raise InputError(
                cfg._field("head_dim"),
                None,
                f"required when hidden_size ({hidden}) is not a multiple of heads ({heads})",
            )
        default_head_dim = hidden // heads
    return {
        "name": _name(cfg),
        "layers": cfg.int("num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": cfg.int("num_key_value_heads", default=heads),
        "head_dim": cfg.int("head_dim", default=default_head_dim),
        "ffn": cfg.int("intermediate_size"),
        "vocab": cfg.int("vocab_size"),
        "gated_mlp": True,
        "tied_embeddings": cfg.bool("tie_word_embeddings", False),
        "max_seq_len": cfg.int("max_position_embeddings", default=default_max_pos),
        "rope_theta": cfg.number("rope_theta", 10000.0),
        "source": f"Hugging Face config {cfg.path.name} (model_type {cfg.model_type})",
    }


def _llama(cfg: _Config) -> dict:
    # LlamaConfig defaults: max_position_embeddings 2048, attention_bias False.
    return _common(cfg, default_max_pos=2048) | {"qkv_bias": cfg.bool("attention_bias", False)}


def _mistral(cfg: _Config) -> dict:
    # MistralConfig default max_position_embeddings = 4096 * 32.
    return _common(cfg, default_max_pos=4096 * 32)


def _mixtral(cfg: _Config) -> dict:
    spec = _common(cfg, default_max_pos=4096 * 32)
    spec["moe"] = MoESpec(
        num_experts=cfg.int("num_local_experts"), top_k=cfg.int("num_experts_per_tok"), expert_ffn=spec["ffn"]
    )
    return spec


def _qwen2(cfg: _Config) -> dict:
    # modeling_qwen2.Qwen2Attention: q/k/v_proj bias=True, o_proj bias=False.
    return _common(cfg, default_max_pos=32768) | {"qkv_bias": True}


def _qwen3(cfg: _Config) -> dict:
    # Qwen3Config: head_dim 128, attention_bias False; Qwen3Attention has q_norm/k_norm over head_dim.
    spec = _common(cfg, default_max_pos=32768, default_head_dim=128)
    return spec | {"qk_norm": True, "qkv_bias": cfg.bool("attention_bias", False)}


def _qwen3_moe(cfg: _Config) -> dict:
    spec = _qwen3(cfg)
    experts = cfg.count("num_experts", 0)
    if experts == 0:
        return spec
    # modeling_qwen3_moe: layer i is sparse iff i not in mlp_only_layers and (i + 1) % step == 0.
    step = cfg.int("decoder_sparse_step", default=1)
    dense_only = cfg.get("mlp_only_layers", default=[])
    if not isinstance(dense_only, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in dense_only
    ):
        raise InputError(cfg._field("mlp_only_layers"), dense_only, "a list of layer indices")
    dense_only = set(dense_only)
    sparse = sum(1 for i in range(spec["layers"]) if i not in dense_only and (i + 1) % step == 0)
    spec["moe"] = MoESpec(
        num_experts=experts,
        top_k=cfg.int("num_experts_per_tok"),
        expert_ffn=cfg.int("moe_intermediate_size"),
        first_dense_layers=spec["layers"] - sparse,
    )
    return spec


def _deepseek(cfg: _Config) -> dict:
    nope, rope = cfg.int("qk_nope_head_dim"), cfg.int("qk_rope_head_dim")
    heads = cfg.int("num_attention_heads")
    spec = _common(cfg, default_max_pos=4096, default_head_dim=nope + rope)
    # MLA rebuilds per-head K/V from the latent: every query head has its own K/V head. The config's
    # head_dim (transformers sets it to qk_rope_head_dim) is not the attention width; use qk dims.
    spec.update(kv_heads=heads, head_dim=nope + rope)
    q_lora = cfg.get("q_lora_rank", default=None)
    spec["mla"] = MLASpec(
        kv_lora_rank=cfg.int("kv_lora_rank"),
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope,
        v_head_dim=cfg.int("v_head_dim"),
        q_lora_rank=None if q_lora is None else cfg.int("q_lora_rank"),
    )
    experts = cfg.count("n_routed_experts", 0)
    if experts:
        # modeling_deepseek: layer i is MoE iff i >= first_k_dense_replace and i % moe_layer_freq == 0.
        first_k = cfg.count("first_k_dense_replace", 0)
        freq = cfg.int("moe_layer_freq", default=1)
        sparse = sum(1 for i in range(spec["layers"]) if i >= first_k and i % freq == 0)
        expert_ffn = cfg.int("moe_intermediate_size")
        spec["moe"] = MoESpec(
            num_experts=experts,
            top_k=cfg.int("num_experts_per_tok"),
            expert_ffn=expert_ffn,
            shared_experts=cfg.count("n_shared_experts", 0),
            shared_ffn=expert_ffn,
            first_dense_layers=spec["layers"] - sparse,
            score_function="sigmoid"
            if cfg.get("scoring_func", default="softmax") == "sigmoid"
            else "softmax",
            expert_bias=cfg.get("topk_method", default="") == "noaux_tc",
            routed_scaling=cfg.number("routed_scaling_factor", 1.0),
            groups=cfg.count("n_group", 0),
            group_top_k=cfg.count("topk_group", 0),
        )
    spec["mtp_layers"] = cfg.count("num_nextn_predict_layers", 0)
    return spec


def _deepseek_dsa(cfg: _Config) -> dict:
    """DeepSeek-V3.2 / GLM-5: DeepSeek-V3 plus the sparse-attention indexer when configured."""
    spec = _deepseek(cfg)
    if cfg.get("index_topk", default=None) is not None:
        spec["dsa"] = SparseAttnSpec(
            index_heads=cfg.int("index_n_heads"),
            index_head_dim=cfg.int("index_head_dim"),
            topk=cfg.int("index_topk"),
        )
    return spec


def _layer_types(cfg: _Config, layers: int) -> list:
    value = cfg.get("layer_types", default=None)
    if value is None:
        return []
    if not isinstance(value, list) or len(value) != layers:
        raise InputError(cfg._field("layer_types"), value, f"a list of {layers} layer kinds")
    return value


def _gpt_oss(cfg: _Config) -> dict:
    # GptOssConfig: head_dim 64, sliding_window 128, alternating sliding/full layer_types.
    spec = _common(cfg, default_max_pos=131072, default_head_dim=64)
    spec["qkv_bias"] = cfg.bool("attention_bias", True)
    spec["moe"] = MoESpec(
        num_experts=cfg.int("num_local_experts"), top_k=cfg.int("num_experts_per_tok"), expert_ffn=spec["ffn"]
    )
    sliding = sum(1 for t in _layer_types(cfg, spec["layers"]) if t == "sliding_attention")
    if sliding:
        spec["window"] = WindowSpec(layers=sliding, window=cfg.int("sliding_window", default=128))
    # the published checkpoints quantise the experts only: quantization_config {quant_method:
    # mxfp4, modules_to_not_convert: model.layers.*.self_attn, model.layers.*.mlp.router,
    # model.embed_tokens, lm_head} (transformers convert_oai_to_hf writes the same list)
    quant = cfg.get("quantization_config", default=None)
    if isinstance(quant, dict) and quant.get("quant_method") == "mxfp4":
        kept = quant.get("modules_to_not_convert") or []
        if any(str(m).endswith("self_attn") for m in kept):
            spec["dense_dtype"] = {"float16": "fp16"}.get(cfg.get("torch_dtype", default="bfloat16"), "bf16")
    return spec


def _llama4(cfg: _Config) -> dict:
    spec = _common(cfg, default_max_pos=131072, default_head_dim=128)
    layers = spec["layers"]
    spec["ffn"] = cfg.int("intermediate_size_mlp")
    step = cfg.int("interleave_moe_layer_step", default=1)
    moe_layers = cfg.get("moe_layers", default=None) or list(range(step - 1, layers, step))
    spec["moe"] = MoESpec(
        num_experts=cfg.int("num_local_experts"),
        top_k=cfg.int("num_experts_per_tok"),
        expert_ffn=cfg.int("intermediate_size"),
        shared_experts=1,
        shared_ffn=cfg.int("intermediate_size"),
        first_dense_layers=layers - len(moe_layers),
    )
    # Llama4TextConfig: no_rope_layers[i] == 1 marks a RoPE layer with chunked attention; every
    # 4th layer is a global NoPE layer by default. use_qk_norm is a weightless L2 norm.
    rope = cfg.get("no_rope_layers", default=None) or [int((i + 1) % 4 != 0) for i in range(layers)]
    chunk = cfg.get("attention_chunk_size", default=None)
    if chunk and sum(rope):
        spec["window"] = WindowSpec(
            layers=int(sum(rope)), window=cfg.int("attention_chunk_size"), kind="chunked"
        )
    return spec


def _llama4_vision_params(cfg: _Config, text_hidden: int) -> int:
    """Weights of Llama 4's vision tower as transformers builds it (``Llama4VisionModel`` and
    ``Llama4MultiModalProjector`` in models/llama4/modeling_llama4.py): an unfold patch projection
    (no bias), a class token, learned positions over (image/patch)^2 + 1 patches, pre/post
    LayerNorms, ``num_hidden_layers`` encoder layers (Q/K/V/O and a two-matrix GELU MLP, all with
    biases, two LayerNorms), the pixel-shuffle adapter MLP (two matrices, no bias) and the
    projector into the text model's hidden size (no bias). Scout/Maverick: 871,932,416."""
    h, ffn = cfg.int("hidden_size"), cfg.int("intermediate_size")
    patch, image = cfg.int("patch_size"), cfg.int("image_size")
    patches = (image // patch) ** 2 + 1
    stem = cfg.int("num_channels", default=3) * patch * patch * h + h + patches * h + 4 * h
    layer = 4 * (h * h + h) + (h * ffn + ffn) + (ffn * h + h) + 4 * h
    shuffled = round(h / cfg.number("pixel_shuffle_ratio", 0.5) ** 2)
    adapter = shuffled * cfg.int("projector_input_dim") + cfg.int("projector_output_dim") ** 2
    projector = cfg.int("vision_output_dim") * text_hidden
    return stem + cfg.int("num_hidden_layers") * layer + adapter + projector


def _gated_deltanet(cfg: _Config, hidden: int, count: int) -> LinearMixerSpec:
    """Gated DeltaNet mixer (transformers ``Qwen3NextGatedDeltaNet``): in_proj_qkvz, in_proj_ba,
    a depthwise causal conv over q/k/v, dt_bias and A_log per value head, a gated RMSNorm over the
    value head dim, out_proj; state = value heads x key dim x value dim + conv window."""
    nk, nv = cfg.int("linear_num_key_heads"), cfg.int("linear_num_value_heads")
    dk, dv = cfg.int("linear_key_head_dim"), cfg.int("linear_value_head_dim")
    kernel = cfg.int("linear_conv_kernel_dim", default=4)
    key_dim, value_dim = nk * dk, nv * dv
    conv_dim = 2 * key_dim + value_dim
    params = (
        hidden * (2 * key_dim + 2 * value_dim)
        + hidden * 2 * nv
        + conv_dim * kernel
        + 2 * nv
        + dv
        + value_dim * hidden
    )
    return LinearMixerSpec(
        layers=count,
        params=params,
        state_elems=nv * dk * dv + conv_dim * (kernel - 1),
        heads=nv,
        key_dim=dk,
        conv_dim=conv_dim,
        conv_kernel=kernel,
    )


def _qwen3_5(cfg: _Config) -> dict:
    if cfg.get("intermediate_size", default=None) is None:  # MoE-only configs carry no dense size
        cfg = _Config(dict(cfg.doc, intermediate_size=cfg.int("moe_intermediate_size")), cfg.path)
    spec = _qwen3_moe(cfg)
    layers = spec["layers"]
    kinds = _layer_types(cfg, layers)
    if not kinds:  # Qwen3NextConfig: every full_attention_interval-th layer is full attention
        interval = cfg.int("full_attention_interval", default=4)
        kinds = ["full_attention" if (i + 1) % interval == 0 else "linear_attention" for i in range(layers)]
    linear = sum(1 for k in kinds if k == "linear_attention")
    if linear:
        spec["linear"] = _gated_deltanet(cfg, spec["hidden"], linear)
    spec["attn_output_gate"] = cfg.bool("attn_output_gate", True)
    shared = cfg.count("shared_expert_intermediate_size", 0)
    if spec.get("moe") is not None and shared:
        spec["moe"] = dataclasses.replace(spec["moe"], shared_experts=1, shared_ffn=shared)
    return spec


def _mamba2(cfg: _Config, hidden: int, count: int) -> LinearMixerSpec:
    """Mamba-2 mixer (transformers ``NemotronHMamba2Mixer``): in_proj to x, z, B, C and dt; a
    biased depthwise conv over x, B, C; dt_bias, A_log and D per head; a gated RMSNorm; out_proj."""
    nh, hd = cfg.int("mamba_num_heads"), cfg.int("mamba_head_dim")
    groups, state = cfg.int("n_groups", default=8), cfg.int("ssm_state_size")
    kernel = cfg.int("conv_kernel", default=4)
    inner = nh * hd
    conv_dim = inner + 2 * groups * state
    conv_bias = conv_dim if cfg.bool("use_conv_bias", True) else 0
    params = (
        hidden * (2 * inner + 2 * groups * state + nh)
        + conv_dim * kernel
        + conv_bias
        + 3 * nh
        + inner
        + inner * hidden
    )
    return LinearMixerSpec(
        layers=count,
        params=params,
        state_elems=nh * hd * state + conv_dim * (kernel - 1),
        kind="mamba2",
        heads=nh,
        key_dim=state,
        conv_dim=conv_dim,
        conv_kernel=kernel,
    )


def _nemotron_h(cfg: _Config) -> dict:
    pattern = cfg.get("hybrid_override_pattern")
    if not isinstance(pattern, str) or set(pattern) - set("M*E-"):
        raise InputError(cfg._field("hybrid_override_pattern"), pattern, "a string of M, *, E and -")
    if cfg.get("moe_latent_size", default=None) is not None:
        raise InputError(
            cfg._field("moe_latent_size"),
            cfg.get("moe_latent_size"),
            "absent (latent MoE experts are not modelled)",
        )
    mlps, moes = pattern.count("-"), pattern.count("E")
    doc = dict(
        cfg.doc,
        num_hidden_layers=mlps + moes,
        intermediate_size=cfg.get("intermediate_size", default=None) or cfg.int("moe_intermediate_size"),
    )
    spec = _common(_Config(doc, cfg.path), default_max_pos=4096, default_head_dim=128)
    spec.update(gated_mlp=False, attn_layers=pattern.count("*"))
    if pattern.count("M"):
        spec["linear"] = _mamba2(cfg, spec["hidden"], pattern.count("M"))
    if moes:
        spec["moe"] = MoESpec(
            num_experts=cfg.int("n_routed_experts"),
            top_k=cfg.int("num_experts_per_tok"),
            expert_ffn=cfg.int("moe_intermediate_size"),
            shared_experts=cfg.count("n_shared_experts", 0),
            shared_ffn=cfg.count("moe_shared_expert_intermediate_size", 0),
            first_dense_layers=mlps,
        )
    return spec


def _gpt2(cfg: _Config) -> dict:
    hidden, heads = cfg.int("n_embd"), cfg.int("n_head")
    positions = cfg.int("n_positions", default=1024)  # GPT2Config default
    if hidden % heads:
        raise InputError(cfg._field("n_head"), heads, f"a divisor of n_embd ({hidden})")
    return {
        "name": _name(cfg),
        "layers": cfg.int("n_layer"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": heads,
        "head_dim": hidden // heads,
        "ffn": cfg.int("n_inner", default=4 * hidden),
        "vocab": cfg.int("vocab_size"),
        "gated_mlp": False,
        "tied_embeddings": cfg.bool("tie_word_embeddings", True),
        "max_seq_len": positions,
        "linear_bias": True,
        "learned_positions": positions,
        "source": f"Hugging Face config {cfg.path.name} (model_type gpt2)",
    }


def _opt(cfg: _Config) -> dict:
    hidden, heads = cfg.int("hidden_size"), cfg.int("num_attention_heads")
    proj = cfg.int("word_embed_proj_dim", default=hidden)
    if proj != hidden:
        raise InputError(
            cfg._field("word_embed_proj_dim"),
            proj,
            f"equal to hidden_size ({hidden}); OPT's project_in/project_out layers are not modelled",
        )
    positions = cfg.int("max_position_embeddings", default=2048)
    return {
        "name": _name(cfg),
        "layers": cfg.int("num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": heads,
        "head_dim": hidden // heads,
        "ffn": cfg.int("ffn_dim"),
        "vocab": cfg.int("vocab_size"),
        "gated_mlp": False,
        "tied_embeddings": cfg.bool("tie_word_embeddings", True),
        "max_seq_len": positions,
        "linear_bias": cfg.bool("enable_bias", True),
        "learned_positions": positions + 2,  # modeling_opt.OPTLearnedPositionalEmbedding: offset = 2
        "source": f"Hugging Face config {cfg.path.name} (model_type opt)",
    }


def _bloom(cfg: _Config) -> dict:
    hidden = cfg.int("hidden_size", "n_embed")
    heads = cfg.int("num_attention_heads", "n_head")
    return {
        "name": _name(cfg),
        "layers": cfg.int("n_layer", "num_hidden_layers"),
        "hidden": hidden,
        "heads": heads,
        "kv_heads": heads,
        "head_dim": hidden // heads,
        "ffn": 4 * hidden,  # modeling_bloom.BloomMLP: h -> 4h -> h
        "vocab": cfg.int("vocab_size"),
        "gated_mlp": False,
        "tied_embeddings": cfg.bool("tie_word_embeddings", True),
        "max_seq_len": cfg.int("seq_length", default=2048),
        "linear_bias": True,
        "embedding_layernorm": True,
        "source": f"Hugging Face config {cfg.path.name} (model_type bloom)",
    }


def _gpt_neox(cfg: _Config) -> dict:
    spec = _common(cfg, default_max_pos=2048)
    return spec | {"gated_mlp": False, "linear_bias": cfg.bool("attention_bias", True)}


_READERS: dict[str, Callable[[_Config], dict]] = {
    "llama": _llama,
    "mistral": _mistral,
    "mixtral": _mixtral,
    "qwen2": _qwen2,
    "qwen3": _qwen3,
    "qwen3_moe": _qwen3_moe,
    "deepseek_v3": _deepseek,
    "deepseek_v2": _deepseek,
    "deepseek_v32": _deepseek_dsa,
    "glm_moe_dsa": _deepseek_dsa,
    "kimi_k2": _deepseek,
    "gpt_oss": _gpt_oss,
    "llama4_text": _llama4,
    "qwen3_5_text": _qwen3_5,
    "qwen3_5_moe_text": _qwen3_5,
    "nemotron_h": _nemotron_h,
    "gpt2": _gpt2,
    "opt": _opt,
    "bloom": _bloom,
    "gpt_neox": _gpt_neox,
}

#: Vision towers counted into ``vision_params``, by the wrapper's ``model_type``.
_VISION_READERS = {"llama4": _llama4_vision_params}

#: The ``model_type`` values this reader understands.
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(_READERS)


def spec_from_hf_dict(doc: dict, path: Path | str = "config.json") -> ModelSpec:
    """Build a :class:`ModelSpec` from an already parsed config dict (``path`` is for messages)."""
    path = Path(path)
    if not isinstance(doc, dict):
        raise InputError(str(path), type(doc).__name__, "a JSON object (a Hugging Face config.json)")
    model_type = doc.get("model_type")
    known = isinstance(model_type, str) and model_type in _READERS
    outer = doc
    if not known and isinstance(doc.get("text_config"), dict):
        # Multimodal wrappers keep the language model's config under text_config.
        inner = doc["text_config"]
        if isinstance(inner.get("model_type"), str) and inner["model_type"] in _READERS:
            doc, model_type, known = inner, inner["model_type"], True
    if not known:
        raise InputError(f"{path}: model_type", model_type, "one of " + ", ".join(SUPPORTED_MODEL_TYPES))
    spec = _READERS[model_type](_Config(doc, path))
    vision = outer.get("vision_config") if outer is not doc else None
    if isinstance(vision, dict) and outer.get("model_type") in _VISION_READERS:
        spec["vision_params"] = _VISION_READERS[outer["model_type"]](
            _Config(vision, path, "vision_config."), spec["hidden"]
        )
    return ModelSpec(**spec)


def read_hf_config(path: Path | str) -> ModelSpec:
    """Read a Hugging Face ``config.json`` (or a folder holding one) into a :class:`ModelSpec`."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    doc = load_json(read_text(path, "model", "json"), str(path), "valid JSON (a Hugging Face config.json)")
    return spec_from_hf_dict(doc, path)
