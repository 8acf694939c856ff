"""Model presets, the HF config reader and the model YAML / inline GPT forms.

Expected values are published parameter counts (model cards, papers), hand calculations written
out here, or invariants (a HF config describes the same model as its preset; YAML round trips).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from roofplan.errors import InputError
from roofplan.models import SUPPORTED_MODEL_TYPES, ModelSpec, list_models, load_model, read_hf_config

FIXTURES = Path(__file__).parent / "fixtures" / "hf"

SPEC_PRESETS = [
    "llama-2-7b",
    "llama-2-13b",
    "llama-2-70b",
    "llama-3-8b",
    "llama-3-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.1-405b",
    "llama-3.3-70b",
    "mixtral-8x7b",
    "mixtral-8x22b",
    "deepseek-v3",
    "qwen3-8b",
    "qwen3-14b",
    "qwen3-32b",
    "qwen3-235b-a22b",
    "gpt3-175b",
    "opt-13b",
    "opt-66b",
    "bloom-176b",
    "deepseek-v3.2",
    "kimi-k2",
    "qwen3.5-397b-a17b",
    "qwen3.5-35b-a3b",
    "qwen3.5-27b",
    "glm-5",
    "llama-4-scout",
    "llama-4-maverick",
    "gpt-oss-120b",
    "gpt-oss-20b",
    "nemotron-3-nano",
]


def test_every_spec_preset_exists_with_a_source():
    assert sorted(list_models()) == sorted(SPEC_PRESETS)
    for name in SPEC_PRESETS:
        spec = load_model(name)
        assert spec.name == name
        assert spec.source, name


# (preset, published total, published active, half a unit of the published figure's last digit).
# Sources: Llama 2 paper / HF model cards (6.74B, 68.98B); Llama 3 herd paper and model cards (70.6B,
# 405.9B); Mixtral paper (46.7B / 12.9B); Mistral AI 8x22B announcement (141B / 39B); DeepSeek-V3
# report (671B / 37B); Qwen3 report (235B / 22B); GPT-3 paper (175.0B); OPT HF model card (12.85B);
# BLOOM paper (176B).
PUBLISHED = [
    ("llama-3.1-70b", 70.6e9, None, 0.05e9),
    ("llama-3.1-405b", 405.9e9, None, 0.05e9),
    ("llama-2-7b", 6.74e9, None, 0.005e9),
    ("llama-2-70b", 68.98e9, None, 0.005e9),
    ("mixtral-8x7b", 46.7e9, 12.9e9, 0.05e9),
    ("mixtral-8x22b", 141e9, 39e9, 0.5e9),
    ("deepseek-v3", 671e9, 37e9, 0.5e9),
    ("qwen3-235b-a22b", 235e9, 22e9, 0.5e9),
    ("gpt3-175b", 175.0e9, None, 0.05e9),
    ("opt-13b", 12.85e9, None, 0.005e9),
    ("bloom-176b", 176e9, None, 0.5e9),
]


@pytest.mark.parametrize("name,total,active,half_unit", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_parameter_counts_match_published(name, total, active, half_unit):
    """Within 1 %, or within the rounding of the published figure where that is coarser."""
    spec = load_model(name)
    assert abs(spec.params_total - total) <= max(0.01 * total, half_unit)
    if active is None:
        assert spec.params_active == spec.params_total
    else:
        # Vendors differ on whether the input embedding (a lookup, no FLOPs) counts as "activated":
        # the published figure must lie between the count without it and with it, +-1 %. DeepSeek-V3's
        # "37B" lies between 36.6B and 37.6B (1.5 % below the count that includes the embedding).
        lookup = spec.vocab * spec.hidden
        assert 0.99 * (spec.params_active - lookup) <= active <= 1.01 * spec.params_active
        assert spec.params_active < spec.params_total


# 2026 families: (preset, published total, published active, what the active figure leaves out,
# tolerance). Sources: DeepSeek-V3.2 model card (671B main model as V3; no separate active figure
# for the indexer-augmented model); Kimi K2: the released checkpoint's tensor count on its Hugging
# Face page (moonshotai/Kimi-K2-Instruct safetensors metadata: 1,026.5B parameters, see
# test_kimi_k2_checkpoint_count) and report arXiv 2507.20534 Table 2 for the 32.6B active;
# Qwen3.5 model ids (397B-A17B, 35B-A3B, 27B: language model plus a ~0.4B vision encoder not
# modelled); Z.ai GLM-5 release (744B / 40B active); Meta Llama 4 model card (Scout 109B, Maverick
# 400B, both 17B active; totals include the vision encoder, counted in vision_params); OpenAI gpt-oss model card Table 1
# (116.83B / 5.13B, 20.91B / 3.61B, active without the input embedding); NVIDIA Nemotron 3 Nano
# model card (31.6B total, 3.6B active with embeddings).
NEW_FAMILIES = [
    ("deepseek-v3.2", 671e9, None, "", 0.01),
    ("kimi-k2", 1.0265e12, 32.6e9, "", 0.01),  # the report's rounded 1.04T is 1.3 % above the tensors
    ("qwen3.5-397b-a17b", 397e9, 17e9, "", 0.01),
    ("qwen3.5-35b-a3b", 35e9, 3e9, "", 0.01),
    ("qwen3.5-27b", 27e9, None, "", 0.01),
    ("glm-5", 744e9, 40e9, "embeddings", 0.01),
    ("llama-4-scout", 109e9, 17e9, "", 0.01),
    ("llama-4-maverick", 400e9, 17e9, "", 0.01),
    ("gpt-oss-120b", 116.83e9, 5.13e9, "input_embedding", 0.01),
    ("gpt-oss-20b", 20.91e9, 3.61e9, "input_embedding", 0.01),
    ("nemotron-3-nano", 31.6e9, 3.6e9, "", 0.01),
]


@pytest.mark.parametrize("name,total,active,without,rel", NEW_FAMILIES, ids=[p[0] for p in NEW_FAMILIES])
def test_new_family_parameter_counts(name, total, active, without, rel):
    """Within 1 % of the published figure, or its rounding where that is coarser (A17B: +-0.5B)."""
    spec = load_model(name)
    assert abs(spec.params_total - total) <= rel * total
    if active is None:
        return
    ours = spec.params_active
    if without in ("input_embedding", "embeddings"):
        ours -= spec.vocab * spec.hidden
    if without == "embeddings":
        ours -= spec.head_params()
    half_unit = 0.5e9 if active % 1e9 == 0 else 0.005e9
    assert abs(ours - active) <= max(0.01 * active, half_unit)


def test_llama4_vision_tower_count():
    """Hand count of transformers' Llama4VisionModel + projector from the Scout/Maverick
    vision_config (hidden 1408, MLP 5632, 34 layers, 336 px / 14 px patches, projector 4096 -> 5120),
    tensor by tensor as transformers lists them: the stem (patch 3*14*14*1408, class token, 577
    positions, two LayerNorms), per layer Q/K/V/O 4*(1408^2 + 1408), fc1/fc2 with biases and two
    LayerNorms, the pixel-shuffle adapter 5632*4096 + 4096^2, the projector 4096*5120."""
    stem = 827_904 + 1408 + 812_416 + 4 * 1408
    layer = 4 * (1_982_464 + 1408) + (7_929_856 + 5632) + (7_929_856 + 1408) + 4 * 1408
    expected = stem + 34 * layer + 23_068_672 + 16_777_216 + 20_971_520
    for name in ("llama-4-scout", "llama-4-maverick"):
        spec = load_model(name)
        assert spec.vision_params == expected == 871_932_416
        # The tower is in the checkpoint total, never in the per-token active count.
        assert spec.params_total - spec.params_active > expected


def test_kimi_k2_checkpoint_count():
    """The released Kimi-K2 checkpoint holds 1,026.5B tensor elements (its Hugging Face page): our
    count plus the float32 scale of every 128x128 block of each FP8 matrix (the quantisation of the
    released weights) gives that figure to its 0.1B rounding. Nothing (no MTP layer:
    num_nextn_predict_layers is 0) is missing from the count; the report's 1.04T is rounded up."""
    spec = load_model("kimi-k2")

    def blocks(m, n):
        return -(-m // 128) * -(-n // 128)

    h = spec.hidden
    attn = (
        blocks(1536, h)
        + blocks(64 * 192, 1536)
        + blocks(576, h)
        + blocks(64 * 256, 512)
        + blocks(h, 64 * 128)
    )
    expert = 2 * blocks(2048, h) + blocks(h, 2048)
    dense = 2 * blocks(18432, h) + blocks(h, 18432)
    scales = 61 * attn + 60 * 385 * expert + dense
    assert abs(spec.params_total + scales - 1026.5e9) <= 0.05e9
    assert spec.mtp_layers == 0


def test_hybrid_kv_cache_and_attention_flops():
    """Hand calculations from the configs: only full-attention layers grow the KV cache."""
    qwen = load_model("qwen3.5-397b-a17b")  # 15 full layers x 2 KV heads x 256 x (K, V)
    assert qwen.kv_elems_per_token() == 15 * 2 * 2 * 256
    # Gated DeltaNet state: 64 value heads x 128 x 128, conv over (2*16*128 + 64*128) x 3
    assert qwen.linear.state_elems == 64 * 128 * 128 + (2 * 2048 + 8192) * 3
    oss = load_model("gpt-oss-120b")  # 18 full + 18 sliding (128) layers of 8 KV heads x 64
    assert oss.kv_elems_per_token() == 18 * 2 * 8 * 64
    assert oss.state_elems_per_seq() == 18 * 128 * 2 * 8 * 64
    per_key = 2 * 64 * (64 + 64)
    assert oss.attention_flops_per_token(4096) == per_key * (18 * 4096 + 18 * 128)
    ds = load_model("deepseek-v3.2")  # MLA latent + rope key + indexer key per layer
    assert ds.kv_elems_per_token() == 61 * (512 + 64 + 128)
    dense_equiv = 2 * 128 * (192 + 128) * 2048 + 2 * 64 * 128 * 100_000
    assert ds.attention_flops_per_token(100_000) == 61 * dense_equiv
    nano = load_model("nemotron-3-nano")  # 6 attention layers, 2 KV heads x 128
    assert (nano.full_attention_layers, nano.linear_layers, nano.layers) == (6, 23, 23)
    assert nano.kv_elems_per_token() == 6 * 2 * 2 * 128


def test_nemotron_latent_moe_refused(tmp_path):
    doc = json.loads((FIXTURES / "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16" / "config.json").read_text())
    doc["moe_latent_size"] = 1024
    with pytest.raises(InputError, match="moe_latent_size"):
        read_hf_config(_write(tmp_path, doc))


@pytest.mark.parametrize(
    "name,layers,kv_heads,head_dim",
    [
        ("llama-3.1-70b", 80, 8, 128),
        ("llama-2-7b", 32, 32, 128),
        ("qwen3-235b-a22b", 94, 4, 128),
        ("mixtral-8x22b", 56, 8, 128),
        ("bloom-176b", 70, 112, 128),
    ],
)
def test_kv_bytes_per_token_gqa(name, layers, kv_heads, head_dim):
    spec = load_model(name)
    # K and V, every layer, kv_heads x head_dim each; bf16 = 2 bytes, fp8 = 1 byte.
    assert spec.kv_bytes_per_token("bf16") == 2 * layers * kv_heads * head_dim * 2
    assert spec.kv_bytes_per_token("fp8") == 2 * layers * kv_heads * head_dim * 1


def test_kv_bytes_per_token_mla():
    spec = load_model("deepseek-v3")
    # DeepSeek-V2 §2.1.2: the cache holds the latent c_KV (kv_lora_rank 512) and the decoupled RoPE
    # key (64) per layer, shared by all heads: (512 + 64) x 61 layers.
    assert spec.kv_bytes_per_token("bf16") == (512 + 64) * 61 * 2
    assert spec.kv_bytes_per_token("fp8") == (512 + 64) * 61
    assert spec.attention_kind == "mla"


# HF config fixture -> preset describing the same model.
SAME_AS_PRESET = {
    "Llama-3.1-70B": "llama-3.1-70b",
    "Llama-2-7b-hf": "llama-2-7b",
    "Mixtral-8x7B-v0.1": "mixtral-8x7b",
    "Qwen3-8B": "qwen3-8b",
    "Qwen3-235B-A22B": "qwen3-235b-a22b",
    "DeepSeek-V3": "deepseek-v3",
    "gpt3-175b-as-gpt2": "gpt3-175b",
    "opt-13b": "opt-13b",
    "bloom": "bloom-176b",
    "DeepSeek-V3.2": "deepseek-v3.2",
    "Kimi-K2-Instruct": "kimi-k2",
    "Qwen3.5-397B-A17B": "qwen3.5-397b-a17b",
    "Qwen3.5-35B-A3B": "qwen3.5-35b-a3b",
    "Qwen3.5-27B": "qwen3.5-27b",
    "GLM-5": "glm-5",
    "Llama-4-Scout-17B-16E-Instruct": "llama-4-scout",
    "Llama-4-Maverick-17B-128E-Instruct": "llama-4-maverick",
    "gpt-oss-120b": "gpt-oss-120b",
    "gpt-oss-20b": "gpt-oss-20b",
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16": "nemotron-3-nano",
}


def _shape(spec: ModelSpec) -> ModelSpec:
    return dataclasses.replace(spec, name="", source="")


@pytest.mark.parametrize("folder,preset", sorted(SAME_AS_PRESET.items()))
def test_hf_config_gives_the_preset(folder, preset):
    assert _shape(read_hf_config(FIXTURES / folder / "config.json")) == _shape(load_model(preset))


# HF configs without a preset, against the parameter counts their model cards / papers publish.
@pytest.mark.parametrize(
    "folder,published,rel",
    [
        ("Mistral-7B-v0.1", 7.24e9, 0.001),  # HF model card: 7.24B params
        ("Qwen2.5-7B", 7.61e9, 0.001),  # Qwen2.5 model card: 7.61B
        ("gpt2", 124.44e6, 0.001),  # GPT-2 small: 124M (HF count 124,439,808)
        ("gpt-neox-20b", 20_554_567_680, 1e-9),  # Black et al. 2022 (GPT-NeoX-20B) Table 1
    ],
)
def test_hf_config_parameter_counts(folder, published, rel):
    spec = load_model(str(FIXTURES / folder / "config.json"))
    assert spec.params_total == pytest.approx(published, rel=rel)


def test_every_supported_model_type_has_a_fixture():
    docs = [json.loads(p.read_text()) for p in FIXTURES.glob("*/config.json")]
    types = {d["model_type"] for d in docs} | {
        d["text_config"]["model_type"] for d in docs if "text_config" in d
    }
    assert set(SUPPORTED_MODEL_TYPES) - {"deepseek_v2"} <= types


def test_hf_family_specifics():
    qwen2 = load_model(str(FIXTURES / "Qwen2.5-7B"))  # a folder holding config.json
    assert qwen2.qkv_bias and not qwen2.qk_norm and qwen2.kv_heads == 4 and qwen2.head_dim == 128
    gpt2 = load_model(str(FIXTURES / "gpt2" / "config.json"))
    assert gpt2.ffn == 4 * 768 and gpt2.tied_embeddings and gpt2.learned_positions == 1024
    assert not gpt2.gated_mlp and gpt2.linear_bias
    opt = load_model(str(FIXTURES / "opt-13b" / "config.json"))
    assert opt.learned_positions == 2048 + 2 and opt.max_seq_len == 2048
    neox = load_model(str(FIXTURES / "gpt-neox-20b" / "config.json"))
    assert not neox.tied_embeddings and neox.learned_positions == 0


def _write(tmp_path, doc, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def test_missing_required_field_names_file_and_field(tmp_path):
    doc = json.loads((FIXTURES / "Llama-3.1-70B" / "config.json").read_text())
    del doc["hidden_size"]
    path = _write(tmp_path, doc)
    with pytest.raises(InputError) as err:
        read_hf_config(path)
    assert "hidden_size" in str(err.value) and str(path) in str(err.value)


def test_gpt2_missing_field(tmp_path):
    with pytest.raises(InputError, match="n_embd"):
        read_hf_config(_write(tmp_path, {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "vocab_size": 10}))


def test_unknown_model_type_lists_supported(tmp_path):
    with pytest.raises(InputError) as err:
        read_hf_config(_write(tmp_path, {"model_type": "mamba", "hidden_size": 8}))
    assert "mamba" in str(err.value)
    for kind in SUPPORTED_MODEL_TYPES:
        assert kind in str(err.value)


def test_malformed_json(tmp_path):
    with pytest.raises(InputError, match="JSON"):
        read_hf_config(_write(tmp_path, '{"model_type": "llama",'))


def test_text_config_wrapper(tmp_path):
    inner = json.loads((FIXTURES / "Qwen3-8B" / "config.json").read_text())
    path = _write(tmp_path, {"model_type": "some_vlm", "text_config": inner})
    assert _shape(read_hf_config(path)) == _shape(load_model("qwen3-8b"))


def test_qwen3_moe_dense_layers_counted(tmp_path):
    doc = json.loads((FIXTURES / "Qwen3-235B-A22B" / "config.json").read_text())
    doc["mlp_only_layers"] = [0, 1]
    spec = read_hf_config(_write(tmp_path, doc))
    assert spec.moe_layers == 92 and spec.dense_layers == 2
    dense_mlp = 3 * 4096 * 12288
    moe_mlp = 4096 * 128 + 128 * 3 * 4096 * 1536
    assert load_model("qwen3-235b-a22b").params_total - spec.params_total == 2 * (moe_mlp - dense_mlp)


def test_opt_projection_dim_rejected(tmp_path):
    doc = json.loads((FIXTURES / "opt-13b" / "config.json").read_text())
    doc["word_embed_proj_dim"] = 512
    with pytest.raises(InputError, match="word_embed_proj_dim"):
        read_hf_config(_write(tmp_path, doc))


def test_unknown_preset_lists_ids():
    with pytest.raises(InputError) as err:
        load_model("llama-9-1b")
    assert "llama-3.1-70b" in str(err.value) and "deepseek-v3" in str(err.value)


def test_missing_file():
    with pytest.raises(InputError, match="no such file"):
        load_model("does/not/exist/config.json")


def test_spec_object_passes_through():
    spec = load_model("llama-3-8b")
    assert load_model(spec) is spec


@pytest.mark.parametrize("name", ["deepseek-v3", "opt-13b", "qwen3-32b"])
def test_model_yaml_round_trip(tmp_path, name):
    spec = load_model(name)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(spec.to_dict()))
    assert load_model(str(path)) == spec


TINY = "layers: 2\nhidden: 64\nheads: 4\nffn: 256\nvocab: 100\n"


def test_model_yaml_defaults(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    spec = load_model(str(path))
    assert (spec.name, spec.kv_heads, spec.head_dim, spec.attention_kind) == ("tiny", 4, 16, "mha")


@pytest.mark.parametrize(
    "text, field",
    [
        (TINY + "hiden: 3\n", "hiden"),  # a typo is named, not ignored
        (TINY.replace("vocab: 100\n", ""), "vocab"),  # a required field is missing
        (TINY + "kv_heads: 3\n", "kv_heads"),  # 4 heads are not a multiple of 3 KV heads
        ("layers: [2\n", "YAML"),
    ],
)
def test_model_yaml_errors(tmp_path, text, field):
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=field):
        load_model(str(path))


def test_inline_gpt_matches_megatron_parameter_formula():
    # Narayanan et al. SC21 §5.1: P = 12 l h^2 (1 + 13/(12h) + (V + s)/(12 l h)); it omits the final
    # LayerNorm (2h), which the spec counts.
    h, l, a, V, s = 2304, 24, 24, 51200, 2048  # noqa: E741 - the paper's notation
    spec = load_model(f"gpt(h={h};l={l};a={a};V={V})")
    expected = 12 * l * h**2 * (1 + 13 / (12 * h) + (V + s) / (12 * l * h)) + 2 * h
    assert spec.params_total == pytest.approx(expected, rel=1e-12)
    assert (spec.head_dim, spec.ffn, spec.max_seq_len, spec.tied_embeddings) == (96, 4 * h, s, True)


def test_inline_gpt_optional_keys_and_errors():
    spec = load_model("gpt(h=1024;l=4;a=16;V=1000;f=3000;s=4096;kv=4)")
    assert (spec.ffn, spec.max_seq_len, spec.kv_heads, spec.attention_kind) == (3000, 4096, 4, "gqa")
    with pytest.raises(InputError, match="V"):
        load_model("gpt(h=1024;l=4;a=16)")
    with pytest.raises(InputError, match="x"):
        load_model("gpt(h=1024;l=4;a=16;V=10;x=2)")


def test_attention_kinds():
    assert load_model("llama-2-7b").attention_kind == "mha"
    assert load_model("llama-2-70b").attention_kind == "gqa"
    assert load_model("gpt(h=1024;l=2;a=16;V=100;kv=1)").attention_kind == "mqa"
