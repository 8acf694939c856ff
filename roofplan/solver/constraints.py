"""User constraints on the search: ``--fix tp=8,pp=16`` and ``--exclude cp>1`` (``plan train``),
``--fix prefill.tp=4,decode.tp=8`` and ``--exclude decode.batch>256`` per role (``plan serve``).

The CLI parses the text once, at the door, into :class:`Constraint` objects; the planner applies
them as one boolean mask over the enumerated configurations (rejections are counted as
``constraint``), and to the placement program's refinements, so a fixed knob stays fixed.

Keys: the parallel degrees ``tp pp dp cp ep vpp etp`` (expert TP), ``mb`` (micro-batch), ``zero``, ``recompute``
(none | selective | full), ``offload`` (none | optimizer | optimizer+params), ``sp`` (sequence
parallelism: on | off), ``tp_overlap`` (Megatron TP-comm overlap: on | off), ``dispatcher``
(MoE token dispatcher: alltoall | deepep) and ``fp8_recipe`` (current | delayed). Degrees, ``mb`` and ``zero`` compare with ``= != < <= > >=``; the named
knobs with ``=`` and ``!=``. ``--fix`` takes only ``=``; ``--exclude`` removes every configuration
that matches any of its comparisons.

Serving keys (:data:`SERVE_KEYS`): ``tp pp ep dp`` of an instance, ``batch`` (prompts per prefill
pass, concurrent requests of a decode or colocated instance) and ``chunk`` (colocated prefill
tokens per iteration), each optionally prefixed by a role (``prefill.``, ``decode.``,
``colocated.``); without a prefix a term applies to every role.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.train_configs import FP8_RECIPES, MOE_DISPATCHERS
from roofplan.errors import InputError
from roofplan.solver.space import OFFLOAD_CODES, RECOMPUTE_CODES

#: Constraint key -> search-array name.
KEYS = {
    "tp": "tp",
    "pp": "pp",
    "dp": "dp",
    "cp": "cp",
    "ep": "ep",
    "vpp": "vpp",
    "mb": "micro_batch",
    "zero": "zero",
    "recompute": "recompute",
    "offload": "offload",
    "sp": "sequence_parallel",
    "tp_overlap": "tp_comm_overlap",
    "etp": "etp",
    "dispatcher": "moe_dispatcher",
    "fp8_recipe": "fp8_recipe",
    "act_offload": "act_offload_layers",
}
_NAMED = {
    "recompute": RECOMPUTE_CODES,
    "offload": OFFLOAD_CODES,
    "sp": {"off": 0, "on": 1, "false": 0, "true": 1, "no": 0, "yes": 1, "0": 0, "1": 1},
}
_NAMED["tp_overlap"] = _NAMED["sp"]
_NAMED["dispatcher"] = {n: i for i, n in enumerate(MOE_DISPATCHERS)}
_NAMED["fp8_recipe"] = {n: i for i, n in enumerate(FP8_RECIPES)}
_OPS = {
    "=": operator.eq,
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_TERM = re.compile(r"\s*(?:([a-z]+)\.)?([a-z][a-z0-9_]*)\s*(==|!=|<=|>=|=|<|>)\s*([A-Za-z0-9_+.-]+)\s*")
#: Serving constraint key -> candidate column (see the module docstring).
SERVE_KEYS = {"tp": "tp", "pp": "pp", "ep": "ep", "dp": "dp", "batch": "batch", "chunk": "chunk"}
SERVE_ROLES = ("prefill", "decode", "colocated")


@dataclass(frozen=True)
class Constraint:
    """``key op value``; ``exclude`` inverts it (matching configurations are removed)."""

    key: str
    op: str
    value: int
    exclude: bool = False
    text: str = ""
    column: str = ""  # the array the key compares (default: KEYS[key])
    role: str | None = None  # serving: the role it constrains (None: every role)

    def matches(self, arrays: dict) -> np.ndarray:
        # the search adds the overlap column only once it is evaluated: absent means off
        col = self.column or KEYS[self.key]
        v = np.asarray(arrays.get(col, np.zeros(np.shape(arrays["tp"]), dtype=np.int64)))
        if self.key == "etp":  # the search arrays' 0 means expert TP = TP
            v = np.where(v == 0, np.asarray(arrays["tp"]), v)
        return _OPS[self.op](v, self.value)

    def allows(self, arrays: dict) -> np.ndarray:
        m = self.matches(arrays)
        return ~m if self.exclude else m


def parse(
    text: str | None, *, exclude: bool, field: str, keys: dict | None = None, roles: tuple[str, ...] = ()
) -> tuple[Constraint, ...]:
    """``"tp=8,pp=16"`` -> constraints; :class:`InputError` naming ``field`` on bad syntax.
    ``keys`` (default the training :data:`KEYS`) maps keys to columns; with ``roles`` a term may
    name its role (``decode.tp=8``)."""
    if text is None or not text.strip():
        return ()
    keys = KEYS if keys is None else keys
    allowed = (
        ("comma-separated key=value terms" if not exclude else "comma-separated comparisons such as cp>1")
        + " over "
        + ", ".join(keys)
        + (f" (optionally ROLE.key, ROLE one of {', '.join(roles)})" if roles else "")
    )
    out = []
    for term in text.split(","):
        m = _TERM.fullmatch(term)
        if not m:
            raise InputError(field, term.strip() or text, allowed)
        role, key, op, raw = m.group(1), m.group(2), m.group(3), m.group(4).lower()
        if role is not None and role not in roles:
            raise InputError(field, term.strip(), ("a role among " + ", ".join(roles)) if roles else allowed)
        if key not in keys:
            raise InputError(field, term.strip(), "a key among " + ", ".join(keys))
        if not exclude and op not in ("=", "=="):
            raise InputError(field, term.strip(), "key=value (use --exclude for comparisons)")
        if key in _NAMED:
            if op not in ("=", "==", "!="):
                raise InputError(field, term.strip(), f"{key} compares with = or != only")
            if raw not in _NAMED[key]:
                raise InputError(field, term.strip(), f"{key} one of " + ", ".join(_NAMED[key]))
            value = _NAMED[key][raw]
        else:
            try:
                value = int(raw)
            except ValueError:
                raise InputError(field, term.strip(), f"{key} compared with an integer") from None
            if value < 0:
                raise InputError(field, term.strip(), f"{key} compared with a non-negative integer")
        out.append(Constraint(key, "=" if op == "==" else op, value, exclude, term.strip(), keys[key], role))
    return tuple(out)


def mask(constraints, arrays: dict) -> np.ndarray:
    """True where every constraint allows the configuration."""
    ok = np.ones(np.asarray(arrays["tp"]).shape, dtype=bool)
    for c in constraints:
        ok &= c.allows(arrays)
    return ok


def describe(constraints) -> str:
    fix = ",".join(c.text for c in constraints if not c.exclude)
    exc = ",".join(c.text for c in constraints if c.exclude)
    return " ".join(p for p in ((f"--fix {fix}" if fix else ""), (f"--exclude {exc}" if exc else "")) if p)
