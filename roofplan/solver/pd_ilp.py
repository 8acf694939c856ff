"""The prefill:decode ratio as a mixed-integer program (PuLP / CBC).

A disaggregated deployment runs ``x`` identical prefill instances and ``y`` identical decode
instances (DistServe, Zhong et al. OSDI 2024 §4; Splitwise, Patel et al. ISCA 2024 §4.3;
Mooncake, Qin et al. FAST 2025). Each candidate instance configuration is reduced here to abstract
numbers computed by the cost model: the GPUs it occupies, the requests per second it sustains, the
device pool it is drawn from (mixed hardware, e.g. H100 prefill and A100 decode) and its price.
A (prefill, decode) pair is *compatible* when together they meet the latency targets (TTFT includes
the KV-cache transfer, which depends on both sides), so pairs are the unit of choice.

Variables: ``u[i,j]`` binary selects the compatible pair; ``x[i]``, ``y[j]`` integer instance
counts, allowed only for the selected pair's configurations. Requests flow through one prefill
then one decode instance, so the sustainable request rate of the deployment is
``G = min(sum_i r_i x_i, sum_j s_j y_j)`` (flow balance of DistServe §4.1).

* Throughput mode (no ``target_rps``): maximise ``G`` within the GPU budgets; among optimal
  solutions, the fewest GPUs (second, lexicographic solve). With a budget of N GPUs this maximises
  goodput per budgeted GPU.
* Rate mode: meet ``target_rps`` on both sides with the fewest GPUs (``objective="gpus"``) or the
  lowest price per hour (``objective="cost"``).

:func:`brute_force` enumerates every pair and every count and is the reference the tests compare
the ILP against.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pulp

#: Relative slack when fixing the optimal goodput in the lexicographic second solve.
_LEX_TOL = 1e-7


@dataclass
class RoleOptions:
    """Candidate instance configurations of one role, as the ILP sees them (arrays of length n)."""

    gpus: np.ndarray  # devices per instance
    rate: np.ndarray  # requests/s one instance sustains
    pool: np.ndarray  # pool name (str) of the devices it uses
    price: np.ndarray | None = None  # $/hour per instance (None: unknown)

    def __post_init__(self) -> None:
        self.gpus = np.asarray(self.gpus, dtype=np.int64).reshape(-1)
        self.rate = np.asarray(self.rate, dtype=float).reshape(-1)
        n = len(self.gpus)
        pool = np.asarray(self.pool, dtype=object).reshape(-1)
        self.pool = np.repeat(pool, n) if len(pool) == 1 and n != 1 else pool
        if self.price is not None:
            price = np.asarray(self.price, dtype=float).reshape(-1)
            self.price = np.repeat(price, n) if len(price) == 1 and n != 1 else price

    def __len__(self) -> int:
        return len(self.gpus)


@dataclass
class Budget:
    """GPU limits: per pool (``per_pool``) and/or over all pools together (``total``)."""

    total: int | None = None
    per_pool: dict = field(default_factory=dict)

    def ok(self, used: dict) -> bool:
        if self.total is not None and sum(used.values()) > self.total:
            return False
        return all(used.get(p, 0) <= lim for p, lim in self.per_pool.items())

    def cap(self, pool) -> int:
        """Most GPUs one pool could ever use."""
        caps = [c for c in (self.total, self.per_pool.get(pool)) if c is not None]
        return min(caps) if caps else 10**9


@dataclass
class PDSolution:
    """The chosen pair and counts; ``goodput_rps`` = min(prefill rate, decode rate)."""

    prefill: int
    decode: int
    x: int
    y: int
    goodput_rps: float
    gpus: int
    price: float | None
    gpus_by_pool: dict
    optimal: bool = True
    solver: str = "cbc"

    @property
    def ratio(self) -> str:
        return f"{self.x}P{self.y}D"


def _var(prob, name: str, low=None, up=None, cat: str = "Continuous"):
    """A variable attached to ``prob`` (PuLP >= 3.3 ``add_variable``; ``LpVariable`` before)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, low, up, cat=cat)
    return pulp.LpVariable(name, low, up, cat=cat)


def _solve(prob, time_limit_s: float) -> str:
    """Solve with the CBC binary bundled with PuLP, quietly, within ``time_limit_s``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PuLP 3.x announces its 4.0 solver API
        solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit_s)
        return pulp.LpStatus[prob.solve(solver)]


def _used(P: RoleOptions, D: RoleOptions, i: int, j: int, x: int, y: int) -> dict:
    used: dict = {}
    used[P.pool[i]] = used.get(P.pool[i], 0) + int(P.gpus[i]) * x
    used[D.pool[j]] = used.get(D.pool[j], 0) + int(D.gpus[j]) * y
    return used


def _price(P: RoleOptions, D: RoleOptions, i: int, j: int, x: int, y: int) -> float | None:
    if P.price is None or D.price is None:
        return None
    p = float(P.price[i]) * x + float(D.price[j]) * y
    return p if math.isfinite(p) else None


def _solution(P, D, i, j, x, y, optimal, solver) -> PDSolution:
    g = min(float(P.rate[i]) * x, float(D.rate[j]) * y)
    used = _used(P, D, i, j, x, y)
    return PDSolution(i, j, x, y, g, int(sum(used.values())), _price(P, D, i, j, x, y), used, optimal, solver)


def solve_pd(
    P: RoleOptions,
    D: RoleOptions,
    compatible: np.ndarray,
    budget: Budget,
    *,
    target_rps: float | None = None,
    objective: str = "gpus",
    time_limit_s: float = 20.0,
) -> PDSolution | None:
    """Choose the prefill and decode configurations and their counts; None if nothing is feasible.

    ``compatible`` is a bool matrix (len(P) x len(D)) of pairs that meet the latency targets.
    """
    compatible = np.asarray(compatible, dtype=bool).reshape(len(P), len(D))
    pairs = [(int(i), int(j)) for i, j in zip(*np.nonzero(compatible))]
    if not pairs:
        return None
    if objective == "cost" and (P.price is None or D.price is None):
        objective = "gpus"

    ub_x = {i: max(budget.cap(P.pool[i]) // int(P.gpus[i]), 0) for i in set(i for i, _ in pairs)}
    ub_y = {j: max(budget.cap(D.pool[j]) // int(D.gpus[j]), 0) for j in set(j for _, j in pairs)}
    pairs = [(i, j) for i, j in pairs if ub_x[i] >= 1 and ub_y[j] >= 1]
    if not pairs:
        return None
    if target_rps is not None and target_rps > max(
        min(float(P.rate[i]) * ub_x[i], float(D.rate[j]) * ub_y[j]) for i, j in pairs
    ):
        return None  # above what any pair reaches at its instance caps: infeasible without a solve
    I_ = sorted(set(i for i, _ in pairs))
    J_ = sorted(set(j for _, j in pairs))

    prob = pulp.LpProblem("pd_ratio", pulp.LpMaximize if target_rps is None else pulp.LpMinimize)
    u = {p: _var(prob, f"u_{p[0]}_{p[1]}", 0, 1, "Binary") for p in pairs}
    x = {i: _var(prob, f"x_{i}", 0, ub_x[i], "Integer") for i in I_}
    y = {j: _var(prob, f"y_{j}", 0, ub_y[j], "Integer") for j in J_}
    prob += pulp.lpSum(u.values()) == 1
    for i in I_:  # x_i > 0 only when a pair using i is selected, and then at least one instance
        sel = pulp.lpSum(u[p] for p in pairs if p[0] == i)
        prob += x[i] <= ub_x[i] * sel
        prob += x[i] >= sel
    for j in J_:
        sel = pulp.lpSum(u[p] for p in pairs if p[1] == j)
        prob += y[j] <= ub_y[j] * sel
        prob += y[j] >= sel

    gpus_of = {}
    for pool in set(P.pool[i] for i in I_) | set(D.pool[j] for j in J_):
        gpus_of[pool] = pulp.lpSum(int(P.gpus[i]) * x[i] for i in I_ if P.pool[i] == pool) + pulp.lpSum(
            int(D.gpus[j]) * y[j] for j in J_ if D.pool[j] == pool
        )
    total_gpus = pulp.lpSum(gpus_of.values())
    if budget.total is not None:
        prob += total_gpus <= budget.total
    for pool, lim in budget.per_pool.items():
        if pool in gpus_of:
            prob += gpus_of[pool] <= lim

    prefill_rate = pulp.lpSum(float(P.rate[i]) * x[i] for i in I_)
    decode_rate = pulp.lpSum(float(D.rate[j]) * y[j] for j in J_)

    if target_rps is None:
        G = _var(prob, "goodput", 0)
        prob += G <= prefill_rate
        prob += G <= decode_rate
        prob.setObjective(G)
        if _solve(prob, time_limit_s) != "Optimal" or G.value() is None or G.value() <= 0:
            return None
        best_g = G.value()
        # Lexicographic second objective: the fewest GPUs that keep the optimal goodput.
        prob += G >= best_g * (1.0 - _LEX_TOL)
        prob.sense = pulp.LpMinimize
        prob.setObjective(total_gpus)
    else:
        prob += prefill_rate >= target_rps
        prob += decode_rate >= target_rps
        if objective == "cost":
            prob.setObjective(
                pulp.lpSum(float(P.price[i]) * x[i] for i in I_)
                + pulp.lpSum(float(D.price[j]) * y[j] for j in J_)
            )
        else:
            prob.setObjective(total_gpus)
    if _solve(prob, time_limit_s) != "Optimal":
        return None
    proven = getattr(prob, "sol_status", pulp.LpSolutionOptimal) == pulp.LpSolutionOptimal  # not cut by time
    chosen = max(pairs, key=lambda p: u[p].value() or 0.0)
    i, j = chosen
    xi = int(round(x[i].value() or 0))
    yj = int(round(y[j].value() or 0))
    if xi < 1 or yj < 1:
        return None
    return _solution(P, D, i, j, xi, yj, proven, "cbc")


def brute_force(
    P: RoleOptions,
    D: RoleOptions,
    compatible: np.ndarray,
    budget: Budget,
    *,
    target_rps: float | None = None,
    objective: str = "gpus",
) -> PDSolution | None:
    """Exhaustive reference: every compatible pair and every pair of counts within the budget.

    Same objective as :func:`solve_pd` (goodput, then fewest GPUs; or, with ``target_rps``, the
    fewest GPUs / lowest price meeting it). Exponential in nothing but slow in Python; for tests.
    """
    compatible = np.asarray(compatible, dtype=bool).reshape(len(P), len(D))
    if objective == "cost" and (P.price is None or D.price is None):
        objective = "gpus"
    best = None
    best_key = None
    for i, j in zip(*np.nonzero(compatible)):
        i, j = int(i), int(j)
        for xi in range(1, budget.cap(P.pool[i]) // int(P.gpus[i]) + 1):
            for yj in range(1, budget.cap(D.pool[j]) // int(D.gpus[j]) + 1):
                used = _used(P, D, i, j, xi, yj)
                if not budget.ok(used):
                    continue
                g = min(float(P.rate[i]) * xi, float(D.rate[j]) * yj)
                gpus = sum(used.values())
                if target_rps is None:
                    key = (-g, gpus)
                else:
                    if float(P.rate[i]) * xi < target_rps or float(D.rate[j]) * yj < target_rps:
                        continue
                    key = (_price(P, D, i, j, xi, yj) if objective == "cost" else gpus, gpus)
                if best_key is None or _better(key, best_key):
                    best_key = key
                    best = (i, j, xi, yj)
    if best is None:
        return None
    return _solution(P, D, *best, True, "brute_force")


def _better(a: tuple, b: tuple) -> bool:
    """Lexicographic comparison with a relative tolerance on the first key (float goodput)."""
    if not math.isclose(a[0], b[0], rel_tol=1e-9, abs_tol=1e-12):
        return a[0] < b[0]
    return a[1] < b[1]
