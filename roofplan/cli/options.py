"""The CLI options every command shares, declared once (typer ``Annotated`` types), and the Enum
choices of the knobs with a fixed set of values.

A command declares ``model: Model`` or ``engine: EngineChoice = EngineChoice.generic`` instead of
spelling the flag, its help text and its allowed values again, so a new knob or a new engine is one
edit here (the choices come from where the knob is defined: the field metadata of
:class:`~roofplan.costmodel.train_configs.TrainConfigs` and :data:`roofplan.engines.profile.ENGINES`).
Enum values reach the API as their ``.value`` (a plain name).
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from roofplan.cli.common import bounded_count
from roofplan.costmodel.serve_configs import KV_DTYPES, WEIGHT_DTYPES
from roofplan.costmodel.train_configs import TRAIN_DTYPES, choices
from roofplan.engines.profile import ENGINES

MODEL_HELP = "Model preset id, a HF config.json (or its folder), a model YAML, or gpt(...)."
HARDWARE_HELP = "Hardware catalog id or YAML path."
POOLS_HELP = "Hardware id, or ID:prefill,ID:decode for separate device pools."
JSON_HELP = "Print one JSON document on stdout and nothing else."
CALIBRATION_HELP = "Overlay YAML written by `roofplan calibrate`, applied on top of the catalog."


def _choice(name: str, values) -> type[Enum]:
    """A str Enum whose members are ``values`` (typer shows and checks them as [a|b|c])."""
    return Enum(name, {v: v for v in values}, type=str)


Recompute = _choice("Recompute", choices("recompute"))
Offload = _choice("Offload", choices("offload"))
MoeDispatcher = _choice("MoeDispatcher", choices("moe_dispatcher"))
Fp8Recipe = _choice("Fp8Recipe", choices("fp8_recipe"))
PipelineEngine = _choice("PipelineEngine", choices("pipeline_engine"))
EngineChoice = _choice("Engine", ENGINES)


def value(choice) -> str | None:
    """The plain name of an Enum choice (None stays None)."""
    return None if choice is None else getattr(choice, "value", choice)


def count(flag: str, help: str, **kw) -> typer.models.OptionInfo:
    """An integer option bounded while parsing (:func:`~roofplan.cli.common.bounded_count`)."""
    return typer.Option(flag, callback=bounded_count, help=help, **kw)


Model = Annotated[str, typer.Option("--model", help=MODEL_HELP)]
ModelOrPlan = Annotated[str | None, typer.Option("--model", help=MODEL_HELP + " Or from --plan.")]
Hardware = Annotated[str, typer.Option("--hardware", help=HARDWARE_HELP)]
HardwareOrPlan = Annotated[str | None, typer.Option("--hardware", help=HARDWARE_HELP + " Or from --plan.")]
Pools = Annotated[str, typer.Option("--hardware", help=POOLS_HELP)]
# metavar "" hides typer's "<bool>" type label: a flag takes no value, and "--json <bool>" reads as
# if it needed one.
Json = Annotated[bool, typer.Option("--json", metavar="", help=JSON_HELP)]
Calibration = Annotated[str | None, typer.Option("--calibration", metavar="FILE", help=CALIBRATION_HELP)]
TP = Annotated[int, count("--tp", "Tensor-parallel degree.")]
PP = Annotated[int, count("--pp", "Pipeline-parallel degree.")]


def flag(name: str, help: str) -> typer.models.OptionInfo:
    """A boolean flag that takes no value (metavar "" hides typer's "<bool>" label, see ``Json``)."""
    return typer.Option(name, metavar="", help=help)


#: The training batch (estimate train, plan train).
GlobalBatch = Annotated[int, count("--global-batch", "Global batch in sequences.")]
SeqLen = Annotated[int, count("--seq-len", "Sequence length in tokens.")]

#: Flags the planners share (plan train, plan serve).
Price = Annotated[
    list[str] | None,
    typer.Option("--price", metavar="DEVICE=$/h", help="Price per device-hour in place of the catalog's."),
]
OutDir = Annotated[
    str | None, typer.Option("--out", metavar="DIR", help="Write the launch files and plan.json here.")
]


def pick(flag: str, enum: type[Enum], help: str, metavar: str = "NAME") -> typer.models.OptionInfo:
    """An Enum option whose choices are listed in the help text (a short metavar keeps the help
    table readable in 80 columns; typer's own ``[a|b|c]`` metavar would truncate the flag names)."""
    return typer.Option(flag, metavar=metavar, help=f"{help}: {' | '.join(m.value for m in enum)}.")


RecomputeOpt = Annotated[Recompute, pick("--recompute", Recompute, "Activation recomputation")]
OffloadOpt = Annotated[Offload, pick("--offload", Offload, "Kept in host memory")]
MoeDispatcherOpt = Annotated[MoeDispatcher, pick("--moe-dispatcher", MoeDispatcher, "MoE token dispatcher")]
Fp8RecipeOpt = Annotated[Fp8Recipe, pick("--fp8-recipe", Fp8Recipe, "With --dtype fp8, the scaling recipe")]
PipelineEngineOpt = Annotated[
    PipelineEngine,
    pick(
        "--pipeline-engine",
        PipelineEngine,
        "Pipeline schedule and gradient sync (deepspeed: Megatron-DeepSpeed)",
    ),
]
EngineOpt = Annotated[EngineChoice, pick("--engine", EngineChoice, "Serving-engine overhead profile")]

# -- serving: speculative decoding, prefix caching, expert skew (estimate serve, plan serve) ----------
SpecMethod = Annotated[
    str | None,
    typer.Option(
        "--spec-method",
        help="Speculative decoding: mtp | eagle3 | ngram (default off). Unset --spec-tokens/--spec-accept "
        "take the method's published defaults (mtp 1 @ 0.85, eagle3 3 @ 0.64, ngram 3 @ 0.5).",
    ),
]
SpecTokens = Annotated[int | None, typer.Option("--spec-tokens", help="Draft tokens per step (1-16).")]
SpecAccept = Annotated[
    float | None, typer.Option("--spec-accept", help="Per-token acceptance rate of the drafts (0-1).")
]
PrefixHit = Annotated[
    str | None,
    typer.Option(
        "--prefix-hit",
        help="Prompt tokens served from the prefix cache: a count (e.g. 3000) or a fraction of --isl (e.g. 0.75).",
    ),
]
ExpertSkew = Annotated[
    float,
    typer.Option(
        "--expert-skew",
        help="MoE routed-token load of the busiest expert-parallel rank over the mean (>= 1; 1 = uniform).",
    ),
]

# -- one serving instance: the shape and request lengths (estimate serve, simulate, plan serve) -------
ServeEP = Annotated[int, count("--ep", "Expert-parallel degree (MoE; divides tp x dp).")]
ServeDP = Annotated[int, count("--dp", "Attention data-parallel ranks (MoE, DeepSeek-style).")]
Isl = Annotated[int | None, count("--isl", "Input (prompt) tokens per request.")]
Osl = Annotated[int | None, count("--osl", "Output tokens per request.")]

# -- serving under load: request lengths and replicas (estimate serve, simulate) ----------------------
Concurrency = Annotated[
    int | None, count("--concurrency", "Closed loop: requests in flight (a new one starts when one ends).")
]
IslDist = Annotated[
    str | None,
    typer.Option(
        "--isl-dist",
        metavar="KIND:MEAN,SPREAD",
        help="Prompt-length distribution: normal|lognormal:MEAN,SD, uniform:MEAN,HALF-WIDTH, empirical:V1,V2,..",
    ),
]
OslDist = Annotated[
    str | None,
    typer.Option(
        "--osl-dist", metavar="KIND:MEAN,SPREAD", help="Output-length distribution (as --isl-dist)."
    ),
]
WorkloadOpt = Annotated[
    str | None,
    typer.Option(
        "--workload",
        metavar="FILE|PRESET",
        help="Trace of isl,osl[,arrival_s] rows (CSV with header, or JSONL), or a preset: chat, summarisation, "
        "code, long-context.",
    ),
]
Instances = Annotated[
    int, count("--instances", "Identical replicas behind a router (the load is split over them).")
]
#: Weight and KV-cache dtypes of serving, and the training dtypes (checked where they are defined).
ServeDtype = Annotated[str, typer.Option("--dtype", help="Weight dtype: " + " | ".join(WEIGHT_DTYPES) + ".")]
KvDtype = Annotated[
    str | None,
    typer.Option(
        "--kv-dtype",
        help="KV-cache dtype: " + " | ".join(KV_DTYPES) + " (default: the 16-bit activation dtype).",
    ),
]
TrainDtype = Annotated[str, typer.Option("--dtype", help=" | ".join(TRAIN_DTYPES) + ".")]


#: The flags of ``estimate serve`` and ``simulate`` that describe one deployment, by parameter name,
#: passed through to the API unchanged (:func:`serving_kwargs`).
_DEPLOYMENT_FLAGS = ("tp", "pp", "ep", "dp", "dtype", "kv_dtype", "calibration", "prefix_hit", "expert_skew")


def serving_kwargs(params: dict) -> dict:
    """The keyword arguments of :func:`roofplan.estimate_serving`, :func:`roofplan.estimate_serving_load`
    and :func:`roofplan.simulate_serving` that a command's parsed flags (click's ``ctx.params``) give
    for the deployment: its shape, dtypes, engine, overlay and serving features."""
    kw = {k: params[k] for k in _DEPLOYMENT_FLAGS}
    kw["engine"] = value(params["engine"])
    kw["speculative"] = spec_from_flags(params["spec_method"], params["spec_tokens"], params["spec_accept"])
    return kw


def spec_from_flags(method: str | None, tokens: int | None, accept: float | None):
    """The :class:`~roofplan.costmodel.serve_features.SpecDecode` of the flags, or None;
    --spec-tokens/--spec-accept need --spec-method."""
    from roofplan.costmodel.serve_features import SpecDecode
    from roofplan.errors import InputError

    if method is None:
        if tokens is not None or accept is not None:
            raise InputError(
                "spec-method", None, "mtp, eagle3 or ngram (required with --spec-tokens/--spec-accept)"
            )
        return None
    return SpecDecode.of(method, tokens, accept)
