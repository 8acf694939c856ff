"""Device power and energy: an idle floor plus a part that grows with activity.

    P(a) = P_low + (P_max - P_low) * a,        0 <= a <= 1

the linear utilisation model of server power (Fan, Weber and Barroso, "Power provisioning for a
warehouse-sized computer", ISCA 2007, §4.1), applied to one accelerator board, whose floor
``P_low`` while a job runs is its waiting power (below). ``P_idle`` is the
catalog's ``power.idle``; ``P_max`` its ``power.max`` or else the TDP (an H100 under dense GEMMs
runs at its 700 W board limit, the reason the catalog's ``sustained_compute`` is below 1).

The activity ``a`` is the share of the time the device executes kernels, compute-bound or
memory-bound (a memory-bound decode step keeps the HBM, the larger share of board power, busy):

* training: (compute + optimizer) / step time; the rest is exposed communication, pipeline
  bubbles and offload waits;
* serving: (compute-bound + memory-bound) / iteration time; the rest is collectives and the
  engine's fixed per-step overhead.

The rest is not idle power. A device held by a running job that waits on a collective, a
pipeline neighbour or the host stays at its clocks with its context, NCCL's spinning kernels and
its HBM refreshing: the "execution-idle" state of "The Energy Cost of Execution-Idle in GPU
Clusters" (arXiv 2604.04745), whose per-second telemetry of a large AI cluster puts it at 19.7 % of
in-execution time and 10.7 % of the energy, across workloads and GPU generations. With busy power
P_b, that is P_wait x 0.197 = 0.107 x (0.197 P_wait + 0.803 P_b), so P_wait = 0.488 P_b
(:data:`WAIT_SHARE`). The waiting share of the time is priced at WAIT_SHARE x P_max (never below
P_idle):

    P(a) = P_max * a + max(P_idle, WAIT_SHARE * P_max) * (1 - a)

Host, network and cooling power are not included (multiply by the site's PUE and host share).
Pure functions over numpy arrays; nothing here reads files.
"""

from __future__ import annotations

import numpy as np

from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec

J_PER_KWH = 3.6e6
#: Power of a device that waits inside a running job, as a share of its busy power: 10.7 % of the
#: energy over 19.7 % of the time (arXiv 2604.04745, abstract) -> 0.107 x 0.803 / (0.197 x 0.893).
WAIT_SHARE = 0.107 * (1 - 0.197) / (0.197 * (1 - 0.107))


def power_limits(hw: DeviceSpec) -> tuple[float, float] | None:
    """(idle, fully active) board power in W, or None when the catalog lacks either."""
    top = hw.max_w if hw.max_w is not None else hw.tdp_w
    if hw.idle_w is None or top is None:
        return None
    return float(hw.idle_w), float(top)


def require_power(hw: DeviceSpec, field: str = "objective", value: str = "energy") -> tuple[float, float]:
    """:func:`power_limits` or an :class:`InputError` naming the missing catalog field."""
    lim = power_limits(hw)
    if lim is None:
        missing = "power.idle" if hw.idle_w is None else "tdp (or power.max)"
        raise InputError(field, value, f"{hw.id} has no {missing} in its catalog; use another objective")
    return lim


def device_power_w(idle_w: float, max_w: float, activity) -> np.ndarray:
    """Mean board power (W) of a device in a running job at ``activity`` (clipped to [0, 1]): busy
    time at ``max_w``, the rest at the waiting power ``max(idle_w, WAIT_SHARE * max_w)``."""
    a = np.clip(np.asarray(activity, dtype=float), 0.0, 1.0)
    low = max(idle_w, WAIT_SHARE * max_w)
    return low + (max_w - low) * a


def busy_fraction(busy_s, total_s) -> np.ndarray:
    """Share of ``total_s`` spent in kernels (0 where the total is 0)."""
    busy = np.asarray(busy_s, dtype=float)
    total = np.asarray(total_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.clip(busy / total, 0.0, 1.0), 0.0)


def train_power_w(hw: DeviceSpec, t_compute, t_optimizer, step_time_s) -> np.ndarray | None:
    """Mean power per device (W) of training steps with these times (arrays broadcast)."""
    lim = power_limits(hw)
    if lim is None:
        return None
    a = busy_fraction(np.asarray(t_compute, dtype=float) + np.asarray(t_optimizer, dtype=float), step_time_s)
    return device_power_w(*lim, a)


def serve_power_w(hw: DeviceSpec, compute_s, memory_s, total_s) -> np.ndarray | None:
    """Mean power per device (W) of engine iterations with these parts (arrays broadcast)."""
    lim = power_limits(hw)
    if lim is None:
        return None
    a = busy_fraction(np.asarray(compute_s, dtype=float) + np.asarray(memory_s, dtype=float), total_s)
    return device_power_w(*lim, a)


def joules_per_token(power_w, tokens_per_s) -> np.ndarray:
    """Energy per token (J) of devices drawing ``power_w`` in total at ``tokens_per_s``."""
    p = np.asarray(power_w, dtype=float)
    t = np.asarray(tokens_per_s, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t > 0, p / t, np.inf)


def energy_kwh(power_w, seconds) -> np.ndarray:
    """kWh drawn at ``power_w`` (W, total) for ``seconds``."""
    return np.asarray(power_w, dtype=float) * np.asarray(seconds, dtype=float) / J_PER_KWH
