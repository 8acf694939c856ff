"""DeepSpeed launch: ``ds_config.json`` with the chosen ZeRO stage and offload, plus a
Megatron-DeepSpeed ``deepspeed`` launcher script.

Keys follow DeepSpeed's ``docs/_pages/config-json.md`` (0.19.x; launch-configs reference §2):
``train_batch_size = train_micro_batch_size_per_gpu x gradient_accumulation_steps x data-parallel
ranks``; ``offload_optimizer`` works with stages 1-3, ``offload_param`` needs stage 3; the pipeline
engine refuses ZeRO-2/3. The predicted throughput is stored under the ``roofplan`` key (DeepSpeed
ignores keys it does not know).
"""

from __future__ import annotations

from collections.abc import Mapping

from roofplan.errors import InputError
from roofplan.launch import versions
from roofplan.launch.common import (
    MEGATRON_CHECKPOINT_ARGS,
    MEGATRON_DATA_ARGS,
    MEGATRON_LR_ARGS,
    TRAIN_PLACEHOLDERS,
    command_line,
    dumps_json,
    megatron_full_recompute_args,
    megatron_length_args,
    megatron_width_args,
    nodes,
    prediction_header,
    shell_script,
    train_readme,
    unexpressed_shape,
)
from roofplan.models.spec import ModelSpec
from roofplan.solver.frameworks import dtype_violation, violation

CONFIG = "ds_config.json"
SCRIPT = "launch_deepspeed.sh"


def unsupported_model(model: ModelSpec) -> str | None:
    """Why Megatron-DeepSpeed's GPT model (``megatron/model/transformer.py`` of the fork) cannot
    build ``model``: it has no MLA, no QK-norm or Q/K/V-only bias, no multi-token prediction, only
    a softmax top-k router, and its MoE (``--num-experts`` per layer, ``--expert-interval``) gives
    every expert the dense ``--ffn-hidden-size`` and no shared expert (``--mlp-type residual`` is
    PR-MoE's mixed residual MLP, not a shared expert)."""
    alt = "; use --emit megatron"
    if why := unexpressed_shape(model, "Megatron-DeepSpeed"):
        return why
    if model.mla is not None:
        return f"Megatron-DeepSpeed has no multi-latent attention ({model.name}){alt}"
    if model.qk_norm:
        return f"Megatron-DeepSpeed has no QK layer norm ({model.name}){alt}"
    if model.qkv_bias:
        return f"Megatron-DeepSpeed has no Q/K/V-only bias ({model.name}){alt}"
    if model.mtp_layers:
        return f"Megatron-DeepSpeed has no multi-token prediction ({model.name}){alt}"
    moe = model.moe
    if moe is not None:
        if moe.shared_experts:
            return f"Megatron-DeepSpeed MoE has no shared expert ({model.name}){alt}"
        if moe.expert_ffn != model.ffn:
            return (
                f"Megatron-DeepSpeed MoE gives experts the dense FFN width ({model.ffn}), not "
                f"{moe.expert_ffn} ({model.name}){alt}"
            )
        if moe.score_function != "softmax" or moe.expert_bias or moe.groups > 1:
            return f"Megatron-DeepSpeed has only a softmax top-k router ({model.name}){alt}"
    return None


def unsupported(config: Mapping, model: ModelSpec | None = None, target: str | None = None) -> str | None:
    """Why DeepSpeed (with Megatron-DeepSpeed for TP/PP) cannot run ``config`` (and ``model``)."""
    if model is not None and (why := unsupported_model(model)):
        return why
    if why := dtype_violation("deepspeed", config.get("dtype", "bf16")):
        return why
    return violation("deepspeed", config)  # the configuration rules (solver/frameworks.py)


def ds_config(config: Mapping, estimate: Mapping) -> dict:
    """The ``ds_config.json`` document for one configuration."""
    why = unsupported(config)
    if why:
        raise InputError("emit", "deepspeed", why)
    dp = config["dp"]
    gas = config["global_batch"] // (config["micro_batch"] * dp)
    zero = {
        "stage": config["zero"],
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": 500_000_000,
    }
    if config["offload"] in ("optimizer", "optimizer+params"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if config["offload"] == "optimizer+params":
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if config["zero"] == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    doc = {
        "train_batch_size": config["global_batch"],
        "train_micro_batch_size_per_gpu": config["micro_batch"],
        "gradient_accumulation_steps": gas,
        "gradient_clipping": 1.0,
        "zero_optimization": zero,
        "steps_per_print": 10,
        "wall_clock_breakdown": False,
    }
    if config["dtype"] == "fp16":
        doc["fp16"] = {"enabled": True, "loss_scale": 0, "initial_scale_power": 16}
    else:
        doc["bf16"] = {"enabled": True}
    if config["recompute"] != "none":
        doc["activation_checkpointing"] = {
            "partition_activations": config["sequence_parallel"],
            "cpu_checkpointing": False,
            "contiguous_memory_optimization": False,
        }
    doc["roofplan"] = {
        "predicted": {
            k: estimate.get(k) for k in ("tokens_per_s", "step_time_s", "mfu", "model_tflops_per_gpu")
        },
        "config": {
            k: config[k]
            for k in (
                "tp",
                "pp",
                "dp",
                "cp",
                "ep",
                "vpp",
                "zero",
                "offload",
                "recompute",
                "micro_batch",
                "global_batch",
                "seq_len",
            )
        },
    }
    return doc


def shape_args(model: ModelSpec, seq_len: int) -> list[str]:
    """Model-shape flags in the fork's spellings (``megatron/arguments.py`` of Megatron-DeepSpeed):
    RoPE is ``--use-rotary-position-embeddings`` with ``--rotary-position-embeddings-theta``
    (learned absolute positions are its default; it has no ``--position-embedding-type``), GQA
    ``--num-key-value-heads``, norms in lower case."""
    a = megatron_width_args(model) + ["--kv-channels", str(model.head_dim)]
    if model.kv_heads != model.heads:
        a += ["--num-key-value-heads", str(model.kv_heads)]
    if model.gated_mlp:
        a += ["--swiglu"]
    a += ["--normalization", "layernorm" if model.linear_bias else "rmsnorm"]
    if not model.linear_bias:
        a += ["--disable-bias-linear"]
    if not model.learned_positions:
        a += [
            "--use-rotary-position-embeddings",
            "--rotary-position-embeddings-theta",
            str(int(model.rope_theta)),
        ]
    if not model.tied_embeddings:
        a += ["--untie-embeddings-and-output-weights"]
    a += megatron_length_args(model, seq_len)
    moe = model.moe
    if moe is not None:
        # one count per layer with expert interval 1 (transformer.get_num_experts_per_layer): 1 = dense
        counts = [1] * moe.first_dense_layers + [moe.num_experts] * (model.layers - moe.first_dense_layers)
        a += [
            "--num-experts",
            *(str(n) for n in (counts if moe.first_dense_layers else [moe.num_experts])),
            "--expert-interval",
            "1",
            "--topk",
            str(moe.top_k),
        ]
    return a


def recompute_args(config: Mapping) -> list[str]:
    """Recompute flags the fork honours: ``block`` recomputes the first N layers of the stage (the
    plan's partial recompute), ``uniform`` 1 every layer. ``--deepspeed-activation-checkpointing``
    is not used: it checkpoints every layer whatever the plan chose."""
    rc = config["recompute"]
    if rc == "selective":
        return ["--recompute-granularity", "selective"]
    if rc != "full":
        return []
    return megatron_full_recompute_args(config.get("recompute_layers") or 0)


def argv(model: ModelSpec, config: Mapping, target: str | None = None) -> list[str]:
    """``deepspeed`` launcher + Megatron-DeepSpeed ``pretrain_gpt.py`` flags."""
    why = unsupported(config, model, target)
    if why:
        raise InputError("emit", "deepspeed", why)
    nn, per = nodes(config["gpus"], config["gpus_per_node"])
    a = ["deepspeed", "--num_nodes", str(nn), "--num_gpus", str(per)]
    if nn > 1:
        a += ["--hostfile", "${HOSTFILE}", "--master_addr", "${MASTER_ADDR}", "--master_port", "29500"]
    a += ["pretrain_gpt.py", "--tensor-model-parallel-size", str(config["tp"])]
    if config["pp"] > 1:
        a += ["--pipeline-model-parallel-size", str(config["pp"])]
    else:
        a += ["--no-pipeline-parallel"]
    if config["sequence_parallel"] and config["tp"] > 1:
        a += ["--sequence-parallel"]
    if model.moe is not None:
        a += ["--moe-expert-parallel-size", str(config["ep"])]
    a += shape_args(model, config["seq_len"])
    a += [
        "--micro-batch-size",
        str(config["micro_batch"]),
        "--global-batch-size",
        str(config["global_batch"]),
    ]
    a += ["--fp16"] if config["dtype"] == "fp16" else ["--bf16"]
    a += recompute_args(config)
    a += [
        "--deepspeed",
        "--deepspeed_config",
        CONFIG,
        "--zero-stage",
        str(config["zero"]),
        "--tokenizer-type",
        "HFTokenizer",
        "--tokenizer-model",
        "${TOKENIZER_MODEL}",
    ]
    return a + MEGATRON_DATA_ARGS + ["--train-iters", "1000"] + MEGATRON_LR_ARGS + MEGATRON_CHECKPOINT_ARGS


def command(model: ModelSpec, config: Mapping, target: str | None = None) -> str:
    return command_line(argv(model, config, target))


def emit(model: ModelSpec, config: Mapping, estimate: Mapping, target: str | None = None) -> dict[str, str]:
    """``ds_config.json``, ``launch_deepspeed.sh`` and their README section."""
    target = target or versions.default_version("deepspeed")
    av = argv(model, config, target)
    doc = ds_config(config, estimate)
    header = prediction_header(config, estimate) + [
        f"Written for DeepSpeed {target} with Megatron-DeepSpeed's pretrain_gpt.py.",
        f"ZeRO stage {config['zero']}, offload {config['offload']}; config in {CONFIG}.",
    ]
    nn, _ = nodes(config["gpus"], config["gpus_per_node"])
    placeholders = dict(TRAIN_PLACEHOLDERS)
    if nn > 1:
        placeholders["HOSTFILE"] = ("./hostfile", "DeepSpeed hostfile: one 'host slots=N' line per node")
    script = shell_script(av, header=header, split_at=av.index("pretrain_gpt.py"), placeholders=placeholders)
    steps = [
        f"Copy `{SCRIPT}` and `{CONFIG}` next to Megatron-DeepSpeed's `pretrain_gpt.py`.",
        "Set DATA_PATH, TOKENIZER_MODEL, CHECKPOINT_DIR"
        + (", HOSTFILE" if nn > 1 else "")
        + " (top of the script).",
        (
            f"On node 0 only: `MASTER_ADDR=<node 0> bash {SCRIPT}`; the deepspeed launcher starts "
            "the other nodes over ssh (pdsh)."
            if nn > 1
            else f"Run `bash {SCRIPT}`."
        ),
        "Throughput is logged every 10 iterations (`elapsed time per iteration`).",
    ]
    return {
        CONFIG: dumps_json(doc),
        SCRIPT: script,
        "README.md": train_readme("DeepSpeed / Megatron-DeepSpeed", target, config, estimate, steps),
    }
