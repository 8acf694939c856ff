"""Measurement files that ``roofplan calibrate`` reads (the format is documented in docs/calibration.md).

Three sources are accepted, each turned into a list of :class:`Measurement`:

* **roofplan measurement CSV**: one row per measurement with a ``kind`` column:
  ``gemm`` (m, n, k, dtype), ``attention`` (batch, heads, kv_heads, head_dim, seq_len, kv_len, causal,
  direction, dtype) and ``collective`` (op, ranks, nodes, bytes), each with ``value`` and ``unit``
  (a time in s/ms/us, or a rate: TFLOP/s for operators, GB/s ``busbw``/``algbw`` for collectives).
  A file without a ``kind`` column gets the kind its header implies (m,n,k -> gemm; op,bytes ->
  collective; heads,head_dim,seq_len -> attention).
* **the shared published-measurements columns** (``roofplan/validation/published_measurements.csv``):
  rows of kinds train, serve_step, serve_throughput, op_gemm, op_allreduce; they are predicted by the
  validation suite's predictors.
* **nccl-tests output text** (``all_reduce_perf`` and friends), parsed row by row.

Operator rows are normalised to a measured time in seconds (a rate is converted with the same FLOP
or byte count the predictor uses, so the log residual is unchanged); end-to-end rows keep the value
in their own unit. Every malformed row raises :class:`InputError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from roofplan.costmodel.collectives import COLLECTIVES
from roofplan.costmodel.roofline import gemm_flops
from roofplan.engines.allreduce import STRATEGIES
from roofplan.errors import InputError
from roofplan.hardware.spec import DTYPE_BYTES
from roofplan.inputs import MAX_ROWS, is_file, open_limited, user_path

#: Kinds predicted by this package's own vectorised operator predictors.
OP_KINDS = ("gemm", "attention", "decode_attention", "moe", "linear_attention", "collective")
#: dtypes an operator row may name (GEMM classes of costmodel.ops plus the MoE weight formats).
OP_DTYPES = (*DTYPE_BYTES, "fp8_block", "mxfp4_wo", "int8_wo")
#: Collective implementations: NCCL's own choice, NCCL forced to NVLink SHARP, an engine's custom
#: all-reduce: ``custom`` (engine not named: the fastest of one-shot, two-shot and NCCL) or
#: ``custom_<engine>`` (that engine's dispatch rule, roofplan.engines.allreduce.STRATEGIES).
CUSTOM_IMPLS = ("custom", *(f"custom_{name}" for name in STRATEGIES if name != "generic"))
COLLECTIVE_IMPLS = ("nccl", "nvls", *CUSTOM_IMPLS)
#: Decode-attention kernel libraries: FlashAttention / FlashInfer decode (vLLM, SGLang) or
#: TensorRT-LLM's XQA / masked-MHA dispatch (costmodel.trtllm_decode) or its FlashMLA decode of MLA
#: latents (costmodel.mla_decode).
DECODE_IMPLS = ("flash", "trtllm", "trtllm_mla")
#: ``impl`` of a prefill ``attention`` row that names an engine's FlashAttention-3 call (vLLM's
#: FLASH_ATTN backend, SGLang's ``fa3``; costmodel.ops.prefill_attention_time ``kernels="flash"``),
#: reported as the family ``attention_<impl>``; any other label (none: TensorRT-LLM's attention op;
#: a published kernel's name, e.g. ``aiter_v3_asm``) is the family ``attention``.
ATTENTION_FLASH_IMPLS = ("vllm", "sglang")
#: The ``impl`` of a ``moe`` row is a free kernel label (default ``cutlass``, TensorRT-LLM's CUTLASS
#: grouped-GEMM MoE; the published AMD rows name theirs, e.g. ``aiter_ck_2stage``); this one means
#: TensorRT-LLM's NVFP4 min-latency MoE path (aiconfigurator's ``moe_torch_flow_min_latency`` rows:
#: measured only, not modelled; :func:`roofplan.costmodel.ops.moe_time` prices the CUTLASS sequence).
MOE_MIN_LATENCY = "min_latency"
#: ``impl`` labels of an engine's own fused MoE kernels: vLLM's Triton fused MoE (bf16 and FP8 block
#: scales) and the FlashInfer CUTLASS MoE vLLM runs for per-tensor FP8 checkpoints, priced by the cost
#: model's fused-MoE (stacked-GEMM) model, the one serving under vLLM and SGLang takes
#: (costmodel.serve ENGINE_MOE_KERNELS), and reported as their own families ``moe_<impl>``. The
#: FlashInfer rows are measured only: their time barely moves from 32 to 4096 tokens, which no GEMM
#: model of the stacked rows reproduces, so they are not fitted and show what the model misses.
#: SGLang's Triton fused MoE rows (``sglang``) are not fitted either: they check the model fitted
#: on vLLM's.
MOE_FUSED_IMPLS = ("vllm", "vllm_flashinfer", "sglang")
#: The kernels of a ``linear_attention`` row (a Gated DeltaNet layer, costmodel.linear_mixer): decode
#: ``conv_update`` (causal_conv1d_update) and ``recurrent_update`` (the fused recurrent gated delta
#: rule), prefill ``conv`` (causal_conv1d_fn) and ``chunk_scan`` (the chunked gated delta rule).
LINEAR_OPS = ("conv_update", "recurrent_update", "conv", "chunk_scan")
#: Width of the Gated DeltaNet causal conv (Qwen3-Next / Qwen3.5 ``linear_conv_kernel_dim``), which
#: a ``linear_attention`` row does not name.
LINEAR_CONV_KERNEL = 4
#: Kinds of the shared published-measurements format, predicted by ``roofplan.validation.suite``.
SUITE_KINDS = ("train", "serve_step", "serve_throughput", "serve_spec", "op_gemm", "op_allreduce")
KINDS = OP_KINDS + SUITE_KINDS

TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
SIZE_UNITS = {
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "K": 2**10,
    "M": 2**20,
    "G": 2**30,
}
#: Time columns accepted instead of ``value`` + ``unit`` on operator rows.
TIME_COLUMNS = {"time_s": "s", "time_ms": "ms", "time_us": "us"}

#: nccl-tests names (binary ``<name>_perf``, or the CSV ``op`` column) -> collective of the cost model.
OP_ALIASES = {
    "all_reduce": "all_reduce",
    "allreduce": "all_reduce",
    "all-reduce": "all_reduce",
    "all_gather": "all_gather",
    "allgather": "all_gather",
    "all-gather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "reducescatter": "reduce_scatter",
    "reduce-scatter": "reduce_scatter",
    "alltoall": "all_to_all",
    "all_to_all": "all_to_all",
    "all-to-all": "all_to_all",
    "sendrecv": "p2p",
    "send_recv": "p2p",
    "p2p": "p2p",
}

#: Ceiling (inclusive) of each numeric column; the floor is 1 for integer columns and
#: :data:`MIN_VALUE` for measured values. Beyond them no kernel or run exists (GEMM dims 2^24, a
#: sequence of 2^27 tokens, 2^20 ranks, 2^50 bytes = 1 PiB in one collective).
COLUMN_BOUNDS = {
    "m": 2**24,
    "n": 2**24,
    "k": 2**24,
    "batch": 2**20,
    "heads": 2**16,
    "kv_heads": 2**16,
    "head_dim": 2**16,
    "seq_len": 2**27,
    "kv_len": 2**27,
    "ranks": 2**20,
    "nodes": 2**20,
    "bytes": 2.0**50,
    "value": 1e15,
    "time_s": 1e6,
    "time_ms": 1e9,
    "time_us": 1e12,
    "tokens": 2**27,
    "hidden": 2**20,
    "moe_ffn": 2**24,
    "experts": 2**16,
    "topk": 2**16,
    "ep": 2**20,
    "tp": 2**20,
}
#: Smallest measured value (any unit): below it a ratio to a prediction is not a number.
MIN_VALUE = 1e-9
#: Longest line of a measurement file (a CSV row or an nccl-tests line is < 200 characters).
MAX_LINE = 2**16


def _bounded_lines(lines: Iterable[str], name: str) -> Iterable[str]:
    """``lines`` (read with a length limit), refusing one longer than :data:`MAX_LINE`."""
    for lineno, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE:
            raise InputError(
                f"{name} line {lineno}",
                f"{len(line):,}+ characters",
                f"lines of at most {MAX_LINE:,} characters",
            )
        yield line


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*$")


@dataclass(frozen=True)
class Measurement:
    """One measured value and everything needed to predict it.

    ``target`` is what the fit compares with a prediction: seconds for operator kinds, ``value`` in
    ``unit`` for the suite kinds. ``row`` keeps the raw columns (the suite predictors read them).
    """

    kind: str
    hardware: str  # catalog id or path; "" = the hardware being calibrated
    target: float
    metric: str
    value: float
    unit: str
    origin: str  # "file:line"
    row: dict = field(default_factory=dict, compare=False)
    id: str = ""

    @property
    def label(self) -> str:
        return self.id or self.origin


# -- small typed readers -----------------------------------------------------------------------------
def _where(origin: str, column: str) -> str:
    return f"{origin} {column}"


def parse_size(text: str, where: str) -> float:
    """Bytes from ``16777216``, ``16MiB`` or ``1.5 GB`` (nccl-tests ``-b/-e`` accept K/M/G = 2^10..)."""
    m = _SIZE.match(str(text or ""))
    if not m or (m.group(2) and m.group(2) not in SIZE_UNITS):
        raise InputError(
            where,
            text,
            "expected a byte count such as 16777216 or 16MiB (units " + ", ".join(SIZE_UNITS) + ")",
        )
    v = float(m.group(1)) * SIZE_UNITS.get(m.group(2) or "B", 1)
    if not 0 < v <= COLUMN_BOUNDS["bytes"]:
        raise InputError(
            where, text, f"expected a positive byte count of at most {COLUMN_BOUNDS['bytes']:.4g} (1 PiB)"
        )
    return v


def _positive(row: dict, col: str, origin: str, *, integer: bool = False, default=None) -> float:
    raw = (row.get(col) or "").strip()
    if not raw:
        if default is not None:
            return default
        raise InputError(_where(origin, col), raw, "a value is required for this kind of row")
    try:
        v = float(raw)
    except ValueError:
        raise InputError(_where(origin, col), raw, "expected a number") from None
    if not math.isfinite(v) or v <= 0 or (integer and v != int(v)):
        raise InputError(
            _where(origin, col), raw, "expected a positive " + ("integer" if integer else "number")
        )
    lo, hi = (1, COLUMN_BOUNDS.get(col, 2**31)) if integer else (MIN_VALUE, COLUMN_BOUNDS.get(col, 1e15))
    if not lo <= v <= hi:
        raise InputError(
            _where(origin, col), raw, f"expected a {'integer' if integer else 'number'} in [{lo:g}, {hi:g}]"
        )
    return v


def _choice(row: dict, col: str, origin: str, allowed, default: str) -> str:
    raw = (row.get(col) or "").strip()
    if not raw:
        return default
    v = raw.lower()
    if v not in allowed:
        raise InputError(_where(origin, col), raw, "expected one of " + ", ".join(allowed))
    return v


def _bool(row: dict, col: str, origin: str, default: bool) -> bool:
    v = _choice(
        row, col, origin, ("yes", "no", "true", "false", "1", "0", "y", "n"), "yes" if default else "no"
    )
    return v in ("yes", "true", "1", "y")


def _measured(row: dict, origin: str) -> tuple[float, str, str]:
    """(value, unit, metric) of an operator row: ``value``+``unit`` (+``metric``) or a time column."""
    for col, unit in TIME_COLUMNS.items():
        if (row.get(col) or "").strip():
            return _positive(row, col, origin), unit, "time"
    value = _positive(row, "value", origin)
    unit = (row.get("unit") or "").strip()
    metric = (row.get("metric") or "").strip().lower()
    if unit in TIME_UNITS:
        return value, unit, metric or "time"
    if not unit:
        raise InputError(_where(origin, "unit"), unit, "expected s, ms, us, TFLOP/s or GB/s")
    return value, unit, metric


# -- operator rows -------------------------------------------------------------------------------------
_DISTRIBUTION = re.compile(r"^(balanced|round_robin|power_law_\d+(\.\d+)?)$")


def _distribution(row: dict, origin: str) -> str:
    """Router load of a MoE row: ``balanced`` (default: independent uniform picks), ``round_robin``
    (aiconfigurator's balanced generator) or ``power_law_<alpha>`` (Zipf over experts); see
    :func:`roofplan.costmodel.ops.router_stats`."""
    raw = (row.get("distribution") or "").strip().lower() or "balanced"
    if not _DISTRIBUTION.match(raw) or (
        raw not in ("balanced", "round_robin") and not 0 < float(raw.removeprefix("power_law_")) <= 10
    ):
        raise InputError(
            _where(origin, "distribution"),
            raw,
            "expected balanced, round_robin or power_law_<alpha> (0 < alpha <= 10)",
        )
    return raw


def attention_flops(batch, heads, seq_len, kv_len, head_dim, causal, direction):
    """FLOPs of one attention call as FlashAttention's benchmarks count them
    (Dao-AILab/flash-attention ``benchmarks/benchmark_flash_attention.py``, ``flops()``): 4·b·h·s_q·s_kv·d
    for the two matmuls of the forward pass, halved when causal; backward 2.5x, forward+backward 3.5x."""
    f = 4.0 * batch * heads * seq_len * kv_len * head_dim
    if causal:
        f /= 2.0
    return f * {"fwd": 1.0, "bwd": 2.5, "fwd_bwd": 3.5}[direction]


def collective_bus_factor(op: str, ranks: float) -> float:
    """busbw / algbw of nccl-tests (``doc/PERFORMANCE.md``): 2(n-1)/n all-reduce, (n-1)/n
    all-gather / reduce-scatter / all-to-all, 1 for send/recv."""
    if op == "all_reduce":
        return 2.0 * (ranks - 1.0) / ranks
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (ranks - 1.0) / ranks
    return 1.0


_FLOP_RATES = {"TFLOP/s": 1e12, "TFLOPS": 1e12, "GFLOP/s": 1e9}
_BYTE_RATES = {"GB/s": 1e9}


def _gemm_row(row: dict, origin: str, unit: str, metric):
    """(fields, work, rate units, metric) of a ``gemm`` row: work in FLOPs."""
    m, n, k = (_positive(row, c, origin, integer=True) for c in ("m", "n", "k"))
    fields = dict(
        m=m,
        n=n,
        k=k,
        dtype=_choice(row, "dtype", origin, OP_DTYPES, "bf16"),
        impl=(row.get("impl") or "").strip().lower(),  # the engine whose GEMM it is (none: TensorRT-LLM's)
    )
    return fields, float(gemm_flops(m, n, k)), _FLOP_RATES, metric


def _attention_row(row: dict, origin: str, unit: str, metric):
    """(fields, work, rate units, metric) of a prefill ``attention`` row: work in FLOPs."""
    b = _positive(row, "batch", origin, integer=True, default=1.0)
    h = _positive(row, "heads", origin, integer=True)
    s = _positive(row, "seq_len", origin, integer=True)
    fields = dict(
        batch=b,
        heads=h,
        seq_len=s,
        head_dim=_positive(row, "head_dim", origin, integer=True),
        kv_heads=_positive(row, "kv_heads", origin, integer=True, default=h),
        kv_len=_positive(row, "kv_len", origin, integer=True, default=s),
        causal=_bool(row, "causal", origin, True),
        direction=_choice(row, "direction", origin, ("fwd", "bwd", "fwd_bwd"), "fwd"),
        dtype=_choice(row, "dtype", origin, OP_DTYPES, "bf16"),
        kv_dtype=_choice(row, "kv_dtype", origin, tuple(DTYPE_BYTES), "bf16"),
        impl=(row.get("impl") or "").strip().lower(),  # a kernel label (published rows name theirs)
    )
    work = attention_flops(
        b, h, s, fields["kv_len"], fields["head_dim"], fields["causal"], fields["direction"]
    )
    return fields, work, _FLOP_RATES, metric


def _decode_row(row: dict, origin: str, unit: str, metric):
    """(fields, work, rate units, metric) of a ``decode_attention`` row: work in KV bytes read."""
    h = _positive(row, "heads", origin, integer=True)
    f = dict(
        batch=_positive(row, "batch", origin, integer=True, default=1.0),
        heads=h,
        kv_heads=_positive(row, "kv_heads", origin, integer=True, default=h),
        head_dim=_positive(row, "head_dim", origin, integer=True),
        kv_len=_positive(row, "kv_len", origin, integer=True),
        seq_len=_positive(row, "seq_len", origin, integer=True, default=1.0),
        kv_dtype=_choice(row, "kv_dtype", origin, tuple(DTYPE_BYTES), "bf16"),
        impl=_choice(row, "impl", origin, DECODE_IMPLS, "flash"),
    )
    work = f["batch"] * f["kv_len"] * 2 * f["kv_heads"] * f["head_dim"] * DTYPE_BYTES[f["kv_dtype"]]
    return f, work, _BYTE_RATES, metric


def _moe_row(row: dict, origin: str, unit: str, metric):
    """(fields, work, rate units, metric) of a ``moe`` row: work in the experts' FLOPs."""
    f = dict(
        tokens=_positive(row, "tokens", origin, integer=True),
        hidden=_positive(row, "hidden", origin, integer=True),
        moe_ffn=_positive(row, "moe_ffn", origin, integer=True),
        experts=_positive(row, "experts", origin, integer=True),
        topk=_positive(row, "topk", origin, integer=True),
        ep=_positive(row, "ep", origin, integer=True, default=1.0),
        tp=_positive(row, "tp", origin, integer=True, default=1.0),
        dtype=_choice(row, "dtype", origin, OP_DTYPES, "bf16"),
        distribution=_distribution(row, origin),
        gated=_bool(row, "gated", origin, True),
        impl=(row.get("impl") or "").strip().lower() or "cutlass",
    )
    if f["topk"] > f["experts"] or f["experts"] % f["ep"]:
        raise InputError(
            _where(origin, "ep"), row.get("ep"), "expected ep dividing experts and topk <= experts"
        )
    work = 2.0 * f["tokens"] * f["topk"] * 3 * f["hidden"] * f["moe_ffn"] / f["tp"]
    return f, work, _FLOP_RATES, metric


def _linear_row(row: dict, origin: str, unit: str, metric):
    """(fields, work, rate units, metric) of a ``linear_attention`` row (a time: no rate unit). One
    Gated DeltaNet kernel of ``batch`` sequences of ``seq_len`` new tokens, ``heads`` value heads
    and ``kv_heads`` key heads of ``head_dim``, the recurrent state in ``dtype`` (fp32 default);
    ``impl`` the engine whose kernel it is (vllm default)."""
    h = _positive(row, "heads", origin, integer=True)
    f = dict(
        op=_choice(row, "op", origin, LINEAR_OPS, ""),
        batch=_positive(row, "batch", origin, integer=True, default=1.0),
        seq_len=_positive(row, "seq_len", origin, integer=True, default=1.0),
        heads=h,
        kv_heads=_positive(row, "kv_heads", origin, integer=True, default=h),
        head_dim=_positive(row, "head_dim", origin, integer=True),
        dtype=_choice(row, "dtype", origin, tuple(DTYPE_BYTES), "fp32"),
        impl=(row.get("impl") or "").strip().lower() or "vllm",
    )
    if not f["op"]:
        raise InputError(_where(origin, "op"), row.get("op"), "expected one of " + ", ".join(LINEAR_OPS))
    if f["op"] in ("conv_update", "recurrent_update") and f["seq_len"] != 1:
        raise InputError(
            _where(origin, "seq_len"), row.get("seq_len"), "1 for a decode kernel (one new token)"
        )
    return f, 0.0, {}, metric


def _collective_row(row: dict, origin: str, unit: str, metric):
    """(fields, work, rate units, metric) of a collective row (nccl-tests names accepted): work in
    bytes, times the bus factor when the value is a bus bandwidth."""
    raw_op = (row.get("op") or "").strip().lower().removesuffix("_perf")
    if raw_op not in OP_ALIASES:
        raise InputError(
            _where(origin, "op"),
            row.get("op"),
            "expected one of "
            + ", ".join(COLLECTIVES)
            + " (nccl-tests names allreduce, allgather, reducescatter, alltoall, sendrecv work too)",
        )
    op = OP_ALIASES[raw_op]
    ranks = _positive(row, "ranks", origin, integer=True)
    if ranks < 2:
        raise InputError(_where(origin, "ranks"), row.get("ranks"), "a collective needs at least 2 ranks")
    nodes = _positive(row, "nodes", origin, integer=True, default=0.0) or 0.0
    if nodes and (nodes > ranks or ranks % nodes):
        raise InputError(
            _where(origin, "nodes"), row.get("nodes"), f"expected a divisor of ranks={int(ranks)}"
        )
    nbytes = parse_size(row.get("bytes") or row.get("size") or "", _where(origin, "bytes"))
    impl = _choice(row, "impl", origin, COLLECTIVE_IMPLS, "nccl")
    if impl in CUSTOM_IMPLS and op != "all_reduce":
        raise InputError(
            _where(origin, "impl"), row.get("impl"), "a custom implementation exists for all_reduce only"
        )
    fields = dict(
        op=op,
        ranks=ranks,
        nodes=nodes,
        bytes=nbytes,
        impl=impl,
        dtype=_choice(row, "dtype", origin, tuple(DTYPE_BYTES), "bf16"),
    )
    work = nbytes
    if unit == "GB/s":
        metric = metric or "busbw"
        if metric not in ("busbw", "algbw"):
            raise InputError(_where(origin, "metric"), metric, "a GB/s value is busbw or algbw")
        if metric == "busbw":
            work = nbytes * collective_bus_factor(op, ranks)
    return fields, work, _BYTE_RATES, metric


#: The reader of each operator row kind (anything else is a collective).
_ROW_READERS = {
    "gemm": _gemm_row,
    "attention": _attention_row,
    "decode_attention": _decode_row,
    "moe": _moe_row,
    "linear_attention": _linear_row,
}


def _op_measurement(kind: str, row: dict, origin: str) -> Measurement:
    value, unit, metric = _measured(row, origin)
    fields, work, rate_units, metric = _ROW_READERS.get(kind, _collective_row)(row, origin, unit, metric)
    if unit in TIME_UNITS:
        if metric != "time":
            raise InputError(_where(origin, "metric"), metric, f"a value in {unit} is a time (metric 'time')")
        target = value * TIME_UNITS[unit]
    elif unit in rate_units:
        if kind == "decode_attention":
            metric = metric or "kv_read_bw"
        elif kind != "collective":
            metric = metric or "tflops"
            if metric != "tflops":
                raise InputError(
                    _where(origin, "metric"), metric, f"a value in {unit} is a rate (metric 'tflops')"
                )
        target = work / (value * rate_units[unit])
    else:
        raise InputError(
            _where(origin, "unit"), unit, "expected one of " + ", ".join([*TIME_UNITS, *rate_units])
        )
    return Measurement(
        kind=kind,
        hardware=(row.get("hardware") or "").strip(),
        target=target,
        metric=metric or "time",
        value=value,
        unit=unit,
        origin=origin,
        row=fields,
        id=(row.get("id") or "").strip(),
    )


def _suite_measurement(kind: str, row: dict, origin: str) -> Measurement:
    value = _positive(row, "value", origin)
    metric = (row.get("metric") or "").strip()
    if not metric:
        raise InputError(
            _where(origin, "metric"), metric, "end-to-end rows name their metric (see docs/calibration.md)"
        )
    return Measurement(
        kind=kind,
        hardware=(row.get("hardware") or "").strip(),
        target=value,
        metric=metric,
        value=value,
        unit=(row.get("unit") or "").strip(),
        origin=origin,
        row=dict(row),
        id=(row.get("id") or "").strip(),
    )


def _implied_kind(header: set[str]) -> str | None:
    if {"m", "n", "k"} <= header:
        return "gemm"
    if {"op", "bytes"} <= header or {"op", "size"} <= header:
        return "collective"
    if {"heads", "head_dim", "seq_len"} <= header:
        return "attention"
    return None


def read_csv_text(text: str, name: str) -> list[Measurement]:
    """Measurements of one CSV file (roofplan format or the published-measurements columns)."""
    return read_csv_lines(io.StringIO(text), name)


def _check_rows(count: int, name: str) -> None:
    if count > MAX_ROWS:
        raise InputError(
            name,
            f"more than {MAX_ROWS:,} measurement rows",
            f"at most {MAX_ROWS:,} rows per run (split the file or sample it)",
        )


def read_csv_lines(lines: Iterable[str], name: str) -> list[Measurement]:
    """Measurements of one CSV file given as lines, read one row at a time (no copy of the file)."""
    lines = iter(lines)
    first = next(lines, "").lstrip("\ufeff")  # spreadsheet exports start with a byte-order mark
    skipped = 0
    while first.lstrip().startswith("#"):  # a provenance preamble
        skipped += 1
        first = next(lines, "")
    lines = itertools.chain([first], lines)
    # comment lines become blank before the csv module sees them: blank lines are skipped in C
    reader = csv.DictReader("\n" if ln[:1] == "#" else ln for ln in lines)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    implied = None if "kind" in header else _implied_kind(set(header))
    if "kind" not in header and implied is None:
        raise InputError(
            f"{name} line 1 header",
            ",".join(header),
            "expected a 'kind' column, or gemm (m,n,k), collective (op,bytes) or attention "
            "(heads,head_dim,seq_len) columns; see docs/calibration.md",
        )
    out = []
    for row in reader:
        origin = f"{name} line {reader.line_num + skipped}"
        if (row.get(header[0]) or "").lstrip().startswith("#"):
            continue  # comment line
        if None in row:  # more cells than header columns
            raise InputError(
                origin, ",".join(row[None]), f"row has more cells than the {len(header)} header columns"
            )
        if not any((v or "").strip() for v in row.values()):
            continue  # blank line
        kind = implied or (row.get("kind") or "").strip()
        _check_rows(len(out) + 1, name)
        if kind not in KINDS:
            raise InputError(_where(origin, "kind"), kind, "expected one of " + ", ".join(KINDS))
        out.append(
            _op_measurement(kind, row, origin) if kind in OP_KINDS else _suite_measurement(kind, row, origin)
        )
    return out


# -- nccl-tests output ----------------------------------------------------------------------------------
_RANK = re.compile(r"^#\s*Rank\s+(\d+)\s+.*?\bon\s+(\S+)\s+device\s+(\d+)")
_TEST_NAME = re.compile(
    r"\b(all_reduce|all_gather|reduce_scatter|alltoall|sendrecv|broadcast|reduce|"
    r"gather|scatter|hypercube)_perf\b"
)


def looks_like_nccl_tests(text: str) -> bool:
    """nccl-tests prints '# nThread ...' first and a '#  size  count  type ... algbw busbw' header."""
    return (
        "algbw" in text
        and "busbw" in text
        and re.search(r"^#\s+size\s+count", text, re.MULTILINE) is not None
    )


def read_nccl_tests(text: str, name: str, **known) -> list[Measurement]:
    """Rows of an nccl-tests run (``all_reduce_perf -b 8 -e 8G -f 2 -g 8`` and friends).

    Columns come from the header line (``size count type redop root time algbw busbw #wrong`` twice:
    out-of-place, then in-place; older versions omit redop/root). The out-of-place time (us) is the
    measurement. The collective comes from ``op``, else the test name in the text (``all_reduce_perf``)
    or file name; ranks from ``ranks``, else the ``#  Rank`` lines; nodes from ``nodes``, else the
    distinct host names of the Rank lines. ``known`` are the keywords of :func:`read_nccl_lines`
    (``op``, ``ranks``, ``nodes``, ``hardware``).
    """
    return read_nccl_lines(io.StringIO(text), name, **known)


def read_nccl_lines(
    lines: Iterable[str],
    name: str,
    *,
    op: str | None = None,
    ranks: int | None = None,
    nodes: int | None = None,
    hardware: str = "",
) -> list[Measurement]:
    """:func:`read_nccl_tests` over lines, in one pass: result rows are kept as (line, size, time)
    cells until the whole output has named the collective and the ranks."""
    rank_hosts: dict[int, str] = {}
    header_cols: list[str] | None = None
    name_hint = None
    cells_of: list[tuple[int, list[str], str]] = []
    for lineno, line in enumerate(lines, start=1):
        if line.lstrip().startswith("#"):
            m = _RANK.match(line)
            if m and len(rank_hosts) <= COLUMN_BOUNDS["ranks"]:
                rank_hosts[int(m.group(1)[:8])] = m.group(2)[:256]
            if header_cols is None and re.match(r"^#\s+size\s+count", line):
                header_cols = line.lstrip("#").split()[:64]
        elif line.strip()[:1].isdigit():
            cells = line.split(None, 64)[:64]
            if cells[0].isdigit():
                cells_of.append((lineno, cells, line.strip()[:200]))
                _check_rows(len(cells_of), name)
        if name_hint is None and "_perf" in line:
            t = _TEST_NAME.search(line)
            if t:
                name_hint = t.group(1)
    if header_cols is None:
        raise InputError(
            f"{name} header", "", "expected nccl-tests output with a '#  size  count  type ...' header"
        )
    if op is None:
        hint = name_hint
        fname = Path(name).name.lower()
        for key in sorted(OP_ALIASES, key=len, reverse=True):  # longest first: all_reduce before reduce
            if hint is None and key in fname:
                hint = key
        if hint is None:
            raise InputError(
                f"{name} op", "", "cannot tell the collective; pass --op (" + ", ".join(COLLECTIVES) + ")"
            )
        op = hint
    op_key = op.lower().removesuffix("_perf")
    if op_key not in OP_ALIASES:
        raise InputError(
            "op", op, "expected one of " + ", ".join(COLLECTIVES) + " (broadcast/reduce are not modelled)"
        )
    op = OP_ALIASES[op_key]
    if ranks is None:
        if not rank_hosts:
            raise InputError(f"{name} ranks", "", "no '#  Rank' lines in the output; pass --ranks")
        ranks = len(rank_hosts)
    if nodes is None:
        nodes = len(set(rank_hosts.values())) if rank_hosts and len(rank_hosts) == ranks else 0
    try:
        i_size, i_time = header_cols.index("size"), header_cols.index("time")
    except ValueError:
        raise InputError(
            f"{name} header", " ".join(header_cols), "expected 'size' and 'time' columns"
        ) from None
    out = []
    for lineno, cells, line in cells_of:  # free text printed by NCCL ("NCCL INFO ...") was skipped
        origin = f"{name} line {lineno}"
        if len(cells) <= i_time:
            raise InputError(origin, line, f"expected {len(header_cols)} columns like the header")
        row = {
            "kind": "collective",
            "op": op,
            "ranks": str(ranks),
            "nodes": str(nodes or ""),
            "bytes": cells[i_size],
            "time_us": cells[i_time],
            "hardware": hardware,
            "id": f"{Path(name).name}:{op}:{cells[i_size]}B",
        }
        out.append(_op_measurement("collective", row, origin))
    if not out:
        raise InputError(f"{name}", "", "no result rows found in the nccl-tests output")
    return out


# -- entry point ----------------------------------------------------------------------------------------
def read_measurements(
    paths, *, op: str | None = None, ranks: int | None = None, nodes: int | None = None
) -> list[Measurement]:
    """Every measurement in ``paths`` (a path or a list of paths), CSV or nccl-tests text."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Measurement] = []
    for p in paths:
        path = user_path(p, "measurements")
        if not is_file(path):
            raise InputError("measurements", str(p), "expected an existing CSV or nccl-tests output file")
        try:
            with open_limited(path, "measurements", "measurements") as f:
                head = f.read(2**20)  # the nccl-tests header comes after at most a few thousand Rank lines
                head += f.readline(MAX_LINE)
                lines = _bounded_lines(
                    itertools.chain(io.StringIO(head), iter(lambda: f.readline(MAX_LINE + 1), "")), str(p)
                )
                if looks_like_nccl_tests(head):
                    out.extend(read_nccl_lines(lines, str(p), op=op, ranks=ranks, nodes=nodes))
                else:
                    out.extend(read_csv_lines(lines, str(p)))
        except UnicodeDecodeError:
            raise InputError(
                "measurements", str(p), "expected a text file (CSV or nccl-tests output)"
            ) from None
        except csv.Error as exc:
            raise InputError("measurements", str(p), f"expected a well-formed CSV file ({exc})") from None
        _check_rows(len(out), "measurements")
    return out
