"""Quantities with explicit units, as written in catalog YAML files.

A catalog number is either a plain number in SI base units (FLOP/s, bytes, bytes/s, seconds,
watts) or a string ``"<number> <unit>"`` whose unit belongs to the quantity the field expects
(``"989.4 TFLOPS"``, ``"80 GB"``, ``"64 GiB"``, ``"3.35 TB/s"``, ``"400 Gb/s"``, ``"2 us"``,
``"700 W"``). Decimal prefixes are powers of 10, binary prefixes (KiB, MiB, GiB, TiB) powers of 2,
and a lowercase ``b`` in a rate means bits (``400 Gb/s`` = 50e9 B/s), following the conventions of
``docs/reference/hardware.md``. A unit of the wrong kind (``"80 GB"`` for a bandwidth) is an error,
so a slip cannot silently change a number by a factor of 10^9.

PyYAML reads ``989.4e12`` (an exponent without a sign) as a string; such strings are numbers here.
"""

from __future__ import annotations

import math
import re

_DEC = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BIN = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def _table() -> dict[str, dict[str, float]]:
    flops = {f"{p}FLOPS": v for p, v in _DEC.items()} | {f"{p}FLOP/s": v for p, v in _DEC.items()}
    flops |= {f"{p}OPS": v for p, v in _DEC.items() if p} | {f"{p}OP/s": v for p, v in _DEC.items() if p}
    nbytes = {f"{p}B": v for p, v in (_DEC | _BIN).items()}
    rate = {f"{p}B/s": v for p, v in (_DEC | _BIN).items()}
    rate |= {f"{p}b/s": v / 8.0 for p, v in _DEC.items() if p}
    rate |= {f"{p}bps": v / 8.0 for p, v in _DEC.items() if p}
    time = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    power = {"W": 1.0, "kW": 1e3}
    return {"flops": flops, "bytes": nbytes, "bandwidth": rate, "time": time, "power": power}


#: Accepted units per kind of quantity, with their factor to SI.
UNITS: dict[str, dict[str, float]] = _table()

#: Human names of the SI unit of each kind (for error messages and ``catalog show``).
SI_UNIT = {
    "flops": "FLOP/s",
    "bytes": "B",
    "bandwidth": "B/s",
    "time": "s",
    "power": "W",
    "fraction": "",
    "count": "",
    "usd_per_hour": "USD/h",
    "number": "",
}

_QTY = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-zµ/]*)\s*$")


def parse_quantity(raw: object, kind: str) -> float:
    """Convert a YAML value to SI; raises ``ValueError`` with the allowed units on failure.

    ``kind`` is one of the keys of :data:`UNITS` or a unitless kind (``fraction``, ``count``,
    ``usd_per_hour``, ``number``), for which only plain numbers are accepted.
    """
    if isinstance(raw, bool):
        raise ValueError("expected a number, not a boolean")  # noqa: TRY004 - callers catch ValueError
    if isinstance(raw, (int, float)):
        value = float(raw)
    elif isinstance(raw, str):
        m = _QTY.match(raw.replace("_", "").replace(",", ""))
        if not m:
            raise ValueError(_allowed(kind))
        number, unit = m.groups()
        table = UNITS.get(kind, {})
        if unit and unit not in table:
            raise ValueError(_allowed(kind))
        value = float(number) * (table[unit] if unit else 1.0)
    else:
        raise ValueError(_allowed(kind))  # noqa: TRY004 - callers catch ValueError
    if not math.isfinite(value):
        raise ValueError("expected a finite number")
    return value


def _allowed(kind: str) -> str:
    units = UNITS.get(kind)
    if not units:
        return "expected a plain number"
    sample = ", ".join(sorted(units, key=lambda u: (units[u], u))[:12])
    return (
        f"expected a number in {SI_UNIT[kind]} or a string '<number> <unit>' with unit one of {sample}, ..."
    )


def format_quantity(value: float | None, kind: str) -> str:
    """A readable rendering of an SI value (used by ``roofplan catalog show``)."""
    if value is None:
        return "-"
    if kind == "flops":
        return f"{value / 1e12:,.1f} TFLOP/s"
    if kind == "bytes":
        if value >= 2**40:
            return f"{value / 2**40:,.2f} TiB ({value / 1e9:,.0f} GB)"
        if value >= 2**30:
            return f"{value / 2**30:,.1f} GiB ({value / 1e9:,.1f} GB)"
        return f"{value / 2**20:,.0f} MiB"
    if kind == "bandwidth":
        if value >= 1e12:
            return f"{value / 1e12:,.2f} TB/s"
        return f"{value / 1e9:,.1f} GB/s ({value * 8 / 1e9:,.0f} Gb/s)"
    if kind == "time":
        return f"{value * 1e6:,.2f} µs"
    if kind == "power":
        return f"{value:,.0f} W"
    if kind == "usd_per_hour":
        return f"${value:,.3f}/h"
    if kind == "count":
        return f"{value:,.0f}"
    return f"{value:g}"
