"""The door: ids, paths, overlays and pool strings become specs here, once per request.

Everything user-facing (the public API in :mod:`roofplan`, the CLI, the validation suite, the
calibration fit, sweeps) calls these functions; the cost model, the solver and the launch emitters
below take the resulting :class:`~roofplan.models.spec.ModelSpec`,
:class:`~roofplan.hardware.spec.DeviceSpec` and :class:`~roofplan.engines.profile.EngineProfile`
objects and never open a catalog themselves (tests/test_layering.py checks the imports). The
pattern is Calculon's: hardware, model and execution objects are built once, then evaluated.

Every function accepts an already-resolved object too, so resolving twice is harmless (and
cheap: a spec passes straight through; an overlay is applied only when one is given).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from roofplan.engines.catalog import load_engine
from roofplan.engines.profile import EngineProfile
from roofplan.hardware.catalog import load_hardware
from roofplan.hardware.overlay import load_overlay
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.loader import load_model
from roofplan.models.spec import ModelSpec


def model(id_or_path) -> ModelSpec:
    """A ModelSpec from a preset id, a HF config.json (or its folder), a model YAML, an inline
    ``gpt(...)`` or a ModelSpec (returned as is)."""
    return load_model(id_or_path)


def overlay(calibration) -> dict | None:
    """A calibration overlay (None, a YAML path or a dict) read and checked once; None stays None
    so that callers can tell "no overlay" from "an empty one"."""
    return None if calibration is None else load_overlay(calibration)


def hardware(id_or_path, calibration=None, catalog_dir=None) -> DeviceSpec:
    """A DeviceSpec from a catalog id, a catalog YAML path or a DeviceSpec, with the overlay's
    ``efficiency`` block applied (an overlay fitted for another device is refused, exit 2)."""
    return load_hardware(id_or_path, calibration=calibration, catalog_dir=catalog_dir)


def engine(name_or_profile="generic", calibration=None) -> EngineProfile:
    """An EngineProfile from an engine name (generic, vllm, sglang, trtllm) or a profile, with the
    overlay's ``engines.<name>`` block applied."""
    return load_engine(name_or_profile, calibration)


def pools(hardware_arg, calibration=None) -> DeviceSpec | dict[str, DeviceSpec]:
    """The serving hardware argument resolved: ``h100-sxm`` (or a DeviceSpec) gives one DeviceSpec;
    ``h100-sxm:prefill,a100-sxm-80gb:decode`` (or ``{role: hw}``) gives ``{role: DeviceSpec}`` in
    the order given (per-pool GPU budgets follow that order). With several pools an overlay fitted
    for one device id is applied to that pool only. The planner accepts either form and loads
    nothing more (pass ``calibration=None`` to it: the overlay is already in the specs)."""
    from roofplan.hardware.overlay import apply_overlay, overlay_applies
    from roofplan.solver.serve_request import split_pools  # the one parser of the pool syntax

    items = split_pools(hardware_arg)
    ov = overlay(calibration)
    if len(items) == 1 and items[0][1] is None:
        return hardware(items[0][0], ov)
    out = {}
    for dev, role in items:
        hw = hardware(dev)
        out[role] = apply_overlay(hw, ov) if ov is not None and overlay_applies(hw.id, ov) else hw
    return out


def devices(resolved_pools: DeviceSpec | dict[str, DeviceSpec]) -> list[DeviceSpec]:
    """The distinct devices of a :func:`pools` result, in order."""
    if isinstance(resolved_pools, DeviceSpec):
        return [resolved_pools]
    return list({hw.id: hw for hw in resolved_pools.values()}.values())


@lru_cache(maxsize=1)
def error_bands() -> dict:
    """The planners' error bands and best published MFU (``catalogs/error_bands.json``, written by
    ``tools/error_bands.py`` from the validation suite), read once per process."""
    return json.loads(resources.files("roofplan").joinpath("catalogs/error_bands.json").read_text())
