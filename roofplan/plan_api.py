"""The planners' door: ids, paths and overlays become specs here, the solver searches, and the
launch registry renders the plan's launch commands and files.

Nothing below this module resolves a name: the solver takes a ModelSpec, DeviceSpecs (in
:class:`~roofplan.solver.serve_request.Pool` s) and an engine profile.
"""

from __future__ import annotations

from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec


def resolve_model(model) -> ModelSpec:
    """A ModelSpec from a preset id, a HF config.json or a model YAML (or the spec itself)."""
    if isinstance(model, ModelSpec):
        return model
    from roofplan.models.loader import load_model

    return load_model(model)


def resolve_device(spec, calibration=None, *, only_matching: bool = False) -> DeviceSpec:
    """A DeviceSpec with the calibration overlay applied. With several pools (``only_matching``)
    an overlay fitted for one device id is applied to that pool only."""
    from roofplan.hardware.catalog import load_hardware
    from roofplan.hardware.overlay import apply_overlay, load_overlay, overlay_applies

    hw = spec if isinstance(spec, DeviceSpec) else load_hardware(spec)
    if calibration is None:
        return hw
    overlay = load_overlay(calibration)
    if only_matching and not overlay_applies(hw.id, overlay):
        return hw
    return apply_overlay(hw, overlay)


def resolve_pools(hardware, calibration=None) -> list:
    """Serving pools of ``h100-sxm``, a DeviceSpec, ``ID:prefill,ID:decode`` or {role: device}."""
    from roofplan.solver.serve_request import build_pools, split_pools

    items = split_pools(hardware)
    several = not (len(items) == 1 and items[0][1] is None)
    return build_pools([(resolve_device(d, calibration, only_matching=several), role) for d, role in items])


def plan_serving(model, hardware, *, calibration=None, engine="generic", emit_launch: bool = True, targets=None,
                 engines=None, **request):
    """Search serving deployments (see :func:`roofplan.solver.serve_planner.plan_serving`) of
    ``model`` on ``hardware`` (ids or specs), with the calibration overlay applied to devices and
    engine; with ``emit_launch`` the launch files of ``engines`` (default all) at the releases of
    ``targets`` are rendered into ``plan.launch``."""
    from roofplan.hardware.engines import load_engine
    from roofplan.launch import registry
    from roofplan.solver.serve_planner import plan_serving as search

    model = resolve_model(model)
    pools = resolve_pools(hardware, calibration)
    plan = search(model, pools, load_engine(engine, calibration), **request)
    if emit_launch:
        registry.serve_files(plan, registry.SERVE_EMITTERS if engines is None else engines, targets)
    return plan


def plan_training(model, hardware, *, calibration=None, targets=None, **request):
    """Search training configurations (see :func:`roofplan.solver.train_planner.plan_training`) of
    ``model`` on ``hardware`` (ids or specs, calibration overlay applied) and render each
    framework's launch command of the winner (``plan.launch``, or why not in
    ``plan.launch_unsupported``)."""
    from roofplan.launch import registry
    from roofplan.solver.train_planner import plan_training as search

    label = None if calibration is None else (str(calibration) if not isinstance(calibration, dict) else "inline")
    plan = search(resolve_model(model), resolve_device(hardware, calibration), calibration_label=label, **request)
    registry.train_commands(plan, targets)
    return plan
