"""What each training launcher can run: one rule table per framework.

A rule is (reject reason, vectorised predicate over the configuration arrays that is True where
the framework cannot run the configuration, message). From this table alone derive

* the search mask of ``--emit`` (:func:`framework_mask`, rejections counted as
  ``unsupported_by_<framework>``),
* the "not emitted because" line of each launcher (:func:`violation`, called by the
  ``unsupported`` of :mod:`roofplan.launch.megatron`, ``deepspeed`` and ``torchtitan``, which add
  only what depends on the model or the release),
* the placement program's restrictions (:func:`expresses`: which offload and partial-recompute
  moves a launcher can write), and whether any launcher expresses a configuration
  (:func:`launchable`).

Arrays hold the search's integer codes: ``offload`` 0 none / 1 optimizer / 2 optimizer+params,
``moe_dispatcher`` 0 alltoall / 1 deepep, ``fp8_recipe`` 0 current / 1 delayed,
``recompute`` 0 none / 1 selective / 2 full, ``recompute_layers`` 0 = every layer, ``etp`` 0 =
expert TP equal to TP (a plan's configuration gives the degree itself), ``act_offload_layers``
layers whose activations go to host memory (Megatron-Core only; its own limits, pp 1 and no
recompute, are the cost model's ``activation_offload`` reject reason). Sources:
Megatron-LM ``arguments.py`` (``--optimizer-cpu-offload`` needs ``--use-distributed-optimizer``;
Megatron-FSDP without pipeline stages), DeepSpeed ``runtime/pipe/engine.py`` ("ZeRO-2 and ZeRO-3
are incompatible with pipeline parallelism"), ``runtime/zero/config.py`` (``offload_param`` needs
stage 3), torchtitan ``parallelize`` (FSDP2: replicate, reshard never / default; CPU offload of
everything at once; full AC over every layer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from roofplan.costmodel.train_configs import FP8_RECIPES, MOE_DISPATCHERS, OFFLOAD, RECOMPUTE

FRAMEWORKS = ("megatron", "deepspeed", "torchtitan")


class Rule(NamedTuple):
    reason: str
    rejects: Callable[[Mapping[str, np.ndarray]], np.ndarray]
    message: str


def _partial_recompute(a):
    return (a["recompute"] == 2) & (a["recompute_layers"] != 0)


_TP_OVERLAP = Rule(
    "tp_comm_overlap",
    lambda a: a["tp_comm_overlap"] != 0,
    "no userbuffers TP-communication overlap (Megatron --tp-comm-overlap)",
)
_DEEPEP = Rule(
    "deepep",
    lambda a: a["moe_dispatcher"] != 0,
    "no DeepEP token dispatcher (Megatron-Core --moe-token-dispatcher-type flex)",
)
_FP8_DELAYED = Rule(
    "fp8_delayed",
    lambda a: a["fp8_recipe"] != 0,
    "no Transformer Engine delayed-scaling FP8 recipe (Megatron --fp8-recipe delayed)",
)
_ACT_OFFLOAD = Rule(
    "activation_offload",
    lambda a: a["act_offload_layers"] > 0,
    "no activation offload to host (Megatron-Core --cpu-offloading-num-layers)",
)
_ETP = Rule(
    "expert_tp",
    lambda a: (a["etp"] != 0) & (a["tp"] > 1),  # with TP 1 expert TP 1 is the default
    "no separate expert tensor-parallel degree (Megatron-Core --expert-tensor-parallel-size)",
)

RULES: dict[str, tuple[Rule, ...]] = {
    "megatron": (
        Rule(
            "param_offload",
            lambda a: a["offload"] >= 2,
            "Megatron-LM has no parameter offload (use --emit deepspeed)",
        ),
        Rule(
            "fsdp_with_pp",
            lambda a: (a["zero"] >= 2) & (a["pp"] > 1),
            "Megatron-FSDP (ZeRO-2/3) is not combined with pipeline parallelism here",
        ),
        Rule(
            "offload_without_zero",
            lambda a: (a["offload"] >= 1) & (a["zero"] < 1),
            "--optimizer-cpu-offload needs the distributed optimizer (ZeRO >= 1)",
        ),
    ),
    "deepspeed": (
        Rule(
            "partial_recompute_with_pp",
            lambda a: _partial_recompute(a) & (a["pp"] > 1),
            "the DeepSpeed pipeline engine has no partial (block) recompute",
        ),
        Rule(
            "zero_with_pp",
            lambda a: (a["zero"] >= 2) & (a["pp"] > 1),
            "ZeRO-2 and ZeRO-3 are incompatible with DeepSpeed pipeline parallelism",
        ),
        Rule(
            "param_offload_without_zero3",
            lambda a: (a["offload"] >= 2) & (a["zero"] < 3),
            "offload_param needs ZeRO stage 3",
        ),
        Rule(
            "offload_without_zero",
            lambda a: (a["offload"] == 1) & (a["zero"] < 1),
            "offload_optimizer needs ZeRO stage >= 1",
        ),
        Rule(
            "cp",
            lambda a: a["cp"] > 1,
            "context parallelism is not available (DeepSpeed-Ulysses is a different algorithm)",
        ),
        _TP_OVERLAP,
        Rule(
            "interleaved", lambda a: a["vpp"] > 1, "the DeepSpeed pipeline engine has no interleaved schedule"
        ),
        _ETP,
        _DEEPEP,
        _FP8_DELAYED,
        _ACT_OFFLOAD,
    ),
    "torchtitan": (
        Rule("zero1", lambda a: a["zero"] == 1, "FSDP2 has no optimizer-only sharding (ZeRO-1)"),
        _TP_OVERLAP,
        Rule(
            "zero2_with_pp",
            lambda a: (a["zero"] == 2) & (a["pp"] > 1),
            "under torchtitan's pipeline schedules FSDP2 reduces gradients on the last microbatch only, "
            "so ZeRO-2 gradients are not sharded while they accumulate",
        ),
        Rule(
            "partial_offload",
            lambda a: (a["offload"] >= 1) & ~((a["offload"] == 2) & (a["zero"] == 3)),
            "torchtitan CPU offload moves parameters, gradients and optimizer together (ZeRO-3 only)",
        ),
        Rule(
            "partial_recompute",
            _partial_recompute,
            "torchtitan full activation checkpointing covers every layer",
        ),
        _ETP,
        _DEEPEP,
        _FP8_DELAYED,
        _ACT_OFFLOAD,
    ),
}

_DEFAULTS = {
    "tp_comm_overlap": 0,
    "etp": 0,
    "recompute_layers": 0,
    "cp": 1,
    "vpp": 1,
    "tp": 1,
    "act_offload_layers": 0,
}
_KEYS = (
    "tp",
    "zero",
    "pp",
    "cp",
    "vpp",
    "offload",
    "recompute",
    "recompute_layers",
    "tp_comm_overlap",
    "etp",
    "moe_dispatcher",
    "fp8_recipe",
    "act_offload_layers",
)
_NAMES = {
    "offload": OFFLOAD,
    "recompute": RECOMPUTE,
    "moe_dispatcher": {n: i for i, n in enumerate(MOE_DISPATCHERS)},
    "fp8_recipe": {n: i for i, n in enumerate(FP8_RECIPES)},
}


#: Training precisions each launcher's files express, and why not the others. Megatron-LM: ``--bf16``,
#: ``--fp16``, ``--fp8-format`` (Transformer Engine). DeepSpeed's config has fp16/bf16 sections only;
#: FP8 GEMMs would need Megatron-DeepSpeed's Transformer Engine layers (``--transformer-impl
#: transformer_engine --fp8-hybrid``), which the files here do not write, and ``--bf16`` alone would
#: silently train another recipe. torchtitan: ``mixed_precision_param`` bfloat16 or float32; float8
#: is a model converter these files do not set.
DTYPE_LIMITS: dict[str, dict[str, str]] = {
    "deepspeed": {
        "fp8": "the DeepSpeed files here train in bf16 or fp16 (no FP8 recipe); use --dtype bf16 or --emit megatron"
    },
    "torchtitan": {
        "fp16": "torchtitan trains in bfloat16 or float32 (mixed_precision_param), not fp16",
        "fp8": "the torchtitan files here train in bfloat16 (no float8 converter); use --dtype bf16 or --emit megatron",
    },
}


def dtype_violation(framework: str, dtype: str) -> str | None:
    """Why ``framework``'s launch files cannot train in ``dtype`` (None: they can)."""
    return DTYPE_LIMITS.get(framework, {}).get(dtype)


def as_arrays(config: Mapping) -> dict[str, np.ndarray]:
    """The rule inputs of one configuration (names as in plans, or codes) as 1-element arrays."""
    out = {}
    for k in _KEYS:
        v = config.get(k, _DEFAULTS.get(k, 0))
        v = 0 if v is None else v
        if isinstance(v, str):
            v = _NAMES[k][v]
        out[k] = np.atleast_1d(np.asarray(v, dtype=np.int64))
    out["etp"] = np.where(out["etp"] == out["tp"], 0, out["etp"])  # a plan's expert TP degree; TP = default
    return out


def _inputs(a: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = np.asarray(a["zero"]).shape
    return {k: np.asarray(a[k]) if k in a else np.full(n, _DEFAULTS.get(k, 0)) for k in _KEYS}


def framework_mask(framework: str | tuple[str, ...] | None, a: Mapping[str, np.ndarray], layers: int = 0):
    """True where every framework of ``framework`` can launch the configuration (None: all True)."""
    n = np.asarray(a["tp"] if "tp" in a else a["zero"]).shape
    ok = np.ones(n, dtype=bool)
    if framework is None:
        return ok
    inputs = _inputs(a)
    for fw in (framework,) if isinstance(framework, str) else framework:
        for rule in RULES[fw]:
            ok &= ~rule.rejects(inputs)
    return ok


def violation(framework: str, config: Mapping) -> str | None:
    """The message of the first rule of ``framework`` that ``config`` breaks (None: none)."""
    a = as_arrays(config)
    return next((r.message for r in RULES[framework] if bool(r.rejects(a)[0])), None)


def launchable(cfg: Mapping) -> np.ndarray:
    """True where at least one built-in launcher can express the configuration."""
    a = {k: np.atleast_1d(np.asarray(v)) for k, v in cfg.items()}
    ok = np.zeros(np.asarray(a["zero"]).shape, dtype=bool)
    for fw in FRAMEWORKS:
        ok |= framework_mask(fw, a)
    return ok


def expresses(frameworks, config: Mapping, **changes) -> bool:
    """Whether every framework of ``frameworks`` (none: True) runs ``config`` with ``changes``
    (e.g. ``offload=1``) applied: the placement program's moves are asked this way."""
    a = as_arrays({**config, **changes})
    return all(bool(framework_mask(fw, a)[0]) for fw in frameworks)
