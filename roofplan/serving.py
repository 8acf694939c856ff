"""Serving below the door: ``estimate serve`` at a fixed batch (:func:`estimate_serving`), under load
(``--concurrency``/``--rate``, :func:`estimate_serving_load`) and ``simulate`` (:func:`simulate_serving`).

Everything here takes specs (ModelSpec, DeviceSpec, EngineProfile: :func:`check_specs`); the public
API in :mod:`roofplan` resolves ids, paths and calibration overlays once (:mod:`roofplan.resolve`)
and calls these functions. The load estimates take one deployment (an instance shape,
``instances`` replicas behind a router; or xPyD for the simulator) and a
:class:`~roofplan.workload.Workload`, and return the ``roofplan.estimate.serve/v1`` document of
docs/SPEC.md §3.2 with the load keys of docs/SPEC.md §6: ``ttft_ms``/``tpot_ms``/``latency_ms``
stay the means; ``*_p50_ms``, ``*_p90_ms``, ``*_p99_ms``, ``output_tokens_per_s`` (whole
deployment) and ``utilisation`` (request rate / the largest sustainable rate) are added. The
analytic numbers come from :mod:`roofplan.costmodel.serve_load`, the simulated ones from
:mod:`roofplan.costmodel.serve_sim`; both use the same iteration times (``serve_load.round_time``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel import serve_load, serve_sim
from roofplan.costmodel.collectives import p2p_between
from roofplan.costmodel.serve import ServeArrays, ServeConfigs, compute_dtype
from roofplan.costmodel.serve_features import (
    SpecDecode,
    check_expert_skew,
    resolve_prefix_hit,
    serve_step_ext,
)
from roofplan.engines.profile import EngineProfile
from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec
from roofplan.workload import Workload

SCHEMA = "roofplan.estimate.serve/v1"
#: Requests a simulation runs when the workload does not fix them (a sampled distribution).
SIM_REQUESTS = 10000


# ------------------------------------------------------------------------------------------------
# specs in: ids, paths and overlays are resolved at the door (the API in roofplan, roofplan.resolve)
# ------------------------------------------------------------------------------------------------
def check_specs(model, hw, engine) -> tuple[ModelSpec, DeviceSpec, EngineProfile]:
    """The model, device and engine profile as given, already resolved; an id or a path here is a
    caller's error (InputError naming the field), since nothing below the door opens a catalog."""
    for field, v, kind in (
        ("model", model, ModelSpec),
        ("hardware", hw, DeviceSpec),
        ("engine", engine, EngineProfile),
    ):
        if not isinstance(v, kind):
            raise InputError(
                field,
                v,
                f"a resolved {kind.__name__} (the roofplan API and roofplan.resolve "
                "turn ids and paths into specs)",
            )
    return model, hw, engine


def _positive(name: str, value, integer: bool = True):
    """``value`` as a positive int (or finite float); else InputError naming ``name`` (exit 2)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok and integer:
        ok = math.isfinite(float(value)) and float(value) == int(value)
    if not ok or not math.isfinite(float(value)) or value <= 0:
        raise InputError(name, value, "a positive " + ("integer" if integer else "number"))
    return int(value) if integer else float(value)


def _configs(model, hw, engine, *, dtype, kv_dtype, **ints):
    """The specs and a one-row ServeConfigs of the positive integers ``ints`` (checked against the
    model: exit 2 on bad input): what the static estimate and the load instance share."""
    vals = {k: _positive(k, v) for k, v in ints.items()}
    m, h, prof = check_specs(model, hw, engine)
    cfg = serve_model.ServeConfigs(**vals, dtype=dtype, kv_dtype=kv_dtype, engine=prof.name)
    serve_model.validate_serve_config(m, cfg)
    return m, h, prof, cfg


# ------------------------------------------------------------------------------------------------
# one configuration at a fixed batch: the docs/SPEC.md §3.2 document
# ------------------------------------------------------------------------------------------------
_GIB = float(2**30)


@dataclass
class ServeEstimate:
    model: ModelSpec
    hardware: DeviceSpec
    engine: EngineProfile
    config: ServeConfigs
    arrays: ServeArrays
    weights_in_ddr_bytes: float = 0.0
    usable_bytes: float = 0.0  # capacity less the engine's reserve
    speculative: object = None  # serve_features.SpecDecode, when speculative decoding is modelled
    prefix_hit: int = 0  # prompt tokens served from the prefix cache
    expert_skew: float = 1.0  # max/mean routed tokens per EP rank

    def to_json(self) -> dict:
        """The ``roofplan.estimate.serve/v1`` document of docs/SPEC.md §3.2."""
        a = self.arrays.row(0)
        c = self.config
        ms = 1e3
        inputs = {
            "model": self.model.name,
            "hardware": self.hardware.id,
            "engine": self.engine.name,
            "tp": int(c.tp[0]),
            "pp": int(c.pp[0]),
            "ep": int(c.ep[0]),
            "dp": int(c.dp[0]),
            "gpus": int(c.devices[0]),
            "batch": int(c.batch[0]),
            "isl": int(c.isl[0]),
            "osl": int(c.osl[0]),
            "dtype": c.dtype,
            "kv_dtype": c.kv_dtype_resolved,
            "compute_dtype": compute_dtype(self.hardware, c.dtype),
            "memory_reserve_fraction": self.engine.memory_reserve_fraction,
        }
        if self.speculative is not None:
            inputs["speculative"] = self.speculative.to_json()
        if self.prefix_hit:
            inputs["prefix_hit_tokens"] = int(self.prefix_hit)
        if self.expert_skew != 1.0:
            inputs["expert_skew"] = float(self.expert_skew)
        doc = {
            "schema": "roofplan.estimate.serve/v1",
            "inputs": inputs,
            "ttft_ms": a["ttft_s"] * ms,
            "tpot_ms": a["tpot_s"] * ms,
            "latency_ms": a["latency_s"] * ms,
            "output_tokens_per_s": a["output_tokens_per_s"],
            "output_tokens_per_s_per_gpu": a["output_tokens_per_s_per_gpu"],
            "fits": bool(a["fits"]),
            "max_batch": int(a["max_batch"]),
            "memory_gib_per_gpu": {
                "weights": a["mem_weights"] / _GIB,
                "kv_cache": a["mem_kv_cache"] / _GIB,
                "activations": a["mem_activations"] / _GIB,
                "total": a["mem_total"] / _GIB,
                "capacity": a["capacity"] / _GIB,
                "usable": self.usable_bytes / _GIB,
                "weights_in_ddr": self.weights_in_ddr_bytes / _GIB,
            },
            "breakdown_ms": {
                "prefill": {
                    "compute": a["prefill_compute_s"] * ms,
                    "memory": a["prefill_memory_s"] * ms,
                    "communication": a["prefill_comm_s"] * ms,
                    "overhead": a["prefill_overhead_s"] * ms,
                },
                "decode_step": {
                    "compute": a["decode_compute_s"] * ms,
                    "memory": a["decode_memory_s"] * ms,
                    "communication": a["decode_comm_s"] * ms,
                    "overhead": a["decode_overhead_s"] * ms,
                },
            },
        }
        return doc


def estimate_serving(
    model,
    hw,
    *,
    tp=1,
    pp=1,
    ep=1,
    dp=1,
    batch,
    isl,
    osl,
    dtype="bf16",
    kv_dtype=None,
    engine=None,
    speculative=None,
    prefix_hit=None,
    expert_skew=1.0,
) -> ServeEstimate:
    """Estimate one serving instance at a fixed batch (docs/SPEC.md §3.2); ``.to_json()`` is the document.
    ``model``/``hw`` may be ids, paths or spec objects; bad input raises InputError (exit 2).
    ``speculative`` (a :class:`~roofplan.costmodel.serve_features.SpecDecode`) and ``prefix_hit``
    (tokens, or a fraction of isl) add speculative decoding and prefix caching
    (:mod:`roofplan.costmodel.serve_features`); ``expert_skew`` (max/mean routed tokens per EP rank)
    loads the busiest expert-parallel rank; without them the result is unchanged."""
    m, h, prof, cfg = _configs(
        model,
        hw,
        engine,
        dtype=dtype,
        kv_dtype=kv_dtype,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp,
        batch=batch,
        isl=isl,
        osl=osl,
    )
    hit = resolve_prefix_hit(prefix_hit, int(cfg.isl[0]))
    arrays = serve_step_ext(m, h, cfg, prof, spec=speculative, prefix_hit=hit, expert_skew=expert_skew)
    mem = serve_model.serve_memory(m, h, prof, cfg)
    return ServeEstimate(
        m,
        h,
        prof,
        cfg,
        arrays,
        weights_in_ddr_bytes=float(mem.weights_ddr[0]),
        usable_bytes=float(mem.usable[0]),
        speculative=speculative,
        prefix_hit=hit,
        expert_skew=float(expert_skew),
    )


# ------------------------------------------------------------------------------------------------
# under load
# ------------------------------------------------------------------------------------------------
def make_instance(
    model, hw, *, tp=1, pp=1, ep=1, dp=1, dtype="bf16", kv_dtype=None, engine=None, isl=1024, osl=128
) -> serve_load.Instance:
    """An :class:`~roofplan.costmodel.serve_load.Instance` from ids or specs (bad input: exit 2)."""
    m, h, prof, cfg = _configs(
        model,
        hw,
        engine,
        dtype=dtype,
        kv_dtype=kv_dtype,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp,
        batch=1,
        isl=int(isl),
        osl=int(osl),
    )
    return serve_load.Instance(m, h, prof, cfg)


def _static(
    inst: serve_load.Instance,
    batch: int,
    wl: Workload,
    prefix_hit: int = 0,
    speculative=None,
    expert_skew: float = 1.0,
) -> dict:
    """The static document of the instance at ``batch`` running requests of the mean lengths
    (memory, max batch and the breakdown of one prefill and one decode step)."""
    c = inst.cfg
    est = estimate_serving(
        inst.model,
        inst.hw,
        tp=int(c.tp[0]),
        pp=int(c.pp[0]),
        ep=int(c.ep[0]),
        dp=int(c.dp[0]),
        batch=max(int(batch), 1),
        isl=max(int(round(float(np.mean(wl.isl)))), 1),
        osl=max(int(round(float(np.mean(wl.osl)))), 1),
        dtype=c.dtype,
        kv_dtype=c.kv_dtype,
        engine=inst.engine,
        prefix_hit=prefix_hit or None,
        speculative=speculative,
        expert_skew=expert_skew,
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
        i = self.instance
        doc = _static(i, running, self.workload, i.prefix_hit, i.spec, i.expert_skew)
        gpus = int(self.instance.cfg.devices[0]) * r.instances
        doc["inputs"].update(
            batch=running,
            isl=int(round(float(np.mean(self.workload.isl)))),
            osl=int(round(float(np.mean(self.workload.osl)))),
            load=r.mode,
            instances=r.instances,
            gpus_total=gpus,
            token_budget=r.budget,
            workload=self.workload.describe(),
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
    model,
    hw,
    *,
    workload: Workload,
    concurrency=None,
    rate=None,
    instances=1,
    tp=1,
    pp=1,
    ep=1,
    dp=1,
    dtype="bf16",
    kv_dtype=None,
    engine=None,
    speculative=None,
    prefix_hit=None,
    expert_skew=1.0,
) -> LoadEstimate:
    """The steady state of ``instances`` colocated replicas under a closed loop of ``concurrency``
    clients or Poisson arrivals at ``rate`` requests/s. A rate above the largest sustainable one
    raises InfeasibleError (exit 3) naming that rate. ``speculative`` (a SpecDecode),
    ``prefix_hit`` (tokens, or a fraction of the shortest prompt, that every prompt finds cached)
    and ``expert_skew`` as in :func:`simulate_serving` (:class:`~roofplan.costmodel.serve_load.Instance`)."""
    if (concurrency is None) == (rate is None):
        raise InputError(
            "load", "both" if concurrency is not None else "none", "exactly one of concurrency, rate"
        )
    n = _positive("instances", instances)
    inst = _feature_instance(
        _workload_instance(model, hw, workload, dict(tp=tp, pp=pp, ep=ep, dp=dp), dtype, kv_dtype, engine),
        workload,
        speculative,
        prefix_hit,
        expert_skew,
    )
    _check_fits(inst, workload, inst.prefix_hit)
    if concurrency is not None:
        res = serve_load.closed_loop(
            inst, workload.isl, workload.osl, _positive("concurrency", concurrency), n
        )
    else:
        r = _positive("rate", rate, integer=False)
        res = serve_load.open_loop(inst, workload.isl, workload.osl, r, n)
        if res.utilisation >= 1.0:
            raise _unsustainable(r, n, res.max_rate_rps)
    return LoadEstimate(inst, workload, res)


def _unsustainable(rate: float, instances: int, max_rate: float) -> InfeasibleError:
    """The exit-3 error of a rate above what ``instances`` replicas sustain (``max_rate`` for all of
    them): it names that rate and the replicas the rate would need."""
    need = math.ceil(instances * rate / max_rate + 1e-9)
    return InfeasibleError(
        f"rate {rate:g} req/s exceeds what {instances} instance(s) sustain",
        f"the largest sustainable rate is {max_rate:.4g} req/s (or use --instances {need})",
        {"max_rate_rps": max_rate},
    )


def _unsustainable_disagg(
    rate: float, prefill: tuple[int, float], decode: tuple[int, float]
) -> InfeasibleError:
    """The exit-3 error of a rate above what a disaggregated deployment sustains: ``prefill`` and
    ``decode`` are (instances, upper-bound rate of one instance) of each role; it names the role
    that binds and the instances of each role the rate would need."""
    (p, rp), (d, rd) = prefill, decode
    max_rate = min(p * rp, d * rd)
    need_p, need_d = math.ceil(rate / rp + 1e-9), math.ceil(rate / rd + 1e-9)
    role = "prefill" if p * rp <= d * rd else "decode"
    return InfeasibleError(
        f"rate {rate:g} req/s exceeds what {p} prefill and {d} decode instance(s) sustain (the {role} side binds)",
        f"the largest sustainable rate is at most {max_rate:.4g} req/s (or use --prefill-instances "
        f"{max(p, need_p)} --decode-instances {max(d, need_d)})",
        {"max_rate_rps": max_rate, "prefill_rate_rps": p * rp, "decode_rate_rps": d * rd},
    )


def _check_disagg_rate(pinst, dinst, wl: Workload, rate: float, prefill_instances, decode_instances) -> None:
    """Exit 3 when the offered ``rate`` reaches the upper bound of what the prefill or the decode
    instances carry (serve_load.prefill_role_rate / decode_role_rate): the queue would grow without
    bound and the simulated percentiles with the number of requests."""
    if rate <= 0:
        return
    p = _positive("prefill_instances", prefill_instances)
    d = _positive("decode_instances", decode_instances)
    pinst = dataclasses.replace(pinst, prefix_hit=dinst.prefix_hit, expert_skew=dinst.expert_skew)
    rp = serve_load.prefill_role_rate(pinst, serve_load.moments(pinst, wl.isl, wl.osl))
    rd = serve_load.decode_role_rate(dinst, serve_load.moments(dinst, wl.isl, wl.osl))
    if rate >= min(p * rp, d * rd):
        raise _unsustainable_disagg(rate, (p, rp), (d, rd))


def _workload_instance(model, hw, wl: Workload, shape: dict, dtype, kv_dtype, engine) -> serve_load.Instance:
    """The instance of ``shape`` (tp/pp/ep/dp) sized for the workload's longest prompt and output
    (its memory and maximum batch are for the longest request)."""
    return make_instance(
        model,
        hw,
        **shape,
        dtype=dtype,
        kv_dtype=kv_dtype,
        engine=engine,
        isl=int(np.max(wl.isl)),
        osl=int(np.max(wl.osl)),
    )


def _feature_instance(inst: serve_load.Instance, wl: Workload, speculative, prefix_hit, expert_skew):
    """``inst`` with the serving features (bad input: exit 2); a fractional ``prefix_hit`` is of the
    shortest prompt of the workload."""
    if speculative is not None and not isinstance(speculative, SpecDecode):
        raise InputError("speculative", speculative, "a SpecDecode (method, draft tokens, acceptance)")
    hit = resolve_prefix_hit(prefix_hit, int(np.min(wl.isl)))
    return dataclasses.replace(
        inst, spec=speculative, prefix_hit=hit, expert_skew=check_expert_skew(expert_skew)
    )


def _check_fits(inst: serve_load.Instance, wl: Workload, prefix_hit: int = 0) -> None:
    """The weights, the cached prefix (one copy per attention rank) and one request of the longest
    length must fit (else exit 3)."""
    cap = serve_load.kv_capacity_tokens(inst) - prefix_hit * inst.dp
    longest = int(np.max(wl.isl + wl.osl)) - prefix_hit
    if cap < longest:
        raise InfeasibleError(
            f"the KV cache of one instance holds {cap:,.0f} tokens, fewer than the longest request ({longest:,})",
            "use more tensor/pipeline parallelism, a smaller --kv-dtype or --dtype, or shorter requests",
        )


# ------------------------------------------------------------------------------------------------
# simulation
# ------------------------------------------------------------------------------------------------
def kv_transfer_s(
    prefill: serve_load.Instance, decode: serve_load.Instance, isl, colocated_node: bool, prefix_hit: int = 0
) -> np.ndarray:
    """Seconds to ship one request's KV cache (``kv_transfer_bytes``, the prefix-cache miss only)
    from a prefill to a decode instance, one point-to-point stream per KV shard of the smaller side
    (:func:`~roofplan.costmodel.collectives.p2p_between`, as the planner's ``kv_transfer_time``
    for one request)."""
    model = prefill.model
    kvd = decode.cfg.kv_dtype_resolved
    streams = min(
        float(serve_model.kv_shards(model, prefill.cfg.tp)[0]) * prefill.pp,
        float(serve_model.kv_shards(model, decode.cfg.tp)[0]) * decode.pp,
    )
    per = np.asarray(
        serve_model.kv_transfer_bytes(model, np.asarray(isl, dtype=float), kvd, prefix_hit)
    ) / max(streams, 1.0)
    return np.asarray(p2p_between(per, prefill.hw, decode.hw, colocated_node), dtype=float)


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
    prefix_hit: int = 0
    speculative: object = None  # serve_features.SpecDecode
    expert_skew: float = 1.0

    def to_json(self) -> dict:
        r = self.result
        running = max(int(round(r.mean_running)), 1)
        doc = _static(
            self.instance, running, self.workload, self.prefix_hit, self.speculative, self.expert_skew
        )
        doc["schema"] = SCHEMA
        doc["inputs"].update(
            batch=running,
            isl=int(round(float(np.mean(self.workload.isl)))),
            osl=int(round(float(np.mean(self.workload.osl)))),
            mode=self.mode,
            instances=self.instances,
            gpus_total=self.gpus,
            workload=self.workload.describe(),
            simulated_requests=len(r.isl),
            **self.load,
        )
        for name in ("ttft", "tpot", "latency"):
            _percentile_keys(doc, name, r.summary(f"{name}_s"))
        keep = np.argsort(r.arrival_s, kind="stable")[int(len(r.isl) * 0.1) :]
        span = float(np.nanmax(r.arrival_s[keep] + r.latency_s[keep]) - r.arrival_s[keep][0])
        rate = len(keep) / span if span > 0 else float("nan")
        out = float(np.sum(r.osl[keep])) / span if span > 0 else float("nan")
        doc.update(
            output_tokens_per_s=out,
            output_tokens_per_s_per_gpu=out / self.gpus,
            total_tokens_per_s=float(np.sum(r.osl[keep] + r.isl[keep])) / span if span > 0 else float("nan"),
            request_rate_rps=rate,
            max_rate_rps=self.max_rate_rps,
            utilisation=rate / self.max_rate_rps if self.max_rate_rps else None,  # no analytic rate: disagg
            busy_fraction=r.busy_fraction,
            running_per_instance=r.mean_running,
            queue_wait_ms=r.summary("wait_s")["mean"] * 1e3,
            iterations=r.iterations,
            preemptions=r.preemptions,
            timing={"simulate_s": self.wall_s},
        )
        return doc


def _sim_lengths(wl: Workload, requests: int | None, seed) -> tuple[np.ndarray, np.ndarray]:
    """Prompt and output lengths of the simulated requests: the workload's own when it has as
    many as are asked for (default: a trace's length, else SIM_REQUESTS), else drawn from it
    uniformly with replacement (seeded)."""
    n_req = requests or (len(wl) if wl.source.startswith("trace") else SIM_REQUESTS)
    n_req = _positive("requests", n_req)
    if len(wl) == n_req:
        return wl.isl, wl.osl
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(wl), n_req) if len(wl) > 1 else np.zeros(n_req, dtype=np.int64)
    return wl.isl[pick], wl.osl[pick]


def _sim_arrivals(
    wl: Workload, n_req: int, rate, concurrency, mode: str, seed
) -> tuple[np.ndarray | None, dict]:
    """Arrival times of ``n_req`` requests and the document's load keys: the trace's own arrivals
    (neither rate nor concurrency given), Poisson arrivals at ``rate``, or None for a closed loop
    of ``concurrency`` clients (colocated only: each completion sends the next request,
    serve_sim.run_instance ``closed=``); bad input: exit 2."""
    if wl.arrival_s is not None and rate is None and concurrency is None:
        return wl.arrival_s[:n_req] - wl.arrival_s[0], {"load": "trace"}
    if rate is not None and concurrency is None:
        arrivals = serve_sim.poisson_arrivals(n_req, _positive("rate", rate, integer=False), seed)
        return arrivals, {"load": "rate", "rate_rps": float(rate)}
    if concurrency is not None and rate is None:
        if mode != "colocated":
            raise InputError("--concurrency", concurrency, "with --mode colocated (use --rate for disagg)")
        return None, {"load": "concurrency", "concurrency": _positive("concurrency", concurrency)}
    raise InputError(
        "load", "missing or both", "exactly one of --rate or --concurrency (or a trace with arrival_s)"
    )


def simulate_serving(
    model,
    hw,
    *,
    workload: Workload,
    rate=None,
    concurrency=None,
    instances=1,
    tp=1,
    pp=1,
    ep=1,
    dp=1,
    dtype="bf16",
    kv_dtype=None,
    engine=None,
    mode="colocated",
    prefill_instances=1,
    decode_instances=1,
    prefill_shape: dict | None = None,
    prefill_engine=None,
    router="round-robin",
    requests: int | None = None,
    seed=0,
    prefix_hit=None,
    speculative=None,
    expert_skew=1.0,
) -> Simulation:
    """Simulate a deployment fed Poisson arrivals at ``rate`` (or the trace's ``arrival_s``); a
    closed loop of ``concurrency`` clients is simulated as arrivals at the analytic closed-loop
    rate. Disaggregated (``mode="disagg"``): ``prefill_instances`` of ``prefill_shape`` (default:
    the same shape; ``prefill_engine``: its engine profile, default ``engine``) and
    ``decode_instances`` of the given shape. ``prefix_hit`` (tokens, or a fraction of the shortest
    prompt) is a prefix every prompt shares and finds cached: only the rest is prefilled, held and
    shipped; ``speculative`` (a SpecDecode) gives decoding requests E tokens per iteration at the
    cost of a verify pass and k drafts; ``expert_skew`` loads the busiest EP rank. ``utilisation``
    (colocated only) is against the analytic largest sustainable rate with the same features. A
    rate at or above the largest sustainable rate (colocated) or the upper bound of either role
    (disaggregated) raises InfeasibleError (exit 3): its queue would grow without bound."""
    import time

    t0 = time.perf_counter()
    if mode not in ("colocated", "disagg"):
        raise InputError("--mode", mode, "colocated or disagg")
    shape = dict(tp=tp, pp=pp, ep=ep, dp=dp)
    inst = _workload_instance(model, hw, workload, shape, dtype, kv_dtype, engine)
    finst = _feature_instance(inst, workload, speculative, prefix_hit, expert_skew)
    hit, skew = finst.prefix_hit, finst.expert_skew
    _check_fits(inst, workload, hit)
    wl = workload
    isl, osl = _sim_lengths(wl, requests, seed)
    mr = None
    if mode == "colocated":
        mr = serve_load.max_rate(finst, serve_load.moments(finst, wl.isl, wl.osl)) * _positive(
            "instances", instances
        )
    arrivals, load = _sim_arrivals(wl, len(isl), rate, concurrency, mode, seed)
    if mr is not None and load.get("rate_rps", 0.0) >= mr:  # the queue would grow without bound
        raise _unsustainable(float(rate), int(instances), mr)
    if mode == "colocated":
        res = serve_sim.simulate_colocated(
            inst,
            isl,
            osl,
            arrivals,
            instances=instances,
            router=router,
            seed=seed,
            concurrency=load.get("concurrency"),
            prefix_hit=hit,
            spec=speculative,
            expert_skew=skew,
        )
        gpus = int(inst.cfg.devices[0]) * instances
        n_inst = instances
    else:
        pshape = {**shape, **(prefill_shape or {})}
        pinst = _workload_instance(model, hw, workload, pshape, dtype, kv_dtype, prefill_engine or engine)
        _check_disagg_rate(pinst, finst, wl, load.get("rate_rps", 0.0), prefill_instances, decode_instances)
        same_node = (int(pinst.cfg.devices[0]) + int(inst.cfg.devices[0])) <= inst.hw.devices_per_node
        res = serve_sim.simulate_disagg(
            pinst,
            inst,
            isl,
            osl,
            arrivals,
            prefill_instances=_positive("prefill_instances", prefill_instances),
            decode_instances=_positive("decode_instances", decode_instances),
            transfer_s=lambda L: kv_transfer_s(pinst, inst, L, same_node, hit),
            router=router,
            seed=seed,
            prefix_hit=hit,
            spec=speculative,
            expert_skew=skew,
        )
        gpus = int(pinst.cfg.devices[0]) * prefill_instances + int(inst.cfg.devices[0]) * decode_instances
        n_inst = prefill_instances + decode_instances
        load["ratio"] = f"{prefill_instances}P{decode_instances}D"
    return Simulation(
        inst, wl, res, mode, n_inst, gpus, load, mr, time.perf_counter() - t0, hit, speculative, skew
    )
