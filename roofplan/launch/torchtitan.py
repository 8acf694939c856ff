"""torchtitan launch: a job TOML (v0.1-v0.2 interface) and the torchrun command that runs it.

Keys follow ``torchtitan/config/job_config.py`` (launch-configs reference §3.2). WORLD_SIZE =
dp_replicate x dp_shard x cp x tp x pp (``parallel_dims.py``). ZeRO maps onto FSDP2: stage 0 is
pure replication (``data_parallel_replicate_degree = DP``), stage 2 is FSDP with
``fsdp_reshard_after_forward = "never"`` (parameters stay gathered between forward and backward),
stage 3 is FSDP with resharding; CPU offload (``training.enable_cpu_offload``) moves parameters,
gradients and optimizer state together, so only ZeRO-3 + optimizer+params offload maps onto it.
"""

from __future__ import annotations

from collections.abc import Mapping

from roofplan.errors import InputError
from roofplan.launch.common import command_line, prediction_header, shell_script, torchrun_argv
from roofplan.models.spec import ModelSpec

CONFIG = "torchtitan.toml"
SCRIPT = "launch_torchtitan.sh"

_MP = {"bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16"}


def unsupported(config: Mapping) -> str | None:
    if config["zero"] == 1:
        return "FSDP2 has no optimizer-only sharding (ZeRO-1)"
    if config.get("tp_comm_overlap"):
        return "no userbuffers TP-communication overlap (Megatron --tp-comm-overlap)"
    if config["zero"] == 2 and config["pp"] > 1:
        return ("under torchtitan's pipeline schedules FSDP2 reduces gradients on the last microbatch only, "
                "so ZeRO-2 gradients are not sharded while they accumulate")
    if config["offload"] == "optimizer" or (config["offload"] == "optimizer+params" and config["zero"] != 3):
        return "torchtitan CPU offload moves parameters, gradients and optimizer together (ZeRO-3 only)"
    if config["recompute"] == "full" and config.get("recompute_layers"):
        return "torchtitan full activation checkpointing covers every layer"
    return None


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def toml_doc(model: ModelSpec, config: Mapping, estimate: Mapping) -> str:
    """The job TOML text."""
    why = unsupported(config)
    if why:
        raise InputError("emit", "torchtitan", why)
    dp, zero = config["dp"], config["zero"]
    replicate, shard = (dp, 1) if zero == 0 else (1, dp)
    sections: dict[str, dict] = {
        "job": {"dump_folder": "./outputs",
                "description": f"roofplan plan for {config.get('model', model.name)}"},
        "model": {"name": model.name},
        # with PP the local batch is split into pipeline micro-batches; without PP the global
        # batch is reached by gradient accumulation over local batches of one micro-batch
        "training": {"local_batch_size": config["global_batch"] // dp if config["pp"] > 1
                     else config["micro_batch"],
                     "global_batch_size": config["global_batch"], "seq_len": config["seq_len"],
                     "mixed_precision_param": _MP.get(config["dtype"], "bfloat16"), "steps": 1000},
        "parallelism": {
            "data_parallel_replicate_degree": replicate,
            "data_parallel_shard_degree": shard,
            "fsdp_reshard_after_forward": "never" if zero == 2 else "default",
            "tensor_parallel_degree": config["tp"],
            "pipeline_parallel_degree": config["pp"],
            "pipeline_parallel_schedule": "Interleaved1F1B" if config["vpp"] > 1 else "1F1B",
            "pipeline_parallel_microbatch_size": config["micro_batch"],
            "context_parallel_degree": config["cp"],
            "expert_parallel_degree": config["ep"],
        },
        "activation_checkpoint": {"mode": config["recompute"]},
    }
    if config["pp"] > 1:
        sections["parallelism"]["pipeline_parallel_layers_per_stage"] = model.layers // (config["pp"] * config["vpp"])
    if config["offload"] == "optimizer+params":
        sections["training"]["enable_cpu_offload"] = True
    if config["dtype"] == "fp8":
        sections["float8"] = {"enable_fsdp_float8_all_gather": zero >= 2}
    lines = [f"# {h}" for h in prediction_header(config, estimate)]
    lines.append(f"# WORLD_SIZE = {config['gpus']} = dp_replicate x dp_shard x cp x tp x pp")
    for name, kv in sections.items():
        lines.append("")
        lines.append(f"[{name}]")
        lines += [f"{k} = {_value(v)}" for k, v in kv.items()]
    return "\n".join(lines) + "\n"


def argv(config: Mapping) -> list[str]:
    return torchrun_argv(config["gpus"], config["gpus_per_node"]) + [
        "-m", "torchtitan.train", "--job.config_file", CONFIG]


def command(model: ModelSpec, config: Mapping) -> str:
    why = unsupported(config)
    if why:
        raise InputError("emit", "torchtitan", why)
    return command_line(argv(config))


def emit(model: ModelSpec, config: Mapping, estimate: Mapping) -> dict[str, str]:
    """``torchtitan.toml`` and ``launch_torchtitan.sh``."""
    doc = toml_doc(model, config, estimate)
    av = argv(config)
    return {CONFIG: doc, SCRIPT: shell_script(av, header=prediction_header(config, estimate),
                                              split_at=av.index("-m"))}
