"""Predictors for operator microbenchmark rows: one GEMM (``op_gemm``) and one all-reduce
(``op_allreduce``). They check the two primitives every step model is built from."""

from __future__ import annotations

import re

from roofplan import resolve
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.ops import gemm_time
from roofplan.validation.cases import Case, predictor

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|KB|MB|GB|B)$")
_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def message_bytes(metric: str) -> float:
    """Bytes of the message named at the end of a metric such as ``allreduce_ms_16MiB``."""
    m = _SIZE.search(metric)
    if not m:
        raise ValueError(f"metric {metric!r} does not end with a message size")
    return float(m.group(1)) * _UNITS[m.group(2)]


@predictor("op_gemm")
def predict_gemm(case: Case, calibration=None) -> float:
    """Gate+up projection of a gated MLP (Vidur's ``mlp_up_proj``): tokens x hidden @ hidden x 2·ffn."""
    model = resolve.model(case.str("model"))
    hw = resolve.hardware(case.str("hardware"), calibration)
    dtype = case.str("dtype", "bf16")
    tp = case.int("tp", 1)
    tokens = case.int("isl")
    n = (2 if model.gated_mlp else 1) * model.ffn // tp
    t = gemm_time(tokens, n, model.hidden, hw, dtype=dtype)
    return float(t) * 1e3


@predictor("op_allreduce")
def predict_allreduce(case: Case, calibration=None) -> float:
    """NCCL all-reduce of the message size named in the metric over ``gpus`` ranks."""
    hw = resolve.hardware(case.str("hardware"), calibration)
    t = collective_time("all_reduce", message_bytes(case.metric), case.int("gpus"), hw)
    return float(t) * 1e3
