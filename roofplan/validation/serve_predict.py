"""Predictors for serving rows: one prefill or decode step (``serve_step``) and static-batch
throughput (``serve_throughput``).

Every row names the engine it was measured with. :data:`ENGINE_MAP` is the one table that maps
those strings to a roofplan engine profile plus the documented features of that engine *version*
(not fitted per case): what the release lacked compared with today's profile.

``serve_step`` rows give tp, batch and isl. ``prefill_ms`` is the prefill of ``batch`` prompts of
``isl`` tokens (the TTFT of the static batch); ``decode_step_ms`` is one decode step of ``batch``
requests at context ``isl`` (the profiles tabulate the step at the given context).

``serve_throughput`` rows: B = ``batch`` requests of ``isl`` then ``osl`` tokens (static batch,
TensorRT-LLM ``gptSessionBenchmark``), throughput = B·osl / latency. Two A100 rows of the
TensorRT-LLM v0.6.1 table carry the header "Throughput (out tok/s)" while the H100 table says
"out tok/s/GPU". We read them (and the other A100 rows of that table appended to the suite)
**per GPU**: the same document, benchmark and methodology produced both tables; read as
per-instance totals, the Llama-70B TP4 row would mean a 1280-request static batch taking 245 s,
four times slower than the per-GPU reading and far above what the A100's FLOPs and bandwidth need
for that batch, and the Llama-7B TP2 row (782) would be half of what the single-GPU Llama-7B rows
imply per GPU. Under the per-GPU reading the multi-GPU rows agree with the single-GPU rows (where
both readings coincide) to within the model's usual error.

Max-throughput rows (no ``batch``; TensorRT-LLM perf-overview, ``trtllm-bench throughput``): every
request is queued at t = 0 and the in-flight batcher runs as many as its KV cache admits. The
engine picks that batch, so the row cannot state it; it is predicted rather than fitted: the
largest batch whose KV cache for isl + osl tokens per request fits under the benchmark's memory
settings (``kv_cache_free_gpu_mem_fraction`` 0.95 of the memory left after the weights and the
runtime, batch capped at 4096 by trtllm-bench's tuning), see :func:`engine_batch`. These tables
report the instance's total output tokens/s (``output_tokens_per_s_total``).
"""

from __future__ import annotations

import dataclasses

from roofplan import resolve
from roofplan.costmodel.serve import ServeConfigs, max_batch, serve_step, step_time
from roofplan.validation.cases import Case, predictor

#: vLLM v0.17.1 + guidellm per-request API-server seconds (tools/fit_request_overhead.py, FIT_ROWS:
#: the 1 req/s median TTFT) and API-server seconds per running request per engine step
#: (OUTPUT_FIT_ROWS: the 8 req/s bf16 median TTFT); the 4 req/s and FP8 8 req/s rows are held back.
VLLM_017_REQUEST_OVERHEAD_S = 6.158e-3
VLLM_017_API_OUTPUT_S = 4.383e-4

#: CSV ``engine`` string -> (profile, version features that differ from the profile, kv dtype rule).
#: ``fp8_kv``: the benchmark built the engine with an FP8 KV cache whenever weights were FP8.
ENGINE_MAP: dict[str, tuple[str, dict, bool]] = {
    # Splitwise (Patel et al., ISCA 2024) profiled vLLM of 2023 (v0.1/0.2): eager PyTorch without
    # CUDA graphs (added in vLLM 0.2.2), PagedAttention v1/v2 decode with one thread block per
    # query head (KV re-read per head of a GQA group), xformers fused prefill attention.
    "splitwise-profile": ("vllm", {"cuda_graphs": False, "gqa_kv_shared": False}, False),
    # TensorRT-LLM v0.6.1 docs/source/performance.md: gptSessionBenchmark without --enable_cuda_graph;
    # masked MHA decode kernel before XQA (XQA for GQA/MQA arrived in 0.7.0); engines built with
    # --enable_fp8 --fp8_kv_cache on H100.
    "trtllm-0.6.1": ("trtllm", {"cuda_graphs": False, "gqa_kv_shared": False}, True),
    "trtllm-0.5": ("trtllm", {"cuda_graphs": False, "gqa_kv_shared": False}, True),
    # TensorRT-LLM v0.17 docs/source/performance/perf-overview.md: ``trtllm-bench build
    # --quantization FP8 --dataset`` (the KV cache is FP8 as well, per that page's note) then
    # ``trtllm-bench throughput`` with ``--kv_cache_free_gpu_mem_fraction 0.95`` "in majority of
    # cases"; tensorrt_llm/bench/build/tuning.py caps the batch at 4096 requests.
    "trtllm-0.17-bench": ("trtllm", {"memory_reserve_fraction": 0.05, "max_num_seqs": 4096}, True),
    # TensorRT-LLM 1.0 perf-overview.md: the same trtllm-bench throughput method on the PyTorch
    # backend (no engine build; CUDA graphs with padding up to batch 8192; ModelOpt FP8
    # checkpoints, whose FP8 KV cache the backend takes from hf_quant_config.json).
    "trtllm-1.0-bench": ("trtllm", {"memory_reserve_fraction": 0.05, "max_num_seqs": 4096}, True),
    # FasterTransformer (TRT-LLM's predecessor): C++ runtime with fused kernels, no CUDA graphs.
    "fastertransformer": ("trtllm", {"cuda_graphs": False}, False),
    # Vidur profiles vLLM operators (op rows only).
    "vidur-profile": ("vllm", {}, False),
    "vllm": ("vllm", {}, False),
    # vLLM >= 0.10 with --async-scheduling: the scheduler prepares step n+1 while the GPU runs step
    # n (vLLM docs, "Asynchronous scheduling"), so the per-step host work is hidden behind any step
    # longer than it (the profile's step_overhead_s, 1.5 ms, against 5-10 ms decode steps).
    "vllm-async": ("vllm", {"step_overhead_s": 0.0}, False),
    # vLLM v0.17.1 behind guidellm (the gpustack H200 performance-lab rows): its per-request API
    # time and its per-running-request output pass (serve_load.frontend_wait), fitted by
    # tools/fit_request_overhead.py on the 1 and 8 req/s median TTFTs (the 4 req/s and FP8 rows
    # are held back); the profile's 48.7 ms is vLLM v0.11 behind ``vllm bench serve``.
    "vllm-0.17": (
        "vllm",
        {"request_overhead_s": VLLM_017_REQUEST_OVERHEAD_S, "api_output_s": VLLM_017_API_OUTPUT_S},
        False,
    ),
    # vLLM v0.11.1 (ROCm image rocm/vllm:rocm7.0.0_vllm_0.11.1_20251103) driven offline by
    # ``vllm bench throughput`` (the AMD performance-results rows; ROCm/MAD scripts/vllm): prompts go
    # straight to the LLM engine, no API server, so none of the profile's per-request API time
    # (48.7 ms, vLLM v0.11 behind ``vllm bench serve``); MAD's float8 runs pass --kv-cache-dtype
    # fp8 (scripts/vllm/vllm_benchmark_report.sh DTYPE), the -FP8-KV checkpoints carry KV scales.
    "vllm-0.11-offline": ("vllm", {"request_overhead_s": 0.0}, True),
    # SambaFlow on SN40L (LLM-Inference-Bench rows): the generic profile without the GPU engines'
    # per-step host work: SambaFlow turns consecutive calls of the fused decoder kernel into one
    # call with a pipelined outer loop (SambaNova SN40L DAC 2025 talk), so no per-step host
    # scheduling is published or modelled (0); the batch-1 rows bound it below ~0.2 ms per step.
    "sambaflow": ("generic", {"step_overhead_s": 0.0}, False),
    "sglang": ("sglang", {}, False),
    "trtllm": ("trtllm", {}, False),
    "generic": ("generic", {}, False),
}


#: Server flags a row's note may state as ``key=value`` and the engine-profile field each sets:
#: SGLang ``--mem-fraction-static F`` and vLLM ``--gpu-memory-utilization F`` leave 1 - F of the
#: device memory out of the weights + KV pool; ``--max-num-seqs`` / ``--max-running-requests`` cap
#: the running batch; ``--max-num-batched-tokens`` / ``--chunked-prefill-size`` is the token budget;
#: SGLang ``--mamba-ssm-dtype`` / vLLM ``--mamba-ssm-cache-dtype`` the linear mixers' state dtype.
_STATE_BYTES = {"bfloat16": 2.0, "bf16": 2.0, "float16": 2.0, "fp16": 2.0, "float32": 4.0, "fp32": 4.0}
NOTE_ENGINE_ARGS = {
    "mem_fraction_static": ("memory_reserve_fraction", lambda v: 1.0 - float(v)),
    "gpu_memory_utilization": ("memory_reserve_fraction", lambda v: 1.0 - float(v)),
    "max_num_seqs": ("max_num_seqs", int),
    "max_running_requests": ("max_num_seqs", int),
    "max_num_batched_tokens": ("max_num_batched_tokens", int),
    "chunked_prefill_size": ("max_num_batched_tokens", int),
    "mamba_ssm_dtype": ("linear_state_bytes", lambda v: _STATE_BYTES[v]),
    "mamba_ssm_cache_dtype": ("linear_state_bytes", lambda v: _STATE_BYTES[v]),
}


def note_engine_args(case: Case) -> dict:
    """Engine-profile changes for the server flags the row's note states (:data:`NOTE_ENGINE_ARGS`)."""
    import re

    out = {}
    for key, (field, conv) in NOTE_ENGINE_ARGS.items():
        m = re.search(rf"\b{key}=([0-9.]+|[a-z]+[0-9]+)", case.str("note"))
        if m:
            out[field] = conv(m.group(1))
    return out


def engine_for(case: Case, calibration=None):
    """(engine profile, kv dtype) for a row's engine string (unknown strings: the generic profile),
    with the server flags its note states (:func:`note_engine_args`)."""
    name, changes, fp8_kv = ENGINE_MAP.get(case.str("engine"), ("generic", {}, False))
    profile = resolve.engine(name, calibration).replace(**{**changes, **note_engine_args(case)})
    dtype = case.str("dtype", "bf16")
    kv = "fp8" if (fp8_kv and dtype in ("fp8", "fp4")) else None  # NVFP4 checkpoints keep an FP8 KV cache
    return profile, kv


def _setup(case: Case, calibration):
    model = resolve.model(case.str("model"))
    hw = resolve.hardware(case.str("hardware"), calibration)
    engine, kv = engine_for(case, calibration)
    cfg = ServeConfigs.single(
        tp=case.int("tp", 1),
        pp=case.int("pp", 1),
        ep=1,
        dp=1,
        batch=case.int("batch", 1),
        isl=case.int("isl", 1),
        osl=case.int("osl", 1) or 1,
        dtype=case.str("dtype", "bf16"),
        kv_dtype=kv,
        engine=engine.name,
    )
    return model, hw, engine, cfg


@predictor("serve_step")
def predict_serve_step(case: Case, calibration=None) -> float:
    """``prefill_ms``: TTFT of ``batch`` prompts of ``isl`` tokens; ``decode_step_ms``: one decode
    step of ``batch`` requests at context ``isl``."""
    model, hw, engine, cfg = _setup(case, calibration)
    metric = case.metric
    if metric == "prefill_ms":
        return float(serve_step(model, hw, cfg, engine).ttft_s[0]) * 1e3
    if metric in ("decode_step_ms", "tpot_ms"):
        return float(step_time(model, hw, engine, cfg, 0.0, 0.0, cfg.batch, cfg.isl)[0]) * 1e3
    raise ValueError(f"serve_step metric {metric!r} not supported (prefill_ms, decode_step_ms, tpot_ms)")


def engine_batch(model, hw, engine, cfg) -> ServeConfigs:
    """``cfg`` at the batch a max-throughput benchmark reaches: every request is queued at once,
    so the in-flight batcher keeps as many requests running as its KV cache admits, each holding
    blocks for isl + osl tokens (TRT-LLM ``GUARANTEED_NO_EVICT``, vLLM/SGLang admission by
    free blocks), up to the engine's ``max_num_seqs``: ``serve_memory(...).max_batch``. With
    identical requests that all arrive at t = 0 the running set starts and finishes together, so
    the steady state is the static batch of :func:`serve_step` at that batch."""
    b = int(max_batch(model, hw, cfg, engine)[0])
    return dataclasses.replace(cfg, batch=max(b, 1))


@predictor("serve_throughput")
def predict_serve_throughput(case: Case, calibration=None) -> float:
    """Static batch throughput, B·osl / (TTFT + (osl-1)·TPOT), per GPU (see module docstring for the
    two rows whose header says tok/s), the instance total, or the batch's end-to-end ``latency_s``.
    A row without a ``batch`` is a max-throughput benchmark (trtllm-bench ``throughput``): the
    batch is the one the engine reaches (:func:`engine_batch`)."""
    model, hw, engine, cfg = _setup(case, calibration)
    if case.int("batch") is None:
        cfg = engine_batch(model, hw, engine, cfg)
    a = serve_step(model, hw, cfg, engine)
    if case.metric in ("output_tokens_per_s_per_gpu", "output_tokens_per_s"):
        return float(a.output_tokens_per_s_per_gpu[0])
    if case.metric == "output_tokens_per_s_total":
        return float(a.output_tokens_per_s[0])
    if case.metric == "latency_s":  # end-to-end time of the static batch (LLM-Inference-Bench "Latency")
        return float(a.latency_s[0])
    raise ValueError(f"serve_throughput metric {case.metric!r} not supported")


def _spec_of(case: Case):
    """``serve_spec`` rows name their speculative-decoding setting in the note as
    ``spec=METHOD,k=K`` (acceptance: the method's published default, SPEC_DEFAULTS, since the
    sources do not state it)."""
    import re

    from roofplan.costmodel.serve_features import SpecDecode

    match = re.search(r"spec=(\w+),k=(\d+)", case.str("note"))
    if not match:
        raise ValueError(f"serve_spec row {case.id} has no 'spec=METHOD,k=K' in its note")
    return SpecDecode.of(match.group(1), int(match.group(2)))


@predictor("serve_spec")
def predict_serve_spec(case: Case, calibration=None) -> float:
    """Speed-up of speculative decoding at a fixed batch: ``decode_speedup`` = TPOT without /
    with; ``throughput_speedup`` = output tokens/s with / without (static batch of ``batch``)."""
    from roofplan.costmodel.serve_features import serve_step_ext

    model, hw, engine, cfg = _setup(case, calibration)
    base = serve_step(model, hw, cfg, engine)
    spec = serve_step_ext(model, hw, cfg, engine, spec=_spec_of(case))
    if case.metric == "decode_speedup":
        return float(base.tpot_s[0] / spec.tpot_s[0])
    if case.metric == "throughput_speedup":
        return float(spec.output_tokens_per_s[0] / base.output_tokens_per_s[0])
    raise ValueError(f"serve_spec metric {case.metric!r} not supported (decode_speedup, throughput_speedup)")
