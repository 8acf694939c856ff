"""``roofplan plan train``: search training configurations for a GPU budget (docs/SPEC.md §3.3).

Thin: parses the flags, calls :func:`roofplan.solver.train_planner.plan_training`, renders a ranked
rich table (or one JSON document with ``--json``), and with ``--out`` writes the launch files and
``plan.json`` — only after the whole plan succeeded. A progress bar appears on stderr for searches
that take longer than a second, only on a terminal and never with ``--json``.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich import box
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from roofplan.cli.common import (
    bounded_count,
    check_out_dir,
    checked,
    console,
    err_console,
    esc,
    print_json,
    run,
    split_names,
    styled,
    warn_stale,
)
from roofplan.cli.options import (
    Calibration,
    GlobalBatch,
    Hardware,
    Json,
    Model,
    OutDir,
    Price,
    SeqLen,
    TrainDtype,
    flag,
)
from roofplan.cli.render import progress_bar
from roofplan.errors import InputError
from roofplan.inputs import parse_tokens


class _LazyProgress:
    """A rich progress bar that shows itself only once a search has run for more than a second."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.bar: Progress | None = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < 1.0:
                return
            self.bar = progress_bar(
                "searching", TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()
            )
            self.task = self.bar.add_task("search", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _offload_cell(state: str, act_layers: int) -> str:
    """The ``off`` column: optimizer/parameter offload, then activation offload of N layers."""
    if not act_layers:
        return state
    return f"act:{act_layers}" if state == "-" else f"{state}+act:{act_layers}"


def _si(v: float) -> str:
    """1234567 -> '1.23M' (tokens/s in a narrow column)."""
    for unit, f in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= f:
            return f"{v / f:.3g}{unit}" if v / f < 1000 else f"{v / f:,.0f}{unit}"
    return f"{v:.3g}"


def _candidates_table(cands: list[dict], objective: str) -> Table:
    """'Best training configurations': one row per ranked candidate (the first in bold green),
    with the GPU-count and EP columns only when they vary and the cost or energy column when
    that is the objective."""
    t = Table(
        title="Best training configurations",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
        show_edge=False,
    )
    moe = any(c["ep"] > 1 for c in cands)
    many_gpus = len({c["gpus"] for c in cands}) > 1
    has_cost = objective == "cost" and any("usd_per_million_tokens" in c for c in cands)
    cols = (
        ["#", "tie"]
        + (["GPUs"] if many_gpus else [])
        + ["layout", "vpp", "mb"]
        + (["ep"] if moe else [])
        + ["rc", "Z", "off", "step s", "tok/s", "MFU", "GiB", "free"]
    )
    has_energy = objective == "energy" and any("joules_per_token" in c for c in cands)
    if has_cost:
        cols.append("$/Mtok")
    if has_energy:
        cols.append("J/tok")
    for c in cols:
        t.add_column(c, justify="left" if c in ("rc", "off", "layout") else "right", no_wrap=True)
    short_off = {"none": "-", "optimizer": "opt", "optimizer+params": "opt+par"}
    for c in cands:
        row = (
            [str(c["rank"]), "≈" if c.get("tied_with_best") else ""]
            + ([str(c["gpus"])] if many_gpus else [])
            + [_layout_cell(c), str(c["vpp"]), str(c["micro_batch"])]
        )
        if moe:
            row.append(str(c["ep"]))
        row += [
            _recompute_cell(c),
            str(c["zero"]),
            _offload_cell(short_off[c["offload"]], c.get("act_offload_layers", 0)),
            f"{c['step_time_s']:.2f}",
            _si(c["tokens_per_s"]),
            f"{c['mfu']:.1%}",
            f"{c['memory_gib_per_gpu']['total']:.1f}",
            f"{c['free_memory_gib']:.1f}",
        ]
        if has_cost:
            v = c.get("usd_per_million_tokens")
            row.append("-" if v is None else f"{v:.3f}")
        if has_energy:
            v = c.get("joules_per_token")
            row.append("-" if v is None else f"{v:.4f}")
        t.add_row(*row, style="bold green" if c["rank"] == 1 else None)
    return t


def _layout_cell(c: dict) -> str:
    """A candidate's layout as TPxPPxDPxCP with its switches (+sp, +ov, +deepep, +delayed)."""
    return (
        f"{c['tp']}x{c['pp']}x{c['dp']}x{c['cp']}"
        + ("+sp" if c["sequence_parallel"] else "")
        + ("+ov" if c.get("tp_comm_overlap") else "")
        + ("+deepep" if c.get("moe_dispatcher") == "deepep" else "")
        + ("+delayed" if c.get("fp8_recipe") == "delayed" and c["dtype"] == "fp8" else "")
    )


def _recompute_cell(c: dict) -> str:
    """A candidate's recompute: -, sel, full, or full:N for N layers per stage."""
    rc = {"none": "-", "selective": "sel", "full": "full"}[c["recompute"]]
    if c["recompute"] == "full" and c["recompute_layers"]:
        rc += f":{c['recompute_layers']}"
    return rc


def _render(doc: dict, written: list[str], frameworks: list[str] | None = None) -> None:
    i = doc["inputs"]
    console.print(
        styled(
            f"[bold]{esc(i['model'])}[/bold] on [bold]{i['gpus']} x {esc(i['hardware'])}[/bold]: global "
            f"batch {i['global_batch']} x {i['seq_len']} tokens, {i['dtype']}, objective {i['objective']}"
        )
    )
    cands = doc["candidates"]
    t = _candidates_table(cands, doc["objective"]["name"])
    console.print(t)
    cap = cands[0]["memory_gib_per_gpu"]["capacity"]
    console.print(
        f"layout TPxPPxDPxCP (+sp: sequence parallel, +ov: TP-comm overlap, +deepep: DeepEP dispatcher, "
        f"+delayed: FP8 delayed scaling), vpp virtual stages, mb micro-batch, Z ZeRO "
        f"stage, rc recompute (full:N = N layers per stage), off offload (act:N = activations of N layers), GiB per GPU of {cap:.0f}, free "
        f"GiB left (at least the {i['memory_headroom_gib']:.1f} GiB headroom), ≈ tied with the best within "
        "the error band",
        style="dim",
    )
    console.print(
        f"predictions ±: {cands[0]['error_band']}; ≈ rows are ranked simplest first", highlight=False
    )
    rej = ", ".join(f"{k} {v:,}" for k, v in sorted(doc["rejected"].items(), key=lambda kv: -kv[1]) if v)
    console.print(
        f"searched {doc['searched']:,} configurations, evaluated {doc['evaluated']:,}, feasible "
        f"{doc['feasible']:,} in {doc['search_time_s']:.2f} s; rejected: {rej or 'none'}"
    )
    console.print(styled(f"[bold]why #1 wins:[/bold] {esc(doc['why']['summary'])}"))
    for w in cands[0]["warnings"]:
        console.print(styled(f"[bold yellow]warning:[/bold yellow] {esc(w)}"), highlight=False)
    _render_placement_and_goal(doc["placement"], doc["objective"], cands[0])
    for fw, cmd in doc["launch"].items():
        console.print(styled(f"[bold]{esc(fw)}:[/bold]"))
        console.print(cmd, soft_wrap=True, highlight=False, markup=False)
    for fw, why in doc.get("launch_unsupported", {}).items():
        if frameworks is None or fw in frameworks:  # with --emit: only about the launchers asked for
            console.print(f"{fw}: not emitted ({why})", style="dim", markup=False, highlight=False)
    for path in written:
        console.print(f"wrote {path}", highlight=False)


def _off_platform(hw) -> dict[str, str]:
    """Launchers that cannot run on device ``hw`` (a DeviceSpec) at all (vendor), with the reason."""
    from roofplan.launch.platforms import unsupported_on
    from roofplan.solver.plan_types import FRAMEWORKS

    return {fw: why for fw in FRAMEWORKS if (why := unsupported_on(fw, hw))}


def plan_train(
    model: Model,
    hardware: Hardware,
    gpus: int = typer.Option(..., "--gpus", callback=bounded_count, help="GPU budget (world size)."),
    global_batch: GlobalBatch = ...,
    seq_len: SeqLen = ...,
    dtype: TrainDtype = "bf16",
    objective: str = typer.Option(
        "throughput", "--objective", help="throughput (tokens/s) | cost ($ per token) | energy (J per token)."
    ),
    tokens: str | None = typer.Option(
        None, "--tokens", help="Token budget (e.g. 15T): report days, $ and kWh."
    ),
    price: Price = None,
    top: int = typer.Option(5, "--top", callback=bounded_count, help="How many ranked candidates to show."),
    emit: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--emit",
        metavar="FRAMEWORK",
        help="megatron | deepspeed | torchtitan (repeatable or comma list); "
        "restricts the search to what the launcher expresses.",
    ),
    out: OutDir = None,
    target: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--target",
        metavar="FW=VERSION",
        help="Framework release the launch files are written for (e.g. megatron=core_v0.16); "
        "default the current release.",
    ),
    gpus_per_node: int | None = typer.Option(
        None, "--gpus-per-node", callback=bounded_count, help="Default: the catalog's node size."
    ),
    allow_cross_node_tp: Annotated[bool, flag("--allow-cross-node-tp", "Let TP span nodes.")] = False,
    max_micro_batch: int = typer.Option(
        16, "--max-micro-batch", callback=bounded_count, help="Largest micro-batch searched."
    ),
    fix: str | None = typer.Option(
        None,
        "--fix",
        metavar="K=V,...",
        help="Fix knobs (tp pp dp cp ep etp vpp mb zero recompute offload sp tp_overlap dispatcher fp8_recipe "
        "act_offload), "
        "e.g. tp=8,pp=16.",
    ),
    exclude: str | None = typer.Option(
        None, "--exclude", metavar="COND,...", help="Exclude matches, e.g. cp>1,zero=3."
    ),
    memory_headroom: float | None = typer.Option(
        None,
        "--memory-headroom",
        metavar="GIB",
        help="Free GiB per GPU a plan must leave (default 5% of HBM + 1 GiB).",
    ),
    json_out: Json = False,
    calibration: Calibration = None,
) -> None:
    """Search every valid training configuration for a GPU budget and print the best."""

    def body():
        from roofplan import (
            plan_training,  # resolves, plans and asks launch for the commands
            resolve,
        )
        from roofplan.hardware.pricing import apply_prices, parse_prices
        from roofplan.launch import registry
        from roofplan.launch.versions import parse_targets
        from roofplan.solver.plan_types import FRAMEWORKS

        frameworks = split_names("emit", emit, FRAMEWORKS)
        targets = parse_targets(target)
        device = resolve.hardware(hardware)  # the catalog is read once; the planner applies the overlay
        off_platform = _off_platform(device)
        for fw in frameworks or ():
            if fw in off_platform:
                ok = [x for x in FRAMEWORKS if x not in off_platform]
                raise InputError("emit", fw, off_platform[fw] + (f"; use {' or '.join(ok)}" if ok else ""))
        check_out_dir(out)  # before the search: a bad --out fails fast and nothing is written
        from roofplan.solver.constraints import parse

        constraints = parse(fix, exclude=False, field="fix") + parse(exclude, exclude=True, field="exclude")
        n_tokens = parse_tokens(tokens)
        hw_arg = apply_prices(device, parse_prices(price))
        bar = _LazyProgress(enabled=not json_out and err_console.is_terminal)
        try:
            plan = plan_training(
                resolve.model(model),
                hw_arg,
                gpus=gpus,
                global_batch=global_batch,
                seq_len=seq_len,
                dtype=dtype,
                objective=objective,
                top=top,
                tokens=n_tokens,
                calibration=calibration,
                gpus_per_node=gpus_per_node,
                allow_cross_node_tp=allow_cross_node_tp,
                emit=frameworks,
                max_micro_batch=max_micro_batch,
                progress=bar,
                constraints=constraints,
                memory_headroom_gib=memory_headroom,
                targets=targets,
            )
        finally:
            bar.close()
        for fw, why in off_platform.items():  # launchers that do not run on this device: not emitted
            plan.launch.pop(fw, None)
            plan.launch_unsupported[fw] = why
        doc = checked(plan.to_json(), calibration)  # before anything is written
        written: list[str] = []
        if out is not None:
            chosen = frameworks or [fw for fw in FRAMEWORKS if fw in plan.launch]
            written = registry.write_plan(out, registry.train_files(plan, chosen, targets), plan.to_json())
            warn_stale(out, written)
        if json_out:
            if written:
                doc["written"] = written
            print_json(doc)
        else:
            _render(doc, written, frameworks)

    return run(body)


def register(group) -> None:
    group.command("train")(plan_train)


def _render_placement_and_goal(p: dict, obj: dict, best: dict) -> None:
    """The pick's placement (what lives where, the offload bandwidth it needs), its time, cost and
    energy to train the token goal, and its energy per token."""
    if p.get("method") not in (None, "none"):
        states = ", ".join(f"{k}: {v}" for k, v in p["states"].items())
        bw = ", ".join(f"{k} {v:.2f} GB/s" for k, v in p.get("bandwidth_needed_GBps", {}).items()) or "none"
        console.print(
            styled(
                f"[bold]placement ({p['method']}{', applied' if p.get('applied') else ''}):[/bold] "
                + esc(
                    f"{states}; recompute {p['recompute']}"
                    + (f" ({p['recompute_layers']} layers/stage)" if p["recompute"] == "full" else "")
                    + f"; offload link bandwidth needed {bw}"
                )
            )
        )
    if obj.get("tokens"):
        days, usd = obj.get("time_to_train_days"), obj.get("cost_to_train_usd")
        kwh = obj.get("energy_to_train_kwh")
        console.print(
            styled(
                f"[bold]time to train {obj['tokens']:.3g} tokens:[/bold] {days:.1f} days"
                + (f", ${usd:,.0f}" if usd is not None else "")
                + (f", {kwh / 1e3:,.1f} MWh (GPU boards)" if kwh is not None else "")
            )
        )
    if best.get("joules_per_token") is not None:
        console.print(
            f"energy: {best['joules_per_token']:.4g} J per token, {best['power_w_per_gpu']:.0f} W per GPU "
            f"(power model: idle {obj.get('power_idle_w'):.0f} W to {obj.get('power_max_w'):.0f} W)",
            highlight=False,
        )
