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
report the instance's total output tokens/s (``output_tokens_per_s_total``): the dataset's output
tokens over the run's span. trtllm-bench builds the engine with limits it derives from the dataset
(:func:`bench_settings`: a batch cap and an iteration token budget, which also sizes the activation
workspace the KV cache makes room for). The run is a finite dataset (:data:`TRTLLM_BENCH_REQUESTS`
requests): waves of the static batch, the last one at the remainder (:func:`bench_throughput`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from roofplan import resolve
from roofplan.costmodel.serve import ServeConfigs, max_batch, serve_step, step_time
from roofplan.validation.cases import Case, predictor

#: vLLM v0.17.1 + guidellm per-request API-server seconds (tools/fit_request_overhead.py, FIT_ROWS:
#: the 1 req/s median TTFT) and API-server seconds per running request per engine step
#: (OUTPUT_FIT_ROWS: the 8 req/s bf16 median TTFT); the 4 req/s and FP8 8 req/s rows are held back.
#: Fitted with the Gated DeltaNet kernels priced (costmodel.linear_mixer): 9.58 ms and 0.586 ms
#: before, when these two terms absorbed the 30 linear layers' prefill and decode kernels.
VLLM_017_REQUEST_OVERHEAD_S = 8.406e-3
VLLM_017_API_OUTPUT_S = 4.289e-4
#: vLLM V0 (LLM-Inference-Bench rows) host seconds per step and per running request per step
#: (tools/fit_request_overhead.py, STEP_FIT_ROWS and SEQ_FIT_ROWS: the H100 batch-1 and batch-64
#: latency rows; the batch-16 and -32 rows and the MI300X rows are held back).
VLLM_V0_STEP_OVERHEAD_S = 1.284e-3
VLLM_V0_HOST_SEQ_S = 6.829e-5

#: CSV ``engine`` string -> (profile, version features that differ from the profile, kv dtype rule).
#: ``fp8_kv``: the benchmark built the engine with an FP8 KV cache whenever weights were FP8.
ENGINE_MAP: dict[str, tuple[str, dict, bool]] = {
    # Splitwise (Patel et al., ISCA 2024) profiled vLLM of 2023 (v0.1/0.2): eager PyTorch without
    # CUDA graphs (added in vLLM 0.2.2), PagedAttention v1/v2 decode with one thread block per
    # query head (KV re-read per head of a GQA group), xformers fused prefill attention, and NCCL
    # all-reduce: vLLM's custom all-reduce arrived with vllm-project/vllm PR #2192 (merged in
    # January 2024, on by default from April 2024, PR #4040).
    "splitwise-profile": (
        "vllm",
        {"cuda_graphs": False, "gqa_kv_shared": False, "custom_allreduce": False, "async_scheduling": False},
        False,
    ),
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
    "vidur-profile": ("vllm", {"async_scheduling": False}, False),
    # vLLM's V0 engine (before the V1 rewrite, on by default from v0.8): LLM-Inference-Bench's
    # rows, v0.6.1 on MI300X (the ROCm custom paged attention, not V1's Triton unified attention; on
    # NVIDIA devices that flag has no effect) and a mid-2024 0.4/0.5 release on H100. V0 scheduled
    # synchronously and its per-step host work (scheduler, input preparation, sampler and output
    # processing in the one Python process) was several times V1's: the vLLM v0.6.0 blog
    # (2024-09-05) profiles Llama 3 8B on one H100 at 29 % of the time in scheduling against 38 % on
    # the GPU, and that work grows with the running requests (per-sequence Python objects, block
    # tables and sampler outputs). Its step_overhead_s and host_seq_s are fitted by
    # tools/fit_request_overhead.py on the H100 batch-1 and batch-64 rows; the H100 batch-16 and
    # -32 rows and the MI300X rows are held back.
    "vllm-v0": (
        "vllm",
        {
            "rocm_triton_attention": False,
            "async_scheduling": False,
            "step_overhead_s": VLLM_V0_STEP_OVERHEAD_S,
            "host_seq_s": VLLM_V0_HOST_SEQ_S,
        },
        False,
    ),
    # The gpustack H100 rows' vLLM v0.11.0 (V1) schedules synchronously (async scheduling became
    # the default in v0.14); its step_overhead_s is the profile's, fitted on those rows.
    "vllm": ("vllm", {"async_scheduling": False}, False),
    # vLLM 0.10-0.13 with --async-scheduling given (the profile's default from v0.14): the
    # scheduler prepares step n+1 while the GPU runs step n (vLLM docs, "Asynchronous scheduling").
    "vllm-async": ("vllm", {"async_scheduling": True}, False),
    # vLLM v0.17.1 behind guidellm (the gpustack H200 performance-lab rows): its per-request API
    # time and its per-running-request output pass (serve_load.frontend_wait), fitted by
    # tools/fit_request_overhead.py on the 1 and 8 req/s median TTFTs (the 4 req/s and FP8 rows
    # are held back); the profile's 49.6 ms is vLLM v0.11 behind ``vllm bench serve``.
    "vllm-0.17": (
        "vllm",
        {"request_overhead_s": VLLM_017_REQUEST_OVERHEAD_S, "api_output_s": VLLM_017_API_OUTPUT_S},
        False,
    ),
    # vLLM v0.11.1 (ROCm image rocm/vllm:rocm7.0.0_vllm_0.11.1_20251103) driven offline by
    # ``vllm bench throughput`` (the AMD performance-results rows; ROCm/MAD scripts/vllm): prompts go
    # straight to the LLM engine, no API server, so none of the profile's per-request API time
    # (49.6 ms, vLLM v0.11 behind ``vllm bench serve``); MAD's float8 runs pass --kv-cache-dtype
    # fp8 (scripts/vllm/vllm_benchmark_report.sh DTYPE), the -FP8-KV checkpoints carry KV scales,
    # and AMD's documented ``vllm bench throughput`` command for these checkpoints sets
    # kv_cache_dtype=fp8 (ROCm docs "vLLM inference performance testing", the page of the previous
    # image rocm6.4.1_vllm_0.10.1_20250909, amd/Llama-3.1-405B-Instruct-FP8-KV; ``auto`` only for
    # the bf16 meta-llama checkpoints), so the FP8 KV cache stands (bf16 would not close the gap).
    "vllm-0.11-offline": ("vllm", {"request_overhead_s": 0.0, "async_scheduling": False}, True),
    # SambaFlow on SN40L (LLM-Inference-Bench rows): the generic profile without the GPU engines'
    # per-step host work: SambaFlow turns consecutive calls of the fused decoder kernel into one
    # call with a pipelined outer loop (SambaNova SN40L DAC 2025 talk), so no per-step host
    # scheduling is published or modelled (0); the batch-1 rows bound it below ~0.2 ms per step.
    "sambaflow": ("generic", {"step_overhead_s": 0.0}, False),
    "sglang": ("sglang", {}, False),
    "trtllm": ("trtllm", {}, False),
    "generic": ("generic", {}, False),
}


#: Engines whose rows without a ``batch`` are trtllm-bench ``throughput`` runs (:func:`bench_throughput`).
BENCH_ENGINES = ("trtllm-0.17-bench", "trtllm-1.0-bench")
#: (ISL, OSL) -> requests in the synthetic dataset of a trtllm-bench max-throughput run (TensorRT-LLM
#: docs/source/performance/perf-overview.md, v0.17 and v1.0, the ``$num_requests`` table: "for longer
#: input/output sequence lengths, requests remain in the system longer and therefore require less
#: requests to achieve steady state").
TRTLLM_BENCH_REQUESTS = {
    (128, 128): 30000,
    (128, 2048): 3000,
    (128, 4096): 1500,
    (500, 2000): 3000,
    (1000, 1000): 3000,
    (1000, 2000): 1500,
    (2048, 128): 3000,
    (2048, 2048): 1500,
    (5000, 500): 1500,
    (20000, 2000): 1000,
}


#: Decode batch sizes TensorRT-LLM 1.0's perf-overview runs capture as CUDA graphs, with padding
#: (docs/source/performance/perf-overview.md, ``llm_options.yml``: ``cuda_graph_config:
#: enable_padding: true, batch_sizes: [1 ... 8192]``).
TRTLLM_10_BENCH_GRAPHS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 384, 512, 1024, 2048, 4096, 8192)
#: Engines whose benchmark runs decode through those padded graphs (the PyTorch backend).
GRAPH_PADDED_ENGINES = ("trtllm-1.0-bench",)


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
    with the server flags its note states (:func:`note_engine_args`). A calibration overlay's
    ``engines.<name>`` block applies last: what a user fitted on their rows wins over the suite's
    version table, so ``calibrate`` can move a field that table sets."""
    name, changes, fp8_kv = ENGINE_MAP.get(case.str("engine"), ("generic", {}, False))
    versioned = resolve.engine(name).replace(**{**changes, **note_engine_args(case)})
    profile = resolve.engine(versioned, calibration)
    dtype = case.str("dtype", "bf16")
    kv = (
        "fp8" if (fp8_kv and dtype in ("fp8", "fp8_block", "fp4")) else None
    )  # NVFP4 checkpoints keep an FP8 KV cache
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
    identical requests that all arrive at t = 0 the running set starts and finishes nearly
    together, so without a dataset size the static batch of :func:`serve_step` at that batch
    stands for the run (:func:`bench_throughput` composes its waves where the dataset is known)."""
    b = int(max_batch(model, hw, cfg, engine)[0])
    return dataclasses.replace(cfg, batch=max(b, 1))


#: Weight / KV bytes per element trtllm-bench's tuning assumes per checkpoint dtype
#: (``tensorrt_llm/bench/build/tuning.py``, ``BYTES_PER_ELEM``: FP8 1, NVFP4 0.5, else 2).
_BENCH_ELEM_BYTES = {"fp8": 1.0, "fp4": 0.5}


def bench_token_budget(batch: float, isl: int, osl: int) -> int:
    """``max_num_tokens`` trtllm-bench sets for a dataset of ISL/OSL requests and a KV cache it
    estimates at ``batch`` of them (``tensorrt_llm/bench/build/tuning.py``, ``finetune_setting``:
    batch x (1 + ISL/OSL), capped at 32768, rounded up to 256 tokens (at least 2048) below 4096,
    to 512 below 8192, else to 1024). Every iteration's prompt and decode tokens share it."""
    raw = min(batch * (1.0 + isl / osl), 32768.0)
    if raw < 4096:
        return max(2048, 256 * math.ceil(raw / 256))
    if raw < 8192:
        return 512 * math.ceil(raw / 512)
    return 1024 * math.ceil(raw / 1024)


def bench_batch_cap(batch: float) -> int:
    """``max_batch_size`` of the same tuning: the estimate capped at 4096 and rounded up (to 32,
    at least 64, below 256; to 128 below 1024; else to 256)."""
    raw = min(batch, 4096.0)
    if raw < 256:
        return max(64, 32 * math.ceil(raw / 32))
    if raw < 1024:
        return 128 * math.ceil(raw / 128)
    return 256 * math.ceil(raw / 256)


def bench_settings(model, hw, cfg: ServeConfigs) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) trtllm-bench derives from the dataset before the run
    (``tuning.py``, ``calc_engine_setting``, TensorRT-LLM v0.17 build and v1.0 PyTorch flow alike):
    its own estimate of the requests the KV cache holds, 0.95 of the device memory left after
    parameters x bytes per element, over (ISL + OSL) tokens of 2 x layers x max(tp, kv heads) x
    head dim x KV bytes each (pp 1), then :func:`bench_batch_cap` and :func:`bench_token_budget`."""
    isl, osl, tp = int(cfg.isl[0]), int(cfg.osl[0]), int(cfg.tp[0])
    gpus = tp * int(cfg.pp[0])
    weights = model.params_total * _BENCH_ELEM_BYTES.get(cfg.dtype, 2.0)
    kv_elem = 1.0 if cfg.kv_dtype_resolved == "fp8" else 2.0
    per_token = 2.0 * model.layers * max(tp, model.kv_heads) * model.head_dim * kv_elem
    requests = 0.95 * (float(hw.hbm_bytes) * gpus - weights) / (per_token * (isl + osl))
    requests /= int(cfg.pp[0])
    return bench_batch_cap(requests), bench_token_budget(requests, isl, osl)


def padded_graph_batch(batch: int, max_batch_size: int, max_num_tokens: int) -> int:
    """The batch a generation-only step of ``batch`` requests runs at in TensorRT-LLM's PyTorch
    backend: the smallest captured graph size >= batch (``model_engine.py``, ``_round_up_batch_size``),
    the sizes being :data:`TRTLLM_10_BENCH_GRAPHS` up to min(max_batch_size, max_num_tokens) plus
    that cap itself when a listed size exceeds it (``_filter_cuda_graph_batch_sizes``); a batch
    above every size runs eagerly, unpadded."""
    cap = min(max_batch_size, max_num_tokens)
    sizes = sorted({s for s in TRTLLM_10_BENCH_GRAPHS if s <= cap} | {cap})
    return next((s for s in sizes if s >= batch), batch)


def mixed_share(batch: int, isl: int, osl: int, budget: int) -> float:
    """Share of a steady in-flight run's decode iterations that also carry a prompt chunk (and so
    run no CUDA graph): requests finish at batch / OSL per iteration, each replacement's prompt
    takes ceil(ISL / (budget - batch)) iterations of the budget left after the decode tokens
    (the same count as costmodel.serve_load's share f of iterations carrying prompt tokens)."""
    steps = math.ceil(isl / max(budget - batch, 1))
    return min(1.0, batch / osl * steps)


def bench_throughput(model, hw, engine, cfg: ServeConfigs, requests: int, graphs=None) -> float:
    """Output tokens/s of a trtllm-bench ``throughput`` run: ``requests`` identical requests queued
    at t = 0 with at most ``cfg.batch`` running (the KV cache's admission, :func:`engine_batch`;
    TRT-LLM ``GUARANTEED_NO_EVICT`` reserves isl + osl tokens a request). Identical requests admitted
    together finish together, so the run is waves of the static batch (:func:`serve_step`):
    floor(requests / batch) full ones and a last one of the remainder, which decodes its OSL tokens
    at that smaller batch; throughput = requests x OSL / the waves' summed latency. (The serving
    simulator, costmodel.serve_sim, replays the same run iteration by iteration with the ramp of
    admissions under the token budget and staggered finishes: within 4 points of this on these
    rows, lower on 1000/1000, but at about a second a row, too slow inside a calibration fit.)
    ``graphs`` = (max_batch_size, max_num_tokens) of an engine that decodes through padded CUDA
    graphs: the generation-only share of each wave's decode steps (1 - :func:`mixed_share`) runs
    at :func:`padded_graph_batch`."""
    b = int(cfg.batch[0])
    full, rest = divmod(int(requests), b)
    waves = dataclasses.replace(cfg.broadcast_to(2), batch=np.array([b, max(rest, 1)]))
    latency = serve_step(model, hw, waves, engine).latency_s
    if graphs is not None:  # (max_batch_size, max_num_tokens): generation-only steps pad to a graph
        isl, osl = int(cfg.isl[0]), int(cfg.osl[0])
        padded = [padded_graph_batch(int(x), *graphs) for x in waves.batch]
        pure = np.array([1.0 - mixed_share(int(x), isl, osl, graphs[1]) for x in waves.batch])
        graph = serve_step(model, hw, waves, engine, decode_batch=np.array(padded)).latency_s
        latency = pure * graph + (1.0 - pure) * latency
    span = full * float(latency[0]) + (float(latency[1]) if rest else 0.0)
    return requests * int(cfg.osl[0]) / span


@predictor("serve_throughput")
def predict_serve_throughput(case: Case, calibration=None) -> float:
    """Static batch throughput, B·osl / (TTFT + (osl-1)·TPOT), per GPU (see module docstring for the
    two rows whose header says tok/s), the instance total, or the batch's end-to-end ``latency_s``.
    A row without a ``batch`` is a max-throughput benchmark (trtllm-bench ``throughput``): the
    batch is the one the engine reaches (:func:`engine_batch`)."""
    model, hw, engine, cfg = _setup(case, calibration)
    if case.int("batch") is None:
        bench = case.str("engine") in BENCH_ENGINES
        if bench:  # the engine is built with trtllm-bench's tuned limits (its memory plan, its budget)
            max_bs, budget = bench_settings(model, hw, cfg)
            engine = engine.replace(max_num_seqs=max_bs, max_num_batched_tokens=budget)
        cfg = engine_batch(model, hw, engine, cfg)
        requests = TRTLLM_BENCH_REQUESTS.get((int(cfg.isl[0]), int(cfg.osl[0])))
        if bench and requests and case.metric == "output_tokens_per_s_total":
            graphs = (max_bs, budget) if case.str("engine") in GRAPH_PADDED_ENGINES else None
            return bench_throughput(model, hw, engine, cfg, requests, graphs)
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
