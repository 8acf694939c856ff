"""``roofplan estimate train``: evaluate one training configuration (docs/SPEC.md §3.1).

Thin: parses the flags, calls :func:`roofplan.costmodel.train.estimate_training`, and renders
its document either as JSON or as two rich tables (time breakdown, memory against capacity).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from roofplan.cli.common import (
    checked,
    console,
    output,
    run,
    styled,
    warn,
)
from roofplan.cli.options import (
    PP,
    TP,
    Calibration,
    Fp8Recipe,
    Fp8RecipeOpt,
    GlobalBatch,
    Hardware,
    Json,
    Model,
    MoeDispatcher,
    MoeDispatcherOpt,
    Offload,
    OffloadOpt,
    PipelineEngine,
    PipelineEngineOpt,
    Recompute,
    RecomputeOpt,
    SeqLen,
    TrainDtype,
    count,
    flag,
    value,
)
from roofplan.cli.render import heading, memory_table, share, summary_table
from roofplan.errors import InputError

_TIME_LABELS = {
    "compute": "compute (fwd + bwd + recompute)",
    "tp_comm_exposed": "TP communication (exposed)",
    "cp_comm_exposed": "CP communication (exposed)",
    "ep_comm_exposed": "EP all-to-all (exposed)",
    "pp_bubble": "pipeline bubble",
    "pp_comm_exposed": "PP p2p (exposed)",
    "dp_comm_exposed": "DP / ZeRO communication (exposed)",
    "optimizer": "optimizer step",
    "offload_exposed": "offload transfers + host optimizer",
}


def _render(doc: dict) -> None:
    i = doc["inputs"]
    par = f"tp={i['tp']} pp={i['pp']} dp={i['dp']} cp={i['cp']} ep={i['ep']} vpp={i['vpp']}"
    heading(i, f" x {i['world_size']}  ({par})")
    console.print(
        f"global batch {i['global_batch']} x {i['seq_len']} tokens, micro batch {i['micro_batch']} "
        f"({i['microbatches']} microbatches), {i['dtype']}, recompute {i['recompute']}, "
        f"SP {'on' if i['sequence_parallel'] else 'off'}, ZeRO {i['zero']}, offload {i['offload']}"
    )
    rows = [
        ("step time", f"{doc['step_time_s']:.3f} s"),
        ("tokens/s", f"{doc['tokens_per_s']:,.0f}"),
        ("model TFLOP/s per GPU", f"{doc['model_tflops_per_gpu']:.1f}"),
        ("hardware TFLOP/s per GPU", f"{doc['hardware_tflops_per_gpu']:.1f}"),
        ("MFU", f"{doc['mfu']:.1%}"),
    ]
    console.print(summary_table(rows, doc["fits"]))

    step = doc["step_time_s"]
    t = Table(title="Time per step")
    t.add_column("component")
    t.add_column("seconds", justify="right")
    t.add_column("share", justify="right")
    for key, val in doc["breakdown_s"].items():
        t.add_row(_TIME_LABELS.get(key, key), f"{val:.4f}", share(val, step))
    t.add_row(styled("[bold]step[/bold]"), styled(f"[bold]{step:.4f}[/bold]"), "100.0%")
    console.print(t)

    keys = ("weights", "gradients", "optimizer", "activations", "other", "total")
    console.print(memory_table(doc["memory_gib_per_gpu"], keys, doc["fits"]))


#: Flags that are not keywords of the configuration.
_NOT_CONFIG = ("model", "hardware", "as_json")


def _config(flags: dict) -> dict:
    """The keywords of :func:`roofplan.estimate_training` for the parsed flags (click's
    ``ctx.params``): the flag names themselves, Enum choices as their names, each negated flag as
    the keyword it switches off, and the two sequence-parallel flags as one tri-state."""
    kw = {k: value(v) for k, v in flags.items() if k not in _NOT_CONFIG}
    kw["overlap_p2p_comm"] = not kw.pop("no_p2p_overlap")
    kw["ep_comm_overlap"] = not kw.pop("no_ep_overlap")
    kw["flash_attention"] = not kw.pop("no_flash_attention")
    kw["grad_reduce_in_fp32"] = not kw.pop("grad_reduce_bf16")
    sp, no_sp = kw.pop("sequence_parallel"), kw.pop("no_sequence_parallel")
    if sp and no_sp:
        raise InputError(
            "sequence-parallel", "--sequence-parallel --no-sequence-parallel", "at most one of the two flags"
        )
    kw["sequence_parallel"] = True if sp else (False if no_sp else None)
    return kw


def estimate_train(
    ctx: typer.Context,
    model: Model,
    hardware: Hardware,
    tp: TP = 1,
    pp: PP = 1,
    dp: Annotated[int, count("--dp", "Data-parallel degree.")] = 1,
    cp: Annotated[int, count("--cp", "Context-parallel degree.")] = 1,
    ep: Annotated[int, count("--ep", "Expert-parallel degree (divides dp x cp).")] = 1,
    vpp: Annotated[
        int, count("--vpp", "Virtual stages per pipeline rank (interleaved 1F1B); 1 = plain 1F1B.")
    ] = 1,
    global_batch: GlobalBatch = ...,
    micro_batch: Annotated[int, count("--micro-batch", "Micro batch in sequences.")] = ...,
    seq_len: SeqLen = ...,
    dtype: TrainDtype = "bf16",
    recompute: RecomputeOpt = Recompute.none,
    # two plain flags rather than one "--sequence-parallel/--no-sequence-parallel" option: typer's
    # help table truncates the pair to "--no-sequence-para…" in an 80-column terminal
    sequence_parallel: Annotated[
        bool, flag("--sequence-parallel", "Megatron sequence parallelism (default: on when tp > 1).")
    ] = False,
    no_sequence_parallel: Annotated[
        bool, flag("--no-sequence-parallel", "Turn sequence parallelism off when tp > 1.")
    ] = False,
    zero: Annotated[int, count("--zero", "ZeRO stage 0-3 (1 = Megatron distributed optimizer).")] = 0,
    offload: OffloadOpt = Offload.none,
    gpus_per_node: Annotated[
        int | None, count("--gpus-per-node", "Devices per node (default: catalog).")
    ] = None,
    recompute_layers: Annotated[
        int,
        count(
            "--recompute-layers",
            "With --recompute full: layers per stage recomputed (Megatron --recompute-num-layers); 0 = all.",
        ),
    ] = 0,
    tp_comm_overlap: Annotated[
        bool, flag("--tp-comm-overlap", "Overlap TP communication with GEMMs (Megatron --tp-comm-overlap).")
    ] = False,
    no_p2p_overlap: Annotated[
        bool,
        flag(
            "--no-p2p-overlap", "Expose interleaved pipeline sends (Megatron --no-overlap-p2p-communication)."
        ),
    ] = False,
    no_ep_overlap: Annotated[
        bool,
        flag("--no-ep-comm-overlap", "Expose the MoE all-to-all (Megatron without its MoE comm overlap)."),
    ] = False,
    etp: Annotated[int | None, count("--etp", "Expert tensor-parallel degree (default: tp).")] = None,
    moe_dispatcher: MoeDispatcherOpt = MoeDispatcher.alltoall,
    fp8_recipe: Fp8RecipeOpt = Fp8Recipe.current,
    pipeline_engine: PipelineEngineOpt = PipelineEngine.megatron,
    act_offload_layers: Annotated[
        int,
        count(
            "--act-offload-layers",
            "Layers whose activations go to host memory (Megatron --cpu-offloading-num-layers; pp 1, no recompute).",
        ),
    ] = 0,
    grad_reduce_bf16: Annotated[
        bool, flag("--grad-reduce-bf16", "Reduce gradients in bf16 (Megatron --grad-reduce-in-bf16).")
    ] = False,
    no_flash_attention: Annotated[
        bool, flag("--no-flash-attention", "Materialise attention scores (pre-FlashAttention stacks).")
    ] = False,
    as_json: Json = False,
    calibration: Calibration = None,
) -> None:
    """Estimate step time, throughput, MFU and memory of one training configuration."""

    def body() -> None:
        from roofplan import estimate_training  # resolves the ids at the door

        est = estimate_training(model, hardware, **_config(ctx.params))
        if seq_len > est.model.max_seq_len:
            warn(
                f"--seq-len {seq_len:,} exceeds the {est.model.max_seq_len:,}-token context of {est.model.name} "
                "(fine for context extension; the estimate covers the longer sequence)"
            )
        output(checked(est.to_json(), calibration), as_json, _render)

    return run(body)


def register(group: typer.Typer) -> None:
    group.command("train")(estimate_train)
