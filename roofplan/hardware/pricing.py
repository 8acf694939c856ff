"""User prices: ``--price DEVICE=$/h`` in place of a catalog's ``price.per_device_hour``.

Catalog prices are public list or reserved rates with a date (``price.date``) and go stale; a
buyer's negotiated rate is what a procurement study needs. :func:`apply_prices` gives the resolved
hardware argument (:func:`roofplan.resolve.pools`: a DeviceSpec, or ``{role: DeviceSpec}`` for a
mixed pool such as ``h100-sxm:prefill,a100-sxm-80gb:decode``) the user's prices.
"""

from __future__ import annotations

import math

from roofplan.errors import InputError
from roofplan.hardware.spec import DeviceSpec

#: ``price_date`` of a DeviceSpec whose price came from the user.
USER_DATE = "user"
_FORMAT = "DEVICE=USD_PER_HOUR (e.g. h100-sxm=2.49)"


def parse_prices(values, field: str = "price") -> dict[str, float]:
    """``["h100-sxm=2.49", ...]`` (or one comma list, or a mapping) -> {device id: USD per hour}."""
    if values is None:
        return {}
    if isinstance(values, dict):
        items = list(values.items())
    else:
        items = []
        for v in [values] if isinstance(values, str) else values:
            for part in str(v).split(","):
                if part.strip():
                    dev, sep, usd = part.partition("=")
                    if not sep:
                        raise InputError(field, part, _FORMAT)
                    items.append((dev.strip(), usd.strip()))
    out: dict[str, float] = {}
    for dev, usd in items:
        try:
            x = float(usd)
        except (TypeError, ValueError):
            raise InputError(field, f"{dev}={usd}", _FORMAT) from None
        if not dev or not math.isfinite(x) or x < 0:
            raise InputError(field, f"{dev}={usd}", _FORMAT + " with a price >= 0")
        out[str(dev)] = x
    return out


def priced(spec: DeviceSpec, prices: dict[str, float]) -> DeviceSpec:
    """``spec`` with the user's price when ``prices`` names its id."""
    return spec.with_price(prices[spec.id], USER_DATE) if spec.id in prices else spec


def apply_prices(hardware, prices: dict[str, float], *, strict: bool = True):
    """The resolved hardware argument (a DeviceSpec, or ``{role: DeviceSpec}`` for a mixed pool, as
    :func:`roofplan.resolve.pools` returns it) with prices replaced; ``hardware`` itself when
    ``prices`` is empty. With ``strict`` a price for a device the argument does not use is an error
    (a typo would otherwise be ignored)."""
    if not prices:
        return hardware
    roles = dict(hardware) if isinstance(hardware, dict) else {"": hardware}
    for h in roles.values():
        if not isinstance(h, DeviceSpec):
            raise InputError(
                "hardware",
                repr(h)[:80],
                "a DeviceSpec or {role: DeviceSpec} (resolve ids and "
                "pool strings with roofplan.resolve.pools)",
            )
    used = {h.id for h in roles.values()}
    unknown = sorted(set(prices) - used)
    if strict and unknown:
        raise InputError("price", unknown[0], "a device of this request: " + ", ".join(sorted(used)))
    out = {r: priced(h, prices) for r, h in roles.items()}
    return out[""] if "" in out else out
