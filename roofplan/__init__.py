"""roofplan: analytical cost model and auto-configurator for LLM training and serving.

The public Python API (SPEC §5)::

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

Models and hardware may be given as objects or as ids/paths everywhere.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "load_model", "load_hardware", "estimate_training", "estimate_serving", "estimate_serving_load",
    "simulate_serving", "make_workload", "plan_training", "plan_serving", "validate", "calibrate",
    "InputError", "InfeasibleError", "RoofplanError",
]

from roofplan.errors import InfeasibleError, InputError, RoofplanError


def load_model(id_or_path):
    """A :class:`~roofplan.models.spec.ModelSpec` from a preset id, a HF config.json or a model YAML."""
    from roofplan.models.loader import load_model as _load

    return _load(id_or_path)


def load_hardware(id_or_path, calibration=None, catalog_dir=None):
    """A :class:`~roofplan.hardware.spec.DeviceSpec` from a catalog id or YAML path, with an
    optional calibration overlay applied."""
    from roofplan.hardware.catalog import load_hardware as _load

    return _load(id_or_path, calibration=calibration, catalog_dir=catalog_dir)


def estimate_training(model, hardware, **config):
    """Estimate one training step; see ``roofplan estimate train`` for the keywords."""
    from roofplan.costmodel.train import estimate_training as _est

    return _est(model, hardware, **config)


def estimate_serving(model, hardware, **config):
    """Estimate one serving instance at a fixed batch; see ``roofplan estimate serve``."""
    from roofplan.costmodel.serve import estimate_serving as _est

    return _est(model, hardware, **config)


def estimate_serving_load(model, hardware, *, workload=None, **config):
    """A deployment under load (``concurrency=`` or ``rate=``, ``instances=``): the analytic
    steady state; ``workload`` a :class:`~roofplan.workload.Workload` (default: ``isl``/``osl``
    keywords, fixed lengths). See ``roofplan estimate serve --concurrency/--rate``."""
    from roofplan.serving import estimate_serving_load as _est

    return _est(model, hardware, workload=_workload(workload, config), **config)


def simulate_serving(model, hardware, *, workload=None, **config):
    """Discrete-event simulation of a deployment; see ``roofplan simulate``."""
    from roofplan.serving import simulate_serving as _sim

    return _sim(model, hardware, workload=_workload(workload, config), **config)


def make_workload(**spec):
    """Request lengths from numbers, distributions, a trace or a preset (``roofplan.workload``)."""
    from roofplan.workload import make_workload as _make

    return _make(**spec)


def _workload(workload, config: dict):
    if workload is not None:
        return workload
    return make_workload(isl=config.pop("isl", None), osl=config.pop("osl", None))


def plan_training(model, hardware, **request):
    """Search training configurations; returns a plan with ``to_json()``."""
    from roofplan.plan_api import plan_training as _plan

    return _plan(model, hardware, **request)


def plan_serving(model, hardware, **request):
    """Search serving deployments (colocated and disaggregated); returns a plan with ``to_json()``."""
    from roofplan.plan_api import plan_serving as _plan

    return _plan(model, hardware, **request)


def validate(calibration=None):
    """Run the built-in suite of published measurements."""
    from roofplan.validation.suite import run_suite

    return run_suite(calibration=calibration)


def calibrate(measurements, hardware, **options):
    """Fit efficiency parameters to measurements; returns the overlay."""
    from roofplan.calibration.fit import calibrate as _cal

    return _cal(measurements, hardware, **options)
