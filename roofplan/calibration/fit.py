"""Fit a hardware catalog's efficiency parameters (and engine overheads) to a user's measurements.

The fit is bounded non-linear least squares (``scipy.optimize.least_squares``, trust-region
reflective) on log residuals ``log(predicted / measured)``, so a 10 % miss weighs the same on a
20 us all-reduce and on a 10 s training step. Parameters are fitted in log space with bounds from
physics: achievable fractions of peak in (0, 1] (no kernel beats the datasheet peak it is a
fraction of; in-switch reduction has its own factor, ``nvls_speedup``), latencies and overheads >= 0 (a floor of 1 ns stands in for 0 in log space),
the GEMM half-efficiency size in [1, 1e5].

It is a maximum a posteriori estimate (Tarantola, *Inverse Problem Theory*, ch. 3; Nocedal & Wright,
*Numerical Optimization*, §10 on regularised least squares): the catalog value of each parameter
is a log-normal prior, so a parameter moves only as far as the data pays for, and parameters the
data constrains only in combination (intra_bw x nvls_speedup from all-reduce rows alone) split
that combination towards the catalog instead of drifting. A robust (Cauchy) loss keeps a row the
model misses structurally from dragging every parameter.

Only parameters the data constrains move. Before fitting, each candidate's Jacobian column is
measured by a central difference of +-10 % (log scale, so kinks of the roofline max() are
straddled, not missed); a parameter whose column norm is below INFORMED_MIN (moving it by its prior
width changes the predictions less than the measurement noise) is reported as "not informed" and
keeps its catalog value.

Predictions reuse the cost model: operator rows with the operator library
(:mod:`roofplan.calibration.op_rows` over :mod:`roofplan.costmodel.ops`); end-to-end rows with the
validation suite's predictors (:func:`roofplan.validation.suite.predict`) given the overlay dict.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from scipy.optimize import least_squares

from roofplan.calibration.formats import (
    OP_KINDS,
    SUITE_KINDS,
    Measurement,
    read_measurements,
)
from roofplan.calibration.op_rows import predict_op_rows
from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec, Efficiency
from roofplan.plain import plain

SCHEMA = "roofplan.calibration/v1"
RESULT_SCHEMA = "roofplan.calibrate/v1"

#: Bounds of each Efficiency field (lower, upper). Fractions of a peak: (0, 1]; sizes: [1, 1e5];
#: times: >= 0 (1 ns floor in log space), at most 10 ms per alpha/launch; NVLS gain: in-switch
#: reduction at most halves the traffic (gain <= 2), and may lose to rings on small messages.
FRACTION = (1e-3, 1.0)
TIME = (1e-9, 1e-2)
EFFICIENCY_BOUNDS: dict[str, tuple[float, float]] = {
    "nvls_speedup": (0.5, 2.0),
    "gemm_k_half": (1.0, 1e5),
    "gemm_cta_intensity": (1.0, 1e3),
    "gemm_wo_dequant_rate": (1e10, 1e16),
    "gemm_blend": (1.0, 20.0),
    "gdn_recurrent_blend": (1.0, 8.0),
    "attn_half_len": (1.0, 1e5),
    "nvls_min_ranks": (2.0, 72.0),
    "moe_gemm": (0.05, 1.5),
    "moe_gemm_fp8": (0.05, 1.5),
    "moe_gemm_fp8_block": (0.05, 1.5),
    "moe_stream": (0.05, 1.5),
    "attn_score_flops": (1.0, 4096.0),
    "fa_prefill_half_len": (1.0, 1e5),
    "fa_prefill_score_flops": (1.0, 4096.0),
    "decode_split_len": (16.0, 65536.0),
    "fa_max_splits": (1.0, 128.0),
    "moe_tile_arch": (80.0, 120.0),
    "gemm_fp4_tile_n": (16.0, 512.0),
}
#: Bounds by name suffix of the decode-kernel parameters (costmodel.trtllm_decode / flash_decode):
#: per-CTA bandwidths (B/s), element rates (operations/s) and resident CTAs per SM.
SUFFIX_BOUNDS = {"_Bps": (1e8, 1e13), "_rate": (1e8, 1e14), "_per_sm": (0.25, 32.0), "_s": TIME}


def efficiency_bounds(name: str) -> tuple[float, float]:
    """Bounds of an Efficiency field: its entry in EFFICIENCY_BOUNDS, else by its suffix
    (SUFFIX_BOUNDS: times, per-CTA bandwidths, rates, occupancies), else FRACTION (an achievable
    fraction of a peak)."""
    if name in EFFICIENCY_BOUNDS:
        return EFFICIENCY_BOUNDS[name]
    return next((b for suffix, b in SUFFIX_BOUNDS.items() if name.endswith(suffix)), FRACTION)


#: Where a time parameter whose catalog value is 0 starts (log space cannot start at 0).
TIME_START = 1e-6
#: The fit is a maximum a posteriori estimate: log residuals with a noise of SIGMA_MEASUREMENT
#: (measurement spread plus what the analytical model cannot capture, ~5 %), catalog values as a
#: log-normal prior of width SIGMA_CATALOG (datasheet-derived efficiencies are good to ~50 %).
#: The prior residual of a parameter is (log p - log p_catalog) * PRIOR_WEIGHT, PRIOR_WEIGHT =
#: SIGMA_MEASUREMENT / SIGMA_CATALOG.
SIGMA_MEASUREMENT = 0.05
SIGMA_CATALOG = 0.5
PRIOR_WEIGHT = SIGMA_MEASUREMENT / SIGMA_CATALOG
#: Largest prior weight accepted: at 10^3 (10^4 x the default) the prior already pins every
#: parameter to its catalog value; larger weights only overflow the squared residuals.
MAX_PRIOR_WEIGHT = 1e3
#: A parameter is informed when moving it by its prior width changes the predictions by more than
#: the noise: Jacobian column norm (d log pred / d log p) >= SIGMA_MEASUREMENT / SIGMA_CATALOG.
#: The column is probed with +-10 % steps so that kinks of the roofline max() are straddled.
PROBE = math.log(1.1)
INFORMED_MIN = PRIOR_WEIGHT
#: Robust loss: a residual beyond F_SCALE (10 %) counts logarithmically (Cauchy / Lorentzian
#: M-estimator, scipy ``loss="cauchy"``: rho(z) = log(1 + z)), so a row the model misses
#: structurally (a 50 % miss) barely pulls the parameters, while rows within a few per cent weigh as
#: in plain least squares. Starting from the catalog keeps this redescending loss in the right basin.
#: (Chosen over soft-L1 on the half split of the published measurements in both directions.)
LOSS = "cauchy"
F_SCALE = 0.1
MAX_NFEV = 60
#: Jacobian columns more parallel than this are reported as degenerate (only their combination is fitted).
DEGENERATE_COS = 0.999
SERVE_KINDS = ("serve_step", "serve_throughput", "serve_spec")


# -- parameters ------------------------------------------------------------------------------------------
@dataclass
class Param:
    """One fitted quantity: an Efficiency field (``engine`` None) or an engine profile field."""

    name: str  # "gemm_max" or "vllm.step_overhead_s"
    field: str
    engine: str | None
    before: float
    lo: float
    hi: float
    after: float = float("nan")
    sensitivity: float = 0.0  # norm of the Jacobian column d log(pred) / d log(param)
    informed: bool = False
    degenerate_with: list = field(default_factory=list)

    @property
    def start(self) -> float:
        v = self.before if self.before > 0 else (TIME_START if self.field.endswith("_s") else self.lo)
        return min(max(v, self.lo), self.hi)

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "before": self.before,
            "after": self.after,
            "lower": self.lo,
            "upper": self.hi,
            "informed": self.informed,
            "sensitivity": self.sensitivity,
            "degenerate_with": list(self.degenerate_with),
        }


def _engine_bounds(name: str, value: float) -> tuple[float, float]:
    """Times >= 0 (at most 10 s per step); fractions in (0, 1) (an engine cannot reserve all of
    memory); other numbers (kernel counts, byte thresholds) within 100x of their profile value."""
    if name.endswith("_s"):
        return (1e-9, 10.0)
    if "fraction" in name:
        return (1e-3, 0.99)
    return (max(value, 1e-9) / 100.0, max(value, 1e-9) * 100.0)


def engine_float_fields(profile, overheads_only: bool = False) -> dict[str, float]:
    """The float fields of an EngineProfile; with ``overheads_only`` just the times (``*_s``), the
    fields fitted by default (counts, thresholds and memory fractions only when named)."""
    return {
        f.name: getattr(profile, f.name)
        for f in dataclasses.fields(profile)
        if isinstance(getattr(profile, f.name), float) and (not overheads_only or f.name.endswith("_s"))
    }


def engine_profile_name(engine: str) -> str:
    """The engine profile a measurement row's ``engine`` column uses (``trtllm-0.6.1`` -> ``trtllm``).
    The serving predictor's own mapping wins where it provides one."""
    try:
        from roofplan.validation import serve_predict

        table = getattr(serve_predict, "ENGINE_MAP", {})
        if (engine or "").strip() in table:
            return table[engine.strip()][0]
    except ImportError:
        pass
    from roofplan.engines.profile import ENGINES

    e = (engine or "").strip().lower()
    for name in sorted(ENGINES, key=len, reverse=True):
        if e.startswith(name):
            return name
    return "generic"


# -- predictions ---------------------------------------------------------------------------------------
def _predict_ops(kind: str, ms: list[Measurement], hw: DeviceSpec) -> np.ndarray:
    """Vectorised predictions (seconds) of operator rows of one kind: the operator library through
    the one row predictor that ``validate --measurements`` and ``tools/fit_ops.py`` also use."""
    return predict_op_rows(kind, ms, hw)


def _check_ops(ms: list[Measurement], hw: DeviceSpec) -> None:
    for m in ms:
        if (
            m.kind == "collective"
            and m.row["nodes"]
            and m.row["ranks"] / m.row["nodes"] > hw.devices_per_node
        ):
            raise InputError(
                f"{m.origin} nodes",
                int(m.row["nodes"]),
                f"{int(m.row['ranks'])} ranks on {int(m.row['nodes'])} nodes exceeds {hw.id}'s "
                f"{hw.devices_per_node} devices per node",
            )
        if m.kind in ("gemm", "attention"):
            hw.peak(m.row["dtype"])


class Evaluator:
    """Predicts every measurement for a set of parameter values; op rows in one vectorised pass
    per kind, suite rows through the validation predictors with an overlay dict."""

    def __init__(self, measurements: list[Measurement], hw: DeviceSpec, prior: dict, hardware_ref: str):
        self.ms = measurements
        self.hw = hw
        self.prior = prior
        self.hardware_ref = hardware_ref
        self.groups = {k: [i for i, m in enumerate(measurements) if m.kind == k] for k in OP_KINDS}
        self.suite_idx = [i for i, m in enumerate(measurements) if m.kind in SUITE_KINDS]
        self.cases = []
        if self.suite_idx:
            from roofplan.validation.suite import Case

            for i in self.suite_idx:
                m = measurements[i]
                row = dict(m.row)
                row["hardware"] = m.hardware or hardware_ref
                row["id"] = row.get("id") or m.label
                self.cases.append(Case(row=row, line=0))
        _check_ops([m for m in measurements if m.kind in OP_KINDS], hw)
        self.target = np.array([m.target for m in measurements], dtype=float)

    def overlay(self, params: list[Param], values) -> dict:
        """The overlay dict for ``values`` (one per param) on top of the prior overlay."""
        eff = dict(self.prior.get("efficiency") or {})
        engines = {k: dict(v) for k, v in (self.prior.get("engines") or {}).items()}
        for p, v in zip(params, values):
            if p.engine is None:
                eff[p.field] = float(v)
            else:
                engines.setdefault(p.engine, {})[p.field] = float(v)
        doc = {"schema": SCHEMA, "hardware": self.hw.id, "efficiency": eff}
        if engines:
            doc["engines"] = engines
        return doc

    def predict(self, params: list[Param], values) -> np.ndarray:
        out = np.empty(len(self.ms))
        eff_changes = {p.field: float(v) for p, v in zip(params, values) if p.engine is None}
        hw = self.hw.with_efficiency(**eff_changes) if eff_changes else self.hw
        for kind, idx in self.groups.items():
            if idx:
                out[idx] = _predict_ops(kind, [self.ms[i] for i in idx], hw)
        if self.suite_idx:
            from roofplan.validation.suite import predict

            overlay = self.overlay(params, values)
            for i, case in zip(self.suite_idx, self.cases):
                try:
                    out[i] = predict(case, overlay)
                except InputError as exc:
                    raise InputError(f"{self.ms[i].origin} ({exc.field})", exc.value, exc.allowed) from None
                except ValueError as exc:  # a predictor refusing the row (e.g. an unsupported metric)
                    raise InputError(f"{self.ms[i].origin}", self.ms[i].metric, str(exc)) from None
        return out


# -- result ----------------------------------------------------------------------------------------------
@dataclass
class CalibrationResult:
    """The fitted overlay plus everything needed to judge the fit."""

    hardware: str
    inputs: list[str]
    params: list[Param]
    measurements: list[Measurement]
    predicted_before: np.ndarray
    predicted_after: np.ndarray
    overlay: dict
    skipped_other_hardware: int = 0
    skipped_by_hardware: dict = field(default_factory=dict)
    skipped_no_predictor: dict = field(default_factory=dict)  # kind -> rows (predictor not available)
    cost_before: float = 0.0
    cost_after: float = 0.0
    status: str = ""

    def errors(self, after: bool) -> np.ndarray:
        """predicted / measured - 1 in each row's own unit (a rate row's error has the opposite sign
        of its time error)."""
        pred = self.predicted_after if after else self.predicted_before
        ratio = pred / np.array([m.target for m in self.measurements])
        rate = np.array([m.kind in OP_KINDS and m.metric != "time" for m in self.measurements])
        return np.where(rate, 1.0 / ratio, ratio) - 1.0

    def median_abs_error(self, after: bool) -> float | None:
        e = self.errors(after)
        return float(np.median(np.abs(e))) if len(e) else None

    def residuals(self) -> list[dict]:
        eb, ea = self.errors(False), self.errors(True)
        out = []
        for m, pb, pa, b, a in zip(self.measurements, self.predicted_before, self.predicted_after, eb, ea):
            scale = m.target / m.value  # predicted values in the row's own unit
            out.append(
                {
                    "id": m.label,
                    "kind": m.kind,
                    "metric": m.metric,
                    "unit": m.unit,
                    "measured": m.value,
                    "predicted_before": _unit_value(m, pb, scale),
                    "predicted_after": _unit_value(m, pa, scale),
                    "error_before": float(b),
                    "error_after": float(a),
                    "origin": m.origin,
                }
            )
        return out

    def fit_block(self) -> dict:
        return {
            "measurements": len(self.measurements),
            "skipped_other_hardware": self.skipped_other_hardware,
            "median_abs_error_before": self.median_abs_error(False),
            "median_abs_error_after": self.median_abs_error(True),
            "params": {
                p.name: {"before": p.before, "after": p.after, "informed": p.informed} for p in self.params
            },
            "not_informed": [p.name for p in self.params if not p.informed],
            "residuals": [
                {k: r[k] for k in ("id", "kind", "metric", "measured", "error_before", "error_after")}
                for r in self.residuals()
            ],
        }

    def overlay_document(self) -> dict:
        doc = dict(self.overlay)
        doc["inputs"] = list(self.inputs)
        doc["fit"] = self.fit_block()
        order = ("schema", "hardware", "inputs", "efficiency", "engines", "fit")
        return {k: doc[k] for k in order if k in doc}

    def write(self, path: str | Path) -> None:
        """Write the overlay YAML atomically (a failed write leaves an earlier overlay intact)."""
        from roofplan.outputs import write_file

        write_file(path, yaml.safe_dump(plain(self.overlay_document()), sort_keys=False, width=110))

    def to_json(self) -> dict:
        return {
            "schema": RESULT_SCHEMA,
            "hardware": self.hardware,
            "inputs": list(self.inputs),
            "measurements": len(self.measurements),
            "skipped_other_hardware": self.skipped_other_hardware,
            "skipped_by_hardware": dict(self.skipped_by_hardware),
            "skipped_no_predictor": dict(self.skipped_no_predictor),
            "params": [p.to_json() for p in self.params],
            "not_informed": [p.name for p in self.params if not p.informed],
            "residuals": self.residuals(),
            "median_abs_error_before": self.median_abs_error(False),
            "median_abs_error_after": self.median_abs_error(True),
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "status": self.status,
            "overlay": self.overlay_document(),
        }


def _unit_value(m: Measurement, predicted_target: float, scale: float) -> float:
    """A prediction in the unit the row was measured in (rates are inverse to times)."""
    if m.kind in OP_KINDS and m.metric != "time":
        return float(m.value * m.target / predicted_target)
    return float(predicted_target / scale)


# -- the fit ---------------------------------------------------------------------------------------------
#: Efficiency fields that kernel timings cannot inform: end-to-end effects (sustained clocks, MoE
#: load balance and overlap) and the network beyond one node. Without operator rows only these (and
#: the engines' fixed costs) are fitted by default: fitting kernel parameters to aggregate rows lets
#: compensating errors in (it made held-out published rows worse, tests/test_calibration.py).
END_TO_END_FIELDS = (
    "sustained_compute",
    "moe_balance",
    "ep_overlap",
    "ep_a2a_bw",
    "inter_bw",
    "inter_latency_s",
    "kernel_launch_s",
)


def _candidate_params(
    names, hw: DeviceSpec, engines_used: list[str], prior, kernel_rows: bool = True
) -> list[Param]:
    """Params named in ``names`` (None: every Efficiency field, or only END_TO_END_FIELDS without
    operator rows, and every float field of the engines the measurements use). Names: an Efficiency
    field, ``ENGINE.FIELD`` or an engine FIELD (= that field of every engine the measurements use)."""
    eff_fields = Efficiency.field_names()
    profiles = {}
    if engines_used or (names and any(n not in eff_fields for n in names)):
        from roofplan import resolve
        from roofplan.engines.profile import ENGINES

        for e in sorted(set(engines_used) | {n.split(".")[0] for n in (names or []) if "." in n}):
            if e not in ENGINES:
                raise InputError("params", e, "expected an engine of " + ", ".join(ENGINES))
            profiles[e] = engine_float_fields(resolve.engine(e, prior))
    out: list[Param] = []

    def add_eff(f):
        lo, hi = efficiency_bounds(f)
        out.append(Param(f, f, None, float(getattr(hw.efficiency, f)), lo, hi))

    def add_engine(e, f):
        v = profiles[e][f]
        out.append(Param(f"{e}.{f}", f, e, float(v), *_engine_bounds(f, v)))

    if names is None:
        for f in eff_fields if kernel_rows else END_TO_END_FIELDS:
            add_eff(f)
        for e in sorted(set(engines_used)):
            for f in profiles[e]:
                if f.endswith("_s"):
                    add_engine(e, f)
        return out
    engine_fields = sorted({f for fs in profiles.values() for f in fs})
    allowed = ", ".join([*eff_fields, *(f"ENGINE.{f}" for f in engine_fields or ["FIELD"])])
    for n in names:
        if n in eff_fields:
            add_eff(n)
        elif "." in n:
            e, f = n.split(".", 1)
            if f not in profiles[e]:
                raise InputError("params", n, f"{e} has calibratable fields {', '.join(profiles[e])}")
            add_engine(e, f)
        elif n in engine_fields and engines_used:
            for e in sorted(set(engines_used)):
                if n in profiles[e]:
                    add_engine(e, n)
        else:
            raise InputError("params", n, f"expected one of {allowed}")
    seen, unique = set(), []
    for p in out:
        if p.name not in seen:
            seen.add(p.name)
            unique.append(p)
    return unique


def _without_predictor(rows: list[Measurement]) -> dict[str, int]:
    """Suite kinds among ``rows`` whose validation predictor is not installed, with row counts."""
    kinds = {m.kind for m in rows if m.kind in SUITE_KINDS}
    if not kinds:
        return {}
    from roofplan.validation import suite

    suite._load_predictors()
    missing = {k for k in kinds if k not in suite._PREDICTORS}
    return {k: sum(1 for m in rows if m.kind == k) for k in sorted(missing)}


def _log_residual(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(pred / target)
    return np.where(np.isfinite(r), r, 10.0)  # a non-positive or non-finite prediction is a large miss


def _robust_cost(residuals: np.ndarray) -> float:
    """scipy's least_squares cost for LOSS/F_SCALE: 0.5·f²·Σ rho((r/f)²)."""
    z = (residuals / F_SCALE) ** 2
    if LOSS == "cauchy":
        rho = np.log1p(z)
    elif LOSS == "soft_l1":
        rho = 2.0 * (np.sqrt(1.0 + z) - 1.0)
    else:
        rho = z
    return float(0.5 * F_SCALE**2 * np.sum(rho))


def _jacobian(ev: Evaluator, params: list[Param], u0: np.ndarray) -> np.ndarray:
    """d log(pred) / d log(param) (rows: measurements), by central differences of +-PROBE."""
    out = np.zeros((len(ev.ms), len(params)))
    for j, p in enumerate(params):
        up, dn = u0.copy(), u0.copy()
        up[j] = min(u0[j] + PROBE, math.log(p.hi))
        dn[j] = max(u0[j] - PROBE, math.log(p.lo))
        if up[j] == dn[j]:
            continue
        col = (
            _log_residual(ev.predict(params, np.exp(up)), ev.target)
            - _log_residual(ev.predict(params, np.exp(dn)), ev.target)
        ) / (up[j] - dn[j])
        out[:, j] = col
    return out


def _degenerate_pairs(jac: np.ndarray, params: list[Param], informed: list[bool]) -> None:
    """Mark informed parameters whose Jacobian columns are parallel (|cos| > DEGENERATE_COS): the data
    constrains only a combination of them (e.g. intra_bw x nvls_speedup from all-reduce rows alone);
    the prior splits it towards the catalog values."""
    idx = [j for j, ok in enumerate(informed) if ok]
    for a in idx:
        for b in idx:
            if a < b:
                ca, cb = jac[:, a], jac[:, b]
                cos = abs(float(ca @ cb)) / (np.linalg.norm(ca) * np.linalg.norm(cb))
                if cos > DEGENERATE_COS:
                    params[a].degenerate_with.append(params[b].name)
                    params[b].degenerate_with.append(params[a].name)


def calibrate(
    measurements,
    hardware,
    *,
    params=None,
    out=None,
    calibration=None,
    op: str | None = None,
    ranks: int | None = None,
    nodes: int | None = None,
    prior_weight: float | None = None,
) -> CalibrationResult:
    """Fit the efficiency parameters of ``hardware`` to ``measurements``.

    ``measurements``: a path or list of paths (CSV or nccl-tests output; docs/calibration.md), or a
    list of :class:`Measurement`. ``hardware``: catalog id, catalog YAML path or DeviceSpec.
    ``params``: names to fit (list or comma-separated string; default: every parameter the data
    informs). ``calibration``: an existing overlay to start from (kept in the output). ``out``: where
    to write the overlay YAML. ``op``/``ranks``/``nodes``: hints for nccl-tests text.
    ``prior_weight``: weight of the catalog prior (default PRIOR_WEIGHT; 0 = plain least squares).
    """
    lam = PRIOR_WEIGHT if prior_weight is None else float(prior_weight)
    if not (0 <= lam <= MAX_PRIOR_WEIGHT):
        raise InputError("prior_weight", prior_weight, f"expected a number in [0, {MAX_PRIOR_WEIGHT:g}]")
    from roofplan import resolve

    prior = dict(resolve.overlay(calibration) or {})
    if isinstance(hardware, DeviceSpec):  # a spec is taken as the starting point as it is
        hw, hardware_ref = hardware, hardware.id
    else:
        hw, hardware_ref = resolve.hardware(hardware, prior or None), str(hardware)
    if isinstance(params, str):
        params = [p.strip() for p in params.split(",") if p.strip()]
    if params is not None and not params:
        raise InputError("params", "", "expected a comma-separated list of parameter names")

    if isinstance(measurements, (str, Path)) or (
        isinstance(measurements, list) and measurements and not isinstance(measurements[0], Measurement)
    ):
        inputs = [str(p) for p in ([measurements] if isinstance(measurements, (str, Path)) else measurements)]
        rows = read_measurements(inputs, op=op, ranks=ranks, nodes=nodes)
    else:
        inputs = []
        rows = list(measurements or [])
    ours = {hw.id, hardware_ref, ""}
    kept = [m for m in rows if m.hardware in ours]
    skipped: dict[str, int] = {}
    for m in rows:
        if m.hardware not in ours:
            skipped[m.hardware] = skipped.get(m.hardware, 0) + 1
    if not kept:
        seen = ", ".join(sorted(skipped)) or "none"
        raise InputError(
            "measurements", f"{len(rows)} rows", f"expected rows for hardware {hw.id} (rows are for {seen})"
        )
    unpredictable = _without_predictor(kept)
    kept = [m for m in kept if m.kind not in unpredictable]
    if not kept:
        raise InputError(
            "measurements",
            f"{len(rows)} rows",
            "no row kind of this hardware has a predictor yet ("
            + ", ".join(f"{k}: {v}" for k, v in unpredictable.items())
            + ")",
        )
    engines_used = sorted(
        {engine_profile_name(m.row.get("engine", "")) for m in kept if m.kind in SERVE_KINDS}
    )
    cands = _candidate_params(
        params, hw, engines_used, prior or None, kernel_rows=any(m.kind in OP_KINDS for m in kept)
    )
    ev = Evaluator(kept, hw, prior, hardware_ref)
    before_vals = np.array([p.before for p in cands])
    pred_before = ev.predict(cands, before_vals)
    u_start = np.log([p.start for p in cands]) if cands else np.zeros(0)
    jac = _jacobian(ev, cands, u_start)
    for j, p in enumerate(cands):
        p.sensitivity = float(np.linalg.norm(jac[:, j]))
        p.informed = bool(p.sensitivity >= INFORMED_MIN)
        p.after = p.before
    _degenerate_pairs(jac, cands, [p.informed for p in cands])
    free = [p for p in cands if p.informed]
    r0 = _log_residual(pred_before, ev.target)
    cost_before = float(0.5 * np.sum(r0**2))
    status = "no informed parameters"
    if free:
        u0 = np.log([p.start for p in free])
        lo, hi = np.log([p.lo for p in free]), np.log([p.hi for p in free])

        def fun(u):
            r = _log_residual(ev.predict(free, np.exp(u)), ev.target)
            return np.concatenate([r, lam * (u - u0)])

        sol = least_squares(
            fun,
            u0,
            bounds=(lo, hi),
            method="trf",
            x_scale=1.0,
            diff_step=1e-4,
            loss=LOSS,
            f_scale=F_SCALE,
            xtol=1e-8,
            ftol=1e-8,
            gtol=1e-8,
            max_nfev=MAX_NFEV,
        )
        status = sol.message
        # The objective the fit minimised, at the catalog values (zero-valued times start at their
        # floor, so the start point of the solver is not always the catalog) and at the solution.
        u_cat = np.log(np.clip([max(p.before, p.lo) for p in free], np.exp(lo), np.exp(hi)))
        if _robust_cost(fun(sol.x)) <= _robust_cost(fun(u_cat)):
            for p, v in zip(free, np.exp(sol.x)):
                p.after = float(v)
        else:  # never hand back a worse overlay than the catalog
            status = "fit did not improve on the catalog; kept it"
    all_after = np.array([p.after for p in cands])
    pred_after = ev.predict(cands, all_after)
    cost_after = float(0.5 * np.sum(_log_residual(pred_after, ev.target) ** 2))
    overlay = ev.overlay(
        [p for p in free if p.after != p.before], [p.after for p in free if p.after != p.before]
    )
    result = CalibrationResult(
        hardware=hw.id,
        inputs=inputs,
        params=cands,
        measurements=kept,
        predicted_before=pred_before,
        predicted_after=pred_after,
        overlay=overlay,
        skipped_other_hardware=sum(skipped.values()),
        skipped_by_hardware=skipped,
        skipped_no_predictor=unpredictable,
        cost_before=cost_before,
        cost_after=cost_after,
        status=status,
    )
    if out is not None:
        result.write(out)
    return result


def split_cases(rows: list, key=lambda m: (m.kind, m.hardware)) -> tuple[list, list]:
    """A deterministic half split: alternate rows within each (kind, hardware) group, in file order."""
    counts: dict = {}
    first, second = [], []
    for m in rows:
        k = key(m)
        (first if counts.get(k, 0) % 2 == 0 else second).append(m)
        counts[k] = counts.get(k, 0) + 1
    return first, second


__all__ = ["EFFICIENCY_BOUNDS", "CalibrationResult", "Param", "calibrate", "split_cases"]
