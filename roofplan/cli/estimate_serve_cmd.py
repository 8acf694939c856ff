"""``roofplan estimate serve``: one serving instance at a fixed batch (docs/SPEC.md §3.2), or a deployment
under load (``--concurrency`` / ``--rate`` with ``--instances``, docs/SPEC.md §6).

Thin: parses the flags, calls the public API, which resolves the ids once
(:func:`roofplan.estimate_serving`, static batch, or :func:`roofplan.estimate_serving_load`, under load), and renders the document as JSON or as
rich tables. The load flags and their rendering are shared with ``roofplan simulate``.
"""

from __future__ import annotations

import typer
from rich.table import Table

from roofplan.cli.common import (
    bounded_count,
    checked,
    console,
    esc,
    output,
    run,
    styled,
    warn,
)
from roofplan.cli.options import (
    PP,
    TP,
    Calibration,
    Concurrency,
    EngineChoice,
    EngineOpt,
    ExpertSkew,
    Hardware,
    Instances,
    Isl,
    IslDist,
    Json,
    KvDtype,
    Model,
    Osl,
    OslDist,
    PrefixHit,
    ServeDP,
    ServeDtype,
    ServeEP,
    SpecAccept,
    SpecMethod,
    SpecTokens,
    WorkloadOpt,
    serving_kwargs,
)
from roofplan.cli.render import heading, memory_table, share, summary_table

_PARTS = ("compute", "memory", "communication", "overhead")
_PART_LABELS = {
    "compute": "compute-bound ops",
    "memory": "memory-bound ops (weights, KV cache)",
    "communication": "communication (TP/EP/PP)",
    "overhead": "fixed overhead (launch, scheduler, sampling)",
}


def _render(doc: dict) -> None:
    i = doc["inputs"]
    par = _layout(i)
    heading(i, f" x {i['gpus']}  ({par})", f", engine {esc(i['engine'])}")
    console.print(
        f"batch {i['batch']}, isl {i['isl']}, osl {i['osl']}, weights {i['dtype']} "
        f"(compute {i['compute_dtype']}), KV cache {i['kv_dtype']}"
    )
    rows = [
        ("TTFT", f"{doc['ttft_ms']:,.2f} ms"),
        ("TPOT", f"{doc['tpot_ms']:,.3f} ms"),
        ("latency", f"{doc['latency_ms']:,.1f} ms"),
        ("output tokens/s", f"{doc['output_tokens_per_s']:,.1f}"),
        ("output tokens/s per GPU", f"{doc['output_tokens_per_s_per_gpu']:,.1f}"),
        ("max batch (KV fits)", f"{doc['max_batch']:,}"),
    ]
    s = summary_table(rows, doc["fits"])
    _feature_rows(s, i)
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
            share(pre[key], tp_),
            f"{dec[key]:,.3f}",
            share(dec[key], td_),
        )
    t.add_row(
        styled("[bold]total[/bold]"),
        styled(f"[bold]{tp_:,.3f}[/bold]"),
        "100.0%",
        styled(f"[bold]{td_:,.3f}[/bold]"),
        "100.0%",
    )
    console.print(t)

    mem = doc["memory_gib_per_gpu"]
    extra = ((("weights in DDR tier", mem["weights_in_ddr"]),) if mem.get("weights_in_ddr") else ()) + (
        ("usable (after engine reserve)", mem["usable"]),
    )
    console.print(memory_table(mem, ("weights", "kv_cache", "activations", "total"), doc["fits"], extra))


def _layout(i: dict) -> str:
    """The parallel layout of one serving instance in ``inputs`` (``tp=.. pp=.. ep=.. dp=..``)."""
    return f"tp={i['tp']} pp={i['pp']} ep={i['ep']} dp={i['dp']}"


def _feature_rows(s: Table, i: dict) -> None:
    """Rows for the serving features in ``inputs`` (speculative decoding, expert skew, prefix hit)."""
    if "speculative" in i:
        sp = i["speculative"]
        s.add_row(
            "speculative",
            f"{sp['method']} k={sp['draft_tokens']} accept {sp['acceptance']:.2f} "
            f"-> {sp['tokens_per_step']:.2f} tokens/step",
        )
    if i.get("expert_skew"):
        s.add_row("expert skew (max/mean)", f"{i['expert_skew']:.2f}")
    if i.get("prefix_hit_tokens"):
        s.add_row("prefix-cache hit", f"{i['prefix_hit_tokens']:,} of {i['isl']:,} prompt tokens")


def render_load(doc: dict, title: str) -> None:
    """People's view of a document under load (estimate serve --concurrency/--rate, simulate)."""
    i = doc["inputs"]
    par = _layout(i)
    heading(
        i,
        f": {i['instances']} instance(s) of {i['gpus']} GPU(s) ({par})",
        f", engine {esc(i['engine'])} -- {esc(title)}",
    )
    w = i["workload"]
    load = (
        f"concurrency {i['concurrency']}"
        if "concurrency" in i
        else f"{i['rate_rps']:g} req/s"
        if "rate_rps" in i
        else "trace arrivals"
    )
    console.print(
        f"{load}; {w['source']}; isl mean {w['isl']['mean']:,.0f}, osl mean {w['osl']['mean']:,.0f}"
    )
    t = Table(title="Latency (ms)")
    for c in ("metric", "mean", "p50", "p90", "p99"):
        t.add_column(c, justify="right" if c != "metric" else "left")
    for name in ("ttft", "tpot", "latency"):
        t.add_row(
            name.upper() if name != "latency" else "end-to-end",
            *(f"{doc[k]:,.2f}" for k in (f"{name}_ms", f"{name}_p50_ms", f"{name}_p90_ms", f"{name}_p99_ms")),
        )
    console.print(t)
    s = Table(show_header=False, box=None)
    s.add_row("request rate", f"{doc['request_rate_rps']:,.3f} req/s")
    if doc.get("max_rate_rps"):
        s.add_row("largest sustainable rate", f"{doc['max_rate_rps']:,.3f} req/s")
        s.add_row("utilisation", f"{doc['utilisation']:.1%}")
    s.add_row("output tokens/s", f"{doc['output_tokens_per_s']:,.1f}")
    s.add_row("output tokens/s per GPU", f"{doc['output_tokens_per_s_per_gpu']:,.1f}")
    s.add_row("running requests per instance", f"{doc['running_per_instance']:,.1f}")
    for key, label in (("kv_occupancy", "KV cache in use"), ("prefill_utilisation", "prefill budget in use")):
        if key in doc:
            s.add_row(label, f"{doc[key]:.1%}")
    if "preemptions" in doc:
        s.add_row("iterations / preemptions", f"{doc['iterations']:,} / {doc['preemptions']:,}")
    _feature_rows(s, i)
    console.print(s)


def load_workload(isl, osl, isl_dist, osl_dist, workload, seed: int = 0):
    """The :class:`~roofplan.workload.Workload` the length flags describe (bad input: exit 2)."""
    from roofplan.workload import make_workload

    return make_workload(isl=isl, osl=osl, isl_dist=isl_dist, osl_dist=osl_dist, workload=workload, seed=seed)


def estimate_serve(
    ctx: typer.Context,
    model: Model,
    hardware: Hardware,
    tp: TP = 1,
    pp: PP = 1,
    ep: ServeEP = 1,
    dp: ServeDP = 1,
    batch: int | None = typer.Option(
        None,
        "--batch",
        callback=bounded_count,
        help="Static batch: requests prefilled together, then decoded together.",
    ),
    concurrency: Concurrency = None,
    rate: float | None = typer.Option(
        None, "--rate", help="Open loop: Poisson arrivals, requests/s to the deployment."
    ),
    instances: Instances = 1,
    isl: Isl = None,
    osl: Osl = None,
    isl_dist: IslDist = None,
    osl_dist: OslDist = None,
    workload: WorkloadOpt = None,
    dtype: ServeDtype = "bf16",
    kv_dtype: KvDtype = None,
    engine: EngineOpt = EngineChoice.generic,
    spec_method: SpecMethod = None,
    spec_tokens: SpecTokens = None,
    spec_accept: SpecAccept = None,
    prefix_hit: PrefixHit = None,
    expert_skew: ExpertSkew = 1.0,
    as_json: Json = False,
    calibration: Calibration = None,
) -> None:
    """Estimate TTFT, TPOT, throughput and memory at a fixed batch, or under load (percentiles)."""

    def body() -> None:
        from roofplan import estimate_serving, estimate_serving_load  # resolve the ids at the door
        from roofplan.errors import InputError

        modes = [
            n
            for n, v in (("--batch", batch), ("--concurrency", concurrency), ("--rate", rate))
            if v is not None
        ]
        if len(modes) != 1:
            raise InputError(
                "load", " and ".join(modes) or "none", "exactly one of --batch, --concurrency, --rate"
            )
        kw = serving_kwargs(ctx.params)
        if batch is None:
            wl = load_workload(isl, osl, isl_dist, osl_dist, workload)
            est = estimate_serving_load(
                model, hardware, workload=wl, concurrency=concurrency, rate=rate, instances=instances, **kw
            )
            output(
                checked(est.to_json(), calibration),
                as_json,
                lambda d: render_load(d, "analytic steady state"),
            )
            return
        if isl is None or osl is None or isl_dist or osl_dist or workload:
            raise InputError(
                "--batch",
                batch,
                "with --isl and --osl numbers (lengths vary only under load: "
                "use --concurrency or --rate with --isl-dist/--osl-dist/--workload)",
            )
        if instances != 1:
            raise InputError(
                "--instances", instances, "with --concurrency or --rate (a static batch is one instance)"
            )
        est = estimate_serving(model, hardware, batch=batch, isl=isl, osl=osl, **kw)
        _warn_static(est, kw["engine"], isl + osl)
        output(checked(est.to_json(), calibration), as_json, _render)

    return run(body)


def _warn_static(est, engine: str, seq: int) -> None:
    """Warnings about a static-batch estimate: an engine that does not run on the device, and
    requests longer than the model's context."""
    from roofplan.launch.platforms import unsupported_on

    why = None if engine == "generic" else unsupported_on(engine, est.hardware)
    if why:
        warn(f"--engine {engine}: {why}; its overhead profile is applied anyway")
    if seq > est.model.max_seq_len:
        warn(
            f"isl + osl = {seq:,} exceeds the {est.model.max_seq_len:,}-token context of "
            f"{est.model.name}; engines refuse such requests unless the context is extended "
            "(vLLM --max-model-len with RoPE scaling); the estimate extrapolates"
        )


def register(group: typer.Typer) -> None:
    group.command("serve")(estimate_serve)
