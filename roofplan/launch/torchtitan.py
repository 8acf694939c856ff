"""torchtitan launch: the job for one plan in the interface of the targeted torchtitan release.

* 0.3 (default): a run is a Python function returning ``Trainer.Config`` selected with
  ``-m torchtitan.train --module <module> --config <function>`` (``torchtitan/config/manager.py``;
  ``--module`` also takes a module path). The emitted ``roofplan_torchtitan.py`` starts from the
  release's registered config of the model (``torchtitan/models/<m>/config_registry.py``) and sets
  the plan's parallelism, batch and activation checkpointing (``FullAC`` / ``SelectiveAC`` / None).
* 0.2: a TOML job file (``--job.config_file``, keys of ``torchtitan/config/job_config.py``) with the
  registered ``[model] name`` and ``flavor`` (``torchtitan/models/<m>/__init__.py``).

A model torchtitan has no definition of is refused: the debug model would be built instead.
WORLD_SIZE = dp_replicate x dp_shard x cp x tp x pp (``parallel_dims.py``). ZeRO maps onto FSDP2:
stage 0 is pure replication, stage 2 FSDP with ``fsdp_reshard_after_forward = "never"``, stage 3 FSDP
with the ``"default"`` policy: resharding after forward without a pipeline; with one (pp > 1),
FSDP2 under torchtitan's pipeline schedules, which ``"default"`` resolves to no resharding and the
cost model prices as :func:`roofplan.costmodel.train_memory.fsdp_under_pipeline` (weights gathered
once per step, gradients reduce-scattered once after the last backward). CPU offload
(``training.enable_cpu_offload``) moves parameters, gradients and optimizer state together, so only
ZeRO-3 + optimizer+params offload maps onto it.
"""

from __future__ import annotations

from collections.abc import Mapping

from roofplan.costmodel.train_memory import pipeline_split
from roofplan.errors import InputError
from roofplan.launch import versions
from roofplan.launch.common import (
    TRAIN_PLACEHOLDERS,
    command_line,
    comment_lines,
    prediction_header,
    quote_for,
    shell_script,
    train_readme,
)
from roofplan.models.spec import ModelSpec
from roofplan.solver.frameworks import dtype_violation, violation

TOML = "torchtitan.toml"
PYCONFIG = "roofplan_torchtitan.py"
SCRIPT = "launch_torchtitan.sh"
CONFIG_FN = "roofplan_plan"

#: roofplan model -> {interface: (torchtitan module, registered config function or flavor)}
MODELS: dict[str, dict[str, tuple[str, str]]] = {
    "llama-3.1-8b": {"python": ("llama3", "llama3_8b"), "toml": ("llama3", "8B")},
    "llama-3.1-70b": {"python": ("llama3", "llama3_70b"), "toml": ("llama3", "70B")},
    "llama-3.1-405b": {"python": ("llama3", "llama3_405b"), "toml": ("llama3", "405B")},
    "deepseek-v3": {"python": ("deepseek_v3", "deepseek_v3_671b"), "toml": ("deepseek_v3", "671B")},
    "qwen3-14b": {"python": ("qwen3", "qwen3_14b"), "toml": ("qwen3", "14B")},
    "qwen3-32b": {"python": ("qwen3", "qwen3_32b"), "toml": ("qwen3", "32B")},
    "qwen3-8b": {"toml": ("qwen3", "8B")},
}

_MP = {"bf16": "bfloat16"}


def _interface(target: str | None) -> str:
    return versions.feature("torchtitan", target, "interface")


def unsupported(config: Mapping, model: ModelSpec | None = None, target: str | None = None) -> str | None:
    """Why torchtitan (release ``target``) cannot run ``config`` of ``config['model']``."""
    name = config.get("model") or (model.name if model else None)
    iface = _interface(target)
    if name not in MODELS or iface not in MODELS[name]:
        known = ", ".join(m for m, d in MODELS.items() if iface in d)
        return (
            f"torchtitan {target or versions.default_version('torchtitan')} has no registered "
            f"definition of {name} (it has {known})"
        )
    if why := violation("torchtitan", config):  # the configuration rules (solver/frameworks.py)
        return why
    return dtype_violation("torchtitan", config["dtype"])


def stage_split(layers: int, pp: int, vpp: int) -> dict[str, int]:
    """The ``[parallelism]`` keys that make torchtitan split ``layers`` decoder layers over
    ``pp`` x ``vpp`` stages the way the cost model prices them (``pipeline_split``).

    torchtitan counts the embedding as ``pipeline_parallel_first_stage_less_layers`` layers and
    the norm + output as ``..._last_stage_less_layers`` (both 1 by default), builds
    ``ceil((layers + first + last) / layers_per_stage)`` virtual stages, which must be a multiple
    of ``pp``, and deals the effective layers out evenly, the remainder to the first stages
    (``torchtitan/distributed/pipeline_parallel.py``: ``get_pipeline_stage_count`` /
    ``_generate_llm_fqn_per_model_part``, 0.2 and 0.3). The defaults would put 11 of Llama 70B's
    80 layers on the second of 8 stages; weights of 0 give the even split of 10 (the embedding
    and head on top, as Megatron does), and for an uneven split (126 layers on 16 stages: 7, 8 x
    14, 7) the weights are the layers the end stages are short of the middle ones.
    """
    first, middle, last = (int(x) for x in pipeline_split(layers, pp))
    if vpp > 1 or layers % pp == 0:
        return {
            "pipeline_parallel_layers_per_stage": layers // (pp * vpp),
            "pipeline_parallel_first_stage_less_layers": 0,
            "pipeline_parallel_last_stage_less_layers": 0,
        }
    return {
        "pipeline_parallel_layers_per_stage": middle,
        "pipeline_parallel_first_stage_less_layers": middle - first,
        "pipeline_parallel_last_stage_less_layers": middle - last,
    }


def settings(model: ModelSpec, config: Mapping) -> dict[str, dict]:
    """Section -> key -> value of the plan (names of ``ParallelismConfig`` / ``TrainingConfig``)."""
    dp, zero = config["dp"], config["zero"]
    replicate, shard = (dp, 1) if zero == 0 else (1, dp)
    par = {
        "data_parallel_replicate_degree": replicate,
        "data_parallel_shard_degree": shard,
        "fsdp_reshard_after_forward": "never" if zero == 2 else "default",
        "tensor_parallel_degree": config["tp"],
        "pipeline_parallel_degree": config["pp"],
        "pipeline_parallel_schedule": "Interleaved1F1B" if config["vpp"] > 1 else "1F1B",
        "pipeline_parallel_microbatch_size": config["micro_batch"],
        "context_parallel_degree": config["cp"],
        "expert_parallel_degree": config["ep"],
    }
    if config["pp"] > 1:
        par.update(stage_split(model.layers, config["pp"], config["vpp"]))
    # with PP the local batch is split into pipeline micro-batches; without PP the global batch is
    # reached by gradient accumulation over local batches of one micro-batch
    training = {
        "local_batch_size": config["global_batch"] // dp if config["pp"] > 1 else config["micro_batch"],
        "global_batch_size": config["global_batch"],
        "seq_len": config["seq_len"],
        "mixed_precision_param": _MP[config["dtype"]],
        "steps": 1000,
    }
    if config["offload"] == "optimizer+params":
        training["enable_cpu_offload"] = True
    return {"parallelism": par, "training": training}


def _check(model: ModelSpec, config: Mapping, target: str | None) -> None:
    why = unsupported(config, model, target)
    if why:
        raise InputError("emit", "torchtitan", why)


def toml_doc(model: ModelSpec, config: Mapping, estimate: Mapping, target: str | None = "0.2") -> str:
    """The 0.2 job TOML text."""
    _check(model, config, target)
    module, flavor = MODELS[config.get("model") or model.name]["toml"]
    sections: dict[str, dict] = {
        "job": {
            "dump_folder": TRAIN_PLACEHOLDERS["CHECKPOINT_DIR"][0],
            "description": f"roofplan plan for {model.name}",
        },
        "model": {
            "name": module,
            "flavor": flavor,
            "hf_assets_path": TRAIN_PLACEHOLDERS["TOKENIZER_MODEL"][0],
        },
        **settings(model, config),
        "activation_checkpoint": {"mode": config["recompute"]},
        "checkpoint": {"enable": True, "folder": "checkpoint", "interval": 500},
    }
    sections["training"]["dataset_path"] = TRAIN_PLACEHOLDERS["DATA_PATH"][0]
    lines = comment_lines(
        prediction_header(config, estimate)
        + [
            "Written for torchtitan 0.2 (TOML job file). Placeholders: training.dataset_path, model.hf_assets_path",
            f"and job.dump_folder below; {SCRIPT} overrides them from DATA_PATH, TOKENIZER_MODEL, CHECKPOINT_DIR.",
            f"WORLD_SIZE = {config['gpus']} = dp_replicate x dp_shard x cp x tp x pp",
        ]
    )
    for name, kv in sections.items():
        lines += ["", f"[{name}]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in kv.items()]
    return "\n".join(lines) + "\n"


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return quote_for("toml", v)


def _py_value(v) -> str:
    return repr(v) if isinstance(v, (bool, int, float)) else quote_for("python", v)


def python_config(model: ModelSpec, config: Mapping, estimate: Mapping, target: str | None = None) -> str:
    """The 0.3 config module: the registered config of the model with the plan's settings."""
    _check(model, config, target)
    module, fn = MODELS[config.get("model") or model.name]["python"]
    ac = {"full": "FullAC.Config()", "selective": "SelectiveAC.Config()", "none": "None"}[config["recompute"]]
    out = comment_lines(
        prediction_header(config, estimate)
        + [
            f"Written for torchtitan {target or versions.default_version('torchtitan')}: "
            f"torchrun ... -m torchtitan.train --module roofplan_torchtitan --config {CONFIG_FN}",
            "Placeholders (environment): DATA_PATH, TOKENIZER_MODEL, CHECKPOINT_DIR.",
        ]
    )
    out += [
        "",
        "import os",
        "",
        "from torchtitan.distributed.activation_checkpoint import FullAC, SelectiveAC  # noqa: F401",
        f"from torchtitan.models.{module}.config_registry import {fn}",
        "",
        "",
        f"def {CONFIG_FN}():",
        f"    config = {fn}()",
        '    config.hf_assets_path = os.environ.get("TOKENIZER_MODEL", config.hf_assets_path)',
        '    config.dump_folder = os.environ.get("CHECKPOINT_DIR", config.dump_folder)',
        '    if os.environ.get("DATA_PATH"):',
        '        config.dataloader.dataset_path = os.environ["DATA_PATH"]',
    ]
    for section, kv in settings(model, config).items():
        out += [f"    config.{section}.{k} = {_py_value(v)}" for k, v in kv.items()]
    out += [f"    config.activation_checkpoint = {ac}", "    return config"]
    return "\n".join(out) + "\n"


def argv(config: Mapping, target: str | None = None) -> list[str]:
    run = ["torchrun", *_torchrun(config)]
    if _interface(target) == "toml":
        return run + ["-m", "torchtitan.train", "--job.config_file", TOML]
    return run + ["-m", "torchtitan.train", "--module", "roofplan_torchtitan", "--config", CONFIG_FN]


def _torchrun(config: Mapping) -> list[str]:
    from roofplan.launch.common import torchrun_argv

    return torchrun_argv(config["gpus"], config["gpus_per_node"])[1:]


def command(model: ModelSpec, config: Mapping, target: str | None = None) -> str:
    _check(model, config, target)
    return command_line(argv(config, target))


def emit(model: ModelSpec, config: Mapping, estimate: Mapping, target: str | None = None) -> dict[str, str]:
    """The job file of the target's interface, ``launch_torchtitan.sh`` and a README section."""
    target = target or versions.default_version("torchtitan")
    _check(model, config, target)
    toml = _interface(target) == "toml"
    job = TOML if toml else PYCONFIG
    text = (
        toml_doc(model, config, estimate, target) if toml else python_config(model, config, estimate, target)
    )
    av = argv(config, target)
    if toml:  # the TOML is not read by a shell: the placeholders are passed as overrides
        av += [
            "--training.dataset_path",
            "${DATA_PATH}",
            "--model.hf_assets_path",
            "${TOKENIZER_MODEL}",
            "--job.dump_folder",
            "${CHECKPOINT_DIR}",
        ]
        prelude = []
    else:  # the config module reads them from the environment
        prelude = [
            "export DATA_PATH TOKENIZER_MODEL CHECKPOINT_DIR",
            'export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"',
        ]
    header = prediction_header(config, estimate) + [f"Written for torchtitan {target}; job in {job}."]
    script = shell_script(
        av, header=header, split_at=av.index("-m"), placeholders=TRAIN_PLACEHOLDERS, prelude=prelude
    )
    steps = [
        f"Copy `{job}` and `{SCRIPT}` into one directory on every node (torchtitan {target} installed).",
        "Set DATA_PATH, TOKENIZER_MODEL (Hugging Face assets folder) and CHECKPOINT_DIR (top of the script).",
        f"On each node: `NODE_RANK=<0..nnodes-1> MASTER_ADDR=<node 0> bash {SCRIPT}` "
        f"(one node: `bash {SCRIPT}`).",
        "Throughput is logged as `tps:` per rank on every logged step.",
    ]
    return {
        job: text,
        SCRIPT: script,
        "README.md": train_readme("torchtitan", target, config, estimate, steps),
    }
