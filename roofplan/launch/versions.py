"""Framework versions the launch emitters write for, and what changed between them.

``--target FRAMEWORK=VERSION[,...]`` picks one row per framework; without it each emitter writes
for the newest row (the current release). Every difference an emitter honours is one key of the
row it reads (``feature(target, key)``), never a version comparison in the emitter. The option
inventories under ``tests/data/inventories/`` (made by ``tools/extract_inventories.py`` from the
frameworks' own parsers) are what the tests check each emitted file against; a row whose
inventory is not committed says so in ``inventory``.

Sources of the differences: the frameworks' source at the named tags (Megatron-LM
``megatron/training/arguments.py``, torchtitan ``torchtitan/config``, Dynamo's DGD API reference);
launch-configs reference §1.4, §3.1, §7.1 and §11.
"""

from __future__ import annotations

from collections.abc import Mapping

from roofplan.errors import InputError

#: framework -> version -> the facts the emitter reads. The last row of each framework is the default.
VERSIONS: dict[str, dict[str, dict]] = {
    "megatron": {
        # Megatron-FSDP (--use-megatron-fsdp) and the 1F1B EP A2A overlap appear in core_v0.14.0;
        # core_v0.13 validate_args refuses multi-token prediction with context parallelism and has
        # no --cpu-offloading-num-layers (activation offload; in the core_v0.16.1 inventory).
        "core_v0.13": {
            "megatron_fsdp": False,
            "ep_a2a_overlap": False,
            "mtp_with_cp": False,
            "act_offload": False,
            "inventory": "megatron-core_v0.13.0",
        },
        "core_v0.16": {
            "megatron_fsdp": True,
            "ep_a2a_overlap": True,
            "mtp_with_cp": True,
            "act_offload": True,
            "inventory": "megatron-core_v0.16.1",
        },
        "core_v0.19": {
            "megatron_fsdp": True,
            "ep_a2a_overlap": True,
            "mtp_with_cp": True,
            "act_offload": True,
            "inventory": "megatron-core_v0.19.0",
        },
    },
    "deepspeed": {
        # Megatron-DeepSpeed (the fork's megatron/arguments.py) with DeepSpeed's config JSON.
        "0.19": {"inventory": "megatron-deepspeed-4efb479d"},
    },
    "torchtitan": {
        # 0.2.x reads a TOML job file (--job.config_file, [model] name + flavor); 0.3.0 takes a
        # Python config function (--module/--config) and activation checkpointing is a policy class.
        "0.2": {"interface": "toml", "inventory": "torchtitan-0.2.2"},
        "0.3": {"interface": "python", "inventory": "torchtitan-0.3.0"},
    },
    "vllm": {
        "0.33": {"inventory": "vllm-0.33.0", "bench_inventory": "vllm-bench-0.33.0"},
    },
    "sglang": {
        # --disaggregation-decode-tp/-dp and --disaggregation-prefill-pp are gone (decode learns the
        # prefill layout through the bootstrap server); neither row writes them.
        "0.5.11": {"inventory": "sglang-0.5.11"},
        "0.5.23": {"inventory": "sglang-0.5.23"},
    },
    "trtllm": {
        # top-level max_batch_size/max_num_tokens/max_seq_len in the LLM-API YAML from 1.2.0rc5.
        "1.2": {"inventory": None},
    },
    "dynamo": {
        # 1.0-1.3: nvidia.com/v1alpha1 spec.services; v1beta1 spec.components is the served API
        # by 1.4 and v1alpha1 is deprecated. Worker role: --disaggregation-mode from 1.0. The
        # TensorRT-LLM worker's --model-path is an obsolete alias of --model in 1.6.
        "1.3": {
            "api": "nvidia.com/v1alpha1",
            "image_tag": "1.3.1",
            "trtllm_model_flag": "--model-path",
            "inventory": None,
        },
        "1.6": {
            "api": "nvidia.com/v1beta1",
            "image_tag": "1.6.1",
            "trtllm_model_flag": "--model",
            "inventory": "dynamo-1.6.1",
        },
    },
}


def default_version(framework: str) -> str:
    return list(VERSIONS[framework])[-1]


def parse_targets(text: str | list[str] | None) -> dict[str, str]:
    """``sglang=0.5.23,megatron=core_v0.16`` -> {framework: version}; InputError (exit 2) otherwise."""
    if not text:
        return {}
    parts = [p for t in ([text] if isinstance(text, str) else text) for p in t.split(",")]
    out: dict[str, str] = {}
    for part in parts:
        fw, sep, ver = (s.strip() for s in part.partition("="))
        if not sep or fw not in VERSIONS:
            raise InputError("target", part, "FRAMEWORK=VERSION with FRAMEWORK one of " + ", ".join(VERSIONS))
        if ver not in VERSIONS[fw]:
            raise InputError(
                "target", part, f"a {fw} version this emitter writes for: " + ", ".join(VERSIONS[fw])
            )
        if fw in out and out[fw] != ver:
            raise InputError("target", part, f"one version per framework ({fw}={out[fw]} given already)")
        out[fw] = ver
    return out


def resolve(framework: str, targets: Mapping[str, str] | None) -> str:
    """The version ``framework`` is written for: the one asked for, else the default."""
    return (targets or {}).get(framework) or default_version(framework)


def feature(framework: str, version: str | None, key: str):
    """One fact of a version row (``version`` None: the default row)."""
    return VERSIONS[framework][version or default_version(framework)][key]
