"""Predictor for ``train`` rows: Megatron-LM SC21 Table 1 (Narayanan et al. 2021).

The published metric is achieved TFLOP/s per GPU with FLOPs counted by the paper's formula
(§5.1, eq. 3): ``96 B s l h^2 (1 + s/(6h) + V/(16 l h))`` per iteration, which includes the
forward pass recomputed under full activation checkpointing. We divide that count by the
predicted step time and the number of GPUs. The row's tp, pp, dp, vpp, batch sizes, dtype and
recompute are used as given; the 2021 software stack had no FlashAttention (scores materialised
with fused softmax kernels), used dropout, overlapped the data-parallel all-reduce where it ran PyTorch DDP and used the
scatter/gather optimisation for pipeline p2p (modelled in :mod:`roofplan.costmodel.train`).

MoE rows need settings the shared CSV has no column for; they are written in the row's ``note``
as ``key=value`` words (see :data:`NOTE_SETTINGS`): ``ep`` and ``etp`` (expert parallel and
expert tensor parallel sizes), ``moe_dispatcher`` (alltoall | deepep), ``ep_comm_overlap`` and
``tp_comm_overlap`` (on | off), ``moe_force_balance`` (on | off), ``split_accounts_ends`` (on |
off: Megatron's account-for-embedding/loss pipeline split), ``fp8_recipe`` (current | delayed)
and ``overlap_grad_reduce`` (on | off: whether the data-parallel gradient reduction overlaps the
backward; Megatron-LM 2021's ``--DDP-impl local`` all-reduces its contiguous gradient buffer after
the last backward, ``megatron/model/distributed.py`` ``allreduce_gradients``), each copied from the
recipe the row's source names. They override the stack's defaults below.
"""

from __future__ import annotations

import re

from roofplan.validation.cases import Case, predictor

#: Software stacks named in the ``engine`` column and what they switch on. Megatron-LM 2021
#: (SC21): no FlashAttention, plain DDP with the all-reduce overlapped (PyTorch DDP; rows run with
#: Megatron's local DDP say ``overlap_grad_reduce=off``), no TP overlap. Megatron
#: Bridge / NeMo performance recipes (``scripts/performance``): FlashAttention (cuDNN/TE), the
#: distributed optimizer (ZeRO-1) with overlapped grad reduce and param gather, and TP
#: communication overlap (TE userbuffers) when tp > 1.
#: MoE switches: the Megatron-Bridge performance tables state "In MoE training benchmarks, we
#: force-balance the token distribution among experts" (``moe_router_force_load_balancing``),
#: and its H100 MoE recipes turn on the 1F1B A2A overlap (``moe_a2a_overlap``). The
#: Megatron-MoE-ModelZoo benchmark configs (``model_configs/benchmarking/*.yaml``) use the
#: distributed optimizer, aux-loss routing (not forced) and no EP overlap unless asked.
STACKS: dict[str, dict] = {
    "megatron-lm-2021": {
        "flash_attention": False,
        "zero": 0,
        "tp_comm_overlap": False,
        "ep_comm_overlap": False,
        "overlap_p2p_comm": False,
    },
    "megatron-bridge": {
        "flash_attention": True,
        "zero": 1,
        "tp_comm_overlap": True,
        "ep_comm_overlap": True,
        "moe_force_balance": True,
        "grad_reduce_in_fp32": False,
        "cross_entropy": "te",
    },
    "megatron-moe-modelzoo": {
        "flash_attention": True,
        "zero": 1,
        "tp_comm_overlap": False,
        "ep_comm_overlap": False,
    },
    # NeMo Launcher 24.x (NVIDIA dgxc-benchmarking llama3.1 recipes): Megatron-core with cuDNN fused
    # attention (``NVTE_FUSED_ATTN=1``), the distributed optimizer and userbuffers TP overlap
    # (``model.ub_tp_comm_overlap_cfg`` overrides in ``llama3.1/configure.sh``).
    # Megatron-DeepSpeed (2021-22, MT-NLG 530B; Smith et al. 2022 arXiv 2201.11990 §2): Megatron's
    # tensor-parallel layers and fused kernels (no FlashAttention), DeepSpeed's PipelineEngine and
    # ZeRO-1, no TP overlap.
    "megatron-deepspeed": {
        "flash_attention": False,
        "zero": 1,
        "tp_comm_overlap": False,
        "ep_comm_overlap": False,
        "overlap_p2p_comm": False,
        "pipeline_engine": "deepspeed",
    },
    "nemo-launcher": {
        "flash_attention": True,
        "zero": 1,
        "tp_comm_overlap": True,
        "ep_comm_overlap": False,
        "fp8_recipe": "delayed",
    },
}
_DEFAULT_STACK = {"flash_attention": True, "zero": 0, "tp_comm_overlap": False}

#: ``key=value`` settings a row's note may carry, and how each value is read.
NOTE_SETTINGS = {
    "ep": int,
    "etp": int,
    "moe_dispatcher": str,
    "ep_comm_overlap": bool,
    "tp_comm_overlap": bool,
    "moe_force_balance": bool,
    "zero": int,
    "split_accounts_ends": bool,
    "fp8_recipe": str,
    "overlap_grad_reduce": bool,
}


def note_settings(case: Case) -> dict:
    """The ``key=value`` settings of the row's note (keys of :data:`NOTE_SETTINGS` only)."""
    out = {}
    for key, raw in re.findall(r"\b([a-z_]+)=([\w.+-]+)", case.str("note")):
        kind = NOTE_SETTINGS.get(key)
        if kind is bool:
            out[key] = raw.lower() in ("on", "yes", "true", "1")
        elif kind is not None:
            out[key] = kind(raw)
    return out


def stack_profile(engine: str) -> dict:
    """Switches of the stack named ``engine`` (prefix match, so ``megatron-bridge-25.11`` works)."""
    for name, prof in STACKS.items():
        if engine.startswith(name):
            return prof
    return _DEFAULT_STACK


def paper_flops_per_iteration(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """Narayanan et al. SC21 eq. 3: FLOPs of one iteration with full recomputation."""
    return (
        96.0
        * batch
        * seq
        * layers
        * hidden**2
        * (1.0 + seq / (6.0 * hidden) + vocab / (16.0 * layers * hidden))
    )


def estimate_case(case: Case, calibration=None):
    """The :class:`~roofplan.costmodel.train.TrainEstimate` of a ``train`` row."""
    from roofplan import resolve
    from roofplan.costmodel.train import estimate_training

    prof = {**stack_profile(case.str("engine")), **note_settings(case)}
    sp = case.str("sequence_parallel", "")
    tp, pp, dp = case.int("tp", 1), case.int("pp", 1), case.int("dp", 1)
    # The CSV has no cp column: context parallelism is what is left of the GPU count.
    gpus = case.int("gpus", tp * pp * dp)
    cp = max(gpus // (tp * pp * dp), 1)
    hw = resolve.hardware(case.str("hardware"), calibration)
    if prof.get("moe_force_balance"):
        # forced balance: every expert-parallel rank gets the mean load by construction
        hw, calibration = hw.with_efficiency(moe_balance=1.0), None
    return estimate_training(
        resolve.model(case.str("model")),
        hw,
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=prof.get("ep", 1),
        etp=prof.get("etp"),
        vpp=case.int("vpp", 1),
        global_batch=case.int("global_batch"),
        micro_batch=case.int("micro_batch"),
        seq_len=case.int("seq_len"),
        dtype=case.str("dtype", "bf16"),
        recompute=case.str("recompute", "none"),
        sequence_parallel=None if sp == "" else sp.lower() in ("yes", "true", "1"),
        flash_attention=prof["flash_attention"],
        zero=prof["zero"],
        tp_comm_overlap=prof["tp_comm_overlap"] and tp > 1,
        ep_comm_overlap=prof.get("ep_comm_overlap", True),
        moe_dispatcher=prof.get("moe_dispatcher", "alltoall"),
        fp8_recipe=prof.get("fp8_recipe", "current"),
        overlap_p2p_comm=prof.get("overlap_p2p_comm", True),
        grad_reduce_in_fp32=prof.get("grad_reduce_in_fp32", True),
        overlap_grad_reduce=prof.get("overlap_grad_reduce", True),
        split_accounts_ends=prof.get("split_accounts_ends", False),
        pipeline_engine=prof.get("pipeline_engine", "megatron"),
        cross_entropy=prof.get("cross_entropy", "unfused"),
        calibration_label=calibration,
    )


@predictor("train")
def predict_train(case: Case, calibration=None) -> float:
    """Predicted value of the row's metric (``tflops_per_gpu_incl_recompute`` or ``mfu``...)."""
    est = estimate_case(case, calibration)
    metric = case.metric
    if metric == "tflops_per_gpu_incl_recompute":
        m = est.model
        flops = paper_flops_per_iteration(
            case.int("global_batch"), case.int("seq_len"), m.layers, m.hidden, m.vocab
        )
        return flops / est.step_time_s / est.inputs["world_size"] / 1e12
    if metric == "model_tflops_per_gpu":
        return est.value("model_flops_per_gpu") / 1e12
    if metric == "mfu":
        return est.value("mfu")
    if metric == "tokens_per_s":
        return est.value("tokens_per_s")
    if metric == "tokens_per_s_per_gpu":
        return est.value("tokens_per_s") / est.inputs["world_size"]
    if metric == "step_time_s":
        return est.step_time_s
    raise ValueError(f"case {case.id}: unsupported train metric {metric!r}")
