"""Memory placement and recompute depth as a small integer program (PuLP + CBC).

For one parallel configuration the planner asks: where should each piece of training state live
— Adam moments, fp32 master weights, gradients, low-precision parameters, activations — across
the device's memory tiers (HBM; host DRAM over the host link; SN40L's device-attached DDR), and
how many layers per pipeline stage should be fully recomputed, so that the step is fastest and
every tier's capacity holds?

Model (all coefficients come from the training cost model evaluated at corner configurations, and
from the catalog's tier capacities and bandwidths; this module adds only the transfer accounting):

* Decision variables: ``x[s, t]`` binary (state ``s`` lives in tier ``t``), ``sel`` binary
  (selective recompute), ``r`` integer in [0, layers per stage] (layers fully recomputed, Megatron's
  block method), ``a[t]`` continuous (activation bytes offloaded to tier ``t``, as in activation
  offloading / ZeRO-R CPU checkpointing, Rajbhandari et al. 2020 §6.1).
* Transfers: a state kept off HBM crosses the tier's link a fixed number of times per step
  (ZeRO-Offload, Ren et al. 2021 §4; ZeRO-Infinity, Rajbhandari et al. 2021 §5): Adam moments
  and master weights are read and written once in the optimizer step (2 crossings, exposed: the
  optimizer step runs after backward); gradients are written during backward (overlappable) and read
  in the step (exposed); parameters are fetched for forward and backward (2 overlappable
  prefetches) and written back after the update (exposed); activations go out in forward and come
  back in backward (2 overlappable).
* Where the cost model prices a move itself (optimizer offload runs Adam on the host CPU,
  ZeRO-Offload; parameter offload streams weights per micro-batch), the planner passes that time
  in ``state_cost_s`` and it replaces the crossing accounting of the state, so the program agrees
  with the cost model at the corners it was fitted on.
* Overlap: overlappable traffic of one tier shares its link and hides behind the forward/backward
  compute time ``window``: exposed = max(0, traffic time - window), linearised with a slack
  variable.
* Recompute: selective costs ``t_selective`` and reduces activations to ``act_selective``; each
  fully recomputed layer costs ``t_recompute_per_layer`` and frees ``act_saved_per_layer``; the two
  granularities are exclusive (Megatron ``--recompute-method`` is only valid with ``full``).

Objective: step time = base + recompute time + exposed transfer time. The solve is time-limited
(``timeLimit``, ``msg=False``); on any failure :func:`solve` returns the caller's fallback decision
evaluated with the same accounting and ``method = "fallback"``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

#: Link crossings per training step of one state kept off HBM: (overlappable, exposed).
CROSSINGS = {
    "optimizer_moments": (0, 2),
    "master_weights": (0, 2),
    "gradients": (1, 1),
    "parameters": (2, 1),
}
STATES = tuple(CROSSINGS) + ("activations",)


@dataclass(frozen=True)
class Tier:
    """An offload tier as one device sees it: its share of the capacity and its link bandwidth."""

    name: str
    capacity_bytes: float
    bandwidth_Bps: float


@dataclass
class PlacementProblem:
    """Coefficients of one configuration's placement program (bytes and seconds per device)."""

    hbm_capacity: float
    fixed_hbm_bytes: float
    state_bytes: dict[str, float]
    act_none: float
    act_selective: float
    act_saved_per_layer: float
    layers_per_stage: int
    t_base: float
    t_selective: float
    t_recompute_per_layer: float
    window: float
    tiers: tuple[Tier, ...] = ()
    allowed: dict[str, tuple[str, ...]] = field(default_factory=dict)  # state -> tiers it may use
    allow_selective: bool = True
    #: seconds a state adds when kept off HBM, where the cost model prices that move itself (e.g.
    #: CPU Adam for offloaded optimizer state); replaces the link-crossing accounting of that state
    state_cost_s: dict[str, float] = field(default_factory=dict)
    #: ("same", a, b): a and b share a tier; ("implies", a, b): a off HBM only if b is off HBM too
    links: tuple[tuple[str, str, str], ...] = ()
    allow_full: bool = True
    #: allocator overhead per byte of live state (fragmentation): HBM = fixed + (1 + this) x live
    live_overhead: float = 0.0
    full_all_or_nothing: bool = False  # recompute every layer of the stage or none (torchtitan AC)


@dataclass
class Decision:
    """A placement: tier of each state, activation bytes offloaded per tier, recompute choice."""

    placement: dict[str, str]
    act_offload: dict[str, float] = field(default_factory=dict)
    selective: bool = False
    recompute_layers: int = 0


@dataclass
class PlacementResult:
    method: str  # "ilp" | "fallback"
    status: str
    decision: Decision
    step_time_s: float
    hbm_bytes: float
    tier_bytes: dict[str, float]
    bandwidth_needed_Bps: dict[str, float]
    exposed_transfer_s: float
    solve_time_s: float
    feasible: bool

    @property
    def recompute(self) -> str:
        if self.decision.selective:
            return "selective"
        return "full" if self.decision.recompute_layers > 0 else "none"

    def to_json(self) -> dict:
        d = self.decision
        return {
            "method": self.method,
            "status": self.status,
            "states": dict(
                d.placement,
                activations="hbm"
                if not any(d.act_offload.values())
                else "hbm+" + "+".join(t for t, b in d.act_offload.items() if b > 0),
            ),
            "activation_bytes_offloaded": dict(d.act_offload),
            "recompute": self.recompute,
            "recompute_layers": d.recompute_layers,
            "predicted_step_time_s": self.step_time_s,
            "exposed_transfer_s": self.exposed_transfer_s,
            "hbm_gib": self.hbm_bytes / 2**30,
            "tier_gib": {k: v / 2**30 for k, v in self.tier_bytes.items()},
            "bandwidth_needed_GBps": {k: v / 1e9 for k, v in self.bandwidth_needed_Bps.items()},
            "feasible": self.feasible,
            "solve_time_s": self.solve_time_s,
        }


def _activations(p: PlacementProblem, selective: bool, r: int) -> float:
    a = p.act_selective if selective else p.act_none
    return max(a - r * p.act_saved_per_layer, 0.0)


def evaluate(
    p: PlacementProblem,
    d: Decision,
    method: str = "fallback",
    status: str = "given",
    solve_time_s: float = 0.0,
) -> PlacementResult:
    """Step time, tier usage and link bandwidth of a decision under the program's accounting."""
    bw = {t.name: t.bandwidth_Bps for t in p.tiers}
    cap = {t.name: t.capacity_bytes for t in p.tiers}
    act = _activations(p, d.selective, d.recompute_layers)
    off = sum(d.act_offload.values())
    live = act - off + sum(b for s, b in p.state_bytes.items() if d.placement.get(s, "hbm") == "hbm")
    hbm = p.fixed_hbm_bytes + (1.0 + p.live_overhead) * live
    tier_bytes = {t: d.act_offload.get(t, 0.0) for t in bw}
    exposed = 0.0
    moved = {t: 2.0 * d.act_offload.get(t, 0.0) for t in bw}
    overl = {t: 2.0 * d.act_offload.get(t, 0.0) / bw[t] for t in bw}
    for s, b in p.state_bytes.items():
        t = d.placement.get(s, "hbm")
        if t == "hbm":
            continue
        ov, ex = CROSSINGS[s]
        tier_bytes[t] += b
        moved[t] += (ov + ex) * b
        if s in p.state_cost_s:
            exposed += p.state_cost_s[s]
            continue
        overl[t] += ov * b / bw[t]
        exposed += ex * b / bw[t]
    exposed += sum(max(v - p.window, 0.0) for v in overl.values())
    step = (
        p.t_base
        + (p.t_selective if d.selective else 0.0)
        + d.recompute_layers * p.t_recompute_per_layer
        + exposed
    )
    # 1e-6 relative: CBC's primal feasibility tolerance
    feasible = hbm <= p.hbm_capacity * (1 + 1e-6) and all(tier_bytes[t] <= cap[t] * (1 + 1e-6) for t in cap)
    return PlacementResult(
        method,
        status,
        d,
        step,
        hbm,
        tier_bytes,
        {t: moved[t] / step for t in moved if moved[t] > 0},
        exposed,
        solve_time_s,
        feasible,
    )


def solve(p: PlacementProblem, fallback: Decision, time_limit_s: float = 2.0) -> PlacementResult:
    """Solve the placement program with CBC; fall back to ``fallback`` if the solver fails."""
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():  # PuLP 3.x announces its 4.0 API; nothing to act on here
            warnings.simplefilter("ignore", DeprecationWarning)
            return _solve(p, fallback, time_limit_s, t0)
    except Exception as exc:  # noqa: BLE001 - any solver failure falls back (recorded in the result)
        return evaluate(
            p, fallback, "fallback", f"solver failed: {type(exc).__name__}: {exc}", time.perf_counter() - t0
        )


def _solve(p: PlacementProblem, fallback: Decision, time_limit_s: float, t0: float) -> PlacementResult:
    """Build and solve the program with CBC; raises on any solver failure."""
    import pulp

    prob = pulp.LpProblem("placement", pulp.LpMinimize)
    tiers = ["hbm"] + [t.name for t in p.tiers]
    bw = {t.name: t.bandwidth_Bps for t in p.tiers}
    x = {}
    for s in p.state_bytes:
        ok = [t for t in tiers if t == "hbm" or t in p.allowed.get(s, tiers)]
        for t in ok:
            x[s, t] = pulp.LpVariable(f"x_{s}_{t}", cat="Binary")
        prob += pulp.lpSum(x[s, t] for t in ok) == 1
    for kind, s1, s2 in p.links:
        if s1 in p.state_bytes and s2 in p.state_bytes:
            if kind == "same":
                for t in tiers:
                    if (s1, t) in x or (s2, t) in x:
                        prob += x.get((s1, t), 0) == x.get((s2, t), 0)
            else:  # s1 off HBM only if s2 is off HBM
                prob += x[s2, "hbm"] <= x[s1, "hbm"]
    L = int(p.layers_per_stage)
    sel = pulp.LpVariable("selective", cat="Binary") if p.allow_selective else 0
    r = pulp.LpVariable("recompute_layers", lowBound=0, upBound=L if p.allow_full else 0, cat="Integer")
    prob += r + L * sel <= L
    if p.full_all_or_nothing:
        whole = pulp.LpVariable("recompute_all", cat="Binary")
        prob += r == L * whole
    act_ok = [t.name for t in p.tiers if t.name in p.allowed.get("activations", tiers)]
    a = {t: pulp.LpVariable(f"act_{t}", lowBound=0) for t in act_ok}
    act = p.act_none - (p.act_none - p.act_selective) * sel - p.act_saved_per_layer * r
    prob += pulp.lpSum(a.values()) <= act
    prob += (
        p.fixed_hbm_bytes
        + (1.0 + p.live_overhead)
        * (act - pulp.lpSum(a.values()) + pulp.lpSum(b * x[s, "hbm"] for s, b in p.state_bytes.items()))
        <= p.hbm_capacity
    )
    exposed_terms = []
    for t in p.tiers:
        prob += (
            pulp.lpSum(b * x[s, t.name] for s, b in p.state_bytes.items() if (s, t.name) in x)
            + a.get(t.name, 0)
            <= t.capacity_bytes
        )
        e = pulp.LpVariable(f"exposed_{t.name}", lowBound=0)
        priced = [s for s in p.state_bytes if (s, t.name) in x and s in p.state_cost_s]
        crossing = [s for s in p.state_bytes if (s, t.name) in x and s not in p.state_cost_s]
        over = pulp.lpSum(CROSSINGS[s][0] * p.state_bytes[s] / bw[t.name] * x[s, t.name] for s in crossing)
        if t.name in a:
            over += 2.0 * a[t.name] / bw[t.name]
        prob += e >= over - p.window
        exposed_terms.append(e)
        exposed_terms += [CROSSINGS[s][1] * p.state_bytes[s] / bw[t.name] * x[s, t.name] for s in crossing]
        exposed_terms += [p.state_cost_s[s] * x[s, t.name] for s in priced]
    prob += p.t_base + p.t_selective * sel + p.t_recompute_per_layer * r + pulp.lpSum(exposed_terms)
    solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)
    prob.solve(solver)
    status = pulp.LpStatus[prob.status]
    if status != "Optimal":
        raise RuntimeError(status)
    placement = {
        s: next(t for t in tiers if (s, t) in x and (x[s, t].value() or 0) > 0.5) for s in p.state_bytes
    }
    d = Decision(
        placement=placement,
        act_offload={t: max(float(v.value() or 0.0), 0.0) for t, v in a.items()},
        selective=bool(p.allow_selective and (sel.value() or 0) > 0.5),
        recompute_layers=round(r.value() or 0),
    )
    res = evaluate(p, d, "ilp", "optimal", time.perf_counter() - t0)
    # an equally fast given decision is an optimum too: report it rather than a different tie
    given = evaluate(p, fallback, "ilp", "optimal", res.solve_time_s)
    if given.feasible and given.step_time_s <= res.step_time_s * (1 + 1e-9):
        return given
    return res
