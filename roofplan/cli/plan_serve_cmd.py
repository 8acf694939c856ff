"""``roofplan plan serve``: search colocated and disaggregated serving deployments (docs/SPEC.md §3.4)."""

from __future__ import annotations

import typer
from rich import box
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from roofplan.cli.common import (
    check_out_dir,
    check_out_file,
    checked,
    console,
    esc,
    os_error,
    print_json,
    run,
    split_names,
    styled,
    warn,
    warn_stale,
)
from roofplan.cli.options import (
    Calibration,
    EngineChoice,
    EngineOpt,
    ExpertSkew,
    Isl,
    Json,
    KvDtype,
    Model,
    Osl,
    OutDir,
    Pools,
    PrefixHit,
    Price,
    ServeDtype,
    SpecAccept,
    SpecMethod,
    SpecTokens,
    spec_from_flags,
    value,
)
from roofplan.errors import InputError
from roofplan.hardware.spec import usd_per_million_tokens
from roofplan.launch.registry import SERVE_EMITTERS as EMITTERS
from roofplan.solver.serve_request import MAX_SERVE_GPUS  # the planner's suggestions respect it too


def register(group) -> None:
    group.command("serve")(plan_serve)


def plan_serve(
    ctx: typer.Context,
    model: Model,
    hardware: Pools,
    gpus: str = typer.Option(
        ..., "--gpus", help="GPU budget (N), or one per pool in --hardware order (8,8)."
    ),
    isl: Isl = ...,
    osl: Osl = ...,
    ttft_ms: float | None = typer.Option(None, "--ttft-ms", help="Time-to-first-token target (ms)."),
    tpot_ms: float | None = typer.Option(None, "--tpot-ms", help="Time-per-output-token target (ms)."),
    rate: float | None = typer.Option(None, "--rate", help="Requests/s to sustain (else: maximise)."),
    mode: str = typer.Option("auto", "--mode", help="auto | colocated | disagg."),
    engine: EngineOpt = EngineChoice.generic,
    dtype: ServeDtype = "bf16",
    kv_dtype: KvDtype = None,
    objective: str = typer.Option(
        "gpus", "--objective", help="With --rate: fewest gpus | lowest cost | energy (least J per token)."
    ),
    price: Price = None,
    slo_percentile: float = typer.Option(
        90.0,
        "--slo-percentile",
        metavar="P",
        help="Targets hold for P % of requests under Poisson arrivals (goodput, queueing); 0: unloaded.",
    ),
    emit: list[str] | None = typer.Option(  # noqa: B008
        None, "--emit", metavar="ENGINE", help="vllm | sglang | trtllm | dynamo (repeatable or comma list)."
    ),
    out: OutDir = None,
    plot: str | None = typer.Option(
        None, "--plot", metavar="PNG", help="Save the Pareto front as a PNG (matplotlib)."
    ),
    spec_method: SpecMethod = None,
    spec_tokens: SpecTokens = None,
    spec_accept: SpecAccept = None,
    prefix_hit: PrefixHit = None,
    expert_skew: ExpertSkew = 1.0,
    target: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--target",
        metavar="ENGINE=VERSION",
        help="Engine release the launch files are written for (e.g. sglang=0.5.23); default current.",
    ),
    memory_headroom: str | None = typer.Option(
        None,
        "--memory-headroom",
        metavar="GIB",
        help="Free GiB per GPU every instance must leave, or per role prefill=4,decode=8 "
        "(default 5% of HBM + 1 GiB).",
    ),
    fix: str | None = typer.Option(
        None,
        "--fix",
        metavar="[ROLE.]K=V,...",
        help="Fix instance knobs (tp pp ep dp batch chunk), per role e.g. prefill.tp=4,decode.tp=8.",
    ),
    exclude: str | None = typer.Option(
        None, "--exclude", metavar="[ROLE.]COND,...", help="Exclude matches, e.g. decode.batch>256,pp>1."
    ),
    json_out: Json = False,
    calibration: Calibration = None,
) -> None:
    """Search serving deployments for a GPU budget: colocated and prefill/decode disaggregated."""
    return run(lambda: _impl(ctx.params))


def _emitters(emit: list[str] | str | None) -> list[str]:
    names = split_names("emit", emit, EMITTERS)
    return list(EMITTERS) if names is None else names


def _gpus(value: str):
    """``N`` or one count per pool ``8,8``; each count an integer no larger than MAX_COUNT (the
    planner checks the sign and that there is one count per pool)."""
    if "," not in value:
        return _int("gpus", value)
    for part in value.split(","):
        if part.strip():
            _int("gpus", part.strip())
    return value


def _int(field: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InputError(field, value, "a positive integer (or one per pool: 8,8)") from None
    if abs(n) > MAX_SERVE_GPUS:
        raise InputError(
            field,
            value,
            f"a positive integer of at most {MAX_SERVE_GPUS:,} (the launch files "
            "name every node; for a larger fleet plan one pool and replicate it)",
        )
    return n


def _launchers(emit, engine: str, devices) -> tuple[list[str], dict[str, str]]:
    """The launchers to write and those that cannot run on the chosen devices (with the reason):
    one asked for with --emit that cannot is an error, else it is left out."""
    from roofplan.launch.platforms import unsupported_on

    engines = _emitters(emit)
    off_platform: dict[str, str] = {}
    for e in EMITTERS:
        for hw in devices:
            why = unsupported_on(e, hw)
            if why:
                off_platform.setdefault(e, why)
    for hw in devices:
        why = None if engine == "generic" else unsupported_on(engine, hw)
        if why:
            warn(f"--engine {engine}: {why}; its overhead profile is applied anyway")
            break
    if emit is None:
        return [e for e in engines if e not in off_platform], off_platform
    for e in engines:
        if e in off_platform:
            ok = [x for x in EMITTERS if x not in off_platform]
            raise InputError("emit", e, off_platform[e] + (f"; use {' or '.join(ok)}" if ok else ""))
    return engines, off_platform


def _impl(f: dict) -> None:
    """Plan, write and print for the parsed flags ``f`` (click's ``ctx.params``)."""
    from roofplan import resolve
    from roofplan.hardware.pricing import apply_prices, parse_prices
    from roofplan.launch import registry
    from roofplan.launch.common import merge_files
    from roofplan.launch.versions import parse_targets
    from roofplan.solver import pareto
    from roofplan.solver.serve_planner import plan_serving

    # click passes an unused repeatable option as () where typer's own call passes None
    emit, targets = f["emit"] or None, parse_targets(f["target"] or None)
    engine, calibration, plot = value(f["engine"]), f["calibration"], f["plot"]
    overlay = resolve.overlay(calibration)  # read once
    pools = resolve.pools(f["hardware"], overlay)  # once: the planner gets specs, overlay applied
    engines, off_platform = _launchers(emit, engine, resolve.devices(pools))
    if plot is not None:
        pareto.require_matplotlib()  # fail before searching, and before anything is written
        plot = check_out_file(plot, "plot")
    out = check_out_dir(f["out"])  # typed str, not Path: Path("") would silently be the current directory
    plan = plan_serving(
        resolve.model(f["model"]),
        apply_prices(pools, parse_prices(f["price"] or None)),
        gpus=_gpus(f["gpus"]),
        engine=resolve.engine(engine, overlay),
        speculative=spec_from_flags(f["spec_method"], f["spec_tokens"], f["spec_accept"]),
        slo_percentile=f["slo_percentile"] or None,
        constraints={"fix": f["fix"], "exclude": f["exclude"]},
        error_bands=resolve.error_bands(),
        **{k: f[k] for k in _PLANNER_FLAGS},
    )
    registry.serve_files(plan, engines, targets)  # the launch files of the asked-for engines and releases
    doc = checked(plan.to_json(), calibration)  # before anything is written
    if f["objective"] == "cost" and doc["inputs"].get("objective") != "cost":
        warn("--objective cost: a catalog here has no price_per_hour, so the fewest GPUs were chosen instead")
    if off_platform:
        doc["launch_unsupported"] = off_platform
    written: list[str] = []
    if out is not None:
        written = registry.write_plan(out, merge_files(plan.launch[e] for e in engines), _json_safe(doc))
        warn_stale(out, written)
    if plot is not None:
        try:
            plot.parent.mkdir(parents=True, exist_ok=True)
            pareto.save_png(
                plan.frontier, str(plot), title=f"{doc['inputs']['model']} on {doc['inputs']['hardware']}"
            )
        except OSError as exc:
            raise os_error("plot", plot, exc) from None
        written.append(str(plot))
    if f["json_out"]:
        if written:
            doc["written"] = written
        print_json(doc)
        return
    _render(plan, doc, engines if emit else [], written)


#: Flags passed to :func:`~roofplan.solver.serve_planner.plan_serving` under their own names.
_PLANNER_FLAGS = (
    "isl",
    "osl",
    "ttft_ms",
    "tpot_ms",
    "rate",
    "mode",
    "dtype",
    "kv_dtype",
    "objective",
    "prefix_hit",
    "expert_skew",
    "memory_headroom",
)


def _json_safe(doc: dict) -> dict:
    from roofplan.cli.common import _plain

    return _plain(doc)


def _layout(a: dict) -> str:
    """A deployment's layout in one phrase: ``2 x (tp=8 pp=1)`` or ``1P1D P(tp=2 pp=4) D(tp=8 pp=1)``."""
    if not a["ratio"]:
        return f"{a.get('instances') or 1} x ({_cfg(a['prefill'])})"
    return f"{a['ratio']} P({_cfg(a['prefill'])}) D({_cfg(a['decode'])})"


def _cfg(c: dict) -> str:
    s = f"tp={c['tp']} pp={c['pp']}"
    if c["dp"] > 1 or c["ep"] > 1:
        s += f" dp={c['dp']} ep={c['ep']}"
    return s


_COMPACT = {"box": box.SIMPLE_HEAD, "pad_edge": False, "padding": (0, 1), "collapse_padding": True}


def _render(plan, doc: dict, engines: list[str], written: list[str]) -> None:
    """The plan for people: the pick, its load and energy lines, the two modes, the front, the
    search statistics and the launch files."""
    _render_best(doc)
    _render_alternatives(doc)
    _render_pareto(plan, doc)
    _render_footer(doc, engines, written)


def _role_cells(role: str, r: dict, instances: int, batch: str, mixed: bool) -> tuple[str, ...]:
    """The cells of one role's row in the best-deployment table, up to its latency: role, instance
    count, layout, GPUs per instance, batch and (with devices that differ by role) the hardware."""
    return (role, str(instances), _cfg(r), str(r["gpus_per_instance"]), batch) + (
        (r["hardware"],) if mixed else ()
    )


def _budget(gpus, hardware: str) -> str:
    """The GPU budget as people read it: ``8 x h100-sxm``, or one count per pool
    (``8 x h100-sxm + 8 x a100-sxm-80gb``) when the inputs hold one per device."""
    if isinstance(gpus, dict):
        return " + ".join(f"{n} x {hw}" for hw, n in gpus.items())
    return f"{gpus} x {hardware}"


def _render_best(doc: dict) -> None:
    """The chosen deployment's table and its latency, throughput, load and energy lines."""
    best = doc["best"]
    inp = doc["inputs"]
    title = (
        f"{inp['model']} on {_budget(inp['gpus'], inp['hardware'])}  isl={inp['isl']} osl={inp['osl']}"
        + (f"  TTFT<={inp['ttft_ms']:g} ms" if inp["ttft_ms"] else "")
        + (f"  TPOT<={inp['tpot_ms']:g} ms" if inp["tpot_ms"] else "")
        + (f"  rate={inp['rate']:g} req/s" if inp["rate"] else "")
    )
    # light boxes and short cells so the tables read in an 80-column terminal (the boxed version cut
    # "parallelism" and "prompts/pass" to ellipses there)
    t = Table(
        title=f"Best deployment: {best['mode']}"
        + (f" {best['ratio']}" if best["ratio"] else f" x{best.get('instances', 1)}"),
        **_COMPACT,
    )
    roles = [best["prefill"], best["decode"]] if best["mode"] == "disagg" else [best["prefill"]]
    mixed = len({r["hardware"] for r in roles}) > 1
    for col in (
        ("role", "inst.", "layout", "GPUs/inst.", "batch") + (("hardware",) if mixed else ()) + ("latency",)
    ):
        t.add_column(
            col,
            justify="right" if col in ("inst.", "GPUs/inst.", "batch") else "left",
            no_wrap=col != "latency",
        )
    if best["mode"] == "disagg":
        p, d = best["prefill"], best["decode"]
        kv = best.get("kv_transfer_ms", 0)
        t.add_row(
            *_role_cells("prefill", p, p["instances"], f"{p['batch']}/pass", mixed),
            f"TTFT {p['ttft_ms']:.1f} ms + KV {kv:.1f} ms",
        )
        t.add_row(
            *_role_cells("decode", d, d["instances"], str(d["batch"]), mixed), f"TPOT {d['tpot_ms']:.2f} ms"
        )
        note = "batch: prompts per prefill pass / concurrent decode requests per instance"
    else:
        c = best["prefill"]
        t.add_row(
            *_role_cells("colocated", c, best["instances"], str(c["batch"]), False),
            f"TTFT {c['ttft_ms']:.1f} ms, TPOT {c['tpot_ms']:.2f} ms",
        )
        note = f"batch: concurrent requests per instance, prefill chunk {c['chunk']} tokens"
    console.print(styled(f"[bold]{esc(title)}[/bold]"))
    console.print(t)
    free = ", ".join(
        f"{r} {i['free_memory_gib']:.1f} GiB"
        for r, i in zip(("prefill", "decode"), roles)
        if i.get("free_memory_gib") is not None
    )
    if free and best["mode"] == "colocated":
        free = free.split(", ")[0].replace("prefill", "colocated")
    console.print(
        note
        + f"; hardware {roles[0]['hardware']}" * (not mixed)
        + (f"; free memory per GPU: {free}" if free else ""),
        style="dim",
        highlight=False,
    )
    console.print(
        styled(
            f"TTFT [bold]{best['ttft_ms']:.1f} ms[/bold]  TPOT [bold]{best['tpot_ms']:.2f} ms[/bold]  "
            f"{best['output_tokens_per_s']:,.0f} output tok/s  "
            f"[bold]{best['output_tokens_per_s_per_gpu']:,.1f}[/bold] tok/s/GPU  "
            f"goodput {best['goodput_rps']:.3f} req/s on {best['gpus']} GPUs"
        )
    )
    if best.get("error_band"):
        console.print(f"predictions ±: {best['error_band']}", style="dim", highlight=False)
    _render_load(best)


def _render_load(best: dict) -> None:
    """Percentile headroom, the simulator's verdict and energy per token of the pick."""
    if best.get("slo_percentile") is not None:
        p = f"{best['slo_percentile']:g}"
        h, sim = best["headroom"], best.get("simulated") or {}
        if h["headroom_pct"] is None:  # no --rate: the pick is reported at its goodput
            line = f"p{p} latencies at the p{p} goodput {h['sla_limit_rps']:.3f} req/s (no --rate: no rate headroom)"
        else:
            line = (
                f"p{p} latencies at the operating rate {h['rate_rps']:.3f} req/s; the p{p} SLA holds up to "
                f"{h['sla_limit_rps']:.3f} req/s (headroom {h['headroom_pct']:.1f} %)"
            )
        console.print(line, highlight=False)
        key = p.replace(".", "_")
        if sim:
            verdict = "[green]confirmed[/green]" if sim["meets_sla"] else "[red]not confirmed[/red]"
            console.print(
                styled(
                    f"simulator ({sim['requests']:,} requests): p{p} TTFT {sim[f'ttft_p{key}_ms']:.1f} ms, "
                    f"p{p} TPOT {sim[f'tpot_p{key}_ms']:.2f} ms: {verdict}"
                )
            )
        for r in best.get("simulator_rejected") or ():
            s = r["simulated"]
            console.print(
                f"  turned down first: {r['mode']} {_layout(r)} (analytic goodput {r['goodput_rps']:.3f} req/s): simulated "
                f"p{p} TTFT {s[f'ttft_p{key}_ms']:.1f} ms, p{p} TPOT {s[f'tpot_p{key}_ms']:.2f} ms",
                style="dim",
                highlight=False,
            )
    if best.get("joules_per_output_token") is not None:
        usd = best.get("price_per_hour")
        console.print(
            f"energy {best['joules_per_output_token']:.3g} J per output token at {best['power_w'] / 1e3:,.2f} kW"
            + (
                f"; ${usd_per_million_tokens(usd, best['output_tokens_per_s']):.3f} per million output tokens"
                if usd and best["output_tokens_per_s"] > 0
                else ""
            ),
            highlight=False,
        )


def _render_alternatives(doc: dict) -> None:
    """The best of each mode side by side."""
    best = doc["best"]
    alt = doc.get("alternatives", {})
    if len(alt) > 1:
        c = Table(title="Colocated vs disaggregated (best of each)", **_COMPACT)
        for col in ("mode", "layout", "GPUs", "TTFT ms", "TPOT ms", "tok/s/GPU", "goodput req/s"):
            c.add_column(col, justify="right" if col not in ("mode", "layout") else "left")
        for name, a in alt.items():
            layout = _layout(a)
            mark = " *" if name == best["mode"] else ""
            c.add_row(
                name + mark,
                layout,
                str(a["gpus"]),
                f"{a['ttft_ms']:.1f}",
                f"{a['tpot_ms']:.2f}",
                f"{a['output_tokens_per_s_per_gpu']:,.1f}",
                f"{a['goodput_rps']:.3f}",
            )
        console.print(c)


def _render_pareto(plan, doc: dict) -> None:
    """The Pareto front as a table and a text plot."""
    if doc["pareto"]:
        pt = Table(title="Pareto front: throughput per GPU vs tokens/s per user", **_COMPACT)
        for col in ("mode", "config", "tok/s/user", "tok/s/GPU", "TTFT ms", "TPOT ms"):
            pt.add_column(col, justify="left" if col in ("mode", "config") else "right")
        for p in doc["pareto"]:
            if p["mode"] == "colocated":
                conf = f"{_cfg(p['instance'])} C={p['instance']['batch']} chunk={p['instance']['chunk']}"
            else:
                conf = (
                    f"P {_cfg(p['prefill'])} B={p['prefill']['batch']} | D {_cfg(p['decode'])} "
                    f"C={p['decode']['batch']} ({p['prefill_per_decode']:.2f} P per D)"
                )
            pt.add_row(
                p["mode"],
                conf,
                f"{p['tokens_per_s_per_user']:.1f}",
                f"{p['output_tokens_per_s_per_gpu']:,.1f}",
                f"{p['ttft_ms']:.1f}",
                f"{p['tpot_ms']:.2f}",
            )
        console.print(pt)
        from roofplan.solver.pareto import text_plot

        console.print(Panel(Text(text_plot(plan.frontier)), title="Pareto front", expand=False))


def _render_footer(doc: dict, engines: list[str], written: list[str]) -> None:
    """Search statistics, launchers left out, and the files written or printed."""
    console.print(
        f"searched {doc['searched']:,} candidates ({doc['feasible']:,} feasible) in "
        f"{doc['search_time_s']:.2f} s; rejected: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(doc["rejected"].items()))
    )
    for e, why in doc.get("launch_unsupported", {}).items():
        console.print(f"{e}: not emitted ({why})", style="dim", markup=False, highlight=False)
    if written:
        console.print("wrote " + ", ".join(written), markup=False, highlight=False)
    elif engines:
        for e in engines:
            for name, text in doc["launch"][e].items():
                # a rule, then the text as is: a panel's borders ended up in every copied line
                console.rule(name, style="dim")
                console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
