"""Serving under load, resolved from ids: ``estimate serve --concurrency/--rate`` and ``simulate``.

Both take one deployment (an instance shape, ``instances`` replicas behind a router; or xPyD for the
simulator) and a :class:`~roofplan.workload.Workload`, and return the ``roofplan.estimate.serve/v1``
document of docs/SPEC.md §3.2 with the load keys of docs/SPEC.md §6: ``ttft_ms``/``tpot_ms``/``latency_ms`` stay the
means; ``*_p50_ms``, ``*_p90_ms``, ``*_p99_ms``, ``output_tokens_per_s`` (whole deployment) and
``utilisation`` (request rate / the largest sustainable rate) are added. The analytic numbers come
from :mod:`roofplan.costmodel.serve_load`, the simulated ones from
:mod:`roofplan.costmodel.serve_sim`; both use the same iteration times (``serve_load.round_time``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel import serve_load, serve_sim
from roofplan.costmodel.collectives import collective_time
from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.engines import ENGINES, load_engine
from roofplan.workload import Workload

SCHEMA = "roofplan.estimate.serve/v1"
#: Requests a simulation runs when the workload does not fix them (a sampled distribution).
SIM_REQUESTS = 10000


def _positive(name: str, value, integer: bool = True):
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok and integer:
        ok = float(value) == int(value)
    if not ok or not math.isfinite(float(value)) or value <= 0:
        raise InputError(name, value, "a positive " + ("integer" if integer else "number"))
    return int(value) if integer else float(value)


def make_instance(model, hw, *, tp=1, pp=1, ep=1, dp=1, dtype="bf16", kv_dtype=None, engine="generic",
                  calibration=None, isl=1024, osl=128) -> serve_load.Instance:
    """An :class:`~roofplan.costmodel.serve_load.Instance` from ids or specs (bad input: exit 2)."""
    if not isinstance(engine, serve_model.EngineProfile) and engine not in ENGINES:
        raise InputError("engine", engine, "one of " + ", ".join(ENGINES))
    vals = {k: _positive(k, v) for k, v in dict(tp=tp, pp=pp, ep=ep, dp=dp).items()}
    m = serve_model._resolve_model(model)
    h = serve_model._resolve_hw(hw, calibration)
    prof = load_engine(engine, calibration)
    cfg = serve_model.ServeConfigs(**vals, batch=1, isl=int(isl), osl=int(osl), dtype=dtype, kv_dtype=kv_dtype,
                                   engine=prof.name)
    serve_model.validate_serve_config(m, cfg)
    return serve_load.Instance(m, h, prof, cfg)


def _static(inst: serve_load.Instance, batch: int, wl: Workload) -> dict:
    """The static document of the instance at ``batch`` running requests of the mean lengths
    (memory, max batch and the breakdown of one prefill and one decode step)."""
    c = inst.cfg
    est = serve_model.estimate_serving(
        inst.model, inst.hw, tp=int(c.tp[0]), pp=int(c.pp[0]), ep=int(c.ep[0]), dp=int(c.dp[0]),
        batch=max(int(batch), 1), isl=max(int(round(float(np.mean(wl.isl)))), 1),
        osl=max(int(round(float(np.mean(wl.osl)))), 1), dtype=c.dtype, kv_dtype=c.kv_dtype, engine=inst.engine,
    )
    return est.to_json()


def _percentile_keys(doc: dict, name: str, s: dict) -> None:
    doc[f"{name}_ms"] = s["mean"] * 1e3
    for p in serve_load.PERCENTILES:
        doc[f"{name}_p{p}_ms"] = s[f"p{p}"] * 1e3


@dataclass
class LoadEstimate:
    """The analytic estimate of a deployment under load; ``to_json()`` is the docs/SPEC.md document."""

    instance: serve_load.Instance
    workload: Workload
    result: serve_load.LoadResult

    def to_json(self) -> dict:
        r = self.result
        running = max(int(round(r.running_per_instance)), 1)
        doc = _static(self.instance, running, self.workload)
        gpus = int(self.instance.cfg.devices[0]) * r.instances
        doc["inputs"].update(
            batch=running, isl=int(round(float(np.mean(self.workload.isl)))),
            osl=int(round(float(np.mean(self.workload.osl)))), load=r.mode, instances=r.instances,
            gpus_total=gpus, token_budget=r.budget, workload=self.workload.describe(),
            **({"concurrency": int(r.concurrency)} if r.mode == "concurrency" else {"rate_rps": r.rate_rps}),
        )
        for name, s in (("ttft", r.ttft_s), ("tpot", r.tpot_s), ("latency", r.latency_s)):
            _percentile_keys(doc, name, s)
        doc.update(
            output_tokens_per_s=r.output_tokens_per_s,
            output_tokens_per_s_per_gpu=r.output_tokens_per_s / gpus,
            total_tokens_per_s=r.total_tokens_per_s,
            request_rate_rps=r.rate_rps,
            max_rate_rps=r.max_rate_rps,
            utilisation=r.utilisation,
            prefill_utilisation=r.prefill_utilisation,
            mixed_step_fraction=r.mixed_fraction,
            running_per_instance=r.running_per_instance,
            in_flight=r.concurrency,
            kv_occupancy=r.kv_occupancy,
            queue_wait_ms=r.queue_wait_s * 1e3,
        )
        return doc


def estimate_serving_load(
    model, hw, *, workload: Workload, concurrency=None, rate=None, instances=1, tp=1, pp=1, ep=1, dp=1,
    dtype="bf16", kv_dtype=None, engine="generic", calibration=None,
) -> LoadEstimate:
    """The steady state of ``instances`` colocated replicas under a closed loop of ``concurrency``
    clients or Poisson arrivals at ``rate`` requests/s. A rate above the largest sustainable one
    raises InfeasibleError (exit 3) naming that rate."""
    if (concurrency is None) == (rate is None):
        raise InputError("load", "both" if concurrency is not None else "none", "exactly one of concurrency, rate")
    n = _positive("instances", instances)
    inst = make_instance(model, hw, tp=tp, pp=pp, ep=ep, dp=dp, dtype=dtype, kv_dtype=kv_dtype, engine=engine,
                         calibration=calibration, isl=int(np.max(workload.isl)), osl=int(np.max(workload.osl)))
    _check_fits(inst, workload)
    if concurrency is not None:
        res = serve_load.closed_loop(inst, workload.isl, workload.osl, _positive("concurrency", concurrency), n)
    else:
        r = _positive("rate", rate, integer=False)
        res = serve_load.open_loop(inst, workload.isl, workload.osl, r, n)
        if res.utilisation >= 1.0:
            need = math.ceil(n * res.utilisation + 1e-9)
            raise InfeasibleError(
                f"rate {r:g} req/s exceeds what {n} instance(s) sustain",
                f"the largest sustainable rate is {res.max_rate_rps:.4g} req/s (or use --instances {need})",
                {"max_rate_rps": res.max_rate_rps},
            )
    return LoadEstimate(inst, workload, res)


def _check_fits(inst: serve_load.Instance, wl: Workload) -> None:
    """The weights and one request of the longest length must fit (else exit 3)."""
    cap = serve_load.kv_capacity_tokens(inst)
    longest = int(np.max(wl.isl + wl.osl))
    if cap < longest:
        raise InfeasibleError(
            f"the KV cache of one instance holds {cap:,.0f} tokens, fewer than the longest request ({longest:,})",
            "use more tensor/pipeline parallelism, a smaller --kv-dtype or --dtype, or shorter requests",
        )


# ------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------
def kv_transfer_s(prefill: serve_load.Instance, decode: serve_load.Instance, isl, colocated_node: bool) -> np.ndarray:
    """Seconds to ship one request's KV cache (``kv_transfer_bytes``) from a prefill to a decode
    instance, one point-to-point stream per KV shard of the smaller side (NVLink inside a node, else
    the NIC; the planner's ``kv_transfer_time`` for one request)."""
    model = prefill.model
    kvd = decode.cfg.kv_dtype_resolved
    streams = min(float(serve_model.kv_shards(model, prefill.cfg.tp)[0]) * prefill.pp,
                  float(serve_model.kv_shards(model, decode.cfg.tp)[0]) * decode.pp)
    per = np.asarray(serve_model.kv_transfer_bytes(model, np.asarray(isl, dtype=float), kvd)) / max(streams, 1.0)
    hw = prefill.hw
    stride = 1 if colocated_node else hw.devices_per_node
    return np.asarray(collective_time("p2p", per, 2, hw, stride=stride), dtype=float)


@dataclass
class Simulation:
    """A simulated deployment; ``to_json()`` has the keys of the analytic estimate."""

    instance: serve_load.Instance
    workload: Workload
    result: serve_sim.SimResult
    mode: str
    instances: int
    gpus: int
    load: dict
    max_rate_rps: float | None
    wall_s: float

    def to_json(self) -> dict:
        r = self.result
        running = max(int(round(r.mean_running)), 1)
        doc = _static(self.instance, running, self.workload)
        doc["schema"] = SCHEMA
        doc["inputs"].update(
            batch=running, isl=int(round(float(np.mean(self.workload.isl)))),
            osl=int(round(float(np.mean(self.workload.osl)))), mode=self.mode, instances=self.instances,
            gpus_total=self.gpus, workload=self.workload.describe(), simulated_requests=len(r.isl), **self.load,
        )
        for name in ("ttft", "tpot", "latency"):
            _percentile_keys(doc, name, r.summary(f"{name}_s"))
        keep = np.argsort(r.arrival_s, kind="stable")[int(len(r.isl) * 0.1):]
        span = float(np.nanmax(r.arrival_s[keep] + r.latency_s[keep]) - r.arrival_s[keep][0])
        rate = len(keep) / span if span > 0 else float("nan")
        out = float(np.sum(r.osl[keep])) / span if span > 0 else float("nan")
        doc.update(
            output_tokens_per_s=out,
            output_tokens_per_s_per_gpu=out / self.gpus,
            total_tokens_per_s=float(np.sum(r.osl[keep] + r.isl[keep])) / span if span > 0 else float("nan"),
            request_rate_rps=rate,
            max_rate_rps=self.max_rate_rps,
            utilisation=rate / self.max_rate_rps if self.max_rate_rps else float("nan"),
            busy_fraction=r.busy_fraction,
            running_per_instance=r.mean_running,
            queue_wait_ms=r.summary("wait_s")["mean"] * 1e3,
            iterations=r.iterations,
            preemptions=r.preemptions,
            timing={"simulate_s": self.wall_s},
        )
        return doc


def simulate_serving(
    model, hw, *, workload: Workload, rate=None, concurrency=None, instances=1, tp=1, pp=1, ep=1, dp=1,
    dtype="bf16", kv_dtype=None, engine="generic", calibration=None, mode="colocated",
    prefill_instances=1, decode_instances=1, prefill_shape: dict | None = None, prefill_engine=None,
    router="round-robin",
    requests: int | None = None, seed=0,
) -> Simulation:
    """Simulate a deployment fed Poisson arrivals at ``rate`` (or the trace's ``arrival_s``); a
    closed loop of ``concurrency`` clients is simulated as arrivals at the analytic closed-loop
    rate. Disaggregated (``mode="disagg"``): ``prefill_instances`` of ``prefill_shape`` (default:
    the same shape; ``prefill_engine``: its engine profile, default ``engine``) and
    ``decode_instances`` of the given shape."""
    import time

    t0 = time.perf_counter()
    if mode not in ("colocated", "disagg"):
        raise InputError("--mode", mode, "colocated or disagg")
    shape = dict(tp=tp, pp=pp, ep=ep, dp=dp)
    common = dict(dtype=dtype, kv_dtype=kv_dtype, engine=engine, calibration=calibration,
                  isl=int(np.max(workload.isl)), osl=int(np.max(workload.osl)))
    inst = make_instance(model, hw, **shape, **common)
    _check_fits(inst, workload)
    wl = workload
    n_req = requests or (len(wl) if wl.source.startswith("trace") else SIM_REQUESTS)
    n_req = _positive("requests", n_req)
    rng = np.random.default_rng(seed)
    if len(wl) != n_req:
        pick = rng.integers(0, len(wl), n_req) if len(wl) > 1 else np.zeros(n_req, dtype=np.int64)
        isl, osl = wl.isl[pick], wl.osl[pick]
    else:
        isl, osl = wl.isl, wl.osl
    mo = serve_load.moments(inst, wl.isl, wl.osl)
    mr = None
    if mode == "colocated":
        mr = serve_load.max_rate(inst, mo) * _positive("instances", instances)
    load: dict = {}
    if wl.arrival_s is not None and rate is None and concurrency is None:
        arrivals = wl.arrival_s[:n_req] - wl.arrival_s[0]
        load["load"] = "trace"
    elif rate is not None and concurrency is None:
        arrivals = serve_sim.poisson_arrivals(n_req, _positive("rate", rate, integer=False), seed)
        load.update(load="rate", rate_rps=float(rate))
    elif concurrency is not None and rate is None:
        if mode != "colocated":
            raise InputError("--concurrency", concurrency, "with --mode colocated (use --rate for disagg)")
        arrivals = None  # each completion sends the next request (serve_sim.run_instance closed=)
        load.update(load="concurrency", concurrency=_positive("concurrency", concurrency))
    else:
        raise InputError("load", "missing or both", "exactly one of --rate or --concurrency (or a trace with arrival_s)")
    if mode == "colocated":
        res = serve_sim.simulate_colocated(inst, isl, osl, arrivals, instances=instances, router=router, seed=seed,
                                           concurrency=load.get("concurrency"))
        gpus = int(inst.cfg.devices[0]) * instances
        n_inst = instances
    else:
        pshape = {**shape, **(prefill_shape or {})}
        pcommon = {**common, "engine": prefill_engine or engine}
        pinst = make_instance(model, hw, **pshape, **pcommon)
        same_node = (int(pinst.cfg.devices[0]) + int(inst.cfg.devices[0])) <= inst.hw.devices_per_node
        res = serve_sim.simulate_disagg(
            pinst, inst, isl, osl, arrivals, prefill_instances=_positive("prefill_instances", prefill_instances),
            decode_instances=_positive("decode_instances", decode_instances),
            transfer_s=lambda L: kv_transfer_s(pinst, inst, L, same_node), router=router, seed=seed,
        )
        gpus = int(pinst.cfg.devices[0]) * prefill_instances + int(inst.cfg.devices[0]) * decode_instances
        n_inst = prefill_instances + decode_instances
        load["ratio"] = f"{prefill_instances}P{decode_instances}D"
    return Simulation(inst, wl, res, mode, n_inst, gpus, load, mr, time.perf_counter() - t0)
