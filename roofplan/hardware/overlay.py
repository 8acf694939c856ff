"""Calibration overlays: fitted efficiency parameters layered on top of a catalog.

One format everywhere (written by ``roofplan calibrate``, read by every ``--calibration``)::

    schema: roofplan.calibration/v1
    hardware: h100-sxm            # the catalog id it applies to (optional)
    inputs: [measurements.csv]    # what it was fitted on (informational)
    efficiency: {gemm_max: 0.78, hbm: 0.86}        # any subset of Efficiency fields
    engines: {vllm: {step_overhead_s: 0.004}}      # any subset of an engine profile's fields

:func:`load_overlay` accepts None, a YAML path or a dict of that shape and returns it normalised
(efficiency values as floats); :func:`apply_overlay` replaces the efficiency fields of a
:class:`DeviceSpec`. The ``engines`` block is validated only for shape here; the engine loader
(:mod:`roofplan.engines.catalog`) applies it.
"""

from __future__ import annotations

import math
import os

from roofplan.engines.profile import ENGINES, check_engine_fields
from roofplan.errors import InputError, unknown_key
from roofplan.hardware.spec import DeviceSpec, Efficiency, out_of_bounds
from roofplan.inputs import is_file, load_yaml, read_text, user_path

SCHEMA = "roofplan.calibration/v1"
_KEYS = ("schema", "hardware", "inputs", "efficiency", "engines", "fit", "notes", "created")


def efficiency_kind(name: str) -> tuple[str, bool]:
    """(quantity kind, zero allowed) of an Efficiency field: latencies (``*_s``) are times and may
    be 0; so may fields whose default is 0 (a "not set, fall back" sentinel such as
    ``gemm_max_fp8``); per-CTA bandwidths (``*_Bps``) and element rates (``*_rate``, operations per
    second) are bounded as bandwidths and FLOP rates; fractions, sizes, speed-ups and occupancies
    (``*_per_sm``) must otherwise be strictly positive."""
    zero_ok = getattr(Efficiency(), name, None) == 0
    if name.endswith("_s"):
        return "time", True
    if name.endswith("_Bps"):
        return "bandwidth", zero_ok
    if name.endswith("_rate"):
        return "flops", zero_ok  # element operations per second
    if name in (
        "nvls_speedup",
        "moe_gemm",
        "moe_gemm_fp8",
        "moe_gemm_fp8_block",
        "moe_stream",
        "gemm_k_half",
        "gemm_cta_intensity",
        "gemm_blend",
        "gdn_recurrent_blend",
        "attn_half_len",
        "nvls_min_ranks",
        "attn_score_flops",
        "fa_prefill_half_len",
        "fa_prefill_score_flops",
        "decode_split_len",
        "fa_max_splits",
        "moe_tile_arch",
        "gemm_fp4_tile_n",
    ) or name.endswith("_per_sm"):
        return "number", zero_ok
    return "fraction", zero_ok


def empty_overlay() -> dict:
    return {"schema": SCHEMA, "hardware": None, "inputs": [], "efficiency": {}, "engines": {}}


def load_overlay(calibration: str | os.PathLike | dict | None) -> dict:
    """Read and validate an overlay; ``None`` gives an empty one."""
    if calibration is None:
        return empty_overlay()
    if isinstance(calibration, (str, os.PathLike)):
        name = str(calibration)
        p = user_path(calibration, "calibration")
        if not is_file(p):
            raise InputError(
                "calibration", name, "expected an existing overlay YAML file written by `roofplan calibrate`"
            )
        doc = load_yaml(read_text(p, "calibration", "yaml"), f"calibration {p.name}", "expected valid YAML")
        label = p.name
    elif isinstance(calibration, dict):
        doc, label = calibration, "calibration"
    else:
        raise InputError("calibration", repr(calibration), "expected None, a YAML path or a dict")
    return _normalise(doc, label)


def _normalise(doc: object, label: str) -> dict:
    if not isinstance(doc, dict):
        raise InputError(label, "not a mapping", f"expected a mapping with schema: {SCHEMA}")
    for k in doc:
        if k not in _KEYS:
            raise unknown_key(f"{label}: {k}", "unknown key", k, _KEYS, "allowed keys: ")
    schema = doc.get("schema", SCHEMA)
    if schema != SCHEMA:
        raise InputError(f"{label}: schema", schema, f"expected {SCHEMA}")
    hw = doc.get("hardware")
    if hw is not None and (not isinstance(hw, str) or not hw.strip()):
        raise InputError(f"{label}: hardware", hw, "expected a catalog id")
    inputs = doc.get("inputs") or []
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise InputError(f"{label}: inputs", inputs, "expected a list of file names")

    eff_in = doc.get("efficiency") or {}
    if not isinstance(eff_in, dict):
        raise InputError(f"{label}: efficiency", eff_in, "expected a mapping of Efficiency fields")
    allowed = Efficiency.field_names()
    eff: dict[str, float] = {}
    for name, value in eff_in.items():
        if name not in allowed:
            raise unknown_key(f"{label}: efficiency.{name}", "unknown field", name, allowed, "allowed: ")
        eff[name] = check_efficiency_value(name, value, f"{label}: efficiency.{name}")

    engines = doc.get("engines") or {}
    if not isinstance(engines, dict) or not all(isinstance(v, dict) for v in engines.values()):
        raise InputError(f"{label}: engines", engines, "expected a mapping engine name -> {field: value}")
    for name, block in engines.items():
        if name not in ENGINES:
            raise unknown_key(f"{label}: engines.{name}", "unknown engine", name, ENGINES, "allowed: ")
        # every block, not only the engine in use: a bad value must not wait for the day it is used
        engines = {**engines, name: check_engine_fields(block, f"{label}: engines.{name}")}

    out = dict(doc)
    out.update(
        {
            "schema": SCHEMA,
            "hardware": hw.strip() if isinstance(hw, str) else None,
            "inputs": list(inputs),
            "efficiency": eff,
            "engines": engines,
        }
    )
    return out


def check_efficiency_value(name: str, value: object, field: str) -> float:
    """A valid value of Efficiency field ``name`` as float, else InputError on ``field``."""
    kind, zero_ok = efficiency_kind(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(field, value, "expected a positive number")
    if value < 0 or (value == 0 and not zero_ok):
        raise InputError(field, value, "expected a number >= 0" if zero_ok else "expected a positive number")
    if kind == "fraction" and value > 1:  # an achieved fraction of a peak: no kernel beats its peak
        raise InputError(field, value, "expected a fraction of peak in (0, 1]")
    bad = out_of_bounds(f"efficiency.{name}", kind, value, zero_ok=zero_ok)
    if bad:
        raise InputError(field, value, bad)
    return float(value)


def overlay_applies(spec_id: str, overlay: dict | None) -> bool:
    """Whether an (already normalised) overlay may be applied to hardware ``spec_id``."""
    return not overlay or overlay.get("hardware") in (None, spec_id)


def apply_overlay(spec: DeviceSpec, overlay: dict | None) -> DeviceSpec:
    """``spec`` with the overlay's efficiency fields replaced; an overlay fitted for another
    hardware id is refused (its numbers would be meaningless here)."""
    if not overlay:
        return spec
    overlay = _normalise(overlay, "calibration")
    hw = overlay.get("hardware")
    if hw is not None and hw != spec.id:
        raise InputError(
            "calibration hardware", hw, f"this overlay was fitted for {hw}; expected an overlay for {spec.id}"
        )
    if not overlay["efficiency"]:
        return spec
    return spec.with_efficiency(**overlay["efficiency"])
