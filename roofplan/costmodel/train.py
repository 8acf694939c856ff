"""Training cost model: the public names the planners and the CLI use (docs/contracts).

One training step of a decoder-only transformer under Megatron-style TP x CP x EP x DP x PP,
vectorised over N configurations (struct of arrays). The model is split by concern:

* :mod:`~roofplan.costmodel.train_configs` -- :class:`TrainConfigs` and the framework validity
  rules (:func:`check_train_config`, :data:`REJECT_REASONS`);
* :mod:`~roofplan.costmodel.train_shapes` -- per-model constants, computed once and cached;
* :mod:`~roofplan.costmodel.train_memory` -- weights, gradients, optimizer and activation bytes
  (ZeRO, Korthikanti et al. 2022, Megatron's theoretical memory formulas);
* :mod:`~roofplan.costmodel.train_time` -- :func:`train_step`: rooflines of every op, collectives,
  pipeline bubble, overlaps, optimizer and offload -> :class:`TrainArrays`;
* :mod:`~roofplan.costmodel.train_estimate` -- :func:`estimate_training` for one validated
  configuration and its docs/SPEC.md §3.1 JSON document (:class:`TrainEstimate`).
"""

from __future__ import annotations

from roofplan.costmodel.train_configs import (
    OFFLOAD,
    RECOMPUTE,
    REJECT_REASONS,
    TrainConfigs,
    check_train_config,
)
from roofplan.costmodel.train_estimate import TRAIN_DTYPES, TrainEstimate, estimate_training
from roofplan.costmodel.train_time import TrainArrays, train_step

__all__ = [
    "OFFLOAD",
    "RECOMPUTE",
    "REJECT_REASONS",
    "TRAIN_DTYPES",
    "TrainArrays",
    "TrainConfigs",
    "TrainEstimate",
    "check_train_config",
    "estimate_training",
    "train_step",
]
