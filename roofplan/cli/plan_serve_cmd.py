"""``roofplan plan serve``: search colocated and disaggregated serving deployments (SPEC §3.4)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from roofplan.cli.common import CALIBRATION_OPTION, JSON_OPTION, console, print_json, run
from roofplan.errors import InputError

EMITTERS = ("vllm", "sglang", "trtllm", "dynamo")


def register(group) -> None:
    group.command("serve")(plan_serve)


def plan_serve(
    model: str = typer.Option(..., "--model", help="Model preset id, HF config.json or model YAML."),
    hardware: str = typer.Option(
        ..., "--hardware", help="Hardware id, or ID:prefill,ID:decode for separate device pools."
    ),
    gpus: str = typer.Option(
        ..., "--gpus", help="GPU budget (N), or one per pool in --hardware order (8,8)."
    ),
    isl: int = typer.Option(..., "--isl", help="Input (prompt) tokens per request."),
    osl: int = typer.Option(..., "--osl", help="Output tokens per request."),
    ttft_ms: Optional[float] = typer.Option(None, "--ttft-ms", help="Time-to-first-token target (ms)."),
    tpot_ms: Optional[float] = typer.Option(None, "--tpot-ms", help="Time-per-output-token target (ms)."),
    rate: Optional[float] = typer.Option(None, "--rate", help="Requests/s to sustain (else: maximise)."),
    mode: str = typer.Option("auto", "--mode", help="auto | colocated | disagg."),
    engine: str = typer.Option("generic", "--engine", help="generic | vllm | sglang | trtllm."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weight dtype: bf16 | fp16 | fp8 | int8 | int4."),
    kv_dtype: Optional[str] = typer.Option(None, "--kv-dtype", help="KV-cache dtype: bf16 | fp8 | int8."),
    objective: str = typer.Option("gpus", "--objective", help="With --rate: fewest gpus | lowest cost."),
    emit: Optional[str] = typer.Option(None, "--emit", help="vllm | sglang | trtllm | dynamo (comma list)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the launch files and plan.json here."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Save the Pareto front as a PNG (matplotlib)."),
    json_out: bool = JSON_OPTION,
    calibration: Optional[str] = CALIBRATION_OPTION,
) -> None:
    """Search serving deployments for a GPU budget: colocated and prefill/decode disaggregated."""
    return run(
        lambda: _impl(
            model,
            hardware,
            gpus,
            isl,
            osl,
            ttft_ms,
            tpot_ms,
            rate,
            mode,
            engine,
            dtype,
            kv_dtype,
            objective,
            emit,
            out,
            plot,
            json_out,
            calibration,
        )
    )


def _emitters(emit: str | None) -> list[str]:
    if emit is None:
        return list(EMITTERS)
    names = [e.strip() for e in emit.split(",") if e.strip()]
    for e in names:
        if e not in EMITTERS:
            raise InputError("emit", e, "one of " + ", ".join(EMITTERS) + " (comma-separated)")
    return names


def _gpus(value: str):
    return value if "," in value else _int("gpus", value)


def _int(field: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(field, value, "a positive integer (or one per pool: 8,8)") from None


def _impl(
    model,
    hardware,
    gpus,
    isl,
    osl,
    ttft_ms,
    tpot_ms,
    rate,
    mode,
    engine,
    dtype,
    kv_dtype,
    objective,
    emit,
    out,
    plot,
    json_out,
    calibration,
):
    from roofplan.launch.common import dumps_json, write_files
    from roofplan.solver import pareto
    from roofplan.solver.serve_planner import plan_serving

    engines = _emitters(emit)
    if plot is not None:
        pareto.require_matplotlib()  # fail before searching, and before anything is written
    if out is not None and out.exists() and not out.is_dir():
        raise InputError("out", str(out), "a directory (or a path that does not exist yet)")
    plan = plan_serving(
        model,
        hardware,
        gpus=_gpus(gpus),
        isl=isl,
        osl=osl,
        ttft_ms=ttft_ms,
        tpot_ms=tpot_ms,
        rate=rate,
        mode=mode,
        engine=engine,
        dtype=dtype,
        kv_dtype=kv_dtype,
        calibration=calibration,
        objective=objective,
    )
    plan.launch = {k: v for k, v in plan.launch.items() if k in engines}
    doc = plan.to_json()
    written: list[str] = []
    if out is not None:
        files = {name: text for e in engines for name, text in plan.launch[e].items()}
        files["plan.json"] = dumps_json(_json_safe(doc))
        written = write_files(out, files, executable=[n for n in files if n.endswith(".sh")])
    if plot is not None:
        pareto.save_png(
            plan.frontier, str(plot), title=f"{doc['inputs']['model']} on {doc['inputs']['hardware']}"
        )
        written.append(str(plot))
    if json_out:
        print_json(doc)
        return
    _render(plan, doc, engines if emit else [], written)


def _json_safe(doc: dict) -> dict:
    from roofplan.cli.common import _plain

    return _plain(doc)


def _cfg(c: dict) -> str:
    s = f"tp={c['tp']} pp={c['pp']}"
    if c["dp"] > 1 or c["ep"] > 1:
        s += f" dp={c['dp']} ep={c['ep']}"
    return s


def _render(plan, doc: dict, engines: list[str], written: list[str]) -> None:
    best = doc["best"]
    inp = doc["inputs"]
    title = (
        f"{inp['model']} on {inp['gpus']} x {inp['hardware']}  isl={inp['isl']} osl={inp['osl']}"
        + (f"  TTFT<={inp['ttft_ms']:g} ms" if inp["ttft_ms"] else "")
        + (f"  TPOT<={inp['tpot_ms']:g} ms" if inp["tpot_ms"] else "")
        + (f"  rate={inp['rate']:g} req/s" if inp["rate"] else "")
    )
    t = Table(
        title=f"Best deployment: {best['mode']}"
        + (f" {best['ratio']}" if best["ratio"] else f" x{best.get('instances', 1)}")
    )
    for col in ("role", "instances", "parallelism", "batch", "GPUs each", "hardware", "latency"):
        t.add_column(col)
    if best["mode"] == "disagg":
        p, d = best["prefill"], best["decode"]
        t.add_row(
            "prefill",
            str(p["instances"]),
            _cfg(p),
            f"{p['batch']} prompts/pass",
            str(p["gpus_per_instance"]),
            p["hardware"],
            f"TTFT {p['ttft_ms']:.1f} ms + KV {best.get('kv_transfer_ms', 0):.1f} ms",
        )
        t.add_row(
            "decode",
            str(d["instances"]),
            _cfg(d),
            f"{d['batch']} concurrent",
            str(d["gpus_per_instance"]),
            d["hardware"],
            f"TPOT {d['tpot_ms']:.2f} ms",
        )
    else:
        c = best["prefill"]
        t.add_row(
            "colocated",
            str(best["instances"]),
            _cfg(c),
            f"{c['batch']} concurrent, chunk {c['chunk']}",
            str(c["gpus_per_instance"]),
            c["hardware"],
            f"TTFT {c['ttft_ms']:.1f} ms, TPOT {c['tpot_ms']:.2f} ms",
        )
    console.print(f"[bold]{title}[/bold]")
    console.print(t)
    console.print(
        f"TTFT [bold]{best['ttft_ms']:.1f} ms[/bold]  TPOT [bold]{best['tpot_ms']:.2f} ms[/bold]  "
        f"{best['output_tokens_per_s']:,.0f} output tok/s  "
        f"[bold]{best['output_tokens_per_s_per_gpu']:,.1f}[/bold] tok/s/GPU  "
        f"goodput {best['goodput_rps']:.3f} req/s on {best['gpus']} GPUs"
    )

    alt = doc.get("alternatives", {})
    if len(alt) > 1:
        c = Table(title="Colocated vs disaggregated (best of each)")
        for col in ("mode", "layout", "GPUs", "TTFT ms", "TPOT ms", "tok/s/GPU", "goodput req/s"):
            c.add_column(col, justify="right" if col not in ("mode", "layout") else "left")
        for name, a in alt.items():
            layout = a["ratio"] if a["ratio"] else f"{a.get('instances', 1)} x ({_cfg(a['prefill'])})"
            if a["ratio"]:
                layout += f" P({_cfg(a['prefill'])}) D({_cfg(a['decode'])})"
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

    if doc["pareto"]:
        pt = Table(title="Pareto front: throughput per GPU vs tokens/s per user")
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
    console.print(
        f"searched {doc['searched']:,} candidates ({doc['feasible']:,} feasible) in "
        f"{doc['search_time_s']:.2f} s; rejected: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(doc["rejected"].items()))
    )
    if written:
        console.print("wrote " + ", ".join(written))
    elif engines:
        for e in engines:
            for name, text in doc["launch"][e].items():
                console.print(Panel(Text(text), title=name, expand=False))
