"""Resolve ``--model`` values to a :class:`ModelSpec`: preset ids, files, and the inline GPT form.

Accepted forms (docs/SPEC.md §2):

* a :class:`ModelSpec` (returned as is);
* a preset id (``roofplan models list``): ``roofplan/catalogs/models/<id>.yaml``;
* a path to a Hugging Face ``config.json`` (or a folder containing one), read by
  :mod:`roofplan.models.hf_config`;
* a path to a roofplan model YAML (``.yaml``/``.yml``), the preset schema below;
* ``gpt(h=2304;l=24;a=24;V=51200)``, the GPT-style models of the published-measurements CSV
  (Megatron-LM SC21 Table 1). Keys: ``h`` hidden, ``l`` layers, ``a`` heads, ``V`` vocabulary
  (required); ``f`` MLP size (default 4h), ``s`` sequence length / learned position table (default
  2048, the SC21 runs), ``kv`` KV heads (default a). The architecture is Megatron's GPT: plain GELU
  MLP, biases on every linear layer and LayerNorm, learned positions, tied embeddings, head_dim h/a.

Model YAML schema (``roofplan.model/v1``; the presets are examples)::

    schema: roofplan.model/v1      # optional; if present must be this
    name: my-model                 # optional; default: the file name without extension
    source: "where the numbers come from"   # optional for user files, set on every preset
    notes: "free text"             # optional, ignored
    layers: 32                     # required ints
    hidden: 4096
    heads: 32
    ffn: 14336                     # dense MLP intermediate size
    vocab: 128256
    kv_heads: 8                    # default: heads
    head_dim: 128                  # default: hidden / heads
    gated_mlp: true                # SwiGLU (3 matrices); false: 2-matrix GELU/ReLU MLP
    tied_embeddings: false
    max_seq_len: 8192              # default 4096
    linear_bias: false             # biases on every linear layer + LayerNorm bias (GPT-2/3, OPT, BLOOM)
    qkv_bias: false                # biases on Q/K/V only (Qwen2)
    qk_norm: false                 # RMSNorm on Q and K per head (Qwen3)
    learned_positions: 0           # rows of a learned position table (0: RoPE/ALiBi)
    embedding_layernorm: false     # LayerNorm after the word embedding (BLOOM)
    moe:                           # optional: {num_experts, top_k, expert_ffn, shared_experts,
      num_experts: 8               #            shared_ffn, first_dense_layers}
      top_k: 2
      expert_ffn: 14336
    mla:                           # optional: {kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim,
      kv_lora_rank: 512            #            v_head_dim, q_lora_rank}
      ...
    dsa: {index_heads: 64, index_head_dim: 128, topk: 2048}   # optional, with mla (DeepSeek-V3.2)
    attn_layers: 0                 # full-attention layers (0: all not windowed or linear)
    attn_output_gate: false        # gated query projection (Qwen3.5)
    window: {layers: 18, window: 128, kind: sliding}          # optional: sliding | chunked layers
    linear: {layers: 45, params: .., state_elems: .., kind: gated_deltanet,   # or mamba2
             heads: 64, key_dim: 128, conv_dim: 12288, conv_kernel: 4}   # kernel shape (optional)
    mtp_layers: 0                  # multi-token-prediction modules trained with the model
    vision_params: 0               # vision tower + projector weights in the checkpoint (in the
                                   # total only; a text token never runs them)
    dense_dtype: bf16              # optional: dtype the non-expert weights keep when only the
                                   # experts are quantised (gpt-oss MXFP4: attention, router,
                                   # embeddings, LM head stay bf16)
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache, lru_cache
from pathlib import Path

from roofplan.errors import InputError, did_you_mean, unknown_key
from roofplan.inputs import is_dir, is_file, load_yaml, read_text, user_path
from roofplan.models.hf_config import read_hf_config
from roofplan.models.spec import (
    DENSE_DTYPES,
    LinearMixerSpec,
    MLASpec,
    ModelSpec,
    MoESpec,
    SparseAttnSpec,
    WindowSpec,
    check_count,
)

MODEL_SCHEMA = "roofplan.model/v1"

_SPEC_FIELDS = {f.name: f for f in dataclasses.fields(ModelSpec)}
_REQUIRED = ("layers", "hidden", "heads", "ffn", "vocab")
_INT_FIELDS = (
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "ffn",
    "vocab",
    "max_seq_len",
    "learned_positions",
    "attn_layers",
    "mtp_layers",
    "vision_params",
)
_BOOL_FIELDS = (
    "gated_mlp",
    "tied_embeddings",
    "linear_bias",
    "qkv_bias",
    "qk_norm",
    "embedding_layernorm",
    "attn_output_gate",
)
_EXTRA_KEYS = ("schema", "notes")
_SUB_SPECS = {
    "moe": MoESpec,
    "mla": MLASpec,
    "window": WindowSpec,
    "linear": LinearMixerSpec,
    "dsa": SparseAttnSpec,
}

_INLINE_GPT = re.compile(r"^\s*gpt\((?P<body>[^()]*)\)\s*$", re.IGNORECASE)
_INLINE_KEYS = {
    "h": "hidden",
    "l": "layers",
    "a": "heads",
    "V": "vocab",
    "f": "ffn",
    "s": "max_seq_len",
    "kv": "kv_heads",
}


def _preset_dir() -> Path:
    """``roofplan/catalogs/models`` next to this package (shipped as package data)."""
    return Path(__file__).resolve().parent.parent / "catalogs" / "models"


def _natural_key(name: str) -> list:
    """Sort ``llama-2-7b`` before ``llama-2-13b``: digit runs compare as numbers."""
    return [(0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", name) if tok]


@lru_cache(maxsize=1)
def _preset_ids() -> tuple[str, ...]:
    names = [p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml")]
    return tuple(sorted(names, key=_natural_key))


def list_models() -> list[str]:
    """Preset ids, in natural order."""
    return list(_preset_ids())


def model_from_dict(doc: dict, *, where: str, default_name: str) -> ModelSpec:
    """Build a :class:`ModelSpec` from a model-YAML mapping; ``where`` prefixes field names in errors."""
    if not isinstance(doc, dict):
        raise InputError(
            where, type(doc).__name__, "a YAML mapping of model fields (schema roofplan.model/v1)"
        )
    allowed = sorted(set(_SPEC_FIELDS) | set(_EXTRA_KEYS))
    for key, value in doc.items():
        if key not in allowed:
            raise unknown_key(f"{where}: {key}", value, key, allowed, "a model field, one of ")
    if "schema" in doc and doc["schema"] != MODEL_SCHEMA:
        raise InputError(f"{where}: schema", doc["schema"], MODEL_SCHEMA)
    for key in _REQUIRED:
        if doc.get(key) is None:
            raise InputError(f"{where}: {key}", None, "required (a positive integer)")
    kwargs: dict = {"name": str(doc.get("name") or default_name), "source": str(doc.get("source") or "")}
    for key in _INT_FIELDS:
        if doc.get(key) is not None:
            minimum = 0 if key in ("learned_positions", "attn_layers", "mtp_layers", "vision_params") else 1
            kwargs[key] = check_count(f"{where}: {key}", doc[key], key, minimum)
    if doc.get("rope_theta") is not None:
        theta = doc["rope_theta"]
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not 0 < theta < 1e12:
            raise InputError(f"{where}: rope_theta", theta, "a positive number below 1e12")
        kwargs["rope_theta"] = float(theta)
    if doc.get("dense_dtype") is not None:
        if doc["dense_dtype"] not in DENSE_DTYPES:
            raise InputError(f"{where}: dense_dtype", doc["dense_dtype"], " or ".join(DENSE_DTYPES))
        kwargs["dense_dtype"] = doc["dense_dtype"]
    for key in _BOOL_FIELDS:
        if doc.get(key) is not None:
            if not isinstance(doc[key], bool):
                raise InputError(f"{where}: {key}", doc[key], "true or false")
            kwargs[key] = doc[key]
    kwargs.setdefault("kv_heads", kwargs["heads"])
    if "head_dim" not in kwargs:
        if kwargs["hidden"] % kwargs["heads"]:
            raise InputError(
                f"{where}: head_dim",
                None,
                f"required when hidden ({kwargs['hidden']}) is not a multiple of heads ({kwargs['heads']})",
            )
        kwargs["head_dim"] = kwargs["hidden"] // kwargs["heads"]
    for key, cls in _SUB_SPECS.items():
        sub = doc.get(key)
        if sub is None:
            continue
        names = [f.name for f in dataclasses.fields(cls)]
        ints = {f.name for f in dataclasses.fields(cls) if str(f.type).startswith("int")}
        if not isinstance(sub, dict):
            raise InputError(f"{where}: {key}", sub, "a mapping with keys " + ", ".join(names))
        for sub_key, value in sub.items():
            if sub_key not in names:
                raise unknown_key(f"{where}: {key}.{sub_key}", value, sub_key, names, "one of ")
            optional = "None" in str(next(f.type for f in dataclasses.fields(cls) if f.name == sub_key))
            if sub_key in ints and not (value is None and optional):  # bounds before the spec's own checks
                check_count(f"{where}: {key}.{sub_key}", value, sub_key, 1 if key == "mla" else 0)
        try:
            kwargs[key] = cls(**sub)
        except TypeError as exc:  # a required key is missing
            raise InputError(f"{where}: {key}", sub, f"keys {', '.join(names)} ({exc})") from None
        except InputError as exc:  # the sub-spec's own checks: the same line, naming the file
            raise InputError(f"{where}: {exc.field}", exc.value, exc.allowed) from None
    return ModelSpec(**kwargs)


def _read_yaml(path: Path, where: str, default_name: str) -> ModelSpec:
    doc = load_yaml(read_text(path, "model", "yaml"), where, "valid YAML (schema roofplan.model/v1)")
    return model_from_dict(doc, where=where, default_name=default_name)


@cache
def _load_preset(model_id: str) -> ModelSpec:
    spec = _read_yaml(_preset_dir() / f"{model_id}.yaml", f"preset {model_id}", model_id)
    if spec.name != model_id:
        raise InputError(f"preset {model_id}: name", spec.name, f"the file's id {model_id!r}")
    return spec


def parse_inline_gpt(text: str) -> ModelSpec:
    """``gpt(h=..;l=..;a=..;V=..[;f=..][;s=..][;kv=..])``: a Megatron-LM GPT model (see module doc)."""
    match = _INLINE_GPT.match(text)
    if not match:
        raise InputError("model", text, "gpt(h=H;l=L;a=A;V=V[;f=FFN][;s=SEQ][;kv=KV_HEADS])")
    values: dict[str, int] = {}
    for part in re.split(r"[;,]", match.group("body")):
        if not part.strip():
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if key == "v":
            key = "V"
        if not sep or key not in _INLINE_KEYS:
            raise InputError(
                f"model {text}: {key or part}", part.strip(), "key=value with keys " + ", ".join(_INLINE_KEYS)
            )
        raw = raw.strip()
        if not re.fullmatch(r"[+-]?\d{1,24}", raw):
            raise InputError(f"model {text}: {key}", raw, "an integer of at most 24 digits")
        values[key] = check_count(f"model {text}: {key}", int(raw), _INLINE_KEYS[key])
    for key in ("h", "l", "a", "V"):
        if key not in values:
            raise InputError(f"model {text}: {key}", None, f"required ({_INLINE_KEYS[key]})")
    hidden, heads = values["h"], values["a"]
    if hidden % heads:
        raise InputError(f"model {text}: a", heads, f"a divisor of h ({hidden})")
    seq = values.get("s", 2048)
    return ModelSpec(
        name=text.strip(),
        layers=values["l"],
        hidden=hidden,
        heads=heads,
        kv_heads=values.get("kv", heads),
        head_dim=hidden // heads,
        ffn=values.get("f", 4 * hidden),
        vocab=values["V"],
        gated_mlp=False,
        tied_embeddings=True,
        max_seq_len=seq,
        linear_bias=True,
        learned_positions=seq,
        source="inline GPT (Megatron-LM GPT architecture, Narayanan et al. SC21)",
    )


def load_model(id_or_path) -> ModelSpec:
    """A :class:`ModelSpec` from a spec object, preset id, HF config.json, model YAML or ``gpt(...)``."""
    if isinstance(id_or_path, ModelSpec):
        return id_or_path
    if not isinstance(id_or_path, (str, Path)):
        raise InputError(
            "model", id_or_path, "a preset id, a path to config.json / model YAML, or a ModelSpec"
        )
    text = str(id_or_path).strip()
    if isinstance(id_or_path, str) and text in _preset_ids():
        return _load_preset(text)
    if _INLINE_GPT.match(text):
        return parse_inline_gpt(text)
    path = user_path(text, "model")
    if is_dir(path):
        if not is_file(path / "config.json"):
            raise InputError(
                "model",
                text,
                "a Hugging Face model directory holding config.json (there is none), "
                "a config.json or model YAML file, or a preset id",
            )
        path = path / "config.json"
    if is_file(path):
        suffix = path.suffix.lower()
        if suffix == ".json":
            return read_hf_config(path)
        if suffix in (".yaml", ".yml"):
            return _read_yaml(path, str(path), path.stem)
        raise InputError("model", text, "a .json (Hugging Face config) or .yaml/.yml (roofplan model) file")
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.lower().endswith(
        (".json", ".yaml", ".yml")
    )
    if looks_like_path:
        raise InputError(
            "model", text, "an existing file (no such file); or a preset id: " + ", ".join(list_models())
        )
    raise InputError(
        "model",
        text,
        did_you_mean(text, list_models())
        + "a preset id ("
        + ", ".join(list_models())
        + "), a path to a HF config.json or model YAML, or gpt(h=..;l=..;a=..;V=..)",
    )
