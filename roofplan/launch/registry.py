"""The launch emitters by name, and rendering a finished plan's launch files.

The planners return plans; this module turns them into commands and files. Training emitters
(``megatron``, ``deepspeed``, ``torchtitan``) take ``(model, config, estimate, target)``; serving
emitters (``vllm``, ``sglang``, ``trtllm``, ``dynamo``) take ``(best, request, target)`` (the
plan document's parts). Each module is imported on first use.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from roofplan.errors import InputError
from roofplan.solver.plan_types import FRAMEWORKS

#: Training launchers (their names are the planner's framework names).
TRAIN_EMITTERS = FRAMEWORKS
#: Serving launchers, in the order plans list them.
SERVE_EMITTERS = ("vllm", "sglang", "trtllm", "dynamo")


def emitter(name: str) -> ModuleType:
    """The launch module of a training framework or serving engine ``name``."""
    if name not in TRAIN_EMITTERS + SERVE_EMITTERS:
        raise InputError("emit", name, "one of " + ", ".join(TRAIN_EMITTERS + SERVE_EMITTERS))
    return importlib.import_module(f"roofplan.launch.{name}")


def train_commands(plan, targets: dict[str, str] | None = None) -> None:
    """Fill ``plan.launch`` (framework -> command line) and ``plan.launch_unsupported``
    (framework -> why not) for the winner of a :class:`~roofplan.solver.plan_types.TrainPlan`,
    each framework at its release in ``targets`` (default the newest)."""
    targets = targets or {}
    config = plan.config()
    plan.launch, plan.launch_unsupported = {}, {}
    for fw in TRAIN_EMITTERS:
        mod = emitter(fw)
        why = mod.unsupported(config, plan.model, targets.get(fw))
        if why:
            plan.launch_unsupported[fw] = why
        else:
            plan.launch[fw] = mod.command(plan.model, config, targets.get(fw))


def train_files(plan, frameworks, targets: dict[str, str] | None = None) -> dict[str, str]:
    """Launch files (name -> text) of ``frameworks`` for the winner of a training plan."""
    from roofplan.launch.common import merge_files

    targets = targets or {}
    return merge_files(
        emitter(fw).emit(plan.model, plan.config(), plan.best, targets.get(fw)) for fw in frameworks
    )


def serve_files(plan, engines=SERVE_EMITTERS, targets: dict[str, str] | None = None) -> None:
    """Fill ``plan.launch`` (engine -> {file: text}) of a serving plan for ``engines``."""
    targets = targets or {}
    plan.launch = {e: emitter(e).emit(plan.best, plan.request, targets.get(e)) for e in engines}


def write_plan(out_dir, files: dict[str, str], doc: dict) -> list[str]:
    """Write launch ``files`` and ``plan.json`` (``doc``) into ``out_dir``; shell scripts executable.
    Everything is rendered before this is called, so nothing is written unless all of it succeeded."""
    from roofplan.launch.common import dumps_json
    from roofplan.outputs import write_tree

    files = dict(files)
    files["plan.json"] = dumps_json(doc)
    return write_tree(out_dir, files, executable=[n for n in files if n.endswith(".sh")])
