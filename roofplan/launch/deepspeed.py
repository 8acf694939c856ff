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
from roofplan.launch.common import command_line, dumps_json, nodes, prediction_header, shell_script
from roofplan.launch.megatron import model_args
from roofplan.models.spec import ModelSpec

CONFIG = "ds_config.json"
SCRIPT = "launch_deepspeed.sh"


def unsupported(config: Mapping) -> str | None:
    """Why DeepSpeed (with Megatron-DeepSpeed for TP/PP) cannot run ``config``."""
    if config["zero"] >= 2 and config["pp"] > 1:
        return "ZeRO-2 and ZeRO-3 are incompatible with DeepSpeed pipeline parallelism"
    if config["offload"] == "optimizer+params" and config["zero"] < 3:
        return "offload_param needs ZeRO stage 3"
    if config["offload"] == "optimizer" and config["zero"] < 1:
        return "offload_optimizer needs ZeRO stage >= 1"
    if config["cp"] > 1:
        return "context parallelism is not available (DeepSpeed-Ulysses is a different algorithm)"
    if config.get("tp_comm_overlap"):
        return "no userbuffers TP-communication overlap (Megatron --tp-comm-overlap)"
    if config["vpp"] > 1:
        return "the DeepSpeed pipeline engine has no interleaved schedule"
    return None


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
        doc["activation_checkpointing"] = {"partition_activations": config["sequence_parallel"],
                                           "cpu_checkpointing": False, "contiguous_memory_optimization": False}
    doc["roofplan"] = {"predicted": {k: estimate.get(k) for k in ("tokens_per_s", "step_time_s", "mfu",
                                                                   "model_tflops_per_gpu")},
                       "config": {k: config[k] for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "offload",
                                                          "recompute", "micro_batch", "global_batch", "seq_len")}}
    return doc


def argv(model: ModelSpec, config: Mapping) -> list[str]:
    """``deepspeed`` launcher + Megatron-DeepSpeed ``pretrain_gpt.py`` flags (fork spellings for
    GQA/RMSNorm/RoPE, launch-configs §2.2)."""
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
        a += ["--num-experts", str(model.moe.num_experts), "--moe-expert-parallel-size", str(config["ep"]),
              "--topk", str(model.moe.top_k)]
    shape = _shape_without_upstream_moe(model_args(model, config["seq_len"]))
    # fork spellings (Megatron-DeepSpeed megatron/arguments.py)
    out = []
    i = 0
    while i < len(shape):
        x = shape[i]
        if x == "--num-query-groups":
            out += ["--num-key-value-heads", shape[i + 1]]
            i += 2
            continue
        if x == "--normalization":
            out += ["--normalization", shape[i + 1].lower()]
            i += 2
            continue
        if x == "--position-embedding-type" and shape[i + 1] == "rope":
            out += ["--use-rotary-position-embeddings"]
            i += 2
            continue
        out.append(x)
        i += 1
    a += out
    a += ["--micro-batch-size", str(config["micro_batch"]), "--global-batch-size", str(config["global_batch"])]
    a += ["--fp16"] if config["dtype"] == "fp16" else ["--bf16"]
    if config["recompute"] != "none":
        a += ["--deepspeed-activation-checkpointing"]
        a += ["--recompute-granularity", "selective" if config["recompute"] == "selective" else "full"]
    a += ["--deepspeed", "--deepspeed_config", CONFIG, "--zero-stage", str(config["zero"]),
          "--tokenizer-type", "HFTokenizer", "--tokenizer-model", "${TOKENIZER_MODEL}",
          "--data-path", "${DATA_PATH}", "--train-iters", "${TRAIN_ITERS:-1000}"]
    return a


def _shape_without_upstream_moe(shape: list[str]) -> list[str]:
    """Drop GQA's switch and upstream Megatron's ``--moe-*``/``--num-experts`` flags (with their
    values); the fork spells MoE as ``--num-experts/--moe-expert-parallel-size/--topk``."""
    out, i = [], 0
    while i < len(shape):
        x = shape[i]
        if x == "--group-query-attention":
            i += 1
            continue
        if x.startswith("--moe-") or x == "--num-experts":
            i += 1
            while i < len(shape) and not shape[i].startswith("--"):
                i += 1
            continue
        out.append(x)
        i += 1
    return out


def command(model: ModelSpec, config: Mapping) -> str:
    return command_line(argv(model, config))


def emit(model: ModelSpec, config: Mapping, estimate: Mapping) -> dict[str, str]:
    """``ds_config.json`` and ``launch_deepspeed.sh``."""
    doc = ds_config(config, estimate)
    av = argv(model, config)
    header = prediction_header(config, estimate) + [
        f"ZeRO stage {config['zero']}, offload {config['offload']}; config in {CONFIG}."]
    return {CONFIG: dumps_json(doc),
            SCRIPT: shell_script(av, header=header, split_at=av.index("pretrain_gpt.py"))}
