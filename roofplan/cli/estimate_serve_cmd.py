"""``roofplan estimate serve``: evaluate one serving instance at a fixed batch (SPEC §3.2).

Thin: parses the flags, calls :func:`roofplan.costmodel.serve.estimate_serving`, and renders its
document either as JSON or as rich tables (prefill and decode-step breakdown, memory vs capacity).
"""

from __future__ import annotations

import typer
from rich.table import Table

from roofplan.cli.common import CALIBRATION_OPTION, JSON_OPTION, bounded_count, console, print_json, run, warn
from roofplan.cli.render import memory_table
from roofplan.cli.serve_options import (
    EXPERT_SKEW_OPTION,
    PREFIX_HIT_OPTION,
    SPEC_ACCEPT_OPTION,
    SPEC_METHOD_OPTION,
    SPEC_TOKENS_OPTION,
    spec_from_flags,
)

_PARTS = ("compute", "memory", "communication", "overhead")
_PART_LABELS = {
    "compute": "compute-bound ops",
    "memory": "memory-bound ops (weights, KV cache)",
    "communication": "communication (TP/EP/PP)",
    "overhead": "fixed overhead (launch, scheduler, sampling)",
}


def _render(doc: dict) -> None:
    i = doc["inputs"]
    par = f"tp={i['tp']} pp={i['pp']} ep={i['ep']} dp={i['dp']}"
    console.print(
        f"[bold]{i['model']}[/bold] on [bold]{i['hardware']}[/bold] x {i['gpus']}  ({par}), "
        f"engine {i['engine']}"
    )
    console.print(
        f"batch {i['batch']}, isl {i['isl']}, osl {i['osl']}, weights {i['dtype']} "
        f"(compute {i['compute_dtype']}), KV cache {i['kv_dtype']}"
    )
    s = Table(show_header=False, box=None)
    s.add_row("TTFT", f"{doc['ttft_ms']:,.2f} ms")
    s.add_row("TPOT", f"{doc['tpot_ms']:,.3f} ms")
    s.add_row("latency", f"{doc['latency_ms']:,.1f} ms")
    s.add_row("output tokens/s", f"{doc['output_tokens_per_s']:,.1f}")
    s.add_row("output tokens/s per GPU", f"{doc['output_tokens_per_s_per_gpu']:,.1f}")
    s.add_row("max batch (KV fits)", f"{doc['max_batch']:,}")
    s.add_row("fits", "[green]yes[/green]" if doc["fits"] else "[red]no (out of memory)[/red]")
    if "speculative" in i:
        sp = i["speculative"]
        s.add_row("speculative", f"{sp['method']} k={sp['draft_tokens']} accept {sp['acceptance']:.2f} "
                  f"-> {sp['tokens_per_step']:.2f} tokens/step")
    if i.get("expert_skew"):
        s.add_row("expert skew (max/mean)", f"{i['expert_skew']:.2f}")
    if i.get("prefix_hit_tokens"):
        s.add_row("prefix-cache hit", f"{i['prefix_hit_tokens']:,} of {i['isl']:,} prompt tokens")
    console.print(s)

    t = Table(title="Time breakdown")
    t.add_column("component")
    t.add_column("prefill ms", justify="right")
    t.add_column("share", justify="right")
    t.add_column("decode step ms", justify="right")
    t.add_column("share", justify="right")
    pre, dec = doc["breakdown_ms"]["prefill"], doc["breakdown_ms"]["decode_step"]
    tp_, td_ = doc["ttft_ms"], doc["tpot_ms"]
    for key in _PARTS:
        t.add_row(
            _PART_LABELS[key],
            f"{pre[key]:,.3f}",
            f"{pre[key] / tp_:.1%}" if tp_ else "-",
            f"{dec[key]:,.3f}",
            f"{dec[key] / td_:.1%}" if td_ else "-",
        )
    t.add_row(
        "[bold]total[/bold]", f"[bold]{tp_:,.3f}[/bold]", "100.0%", f"[bold]{td_:,.3f}[/bold]", "100.0%"
    )
    console.print(t)

    mem = doc["memory_gib_per_gpu"]
    extra = ((("weights in DDR tier", mem["weights_in_ddr"]),) if mem.get("weights_in_ddr") else ()) + (
        ("usable (after engine reserve)", mem["usable"]),)
    console.print(memory_table(mem, ("weights", "kv_cache", "activations", "total"), doc["fits"], extra))


def estimate_serve(
    model: str = typer.Option(..., "--model", help="Model preset id or path to config.json / model YAML."),
    hardware: str = typer.Option(..., "--hardware", help="Hardware catalog id or YAML path."),
    tp: int = typer.Option(1, "--tp", callback=bounded_count, help="Tensor-parallel degree."),
    pp: int = typer.Option(1, "--pp", callback=bounded_count, help="Pipeline-parallel degree."),
    ep: int = typer.Option(
        1, "--ep", callback=bounded_count,
        help="Expert-parallel degree (MoE; divides tp x dp)."),
    dp: int = typer.Option(
        1, "--dp", callback=bounded_count,
        help="Attention data-parallel ranks (MoE, DeepSeek-style)."),
    batch: int = typer.Option(
        ..., "--batch", callback=bounded_count,
        help="Requests prefilled together, then decoded together."),
    isl: int = typer.Option(..., "--isl", callback=bounded_count, help="Input (prompt) tokens per request."),
    osl: int = typer.Option(..., "--osl", callback=bounded_count, help="Output tokens per request."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weight dtype: bf16 | fp16 | fp8 | int8 | int4 | fp4"),
    kv_dtype: str | None = typer.Option(
        None,
        "--kv-dtype",
        help="KV-cache dtype: bf16 | fp16 | fp8 | int8 (default: the 16-bit activation dtype)",
    ),
    engine: str = typer.Option(
        "generic", "--engine", help="Engine overhead profile: generic | vllm | sglang | trtllm"
    ),
    spec_method: str | None = SPEC_METHOD_OPTION,
    spec_tokens: int | None = SPEC_TOKENS_OPTION,
    spec_accept: float | None = SPEC_ACCEPT_OPTION,
    prefix_hit: str | None = PREFIX_HIT_OPTION,
    expert_skew: float = EXPERT_SKEW_OPTION,
    as_json: bool = JSON_OPTION,
    calibration: str | None = CALIBRATION_OPTION,
) -> None:
    """Estimate TTFT, TPOT, throughput and memory of one serving instance at a fixed batch."""

    def body() -> None:
        from roofplan.costmodel.serve import estimate_serving

        est = estimate_serving(
            model,
            hardware,
            tp=tp,
            pp=pp,
            ep=ep,
            dp=dp,
            batch=batch,
            isl=isl,
            osl=osl,
            dtype=dtype,
            kv_dtype=kv_dtype,
            engine=engine,
            calibration=calibration,
            speculative=spec_from_flags(spec_method, spec_tokens, spec_accept),
            prefix_hit=prefix_hit,
            expert_skew=expert_skew,
        )
        from roofplan.launch.platforms import unsupported_on

        why = None if engine == "generic" else unsupported_on(engine, est.hardware)
        if why:
            warn(f"--engine {engine}: {why}; its overhead profile is applied anyway")
        if isl + osl > est.model.max_seq_len:
            warn(f"isl + osl = {isl + osl:,} exceeds the {est.model.max_seq_len:,}-token context of "
                 f"{est.model.name}; engines refuse such requests unless the context is extended "
                 "(vLLM --max-model-len with RoPE scaling); the estimate extrapolates")
        doc = est.to_json()
        if as_json:
            print_json(doc)
        else:
            _render(doc)

    return run(body)


def register(group: typer.Typer) -> None:
    group.command("serve")(estimate_serve)
