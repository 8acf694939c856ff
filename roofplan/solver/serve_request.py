"""The serving request: device pools, the GPU budget and the checks of the request's numbers.

Everything here works on specs already resolved (:class:`~roofplan.hardware.spec.DeviceSpec`);
turning ids and overlays into specs is the door's job (:mod:`roofplan.resolve`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel import serve as serve_model
from roofplan.costmodel.power import require_power
from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec
from roofplan.solver.pd_ilp import Budget

MODES = ("auto", "colocated", "disagg")
ROLES = ("prefill", "decode")
#: With ``rate``: fewest GPUs, lowest price per hour, or least power (hence least energy per token).
OBJECTIVES = ("gpus", "cost", "energy")
#: Largest GPU budget of one serving plan (``plan serve --gpus``): the emitted launch files give
#: every node its own script listing every node (~5 s and 1.3 GB at 16,384 GPUs, 19 GB at 65,536).
MAX_SERVE_GPUS = 16_384


def use_gpus(need: int, what: str) -> str:
    """The "use --gpus N" suggestion, or why no budget roofplan accepts would do."""
    if need > MAX_SERVE_GPUS:
        return f"{what} about {need:,} GPUs, more than the {MAX_SERVE_GPUS:,} a plan can use"
    return f"{what} {need} GPUs: use --gpus {need}"


@dataclass
class Pool:
    """A pool of identical devices and the roles it serves."""

    hw: DeviceSpec
    roles: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.hw.id


def split_pools(hardware) -> list[tuple[object, str | None]]:
    """(device, role) items of ``h100-sxm``, a DeviceSpec, ``h100-sxm:prefill,a100-sxm-80gb:decode``
    or {role: device}; role None: one pool serving every role. Devices are left as given (ids or
    specs); roles are checked here, before anything is loaded."""
    if isinstance(hardware, dict):
        items = [(hw, role) for role, hw in hardware.items()]
    elif isinstance(hardware, str) and ("," in hardware or re.search(r":(prefill|decode)$", hardware)):
        items = []
        for part in hardware.split(","):
            name, _, role = part.strip().rpartition(":")
            if not name or role not in ROLES:
                raise InputError(
                    "hardware",
                    hardware,
                    "ID or ID:prefill,ID:decode (e.g. h100-sxm:prefill,a100-sxm-80gb:decode)",
                )
            items.append((name, role))
    else:
        return [(hardware, None)]
    roles_seen = [r for _, r in items]
    for role in roles_seen:
        if role not in ROLES:
            raise InputError("hardware", role, "roles are prefill and decode")
    if sorted(roles_seen) != sorted(ROLES):
        raise InputError("hardware", hardware, "name exactly one pool for prefill and one for decode")
    return items


def build_pools(items: list[tuple[DeviceSpec, str | None]]) -> list[Pool]:
    """Pools of the (spec, role) items of :func:`split_pools`: one pool per device id, each also
    serving colocated instances."""
    if len(items) == 1 and items[0][1] is None:
        return [Pool(items[0][0], ("prefill", "decode", "colocated"))]
    pools: dict[str, Pool] = {}
    for hw, role in items:
        if hw.id in pools:
            pools[hw.id].roles = tuple(dict.fromkeys(pools[hw.id].roles + (role,)))
        else:
            pools[hw.id] = Pool(hw, (role,))
    for p in pools.values():
        p.roles = tuple(dict.fromkeys(p.roles + ("colocated",)))
    return list(pools.values())


def as_pools(hardware) -> list[Pool]:
    """Pools from resolved specs: a DeviceSpec, {role: DeviceSpec} or a list of Pools."""
    if isinstance(hardware, list) and all(isinstance(p, Pool) for p in hardware):
        return hardware
    items = split_pools(hardware)
    for hw, _ in items:
        if not isinstance(hw, DeviceSpec):
            raise InputError("hardware", hw, "a resolved DeviceSpec (roofplan.plan_serving resolves ids)")
    return build_pools(items)


def parse_budget(gpus, pools: list[Pool]) -> Budget:
    """An int (all pools together), ``"8,8"`` / a list (per pool, in --hardware order) or {pool: n}."""

    def positive(v, name="gpus") -> int:
        try:
            n = int(v)
        except (TypeError, ValueError):
            raise InputError(name, v, "a positive integer (or one per pool: 8,8)") from None
        if n < 1 or (isinstance(v, float) and v != n):
            raise InputError(name, v, "a positive integer")
        return n

    if isinstance(gpus, str) and "," in gpus:
        gpus = [g.strip() for g in gpus.split(",")]
    if isinstance(gpus, (list, tuple)):
        if len(gpus) != len(pools):
            raise InputError(
                "gpus",
                ",".join(map(str, gpus)),
                f"one count per hardware pool ({len(pools)}: {', '.join(p.name for p in pools)})",
            )
        return Budget(per_pool={p.name: positive(g) for p, g in zip(pools, gpus)})
    if isinstance(gpus, dict):
        names = {p.name for p in pools}
        per = {}
        for k, v in gpus.items():
            key = next((p.name for p in pools if k == p.name or k in p.roles), None)
            if key is None or key not in names:
                raise InputError("gpus", k, "a pool id or role: " + ", ".join(sorted(names)))
            per[key] = positive(v)
        return Budget(per_pool=per)
    return Budget(total=positive(gpus))


def check_request(model: ModelSpec, isl, osl, ttft_ms, tpot_ms, rate, mode, dtype, kv_dtype) -> None:
    """InputError for a request the planner cannot take (field, value, what is allowed)."""
    for name, v in (("isl", isl), ("osl", osl)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InputError(name, v, "a positive integer number of tokens")
    if isl + osl > model.max_seq_len:
        raise InputError("isl+osl", isl + osl, f"at most the model's max_seq_len {model.max_seq_len}")
    for name, v in (("ttft_ms", ttft_ms), ("tpot_ms", tpot_ms), ("rate", rate)):
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v)
        ):
            raise InputError(name, v, "a positive number")
    if mode not in MODES:
        raise InputError("mode", mode, "one of " + ", ".join(MODES))
    if dtype not in serve_model.WEIGHT_DTYPES:
        raise InputError("dtype", dtype, "one of " + ", ".join(serve_model.WEIGHT_DTYPES))
    if kv_dtype is not None and kv_dtype not in serve_model.KV_DTYPES:
        raise InputError("kv_dtype", kv_dtype, "one of " + ", ".join(serve_model.KV_DTYPES))


def check_percentile(slo_percentile) -> None:
    """InputError unless None or a percentile strictly between 0 and 100."""
    if slo_percentile is not None and (
        isinstance(slo_percentile, bool)
        or not isinstance(slo_percentile, (int, float))
        or not 0 < slo_percentile < 100
    ):
        raise InputError("slo_percentile", slo_percentile, "a percentile between 0 and 100 (e.g. 90)")


def effective_objective(pools: list[Pool], objective: str) -> str:
    """Price only when every pool has one (catalog ``price_per_hour``); else GPUs. Energy needs
    every pool's power model (an InputError naming the catalog field otherwise)."""
    if objective == "energy":
        for p in pools:
            require_power(p.hw)
        return "energy"
    if objective == "cost" and all(p.hw.price_per_hour for p in pools):
        return "cost"
    return "gpus"


def hf_id(model: ModelSpec) -> str:
    """The Hugging Face repository of a preset (from its ``source`` URL), else the model name."""
    m = re.search(r"huggingface\.co/([A-Za-z0-9_.\-]+/[A-Za-z0-9_.\-]+)", model.source or "")
    return m.group(1) if m else model.name


def parse_headroom(value) -> dict[str, float | None]:
    """Free GiB per device each role's instances must leave: None (the default rule of
    :func:`~roofplan.costmodel.train_memory.default_memory_headroom_bytes`, per pool), one number
    for every role, ``"prefill=4,decode=8"`` or {role: GiB}."""
    roles = ROLES + ("colocated",)
    if value is None:
        return {}
    if isinstance(value, str) and "=" in value:
        items = {}
        for part in value.split(","):
            role, _, num = part.strip().partition("=")
            items[role.strip()] = num.strip()
        value = items
    if isinstance(value, dict):
        out = {}
        for role, v in value.items():
            if role not in roles:
                raise InputError("memory_headroom", role, "a role among " + ", ".join(roles))
            out[role] = _gib(v)
        return out
    g = _gib(value)
    return {r: g for r in roles}


def _gib(v) -> float:
    try:
        g = float(v)
    except (TypeError, ValueError):
        raise InputError("memory_headroom", v, "GiB per device: a number >= 0 (or ROLE=GiB,...)") from None
    if isinstance(v, bool) or not math.isfinite(g) or not 0 <= g <= 1e6:
        raise InputError("memory_headroom", v, "GiB per device: a number >= 0 (or ROLE=GiB,...)")
    return g


def parse_constraints(constraints) -> tuple:
    """Per-role ``--fix``/``--exclude`` (:mod:`roofplan.solver.constraints`): Constraint objects, or
    {"fix": text, "exclude": text}."""
    from roofplan.solver import constraints as cons

    if isinstance(constraints, dict):
        kw = dict(keys=cons.SERVE_KEYS, roles=cons.SERVE_ROLES)
        return cons.parse(constraints.get("fix"), exclude=False, field="fix", **kw) + cons.parse(
            constraints.get("exclude"), exclude=True, field="exclude", **kw
        )
    return tuple(constraints or ())
