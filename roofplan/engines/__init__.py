"""Serving-engine profiles, in their own package: the fixed costs and memory policy of an inference engine.

The roofline of a decode step says how long the *GPU work* takes. At small batches and high
tensor parallelism the step is dominated by costs that do not depend on FLOPs or bytes:

* the host dispatching every kernel of every layer (eager PyTorch: framework + driver time per
  op) unless the step replays a captured CUDA graph;
* a small GPU-side gap between consecutive kernels even inside a graph;
* the latency of the two tensor-parallel all-reduces per layer (engines ship a one-shot custom
  all-reduce for small messages that beats NCCL's ring latency);
* per-iteration scheduler, sampling and detokenisation work on the host.

These differ by engine, not by hardware, so they live in one profile per engine
(``roofplan/catalogs/engines/<name>.yaml``: generic, vllm, sglang, trtllm) with the source of
each number next to it. ``roofplan calibrate`` can refit any field through the ``engines:`` block
of a calibration overlay. The memory policy (vLLM ``--gpu-memory-utilization``, SGLang
``--mem-fraction-static``, TRT-LLM ``kv_cache_config.free_gpu_memory_fraction``) and the step
token budget (``--max-num-batched-tokens``) are part of the profile too.

``profile`` holds the typed :class:`EngineProfile` and its field checks (no file reads: the cost
model imports it); ``catalog`` reads the YAML profiles, each number with its source as the device
catalogs keep theirs, and applies a calibration overlay's ``engines:`` block (the resolver at the
door, :mod:`roofplan.resolve`, calls it). This file imports neither, so the overlay module can
import ``profile`` while ``catalog`` imports the overlay module without a cycle.
"""
