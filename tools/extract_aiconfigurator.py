#!/usr/bin/env python3
"""Extract measured kernel timings (H100 SXM, H200 SXM, A100 SXM) from aiconfigurator-core.

What it does
------------
Reads the measured performance tables (parquet) that ship inside NVIDIA's
``aiconfigurator-core`` wheel (PyPI, Apache-2.0; project "aiconfigurator",
https://github.com/ai-dynamo/aiconfigurator) and writes ONE compact CSV,
``measured_kernels.csv``, with a fixed schema (see ``COLUMNS``).  The CSV is
meant to be committed as a test fixture, so nothing is downloaded at test time.

Tables read, relative to the package's ``systems/data/<system>/`` folder
(``<system>`` is ``h100_sxm``, ``h200_sxm`` or another ``--system``; versions are arguments):

  gemm/trtllm/<V>/gemm_perf.parquet                       -> kind=gemm
  gemm/sglang/<S>/gemm_perf.parquet                       -> kind=gemm, impl=sglang (cuBLAS bf16, DeepGEMM block FP8)
  attention/trtllm/<V>/context_attention_perf.parquet     -> kind=attention
  attention/trtllm/<V>/generation_attention_perf.parquet  -> kind=decode_attention
  attention/{vllm,sglang}/<V>/context_attention_perf      -> kind=attention, impl=vllm / sglang (their FlashAttention-3
                                                             call: the cache write and the kernel, no RoPE)
  mla/trtllm/<V>/context_mla_perf.parquet                 -> kind=attention (MLA)
  mla/trtllm/<V>/generation_mla_perf.parquet              -> kind=decode_attention (MLA)
  moe/trtllm/<V>/moe_perf.parquet                         -> kind=moe (impl=min_latency: the NVFP4 min-latency kernels)
  moe/vllm/<VM>/moe_perf.parquet                          -> kind=moe, impl=vllm (vLLM's Triton fused MoE, bf16
                                                             and fp8_block) or vllm_flashinfer (FlashInfer's
                                                             CUTLASS MoE, which vLLM runs for per-tensor fp8)
  moe/sglang/<S>/moe_perf.parquet                         -> kind=moe, impl=sglang (SGLang's Triton fused MoE)
  linear_attention/<E>/<V>/gdn_perf.parquet               -> kind=linear_attention, impl=<E> (vllm, sglang,
                                                             trtllm: each engine's Gated DeltaNet kernels)
  comm/nccl/<N>/nccl_perf.parquet                         -> kind=collective, impl=nccl
  comm/trtllm/<V>/custom_allreduce_perf.parquet           -> kind=collective, impl=custom_trtllm
  comm/vllm/<VA>/custom_allreduce_perf.parquet            -> kind=collective, impl=custom_vllm
  comm/sglang/<S>/custom_allreduce_perf.parquet           -> kind=collective, impl=custom_sglang

Units and meanings (from the aiconfigurator collector scripts):
  * gdn: one Gated DeltaNet kernel of a Qwen3.5 layer; heads are per GPU (num_v_heads value heads,
    num_k_heads key heads of head_k_dim = head_v_dim = 128, conv width 4); batch_size sequences of
    seq_len new tokens (1 at generation). The kernel names map to the op column: causal_conv1d_update
    -> conv_update, the fused recurrent gated delta rule -> recurrent_update, causal_conv1d_fn ->
    conv, chunk_gated_delta_rule(_flashinfer) -> chunk_scan. The recurrent state is taken as fp32
    (the engines' default state dtype for Qwen3.5; the table does not say). Rows repeated across
    models of the same per-GPU shape keep the first model's.
  * ``latency`` is milliseconds (CUDA-event / nccl-tests time); written as us.
  * gemm: activation x[m, k] (bf16) times weight[n, k] via TensorRT-LLM's
    ``Linear``; m = tokens, n = output features, k = input features.
    fp8 / fp8_block include the on-the-fly activation quantization done inside
    ``Linear.forward``.  Weights are replicated past L2 size (L2-cold weights).
  * context attention: TRT-LLM attention op forward (fused QKV preprocessing:
    RoPE + KV-cache write, then causal FMHA), batch_size x isl tokens, no prefix.
  * generation attention: one new query token per sequence; ``step`` = cached
    tokens, so attended length kv_len = step + 1.
  * MLA (DeepSeek-V3 dims: kv_lora_rank 512, qk_rope 64, qk_nope 128, v 128,
    q_lora 1536); ``num_heads`` is already per GPU (= 128 / tp_size).
  * moe: TRT-LLM fused MoE forward on one GPU holding num_experts/ep experts
    with inter_size/tp slices; num_tokens = tokens entering the layer on this
    GPU; no all-to-all / all-reduce included (vLLM's table: its FusedMoE layer, the same columns).
  * nccl: nccl-tests (-g N, one node), out-of-place time; ``message_size`` is in
    elements (bytes = elements x dtype size = nccl-tests "size").
  * custom all-reduce: TRT-LLM ``AllReduce`` (strategy AUTO, autotune off),
    CUDA-graph timed; ``message_size`` is elements of bf16.  vLLM and SGLang:
    the engine's ``tensor_model_parallel_all_reduce`` (its own dispatch between
    custom all-reduce, symmetric memory and NCCL; SGLang with symmetric memory
    and MSCCL++ off, as it serves by default), timed in CUDA-graph mode
    (``backend`` *_graph) and eagerly; only the graph rows are kept (engines
    replay decode steps as CUDA graphs; the eager rows add 20-30 us of host
    dispatch per call, which the engine profiles price separately).

Large tables are subsampled deterministically (same rule for both GPUs) so the
fixture stays small; ``--full`` disables subsampling.  Per-family counts before
and after are printed.

Usage:
  python tools/extract_aiconfigurator.py [--data-dir DIR] [--out measured_kernels.csv]

``--data-dir`` defaults to the ``systems/data`` folder of the installed
``aiconfigurator_core`` package (located with importlib.resources).

License: the data are (c) NVIDIA CORPORATION & AFFILIATES, Apache-2.0
(SPDX headers in the package; wheel metadata License-Expression: Apache-2.0).
Ship the Apache-2.0 text next to the extracted CSV.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from importlib import metadata, resources

import pandas as pd

COLUMNS = [
    "kind",
    "hardware",
    "id",
    "source",
    "m",
    "n",
    "k",
    "dtype",
    "batch",
    "heads",
    "kv_heads",
    "head_dim",
    "seq_len",
    "kv_len",
    "kv_dtype",
    "causal",
    "direction",
    "op",
    "ranks",
    "nodes",
    "bytes",
    "impl",
    "tokens",
    "experts",
    "topk",
    "hidden",
    "moe_ffn",
    "ep",
    "tp",
    "distribution",
    "gated",
    "time_us",
]

SYSTEMS = {"h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm"}

# aiconfigurator dtype / quant-mode names -> fixture dtype names
DTYPE_MAP = {
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "fp8": "fp8",  # FP8 E4M3, per-tensor scales (W8A8)
    "fp8_block": "fp8_block",  # FP8 E4M3, 1x128 activation / 128x128 weight block scales
    "w4a16_mxfp4": "mxfp4_wo",  # MXFP4 weights, bf16 activations (weight-only)
    "int8": "int8",
    "nvfp4": "fp4",  # NVFP4 W4A4 (the fixtures and the op reader call it fp4)
}
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}
NCCL_OPS = {
    "all_reduce": "all_reduce",
    "all_gather": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "alltoall": "all_to_all",
}

MLA_ID = "mla kv_lora=512 rope=64"  # + qk_nope=128 v_head=128 q_lora=1536 (DeepSeek-V3)

POW2 = {1 << i for i in range(0, 31)}
# Common model dimensions kept for GEMM n/k in addition to powers of two.
GEMM_DIMS = {1024, 2048, 4096, 8192, 16384, 1536, 3072, 5120, 6144, 7168, 12288}
GEMM_M = {1, 4, 16, 64, 256, 1024, 4096, 16384}
ATTN_BATCH = {1, 8, 64}
ATTN_HEADS = {8, 32, 64}
GEN_BATCH = {1, 16, 256}
MOE_TOKENS = {1, 16, 64, 256, 1024, 4096, 16384}
# Every power of two for the MXFP4 weight-only rows: their one shape (gpt-oss, hidden = inter = 2880,
# top-4) puts the powers of four of MOE_TOKENS all in odd log2 FLOP bins (held back), so the odd
# powers are kept too and both halves of the split hold MXFP4 rows.
MOE_TOKENS_MXFP4 = {1 << i for i in range(0, 15)}
MOE_TP_EP = {(1, 1), (1, 8), (2, 1), (8, 1)}
MOE_DIST = {"balanced", "power_law_1.2"}
#: vLLM MoE dtypes the cost model's fused-MoE (stacked-GEMM) model prices; its W4A16 Marlin and
#: MXFP4 rows are other kernels (the MXFP4 one has its own model) and are not extracted.
VLLM_MOE_DTYPES = {"bfloat16", "fp8", "fp8_block"}
#: SGLang's MoE rows kept: its Triton fused MoE (the lineage of vLLM's) in bf16 and FP8 block
#: scales, a check of the model fitted on vLLM's rows that no fit sees.
SGLANG_MOE = ("sglang_fused_moe_triton", {"bfloat16", "fp8_block"})


def _fused_moe_kept(engine: str, r) -> bool:
    """Whether a row of an engine's own MoE table is extracted (VLLM_MOE_DTYPES, SGLANG_MOE)."""
    if engine == "vllm":
        return r.moe_dtype in VLLM_MOE_DTYPES
    return r.kernel_source == SGLANG_MOE[0] and r.moe_dtype in SGLANG_MOE[1]


MLA_BATCH = {1, 4, 16, 64, 256}
MLA_GEN_BATCH = {1, 8, 64, 512}


def default_data_dir() -> str:
    return os.fspath(resources.files("aiconfigurator_core") / "systems" / "data")


def dt(name: str) -> str:
    return DTYPE_MAP.get(str(name), str(name))


def keep_gemm(r) -> bool:
    return (
        r.m in GEMM_M and r.n in GEMM_DIMS and r.k in GEMM_DIMS and (r.n == r.k or r.n in POW2 or r.k in POW2)
    )


def keep_ctx(r) -> bool:
    # full attention only; MHA (kv=heads) or GQA with 1 or 8 kv heads
    return (
        r.window_size == 0
        and r.batch_size in ATTN_BATCH
        and r.isl in POW2
        and r.isl >= 128
        and r.num_heads in ATTN_HEADS
        and r.num_key_value_heads in {1, 8, r.num_heads}
    )


def keep_gen(r) -> bool:
    return (
        r.window_size == 0
        and r.batch_size in GEN_BATCH
        and (r.step + 1) in POW2
        and (r.step + 1) >= 64
        and r.num_heads in ATTN_HEADS
        and r.num_key_value_heads in {1, 8, r.num_heads}
    )


def keep_moe(r) -> bool:
    tokens = MOE_TOKENS_MXFP4 if r.moe_dtype == "w4a16_mxfp4" else MOE_TOKENS
    return (
        r.num_tokens in tokens and (r.moe_tp_size, r.moe_ep_size) in MOE_TP_EP and r.distribution in MOE_DIST
    )


def keep_mla_ctx(r) -> bool:
    return (
        r.batch_size in MLA_BATCH and r.isl in POW2 and r.isl >= 128 and r.num_heads in {128, 64, 32, 16, 8}
    )


def keep_mla_gen(r) -> bool:
    return (
        r.batch_size in MLA_GEN_BATCH and (r.step + 1) in POW2 and (r.step + 1) >= 64 and r.num_heads in POW2
    )


#: The GEMM kernels kept from SGLang's table: cuBLAS bf16 and DeepGEMM block FP8 (its per-tensor FP8
#: rows time the dynamic activation quantisation, which serving's static-scale FP8 leaves out).
ENGINE_GEMMS = {"sglang_torch_linear", "sglang_deepgemm_gemm_nt_f8f8bf16"}
#: The FlashAttention-3 prefill kernels of vLLM's and SGLang's context-attention tables (their
#: FA4 / Triton rows are other kernels, not kept).
FA3_PREFILL = {"vllm_flash_attn_fa3", "fa3"}
GDN_OPS = {
    "causal_conv1d_update": "conv_update",
    "fused_recurrent": "recurrent_update",
    "causal_conv1d_fn": "conv",
    "chunk_gated_delta_rule": "chunk_scan",
}
GDN_BATCH = {1, 8, 64}


def gdn_op(kernel: str) -> str:
    return next(op for prefix, op in GDN_OPS.items() if kernel.startswith(prefix))


def keep_gdn(r, seen: set) -> bool:
    """Generation rows all, context rows at batch 1/8/64; one model per per-GPU kernel shape."""
    key = (r.kernel_source, r.batch_size, r.seq_len, r.num_k_heads, r.num_v_heads)
    if key in seen or (r.phase == "context" and r.batch_size not in GDN_BATCH):
        return False
    seen.add(key)
    return True


def blank() -> dict:
    return {c: "" for c in COLUMNS}


def fmt_time(ms: float) -> str:
    return f"{ms * 1000.0:.4g}"


def convert(table: str, df: pd.DataFrame, hw: str, src: str, full: bool):
    """Yield output rows for one parquet table."""
    base = os.path.basename(table).replace(".parquet", "")
    seen: set = set()
    for idx, r in enumerate(df.itertuples(index=False)):
        o = blank()
        o["hardware"] = hw
        o["source"] = src
        o["time_us"] = fmt_time(r.latency)
        rid = f"{base}#{idx}"
        if base == "gemm_perf":
            if not (full or keep_gemm(r)):
                continue
            o.update(kind="gemm", m=r.m, n=r.n, k=r.k, dtype=dt(r.gemm_dtype))
            engine = table.split("/")[1]  # gemm/<engine>/<version>/...
            if engine != "trtllm":  # an engine's own GEMMs: its bf16 and block-FP8 kernels
                if r.kernel_source not in ENGINE_GEMMS:
                    continue
                o["impl"] = engine
                rid = f"{engine}_{rid} {r.kernel_source}"
        elif base in ("context_attention_perf", "generation_attention_perf"):
            ctx = base.startswith("context")
            if not (full or (keep_ctx(r) if ctx else keep_gen(r))):
                continue
            o.update(
                batch=r.batch_size,
                heads=r.num_heads,
                kv_heads=r.num_key_value_heads,
                head_dim=r.head_dim,
                dtype=dt(r.attn_dtype),
                kv_dtype=dt(r.kv_cache_dtype),
                causal="yes",
            )
            if ctx:
                o.update(kind="attention", seq_len=r.isl, kv_len=r.isl)
                engine = table.split("/")[1]  # attention/<engine>/<version>/...
                if engine != "trtllm":  # an engine's FlashAttention-3 call; its other kernels are not kept
                    if r.kernel_source not in FA3_PREFILL:
                        continue
                    o["impl"] = engine
                    rid = f"{engine}_{rid} {r.kernel_source}"
            else:
                # TensorRT-LLM's XQA / masked-MHA dispatch, or vLLM's FlashAttention-3 decode
                impl = "trtllm" if "/trtllm/" in table else "flash"
                o.update(kind="decode_attention", seq_len=r.isl, kv_len=r.step + 1, impl=impl)
                rid += f" cached={r.step}"
            if r.window_size:
                rid += f" window={r.window_size}"
            if r.head_dim == 64:
                rid += " sinks"  # collector passes attention sinks for head_dim 64 (gpt-oss style)
        elif base in ("context_mla_perf", "generation_mla_perf"):
            ctx = base.startswith("context")
            if not (full or (keep_mla_ctx(r) if ctx else keep_mla_gen(r))):
                continue
            o.update(
                batch=r.batch_size,
                heads=r.num_heads,
                dtype=dt(r.mla_dtype),
                kv_dtype=dt(r.kv_cache_dtype),
                causal="yes",
            )
            rid += f" {MLA_ID} tp={r.tp_size}"
            if ctx:
                o.update(kind="attention", seq_len=r.isl, kv_len=r.isl, kv_heads=r.num_heads)
            else:
                # absorbed MLA over the latent cache: one "KV head" of 576 = kv_lora 512 + rope 64
                # (the value is the 512-wide latent); TensorRT-LLM runs FlashMLA on SM90
                o.update(
                    kind="decode_attention",
                    seq_len=r.isl,
                    kv_len=r.step + 1,
                    kv_heads=1,
                    head_dim=576,
                    impl="trtllm_mla",
                )
                rid += f" cached={r.step} absorbed"
        elif base == "moe_perf":
            engine = table.split("/")[1]  # moe/<engine>/<version>/...
            if not (full or keep_moe(r)) or (engine != "trtllm" and not _fused_moe_kept(engine, r)):
                continue
            o.update(
                kind="moe",
                tokens=r.num_tokens,
                hidden=r.hidden_size,
                moe_ffn=r.inter_size,
                experts=r.num_experts,
                topk=r.topk,
                ep=r.moe_ep_size,
                tp=r.moe_tp_size,
                dtype=dt(r.moe_dtype),
                # the tables' "balanced" router is the collectors' round-robin generator
                # (balanced_logits), not independent uniform picks
                distribution="round_robin" if r.distribution == "balanced" else r.distribution,
                # the NVFP4 min-latency kernel sequence is another kernel than the CUTLASS one
                # measured on the same shapes (up to 3.6x faster): its own impl, not one family
                impl="min_latency" if r.kernel_source.endswith("min_latency") else "",
            )
            if engine != "trtllm":  # FlashInfer's CUTLASS MoE (vLLM's per-tensor FP8) is another kernel
                o["impl"] = f"{engine}_flashinfer" if "flashinfer" in r.kernel_source else engine
                rid = f"{engine}_{rid} {r.kernel_source.replace(engine + '_', '')}"
            else:
                rid += " " + (
                    r.kernel_source.replace("moe_torch_flow_", "")
                    if r.kernel_source != "moe_torch_flow"
                    else "default"
                )
        elif base == "gdn_perf":
            if not (full or keep_gdn(r, seen)):
                continue
            o.update(
                kind="linear_attention",
                op=gdn_op(r.kernel_source),
                batch=r.batch_size,
                seq_len=r.seq_len,
                heads=r.num_v_heads,
                kv_heads=r.num_k_heads,
                head_dim=r.head_k_dim,
                dtype="fp32",
                impl=table.split("/")[1],  # linear_attention/<engine>/<version>/...
            )
            rid += f" {r.kernel_source} {r.model_name.split('/')[-1]}"
        elif base == "nccl_perf":
            d = dt(r.nccl_dtype)
            o.update(
                kind="collective",
                op=NCCL_OPS[r.op_name],
                ranks=r.num_gpus,
                nodes=1,
                bytes=int(r.message_size) * DTYPE_BYTES[d],
                impl="nccl",
                dtype=d,
            )
        elif base == "custom_allreduce_perf":
            backend = str(getattr(r, "backend", "graph"))
            if not backend.endswith("graph"):
                continue  # eager rows: host dispatch, not the kernel (see the module docstring)
            d = dt(r.allreduce_dtype)
            o.update(
                kind="collective",
                op="all_reduce",
                ranks=r.num_gpus,
                nodes=1,
                bytes=int(r.message_size) * DTYPE_BYTES[d],
                impl="custom_" + table.split("/")[1],  # comm/<engine>/<version>/...
                dtype=d,
            )
            engine = table.split("/")[1]
            rid += f" trtllm_impl={r.implementation}" if engine == "trtllm" else f" backend={backend}"
        else:
            raise ValueError(f"unknown table {table}")
        o["id"] = rid
        yield o


def _moe_shape(r) -> tuple:
    return r["hidden"], r["moe_ffn"], r["experts"], r["topk"]


def _mark_nongated_vllm(rows, hw: str) -> None:
    """vLLM's MoE table has no activation column; its shapes are the collector's model list, the
    same as TensorRT-LLM's table, whose kernel names say which MoEs have no gate (Nemotron-H's
    squared-ReLU experts). The vLLM rows of those shapes are marked so (in place)."""
    mine = [r for r in rows if r["kind"] == "moe" and r["hardware"] == hw]
    nongated = {_moe_shape(r) for r in mine if r["gated"] == "no"}
    for r in mine:
        if r["impl"] not in ("", "min_latency") and _moe_shape(r) in nongated:
            r["gated"] = "no"
            r["id"] += " nongated"


def gdn_tables(a) -> list[tuple[str, str]]:
    """(engine, version) of the Gated DeltaNet kernel tables read (vLLM's, SGLang's, TensorRT-LLM's)."""
    pairs = [("vllm", a.vllm_moe_version), ("sglang", a.sglang_version), ("trtllm", a.trtllm_version)]
    return [(e, v) for e, v in pairs if v]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data-dir",
        default=None,
        help="aiconfigurator_core systems/data folder (default: from the installed package)",
    )
    ap.add_argument(
        "--trtllm-version",
        default="1.3.0rc20",
        help="TensorRT-LLM data folder (default 1.3.0rc20, the package's 'current' trtllm slot)",
    )
    ap.add_argument("--nccl-version", default="2.29.2")
    ap.add_argument(
        "--vllm-version",
        default="0.24.0",
        help="vLLM data folder whose generation-attention table (FlashAttention-3 decode) is added; "
        "'' for none",
    )
    ap.add_argument(
        "--vllm-moe-version",
        default="0.24.0",
        help="vLLM data folder whose MoE table (its fused MoE kernels) is added; '' for none",
    )
    ap.add_argument(
        "--vllm-allreduce-version",
        default="0.24.0",
        help="vLLM data folder whose custom all-reduce table is added; '' for none",
    )
    ap.add_argument(
        "--sglang-version",
        default="0.5.14",
        help="SGLang data folder whose custom all-reduce table is added; '' for none",
    )
    ap.add_argument("--out", default="measured_kernels.csv")
    ap.add_argument("--full", action="store_true", help="keep every row (no subsampling)")
    ap.add_argument(
        "--system",
        action="append",
        metavar="FOLDER=ID",
        help="aiconfigurator system folder and roofplan catalog id (repeatable; default "
        "h100_sxm=h100-sxm and h200_sxm=h200-sxm)",
    )
    ap.add_argument(
        "--with-mla",
        action="store_true",
        help="also the MLA context table (its rows leave head_dim empty: not readable by roofplan yet; "
        "the MLA generation table is always read)",
    )
    a = ap.parse_args(argv)

    data_dir = a.data_dir or default_data_dir()
    try:
        pkg = f"aiconfigurator-core=={metadata.version('aiconfigurator-core')}"
    except metadata.PackageNotFoundError:
        pkg = "aiconfigurator-core"
    v, nv = a.trtllm_version, a.nccl_version
    tables = [
        f"gemm/trtllm/{v}/gemm_perf.parquet",
        *([f"gemm/sglang/{a.sglang_version}/gemm_perf.parquet"] if a.sglang_version else []),
        f"attention/trtllm/{v}/context_attention_perf.parquet",
        f"attention/trtllm/{v}/generation_attention_perf.parquet",
        *([f"mla/trtllm/{v}/context_mla_perf.parquet"] if a.with_mla else []),
        f"mla/trtllm/{v}/generation_mla_perf.parquet",
        *([f"attention/vllm/{a.vllm_version}/generation_attention_perf.parquet"] if a.vllm_version else []),
        *([f"attention/vllm/{a.vllm_version}/context_attention_perf.parquet"] if a.vllm_version else []),
        *(
            [f"attention/sglang/{a.sglang_version}/context_attention_perf.parquet"]
            if a.sglang_version
            else []
        ),
        f"moe/trtllm/{v}/moe_perf.parquet",
        *([f"moe/vllm/{a.vllm_moe_version}/moe_perf.parquet"] if a.vllm_moe_version else []),
        *([f"moe/sglang/{a.sglang_version}/moe_perf.parquet"] if a.sglang_version else []),
        *(f"linear_attention/{e}/{ver}/gdn_perf.parquet" for e, ver in gdn_tables(a)),
        f"comm/nccl/{nv}/nccl_perf.parquet",
        f"comm/trtllm/{v}/custom_allreduce_perf.parquet",
        *(
            [f"comm/vllm/{a.vllm_allreduce_version}/custom_allreduce_perf.parquet"]
            if a.vllm_allreduce_version
            else []
        ),
        *([f"comm/sglang/{a.sglang_version}/custom_allreduce_perf.parquet"] if a.sglang_version else []),
    ]
    rows = []
    print(f"{'table':60s} {'hw':9s} {'before':>7s} {'after':>7s}", file=sys.stderr)
    systems = dict(x.split("=", 1) for x in a.system) if a.system else SYSTEMS
    for system, hw in systems.items():
        for t in tables:
            path = os.path.join(data_dir, system, t)
            if not os.path.exists(path):
                print(f"missing: {system}/{t}", file=sys.stderr)
                continue
            df = pd.read_parquet(path)
            src = f"{pkg} {system}/{t[: -len('.parquet')]}"
            out = list(convert(t, df, hw, src, a.full))
            for r in out:  # MoE kernels without a gate (Nemotron-H, gpt-oss style) say so in their id
                r["gated"] = ("no" if "nongated" in r["id"] else "yes") if r["kind"] == "moe" else ""
            print(f"{t:60s} {hw:9s} {len(df):7d} {len(out):7d}", file=sys.stderr)
            rows.extend(out)
        _mark_nongated_vllm(rows, hw)
    with open(a.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
