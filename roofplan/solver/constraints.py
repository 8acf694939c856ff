"""User constraints on the training search: ``--fix tp=8,pp=16`` and ``--exclude cp>1``.

The CLI parses the text once, at the door, into :class:`Constraint` objects; the planner applies
them as one boolean mask over the enumerated configurations (rejections are counted as
``constraint``), and to the placement program's refinements, so a fixed knob stays fixed.

Keys: the parallel degrees ``tp pp dp cp ep vpp etp`` (expert TP), ``mb`` (micro-batch), ``zero``, ``recompute``
(none | selective | full), ``offload`` (none | optimizer | optimizer+params), ``sp`` (sequence
parallelism: on | off) and ``tp_overlap`` (Megatron TP-comm overlap: on | off). Degrees, ``mb`` and ``zero`` compare with ``= != < <= > >=``; the named
knobs with ``=`` and ``!=``. ``--fix`` takes only ``=``; ``--exclude`` removes every configuration
that matches any of its comparisons.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np

from roofplan.errors import InputError
from roofplan.solver.space import OFFLOAD_CODES, RECOMPUTE_CODES

#: Constraint key -> search-array name.
KEYS = {"tp": "tp", "pp": "pp", "dp": "dp", "cp": "cp", "ep": "ep", "vpp": "vpp", "mb": "micro_batch",
        "zero": "zero", "recompute": "recompute", "offload": "offload", "sp": "sequence_parallel",
        "tp_overlap": "tp_comm_overlap", "etp": "etp"}
_NAMED = {"recompute": RECOMPUTE_CODES, "offload": OFFLOAD_CODES,
          "sp": {"off": 0, "on": 1, "false": 0, "true": 1, "no": 0, "yes": 1, "0": 0, "1": 1}}
_NAMED["tp_overlap"] = _NAMED["sp"]
_OPS = {"=": operator.eq, "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
        ">": operator.gt, ">=": operator.ge}
_TERM = re.compile(r"\s*([a-z_]+)\s*(==|!=|<=|>=|=|<|>)\s*([A-Za-z0-9_+.-]+)\s*")


@dataclass(frozen=True)
class Constraint:
    """``key op value``; ``exclude`` inverts it (matching configurations are removed)."""

    key: str
    op: str
    value: int
    exclude: bool = False
    text: str = ""

    def matches(self, arrays: dict) -> np.ndarray:
        # the search adds the overlap column only once it is evaluated: absent means off
        v = np.asarray(arrays.get(KEYS[self.key], np.zeros(np.shape(arrays["tp"]), dtype=np.int64)))
        if self.key == "etp":  # the search arrays' 0 means expert TP = TP
            v = np.where(v == 0, np.asarray(arrays["tp"]), v)
        return _OPS[self.op](v, self.value)

    def allows(self, arrays: dict) -> np.ndarray:
        m = self.matches(arrays)
        return ~m if self.exclude else m


def parse(text: str | None, *, exclude: bool, field: str) -> tuple[Constraint, ...]:
    """``"tp=8,pp=16"`` -> constraints; :class:`InputError` naming ``field`` on bad syntax."""
    if text is None or not text.strip():
        return ()
    allowed = ("comma-separated key=value terms" if not exclude else "comma-separated comparisons such as cp>1") + \
        " over " + ", ".join(KEYS)
    out = []
    for term in text.split(","):
        m = _TERM.fullmatch(term)
        if not m:
            raise InputError(field, term.strip() or text, allowed)
        key, op, raw = m.group(1), m.group(2), m.group(3).lower()
        if key not in KEYS:
            raise InputError(field, term.strip(), "a key among " + ", ".join(KEYS))
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
        out.append(Constraint(key, "=" if op == "==" else op, value, exclude, term.strip()))
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
