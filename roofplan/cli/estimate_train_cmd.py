"""``roofplan estimate train``: evaluate one training configuration (docs/SPEC.md §3.1).

Thin: parses the flags, calls :func:`roofplan.costmodel.train.estimate_training`, and renders
its document either as JSON or as two rich tables (time breakdown, memory against capacity).
"""

from __future__ import annotations

import typer
from rich.table import Table

from roofplan.cli.common import (
    bounded_count,
    checked,
    console,
    esc,
    print_json,
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
    TrainDtype,
    value,
)
from roofplan.cli.render import memory_table
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
    console.print(
        styled(
            f"[bold]{esc(i['model'])}[/bold] on [bold]{esc(i['hardware'])}[/bold] x {i['world_size']}  "
            f"({par})"
        )
    )
    console.print(
        f"global batch {i['global_batch']} x {i['seq_len']} tokens, micro batch {i['micro_batch']} "
        f"({i['microbatches']} microbatches), {i['dtype']}, recompute {i['recompute']}, "
        f"SP {'on' if i['sequence_parallel'] else 'off'}, ZeRO {i['zero']}, offload {i['offload']}"
    )
    summary = Table(show_header=False, box=None)
    summary.add_row("step time", f"{doc['step_time_s']:.3f} s")
    summary.add_row("tokens/s", f"{doc['tokens_per_s']:,.0f}")
    summary.add_row("model TFLOP/s per GPU", f"{doc['model_tflops_per_gpu']:.1f}")
    summary.add_row("hardware TFLOP/s per GPU", f"{doc['hardware_tflops_per_gpu']:.1f}")
    summary.add_row("MFU", f"{doc['mfu']:.1%}")
    summary.add_row("fits", styled("[green]yes[/green]" if doc["fits"] else "[red]no (out of memory)[/red]"))
    console.print(summary)

    step = doc["step_time_s"]
    t = Table(title="Time per step")
    t.add_column("component")
    t.add_column("seconds", justify="right")
    t.add_column("share", justify="right")
    for key, val in doc["breakdown_s"].items():
        t.add_row(_TIME_LABELS.get(key, key), f"{val:.4f}", f"{val / step:.1%}" if step else "-")
    t.add_row(styled("[bold]step[/bold]"), styled(f"[bold]{step:.4f}[/bold]"), "100.0%")
    console.print(t)

    keys = ("weights", "gradients", "optimizer", "activations", "other", "total")
    console.print(memory_table(doc["memory_gib_per_gpu"], keys, doc["fits"]))


def estimate_train(
    model: Model,
    hardware: Hardware,
    tp: TP = 1,
    pp: PP = 1,
    dp: int = typer.Option(1, "--dp", callback=bounded_count, help="Data-parallel degree."),
    cp: int = typer.Option(1, "--cp", callback=bounded_count, help="Context-parallel degree."),
    ep: int = typer.Option(
        1, "--ep", callback=bounded_count, help="Expert-parallel degree (divides dp x cp)."
    ),
    vpp: int = typer.Option(
        1,
        "--vpp",
        callback=bounded_count,
        help="Virtual stages per pipeline rank (interleaved 1F1B); 1 = plain 1F1B.",
    ),
    global_batch: int = typer.Option(
        ..., "--global-batch", callback=bounded_count, help="Global batch in sequences."
    ),
    micro_batch: int = typer.Option(
        ..., "--micro-batch", callback=bounded_count, help="Micro batch in sequences."
    ),
    seq_len: int = typer.Option(..., "--seq-len", callback=bounded_count, help="Sequence length in tokens."),
    dtype: TrainDtype = "bf16",
    recompute: RecomputeOpt = Recompute.none,
    # two plain flags rather than one "--sequence-parallel/--no-sequence-parallel" option: typer's
    # help table truncates the pair to "--no-sequence-para…" in an 80-column terminal
    sequence_parallel: bool = typer.Option(
        False,
        "--sequence-parallel",
        metavar="",
        help="Megatron sequence parallelism (default: on when tp > 1).",
    ),
    no_sequence_parallel: bool = typer.Option(
        False, "--no-sequence-parallel", metavar="", help="Turn sequence parallelism off when tp > 1."
    ),
    zero: int = typer.Option(
        0, "--zero", callback=bounded_count, help="ZeRO stage 0-3 (1 = Megatron distributed optimizer)."
    ),
    offload: OffloadOpt = Offload.none,
    gpus_per_node: int | None = typer.Option(
        None, "--gpus-per-node", callback=bounded_count, help="Devices per node (default: catalog)."
    ),
    recompute_layers: int = typer.Option(
        0,
        "--recompute-layers",
        callback=bounded_count,
        help="With --recompute full: layers per stage recomputed (Megatron --recompute-num-layers); 0 = all.",
    ),
    tp_comm_overlap: bool = typer.Option(
        False,
        "--tp-comm-overlap",
        metavar="",
        help="Overlap TP communication with GEMMs (Megatron --tp-comm-overlap).",
    ),
    no_p2p_overlap: bool = typer.Option(
        False,
        "--no-p2p-overlap",
        metavar="",
        help="Expose interleaved pipeline sends (Megatron --no-overlap-p2p-communication).",
    ),
    no_ep_overlap: bool = typer.Option(
        False,
        "--no-ep-comm-overlap",
        metavar="",
        help="Expose the MoE all-to-all (Megatron without its MoE comm overlap).",
    ),
    etp: int | None = typer.Option(
        None, "--etp", callback=bounded_count, help="Expert tensor-parallel degree (default: tp)."
    ),
    moe_dispatcher: MoeDispatcherOpt = MoeDispatcher.alltoall,
    fp8_recipe: Fp8RecipeOpt = Fp8Recipe.current,
    pipeline_engine: PipelineEngineOpt = PipelineEngine.megatron,
    act_offload_layers: int = typer.Option(
        0,
        "--act-offload-layers",
        callback=bounded_count,
        help="Layers whose activations go to host memory (Megatron --cpu-offloading-num-layers; pp 1, no recompute).",
    ),
    grad_reduce_bf16: bool = typer.Option(
        False,
        "--grad-reduce-bf16",
        metavar="",
        help="Reduce gradients in bf16 (Megatron --grad-reduce-in-bf16).",
    ),
    no_flash_attention: bool = typer.Option(
        False,
        "--no-flash-attention",
        metavar="",
        help="Materialise attention scores (pre-FlashAttention stacks).",
    ),
    as_json: Json = False,
    calibration: Calibration = None,
) -> None:
    """Estimate step time, throughput, MFU and memory of one training configuration."""
    recompute, offload, moe_dispatcher, fp8_recipe, pipeline_engine = map(
        value, (recompute, offload, moe_dispatcher, fp8_recipe, pipeline_engine)
    )

    def body() -> None:
        from roofplan import estimate_training  # resolves the ids at the door

        if sequence_parallel and no_sequence_parallel:
            raise InputError(
                "sequence-parallel",
                "--sequence-parallel --no-sequence-parallel",
                "at most one of the two flags",
            )
        sp = True if sequence_parallel else (False if no_sequence_parallel else None)
        est = estimate_training(
            model,
            hardware,
            tp=tp,
            pp=pp,
            dp=dp,
            cp=cp,
            ep=ep,
            vpp=vpp,
            global_batch=global_batch,
            micro_batch=micro_batch,
            seq_len=seq_len,
            dtype=dtype,
            recompute=recompute,
            sequence_parallel=sp,
            zero=zero,
            offload=offload,
            gpus_per_node=gpus_per_node,
            calibration=calibration,
            recompute_layers=recompute_layers,
            tp_comm_overlap=tp_comm_overlap,
            overlap_p2p_comm=not no_p2p_overlap,
            ep_comm_overlap=not no_ep_overlap,
            etp=etp,
            moe_dispatcher=moe_dispatcher,
            fp8_recipe=fp8_recipe,
            flash_attention=not no_flash_attention,
            pipeline_engine=pipeline_engine,
            act_offload_layers=act_offload_layers,
            grad_reduce_in_fp32=not grad_reduce_bf16,
        )
        if seq_len > est.model.max_seq_len:
            warn(
                f"--seq-len {seq_len:,} exceeds the {est.model.max_seq_len:,}-token context of {est.model.name} "
                "(fine for context extension; the estimate covers the longer sequence)"
            )
        doc = checked(est.to_json(), calibration)
        if as_json:
            print_json(doc)
        else:
            _render(doc)

    return run(body)


def register(group: typer.Typer) -> None:
    group.command("train")(estimate_train)
