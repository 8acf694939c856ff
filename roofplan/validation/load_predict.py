"""Predictor for serving rows measured under load (kind ``serve_load``).

A ``serve_load`` row is a benchmark client (``vllm bench serve`` and the like) holding ``batch``
requests in flight (``--max-concurrency``: a closed loop) against one instance of ``tp`` devices,
with requests of ``isl`` prompt and ``osl`` output tokens (a dataset's means where the lengths
vary; the note says which). A row whose note states ``rate=R`` (requests/s) was measured in an
open loop instead (``--request-rate``, guidellm ``--rate``) and leaves ``batch`` empty.
``ttft_ms_mean`` / ``tpot_ms_mean`` / ``latency_s_mean`` are the benchmark's mean TTFT, mean TPOT
and mean end-to-end latency (``_p50``: medians; ``total_tokens_per_s_per_gpu``: input + output
tokens/s over the instance's GPUs; ``total_tokens_per_s``: the same over the whole instance;
``output_tokens_per_s``: generated tokens/s of the whole instance).
They are predicted by the steady state of
:func:`roofplan.costmodel.serve_load.closed_loop` (or :func:`~roofplan.costmodel.serve_load.open_loop`,
Poisson arrivals) with the engine profile of the row's engine string
(:data:`roofplan.validation.serve_predict.ENGINE_MAP`) and the server flags its note states as
``key=value`` (:func:`roofplan.validation.serve_predict.note_engine_args`). TTFT, TPOT and latency rows are reported
apart (``roofplan validate`` groups ``serve_load`` on its own).

A row whose note states ``burst=N`` is one burst: N requests handed to the engine at t = 0 and
drained (``vllm bench throughput`` with ``--num-prompts N --max-num-seqs N``, the offline
``LLM.generate`` path: vllm/benchmarks/throughput.py ``run_vllm`` adds every prompt before the
engine steps). It has no steady state; it is predicted by :func:`burst`, the iteration-level
simulator (:func:`roofplan.costmodel.serve_sim.simulate_colocated`) run on N requests arriving at
0, whose elapsed time is the simulated makespan (``total_tokens_per_s`` = N·(isl + osl) /
makespan, the benchmark's ``tokens_per_second``; ``output_tokens_per_s`` = N·osl / makespan, the
``throughput_gen`` that ROCm/MAD scripts/vllm/vllm_json_to_csv.py derives from the same run as
num_prompts x output_len / elapsed_time).
"""

from __future__ import annotations

import re

import numpy as np

from roofplan.costmodel import serve_load, serve_sim
from roofplan.validation.cases import Case, predictor
from roofplan.validation.serve_predict import _setup

#: metric -> (LoadResult field, statistic or None, scale): means and medians of TTFT / TPOT in ms,
#: mean latency in s, and the total (input + output) tokens/s per GPU of a saturated instance.
METRICS = {
    "ttft_ms_mean": ("ttft_s", "mean", 1e3),
    "tpot_ms_mean": ("tpot_s", "mean", 1e3),
    "ttft_ms_p50": ("ttft_s", "p50", 1e3),
    "tpot_ms_p50": ("tpot_s", "p50", 1e3),
    "latency_s_mean": ("latency_s", "mean", 1.0),
    "total_tokens_per_s_per_gpu": ("total_tokens_per_s", None, 1.0),
    "total_tokens_per_s": ("total_tokens_per_s", None, 1.0),
    "output_tokens_per_s": ("output_tokens_per_s", None, 1.0),
}


def stated_rate(case: Case) -> float | None:
    """The open-loop request rate (requests/s) a row's note states as ``rate=R``, else None."""
    m = re.search(r"\brate=([0-9.]+)", case.str("note"))
    return float(m.group(1)) if m else None


def stated_burst(case: Case) -> int | None:
    """The number of requests of a one-burst row (note ``burst=N``), else None."""
    m = re.search(r"\bburst=([0-9]+)", case.str("note"))
    return int(m.group(1)) if m else None


#: Runs already priced in this process, keyed by everything a run depends on (the instance, as
#: its repr: model, device, engine and configuration, and the load). A source often reports several
#: metrics of one run (TTFT, TPOT and throughput at one concurrency); they are one simulation or one
#: steady state, not one each.
_RESULTS: dict[tuple, object] = {}


def _run_once(inst: serve_load.Instance, load: tuple, run):
    """``run()`` once per (instance, load); the result objects are read, never changed."""
    key = (repr(inst), load)
    if key not in _RESULTS:
        _RESULTS[key] = run()
    return _RESULTS[key]


def burst(inst: serve_load.Instance, isl: int, osl: int, n: int) -> serve_sim.SimResult:
    """n requests of ``isl`` prompt and ``osl`` output tokens that all reach the engine at t = 0,
    simulated iteration by iteration until the last finishes (admission by free KV blocks up to
    ``max_num_seqs``, chunked prefill under the token budget, recompute preemption): the same
    step times as every other serving prediction (serve_load.round_time)."""
    return serve_sim.simulate_colocated(inst, np.full(n, isl), np.full(n, osl), np.zeros(n))


def _burst_metric(case: Case, inst: serve_load.Instance, isl: int, osl: int, n: int) -> float:
    """A burst row's metric: throughput over the makespan (input + output tokens, or output tokens
    only for ``output_tokens_per_s``), or the mean/median over all n requests (one wave, no warm-up
    to drop)."""
    r = _run_once(inst, ("burst", isl, osl, n), lambda: burst(inst, isl, osl, n))
    field, stat, scale = METRICS[case.metric]
    if stat is None:
        per_request = osl if field == "output_tokens_per_s" else isl + osl
        total = n * per_request / r.makespan_s
        gpus = int(inst.cfg.tp[0]) * int(inst.cfg.pp[0])
        return total / gpus if case.metric.endswith("_per_gpu") else total
    return r.summary(field, skip=0.0)[stat] * scale


@predictor("serve_load")
def predict_serve_load(case: Case, calibration=None) -> float:
    """The row's metric (:data:`METRICS`) for ``batch`` closed-loop clients, the open loop at
    the note's ``rate=R`` or the burst of the note's ``burst=N`` requests (:func:`burst`)."""
    model, hw, engine, cfg = _setup(case, calibration)
    if case.metric not in METRICS:
        raise ValueError(f"serve_load metric {case.metric!r} not supported ({', '.join(METRICS)})")
    rate, conc, n = stated_rate(case), case.int("batch"), stated_burst(case)
    inst = serve_load.Instance(model, hw, engine, cfg)
    if n:
        return _burst_metric(case, inst, int(cfg.isl[0]), int(cfg.osl[0]), n)
    if not conc and not rate:
        raise ValueError(
            f"serve_load row {case.id}: the batch column (the concurrency) or rate=R in the note is required"
        )
    isl, osl = np.array([int(cfg.isl[0])]), np.array([int(cfg.osl[0])])
    load = ("open", rate) if rate else ("closed", conc)
    r = _run_once(
        inst,
        (*load, int(isl[0]), int(osl[0])),
        lambda: (
            serve_load.open_loop(inst, isl, osl, rate)
            if rate
            else serve_load.closed_loop(inst, isl, osl, conc)
        ),
    )
    field, stat, scale = METRICS[case.metric]
    value = getattr(r, field)
    if stat is None:  # a rate of the whole instance (per GPU where the metric says so)
        return value / (int(cfg.tp[0]) * int(cfg.pp[0])) if case.metric.endswith("_per_gpu") else value
    return value[stat] * scale
