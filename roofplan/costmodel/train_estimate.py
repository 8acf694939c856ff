"""One training configuration, validated, and its docs/SPEC.md §3.1 document (``roofplan estimate train``).

:func:`estimate_training` takes specs (ids and paths are resolved at the door,
:mod:`roofplan.resolve`), turns every bad input into an :class:`InputError`
that names the field (exit 2), runs the vectorised :func:`~roofplan.costmodel.train_time.train_step`
on a single lane and wraps the result in a :class:`TrainEstimate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.train_configs import (
    CROSS_ENTROPY_IMPLS,
    FP8_RECIPES,
    MOE_DISPATCHERS,
    OFFLOAD,
    OFFLOAD_NAMES,
    PIPELINE_ENGINES,
    RECOMPUTE,
    RECOMPUTE_NAMES,
    REJECT_REASONS,
    TRAIN_DTYPES,
    TrainConfigs,
    check_train_config,
)
from roofplan.costmodel.train_memory import GiB
from roofplan.costmodel.train_time import TrainArrays, train_step
from roofplan.errors import InputError, positive_int
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec

_BREAKDOWN = (
    ("compute", "t_compute"),
    ("tp_comm_exposed", "t_tp_comm"),
    ("cp_comm_exposed", "t_cp_comm"),
    ("ep_comm_exposed", "t_ep_comm"),
    ("pp_bubble", "t_pp_bubble"),
    ("pp_comm_exposed", "t_pp_comm"),
    ("dp_comm_exposed", "t_dp_comm"),
    ("optimizer", "t_optimizer"),
    ("offload_exposed", "t_offload"),
)
_MEMORY = (
    ("weights", "mem_weights"),
    ("gradients", "mem_gradients"),
    ("optimizer", "mem_optimizer"),
    ("activations", "mem_activations"),
    ("other", "mem_other"),
    ("total", "mem_total"),
    ("capacity", "capacity"),
)


#: TrainArrays attributes an estimate document reads (the planner keeps these per candidate).
ESTIMATE_METRICS = (
    "step_time_s",
    "tokens_per_s",
    "model_flops_per_gpu",
    "hardware_flops_per_gpu",
    "mfu",
    *(attr for _, attr in _MEMORY),
    *(attr for _, attr in _BREAKDOWN),
)


def estimate_fields(value) -> dict:
    """The docs/SPEC.md §3.1 numbers of one configuration, from ``value(attr)``: the float of a
    :class:`~roofplan.costmodel.train_time.TrainArrays` attribute at its lane. One document for
    ``estimate train`` and for every candidate of ``plan train``."""
    return {
        "step_time_s": value("step_time_s"),
        "tokens_per_s": value("tokens_per_s"),
        "model_tflops_per_gpu": value("model_flops_per_gpu") / 1e12,
        "hardware_tflops_per_gpu": value("hardware_flops_per_gpu") / 1e12,
        "mfu": value("mfu"),
        "memory_gib_per_gpu": {key: value(attr) / GiB for key, attr in _MEMORY},
        "free_memory_gib": (value("capacity") - value("mem_total")) / GiB,
        "breakdown_s": {key: value(attr) for key, attr in _BREAKDOWN},
    }


@dataclass
class TrainEstimate:
    """The estimate of one training configuration; ``to_json()`` is the docs/SPEC.md §3.1 document."""

    model: ModelSpec
    hardware: DeviceSpec
    config: TrainConfigs
    arrays: TrainArrays
    inputs: dict

    def value(self, name: str) -> float:
        return float(getattr(self.arrays, name)[0])

    @property
    def step_time_s(self) -> float:
        return self.value("step_time_s")

    @property
    def fits(self) -> bool:
        return bool(self.arrays.fits[0])

    def breakdown_s(self) -> dict[str, float]:
        return {key: self.value(attr) for key, attr in _BREAKDOWN}

    def memory_gib(self) -> dict[str, float]:
        return {key: self.value(attr) / GiB for key, attr in _MEMORY}

    def to_json(self) -> dict:
        return {
            "schema": "roofplan.estimate.train/v1",
            "inputs": dict(self.inputs),
            **estimate_fields(self.value),
            "fits": self.fits,
        }


def _spec(name: str, value, kind: type):
    """``value`` if it is already a spec: ids and paths are resolved at the door
    (:mod:`roofplan.resolve`, which the public API and the CLI call), never in the cost model."""
    if not isinstance(value, kind):
        raise InputError(
            name,
            repr(value)[:80],
            f"a {kind.__name__} (resolve ids and paths with roofplan.resolve."
            f"{name}, or call roofplan.estimate_training)",
        )
    return value


def _choice(name: str, value, names: dict[str, int]) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value in names.values():
        return int(value)
    raise InputError(name, value, f"expected one of {', '.join(names)}")


def _explain(model: ModelSpec, cfg: TrainConfigs, code: int) -> InputError:
    """The user-facing message for a reject reason of a single configuration."""
    c = cfg.row(0)
    tp, pp, dp, cp, ep, vpp = c["tp"], c["pp"], c["dp"], c["cp"], c["ep"], c["vpp"]
    if code == 2:
        if model.heads % tp or model.kv_heads % tp:
            return InputError(
                "tp",
                tp,
                f"must divide the attention heads ({model.heads}) and KV heads "
                f"({model.kv_heads}) of {model.name}",
            )
        if model.ffn % tp:
            return InputError("tp", tp, f"must divide the MLP size {model.ffn} of {model.name}")
        etp = c["etp"] or tp
        if model.moe and model.moe.expert_ffn % etp:
            name = "etp" if c["etp"] else "tp"
            return InputError(
                name, etp, f"must divide the expert MLP size {model.moe.expert_ffn} of {model.name}"
            )
        return InputError(
            "global_batch",
            c["global_batch"],
            f"must be a multiple of micro_batch x dp = {c['micro_batch']} x {dp} = {c['micro_batch'] * dp}",
        )
    if code == 3:
        if pp > model.layers:
            return InputError("pp", pp, f"must not exceed the {model.layers} layers of {model.name}")
        if vpp > 1 and pp < 2:
            return InputError("vpp", vpp, "interleaved pipelining (vpp > 1) needs pp >= 2")
        if vpp > 1 and pp * vpp > model.layers:
            return InputError("vpp", vpp, f"pp x vpp = {pp * vpp} must not exceed the {model.layers} layers")
        micro = c["global_batch"] // (c["micro_batch"] * dp)
        return InputError(
            "global_batch",
            c["global_batch"],
            f"the interleaved schedule needs the number of microbatches ({micro}) to be a "
            f"multiple of pp ({pp})",
        )
    if code == 4:
        return InputError("seq_len", c["seq_len"], f"must be divisible by 2 x cp = {2 * cp}")
    if code == 5:
        if model.moe is None:
            return InputError("ep", ep, f"{model.name} has no experts; expected ep = 1")
        etp = c["etp"] or tp
        if model.moe.num_experts % ep:
            return InputError("ep", ep, f"must divide the {model.moe.num_experts} experts of {model.name}")
        return InputError(
            "ep",
            ep,
            f"ep x etp = {ep} x {etp} must divide tp x dp x cp = {tp * dp * cp} "
            "(with etp = tp: ep must divide dp x cp)",
        )
    if code == 6:
        return InputError(
            "zero",
            c["zero"],
            "ZeRO-3 with pipeline parallelism (pp > 1) is FSDP2 under a pipeline schedule (torchtitan): "
            "not with DeepSpeed's pipeline engine nor with CPU offload; use zero 0, 1 or 2, or offload none",
        )
    if code == 7:
        return InputError(
            "recompute_layers",
            c["recompute_layers"],
            f"must not exceed the layers per pipeline stage ({-(-model.layers // pp)})",
        )
    if code == 9:
        return InputError(
            "act_offload_layers",
            c["act_offload_layers"],
            f"activation offload needs pp = 1 and no recompute, and fewer than the {model.layers} "
            "layers (Megatron-Core)",
        )
    if code == 8:
        need = 3 if c["offload"] >= 2 else 1
        return InputError(
            "zero",
            c["zero"],
            f"offload {'optimizer+params' if need == 3 else 'optimizer'} "
            f"needs ZeRO stage >= {need} (a sharded optimizer)",
        )
    return InputError("config", c, REJECT_REASONS.get(code, "invalid"))


def _count(name: str, value) -> int:
    """A whole number >= 0 (not a bool), else InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(name, value, "expected an integer >= 0")
    return int(value)


def estimate_training(
    model,
    hw,
    *,
    tp=1,
    pp=1,
    dp=1,
    cp=1,
    ep=1,
    vpp=1,
    global_batch,
    micro_batch,
    seq_len,
    dtype="bf16",
    recompute="none",
    sequence_parallel=None,
    zero=0,
    offload="none",
    gpus_per_node=None,
    calibration_label=None,
    flash_attention=True,
    recompute_layers=0,
    overlap_grad_reduce=True,
    overlap_param_gather=True,
    tp_comm_overlap=False,
    dropout=None,
    ep_comm_overlap=True,
    moe_dispatcher="alltoall",
    etp=None,
    fp8_recipe="current",
    overlap_p2p_comm=True,
    grad_reduce_in_fp32=True,
    split_accounts_ends=False,
    pipeline_engine="megatron",
    cross_entropy="unfused",
    act_offload_layers=0,
) -> TrainEstimate:
    """Estimate one training configuration (docs/SPEC.md §3.1) of ``model`` (a ModelSpec) on ``hw`` (a
    DeviceSpec, with any calibration overlay already applied; ``calibration_label`` is what the
    overlay was given as, echoed in ``inputs.calibration``). :func:`roofplan.estimate_training`
    takes ids and paths and resolves them first.

    Raises :class:`InputError` naming the field for non-positive numbers, unknown names and the
    framework's divisibility rules (see :func:`check_train_config`).
    """
    ints = {
        k: positive_int(k, val)
        for k, val in {
            "tp": tp,
            "pp": pp,
            "dp": dp,
            "cp": cp,
            "ep": ep,
            "vpp": vpp,
            "global_batch": global_batch,
            "micro_batch": micro_batch,
            "seq_len": seq_len,
        }.items()
    }
    rc = _choice("recompute", recompute, RECOMPUTE)
    off = _choice("offload", offload, OFFLOAD)
    zero_i = _choice("zero", zero, {"0": 0, "1": 1, "2": 2, "3": 3})
    recompute_layers = _count("recompute_layers", recompute_layers)
    if dtype not in TRAIN_DTYPES:
        raise InputError("dtype", dtype, f"expected one of {', '.join(TRAIN_DTYPES)}")
    etp_i = 0 if etp is None else positive_int("etp", etp)
    if moe_dispatcher not in MOE_DISPATCHERS:
        raise InputError("moe_dispatcher", moe_dispatcher, f"expected one of {', '.join(MOE_DISPATCHERS)}")
    if fp8_recipe not in FP8_RECIPES:
        raise InputError("fp8_recipe", fp8_recipe, f"expected one of {', '.join(FP8_RECIPES)}")
    if pipeline_engine not in PIPELINE_ENGINES:
        raise InputError("pipeline_engine", pipeline_engine, f"expected one of {', '.join(PIPELINE_ENGINES)}")
    if cross_entropy not in CROSS_ENTROPY_IMPLS:
        raise InputError("cross_entropy", cross_entropy, f"expected one of {', '.join(CROSS_ENTROPY_IMPLS)}")
    if gpus_per_node is not None:
        gpus_per_node = positive_int("gpus_per_node", gpus_per_node)
    m = _spec("model", model, ModelSpec)
    h = _spec("hardware", hw, DeviceSpec)
    h.peak(dtype)  # unsupported dtype on this device -> InputError
    sp = ints["tp"] > 1 if sequence_parallel is None else bool(sequence_parallel) and ints["tp"] > 1
    cfg = TrainConfigs.single(
        **ints,
        recompute=rc,
        recompute_layers=int(recompute_layers),
        sequence_parallel=sp,
        zero=zero_i,
        offload=off,
        dtype=dtype,
        gpus_per_node=gpus_per_node,
        overlap_grad_reduce=overlap_grad_reduce,
        overlap_param_gather=overlap_param_gather,
        tp_comm_overlap=tp_comm_overlap,
        flash_attention=flash_attention,
        dropout=dropout,
        ep_comm_overlap=bool(ep_comm_overlap),
        moe_dispatcher=moe_dispatcher,
        etp=etp_i,
        fp8_recipe=fp8_recipe,
        overlap_p2p_comm=bool(overlap_p2p_comm),
        grad_reduce_in_fp32=bool(grad_reduce_in_fp32),
        split_accounts_ends=bool(split_accounts_ends),
        pipeline_engine=pipeline_engine,
        cross_entropy=cross_entropy,
        act_offload_layers=_count("act_offload_layers", act_offload_layers),
    )
    code = int(check_train_config(m, cfg)[0])
    if code:
        raise _explain(m, cfg, code)
    arrays = train_step(m, h, cfg)
    inputs = {
        "model": m.name,
        "hardware": h.id,
        **ints,
        "world_size": ints["tp"] * ints["pp"] * ints["dp"] * ints["cp"],
        "microbatches": ints["global_batch"] // (ints["micro_batch"] * ints["dp"]),
        "dtype": dtype,
        "recompute": RECOMPUTE_NAMES[rc],
        "recompute_layers": int(recompute_layers),
        "sequence_parallel": sp,
        "zero": zero_i,
        "offload": OFFLOAD_NAMES[off],
        "gpus_per_node": gpus_per_node or h.devices_per_node,
        "flash_attention": bool(flash_attention),
        "overlap_grad_reduce": bool(overlap_grad_reduce),
        "overlap_param_gather": bool(overlap_param_gather),
        "tp_comm_overlap": bool(tp_comm_overlap),
        "overlap_p2p_comm": bool(overlap_p2p_comm),
        "ep_comm_overlap": bool(ep_comm_overlap),
        "moe_dispatcher": moe_dispatcher,
        "etp": etp_i or ints["tp"],
        "fp8_recipe": fp8_recipe,
        "act_offload_layers": int(cfg.act_offload_layers[0]),
        "calibration": None
        if calibration_label is None
        else ("overlay" if isinstance(calibration_label, dict) else str(calibration_label)),
    }
    return TrainEstimate(model=m, hardware=h, config=cfg, arrays=arrays, inputs=inputs)
