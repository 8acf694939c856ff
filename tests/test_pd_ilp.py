"""The prefill:decode ILP against hand calculations and an exhaustive enumeration."""

import numpy as np
import pytest

from roofplan.solver.pd_ilp import Budget, RoleOptions, brute_force, solve_pd


def _one(gpus, rate, pool="gpu", price=None):
    return RoleOptions(gpus=[gpus], rate=[rate], pool=pool, price=None if price is None else [price])


def test_hand_calculated_ratio():
    # Prefill: 2 GPUs, 1 req/s; decode: 4 GPUs, 3 req/s; 12 GPUs.
    # (x, y) within 2x + 4y <= 12: (2,2) -> min(2, 6) = 2; (4,1) -> min(4, 3) = 3 on 12 GPUs;
    # (3,1) -> min(3, 3) = 3 on 10 GPUs.  Best: 3 req/s with the fewest GPUs = 3P1D on 10.
    sol = solve_pd(_one(2, 1.0), _one(4, 3.0), [[True]], Budget(total=12))
    assert (sol.x, sol.y, sol.gpus) == (3, 1, 10)
    assert sol.goodput_rps == pytest.approx(3.0)
    assert sol.ratio == "3P1D"


def test_rate_mode_fewest_gpus():
    # 2.5 req/s needs x >= 3 prefill (1 req/s each) and y >= 1 decode (3 req/s): 3*2 + 4 = 10 GPUs.
    sol = solve_pd(_one(2, 1.0), _one(4, 3.0), [[True]], Budget(total=64), target_rps=2.5)
    assert (sol.x, sol.y, sol.gpus) == (3, 1, 10)
    # 3.5 req/s: x = 4, y = 2 -> 16 GPUs
    sol = solve_pd(_one(2, 1.0), _one(4, 3.0), [[True]], Budget(total=64), target_rps=3.5)
    assert (sol.x, sol.y, sol.gpus) == (4, 2, 16)
    assert solve_pd(_one(2, 1.0), _one(4, 3.0), [[True]], Budget(total=15), target_rps=3.5) is None


def test_incompatible_pairs_are_never_chosen():
    # The fast decode option (index 1) cannot pair with the only prefill option (TTFT would break).
    P = _one(1, 10.0)
    D = RoleOptions(gpus=[1, 1], rate=[1.0, 100.0], pool="gpu")
    sol = solve_pd(P, D, [[True, False]], Budget(total=8))
    assert sol.decode == 0
    assert (sol.x, sol.y) == (1, 7)  # min(10, 7) = 7 on 8 GPUs
    assert solve_pd(P, D, [[False, False]], Budget(total=8)) is None


def test_per_pool_budgets_for_mixed_hardware():
    P = _one(2, 1.0, pool="h100")
    D = _one(4, 1.0, pool="a100")
    sol = solve_pd(P, D, [[True]], Budget(per_pool={"h100": 4, "a100": 16}))
    # at most 2 prefill (4 GPUs) -> goodput 2 needs 2 decode instances (8 of the 16 A100s)
    assert (sol.x, sol.y) == (2, 2)
    assert sol.gpus_by_pool == {"h100": 4, "a100": 8}


def test_cost_objective_prefers_cheap_pool():
    P = RoleOptions(
        gpus=[2, 2], rate=[1.0, 1.0], pool=np.array(["fast", "cheap"], dtype=object), price=[20.0, 4.0]
    )
    D = _one(2, 5.0, pool="cheap", price=4.0)
    sol = solve_pd(P, D, [[True], [True]], Budget(total=64), target_rps=3.0, objective="cost")
    assert sol.prefill == 1 and sol.x == 3 and sol.price == pytest.approx(3 * 4.0 + 4.0)


@pytest.mark.parametrize("seed", range(30))
def test_ilp_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    nP, nD = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    two_pools = seed % 3 == 0
    P = RoleOptions(
        gpus=rng.choice([1, 2, 4, 8], nP),
        rate=rng.uniform(0.1, 5.0, nP),
        pool="a",
        price=rng.uniform(1, 3, nP),
    )
    D = RoleOptions(
        gpus=rng.choice([1, 2, 4, 8], nD),
        rate=rng.uniform(0.1, 5.0, nD),
        pool="b" if two_pools else "a",
        price=rng.uniform(1, 3, nD),
    )
    compatible = rng.random((nP, nD)) < 0.7
    budget = (
        Budget(per_pool={"a": int(rng.integers(2, 17)), "b": int(rng.integers(2, 17))})
        if two_pools
        else Budget(total=int(rng.integers(2, 25)))
    )
    target = float(rng.uniform(0.5, 8.0)) if seed % 2 else None
    objective = "cost" if seed % 5 == 1 else "gpus"
    ilp = solve_pd(P, D, compatible, budget, target_rps=target, objective=objective)
    ref = brute_force(P, D, compatible, budget, target_rps=target, objective=objective)
    assert (ilp is None) == (ref is None)
    if ref is None:
        return
    if target is None:
        assert ilp.goodput_rps == pytest.approx(ref.goodput_rps, rel=1e-6)
        assert ilp.gpus == ref.gpus
    elif objective == "cost":
        assert ilp.price == pytest.approx(ref.price, rel=1e-6)
    else:
        assert ilp.gpus == ref.gpus
    # whatever was chosen is feasible
    assert compatible[ilp.prefill, ilp.decode]
    assert budget.ok(ilp.gpus_by_pool)
    if target is not None:
        assert P.rate[ilp.prefill] * ilp.x >= target - 1e-9 and D.rate[ilp.decode] * ilp.y >= target - 1e-9
