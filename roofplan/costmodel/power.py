"""Device power and energy: an idle floor plus a part that grows with activity.

    P(a) = P_idle + (P_max - P_idle) * a,        0 <= a <= 1

the linear utilisation model of server power (Fan, Weber and Barroso, "Power provisioning for a
warehouse-sized computer", ISCA 2007, §4.1), applied to one accelerator board. ``P_idle`` is the
catalog's ``power.idle``; ``P_max`` its ``power.max`` or else the TDP (an H100 under dense GEMMs
runs at its 700 W board limit, the reason the catalog's ``sustained_compute`` is below 1).

The activity ``a`` is the share of the time the device executes kernels, compute-bound or
memory-bound (a memory-bound decode step keeps the HBM, the larger share of board power, busy):

* training: (compute + optimizer) / step time; exposed communication, pipeline bubbles and
  offload waits count as idle;
* serving: (compute-bound + memory-bound) / iteration time; collectives and the engine's fixed
  per-step overhead count as idle.

Counting communication as idle understates the power of communication-heavy layouts somewhat
(NCCL kernels occupy a few SMs and the links); the validation suite's energy rows bound the error.
Host, network and cooling power are not included (multiply by the site's PUE and host share).
Pure functions over numpy arrays; nothing here reads files.
"""

from __future__ import annotations

import numpy as np

from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec

J_PER_KWH = 3.6e6


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
    """Mean board power (W) at ``activity`` (clipped to [0, 1])."""
    a = np.clip(np.asarray(activity, dtype=float), 0.0, 1.0)
    return idle_w + (max_w - idle_w) * a


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
