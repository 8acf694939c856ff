"""Hostile-input generators and the properties every command must keep (shared by
``tests/test_fuzz.py``, a short fixed-seed run in CI, and ``tools/fuzz.py``, the long run).

Each *family* is a hypothesis strategy drawing one case: the input files it writes into a fresh
sandbox and the argv it runs. :func:`run_case` runs the CLI in-process and returns the problems
found, by kind:

* ``internal`` — exit 1, "internal error" or a traceback;
* ``exit`` — an exit code outside {0, 2, 3};
* ``lines`` — a failure with other than exactly one line on stderr;
* ``nonfinite`` — a ``--json`` result with NaN/inf, or a null/negative where a number is reported;
* ``outside`` — any file outside ``--out`` created, changed or removed (a planted symlink's
  target included), or ``--out`` changed by a run that failed;
* ``hang`` — a case running longer than the limit.

Physical invariants (more bandwidth or peak is never slower, MFU <= 1, a plan fits per
``estimate``) are checked through the Python API by :func:`check_invariants`.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.commands import (
    PLAN_SERVE_8B_2GPU,
    PLAN_TRAIN_8B_ANY_GPUS,
    serve_estimate,
    serve_plan,
    train_estimate,
)

REPO = Path(__file__).resolve().parent.parent
H100_YAML = (REPO / "roofplan" / "catalogs" / "h100-sxm.yaml").read_text()
PROBLEMS = ("internal", "exit", "lines", "nonfinite", "outside", "hang")

# -- values -------------------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "[/x]",
    "[bold]b",
    ":x:",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a\nb",
    "x" * 300,
    "~nouser_zz/x",
    "../../victim.txt",
    "",
    " ",
    "\x00",
    "é☃",
    "-1",
    "1e400",
    "nan",
    "inf",
    "0x10",
    "1_000",
    "h100-sxm",
    "llama-3.1-8b",
]
HUGE_INTS = [0, -1, 1, 2, 3, 7, 2**31 - 1, 2**31, 2**40, 2**53 + 1, 2**63, 2**64, 10**30]
SPECIAL_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    1e-300,
    1e-9,
    0.5,
    1.0,
    1.0000001,
    1e9,
    1e308,
    1.8e308,
    float("inf"),
    float("-inf"),
    float("nan"),
]

numbers = st.one_of(
    st.sampled_from(HUGE_INTS),
    st.integers(-(2**70), 2**70),
    st.sampled_from(SPECIAL_FLOATS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(1, 100_000),
)
scalars = st.one_of(numbers, st.sampled_from(HOSTILE_TEXT), st.text(max_size=12), st.none(), st.booleans())
values = st.one_of(
    scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2)
)


def cli_number(v) -> str:
    """A value as a user would type it on the command line."""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    return str(v)


# -- input families -----------------------------------------------------------------------------------

LLAMA = {
    "model_type": "llama",
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 4096,
}
HF_BASES = [
    LLAMA,
    LLAMA | {"model_type": "mixtral", "num_local_experts": 8, "num_experts_per_tok": 2},
    LLAMA
    | {
        "model_type": "qwen3_moe",
        "num_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 512,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [0],
    },
    LLAMA
    | {
        "model_type": "deepseek_v3",
        "kv_lora_rank": 128,
        "q_lora_rank": 256,
        "qk_nope_head_dim": 32,
        "qk_rope_head_dim": 16,
        "v_head_dim": 32,
        "n_routed_experts": 8,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 256,
        "n_shared_experts": 1,
        "first_k_dense_replace": 1,
    },
    {"model_type": "gpt2", "n_embd": 768, "n_layer": 4, "n_head": 12, "vocab_size": 50257},
    {
        "model_type": "opt",
        "hidden_size": 768,
        "ffn_dim": 3072,
        "num_hidden_layers": 4,
        "num_attention_heads": 12,
        "vocab_size": 50272,
    },
    {"model_type": "bloom", "hidden_size": 1024, "n_layer": 4, "n_head": 16, "vocab_size": 250880},
]
MODEL_YAML = {
    "layers": 4,
    "hidden": 1024,
    "heads": 16,
    "kv_heads": 4,
    "ffn": 2816,
    "vocab": 32000,
    "max_seq_len": 4096,
    "moe": {"num_experts": 8, "top_k": 2, "expert_ffn": 1024},
    "mla": {"kv_lora_rank": 128, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32},
}

#: estimate serve / train without --model (each case adds the model it tests)
ES = serve_estimate(4, 512, 64, model=None)
ET = train_estimate(8, 1, 1024, model=None)


def _raw_mutation(text: str, kind: str, draw) -> str:
    """Text-level mutations no dict can express: nesting, aliases, duplicates, truncation."""
    how = draw(st.sampled_from(["none", "none", "deep", "truncate", "duplicate", "aliases", "binary"]))
    depth = draw(st.sampled_from([40, 1000, 20_000]))
    if how == "deep":
        return "[" * depth + "]" * depth if kind == "json" else "a: " + "[" * depth + "]" * depth + "\n"
    if how == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "duplicate" and kind == "json" and text.startswith("{"):
        return '{"hidden_size": 8, ' + text[1:]
    if how == "aliases":
        levels = draw(st.integers(3, 9))
        lines = ['a0: &a0 ["lol"]'] + [
            f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)
        ]
        if kind == "json":
            return text
        laughs = "\n".join(lines) + "\n"
        return text.rstrip("\n") + "\n" + laughs if draw(st.booleans()) else laughs
    if how == "binary":
        return "\udcff" + text
    return text


def _scaled(draw, v: int) -> int:
    """``v`` times 2^k (k in -4..24), at least 1: sizes from tiny to beyond every bound."""
    return max(1, int(v * 2.0 ** draw(st.integers(-4, 24))))


def _mutate_dict(doc: dict, draw, keys: list[str]) -> dict:
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys + ["unknown_key", "_name_or_path", "text_config", "model_type"]))
        target = doc
        if key in ("moe", "mla") and isinstance(doc.get(key), dict):
            target = doc[key]
            key = draw(st.sampled_from(sorted(target) + ["bogus"]))
        old = target.get(key)
        how = draw(st.integers(0, 9))
        if how == 0:
            target.pop(key, None)
        elif how <= 4 and isinstance(old, int) and not isinstance(old, bool):
            target[key] = _scaled(draw, old)  # valid but extreme: the bounds and the arithmetic meet
        else:
            target[key] = draw(values)
    if draw(st.integers(0, 6)) == 0:
        doc = {"model_type": draw(st.sampled_from(["llava", ["llama"], None])), "text_config": doc}
    return doc


@st.composite
def hf_config(draw):
    doc = _mutate_dict(
        draw(st.sampled_from(HF_BASES)), draw, list(LLAMA) + ["mlp_only_layers", "kv_lora_rank"]
    )
    try:
        text = json.dumps(doc, allow_nan=True)
    except (ValueError, TypeError):
        text = "{}"
    text = _raw_mutation(text, "json", draw)
    cmd = draw(
        st.sampled_from(
            [
                ["models", "show", "{f}"],
                ["models", "show", "{f}", "--json"],
                ES + ["--model", "{f}", "--json"],
                ET + ["--model", "{f}"],
            ]
        )
    )
    return {"files": {"config.json": text}, "argv": cmd}


@st.composite
def model_yaml(draw):
    doc = _mutate_dict(MODEL_YAML, draw, list(MODEL_YAML) + ["head_dim", "learned_positions", "gated_mlp"])
    doc.pop("text_config", None)
    try:
        text = yaml.safe_dump(doc)
    except yaml.YAMLError:
        text = "layers: 1\n"
    text = _raw_mutation(text, "yaml", draw)
    cmd = draw(st.sampled_from([["models", "show", "{f}"], ES + ["--model", "{f}", "--json"]]))
    return {"files": {"m.yaml": text}, "argv": cmd}


@st.composite
def inline_gpt(draw):
    values_of = {"h": 1024, "l": 4, "a": 16, "V": 32000}
    for key in draw(st.lists(st.sampled_from(["h", "l", "a", "V", "f", "s", "kv", "x"]), max_size=3)):
        how = draw(st.integers(0, 3))
        if how == 0:
            values_of.pop(key, None)
        elif how == 1:
            old = values_of.get(key, 1024)
            values_of[key] = _scaled(draw, old if isinstance(old, int) else 1024)
        else:
            values_of[key] = draw(
                st.one_of(st.sampled_from(HUGE_INTS + [64, 128, 2048]), st.sampled_from(HOSTILE_TEXT[:6]))
            )
    parts = [f"{k}={v}" for k, v in values_of.items()]
    text = "gpt(" + draw(st.sampled_from([";", ","])).join(parts) + ")"
    cmd = draw(
        st.sampled_from(
            [["models", "show", text], ES + ["--model", text, "--json"], ET + ["--model", text, "--json"]]
        )
    )
    return {"files": {}, "argv": cmd}


def _leaves(node, path=()):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    else:
        yield path


@st.composite
def catalog(draw):
    doc = yaml.safe_load(H100_YAML)
    paths = list(_leaves(doc))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        node = doc
        for k in path[:-1]:
            node = node[k]
        how = draw(st.integers(0, 7))
        if how >= 6 and path[-1] == "value":  # a valid number scaled 10^-4..10^4: extreme, not malformed
            try:
                num, _, unit = str(node["value"]).partition(" ")
                node["value"] = f"{float(num) * 10.0 ** draw(st.floats(-4, 4)):.6g} {unit}".strip()
            except (ValueError, KeyError, TypeError):
                pass
        elif how == 0:
            node[path[-1] + draw(st.sampled_from(["x", "_"]))] = node.pop(path[-1], None)  # a misspelt key
        elif how == 1 and path[-1] == "value":
            node["value"] = draw(
                st.sampled_from(["1e30 B", "0 B/s", "5 us", "1e-300", "80 GB/s", "-1 TFLOPS"])
            )
        else:
            node[path[-1]] = draw(values)
    text = _raw_mutation(yaml.safe_dump(doc, allow_unicode=True), "yaml", draw)
    cmd = draw(
        st.sampled_from(
            [
                ["catalog", "validate", "{f}"],
                ["catalog", "show", "{f}"],
                ES + ["--model", "llama-3.1-8b", "--hardware", "{f}", "--json"],
                ET + ["--model", "llama-3.1-8b", "--hardware", "{f}", "--json"],
            ]
        )
    )
    return {"files": {"cat.yaml": text}, "argv": cmd}


EFFICIENCY = [
    "gemm_max",
    "hbm",
    "intra_bw",
    "inter_bw",
    "intra_latency_s",
    "kernel_launch_s",
    "nvls_speedup",
    "gemm_half_dim",
    "sustained_compute",
    "gemm_max_fp8",
    "moe_balance",
    "gemm_maxx",
]
ENGINE_FIELDS = [
    "step_overhead_s",
    "kernel_gap_s",
    "kernels_per_layer",
    "memory_reserve_fraction",
    "max_num_seqs",
    "max_num_batched_tokens",
    "cuda_graphs",
    "foo",
]


@st.composite
def overlay(draw):
    doc: dict = {"schema": draw(st.sampled_from(["roofplan.calibration/v1"] * 5 + ["x", None]))}
    if draw(st.booleans()):
        doc["efficiency"] = {
            draw(st.sampled_from(EFFICIENCY)): draw(values) for _ in range(draw(st.integers(1, 3)))
        }
    if draw(st.booleans()):
        eng = draw(st.sampled_from(["vllm", "sglang", "trtllm", "generic", "tgi"]))
        doc["engines"] = {eng: {draw(st.sampled_from(ENGINE_FIELDS)): draw(values)}}
    if draw(st.integers(0, 5)) == 0:
        doc[draw(st.sampled_from(["engine", "hardware", "notes", "inputs"]))] = draw(values)
    try:
        text = yaml.safe_dump(doc, allow_unicode=True)
    except yaml.YAMLError:
        text = "schema: roofplan.calibration/v1\n"
    text = _raw_mutation(text, "yaml", draw)
    engine = draw(st.sampled_from(["vllm", "sglang", "generic"]))
    cmd = draw(
        st.sampled_from(
            [
                ES + ["--model", "llama-3.1-8b", "--engine", engine, "--calibration", "{f}", "--json"],
                ET + ["--model", "llama-3.1-8b", "--calibration", "{f}", "--json"],
                ["catalog", "show", "h100-sxm", "--calibration", "{f}"],
                [*PLAN_SERVE_8B_2GPU, "--engine", engine, "--calibration", "{f}", "--json"],
            ]
        )
    )
    return {"files": {"overlay.yaml": text}, "argv": cmd}


CSV_KINDS = {
    "gemm": ("kind,m,n,k,dtype,value,unit", ["gemm", "4096", "4096", "4096", "bf16", "1.2", "ms"]),
    "collective": (
        "kind,op,ranks,nodes,bytes,value,unit",
        ["collective", "all_reduce", "8", "1", "16MiB", "180", "us"],
    ),
    "attention": (
        "kind,batch,heads,head_dim,seq_len,causal,direction,dtype,value,unit",
        ["attention", "4", "32", "128", "4096", "yes", "fwd", "bf16", "300", "TFLOP/s"],
    ),
    "decode_attention": (
        "kind,batch,heads,kv_heads,head_dim,kv_len,kv_dtype,value,unit",
        ["decode_attention", "32", "32", "8", "128", "4096", "bf16", "80", "us"],
    ),
    "moe": (
        "kind,tokens,hidden,moe_ffn,experts,topk,ep,tp,dtype,value,unit",
        ["moe", "4096", "4096", "14336", "8", "2", "1", "1", "bf16", "2.5", "ms"],
    ),
    "collective_impl": (
        "kind,op,ranks,nodes,bytes,impl,value,unit",
        ["collective", "all_reduce", "8", "1", "1MiB", "custom", "20", "us"],
    ),
}


@st.composite
def measurements(draw):
    kind = draw(st.sampled_from(sorted(CSV_KINDS)))
    header, row = CSV_KINDS[kind]
    rows = []
    for _ in range(draw(st.integers(1, 4))):
        cells = list(row)
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.integers(1, len(cells) - 1))
            cells[i] = cli_number(
                draw(st.one_of(numbers, st.sampled_from(HOSTILE_TEXT + ["fp64", "1e400", "-inf"])))
            )
        rows.append(",".join(c.replace(",", ";").replace("\n", " ") for c in cells))
    text = header + "\n" + "\n".join(rows) + "\n"
    cmd = ["calibrate", "{f}", "--hardware", "h100-sxm"] + draw(
        st.sampled_from(
            [
                [],
                ["--json"],
                ["--prior-weight", cli_number(draw(numbers))],
                ["--params", draw(st.sampled_from(["gemm_max", "hbm,foo", "vllm.step_overhead_s", ""]))],
            ]
        )
    )
    if draw(st.integers(0, 3)) == 0:
        cmd = ["validate", "--measurements", "{f}", "--hardware", "h100-sxm", "--json"]
    return {"files": {"m.csv": text}, "argv": cmd}


SUITE_CSV = (REPO / "roofplan" / "validation" / "published_measurements.csv").read_text().splitlines()


@st.composite
def suite_csv(draw):
    """Rows of the published-measurements format (kinds train, serve_step, op_gemm, ...), mutated."""
    header = SUITE_CSV[0]
    cols = header.split(",")
    # every column a prediction reads, not the labels and free text around it
    labels = ("id", "hardware", "recompute", "sequence_parallel", "engine", "unit", "source", "note")
    mutable = [i for i, c in enumerate(cols) if c not in labels]
    rows = []
    for line in draw(st.lists(st.sampled_from(SUITE_CSV[1:40]), min_size=1, max_size=2)):
        cells = next(iter(__import__("csv").reader([line])))
        for _ in range(draw(st.integers(0, 3))):
            i = draw(st.sampled_from(mutable))
            cells[i] = cli_number(
                draw(st.one_of(numbers, st.sampled_from(HOSTILE_TEXT + ["fp64", "gpt(h=4;l=1;a=0;V=1)"])))
            )
        rows.append(",".join('"' + c.replace('"', "'") + '"' for c in cells))
    hw = draw(st.sampled_from(["h100-sxm", "a100-sxm-80gb"]))
    cmd = draw(
        st.sampled_from(
            [["calibrate", "{f}", "--hardware", hw, "--json"], ["validate", "--cases", "{f}", "--json"]]
        )
    )
    return {"files": {"suite.csv": header + "\n" + "\n".join(rows) + "\n"}, "argv": cmd}


NCCL_HEAD = """# nThread 1 nGpus 8 minBytes 8 maxBytes 8589934592 step: 2(factor) warmup iters: 5 iters: 20
#  Rank  0 Group  0 Pid 1 on node01 device  0 [0x1b] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid 1 on node01 device  1 [0x2b] NVIDIA H100 80GB HBM3
#                                                              out-of-place                       in-place
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)
"""


@st.composite
def nccl_tests(draw):
    rows = []
    for size in (8, 1048576, 16777216, 1073741824):
        cells = [
            str(size),
            str(size // 4),
            "float",
            "sum",
            "-1",
            "25.1",
            "0.00",
            "0.00",
            "0",
            "24.9",
            "0.00",
            "0.00",
            "0",
        ]
        if draw(st.booleans()):
            i = draw(st.sampled_from([0, 5, 9]))
            cells[i] = cli_number(draw(st.one_of(numbers, st.sampled_from(HOSTILE_TEXT))))
        rows.append("  ".join(c.replace("\n", " ") for c in cells))
    text = NCCL_HEAD + "\n".join(rows) + "\n"
    extra = draw(
        st.sampled_from(
            [
                [],
                ["--op", "all_reduce"],
                ["--ranks", cli_number(draw(numbers))],
                ["--op", draw(st.sampled_from(HOSTILE_TEXT))],
            ]
        )
    )
    return {
        "files": {"all_reduce_perf.txt": text},
        "argv": ["calibrate", "{f}", "--hardware", "h100-sxm", *extra],
    }


@st.composite
def workload(draw):
    """Request traces (CSV or JSONL rows of isl, osl[, arrival_s]) for serving under load."""
    jsonl = draw(st.booleans())
    rows = []
    for i in range(draw(st.integers(1, 5))):
        cells = {"isl": 512, "osl": 64, "arrival_s": 0.1 * i}
        for _ in range(draw(st.integers(0, 2))):
            cells[draw(st.sampled_from(sorted(cells)))] = draw(
                st.one_of(numbers, st.sampled_from(HOSTILE_TEXT))
            )
        if jsonl:
            try:
                rows.append(json.dumps(cells))
            except (TypeError, ValueError):
                rows.append("{}")
        else:
            rows.append(
                ",".join(
                    cli_number(cells[k]).replace(",", ";").replace("\n", " ")
                    for k in ("isl", "osl", "arrival_s")
                )
            )
    text = "\n".join(rows) + "\n" if jsonl else "isl,osl,arrival_s\n" + "\n".join(rows) + "\n"
    text = _raw_mutation(text, "json", draw) if jsonl and draw(st.integers(0, 4)) == 0 else text
    name = "trace.jsonl" if jsonl else "trace.csv"
    load = draw(st.sampled_from([["--concurrency", "4"], ["--rate", "2"], ["--rate", "1e9"]]))
    return {
        "files": {name: text},
        "argv": ES[:4] + ["--model", "llama-3.1-8b", "--workload", "{f}", *load, "--json"],
    }


TRAIN_FLAGS = [
    "--tp",
    "--pp",
    "--dp",
    "--cp",
    "--ep",
    "--vpp",
    "--global-batch",
    "--micro-batch",
    "--seq-len",
    "--zero",
    "--gpus-per-node",
]
SERVE_FLAGS = ["--tp", "--pp", "--ep", "--batch", "--isl", "--osl"]
PLAN_SERVE_FLAGS = ["--gpus", "--isl", "--osl", "--ttft-ms", "--tpot-ms", "--rate"]


@st.composite
def cli_args(draw):
    which = draw(st.sampled_from(["et", "et", "es", "es", "ps", "models", "catalog"]))

    def flagval():
        return cli_number(draw(st.one_of(numbers, st.sampled_from(HOSTILE_TEXT))))

    if which == "et":
        argv = ET + ["--model", draw(st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "deepseek-v3"]))]
        for f in draw(
            st.lists(st.sampled_from(TRAIN_FLAGS + ["--dtype", "--recompute", "--offload"]), max_size=3)
        ):
            argv += [f, flagval()]
    elif which == "es":
        argv = ES + ["--model", draw(st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "deepseek-v3"]))]
        for f in draw(
            st.lists(st.sampled_from(SERVE_FLAGS + ["--dtype", "--kv-dtype", "--engine"]), max_size=3)
        ):
            argv += [f, flagval()]
    elif which == "ps":
        argv = list(PLAN_SERVE_8B_2GPU)
        for f in draw(st.lists(st.sampled_from(PLAN_SERVE_FLAGS + ["--emit", "--mode"]), max_size=2)):
            argv += [f, flagval()]
    elif which == "models":
        argv = ["models", "show", draw(st.sampled_from(HOSTILE_TEXT + ["x" * 5000, "a/" + "b" * 300]))]
    else:
        argv = ["catalog", draw(st.sampled_from(["show", "list"]))]
        argv += (
            [draw(st.sampled_from(HOSTILE_TEXT))]
            if argv[1] == "show"
            else ["--catalog-dir", draw(st.sampled_from(HOSTILE_TEXT))]
        )
    if draw(st.booleans()):
        argv.append("--json")
    return {"files": {}, "argv": argv}


@st.composite
def out_targets(draw):
    """--out into a directory holding planted symlinks (at every name roofplan writes or once used
    for temporaries), files of an earlier plan, or a path under a file."""
    train = draw(st.booleans())
    names = (
        ["plan.json", ".plan.json.tmp", "launch_megatron.sh", ".launch_megatron.sh.tmp"]
        if train
        else ["plan.json", ".plan.json.tmp", "launch_vllm.sh", ".launch_vllm.sh.tmp", "vllm_instances.sh"]
    )
    plants = draw(st.lists(st.sampled_from(names), max_size=4, unique=True))
    layout = draw(st.sampled_from(["dir", "dir", "new", "file", "under_file"]))
    if train:
        argv = [
            *PLAN_TRAIN_8B_ANY_GPUS,
            "--gpus",
            draw(st.sampled_from(["8", "1", "0"])),
            "--emit",
            draw(st.sampled_from(["megatron", "megatron,", "torchtitan"])),
        ]
    else:
        argv = [
            *serve_plan(draw(st.sampled_from(["2", "1", "0"])), 512, 64),
            "--emit",
            draw(st.sampled_from(["vllm", " vllm", "sglang"])),
            "--ttft-ms",
            draw(st.sampled_from(["5000", "1"])),
        ]
    return {"files": {}, "argv": argv, "out": {"layout": layout, "plants": plants}}


FAMILIES: dict[str, Callable] = {
    "hf_config": hf_config,
    "model_yaml": model_yaml,
    "inline_gpt": inline_gpt,
    "catalog": catalog,
    "overlay": overlay,
    "measurements_csv": measurements,
    "suite_csv": suite_csv,
    "nccl_tests": nccl_tests,
    "workload": workload,
    "cli_args": cli_args,
    "out_targets": out_targets,
}

# -- running a case -----------------------------------------------------------------------------------


class Hang(BaseException):  # noqa: N818 - not an Exception: the CLI's error handler must not catch it
    """Raised by the alarm in a case running past its limit."""


def _snapshot(root: Path, skip: Path | None) -> dict[str, tuple]:
    snap = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            p = here / name
            st_ = os.lstat(p)
            snap[str(p.relative_to(root))] = (
                st_.st_mode,
                st_.st_size,
                st_.st_mtime_ns,
                os.readlink(p) if p.is_symlink() else None,
            )
    return snap


def _tree(root: Path) -> dict[str, tuple]:
    return (
        _snapshot(root, None)
        if root.is_dir()
        else ({"": ("file", root.stat().st_size)} if root.exists() else {})
    )


_RESULT_NUMBERS = (
    "step_time_s",
    "tokens_per_s",
    "mfu",
    "ttft_ms",
    "tpot_ms",
    "latency_ms",
    "output_tokens_per_s",
    "output_tokens_per_s_per_gpu",
    "max_batch",
)


def _nonfinite(stdout: str) -> str | None:
    """Why a --json result is not a number, or None."""
    try:
        doc = json.loads(stdout, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except ValueError as exc:
        return f"not finite JSON ({exc})"
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "inputs":  # what was asked (null: not given), not a result
                    continue
                if k in _RESULT_NUMBERS and (v is None or (isinstance(v, (int, float)) and v < 0)):
                    return f"{k} = {v}"
                if k == "mfu" and isinstance(v, (int, float)) and v > 1:
                    return f"mfu = {v} > 1"
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
    return None


def run_case(
    case: dict, sandbox: Path, runner: CliRunner, app, limit_s: float = 30.0
) -> list[tuple[str, str]]:
    """Run one case in ``sandbox`` (a fresh empty directory); returns [(problem kind, detail)]."""
    inp = sandbox / "in"
    inp.mkdir()
    victim = sandbox / "victim.txt"
    victim.write_text("outside --out\n")
    paths = {}
    for name, text in case["files"].items():
        p = inp / name
        p.write_bytes(text.encode("utf-8", "surrogateescape"))
        paths[name] = str(p)
    f = next(iter(paths.values()), "")
    argv = [a.replace("{f}", f) for a in case["argv"]]
    out = None
    if "out" in case:
        spec = case["out"]
        out = sandbox / "out"
        if spec["layout"] == "dir":
            out.mkdir()
            (out / "notes.txt").write_text("an earlier file\n")
            for name in spec["plants"]:
                (out / name).symlink_to(victim)
        elif spec["layout"] == "file":
            out.write_text("a file, not a directory\n")
        elif spec["layout"] == "under_file":
            (sandbox / "afile").write_text("x\n")
            out = sandbox / "afile" / "out"
        argv += ["--out", str(out)]
    before = _snapshot(sandbox, out)
    out_before = _tree(out) if out is not None else {}
    cwd = os.getcwd()
    os.chdir(sandbox)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s)
    t0 = time.perf_counter()
    try:
        r = runner.invoke(app, argv)
    except Hang:
        return [("hang", f"{argv} ran over {limit_s:g} s")]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.chdir(cwd)
    elapsed = time.perf_counter() - t0
    problems: list[tuple[str, str]] = []
    if isinstance(r.exception, Hang):
        return [("hang", f"{argv} ran over {limit_s:g} s")]
    if elapsed > limit_s:
        problems.append(("hang", f"{elapsed:.1f} s"))
    err = r.stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if (
        r.exit_code == 1
        or "internal error" in err
        or "Traceback" in err
        or (r.exception is not None and not isinstance(r.exception, SystemExit))
    ):
        problems.append(("internal", f"{argv!r}: {err.strip()[-300:] or repr(r.exception)}"))
    elif r.exit_code not in (0, 2, 3):
        problems.append(("exit", f"{argv!r}: exit {r.exit_code}"))
    if r.exit_code in (2, 3) and len(lines) != 1:
        problems.append(("lines", f"{argv!r}: {len(lines)} lines: {err[:300]!r}"))
    if r.exit_code == 0 and "--json" in argv and argv[0] in ("estimate", "plan"):
        why = _nonfinite(r.stdout)
        if why:
            problems.append(("nonfinite", f"{argv!r}: {why}"))
    after = _snapshot(sandbox, out)
    if after != before or victim.read_text() != "outside --out\n" or os.access(victim, os.X_OK):
        changed = sorted(set(before.items()) ^ set(after.items()))[:3]
        problems.append(("outside", f"{argv!r}: {changed}"))
    if out is not None and r.exit_code != 0 and _tree(out) != out_before:
        problems.append(("outside", f"{argv!r}: --out changed by a failed run"))
    return problems


def _alarm(signum, frame):
    raise Hang()


# -- physical invariants (Python API) -----------------------------------------------------------------


def check_invariants(model: str, tp: int, batch: int, scale: float, which: str) -> list[tuple[str, str]]:
    """More bandwidth or peak never slows a step; MFU <= 1; a planned configuration fits per estimate."""
    import dataclasses

    import roofplan
    from roofplan.errors import RoofplanError

    hw = roofplan.load_hardware("h100-sxm")
    if which == "hbm":
        tiers = tuple(
            dataclasses.replace(t, bandwidth_Bps=t.bandwidth_Bps * scale) if t.name == "hbm" else t
            for t in hw.tiers
        )
        faster = dataclasses.replace(hw, tiers=tiers)
    elif which == "peak":
        faster = dataclasses.replace(hw, peak_flops={k: v * scale for k, v in hw.peak_flops.items()})
    else:
        faster = dataclasses.replace(
            hw, intra=dataclasses.replace(hw.intra, bandwidth_Bps=hw.intra.bandwidth_Bps * scale)
        )
    out: list[tuple[str, str]] = []
    kw = dict(tp=tp, dp=8 // tp, global_batch=batch * (8 // tp), micro_batch=1, seq_len=2048)
    try:
        slow = roofplan.estimate_training(model, hw, **kw)
        fast = roofplan.estimate_training(model, faster, **kw)
    except RoofplanError:
        return out
    if fast.step_time_s > slow.step_time_s * (1 + 1e-9):
        out.append(
            (
                "invariant",
                f"{model} tp={tp}: x{scale} {which} slower: {fast.step_time_s} > {slow.step_time_s}",
            )
        )
    for e in (slow, fast):
        if not 0 < e.value("mfu") <= 1:
            out.append(("invariant", f"{model} tp={tp}: mfu {e.value('mfu')}"))
    try:
        s_slow = roofplan.estimate_serving(model, hw, tp=tp, batch=batch, isl=512, osl=64).to_json()
        s_fast = roofplan.estimate_serving(model, faster, tp=tp, batch=batch, isl=512, osl=64).to_json()
    except RoofplanError:
        return out
    for key in ("ttft_ms", "tpot_ms"):
        if s_fast[key] > s_slow[key] * (1 + 1e-9):
            out.append(("invariant", f"serve {model} tp={tp} b={batch}: x{scale} {which} {key} slower"))
    return out


def check_plan_fits(model: str, gpus: int) -> list[tuple[str, str]]:
    """The best configuration of ``plan train`` fits in memory per ``estimate train``."""
    import roofplan
    from roofplan.errors import RoofplanError

    try:
        plan = roofplan.plan_training(model, "h100-sxm", gpus=gpus, global_batch=64, seq_len=2048, top=1)
    except RoofplanError:
        return []
    b = plan.best
    import inspect

    from roofplan.costmodel.train import estimate_training

    # every knob the plan chose that estimate takes (tp_comm_overlap, etp, ... as they are added)
    accepted = set(inspect.signature(estimate_training).parameters) - {
        "model",
        "hw",
        "global_batch",
        "seq_len",
    }
    est = roofplan.estimate_training(
        model, "h100-sxm", global_batch=64, seq_len=2048, **{k: v for k, v in b.items() if k in accepted}
    )
    if not est.fits:
        return [("invariant", f"plan train {model} on {gpus}: best does not fit per estimate")]
    if abs(est.step_time_s - b["step_time_s"]) > 1e-6 * b["step_time_s"]:
        return [
            (
                "invariant",
                f"plan train {model} on {gpus}: step {b['step_time_s']} vs estimate {est.step_time_s}",
            )
        ]
    return []
