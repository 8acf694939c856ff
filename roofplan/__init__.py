"""roofplan: analytical cost model and auto-configurator for LLM training and serving.

The public Python API (docs/SPEC.md §5)::

    import roofplan
    m = roofplan.load_model("llama-3.1-70b")          # or a path to config.json / model YAML
    hw = roofplan.load_hardware("h100-sxm")
    est = roofplan.estimate_training(m, hw, tp=8, pp=4, dp=32, global_batch=1024, micro_batch=1,
                                     seq_len=8192)
    plan = roofplan.plan_training(m, hw, gpus=1024, global_batch=1024, seq_len=8192)
    srv = roofplan.plan_serving(m, hw, gpus=16, isl=4000, osl=500, ttft_ms=600, tpot_ms=25)
    load = roofplan.estimate_serving_load(m, hw, tp=4, rate=5, isl=2000, osl=200)
    sim = roofplan.simulate_serving(m, hw, tp=4, rate=5, isl=2000, osl=200)
    plan.to_json()  # the same document as --json

Models and hardware may be given as objects or as ids/paths everywhere: the functions here resolve
them once (:mod:`roofplan.resolve`) and pass specs down.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "load_model",
    "load_hardware",
    "estimate_training",
    "estimate_serving",
    "estimate_serving_load",
    "simulate_serving",
    "make_workload",
    "plan_training",
    "plan_serving",
    "validate",
    "calibrate",
    "InputError",
    "InfeasibleError",
    "RoofplanError",
]

from roofplan.errors import InfeasibleError, InputError, RoofplanError


def load_model(id_or_path):
    """A :class:`~roofplan.models.spec.ModelSpec` from a preset id, a HF config.json or a model YAML."""
    from roofplan import resolve

    return resolve.model(id_or_path)


def load_hardware(id_or_path, calibration=None, catalog_dir=None):
    """A :class:`~roofplan.hardware.spec.DeviceSpec` from a catalog id or YAML path, with an
    optional calibration overlay applied."""
    from roofplan import resolve

    return resolve.hardware(id_or_path, calibration=calibration, catalog_dir=catalog_dir)


def _at_the_door(model, hardware, config: dict, engines: tuple[str, ...] = ()):
    """Resolve the model, the hardware (with ``config["calibration"]`` applied) and the engine
    keywords named in ``engines`` once (:mod:`roofplan.resolve`); the cost model below takes specs.
    ``config`` loses ``calibration``; returns (model spec, device spec, calibration as given)."""
    from roofplan import resolve

    calibration = config.pop("calibration", None)
    overlay = resolve.overlay(calibration)  # the file is read once
    for key in engines:
        if key == "engine" or config.get(key) is not None:
            config[key] = resolve.engine(config.get(key, "generic"), overlay)
    return resolve.model(model), resolve.hardware(hardware, overlay), calibration


def estimate_training(model, hardware, **config):
    """Estimate one training step; see ``roofplan estimate train`` for the keywords."""
    from roofplan.costmodel.train import estimate_training as _est

    m, hw, calibration = _at_the_door(model, hardware, config)
    return _est(m, hw, calibration_label=calibration, **config)


def estimate_serving(model, hardware, **config):
    """Estimate one serving instance at a fixed batch; see ``roofplan estimate serve``."""
    from roofplan.serving import estimate_serving as _est

    m, hw, _ = _at_the_door(model, hardware, config, ("engine",))
    return _est(m, hw, **config)


def estimate_serving_load(model, hardware, *, workload=None, **config):
    """A deployment under load (``concurrency=`` or ``rate=``, ``instances=``): the analytic
    steady state; ``workload`` a :class:`~roofplan.workload.Workload` (default: ``isl``/``osl``
    keywords, fixed lengths). See ``roofplan estimate serve --concurrency/--rate``."""
    from roofplan.serving import estimate_serving_load as _est

    wl = _workload(workload, config)
    m, hw, _ = _at_the_door(model, hardware, config, ("engine",))
    return _est(m, hw, workload=wl, **config)


def simulate_serving(model, hardware, *, workload=None, **config):
    """Discrete-event simulation of a deployment; see ``roofplan simulate``."""
    from roofplan.serving import simulate_serving as _sim

    wl = _workload(workload, config)
    m, hw, _ = _at_the_door(model, hardware, config, ("engine", "prefill_engine"))
    return _sim(m, hw, workload=wl, **config)


def make_workload(**spec):
    """Request lengths from numbers, distributions, a trace or a preset (``roofplan.workload``)."""
    from roofplan.workload import make_workload as _make

    return _make(**spec)


def _workload(workload, config: dict):
    if workload is not None:
        return workload
    return make_workload(isl=config.pop("isl", None), osl=config.pop("osl", None))


def plan_training(model, hardware, *, calibration=None, targets=None, **request):
    """Search training configurations; returns a plan with ``to_json()``. The launch registry
    renders each framework's command of the winner (``plan.launch``, or why not in
    ``plan.launch_unsupported``) at the releases of ``targets`` ({framework: version})."""
    from roofplan import resolve
    from roofplan.launch import registry
    from roofplan.solver.train_planner import plan_training as _plan

    overlay = resolve.overlay(calibration)  # the file is read once
    label = (
        None if calibration is None else (str(calibration) if not isinstance(calibration, dict) else "inline")
    )
    request.setdefault("error_bands", resolve.error_bands())
    plan = _plan(
        resolve.model(model), resolve.hardware(hardware, overlay), calibration_label=label, **request
    )
    registry.train_commands(plan, targets)
    return plan


def plan_serving(model, hardware, *, emit_launch: bool = True, engines=None, targets=None, **request):
    """Search serving deployments (colocated and disaggregated); returns a plan with ``to_json()``.
    ``hardware``: an id, a DeviceSpec, ``ID:prefill,ID:decode`` or ``{role: hw}``. With
    ``emit_launch`` the launch registry renders the files of ``engines`` (default all) at the
    releases of ``targets`` into ``plan.launch``."""
    from roofplan import resolve
    from roofplan.launch import registry
    from roofplan.solver.serve_planner import plan_serving as _plan

    overlay = resolve.overlay(request.pop("calibration", None))
    request["engine"] = resolve.engine(request.get("engine", "generic"), overlay)
    request.setdefault("error_bands", resolve.error_bands())
    plan = _plan(resolve.model(model), resolve.pools(hardware, overlay), **request)
    if emit_launch:
        registry.serve_files(plan, registry.SERVE_EMITTERS if engines is None else engines, targets)
    return plan


def validate(calibration=None):
    """Run the built-in suite of published measurements."""
    from roofplan.validation.suite import run_suite

    return run_suite(calibration=calibration)


def calibrate(measurements, hardware, **options):
    """Fit efficiency parameters to measurements; returns the overlay."""
    from roofplan.calibration.fit import calibrate as _cal

    return _cal(measurements, hardware, **options)
