"""The typed engine profile and the checks of its fields (pure: no file reads).

The fields, their meaning and their bounds are declared here once; the YAML profiles
(:mod:`roofplan.engines.catalog`) and the ``engines:`` block of calibration overlays
(:mod:`roofplan.hardware.overlay`) are both checked through :func:`check_engine_fields` /
:meth:`EngineProfile.replace`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from roofplan.engines.allreduce import STRATEGIES, AllReduceStrategy
from roofplan.errors import InputError, unknown_key

#: Engine profiles shipped with roofplan (``roofplan/catalogs/engines/<name>.yaml``).
ENGINES = ("generic", "vllm", "sglang", "trtllm")


@dataclass(frozen=True)
class EngineProfile:
    """Fixed costs and memory policy of one serving engine (all times in seconds).

    * ``cuda_graphs``: iterations replay captured CUDA graphs, so the host does not dispatch kernels
      one by one (vLLM/SGLang default; TRT-LLM ``cuda_graph_config``).
    * ``kernels_per_layer``: kernels one decoder layer launches (fused engines ~10, eager
      PyTorch ~30+ because norms, RoPE and activations are several ops each).
    * ``host_op_s``: host time to dispatch one kernel when not graphed (framework dispatch plus
      the driver launch); ``None`` uses the device's ``Efficiency.kernel_launch_s``.
    * ``kernel_gap_s``: GPU idle time between two consecutive kernels beyond what the operator
      library's per-kernel floors already hold (they were measured back to back under CUDA graphs,
      so the built-in engines set 0).
    * ``step_overhead_s``: per-iteration host work that does not overlap the GPU (scheduling,
      sampling, detokenisation, input preparation).
    * ``host_seq_s``: host time per request an iteration runs, in series with the GPU like
      ``step_overhead_s`` (per-sequence Python work of vLLM's V0 engine: sequence groups, block
      tables, sampler output processing); 0 where not characterised (the V1-era engines' per-step
      host time shows no per-request growth on the suite's rows).
    * ``request_overhead_s``: per-request time on the TTFT path outside the GPU iterations, in the
      engine's API server: the HTTP request, chat template and tokenisation, the hand-off to the
      engine core and admission, and the first detokenised chunk streamed back. Paid once per
      request by a client of the OpenAI-compatible server (TTFT and latency), not by the GPU.
    * ``api_output_s``: API-server time per running request per engine step: detokenising its new
      tokens and streaming its chunk, done for every running request in one process (vLLM V1's
      ``AsyncLLM`` output handler, then each request's SSE generator, on one asyncio loop). A first
      token waits for that pass (``serve_load.frontend_wait``); 0: not characterised.
    * ``custom_allreduce``: the engine runs its own all-reduce inside a node for messages up to
      ``custom_allreduce_max_bytes`` (priced by ``ops.custom_allreduce_time`` with the device's
      ``custom_ar_*`` parameters); False: NCCL (collectives.py).
    * ``allreduce_strategy``: the dispatch rule of that all-reduce, a name in
      :data:`roofplan.engines.allreduce.STRATEGIES` (which of one-shot, two-shot, in-switch
      multimem and NCCL it runs by message and group size; ``generic``: the fastest).
    * ``flash_attention``: prefill attention is fused (scores never reach HBM, Dao et al. 2022);
      False materialises the score matrix (eager attention).
    * ``gqa_kv_shared``: decode attention reads each KV head once for its whole query group
      (FlashAttention/FlashInfer decode, TRT-LLM XQA); False re-reads it per query head (one
      thread block per (sequence, query head), vLLM PagedAttention v1/v2, TRT-LLM <= 0.6 MMHA).
    * ``memory_reserve_fraction``: fraction of HBM the engine leaves unused (vLLM
      ``gpu_memory_utilization`` 0.9 -> 0.1). With ``reserve_of_free`` the fraction applies to the
      memory left after the weights (TRT-LLM ``free_gpu_memory_fraction``).
    * ``max_num_batched_tokens``: token budget of one iteration (chunked prefill); sizes the
      activation workspace the engine reserves. ``None``: the whole prefill of the batch.
    * ``runtime_reserve_bytes``: device memory the engine's runtime holds before it sizes the KV
      cache (CUDA context, cuBLAS/NCCL workspaces, sampler/decoder buffers).
    * ``max_num_seqs``: most requests one iteration runs (vLLM ``--max-num-seqs``, SGLang
      ``--max-running-requests``, TRT-LLM ``max_batch_size``); ``None``: only memory limits it.
    * ``rocm_triton_attention``: on an AMD device the engine runs vLLM V1's Triton unified attention
      (``TRITON_ATTN``, vllm/v1/attention/backends/triton_attn.py), its ROCm default from V1 until
      0.19 whenever AITER is off (``VLLM_ROCM_USE_AITER`` unset, as in the rocm/vllm images); its
      decode KV stream is priced with the device's ``triton_decode_hbm`` (0 on a device that does
      not characterise it: the device's generic ``decode_hbm``). False: the engine's other kernels.
    * ``async_scheduling``: the engine schedules iteration n+1 while the GPU runs iteration n, so
      ``step_overhead_s`` costs an iteration only where it exceeds the GPU's time (vLLM
      ``--async-scheduling``, on by default from v0.14: ``VllmConfig.__post_init__`` enables it
      unless speculative decoding other than EAGLE/MTP or an executor without support rules it
      out). False: the host work runs between iterations, in series with the GPU.
    * ``linear_state_bytes``: bytes per element of a linear mixer's recurrent state (Gated
      DeltaNet / Mamba-2 layers), which every request holds whatever its length: 4 (fp32, the
      ``mamba_ssm_dtype`` of the Qwen3.5 and Nemotron-H configs and both engines' default), 2 with
      SGLang ``--mamba-ssm-dtype bfloat16`` or vLLM ``--mamba-ssm-cache-dtype bfloat16``.
    """

    name: str
    description: str = ""
    cuda_graphs: bool = False
    kernels_per_layer: float = 12.0
    host_op_s: float | None = None
    kernel_gap_s: float = 2e-6
    step_overhead_s: float = 1e-3
    host_seq_s: float = 0.0
    request_overhead_s: float = 0.0
    api_output_s: float = 0.0
    custom_allreduce: bool = False
    custom_allreduce_max_bytes: float = 8 * 2**20
    allreduce_strategy: str = "generic"
    flash_attention: bool = True
    gqa_kv_shared: bool = True
    memory_reserve_fraction: float = 0.1
    reserve_of_free: bool = False
    max_num_batched_tokens: int | None = None
    runtime_reserve_bytes: float = 0.0
    max_num_seqs: int | None = None
    linear_state_bytes: float = 4.0
    rocm_triton_attention: bool = False
    async_scheduling: bool = False
    source: str = ""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @property
    def allreduce(self) -> AllReduceStrategy:
        """The dispatch rule of the engine's custom all-reduce."""
        return STRATEGIES[self.allreduce_strategy]

    def replace(self, **changes) -> EngineProfile:
        """A copy with some fields replaced (calibration overlays, engine-version tables)."""
        bad = sorted(set(changes) - set(self.field_names()))
        if bad:
            raise InputError(f"engine {self.name} field", bad[0], "allowed: " + ", ".join(self.field_names()))
        return dataclasses.replace(self, **{k: _coerce(k, v) for k, v in changes.items()})


_BOOL = {
    "cuda_graphs",
    "flash_attention",
    "gqa_kv_shared",
    "reserve_of_free",
    "custom_allreduce",
    "rocm_triton_attention",
    "async_scheduling",
}
#: Ceiling (inclusive) of each numeric field; the floor is 0 (fractions: see _coerce). Engines'
#: fixed costs are microseconds to milliseconds (vLLM ~4 ms per step, launch gaps ~2 us): 10 s per
#: kernel or per step is no engine; sizes up to 2^40 bytes (the largest device memory allowed).
ENGINE_BOUNDS: dict[str, float] = {
    "kernels_per_layer": 1e4,
    "host_op_s": 10.0,
    "kernel_gap_s": 10.0,
    "step_overhead_s": 10.0,
    "host_seq_s": 1.0,
    "request_overhead_s": 10.0,
    "api_output_s": 1.0,
    "custom_allreduce_max_bytes": 2.0**40,
    "memory_reserve_fraction": 1.0,
    "max_num_batched_tokens": 2**31 - 1,
    "runtime_reserve_bytes": 2.0**40,
    "max_num_seqs": 2**20,
    "linear_state_bytes": 8.0,
}
_STR = {"name", "description", "source"}
_OPTIONAL = {"host_op_s", "max_num_batched_tokens", "max_num_seqs"}


def _coerce(name: str, value):
    """Type-check one profile field (YAML and overlays are user input: exit 2 on nonsense)."""
    if name in _STR:
        return "" if value is None else str(value)
    if name == "allreduce_strategy":
        if value not in STRATEGIES:
            raise InputError(f"engine.{name}", value, "one of " + ", ".join(STRATEGIES))
        return value
    if name in _BOOL:
        if not isinstance(value, bool):
            raise InputError(f"engine.{name}", value, "true or false")
        return value
    if value is None and name in _OPTIONAL:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"engine.{name}", value, "a number" + (" or null" if name in _OPTIONAL else ""))
    ceiling = ENGINE_BOUNDS.get(name, math.inf)
    if not math.isfinite(value) or not 0 <= value <= ceiling:
        raise InputError(f"engine.{name}", value, f"a number in [0, {ceiling:g}]")
    if name == "memory_reserve_fraction" and value >= 1:
        raise InputError(f"engine.{name}", value, "a fraction in [0, 1)")
    if name in ("max_num_batched_tokens", "max_num_seqs"):
        return int(value)
        raise InputError(f"engine.{name}", value, "a fraction in (0, 1]")
    if name == "linear_state_bytes" and value not in (1, 2, 4, 8):
        raise InputError(f"engine.{name}", value, "1, 2, 4 or 8 (bytes per element: fp8, bf16, fp32, fp64)")
    return float(value)


def check_engine_fields(block: object, where: str) -> dict:
    """An overlay's ``engines.<name>`` block with every field checked (name, type, range), so a
    mistake is reported whichever engine the command uses; InputError names ``where.field``."""
    if not isinstance(block, dict):
        raise InputError(where, block, "a mapping of engine profile fields")
    names = [n for n in EngineProfile.field_names() if n != "name"]
    out = {}
    for key, value in block.items():
        if key not in names:
            raise unknown_key(f"{where}.{key}", "unknown field", key, names, "allowed: ")
        try:
            out[key] = _coerce(key, value)
        except InputError as exc:
            raise InputError(f"{where}.{key}", value, exc.allowed) from None
    return out
