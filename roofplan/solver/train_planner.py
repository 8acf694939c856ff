"""Training planner: exhaustive vectorised search over parallelism, then a placement ILP.

1. :mod:`roofplan.solver.space` enumerates every configuration for the GPU budget and prunes by
   divisibility, node boundaries, framework limits and a cheap model-state memory bound.
2. The cost model's own validity rules (``check_train_config``) reject what Megatron/DeepSpeed
   would refuse; the survivors are timed with ONE vectorised ``train_step`` call per chunk, and
   configurations that do not fit HBM (or whose offloaded state does not fit the offload tier)
   are rejected as ``oom``/``offload_oom``. The search is exhaustive over the discrete space, so the
   winner is the true optimum under the model.
3. For the leading K configurations :mod:`roofplan.solver.placement_ilp` chooses the memory
   placement and the number of fully recomputed layers; a refinement the cost model and the
   launchers can express is re-evaluated with ``train_step`` and kept when it is faster.
4. Objectives: ``throughput`` (tokens/s on exactly ``gpus``) or ``cost`` ($ per million tokens from
   the catalog's ``price_per_hour``; searches ``gpus``, ``gpus/2``, ... since fewer GPUs at a
   higher utilisation can be cheaper); ``energy`` (joules per token from the power model of
   :mod:`roofplan.costmodel.power`, over the same GPU counts); ``tokens`` adds the days, dollars and
   kWh to train on that many.
5. With nothing feasible, relaxations are evaluated with the same search (more GPUs in power-of-two
   multiples, the full recompute/ZeRO/offload space if it was restricted, shorter sequences) and
   the smallest one that fits is named in the :class:`InfeasibleError`.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from roofplan.costmodel.power import energy_kwh, require_power, train_power_w
from roofplan.costmodel.train_configs import FP8_RECIPES, INT_FIELDS, MOE_DISPATCHERS, TRAIN_DTYPES
from roofplan.costmodel.train_estimate import ESTIMATE_METRICS, estimate_fields
from roofplan.errors import InfeasibleError, InputError
from roofplan.hardware.spec import DeviceSpec, usd_per_million_tokens
from roofplan.models.spec import ModelSpec
from roofplan.solver import constraints as cons
from roofplan.solver import frameworks as frameworks_
from roofplan.solver import placement_ilp as pilp
from roofplan.solver import robust
from roofplan.solver.plan_types import CONFIG_KEYS, FRAMEWORKS, TrainPlan, brief
from roofplan.solver.space import (
    OFFLOAD_CODES,
    OFFLOAD_NAMES,
    RECOMPUTE_CODES,
    RECOMPUTE_NAMES,
    SpaceOptions,
    enumerate_space,
)

OBJECTIVES = ("throughput", "cost", "energy")
#: Mixed-precision training types (fp8 = Transformer Engine FP8 GEMMs with bf16 elsewhere).
#: Configurations per vectorised cost-model call: bounds peak memory and keeps the working set in
#: cache (measured: ~2x more configurations per second at 16k than at 128k per call).
CHUNK = 1 << 14
#: Size of the pool of leading configurations kept while streaming chunks (top K and runner-up).
POOL = 64
#: The search arrays that become TrainConfigs fields as they are (activation offload is added apart).
_INT_KEYS = (*(f for f in INT_FIELDS if f != "act_offload_layers"), "sequence_parallel")
_METRICS = ESTIMATE_METRICS
GiB = float(2**30)


def _cm():
    """The training cost model module (imported lazily: it is the heaviest import)."""
    from roofplan.costmodel import train

    return train


# -- inputs ------------------------------------------------------------------------------------------
def _check_specs(model, hardware) -> None:
    """The planner takes resolved specs (:func:`roofplan.plan_training` resolves ids and overlays)."""
    if not isinstance(model, ModelSpec):
        raise InputError("model", model, "a resolved ModelSpec (roofplan.plan_training resolves ids)")
    if not isinstance(hardware, DeviceSpec):
        raise InputError("hardware", hardware, "a resolved DeviceSpec (roofplan.plan_training resolves ids)")


def _positive_int(name: str, v) -> int:
    try:
        iv = int(v)
    except (TypeError, ValueError):
        raise InputError(name, v, "a positive integer") from None
    if iv != v or iv < 1:
        raise InputError(name, v, "a positive integer")
    return iv


def _names(field: str, values, allowed) -> tuple:
    if values is None:
        return tuple(allowed)
    if isinstance(values, (str, int)):
        values = (values,)
    out = tuple(values)
    for v in out:
        if v not in allowed:
            raise InputError(field, v, "one of " + ", ".join(str(a) for a in allowed))
    return out


def _offload_tier(hw: DeviceSpec):
    """Where offloaded state goes: SN40L's device DDR if the device has one, else host DRAM."""
    t = hw.tier("ddr") or hw.tier("host")
    if t is None:
        return None
    return pilp.Tier(t.name, t.capacity_bytes / max(t.shared_by, 1), t.bandwidth_Bps)


# -- search ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _Search:
    searched: int = 0
    evaluated: int = 0
    feasible: int = 0
    rejected: Counter = dataclasses.field(default_factory=Counter)
    pool_cfg: dict | None = None  # arrays of the pooled configurations (+ "gpus")
    pool_met: dict | None = None  # their metrics
    pool_score: np.ndarray | None = None
    # the robust pool: configurations within the band of the best score seen so far, simplest first
    best_score: float = -np.inf
    rob_cfg: dict | None = None
    rob_met: dict | None = None
    rob_score: np.ndarray | None = None


def _score(
    tokens_per_s: np.ndarray, gpus, objective: str, price: float | None, power_w: np.ndarray | None = None
) -> np.ndarray:
    """Higher is better: tokens/s, minus dollars per million tokens, or minus joules per token
    (``power_w``: mean power per GPU)."""
    if objective == "cost":
        return -usd_per_million_tokens(price * np.asarray(gpus, dtype=float), np.maximum(tokens_per_s, 1e-30))
    if objective == "energy":
        return (
            -np.asarray(power_w, dtype=float)
            * np.asarray(gpus, dtype=float)
            / np.maximum(tokens_per_s, 1e-30)
        )
    return np.asarray(tokens_per_s, dtype=float)


def _power_w(hw: DeviceSpec, met) -> np.ndarray | None:
    """Mean power per GPU of evaluated configurations (a TrainArrays or a metrics dict)."""
    get = met.get if isinstance(met, dict) else lambda k: getattr(met, k)
    return train_power_w(hw, get("t_compute"), get("t_optimizer"), get("step_time_s"))


def _configs(arrays: dict, dtype: str, gpus_per_node: int, flash_attention: bool):
    tc = _cm().TrainConfigs
    kw = {k: arrays[k] for k in _INT_KEYS}
    kw["sequence_parallel"] = arrays["sequence_parallel"].astype(bool)
    kw["act_offload_layers"] = arrays.get("act_offload_layers", 0)
    return tc(**kw, dtype=dtype, gpus_per_node=gpus_per_node, flash_attention=flash_attention)


def _overwrite(arr, idx: np.ndarray, sub) -> None:
    """Put the lanes of ``sub`` (TrainArrays of ``idx.size`` configurations) at ``idx`` of ``arr``."""
    for f in dataclasses.fields(arr):
        v = np.array(getattr(arr, f.name), copy=True)
        v[idx] = getattr(sub, f.name)
        setattr(arr, f.name, v)


#: Scalars of the cost model the planner searches per configuration: array column -> (TrainConfigs
#: field, its value for each code). Code 0 is ``estimate train``'s default.
KNOBS = {
    "tp_comm_overlap": ("tp_comm_overlap", (False, True)),
    "moe_dispatcher": ("moe_dispatcher", MOE_DISPATCHERS),
    "fp8_recipe": ("fp8_recipe", FP8_RECIPES),
}


def _step(model, hw, arrays: dict, dtype: str, gpus_per_node: int, flash_attention: bool):
    """``train_step`` of configuration arrays whose :data:`KNOBS` columns (codes, optional) say
    which setting each lane runs (scalars of the cost model: one call per combination in use)."""
    cfg = _configs(arrays, dtype, gpus_per_node, flash_attention)
    n = arrays["tp"].shape
    codes = np.stack(
        [np.broadcast_to(np.asarray(arrays.get(k, 0), dtype=np.int64), n) for k in KNOBS], axis=1
    )
    combos, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(combos))
    order = np.argsort(-counts, kind="stable")  # the commonest setting over every lane, then the others

    def change(combo) -> dict:
        return {field: values[int(c)] for (field, values), c in zip(KNOBS.values(), combo)}

    arr = _cm().train_step(
        model, hw, dataclasses.replace(cfg, **change(combos[order[0]])) if len(combos) else cfg
    )
    for k in order[1:]:
        lanes = np.flatnonzero(inverse == k)
        _overwrite(
            arr, lanes, _cm().train_step(model, hw, dataclasses.replace(cfg, **change(combos[k])).take(lanes))
        )
    return arr


def _best_knob(
    model, hw, arr, arrays: dict, column: str, eligible: np.ndarray, step_kw: dict, constraints: tuple = ()
) -> None:
    """Search knob ``column`` (code 1 against the current 0) on the ``eligible`` lanes: lanes
    where it fits and is faster switch to it, in ``arr`` and in ``arrays`` (the other knobs as
    already chosen); ``constraints`` on the knob decide which settings a lane may take."""
    off = np.zeros(arrays["tp"].shape, dtype=np.int64)
    arrays[column] = off
    on_ok = cons.mask(constraints, arrays | {column: off + 1})
    off_ok = cons.mask(constraints, arrays)
    cand = np.flatnonzero(eligible & on_ok)
    if not cand.size:
        return
    sub = _step(model, hw, {k: v[cand] for k, v in arrays.items()} | {column: off[cand] + 1}, **step_kw)
    off_fits = np.asarray(arr.fits, dtype=bool)[cand] & off_ok[cand]
    better = np.asarray(sub.fits, dtype=bool) & (
        ~off_fits | (sub.tokens_per_s > arr.tokens_per_s[cand] * (1 + 1e-9))
    )
    if better.any():
        _overwrite(arr, cand[better], sub.take(better))
        arrays[column][cand[better]] = 1


def _search_knobs(
    model, hw, arr, arrays: dict, searched: tuple[str, ...], step_kw: dict, constraints
) -> None:
    """TP-comm overlap (Megatron ``--tp-comm-overlap``: TP > 1 with sequence parallelism), the MoE
    dispatcher (DeepEP: experts spread over EP > 1) and the FP8 recipe (fp8 training), each where
    ``searched`` names it; the others stay at code 0."""
    eligible = {
        "tp_comm_overlap": (arrays["tp"] > 1) & (arrays["sequence_parallel"] == 1),
        "moe_dispatcher": arrays["ep"] > 1,
        "fp8_recipe": np.full(arrays["tp"].shape, step_kw["dtype"] == "fp8"),
    }
    for column in KNOBS:
        arrays[column] = np.zeros(arrays["tp"].shape, dtype=np.int64)
    for column in KNOBS:
        if column in searched:
            post = tuple(c for c in constraints if KEYS_OF_KNOB.get(c.key) == column)
            _best_knob(model, hw, arr, arrays, column, eligible[column], step_kw, post)


#: Constraint key (solver/constraints.py) of each searched knob.
KEYS_OF_KNOB = {
    "tp_overlap": "tp_comm_overlap",
    "dispatcher": "moe_dispatcher",
    "fp8_recipe": "fp8_recipe",
    "act_offload": "act_offload_layers",
}


def _search_act_offload(model, hw, arr, arrays: dict, step_kw: dict, headroom_bytes: float, constraints=()):
    """Activation offload to host (Megatron-Core ``--cpu-offloading-num-layers``) on the lanes
    that do not fit, or not with the headroom, without it and where Megatron-Core allows it
    (pp 1, no recompute; the cost model's ``activation_offload`` rule): each takes the fewest
    offloaded layers that fit. Every offloaded layer beyond the first frees one layer's stored
    activations (:func:`~roofplan.costmodel.train_memory.activation_bytes`) while the exposed copy
    time grows with the count (:func:`~roofplan.costmodel.train_time.activation_offload_time`), so
    the fewest layers that fit are the fastest; a probe at 2 layers measures what one layer frees.
    A lane that fits without offload keeps none: offload only adds copies there."""
    n = arrays["tp"].shape
    arrays["act_offload_layers"] = np.zeros(n, dtype=np.int64)
    room = arr.capacity - headroom_bytes
    short = ~(np.asarray(arr.fits, dtype=bool) & (arr.mem_total <= room))
    lanes = (arrays["pp"] == 1) & (arrays["recompute"] == 0) & short
    lanes &= cons.mask(constraints, arrays | {"act_offload_layers": np.full(n, 2)})
    cand = np.flatnonzero(lanes)
    if not cand.size or model.layers < 3:
        return
    sub = {k: v[cand] for k, v in arrays.items()}
    probe = _step(model, hw, sub | {"act_offload_layers": np.full(cand.size, 2)}, **step_kw)
    per_layer = arr.mem_total[cand] - probe.mem_total
    need = arr.mem_total[cand] - room[cand]
    layers = 1 + np.ceil(need / np.where(per_layer > 0, per_layer, np.inf))
    ok = (per_layer > 0) & (layers < model.layers)
    layers = np.where(ok, np.maximum(layers, 2), 0).astype(np.int64)
    cand, layers = cand[ok], layers[ok]
    if not cand.size:
        return
    sub = {k: v[cand] for k, v in arrays.items()} | {"act_offload_layers": layers}
    if not cons.mask(constraints, sub).all():
        keep = cons.mask(constraints, sub)
        cand, layers = cand[keep], layers[keep]
        sub = {k: v[keep] for k, v in sub.items()}
    res = _step(model, hw, sub, **step_kw)
    good = np.asarray(res.fits, dtype=bool) & (res.mem_total <= res.capacity - headroom_bytes)
    if good.any():
        _overwrite(arr, cand[good], res.take(good))
        arrays["act_offload_layers"][cand[good]] = layers[good]


def _threshold(best: float, band: float) -> float:
    """Lowest score within ``band`` (a fraction) of ``best`` (scores may be negative: cost)."""
    return best - band * abs(best)


def _search(
    model: ModelSpec,
    hw: DeviceSpec,
    *,
    gpus: int,
    global_batch: int,
    seq_len: int,
    dtype: str,
    gpus_per_node: int,
    opts: SpaceOptions,
    objective: str,
    flash_attention: bool,
    state: _Search,
    progress: Callable[[int, int], None] | None = None,
    stop_at_first: bool = False,
    pool: int = POOL,
    headroom_bytes: float = 0.0,
    constraints: tuple = (),
    band: float | None = None,
    knobs: tuple[str, ...] = (),
) -> bool:
    """Search one GPU count into ``state``; returns whether anything fits.

    A configuration that fits but leaves less than ``headroom_bytes`` free is rejected as
    ``headroom``; one outside the user's ``constraints`` as ``constraint``. With ``band`` (a
    fraction) the robust pool keeps the simplest configurations within the band of the best.
    ``knobs`` names the :data:`KNOBS` evaluated for every lane that can use them."""
    cm = _cm()
    space = enumerate_space(
        model,
        hw,
        gpus=gpus,
        global_batch=global_batch,
        seq_len=seq_len,
        dtype=dtype,
        gpus_per_node=gpus_per_node,
        opts=opts,
    )
    state.searched += space.searched
    state.rejected.update(space.rejected)
    # constraints on the overlap apply once it is decided (after the cost model), the rest before
    post = tuple(c for c in constraints if c.key in KEYS_OF_KNOB)
    pre = tuple(c for c in constraints if c.key not in KEYS_OF_KNOB)
    if pre and len(space):
        ok = cons.mask(pre, space.arrays)
        if not ok.all():
            state.rejected["constraint"] += int((~ok).sum())
            space.arrays = space.take(ok)
    n = len(space)
    found = False
    for start in range(0, n, CHUNK):
        arrays = {k: v[start : start + CHUNK] for k, v in space.arrays.items()}
        cfg = _configs(arrays, dtype, gpus_per_node, flash_attention)
        code = cm.check_train_config(model, cfg)
        bad = code != 0
        if bad.any():
            for c, cnt in zip(*np.unique(code[bad], return_counts=True)):
                state.rejected[cm.REJECT_REASONS.get(int(c), f"reason_{int(c)}")] += int(cnt)
            ok = ~bad
            arrays = {k: v[ok] for k, v in arrays.items()}
            cfg = cfg.take(ok)
        if arrays["tp"].size:
            arr = cm.train_step(model, hw, cfg)
            step_kw = dict(dtype=dtype, gpus_per_node=gpus_per_node, flash_attention=flash_attention)
            _search_knobs(model, hw, arr, arrays, knobs, step_kw, post)
            if "act_offload_layers" in knobs:
                act = tuple(c for c in post if c.key == "act_offload")
                _search_act_offload(model, hw, arr, arrays, step_kw, headroom_bytes, act)
            state.evaluated += arrays["tp"].size
            excluded = ~cons.mask(post, arrays)
            if excluded.any():
                state.rejected["constraint"] += int(excluded.sum())
            fits = _feasible(state, arr, excluded, headroom_bytes)
            nf = int(fits.sum())
            state.feasible += nf
            if nf:
                found = True
                pw = _power_w(hw, arr)[fits] if objective == "energy" else None
                score = _score(arr.tokens_per_s[fits], gpus, objective, hw.price_per_hour, pw)
                k = min(pool, nf)
                top = np.argpartition(-score, k - 1)[:k] if nf > k else np.arange(nf)
                _merge(state, *_rows(arrays, arr, np.flatnonzero(fits)[top], gpus), score[top], pool)
                if band is not None:
                    state.best_score = max(state.best_score, float(score.max()))
                    near = np.flatnonzero(score >= _threshold(state.best_score, band))
                    rows = _rows(arrays, arr, np.flatnonzero(fits)[near], gpus)
                    _merge_robust(state, *rows, score[near], pool, band)
        if progress is not None:
            progress(min(start + CHUNK, n), n)
        if found and stop_at_first:
            return True
    return found


def _feasible(state: _Search, arr, excluded: np.ndarray, headroom_bytes: float) -> np.ndarray:
    """Rows of a chunk that fit, are not excluded by a constraint and leave ``headroom_bytes``
    free; the others are counted in ``state.rejected`` as ``oom`` (HBM), ``offload_oom`` (the
    offload tier: the cost model's fits covers both) or ``headroom``."""
    fits = np.asarray(arr.fits, dtype=bool)
    hbm_oom = ~fits & ~excluded & (arr.mem_total > arr.capacity)
    for name, mask in (("oom", hbm_oom), ("offload_oom", ~fits & ~excluded & ~hbm_oom)):
        if mask.any():
            state.rejected[name] += int(mask.sum())
    fits &= ~excluded
    tight = fits & (arr.capacity - arr.mem_total < headroom_bytes)
    if tight.any():
        state.rejected["headroom"] += int(tight.sum())
        fits &= ~tight
    return fits


def _rows(arrays: dict, arr, idx: np.ndarray, gpus: int) -> tuple[dict, dict]:
    """The configurations (tagged with the GPU count) and the metrics of rows ``idx`` of a chunk."""
    cfg_part = {k: v[idx] for k, v in arrays.items()}
    cfg_part["gpus"] = np.full(idx.size, gpus, dtype=np.int64)
    met_part = {m: np.asarray(getattr(arr, m), dtype=float)[idx] for m in _METRICS}
    return cfg_part, met_part


def _rank(score: np.ndarray, cfg: dict, met: dict) -> np.ndarray:
    """Order by score (best first); among equal scores (to 10 significant digits) prefer the simpler
    configuration (no recompute, no offload, lower ZeRO stage, no SP), then the smaller footprint:
    a knob that does not make the step faster should not be turned on."""
    mag = 10.0 ** np.floor(np.log10(np.maximum(np.abs(score), 1e-300)))
    q = np.round(score / mag, 10) * mag
    act = np.asarray(cfg.get("act_offload_layers", 0)) > 0
    complexity = cfg["recompute"] * 4 + (cfg["offload"] + act) * 8 + cfg["zero"] + cfg["sequence_parallel"]
    return np.lexsort((met["mem_total"], complexity, -q))


def _merge(state: _Search, cfg: dict, met: dict, score: np.ndarray, pool: int) -> None:
    if state.pool_cfg is None:
        state.pool_cfg, state.pool_met, state.pool_score = cfg, met, score
    else:
        state.pool_cfg = {k: np.concatenate([state.pool_cfg[k], cfg[k]]) for k in cfg}
        state.pool_met = {k: np.concatenate([state.pool_met[k], met[k]]) for k in met}
        state.pool_score = np.concatenate([state.pool_score, score])
    order = _rank(state.pool_score, state.pool_cfg, state.pool_met)[:pool]
    state.pool_cfg = {k: v[order] for k, v in state.pool_cfg.items()}
    state.pool_met = {k: v[order] for k, v in state.pool_met.items()}
    state.pool_score = state.pool_score[order]


def _merge_robust(state: _Search, cfg: dict, met: dict, score: np.ndarray, pool: int, band: float) -> None:
    """Keep the ``pool`` simplest configurations within ``band`` of the best score seen so far (a
    configuration within the band of the final best is within the band of every earlier best, so
    none is lost by filtering early)."""
    if state.rob_cfg is not None:
        cfg = {k: np.concatenate([state.rob_cfg[k], cfg[k]]) for k in cfg}
        met = {k: np.concatenate([state.rob_met[k], met[k]]) for k in met}
        score = np.concatenate([state.rob_score, score])
    keep = np.flatnonzero(score >= _threshold(state.best_score, band))
    free = met["capacity"][keep] - met["mem_total"][keep]
    sub = {k: v[keep] for k, v in cfg.items()}
    order = keep[robust.simplicity_order(sub, free, score[keep])[:pool]]
    state.rob_cfg = {k: v[order] for k, v in cfg.items()}
    state.rob_met = {k: v[order] for k, v in met.items()}
    state.rob_score = score[order]


# -- candidates --------------------------------------------------------------------------------------
def _candidate(
    model: ModelSpec,
    hw: DeviceSpec,
    cfg: dict,
    met: dict,
    i: int,
    *,
    dtype: str,
    gpus_per_node: int,
    tokens: float | None,
) -> dict:
    """One candidate: its configuration and its estimate (the docs/SPEC.md §3.1 fields)."""
    g = int(cfg["gpus"][i])
    c = {
        "gpus": g,
        "gpus_per_node": gpus_per_node,
        "tp": int(cfg["tp"][i]),
        "pp": int(cfg["pp"][i]),
        "dp": int(cfg["dp"][i]),
        "cp": int(cfg["cp"][i]),
        "ep": int(cfg["ep"][i]),
        "vpp": int(cfg["vpp"][i]),
        "micro_batch": int(cfg["micro_batch"][i]),
        "global_batch": int(cfg["global_batch"][i]),
        "seq_len": int(cfg["seq_len"][i]),
        "dtype": dtype,
        "recompute": RECOMPUTE_NAMES[int(cfg["recompute"][i])],
        "recompute_layers": int(cfg["recompute_layers"][i]),
        "sequence_parallel": bool(cfg["sequence_parallel"][i]),
        "zero": int(cfg["zero"][i]),
        "offload": OFFLOAD_NAMES[int(cfg["offload"][i])],
        "tp_comm_overlap": bool(cfg["tp_comm_overlap"][i]) if "tp_comm_overlap" in cfg else False,
        "moe_dispatcher": KNOBS["moe_dispatcher"][1][
            int(cfg["moe_dispatcher"][i]) if "moe_dispatcher" in cfg else 0
        ],
        "fp8_recipe": KNOBS["fp8_recipe"][1][int(cfg["fp8_recipe"][i]) if "fp8_recipe" in cfg else 0],
        "act_offload_layers": int(cfg["act_offload_layers"][i]) if "act_offload_layers" in cfg else 0,
    }
    # expert tensor parallelism as a degree (the arrays' 0 means "= tp")
    c["etp"] = int(cfg["etp"][i]) or c["tp"]
    m = {k: float(v[i]) for k, v in met.items()}
    tps = m["tokens_per_s"]
    est = {**estimate_fields(m.__getitem__), "fits": True}
    price = hw.price_per_hour
    if price is not None and tps > 0:
        est["usd_per_million_tokens"] = usd_per_million_tokens(price * g, tps)
    pw = _power_w(hw, m)
    if pw is not None:
        est["power_w_per_gpu"] = float(pw)
        est["joules_per_token"] = float(pw) * g / tps if tps > 0 else None
    if tokens is not None and tps > 0:
        days = tokens / tps / 86400.0
        est["time_to_train_days"] = days
        est["cost_to_train_usd"] = None if price is None else days * 24.0 * g * price
        est["energy_to_train_kwh"] = None if pw is None else float(energy_kwh(float(pw) * g, days * 86400.0))
    return {**c, **est}


def _layout(c: dict) -> tuple:
    return tuple(c[k] for k in ("gpus", "tp", "pp", "dp", "cp", "ep", "vpp"))


def _sort_key(c: dict, objective: str) -> tuple:
    """The ranking of :func:`_rank` for one candidate dict (score, then simplicity, then memory)."""
    score = (
        c["tokens_per_s"]
        if objective == "throughput"
        else -c.get("joules_per_token", float("inf"))
        if objective == "energy"
        else -c.get("usd_per_million_tokens", float("inf"))
    )
    complexity = (
        RECOMPUTE_CODES[c["recompute"]] * 4
        + (OFFLOAD_CODES[c["offload"]] + int(c.get("act_offload_layers", 0) > 0)) * 8
        + c["zero"]
        + int(c["sequence_parallel"])
    )
    return (-float(f"{score:.10g}"), complexity, c["memory_gib_per_gpu"]["total"])


def _distinct(pool: list[dict], top: int) -> list[dict]:
    """The first ``top`` candidates that differ in more than a knob that changes nothing (e.g.
    selective recompute under FlashAttention, which has no scores to recompute): one with the same
    layout, micro-batch, ZeRO, offload and the same step time as a better-ranked one is skipped."""
    seen, out = set(), []
    for c in pool:
        key = _layout(c) + (
            c["micro_batch"],
            c["zero"],
            c["offload"],
            c["recompute_layers"],
            c.get("act_offload_layers", 0),
            float(f"{c['step_time_s']:.9g}"),
        )
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
        if len(out) == top:
            break
    return out


def _score_of(c: dict, objective: str) -> float:
    if objective == "energy":
        return -c.get("joules_per_token", float("inf"))
    return c["tokens_per_s"] if objective == "throughput" else -c.get("usd_per_million_tokens", float("inf"))


def _robust_rank(cands: list[dict], objective: str, band: float | None) -> list[int]:
    """Indices of ``cands`` in the order shown: the candidates whose score is within ``band`` of
    the best, simplest first (:func:`roofplan.solver.robust.simplicity_order`), then the rest by
    score (:func:`_sort_key`). Marks each candidate's ``tied_with_best``."""
    by_score = sorted(range(len(cands)), key=lambda i: _sort_key(cands[i], objective))
    if not by_score:
        return by_score
    thr = _threshold(_score_of(cands[by_score[0]], objective), band or 0.0)
    tied = [i for i in by_score if band is not None and _score_of(cands[i], objective) >= thr] or by_score[:1]
    in_band = set(tied)
    rest = [i for i in by_score if i not in in_band]
    if len(tied) > 1:
        arrays = _stack([_variants(cands[i]) for i in tied])
        order = robust.simplicity_order(
            arrays,
            [cands[i]["free_memory_gib"] for i in tied],
            [_score_of(cands[i], objective) for i in tied],
        )
        tied = [tied[j] for j in order]
    for i in by_score:
        cands[i]["tied_with_best"] = i in in_band
    return tied + rest


def _recompute_s(c: dict) -> float:
    """Compute time spent re-running forward passes: compute x (1 - model/hardware FLOPs)."""
    hw_f = c["hardware_tflops_per_gpu"]
    return c["breakdown_s"]["compute"] * (1.0 - c["model_tflops_per_gpu"] / hw_f) if hw_f > 0 else 0.0


def _exposed_comm(c: dict) -> float:
    b = c["breakdown_s"]
    return sum(
        b[k]
        for k in (
            "tp_comm_exposed",
            "cp_comm_exposed",
            "ep_comm_exposed",
            "pp_comm_exposed",
            "dp_comm_exposed",
            "offload_exposed",
        )
    )


_WORSE = {"throughput": "slower", "cost": "dearer", "energy": "more energy per token"}


def _robust_note(best: dict, fastest: dict | None, tied: list[dict], objective: str, band) -> str:
    """The robust-choice sentence of "why #1 wins" (empty when the fastest is also the simplest)."""
    if fastest is None or fastest is best:
        return ""
    sf, sb = _score_of(fastest, objective), _score_of(best, objective)
    loss = abs(sf - sb) / abs(sf) if sf else 0.0
    layout = f"tp={fastest['tp']} pp={fastest['pp']} dp={fastest['dp']} cp={fastest['cp']} ep={fastest['ep']}"
    reasons = robust.simpler_reasons(best, fastest) or ["simpler by the tie-break rule"]
    return (
        f"ranked first although predicted {100 * loss:.2f}% {_WORSE[objective]}"
        f" than the fastest candidate ({layout}): that is within the error band {band.label}, "
        f"{len(tied)} of the shown candidates are tied, and this one is simpler: " + ", ".join(reasons) + "; "
    )


def _why(best: dict, pool: list[dict], objective: str, note: str = "") -> dict:
    """Why the winner wins: the terms that differ most from the best other parallel layout."""
    runner = next((c for c in pool[1:] if _layout(c) != _layout(best)), pool[1] if len(pool) > 1 else None)
    if runner is None:
        return {"summary": note + "the only feasible configuration", "runner_up": None}

    def terms(c):
        m = c["memory_gib_per_gpu"]
        return {
            "pp_bubble_s": c["breakdown_s"]["pp_bubble"],
            "exposed_comm_s": _exposed_comm(c),
            "recompute_s": _recompute_s(c),
            "compute_s": c["breakdown_s"]["compute"],
            "memory_headroom_gib": m["capacity"] - m["total"],
            "step_time_s": c["step_time_s"],
        }

    tb, tr = terms(best), terms(runner)
    diffs = {k: {"best": tb[k], "runner_up": tr[k], "delta": tb[k] - tr[k]} for k in tb}
    time_terms = ("pp_bubble_s", "exposed_comm_s", "recompute_s", "compute_s")
    gains = sorted(((tr[k] - tb[k], k) for k in time_terms), reverse=True)
    label = {
        "pp_bubble_s": "pipeline bubble",
        "exposed_comm_s": "exposed communication",
        "recompute_s": "recomputation",
        "compute_s": "compute (GEMM efficiency)",
    }
    parts = [f"{1e3 * g:.1f} ms of {label[k]}" for g, k in gains if g > 0][:3]
    speed = runner["step_time_s"] / best["step_time_s"] if best["step_time_s"] > 0 else float("nan")
    deg = " ".join(f"{k}={runner[k]}" for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "micro_batch"))
    rival = f"the runner-up ({runner['gpus']} GPUs, {deg}, recompute {runner['recompute']}, zero {runner['zero']})"
    if objective == "cost":
        cb, cr = best.get("usd_per_million_tokens"), runner.get("usd_per_million_tokens")
        summary = (
            f"${cb:.3f} vs ${cr:.3f} per million tokens ({100 * (1 - cb / cr):.1f}% cheaper) than {rival}"
            if cb and cr
            else f"cheaper than {rival}"
        )
    elif objective == "energy":
        eb, er = best.get("joules_per_token"), runner.get("joules_per_token")
        summary = (
            f"{eb:.4g} vs {er:.4g} J per token ({100 * (1 - eb / er):.1f}% less energy) than {rival}"
            if eb and er
            else f"less energy than {rival}"
        )
    else:
        summary = (
            f"ties {rival} on step time"
            if abs(speed - 1.0) < 1e-6
            else f"{100 * (speed - 1):.2f}% faster per step than {rival}"
            if speed > 1
            else f"{100 * (1 - speed):.2f}% slower per step than {rival}, within the band"
        )
    if parts:
        summary += "; the winner saves " + ", ".join(parts)
    summary += f"; memory headroom {tb['memory_headroom_gib']:.1f} GiB vs {tr['memory_headroom_gib']:.1f} GiB"
    return {"summary": note + summary, "runner_up": brief(runner), "terms": diffs}


# -- placement ILP -----------------------------------------------------------------------------------
def _variants(c: dict, **changes) -> dict:
    d = {k: np.array([c[k] if not isinstance(c[k], str) else 0]) for k in _INT_KEYS if k in c}
    d["recompute"] = np.array([RECOMPUTE_CODES[c["recompute"]]])
    d["offload"] = np.array([OFFLOAD_CODES[c["offload"]]])
    d["sequence_parallel"] = np.array([int(c["sequence_parallel"])])
    d["tp_comm_overlap"] = np.array([int(c.get("tp_comm_overlap", False))])
    d["moe_dispatcher"] = np.array([KNOBS["moe_dispatcher"][1].index(c.get("moe_dispatcher", "alltoall"))])
    d["fp8_recipe"] = np.array([KNOBS["fp8_recipe"][1].index(c.get("fp8_recipe", "current"))])
    d["etp"] = np.array([0 if c.get("etp", c["tp"]) == c["tp"] else c["etp"]])
    d["act_offload_layers"] = np.array([c.get("act_offload_layers", 0)])
    for k, v in changes.items():
        d[k] = np.array([v])
    return d


def _stack(rows: list[dict]) -> dict:
    return {k: np.concatenate([r[k] for r in rows]).astype(np.int64) for k in rows[0]}


def _problems(model, hw, cands: list[dict], flash_attention: bool, headroom_bytes: float = 0.0):
    """Placement programs of ``cands`` with coefficients from three cost-model corners each: no
    recompute, selective, full (all on HBM); HBM is the capacity less the headroom."""
    rows = []
    for c in cands:
        rows += [
            _variants(c, recompute=0, recompute_layers=0, offload=0),
            _variants(c, recompute=1, recompute_layers=0, offload=0),
            _variants(c, recompute=2, recompute_layers=0, offload=0),
            _variants(c, recompute=0, recompute_layers=0, offload=1),
            _variants(c, recompute=0, recompute_layers=0, offload=2),
        ]
    arrays = _stack(rows)
    c0 = cands[0]
    arr = _step(model, hw, arrays, c0["dtype"], c0["gpus_per_node"], flash_attention)
    tier = _offload_tier(hw)
    out = []
    for i, c in enumerate(cands):
        a, s, f, o1, o2 = 5 * i, 5 * i + 1, 5 * i + 2, 5 * i + 3, 5 * i + 4
        ls = max(model.layers // c["pp"], 1)
        opt = float(arr.mem_optimizer[a])
        t_opt = max(float(arr.step_time_s[o1] - arr.step_time_s[a]), 0.0)
        live = arr.mem_weights + arr.mem_gradients + arr.mem_optimizer + arr.mem_activations
        rest = arr.mem_total - live
        dl = float(live[a] - live[f])
        overhead = max(float(rest[a] - rest[f]) / dl, 0.0) if dl > 0 else 0.0
        fixed = float(rest[a] - overhead * live[a])
        prob = pilp.PlacementProblem(
            hbm_capacity=float(arr.capacity[a]) - headroom_bytes,
            # what is not a movable state: other = fixed + overhead x live, fitted on two corners
            fixed_hbm_bytes=fixed,
            live_overhead=overhead,
            # fp32 master weights are 4 of the 12 optimizer bytes per parameter, the Adam moments 8
            # (mixed-precision Adam, ZeRO §3.1)
            state_bytes={
                "optimizer_moments": opt * 8.0 / 12.0,
                "master_weights": opt * 4.0 / 12.0,
                "gradients": float(arr.mem_gradients[a]),
                "parameters": float(arr.mem_weights[a]),
            },
            act_none=float(arr.mem_activations[a]),
            act_selective=float(arr.mem_activations[s]),
            act_saved_per_layer=max(float(arr.mem_activations[a] - arr.mem_activations[f]) / ls, 0.0),
            layers_per_stage=ls,
            t_base=float(arr.step_time_s[a]),
            t_selective=max(float(arr.step_time_s[s] - arr.step_time_s[a]), 0.0),
            t_recompute_per_layer=max(float(arr.step_time_s[f] - arr.step_time_s[a]) / ls, 0.0),
            window=float(arr.t_compute[a]),
            tiers=(tier,) if tier is not None else (),
            # the cost model's own price of optimizer offload (host Adam + transfers) split over
            # moments and master weights by bytes, and of parameter offload (weight streaming)
            state_cost_s={
                "optimizer_moments": t_opt * 2.0 / 3.0,
                "master_weights": t_opt / 3.0,
                "parameters": max(float(arr.step_time_s[o2] - arr.step_time_s[o1]), 0.0),
            },
        )
        out.append(prob)
    return out


def _expressible(prob: pilp.PlacementProblem, c: dict, opts: SpaceOptions) -> pilp.PlacementProblem:
    """Restrict a program to placements the cost model and the launchers express: Adam moments and
    master weights move together (optimizer offload), parameters only with them and ZeRO-3 (ZeRO-
    Infinity ``offload_param``), gradients and activations stay in HBM."""
    tiers = tuple(t.name for t in prob.tiers)
    allowed = {
        "optimizer_moments": tiers,
        "master_weights": tiers,
        "gradients": (),
        "activations": (),
        "parameters": tiers if c["zero"] == 3 else (),
    }
    if c["zero"] == 0 or not ({"optimizer", "optimizer+params"} & set(opts.offload)):
        # optimizer offload needs a ZeRO optimizer (DeepSpeed, Megatron) and the user's consent
        allowed["optimizer_moments"] = allowed["master_weights"] = ()
    if "optimizer+params" not in opts.offload:
        allowed["parameters"] = ()
    framework = opts.framework
    fws = (framework,) if isinstance(framework, str) else tuple(framework or ())
    # what the asked-for launchers write (solver/frameworks.py): optimizer offload, parameters with it
    if not frameworks_.expresses(fws, c, offload=1):
        allowed["optimizer_moments"] = allowed["master_weights"] = allowed["parameters"] = ()
    if not frameworks_.expresses(fws, c, offload=2):
        allowed["parameters"] = ()
    partial = frameworks_.expresses(fws, c, recompute=2, recompute_layers=1)
    return dataclasses.replace(
        prob,
        allowed=allowed,
        full_all_or_nothing=not partial,
        allow_selective="selective" in opts.recompute,
        allow_full="full" in opts.recompute,
        links=(
            ("same", "optimizer_moments", "master_weights"),
            ("implies", "parameters", "optimizer_moments"),
        ),
    )


def _decision_of(c: dict, prob: pilp.PlacementProblem) -> pilp.Decision:
    tier = prob.tiers[0].name if prob.tiers else "hbm"
    off = OFFLOAD_CODES[c["offload"]]
    placement = {s: "hbm" for s in prob.state_bytes}
    if off >= 1:
        placement["optimizer_moments"] = placement["master_weights"] = tier
    if off >= 2:
        placement["parameters"] = tier
    r = c["recompute_layers"] or prob.layers_per_stage if c["recompute"] == "full" else 0
    return pilp.Decision(placement, {}, c["recompute"] == "selective", int(r))


def _configs_of(c: dict, res: pilp.PlacementResult, ls: int, prob: pilp.PlacementProblem) -> list[dict]:
    """The configurations the cost model checks for a placement decision: its offload level and
    recompute choice; unless selective, every layer count 0..stage (the program's memory is linear
    in the layer count, the cost model's need not be exactly, so the count that really fits best is
    taken from this sweep; the ILP's own count is one of them)."""
    d = res.decision
    pl = d.placement
    off = 0
    if pl.get("optimizer_moments", "hbm") != "hbm" and pl.get("master_weights", "hbm") != "hbm":
        off = 2 if pl.get("parameters", "hbm") != "hbm" else 1
    if d.selective:
        return [_variants(c, recompute=1, recompute_layers=0, offload=off)]
    if not prob.allow_full:
        counts = [0]
    elif prob.full_all_or_nothing:
        counts = [0, ls]
    else:
        counts = range(ls + 1)
    out = []
    for r in counts:
        if r == 0:
            out.append(_variants(c, recompute=0, recompute_layers=0, offload=off))
        else:
            out.append(_variants(c, recompute=2, recompute_layers=0 if r >= ls else r, offload=off))
    return out


def _refine(
    model,
    hw,
    cands: list[dict],
    *,
    objective: str,
    flash_attention: bool,
    opts: SpaceOptions,
    tokens,
    time_limit_s: float,
    headroom_bytes: float = 0.0,
    constraints: tuple = (),
) -> tuple[list[dict], list[dict]]:
    """Solve the placement program of each candidate, check its decision with the cost model (one
    vectorised call for all candidates) and keep it where it is faster and fits. Returns
    (candidates, placement reports)."""
    probs = _problems(model, hw, cands, flash_attention, headroom_bytes)
    results, rows, owner = [], [], []
    for i, (c, p) in enumerate(zip(cands, probs)):
        rp = _expressible(p, c, opts)
        res = pilp.solve(rp, _decision_of(c, rp), time_limit_s=time_limit_s)
        results.append((p, res))
        variants = _configs_of(c, res, p.layers_per_stage, rp)
        rows += variants
        owner += [i] * len(variants)
    arrays = _stack(rows)
    owner = np.array(owner)
    step_kw = (cands[0]["dtype"], cands[0]["gpus_per_node"], flash_attention)
    arr = _step(model, hw, arrays, *step_kw)
    # a refinement must be a configuration the cost model prices (e.g. no CPU offload under FSDP2
    # with a pipeline), keep the headroom and the user's constraints (a fixed knob stays fixed)
    fits = (
        (_cm().check_train_config(model, _configs(arrays, *step_kw)) == 0)
        & np.asarray(arr.fits, dtype=bool)
        & (arr.capacity - arr.mem_total >= headroom_bytes)
        & cons.mask(constraints, arrays)
    )
    new, reports = [], []
    price = hw.price_per_hour
    for i, (c, (p, res)) in enumerate(zip(cands, results)):
        applied = False
        mine = np.flatnonzero((owner == i) & fits)
        if mine.size and res.method == "ilp":
            pw = _power_w(hw, arr)[mine] if objective == "energy" else None
            score = _score(arr.tokens_per_s[mine], c["gpus"], objective, price, pw)
            j = int(mine[int(np.argmax(score))])
            cfg = {k: v[j : j + 1] for k, v in arrays.items()}
            cfg["gpus"] = np.array([c["gpus"]])
            met = {m: np.asarray(getattr(arr, m), dtype=float)[j : j + 1] for m in _METRICS}
            cand = _candidate(
                model, hw, cfg, met, 0, dtype=c["dtype"], gpus_per_node=c["gpus_per_node"], tokens=tokens
            )
            same = all(cand[k] == c[k] for k in CONFIG_KEYS)
            s_new = _score(
                np.array([cand["tokens_per_s"]]),
                c["gpus"],
                objective,
                price,
                np.array([cand.get("power_w_per_gpu", np.nan)]),
            )[0]
            s_old = _score(
                np.array([c["tokens_per_s"]]),
                c["gpus"],
                objective,
                price,
                np.array([c.get("power_w_per_gpu", np.nan)]),
            )[0]
            if not same and s_new > s_old * (1 + 1e-9) + 1e-12:
                c, applied = cand, True
        new.append(c)
        rep = res.to_json()
        rep["applied"] = applied
        if applied:
            rep["confirmed"] = {
                "recompute": c["recompute"],
                "recompute_layers": c["recompute_layers"],
                "offload": c["offload"],
                "step_time_s": c["step_time_s"],
            }
        rep["offload_tier"] = p.tiers[0].name if p.tiers else None
        reports.append(rep)
    return new, reports


def _unrestricted_placement(
    model, hw, c: dict, flash_attention: bool, time_limit_s: float, headroom_bytes: float = 0.0
) -> dict:
    """The placement program with every state free to move (advice beyond what launchers express)."""
    p = _problems(model, hw, [c], flash_attention, headroom_bytes)[0]
    res = pilp.solve(p, _decision_of(c, p), time_limit_s=time_limit_s)
    return res.to_json()


# -- infeasible: evaluate relaxations ----------------------------------------------------------------
def _fits_any(model, hw, *, opts: SpaceOptions, constraints=(), **job) -> bool:
    """Whether anything fits ``job`` (the other keywords of :func:`_search`); the first fitting
    configuration ends the search. The knobs searched are those the constraints name, and
    activation offload where the search may offload and the launchers of ``opts`` write it."""
    knobs = tuple(KEYS_OF_KNOB[c.key] for c in constraints if c.key in KEYS_OF_KNOB)
    fws = (opts.framework,) if isinstance(opts.framework, str) else tuple(opts.framework or ())
    if set(opts.offload) != {"none"} and frameworks_.expresses(
        fws, {"zero": 1, "pp": 1}, act_offload_layers=1
    ):
        knobs = tuple(dict.fromkeys(knobs + ("act_offload_layers",)))
    return _search(
        model,
        hw,
        opts=opts,
        constraints=constraints,
        objective="throughput",
        state=_Search(),
        stop_at_first=True,
        pool=1,
        knobs=knobs,
        **job,
    )


#: Largest GPU count the infeasibility search tries (2^24, far beyond any cluster).
_MAX_RELAXED_GPUS = 2**24


def _infeasible(
    model,
    hw,
    *,
    gpus,
    global_batch,
    seq_len,
    dtype,
    gpus_per_node,
    opts: SpaceOptions,
    flash_attention,
    state: _Search,
    headroom_bytes: float = 0.0,
    constraints: tuple = (),
) -> InfeasibleError:
    """The smallest change that would make a configuration fit, each checked with the cost model."""
    kw = {
        "global_batch": global_batch,
        "dtype": dtype,
        "gpus_per_node": gpus_per_node,
        "flash_attention": flash_attention,
        "headroom_bytes": headroom_bytes,
        "constraints": constraints,
    }
    fixes, details = [], {}
    base = {"gpus": gpus, "seq_len": seq_len, "opts": opts}
    if constraints and _fits_any(model, hw, **base, **(kw | {"constraints": ()})):
        fixes.append(f"drop the constraints ({cons.describe(constraints)})")
        details["constraints"] = False
    if headroom_bytes > 0 and _fits_any(model, hw, **base, **(kw | {"headroom_bytes": 0.0})):
        fixes.append(f"lower --memory-headroom below {headroom_bytes / GiB:.1f} GiB")
        details["memory_headroom_gib"] = 0.0
    full = SpaceOptions(
        framework=opts.framework,
        allow_cross_node_tp=opts.allow_cross_node_tp,
        max_micro_batch=opts.max_micro_batch,
    )
    restricted = full != dataclasses.replace(opts, tp=None, pp=None, cp=None, ep=None, vpp=None)
    if restricted and _fits_any(model, hw, gpus=gpus, seq_len=seq_len, opts=full, **kw):
        fixes.append("allow every recompute / ZeRO / offload / sequence-parallel option and every degree")
        details["full_space"] = True

    def fits(**change) -> bool:
        return _fits_any(model, hw, **({"gpus": gpus, "seq_len": seq_len, "opts": opts} | kw | change))

    # beyond _MAX_RELAXED_GPUS: beyond any cluster; degree products would also overflow int64
    more = [gpus * 2**k for k in range(1, 13) if gpus * 2**k <= _MAX_RELAXED_GPUS]
    g = _first(more, lambda g: fits(gpus=g))
    if g is not None:
        fixes.append(f"use {g} GPUs ({g // gpus}x)")
        details["gpus"] = g
    else:
        # more GPUs did not help: the budget may be larger than the global batch can use (every
        # layout rejected for divisibility); fewer GPUs, or a larger global batch, then fit
        # whole nodes times a power of two, then fractions of a node, largest first
        fewer = [gpus_per_node * 2**k for k in range(40) if gpus_per_node * 2**k < gpus][::-1]
        fewer += [gpus_per_node // 2**k for k in range(1, 8) if 1 <= gpus_per_node // 2**k < gpus]
        g = _first(dict.fromkeys(fewer), lambda g: fits(gpus=g))
        if g is not None:
            fixes.append(f"use fewer GPUs: {g}")
            details["gpus"] = g
        larger = [global_batch * 2**k for k in range(1, 21) if global_batch * 2**k <= 2**31 - 1]
        gb = _first(larger, lambda gb: fits(global_batch=gb))
        if gb is not None:
            fixes.append(f"raise --global-batch to {gb}")
            details["global_batch"] = gb
    shorter = [seq_len // 2**k for k in range(1, 64) if seq_len // 2**k >= 128]
    sl = _first(shorter, lambda sl: fits(seq_len=sl))
    if sl is not None:
        fixes.append(f"shorten --seq-len to {sl}")
        details["seq_len"] = sl
    if (
        not opts.allow_cross_node_tp
        and gpus > gpus_per_node
        and _fits_any(
            model,
            hw,
            gpus=gpus,
            seq_len=seq_len,
            opts=dataclasses.replace(opts, allow_cross_node_tp=True),
            **kw,
        )
    ):
        fixes.append("allow tensor parallelism across nodes (--allow-cross-node-tp)")
        details["allow_cross_node_tp"] = True
    top = ", ".join(f"{k}: {v}" for k, v in state.rejected.most_common(3))
    msg = (
        f"no configuration of {model.name} fits on {gpus} x {hw.id} (global batch {global_batch}, "
        f"sequence {seq_len}, {dtype}); searched {state.searched}, rejected {top}"
    )
    suggestion = (
        ("smallest change that fits: " + "; or ".join(fixes))
        if fixes
        else "nothing tried fits (more GPUs up to 4096x, shorter sequences down to 128)"
    )
    details.update({"searched": state.searched, "rejected": dict(state.rejected)})
    return InfeasibleError(msg, suggestion, details)


def _first(values, fits):
    """The first of ``values`` (tried in order: the smallest change first) for which ``fits``
    holds, or None."""
    return next((v for v in values if fits(v)), None)


def _headroom_bytes(gib, hw: DeviceSpec) -> float:
    """The free memory per device a pick must leave, in bytes (default from the allocator)."""
    from roofplan.costmodel.train_memory import default_memory_headroom_bytes

    if gib is None:
        return default_memory_headroom_bytes(hw.hbm_bytes)
    try:
        v = float(gib)
    except (TypeError, ValueError):
        raise InputError("memory_headroom", gib, "a number of GiB >= 0") from None
    cap = hw.hbm_bytes / GiB
    if not (0.0 <= v < cap):
        raise InputError(
            "memory_headroom", gib, f"a number of GiB from 0 to below the {cap:.0f} GiB of {hw.id}"
        )
    return v * GiB


def _pooled(model, hw, state: _Search, *, dtype: str, gpus_per_node: int, tokens) -> list[dict]:
    """The candidates of the score pool and of the robust pool, each configuration once."""
    out, seen = [], set()
    for cfg, met, score in (
        (state.pool_cfg, state.pool_met, state.pool_score),
        (state.rob_cfg, state.rob_met, state.rob_score),
    ):
        if cfg is None:
            continue
        for i in range(score.size):
            c = _candidate(model, hw, cfg, met, i, dtype=dtype, gpus_per_node=gpus_per_node, tokens=tokens)
            key = tuple(c[k] for k in CONFIG_KEYS)
            if key not in seen:
                seen.add(key)
                out.append(c)
    return out


def _check_goal(hw: DeviceSpec, dtype: str, objective: str, tokens) -> float | None:
    """InputError for a dtype, objective or token budget the plan cannot take; the tokens as a float."""
    if dtype not in TRAIN_DTYPES:
        raise InputError("dtype", dtype, "one of " + ", ".join(TRAIN_DTYPES) + " for training")
    hw.peak(dtype)  # InputError for a dtype the device has no peak for (fp8 before Hopper)
    if objective not in OBJECTIVES:
        raise InputError("objective", objective, "one of " + ", ".join(OBJECTIVES))
    if objective == "cost" and not hw.price_per_hour:
        raise InputError(
            "objective", objective, f"{hw.id} has no price_per_hour in its catalog; use throughput"
        )
    if objective == "energy":
        require_power(hw)
    if tokens is None:
        return None
    try:
        tokens = float(tokens)
    except (TypeError, ValueError):
        raise InputError("tokens", tokens, "a positive number of training tokens") from None
    if not tokens > 0:
        raise InputError("tokens", tokens, "a positive number of training tokens")
    return tokens


def _fixed_degrees(**degrees) -> dict[str, tuple[int, ...]]:
    """The degrees the caller fixed (an int or a list each), checked positive."""
    fixed = {}
    for name, v in degrees.items():
        if v is not None:
            vals = tuple(int(x) for x in (v if isinstance(v, (list, tuple)) else (v,)))
            for x in vals:
                _positive_int(name, x)
            fixed[name] = vals
    return fixed


def _objective_doc(hw: DeviceSpec, objective: str, counts: list[int], tokens, best: dict) -> dict:
    """The ``objective`` part of the plan document: prices, power, and the totals of a token budget."""
    obj = {
        "name": objective,
        "price_per_gpu_hour": hw.price_per_hour,
        "price_date": hw.price_date,
        "power_idle_w": hw.idle_w,
        "power_max_w": hw.max_w if hw.max_w is not None else hw.tdp_w,
    }
    if objective in ("cost", "energy"):
        obj["gpu_counts_searched"] = counts
    if tokens is not None:
        obj["tokens"] = tokens
        obj["time_to_train_days"] = best.get("time_to_train_days")
        obj["cost_to_train_usd"] = best.get("cost_to_train_usd")
        obj["energy_to_train_kwh"] = best.get("energy_to_train_kwh")
    return obj


def _annotate(lead: list[dict], bands: dict, band, hw: DeviceSpec, model: ModelSpec, dtype: str) -> None:
    """Rank, error band and warnings (an MFU beyond the published best plus the band; no built-in
    launcher) of the shown candidates, in place."""
    for i, c in enumerate(lead):
        c["rank"] = i + 1
        c["error_band_pct"] = band.pct
        c["error_band"] = band.label
        warning = robust.mfu_warning(bands, c["mfu"], band, hw.id, model, dtype)
        c["warnings"] = [warning] if warning else []
        if not robust.launchable(_variants(c))[0]:
            c["warnings"].append(
                "no built-in launcher expresses this configuration (ZeRO-2 with pipeline "
                "parallelism is an in-house FSDP schedule such as Llama 3's); --emit megatron, "
                "deepspeed or torchtitan restricts the search to what that launcher runs"
            )


# -- the API -----------------------------------------------------------------------------------------
def plan_training(
    model,
    hardware,
    *,
    gpus: int,
    global_batch: int,
    seq_len: int,
    dtype: str = "bf16",
    objective: str = "throughput",
    top: int = 5,
    tokens: float | None = None,
    calibration_label=None,
    gpus_per_node: int | None = None,
    allow_cross_node_tp: bool = False,
    emit: str | list[str] | tuple[str, ...] | None = None,
    recompute=None,
    zero=None,
    offload=None,
    sequence_parallel=None,
    max_micro_batch: int = 16,
    tp=None,
    pp=None,
    cp=None,
    ep=None,
    vpp=None,
    flash_attention: bool = True,
    placement: bool = True,
    ilp_time_limit_s: float = 2.0,
    progress: Callable[[int, int], None] | None = None,
    memory_headroom_gib: float | None = None,
    constraints=(),
    robust_choice: bool = True,
    tp_comm_overlap: bool = True,
    search_dispatcher: bool = True,
    search_fp8_recipe: bool = True,
    error_bands: dict | None = None,
) -> TrainPlan:
    """Search every valid training configuration for ``gpus`` devices and return the best.

    ``model``/``hardware`` are resolved specs (:func:`roofplan.plan_training` resolves ids and renders
    the launch commands). ``emit`` restricts the search to what that launcher can express;
    ``recompute``/``zero``/``offload``/``sequence_parallel`` restrict the knobs; ``tp``...``vpp`` fix
    degrees (an int or a list). ``constraints`` (:class:`roofplan.solver.constraints.Constraint`, or
    the ``--fix``/``--exclude`` strings as ``{"fix": ..., "exclude": ...}``) mask the search.
    ``memory_headroom_gib`` is the free memory every pick must leave (default
    :func:`~roofplan.costmodel.train_memory.default_memory_headroom_bytes`). With ``robust_choice``
    the candidates within the error band of the best are ranked simplest first
    (:mod:`roofplan.solver.robust`). ``tp_comm_overlap`` searches Megatron's TP-comm overlap per
    configuration (unless ``emit`` asks only for launchers without it); ``search_dispatcher`` the MoE
    token dispatcher (alltoall or DeepEP) and ``search_fp8_recipe`` the FP8 scaling recipe (current
    or delayed) likewise. ``error_bands`` is the error-bands document
    (:func:`roofplan.resolve.error_bands`) behind each pick's band. Raises :class:`InputError` on bad input and
    :class:`InfeasibleError` (with the smallest fitting change) when nothing fits.
    """
    t0 = time.perf_counter()
    _check_specs(model, hardware)
    hw = hardware
    gpus, global_batch, seq_len, top, max_micro_batch, node = _checked_counts(
        hw, gpus, global_batch, seq_len, top, max_micro_batch, gpus_per_node
    )
    tokens = _check_goal(hw, dtype, objective, tokens)
    frameworks = _frameworks(emit, dtype)
    constraints = _constraints(constraints)
    headroom = _headroom_bytes(memory_headroom_gib, hw)
    band = _error_band(error_bands, hw, model)
    tie = band.fraction if robust_choice else None
    opts = _space_options(
        frameworks,
        recompute=recompute,
        zero=zero,
        offload=offload,
        sequence_parallel=sequence_parallel,
        max_micro_batch=max_micro_batch,
        allow_cross_node_tp=allow_cross_node_tp,
        fixed=_fixed_degrees(tp=tp, pp=pp, cp=cp, ep=ep, vpp=vpp),
    )

    counts = _gpu_counts(gpus, node, objective)
    state = _Search()
    knobs = _searched_knobs(
        frameworks,
        tp_comm_overlap=tp_comm_overlap,
        moe_dispatcher=search_dispatcher,
        fp8_recipe=search_fp8_recipe,
        # activation offload: with the user's consent to offload (``offload`` not only "none")
        act_offload_layers=set(opts.offload) != {"none"},
    )
    # what the search, the infeasibility explanation and the refinement share
    job = dict(global_batch=global_batch, seq_len=seq_len, dtype=dtype, gpus_per_node=node, opts=opts)
    limits = dict(flash_attention=flash_attention, headroom_bytes=headroom, constraints=constraints)
    for g in counts:
        _search(
            model,
            hw,
            gpus=g,
            **job,
            **limits,
            objective=objective,
            state=state,
            progress=progress,
            band=tie,
            knobs=knobs,
        )
    if state.pool_cfg is None:
        raise _infeasible(model, hw, gpus=gpus, **job, **limits, state=state)

    pool = _pooled(model, hw, state, dtype=dtype, gpus_per_node=node, tokens=tokens)
    pool, fastest, lead = _shortlist(pool, objective, tie, top)
    placement_doc: dict = {"method": "none"}
    if placement:
        lead, fastest, placement_doc = _placed(
            model,
            hw,
            lead,
            **limits,
            objective=objective,
            opts=opts,
            tokens=tokens,
            time_limit_s=ilp_time_limit_s,
            tie=tie,
            top=top,
        )
    else:
        lead = lead[:top]
    _annotate(lead, error_bands, band, hw, model, dtype)
    best = lead[0]
    why = _why_doc(lead, pool, fastest, objective, tie, band)

    obj = _objective_doc(hw, objective, counts, tokens, best)
    inputs = _inputs_doc(
        model,
        hw,
        gpus=gpus,
        gpus_per_node=node,
        global_batch=global_batch,
        seq_len=seq_len,
        dtype=dtype,
        objective=objective,
        top=top,
        tokens=tokens,
        emit=frameworks,
        allow_cross_node_tp=allow_cross_node_tp,
        flash_attention=flash_attention,
        calibration=calibration_label,
        headroom_bytes=headroom,
        constraints=constraints,
        robust_choice=robust_choice,
        band=band,
    )
    return TrainPlan(
        model=model,
        hardware=hw,
        inputs=inputs,
        best=best,
        candidates=lead,
        searched=state.searched,
        evaluated=state.evaluated,
        feasible=state.feasible,
        rejected=dict(state.rejected),
        search_time_s=time.perf_counter() - t0,
        objective=obj,
        placement=placement_doc,
        why=why,
    )


def _space_options(
    frameworks: list[str],
    *,
    recompute,
    zero,
    offload,
    sequence_parallel,
    max_micro_batch: int,
    allow_cross_node_tp: bool,
    fixed: dict,
) -> SpaceOptions:
    """The search space's options: the knobs the caller allows (each checked against its codes),
    the fixed degrees and the launcher(s) the space is restricted to (None: any)."""
    return SpaceOptions(
        recompute=_names("recompute", recompute, RECOMPUTE_CODES),
        zero=tuple(int(z) for z in _names("zero", zero, (0, 1, 2, 3))),
        offload=_names("offload", offload, OFFLOAD_CODES),
        sequence_parallel=_names("sequence_parallel", sequence_parallel, (False, True)),
        max_micro_batch=max_micro_batch,
        allow_cross_node_tp=allow_cross_node_tp,
        framework=(frameworks[0] if len(frameworks) == 1 else tuple(frameworks)) if frameworks else None,
        **fixed,
    )


def _shortlist(pool: list[dict], objective: str, tie, top: int) -> tuple[list[dict], dict, list[dict]]:
    """The pooled candidates in robust rank order, the fastest of them, and the distinct leaders
    to refine: a few more than shown (refinements can collide), and the fastest among them, since
    the error band is measured from it."""
    pool = [pool[i] for i in _robust_rank(pool, objective, tie)]
    fastest = min(pool, key=lambda c: _sort_key(c, objective))
    lead = _distinct(pool, 2 * top)
    if all(c is not fastest for c in lead):
        lead.append(fastest)
    return pool, fastest, lead


def _why_doc(lead: list[dict], pool: list[dict], fastest: dict, objective: str, tie, band) -> dict:
    """Why the first of ``lead`` won (:func:`_why` over the leaders, then the rest of the pool),
    with the robust choice's note when ties were broken by simplicity and the fastest candidate
    when it is not the pick."""
    best = lead[0]
    tied = [c for c in lead if c.get("tied_with_best")]
    note = _robust_note(best, fastest, tied, objective, band) if tie is not None else ""
    why = _why(best, lead + [c for c in pool if c not in lead], objective, note)
    if fastest is not best:
        why["fastest"] = brief(fastest)
    return why


def _frameworks(emit, dtype: str) -> list[str]:
    """The launchers asked for (``emit``), checked: a precision one cannot write is bad input."""
    frameworks = [] if emit is None else list(_names("emit", emit, FRAMEWORKS))
    for fw in frameworks:
        if why := frameworks_.dtype_violation(fw, dtype):
            raise InputError("emit", fw, why)
    return frameworks


def _error_band(error_bands: dict | None, hw, model):
    """The validated error band of this device and model class (the door reads the bands)."""
    if error_bands is None:
        raise TypeError(
            "plan_training needs error_bands (roofplan.resolve.error_bands(): the door reads them)"
        )
    return robust.error_band(error_bands, hw.id, model)


def _gpu_counts(gpus: int, node: int, objective: str) -> list[int]:
    """The GPU counts searched: ``gpus``, and for cost or energy also its halvings that still
    fill whole nodes (a smaller job can be cheaper per token)."""
    counts = [gpus]
    if objective in ("cost", "energy"):
        g = gpus // 2
        while g >= 1 and gpus % g == 0 and (g <= node or g % node == 0):
            counts.append(g)
            g //= 2
    return counts


def _searched_knobs(frameworks, **asked: bool) -> tuple[str, ...]:
    """The knobs searched per configuration: those asked for that a requested launcher expresses
    (TP-comm overlap is Megatron's userbuffers; all of them when no launcher is named)."""
    return tuple(
        k
        for k, on in asked.items()
        if on and frameworks_.expresses(frameworks, {"zero": 1, "pp": 1}, **{k: 1})
    )


def _placed(
    model,
    hw,
    lead,
    *,
    objective,
    flash_attention,
    opts,
    tokens,
    time_limit_s,
    headroom_bytes,
    constraints,
    tie,
    top,
):
    """The leading candidates after the placement program (:func:`_refine`), re-ranked and cut to
    ``top``, the fastest of them, and the placement document of the pick."""
    lead, reports = _refine(
        model,
        hw,
        lead,
        objective=objective,
        flash_attention=flash_attention,
        opts=opts,
        tokens=tokens,
        time_limit_s=time_limit_s,
        headroom_bytes=headroom_bytes,
        constraints=constraints,
    )
    fastest = min(lead, key=lambda c: _sort_key(c, objective))
    order = _robust_rank(lead, objective, tie)
    keep = {id(c) for c in _distinct([lead[i] for i in order], top)}
    order = [i for i in order if id(lead[i]) in keep]
    lead = [lead[i] for i in order]
    reports = [reports[i] for i in order]
    doc = dict(reports[0])
    doc["unrestricted"] = _unrestricted_placement(
        model, hw, lead[0], flash_attention, time_limit_s, headroom_bytes
    )
    doc["candidates"] = [
        {
            "rank": i + 1,
            "method": r["method"],
            "applied": r["applied"],
            "recompute_layers": r["recompute_layers"],
        }
        for i, r in enumerate(reports)
    ]
    return lead, fastest, doc


def _inputs_doc(
    model,
    hw,
    *,
    gpus,
    gpus_per_node,
    global_batch,
    seq_len,
    dtype,
    objective,
    top,
    tokens,
    emit,
    allow_cross_node_tp,
    flash_attention,
    calibration,
    headroom_bytes,
    constraints,
    robust_choice,
    band,
) -> dict:
    """The plan's ``inputs`` document: the request as resolved (docs/SPEC.md §3.3)."""
    return {
        "model": model.name,
        "hardware": hw.id,
        "gpus": gpus,
        "gpus_per_node": gpus_per_node,
        "global_batch": global_batch,
        "seq_len": seq_len,
        "dtype": dtype,
        "objective": objective,
        "top": top,
        "tokens": tokens,
        "emit": emit,
        "allow_cross_node_tp": allow_cross_node_tp,
        "flash_attention": flash_attention,
        "calibration": calibration,
        "memory_headroom_gib": headroom_bytes / GiB,
        "constraints": [("exclude " if c.exclude else "fix ") + c.text for c in constraints],
        "robust_choice": robust_choice,
        "error_band": band.label,
    }


def _constraints(constraints) -> tuple:
    """``--fix``/``--exclude`` as Constraint objects: given as ``{"fix": ..., "exclude": ...}``
    strings or as Constraint objects already."""
    if isinstance(constraints, dict):
        constraints = cons.parse(constraints.get("fix"), exclude=False, field="fix") + cons.parse(
            constraints.get("exclude"), exclude=True, field="exclude"
        )
    return tuple(constraints or ())


def _checked_counts(hw: DeviceSpec, gpus, global_batch, seq_len, top, max_micro_batch, gpus_per_node):
    """The request's counts as positive ints (InputError naming the field otherwise), the GPU
    count bounded and whole nodes beyond one node; the node size defaults to the device's."""
    gpus = _positive_int("gpus", gpus)
    if gpus > _MAX_RELAXED_GPUS:  # degree products of larger counts overflow the int64 search arrays
        raise InputError("gpus", gpus, f"a positive integer of at most {_MAX_RELAXED_GPUS:,}")
    counts = [
        _positive_int(k, v)
        for k, v in (
            ("global_batch", global_batch),
            ("seq_len", seq_len),
            ("top", top),
            ("max_micro_batch", max_micro_batch),
        )
    ]
    node = _positive_int("gpus_per_node", hw.devices_per_node if gpus_per_node is None else gpus_per_node)
    if gpus > node and gpus % node:
        raise InputError("gpus", gpus, f"at most one node or a multiple of the node size ({node})")
    return (gpus, *counts, node)
