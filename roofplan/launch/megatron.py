"""Megatron-LM launch: a ``torchrun ... pretrain_gpt.py`` command with every chosen degree.

Flag spellings follow ``megatron/training/arguments.py`` (core_v0.4 .. 0.20; see the project's
launch-configs reference §1): parallel sizes, interleaving via ``--num-layers-per-virtual-pipeline-
stage`` (there is no ``--virtual-pipeline-model-parallel-size`` flag), batch, recompute (block
method for a partial layer count), precision, overlap, optimizer offload, and the model shape.
ZeRO-2/3 map to Megatron-FSDP (``--use-megatron-fsdp --data-parallel-sharding-strategy
optim_grads|optim_grads_params``, Megatron-FSDP README); ZeRO-1 is the distributed optimizer.

What ``validate_args`` demands beyond the parser (checked against the real function, see
``tools/extract_inventories.py``): ``--save`` needs ``--save-interval``; Megatron-FSDP refuses
``CUDA_DEVICE_MAX_CONNECTIONS=1`` (only the other layouts export it, for TP/SP overlap ordering).
The model's RoPE base and its MoE router (score function, expert bias, scaling, group-limited
routing) and multi-token prediction are written out, since Megatron's defaults (base 10000, softmax
top-k, no MTP) would build a different model.
"""

from __future__ import annotations

from collections.abc import Mapping

from roofplan.costmodel.train_memory import pipeline_split
from roofplan.errors import InputError
from roofplan.launch import versions
from roofplan.launch.common import (
    MEGATRON_CHECKPOINT_ARGS,
    MEGATRON_DATA_ARGS,
    MEGATRON_LR_ARGS,
    TRAIN_PLACEHOLDERS,
    command_line,
    megatron_full_recompute_args,
    megatron_length_args,
    megatron_width_args,
    prediction_header,
    shell_script,
    torchrun_argv,
    train_readme,
    unexpressed_shape,
)
from roofplan.models.spec import ModelSpec
from roofplan.solver.frameworks import violation

SCRIPT = "launch_megatron.sh"


def unsupported(config: Mapping, model: ModelSpec | None = None, target: str | None = None) -> str | None:
    """Why Megatron-LM (version ``target``, default the newest) cannot run ``config`` (None when it can)."""
    if model is not None and (why := unexpressed_shape(model, "Megatron-LM")):
        return why
    if config["zero"] >= 2 and not versions.feature("megatron", target, "megatron_fsdp"):
        return f"Megatron {target} has no Megatron-FSDP (--use-megatron-fsdp) for ZeRO-{config['zero']}"
    if (
        model is not None
        and model.mtp_layers
        and config["cp"] > 1
        and not versions.feature("megatron", target, "mtp_with_cp")
    ):
        return f"Megatron {target} has no multi-token prediction with context parallelism (CP {config['cp']})"
    if config.get("act_offload_layers", 0) and not versions.feature("megatron", target, "act_offload"):
        return f"Megatron {target} has no activation offload (--cpu-offloading-num-layers)"
    return violation("megatron", config)  # the configuration rules (solver/frameworks.py)


def model_args(model: ModelSpec, seq_len: int, dispatcher: str = "alltoall") -> list[str]:
    """Model-shape flags for a GPT-style decoder (launch-configs §1.2 'Model shape')."""
    a = megatron_width_args(model)
    if model.mla is None:
        a += ["--kv-channels", str(model.head_dim)]
        if model.kv_heads != model.heads:
            a += ["--group-query-attention", "--num-query-groups", str(model.kv_heads)]
    else:
        m = model.mla
        a += [
            "--multi-latent-attention",
            "--kv-lora-rank",
            str(m.kv_lora_rank),
            "--qk-head-dim",
            str(m.qk_nope_head_dim),
            "--qk-pos-emb-head-dim",
            str(m.qk_rope_head_dim),
            "--v-head-dim",
            str(m.v_head_dim),
        ]
        if m.q_lora_rank:
            a += ["--q-lora-rank", str(m.q_lora_rank)]
    if model.gated_mlp:
        a += ["--swiglu"]
    if model.linear_bias:
        a += ["--normalization", "LayerNorm"]
    else:
        a += ["--normalization", "RMSNorm", "--disable-bias-linear"]
    if model.qkv_bias:
        a += ["--add-qkv-bias"]
    if model.qk_norm:
        a += ["--qk-layernorm"]
    if model.learned_positions:
        a += ["--position-embedding-type", "learned_absolute"]
    else:
        a += ["--position-embedding-type", "rope"]
        a += ["--rotary-base", _int_or_float(model.rope_theta)]
    if not model.tied_embeddings:
        a += ["--untie-embeddings-and-output-weights"]
    a += megatron_length_args(model, seq_len)
    if model.moe is not None:
        a += moe_args(model, dispatcher)
    if model.mtp_layers:
        a += ["--mtp-num-layers", str(model.mtp_layers)]
    return a


def _int_or_float(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def moe_args(model: ModelSpec, dispatcher: str = "alltoall") -> list[str]:
    """Experts, their width, the token dispatcher and the router (Megatron MoE README; DeepSeek-V3
    recipe in ``examples/``: sigmoid scores with an expert bias instead of a large auxiliary loss;
    DeepEP through the flex dispatcher, ``--moe-enable-deepep`` from core_v0.13)."""
    moe = model.moe
    a = [
        "--num-experts",
        str(moe.num_experts),
        "--moe-router-topk",
        str(moe.top_k),
        "--moe-ffn-hidden-size",
        str(moe.expert_ffn),
        "--moe-grouped-gemm",
    ]
    a += (
        ["--moe-token-dispatcher-type", "flex", "--moe-enable-deepep"]
        if dispatcher == "deepep"
        else ["--moe-token-dispatcher-type", "alltoall"]
    )
    if moe.expert_bias:
        a += [
            "--moe-router-score-function",
            moe.score_function,
            "--moe-router-enable-expert-bias",
            "--moe-router-bias-update-rate",
            "1e-3",
            "--moe-router-load-balancing-type",
            "seq_aux_loss",
            "--moe-aux-loss-coeff",
            "1e-4",
            "--moe-router-dtype",
            "fp32",
        ]
    else:
        a += [
            "--moe-router-score-function",
            moe.score_function,
            "--moe-router-load-balancing-type",
            "aux_loss",
            "--moe-aux-loss-coeff",
            "1e-2",
        ]
    if moe.routed_scaling != 1.0:
        a += ["--moe-router-topk-scaling-factor", _int_or_float(moe.routed_scaling)]
    if moe.groups > 1 and moe.group_top_k:
        a += ["--moe-router-num-groups", str(moe.groups), "--moe-router-group-topk", str(moe.group_top_k)]
    if moe.shared_experts:
        a += ["--moe-shared-expert-intermediate-size", str(moe.shared_experts * moe.shared_ffn_size)]
    if moe.first_dense_layers:
        a += ["--moe-layer-freq", f"[0]*{moe.first_dense_layers}+[1]*{model.moe_layers}"]
    return a


def parallel_args(model: ModelSpec, c: Mapping, target: str | None = None) -> list[str]:
    """Parallelism, batch, recompute, precision, overlap and offload flags of one configuration."""
    a = [
        "--tensor-model-parallel-size",
        str(c["tp"]),
        "--pipeline-model-parallel-size",
        str(c["pp"]),
        "--context-parallel-size",
        str(c["cp"]),
    ]
    a += _stage_args(model, c)
    if model.moe is not None:
        a += _expert_args(c, target)
    if c["sequence_parallel"] and c["tp"] > 1:
        a += ["--sequence-parallel"]
        if c.get("tp_comm_overlap"):
            a += ["--tp-comm-overlap"]
    a += _data_parallel_args(c)
    a += ["--micro-batch-size", str(c["micro_batch"]), "--global-batch-size", str(c["global_batch"])]
    a += _recompute_args(model, c)
    a += _precision_args(c)
    return a


def _stage_args(model: ModelSpec, c: Mapping) -> list[str]:
    """Layers per pipeline stage: per virtual stage when interleaved, else the first and last
    stage's share when the layers do not split evenly (:func:`pipeline_split`)."""
    a: list[str] = []
    if c["vpp"] > 1:
        a += ["--num-layers-per-virtual-pipeline-stage", str(model.layers // (c["pp"] * c["vpp"]))]
    elif model.layers % c["pp"]:
        first, _, last = (int(x) for x in pipeline_split(model.layers, c["pp"]))
        a += [
            "--decoder-first-pipeline-num-layers",
            str(first),
            "--decoder-last-pipeline-num-layers",
            str(last),
        ]
    return a


def _expert_args(c: Mapping, target: str | None) -> list[str]:
    """Expert parallelism of an MoE model, and the 1F1B all-to-all overlap where Megatron-Core runs
    it."""
    a: list[str] = []
    a += ["--expert-model-parallel-size", str(c["ep"])]
    if c.get("etp"):
        a += ["--expert-tensor-parallel-size", str(c["etp"])]
    # The 1F1B A2A overlap the cost model assumes (TrainConfigs.ep_comm_overlap): Megatron-Core
    # runs it without a pipeline or interleaved, not under full recomputation.
    if (
        c.get("ep_comm_overlap", True)
        and c["ep"] > 1
        and (c["pp"] == 1 or c["vpp"] > 1)
        and c["recompute"] != "full"
        and versions.feature("megatron", target, "ep_a2a_overlap")
    ):
        a += ["--overlap-moe-expert-parallel-comm", "--delay-wgrad-compute"]
    return a


def _data_parallel_args(c: Mapping) -> list[str]:
    """ZeRO (distributed optimizer, Megatron-FSDP from stage 2), the gradient / parameter overlap
    and the optimizer and activation offload."""
    a: list[str] = []
    zero = c["zero"]
    if zero >= 1:
        a += ["--use-distributed-optimizer"]
    if zero >= 2:
        a += [
            "--use-megatron-fsdp",
            "--data-parallel-sharding-strategy",
            "optim_grads_params" if zero >= 3 else "optim_grads",
            "--no-gradient-accumulation-fusion",
            "--ckpt-format",
            "fsdp_dtensor",
        ]
    a += ["--overlap-grad-reduce"]
    if zero >= 1:
        a += ["--overlap-param-gather"]
    if c["offload"] == "optimizer":
        a += [
            "--optimizer-cpu-offload",
            "--use-precision-aware-optimizer",
            "--optimizer-offload-fraction",
            "1.0",
        ]
    if c.get("act_offload_layers", 0):
        # validate_args turns cpu_offloading on when the layer count is > 0 (arguments.py)
        a += ["--cpu-offloading-num-layers", str(c["act_offload_layers"])]
    return a


def _recompute_args(model: ModelSpec, c: Mapping) -> list[str]:
    """Activation recompute: selective (with MLA's up-projections) or full."""
    a: list[str] = []
    rc = c["recompute"]
    if rc == "selective":
        a += ["--recompute-granularity", "selective"]
        if model.mla is not None and model.mla.q_lora_rank:
            # the cost model's selective recompute of MLA includes the Q/KV up-projections
            a += ["--recompute-modules", "core_attn", "mla_up_proj"]
    elif rc == "full":
        stage_layers = -(-model.layers // c["pp"])  # the largest (middle) stage
        n = c.get("recompute_layers") or 0
        a += megatron_full_recompute_args(n if n < stage_layers else 0)
    return a


def _precision_args(c: Mapping) -> list[str]:
    """Training precision: bf16, fp16, or fp8 with its scaling recipe."""
    a: list[str] = []
    dtype = c["dtype"]
    if dtype == "fp16":
        a += ["--fp16"]
    elif dtype == "fp8":
        a += ["--bf16", "--fp8-format", "hybrid"]
        if c.get("fp8_recipe", "current") == "delayed":  # TE DelayedScaling from the amax history
            a += [
                "--fp8-recipe",
                "delayed",
                "--fp8-amax-history-len",
                "1024",
                "--fp8-amax-compute-algo",
                "max",
            ]
        else:  # per-tensor current scaling, the cost model's default (Megatron-Bridge FP8-CS)
            a += ["--fp8-recipe", "tensorwise"]
    else:
        a += ["--bf16"]
    return a


def argv(model: ModelSpec, config: Mapping, target: str | None = None) -> list[str]:
    """The full argument vector: torchrun, pretrain_gpt.py and its flags."""
    why = unsupported(config, model, target)
    if why:
        raise InputError("emit", "megatron", why)
    run = torchrun_argv(config["gpus"], config["gpus_per_node"])
    return (
        run
        + ["pretrain_gpt.py"]
        + parallel_args(model, config, target)
        + model_args(model, config["seq_len"], config.get("moe_dispatcher", "alltoall"))
        + [
            "--tokenizer-type",
            "HuggingFaceTokenizer",
            "--tokenizer-model",
            "${TOKENIZER_MODEL}",
        ]
        + MEGATRON_DATA_ARGS
        + MEGATRON_LR_ARGS
        + ["--adam-beta1", "0.9", "--adam-beta2", "0.95", "--train-iters", "1000"]
        + MEGATRON_CHECKPOINT_ARGS
    )


def command(model: ModelSpec, config: Mapping, target: str | None = None) -> str:
    """One-line command (the plan JSON's ``launch.megatron``)."""
    return command_line(argv(model, config, target))


def env(config: Mapping) -> dict[str, int]:
    """Environment of the job: one CUDA connection orders TP/SP communication before compute;
    Megatron-FSDP (ZeRO-2/3) asserts that it is *not* set to 1."""
    return {} if config["zero"] >= 2 else {"CUDA_DEVICE_MAX_CONNECTIONS": 1}


def emit(model: ModelSpec, config: Mapping, estimate: Mapping, target: str | None = None) -> dict[str, str]:
    """Files of a Megatron-LM launch: ``launch_megatron.sh`` (run it on every node with NODE_RANK set)."""
    target = target or versions.default_version("megatron")
    av = argv(model, config, target)
    header = prediction_header(config, estimate) + [
        f"Written for Megatron-LM {target} (megatron/training/arguments.py of that release).",
        "Run on every node with NODE_RANK=0..nnodes-1 and MASTER_ADDR set.",
        "DP = world / (TP x PP x CP) is implied by the world size.",
    ]
    if model.mtp_layers:
        header.append(
            f"Trains {model.mtp_layers} multi-token-prediction layer(s) as the model defines; "
            "the prediction above does not count them."
        )
    split = av.index("pretrain_gpt.py")
    script = shell_script(av, header=header, env=env(config), split_at=split, placeholders=TRAIN_PLACEHOLDERS)
    return {
        SCRIPT: script,
        "README.md": train_readme(
            "Megatron-LM",
            target,
            config,
            estimate,
            [
                f"Copy `{SCRIPT}` next to Megatron-LM's `pretrain_gpt.py` on every node.",
                "Set DATA_PATH, TOKENIZER_MODEL and CHECKPOINT_DIR (top of the script).",
                "On each node: `NODE_RANK=<0..nnodes-1> MASTER_ADDR=<node 0> bash "
                + SCRIPT
                + "`"
                + " (one node: just `bash "
                + SCRIPT
                + "`).",
                "Step time is logged as `elapsed time per iteration (ms)` every 10 iterations.",
            ],
        ),
    }
