"""``roofplan simulate``: discrete-event simulation of a serving deployment (docs/SPEC.md §6).

The same deployment flags as ``estimate serve`` under load, or ``--plan plan.json`` (the ``best`` of
``plan serve --json``); the same JSON keys. Thin: parses, calls
:func:`roofplan.serving.simulate_serving`, renders.
"""

from __future__ import annotations

import typer

from roofplan.cli.common import bounded_count, checked, output, run
from roofplan.cli.estimate_serve_cmd import (
    load_workload,
    render_load,
)
from roofplan.cli.options import (
    PP,
    TP,
    Calibration,
    Concurrency,
    EngineChoice,
    EngineOpt,
    ExpertSkew,
    HardwareOrPlan,
    Instances,
    Isl,
    IslDist,
    Json,
    KvDtype,
    ModelOrPlan,
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
    spec_from_flags,
)
from roofplan.errors import InputError


def _read_plan(path: str) -> dict:
    """The ``best`` deployment and ``inputs`` of a ``plan serve --json`` document."""
    from roofplan.inputs import is_file, load_json, read_text, user_path

    p = user_path(path, "--plan")
    if not is_file(p):
        raise InputError("--plan", path, "a readable plan.json (no such file)")
    doc = load_json(
        read_text(p, "--plan", "json"), f"--plan {path}", "a plan.json written by plan serve --json"
    )
    if (
        not isinstance(doc, dict)
        or doc.get("schema") != "roofplan.plan.serve/v1"
        or not isinstance(doc.get("best"), dict)
    ):
        raise InputError("--plan", path, "a roofplan.plan.serve/v1 document with a best deployment")
    return doc


def _plan_spec(inputs: dict):
    """The plan's speculative-decoding setting (``inputs.speculative``) as a SpecDecode, or None."""
    sp = inputs.get("speculative")
    if not isinstance(sp, dict):
        return None
    return spec_from_flags(sp.get("method"), sp.get("draft_tokens"), sp.get("acceptance"))


def plan_deployment(doc: dict) -> dict:
    """Keyword arguments of :func:`roofplan.simulate_serving` for a plan's best deployment:
    its shapes, instance counts and the engine limits it was planned with (colocated: token budget
    chunk + C and C sequences; disaggregated: prompts per pass and decode concurrency)."""
    from roofplan import resolve

    best, inp = doc["best"], doc.get("inputs", {})
    eng = resolve.engine(inp.get("engine", "generic"))
    dec, pre = best["decode"], best["prefill"]
    shape = {k: int(dec[k]) for k in ("tp", "pp", "ep", "dp")}
    kw = dict(
        model=inp.get("model"),
        hardware=dec.get("hardware", inp.get("hardware")),
        dtype=inp.get("dtype", "bf16"),
        kv_dtype=inp.get("kv_dtype"),
        **shape,
    )
    if best["mode"] == "colocated":
        kw.update(
            mode="colocated",
            instances=int(dec["instances"]),
            engine=eng.replace(
                max_num_seqs=int(dec["batch"]),
                max_num_batched_tokens=int(dec.get("max_num_batched_tokens") or 8192),
            ),
        )
    else:
        isl = int(inp.get("isl", 1))
        kw.update(
            mode="disagg",
            prefill_instances=int(pre["instances"]),
            decode_instances=int(dec["instances"]),
            prefill_shape={k: int(pre[k]) for k in ("tp", "pp", "ep", "dp")},
            engine=eng.replace(max_num_seqs=int(dec["batch"])),
            prefill_engine=eng.replace(max_num_batched_tokens=max(int(pre["batch"]) * isl, isl)),
        )
    return kw


def simulate(
    ctx: typer.Context,
    model: ModelOrPlan = None,
    hardware: HardwareOrPlan = None,
    plan: str | None = typer.Option(
        None, "--plan", metavar="FILE", help="Simulate the best deployment of a `plan serve --json` document."
    ),
    tp: TP = 1,
    pp: PP = 1,
    ep: ServeEP = 1,
    dp: ServeDP = 1,
    concurrency: Concurrency = None,
    rate: float | None = typer.Option(
        None, "--rate", help="Poisson arrivals, requests/s (a plan: its goodput)."
    ),
    instances: Instances = 1,
    mode: str = typer.Option("colocated", "--mode", help="colocated | disagg (xPyD)."),
    prefill_instances: int = typer.Option(
        1, "--prefill-instances", callback=bounded_count, help="disagg: prefill instances (x of xPyD)."
    ),
    decode_instances: int = typer.Option(
        1, "--decode-instances", callback=bounded_count, help="disagg: decode instances (y of xPyD)."
    ),
    prefill_tp: int | None = typer.Option(
        None,
        "--prefill-tp",
        callback=bounded_count,
        help="disagg: prefill tensor parallelism (default --tp).",
    ),
    isl: Isl = None,
    osl: Osl = None,
    isl_dist: IslDist = None,
    osl_dist: OslDist = None,
    workload: WorkloadOpt = None,
    requests: int | None = typer.Option(
        None,
        "--requests",
        callback=bounded_count,
        help="Requests to simulate (default: the trace, else 10,000).",
    ),
    router: str = typer.Option("round-robin", "--router", help="round-robin | random"),
    seed: int = typer.Option(0, "--seed", help="Seed of the arrivals and sampled lengths."),
    dtype: ServeDtype = "bf16",
    kv_dtype: KvDtype = None,
    engine: EngineOpt = EngineChoice.generic,
    prefix_hit: PrefixHit = None,
    spec_method: SpecMethod = None,
    spec_tokens: SpecTokens = None,
    spec_accept: SpecAccept = None,
    expert_skew: ExpertSkew = 1.0,
    as_json: Json = False,
    calibration: Calibration = None,
) -> None:
    """Simulate a serving deployment request by request: TTFT/TPOT/latency percentiles, throughput."""

    def body() -> None:
        from roofplan import simulate_serving  # resolves the ids at the door

        if plan is not None:
            doc = _read_plan(plan)
            kw = plan_deployment(doc)
            inp = doc.get("inputs", {})
            wl = load_workload(
                isl or (None if (isl_dist or workload) else inp.get("isl")),
                osl or (None if (osl_dist or workload) else inp.get("osl")),
                isl_dist,
                osl_dist,
                workload,
                seed,
            )
            r = rate if (rate is not None or concurrency is not None) else doc["best"].get("goodput_rps")
            hit = prefix_hit if prefix_hit is not None else inp.get("prefix_hit_tokens") or None
            sim = simulate_serving(
                workload=wl,
                rate=r,
                concurrency=concurrency,
                router=router,
                requests=requests,
                seed=seed,
                calibration=calibration,
                prefix_hit=hit,
                speculative=spec_from_flags(spec_method, spec_tokens, spec_accept) or _plan_spec(inp),
                expert_skew=expert_skew if expert_skew != 1.0 else inp.get("expert_skew") or 1.0,
                **kw,
            )
        else:
            if model is None or hardware is None:
                raise InputError("--model/--hardware", None, "both, or --plan plan.json")
            wl = load_workload(isl, osl, isl_dist, osl_dist, workload, seed)
            sim = simulate_serving(
                model,
                hardware,
                workload=wl,
                rate=rate,
                concurrency=concurrency,
                instances=instances,
                mode=mode,
                prefill_instances=prefill_instances,
                decode_instances=decode_instances,
                prefill_shape=None if prefill_tp is None else {"tp": prefill_tp},
                router=router,
                requests=requests,
                seed=seed,
                **serving_kwargs(ctx.params),
            )
        output(checked(sim.to_json(), calibration), as_json, _render)

    return run(body)


def _render(doc: dict) -> None:
    render_load(
        doc,
        f"simulated ({doc['inputs']['simulated_requests']:,} requests, {doc['timing']['simulate_s']:.2f} s)",
    )


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
