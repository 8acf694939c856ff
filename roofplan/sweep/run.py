"""Run sweep scenarios through the public API and turn each plan into one flat row.

:func:`run_scenario` is the unit of work: it calls :func:`roofplan.plan_training` or
:func:`roofplan.plan_serving` and returns a row (the best plan's predicted numbers, $, energy, or
the reason nothing fits). It is a plain top-level function of plain data, so a process pool and Ray
tasks run exactly the same code; rows carry no wall-clock values, so a local and a Ray run of a spec
give identical rows.

Executors: :func:`run_local` (a process pool over the cores; inline with one worker) and
:func:`run_ray` (one Ray task per scenario on an existing cluster or a local one). Both call
``on_row`` as rows finish, in completion order; :mod:`roofplan.sweep.output` restores spec order.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable

from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.spec import usd_per_million_tokens
from roofplan.sweep.spec import SCENARIO_KEYS

#: Result columns, after the scenario's own (SCENARIO_KEYS); one schema for training and serving
#: rows (a column that does not apply is empty).
RESULT_KEYS = (
    "status",
    "reason",
    "layout",
    "gpus_used",
    "tokens_per_s",
    "step_time_s",
    "mfu",
    "deployment",
    "ttft_ms_pred",
    "tpot_ms_pred",
    "output_tokens_per_s",
    "output_tokens_per_s_per_gpu",
    "tokens_per_s_per_user",
    "goodput_rps",
    "price_per_hour",
    "usd_per_million_tokens",
    "power_w",
    "joules_per_token",
    "time_to_train_days",
    "cost_to_train_usd",
    "energy_to_train_kwh",
    "pareto",
)
COLUMNS = ("index", "id") + SCENARIO_KEYS + RESULT_KEYS


def run_scenario(scenario: dict, prices: dict | None = None) -> dict:
    """One row for ``scenario``: status ``ok``, ``infeasible`` (exit-3 reason) or ``error``."""
    row = {k: scenario.get(k) for k in ("index", "id") + SCENARIO_KEYS}
    try:
        row.update(
            _train(scenario, prices or {}) if scenario["kind"] == "train" else _serve(scenario, prices or {})
        )
        row["status"] = "ok"
    except InfeasibleError as exc:
        row.update(status="infeasible", reason=str(exc))
    except InputError as exc:
        row.update(status="error", reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - one bad scenario must not end a sweep of thousands
        row.update(status="error", reason=f"internal error: {exc.__class__.__name__}: {exc}")
    return {k: _clean(row.get(k)) for k in COLUMNS}


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _train(s: dict, prices: dict) -> dict:
    import roofplan
    from roofplan import resolve
    from roofplan.hardware.pricing import apply_prices

    hw = apply_prices(resolve.hardware(s["hardware"]), prices, strict=False)
    plan = roofplan.plan_training(
        s["model"],
        hw,
        gpus=s["gpus"],
        global_batch=s["global_batch"],
        seq_len=s["seq_len"],
        dtype=s.get("dtype") or "bf16",
        objective=s["objective"],
        tokens=s.get("tokens"),
        top=1,
        calibration=s.get("overlay"),
    )
    b = plan.best
    layout = f"tp{b['tp']} pp{b['pp']} dp{b['dp']} cp{b['cp']} ep{b['ep']} vpp{b['vpp']} mb{b['micro_batch']}"
    layout += f" {b['recompute']} zero{b['zero']}" + (" sp" if b["sequence_parallel"] else "")
    price = plan.hardware.price_per_hour
    return {
        "layout": layout,
        "gpus_used": b["gpus"],
        "tokens_per_s": b["tokens_per_s"],
        "step_time_s": b["step_time_s"],
        "mfu": b["mfu"],
        "price_per_hour": None if price is None else price * b["gpus"],
        "usd_per_million_tokens": b.get("usd_per_million_tokens"),
        "power_w": None if b.get("power_w_per_gpu") is None else b["power_w_per_gpu"] * b["gpus"],
        "joules_per_token": b.get("joules_per_token"),
        "time_to_train_days": b.get("time_to_train_days"),
        "cost_to_train_usd": b.get("cost_to_train_usd"),
        "energy_to_train_kwh": b.get("energy_to_train_kwh"),
    }


def _serve(s: dict, prices: dict) -> dict:
    import roofplan
    from roofplan import resolve
    from roofplan.hardware.pricing import apply_prices

    hw = apply_prices(resolve.pools(s["hardware"]), prices, strict=False)
    plan = roofplan.plan_serving(
        s["model"],
        hw,
        gpus=s["gpus"],
        isl=s["isl"],
        osl=s["osl"],
        ttft_ms=s.get("ttft_ms"),
        tpot_ms=s.get("tpot_ms"),
        rate=s.get("rate"),
        mode=s.get("mode") or "auto",
        engine=s.get("engine") or "generic",
        dtype=s.get("dtype") or "bf16",
        kv_dtype=s.get("kv_dtype"),
        objective=s["objective"],
        emit_launch=False,
        calibration=s.get("overlay"),
    )
    b = plan.best
    out_tps = b["output_tokens_per_s"]
    price = b.get("price_per_hour")
    return {
        "layout": _serve_layout(b),
        "gpus_used": b["gpus"],
        "deployment": b["mode"],
        "ttft_ms_pred": b["ttft_ms"],
        "tpot_ms_pred": b["tpot_ms"],
        "output_tokens_per_s": out_tps,
        "output_tokens_per_s_per_gpu": b["output_tokens_per_s_per_gpu"],
        "tokens_per_s_per_user": b["tokens_per_s_per_user"],
        "goodput_rps": b["goodput_rps"],
        "price_per_hour": price,
        "usd_per_million_tokens": usd_per_million_tokens(price, out_tps) if price and out_tps else None,
        "power_w": b.get("power_w"),
        "joules_per_token": b.get("joules_per_output_token"),
        "pareto": json.dumps(_pareto_points(plan, hw), separators=(",", ":")),
    }


def _serve_layout(b: dict) -> str:
    def inst(d: dict) -> str:
        return f"{d['instances']}x(tp{d['tp']} pp{d['pp']} ep{d['ep']} dp{d['dp']} b{d['batch']})"

    if b["mode"] == "colocated":
        return "colocated " + inst(b["prefill"])
    return f"disagg P {inst(b['prefill'])} D {inst(b['decode'])}"


def _pareto_points(plan, hw) -> list[list[float]]:
    """The plan's front as [tokens/s per user, output tokens/s per GPU, USD per GPU-hour or None]."""
    from roofplan import resolve

    usd = {dev.id: dev.price_per_hour for dev in resolve.devices(resolve.pools(hw))}
    return [
        [
            p["tokens_per_s_per_user"],
            p["output_tokens_per_s_per_gpu"],
            usd.get((p.get("instance") or p.get("decode"))["hardware"]),
        ]
        for p in plan.pareto
    ]


# -- executors ------------------------------------------------------------------------------------


def _worker_count(workers: int | None, n: int) -> int:
    return max(1, min(n, workers or os.cpu_count() or 1))


def run_local(
    scenarios: list[dict], prices: dict, on_row: Callable[[dict], None], workers: int | None = None
) -> None:
    """Every scenario in a process pool of ``workers`` (default: the cores), or inline with one."""
    n = _worker_count(workers, len(scenarios))
    if n == 1:
        for s in scenarios:
            on_row(run_scenario(s, prices))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn" if os.name == "nt" else "forkserver")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        futures = [pool.submit(run_scenario, s, prices) for s in scenarios]
        for f in as_completed(futures):
            on_row(f.result())


def run_ray(
    scenarios: list[dict],
    prices: dict,
    on_row: Callable[[dict], None],
    address: str | None = None,
    num_cpus: int | None = None,
) -> None:
    """Every scenario as a Ray task. ``address``: an existing cluster (``auto``, ``host:port``,
    ``ray://host:10001``); None starts a local Ray with ``num_cpus`` workers."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": num_cpus}
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **kw)
    try:
        task = ray.remote(num_cpus=1)(run_scenario)
        prices_ref = ray.put(prices)
        pending = [task.remote(s, prices_ref) for s in scenarios]
        while pending:
            done, pending = ray.wait(pending, num_returns=min(len(pending), 16), timeout=1.0)
            for ref in done:
                on_row(ray.get(ref))
    finally:
        if started:
            ray.shutdown()


def require_ray():
    """The ``ray`` module, or an InputError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InputError("ray", "not installed", "pip install 'roofplan[ray]' (or pip install ray)") from None
    return ray
