"""Every emitted launch file of the emit matrix, checked against the option inventory of the release
it targets (``tests/data/inventories``, made by ``tools/extract_inventories.py`` from the frameworks'
own parsers): no unknown flag, every value of the parser's type and among its choices. Every degree
and memory setting the plan chose must read back from the file to the plan's value.

The emit matrix (issue "launch files that launch"): training llama-3.1-70b on 64 h100-sxm,
gpt3-175b on 1024 a100-sxm-80gb, deepseek-v3 on 1024 h100-sxm, llama-3.1-8b on 8 h100-sxm, with every
framework (a framework that has no definition of the model must refuse); serving llama-3.1-70b on 16
h100-sxm, deepseek-v3 on 64 h200-sxm, qwen3-32b on 8 h100-sxm, llama-3.1-8b on 1 h100-sxm and an
h100-sxm prefill / a100-sxm-80gb decode pool, colocated and disaggregated, with every engine.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from functools import cache
from pathlib import Path

import pytest
import yaml

from roofplan import plan_serving, plan_training
from roofplan.errors import InputError
from roofplan.launch import deepspeed, dynamo, megatron, sglang, torchtitan, trtllm, versions, vllm
from roofplan.launch.registry import emitter, train_files
from tests.commands import PLAN_TRAIN_8B, serve_plan, train_plan

INV = Path(__file__).parent / "data" / "inventories"

TRAIN = [
    ("llama-3.1-70b", "h100-sxm", 64, 512, 8192),
    ("gpt3-175b", "a100-sxm-80gb", 1024, 1536, 2048),
    ("deepseek-v3", "h100-sxm", 1024, 4096, 4096),
    ("llama-3.1-8b", "h100-sxm", 8, 128, 8192),
]
SERVE = [
    ("llama-3.1-70b", "h100-sxm", 16),
    ("deepseek-v3", "h200-sxm", 64),
    ("qwen3-32b", "h100-sxm", 8),
    ("llama-3.1-8b", "h100-sxm", 1),
    ("llama-3.1-70b", "h100-sxm:prefill,a100-sxm-80gb:decode", "8,8"),
]


@cache
def inventory(framework: str, version: str | None = None) -> dict:
    name = versions.feature(framework, version, "inventory")
    return json.loads((INV / f"{name}.json").read_text())


# ---------------------------------------------------------------- parsing the emitted files
def commands(text: str, program: list[str]) -> list[list[str]]:
    """Every command of a bash script that runs ``program``, as argv (env prefixes dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        s = line.strip()
        if not s or s.startswith(("#", "if ", "set ")) or re.match(r"^[A-Z_0-9]+=\S*$", s):
            continue
        argv = shlex.split(s)
        if argv and argv[-1] == "&":
            argv = argv[:-1]
        k = 0
        while k < len(argv) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[k]):
            k += 1
        for j in range(k, len(argv) - len(program) + 1):
            if argv[j : j + len(program)] == program:
                out.append(argv[j:])
                break
    return out


def problems(args: list[str], inv: dict, allowed_extra: frozenset = frozenset()) -> list[str]:
    """What the parser of ``inv`` would reject in ``args`` (flags and values after the program):
    unknown options, values that do not convert to the option's type, values outside its choices."""
    opts, out, i = inv["options"], [], 0
    while i < len(args):
        tok = args[i]
        i += 1
        if not tok.startswith("-") or re.fullmatch(r"-?\d+(\.\d+)?([eE][-+]?\d+)?", tok):
            out.append(f"stray value {tok!r}")
            continue
        name, eq, inline = tok.partition("=")
        if name in allowed_extra:
            while i < len(args) and not args[i].startswith("--"):
                i += 1
            continue
        rec = opts.get(name)
        if rec is None:
            out.append(f"unknown option {name}")
            while i < len(args) and not args[i].startswith("--"):
                i += 1  # its values
            continue
        if not rec["takes_value"]:
            continue
        nargs = rec.get("nargs")
        if eq:
            values = [inline]
        elif nargs in ("+", "*"):
            values = []
            while i < len(args) and not (args[i].startswith("--")):
                values.append(args[i])
                i += 1
        elif nargs == "?":
            values = [args[i]] if i < len(args) and not args[i].startswith("--") else []
            i += len(values)
        else:
            n = nargs if isinstance(nargs, int) else 1
            values = args[i : i + n]
            i += n
        for v in values:
            if "${" in v:
                continue  # a placeholder the user fills in
            if rec["type"] == "int" and not re.fullmatch(r"-?\d+", v):
                out.append(f"{name} {v!r}: not an int")
            elif rec["type"] == "float" and not re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?", v):
                out.append(f"{name} {v!r}: not a float")
            if rec.get("choices") and v not in rec["choices"]:
                out.append(f"{name} {v!r}: not one of {rec['choices']}")
    return out


def value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, f"{flag} appears {argv.count(flag)} times"
    return argv[argv.index(flag) + 1]


# ---------------------------------------------------------------- training
def _train_cases():
    for scenario in TRAIN:
        for fw in ("megatron", "deepspeed", "torchtitan"):
            for version in versions.VERSIONS[fw]:
                yield pytest.param(scenario, fw, version, id=f"{scenario[0]}-{fw}-{version}")


@cache
def _plan(model, hw, gpus, gb, seq, fw):
    return plan_training(model, hw, gpus=gpus, global_batch=gb, seq_len=seq, emit=fw, top=1)


@pytest.mark.parametrize(("scenario", "fw", "version"), list(_train_cases()))
def test_training_files_pass_their_inventory(scenario, fw, version):
    plan = _plan(*scenario, fw)
    mod, cfg, model = emitter(fw), plan.config(), plan.model
    why = mod.unsupported(cfg, model, version)
    if why:  # refused with one line (exit 2), never a file that builds something else
        with pytest.raises(InputError):
            train_files(plan, [fw], {fw: version})
        assert (fw, scenario[0]) in _EXPECTED_REFUSALS or (fw == "megatron" and version == "core_v0.13")
        return
    assert (fw, scenario[0]) not in _EXPECTED_REFUSALS
    files = train_files(plan, [fw], {fw: version})
    b = plan.best
    if fw == "megatron":
        (argv,) = commands(files[megatron.SCRIPT], ["pretrain_gpt.py"])
        assert problems(argv[1:], inventory(fw, version)) == []
        _megatron_reads_back(argv, b, model, files[megatron.SCRIPT])
    elif fw == "deepspeed":
        (argv,) = commands(files[deepspeed.SCRIPT], ["pretrain_gpt.py"])
        assert problems(argv[1:], inventory(fw, version)) == []
        doc = json.loads(files[deepspeed.CONFIG])
        assert _ds_config_problems(doc, inventory(fw, version)["ds_config"]) == []
        assert doc["zero_optimization"]["stage"] == b["zero"] == int(value(argv, "--zero-stage"))
        assert doc["train_batch_size"] == b["global_batch"] == int(value(argv, "--global-batch-size"))
        assert (
            doc["train_micro_batch_size_per_gpu"]
            == b["micro_batch"]
            == int(value(argv, "--micro-batch-size"))
        )
        assert doc["gradient_accumulation_steps"] * b["micro_batch"] * b["dp"] == b["global_batch"]
        assert int(value(argv, "--tensor-model-parallel-size")) == b["tp"]
        assert (
            int(value(argv, "--pipeline-model-parallel-size"))
            if b["pp"] > 1
            else "--no-pipeline-parallel" in argv and 1
        ) == b["pp"]
        _recompute_reads_back(argv, b)
    else:
        _torchtitan_reads_back(files, b, version)
    assert "README.md" in files and "1." in files["README.md"]


def _ds_config_problems(doc: dict, inv: dict) -> list[str]:
    """Keys of ds_config.json that DeepSpeed does not read (zero_optimization and its offload blocks
    are pydantic models that forbid extra keys); ``roofplan`` is ours (DeepSpeed reads known keys
    only from the top level)."""
    out = [f"top-level {k}" for k in doc if k not in inv["keys"] and k != "roofplan"]
    zero = doc.get("zero_optimization", {})
    out += [f"zero_optimization.{k}" for k in zero if k not in inv["zero_optimization"]]
    for block in ("offload_optimizer", "offload_param"):
        out += [f"{block}.{k}" for k in zero.get(block, {}) if k not in inv[block]]
    out += [
        f"activation_checkpointing.{k}"
        for k in doc.get("activation_checkpointing", {})
        if k not in inv["activation_checkpointing"]
    ]
    return out


_EXPECTED_REFUSALS = {("torchtitan", "gpt3-175b"), ("deepspeed", "deepseek-v3")}


def _recompute_reads_back(argv, b):
    if b["recompute"] == "none":
        assert "--recompute-granularity" not in argv
    elif b["recompute"] == "selective":
        assert value(argv, "--recompute-granularity") == "selective"
    else:
        assert value(argv, "--recompute-granularity") == "full"
        n = b.get("recompute_layers") or 0
        if n:  # partial: the first n layers of each stage, not all of them
            assert (
                value(argv, "--recompute-method") == "block"
                and int(value(argv, "--recompute-num-layers")) == n
            )
        else:
            assert value(argv, "--recompute-method") == "uniform"


def _megatron_reads_back(argv, b, model, text):
    assert int(value(argv, "--tensor-model-parallel-size")) == b["tp"]
    assert int(value(argv, "--pipeline-model-parallel-size")) == b["pp"]
    assert int(value(argv, "--context-parallel-size")) == b["cp"]
    assert int(value(argv, "--micro-batch-size")) == b["micro_batch"]
    assert int(value(argv, "--global-batch-size")) == b["global_batch"]
    assert int(value(argv, "--seq-length")) == b["seq_len"]
    if model.moe is not None:
        assert int(value(argv, "--expert-model-parallel-size")) == b["ep"]
    if b["vpp"] > 1:
        assert (
            model.layers // b["pp"] // int(value(argv, "--num-layers-per-virtual-pipeline-stage")) == b["vpp"]
        )
    assert ("--use-distributed-optimizer" in argv) == (b["zero"] >= 1)
    assert ("--use-megatron-fsdp" in argv) == (b["zero"] >= 2)
    _recompute_reads_back(argv, b)
    # what validate_args demands beyond the parser (megatron/training/arguments.py)
    assert "--save-interval" in argv  # --save without it is refused
    if b["zero"] >= 2:  # Megatron-FSDP asserts CUDA_DEVICE_MAX_CONNECTIONS != 1
        assert "CUDA_DEVICE_MAX_CONNECTIONS=1" not in text
    if not model.learned_positions:
        assert float(value(argv, "--rotary-base")) == model.rope_theta
    if model.moe is not None and model.moe.expert_bias:
        assert value(argv, "--moe-router-score-function") == model.moe.score_function
        assert "--moe-router-enable-expert-bias" in argv
        assert int(value(argv, "--moe-router-num-groups")) == model.moe.groups
        assert int(value(argv, "--moe-router-group-topk")) == model.moe.group_top_k
        assert float(value(argv, "--moe-router-topk-scaling-factor")) == model.moe.routed_scaling
    if model.mtp_layers:
        assert int(value(argv, "--mtp-num-layers")) == model.mtp_layers


def _torchtitan_reads_back(files, b, version):
    inv = inventory("torchtitan", version)
    if versions.feature("torchtitan", version, "interface") == "toml":
        import tomllib

        doc = tomllib.loads(files[torchtitan.TOML])
        for section, kv in doc.items():
            for k, v in kv.items():
                rec = inv["fields"].get(f"{section}.{k}")
                assert rec is not None, f"unknown key {section}.{k}"
                if rec["choices"]:
                    assert str(v) in rec["choices"], (section, k, v)
        assert doc["model"]["flavor"] in inv["registry"][doc["model"]["name"]]
        par = doc["parallelism"]
        mode = doc["activation_checkpoint"]["mode"]
        assert mode == b["recompute"]
    else:
        text = files[torchtitan.PYCONFIG]
        tree = ast.parse(text)  # valid Python
        par, seen = {}, []
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Attribute):
                dotted = ast.unparse(node.targets[0]).removeprefix("config.")
                seen.append(dotted)
                if dotted.startswith("parallelism."):
                    par[dotted.split(".", 1)[1]] = ast.literal_eval(node.value)
        for dotted in seen:
            if dotted.startswith(("parallelism.", "training.")) or "." not in dotted:
                assert dotted in inv["fields"], f"unknown field {dotted}"
        module, fn = re.search(r"from torchtitan\.models\.(\w+)\.config_registry import (\w+)", text).groups()
        assert fn in inv["registry"][module]
        ac = {"full": "FullAC", "selective": "SelectiveAC", "none": "None"}[b["recompute"]]
        assert f"config.activation_checkpoint = {ac}" in text and (
            ac == "None" or ac in inv["activation_checkpoint"]
        )
    assert par["data_parallel_replicate_degree"] * par["data_parallel_shard_degree"] == b["dp"]
    assert (
        par["tensor_parallel_degree"],
        par["pipeline_parallel_degree"],
        par["context_parallel_degree"],
        par["expert_parallel_degree"],
    ) == (b["tp"], b["pp"], b["cp"], b["ep"])


# ---------------------------------------------------------------- serving
@cache
def _serve_plan(model, hw, gpus, mode):
    return plan_serving(model, hw, gpus=gpus, isl=2000, osl=200, mode=mode)


def _serve_cases():
    for scenario in SERVE:
        for mode in ("colocated", "disagg"):
            if scenario[2] == 1 and mode == "disagg":
                continue  # one GPU cannot hold a prefill and a decode instance
            if "," in scenario[1] and mode == "colocated":
                continue  # a prefill / decode pool is disaggregated by definition
            for engine in ("vllm", "sglang", "trtllm", "dynamo"):
                for version in versions.VERSIONS[engine]:
                    yield pytest.param(
                        scenario, mode, engine, version, id=f"{scenario[0]}-{mode}-{engine}-{version}"
                    )


_EMIT = {"vllm": vllm, "sglang": sglang, "trtllm": trtllm, "dynamo": dynamo}


@pytest.mark.parametrize(("scenario", "mode", "engine", "version"), list(_serve_cases()))
def test_serving_files_pass_their_inventory(scenario, mode, engine, version):
    plan = _serve_plan(*scenario, mode)
    best, req = plan.best, plan.request
    files = _EMIT[engine].emit(best, req, version)
    n_inst = sum(1 for _ in best["placement"])
    reserve = round(1 - float(req.get("memory_reserve_fraction") or 0.1), 3)
    if engine == "vllm":
        calls = [a for n, t in files.items() if n.endswith(".sh") for a in commands(t, ["vllm", "serve"])]
        assert calls
        for a in calls:
            assert problems(a[3:], inventory("vllm", version)) == []
            assert float(value(a, "--gpu-memory-utilization")) == reserve
            assert int(value(a, "--max-model-len")) == 2200
        heads = [a for a in calls if "--headless" not in a]
        assert len(heads) == n_inst
        _roles_read_back(best, heads, "--tensor-parallel-size", lambda c: c["tp"])
    elif engine == "sglang":
        calls = [
            a
            for n, t in files.items()
            if n.endswith(".sh")
            for a in commands(t, ["python", "-m", "sglang.launch_server"])
        ]
        for a in calls:
            assert problems(a[3:], inventory("sglang", version)) == []
            assert float(value(a, "--mem-fraction-static")) == reserve
            assert int(value(a, "--context-length")) == 2200
        heads = [a for a in calls if a.count("--node-rank") == 0 or value(a, "--node-rank") == "0"]
        assert len(heads) == n_inst
        _roles_read_back(best, heads, "--tp-size", lambda c: c["tp"] * c["dp"])
    elif engine == "trtllm":
        for role in ("colocated",) if mode == "colocated" else ("prefill", "decode"):
            doc = yaml.safe_load(files[trtllm.config_name(role)])
            c = best["prefill"] if role != "decode" else best["decode"]
            assert (
                doc["tensor_parallel_size"] == c["tp"] * c["dp"] and doc["pipeline_parallel_size"] == c["pp"]
            )
            assert doc["max_batch_size"] == -(-c["batch"] // c["dp"])
    else:
        docs = list(yaml.safe_load_all(files["dynamo_graph.yaml"]))
        graph = docs[-1]
        api = versions.feature("dynamo", version, "api")
        assert graph["apiVersion"] == api
        tag = versions.feature("dynamo", version, "image_tag")
        images = re.findall(r"image: (\S+)", files["dynamo_graph.yaml"])
        assert images and all(
            i.endswith(f"-runtime:{tag}") for i in images
        )  # a real tag, no <dynamo-version>
        workers = _dynamo_workers(graph)
        gpus = sum(w["replicas"] * w["gpus"] * w["nodes"] for w in workers)
        assert gpus == best["gpus"]
        if versions.feature("dynamo", version, "inventory"):
            _dynamo_flags_pass(best, req, version)
        backend = dynamo.backend_of(req)
        if backend == "trtllm":  # the engine YAML the workers name is in a ConfigMap mounted at /config
            cm = docs[0]
            for w in workers:
                path = w["args"][w["args"].index("--extra-engine-args") + 1]
                assert path.startswith("/config/") and path.split("/")[-1] in cm["data"]
                assert "/config" in [m["mountPath"] for m in w["mounts"]]
    # the benchmark script measures at the plan's lengths and concurrency, with vLLM's own benchmark
    bench = json.loads((INV / f"{versions.feature('vllm', None, 'bench_inventory')}.json").read_text())
    (b_argv,) = commands(files[f"benchmark_{engine}.sh"], ["vllm", "bench", "serve"])
    assert problems(b_argv[3:], bench) == []
    assert (int(value(b_argv, "--random-input-len")), int(value(b_argv, "--random-output-len"))) == (
        2000,
        200,
    )
    slots = (
        best["decode"]["batch"] * best["decode"]["instances"]
        if best["mode"] == "disagg"
        else best["prefill"]["batch"] * best["instances"]
    )
    assert int(value(b_argv, "--max-concurrency")) == slots
    # several instances need one entry point on the advertised port
    if mode == "colocated" and best["instances"] > 1 and engine in ("vllm", "trtllm"):
        conf = files["router_nginx.conf"]
        assert "listen 8000;" in conf and conf.count("    server ") == best["instances"]
    assert "README.md" in files


def _roles_read_back(best, heads, tp_flag, tp_of):
    by_role = {"prefill": best["prefill"], "decode": best["decode"] if best["mode"] == "disagg" else None}
    counts = {"prefill": 0, "decode": 0, "colocated": 0}
    for a in heads:
        role = (
            a[a.index("--disaggregation-mode") + 1]
            if "--disaggregation-mode" in a
            else (
                "prefill"
                if "kv_producer" in " ".join(a)
                else "decode"
                if "kv_consumer" in " ".join(a)
                else "colocated"
            )
        )
        counts[role] += 1
        c = by_role["prefill" if role == "colocated" else role]
        assert int(value(a, tp_flag)) == tp_of(c)
    if best["mode"] == "disagg":
        assert (counts["prefill"], counts["decode"]) == (
            best["prefill"]["instances"],
            best["decode"]["instances"],
        )
    else:
        assert counts["colocated"] == best["instances"]


def _dynamo_flags_pass(best, req, version):
    """Frontend and worker arguments of every backend against ai-dynamo's own options; vLLM and
    SGLang workers also take their engine's options (their inventories)."""
    comps = inventory("dynamo", version)["components"]
    engine_inv = {"vllm": inventory("vllm"), "sglang": inventory("sglang")}
    for backend in ("vllm", "sglang", "trtllm"):
        graph = list(
            yaml.safe_load_all(dynamo.emit(best, dict(req, engine=backend), version)["dynamo_graph.yaml"])
        )[-1]
        front = next(c for c in graph["spec"]["components"] if c["type"] == "frontend")
        assert (
            problems(front["podTemplate"]["spec"]["containers"][0]["args"], {"options": comps["frontend"]})
            == []
        )
        merged = {"options": {**engine_inv.get(backend, {"options": {}})["options"], **comps[backend]}}
        for w in _dynamo_workers(graph):
            assert problems(w["args"], merged) == [], backend
            assert not any(merged["options"].get(a, {}).get("obsolete") for a in w["args"]), "obsolete flag"


def _dynamo_workers(graph) -> list[dict]:
    out = []
    if "components" in graph["spec"]:
        for comp in graph["spec"]["components"]:
            if comp["type"] == "frontend":
                continue
            box = comp["podTemplate"]["spec"]["containers"][0]
            out.append(
                {
                    "replicas": comp["replicas"],
                    "gpus": int(box["resources"]["limits"]["nvidia.com/gpu"]),
                    "nodes": comp.get("multinode", {}).get("nodeCount", 1),
                    "args": box["args"],
                    "mounts": box.get("volumeMounts", []),
                }
            )
    else:
        for svc in graph["spec"]["services"].values():
            if svc["componentType"] != "worker":
                continue
            box = svc["extraPodSpec"]["mainContainer"]
            out.append(
                {
                    "replicas": svc["replicas"],
                    "gpus": int(svc["resources"]["limits"]["gpu"]),
                    "nodes": svc.get("multinode", {}).get("nodeCount", 1),
                    "args": box["args"],
                    "mounts": box.get("volumeMounts", []),
                }
            )
    return out


# ---------------------------------------------------------------- the listed defects are caught
def test_inventories_catch_the_defects_the_issue_lists():
    """Spellings of the files before this fix, against the inventories: each is flagged."""
    sg = inventory("sglang", "0.5.23")
    assert problems(["--disaggregation-decode-tp", "8"], sg) == ["unknown option --disaggregation-decode-tp"]
    assert problems(["--disaggregation-prefill-pp", "2"], sg) == [
        "unknown option --disaggregation-prefill-pp"
    ]
    mds = inventory("deepspeed")
    assert problems(["--position-embedding-type", "learned_absolute"], mds)[0].startswith("unknown option")
    assert problems(["--multi-latent-attention"], mds) == ["unknown option --multi-latent-attention"]
    assert problems(["--moe-ffn-hidden-size", "2048"], mds) == ["unknown option --moe-ffn-hidden-size"]
    assert _ds_config_problems(
        {"zero_optimization": {"stage": 3, "offload_params": {}}}, mds["ds_config"]
    ) == ["zero_optimization.offload_params"]
    tt2 = inventory("torchtitan", "0.2")
    assert "llama-3.1-8b" not in tt2["registry"] and "8B" in tt2["registry"]["llama3"]
    tt3 = inventory("torchtitan", "0.3")
    assert "job.config_file" not in tt3["fields"] and "llama3_8b" in tt3["registry"]["llama3"]
    meg = inventory("megatron", "core_v0.16")
    assert problems(["--virtual-pipeline-model-parallel-size", "2"], meg)[0].startswith("unknown option")
    assert problems(["--recompute-method", "partial"], meg)[0].endswith("not one of ['block', 'uniform']")
    assert problems(["--tensor-model-parallel-size", "two"], meg) == [
        "--tensor-model-parallel-size 'two': not an int"
    ]
    old = inventory("megatron", "core_v0.13")
    assert "--use-megatron-fsdp" not in old["options"] and "--use-megatron-fsdp" in meg["options"]


def test_docs_version_table_matches_versions_py():
    text = (Path(__file__).parent.parent / "docs" / "launch.md").read_text()
    rows = set(re.findall(r"^\| (\w+) \| ([\w.]+) \|", text, re.M)) - {("framework", "version")}
    assert rows == {(fw, v) for fw, vs in versions.VERSIONS.items() for v in vs}


def test_cli_target_refuses_what_a_release_cannot_express(tmp_path):
    from typer.testing import CliRunner

    from roofplan.cli.app import app

    r = CliRunner().invoke(
        app,
        [
            *PLAN_TRAIN_8B,
            "--emit",
            "megatron",
            "--target",
            "megatron=core_v9",
            "--out",
            str(tmp_path / "a"),
        ],
    )
    assert r.exit_code == 2 and "core_v0.16" in r.output and not (tmp_path / "a").exists()
    r = CliRunner().invoke(
        app,
        [*train_plan(64, 256, 4096, "deepseek-v3"), "--emit", "deepspeed", "--out", str(tmp_path / "b")],
    )
    assert r.exit_code == 2 and "multi-latent attention" in r.output and not (tmp_path / "b").exists()
    r = CliRunner().invoke(
        app,
        [
            *serve_plan(8, 1000, 100),
            "--emit",
            "dynamo",
            "--target",
            "dynamo=1.3",
            "--out",
            str(tmp_path / "c"),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "apiVersion: nvidia.com/v1alpha1" in (tmp_path / "c" / "dynamo_graph.yaml").read_text()


@pytest.mark.parametrize(
    ("model", "gpus", "method", "hit"), [("deepseek-v3", 64, "mtp", None), ("qwen3-32b", 8, "ngram", 0.5)]
)
def test_speculative_and_prefix_cache_flags_pass_their_inventory(model, gpus, method, hit):
    from roofplan.costmodel.serve_features import SpecDecode

    hw = "h200-sxm" if model == "deepseek-v3" else "h100-sxm"
    plan = plan_serving(
        model,
        hw,
        gpus=gpus,
        isl=2000,
        osl=200,
        mode="disagg",
        speculative=SpecDecode.of(method, None, None),
        prefix_hit=hit,
    )
    vfiles = vllm.emit(plan.best, plan.request)
    for a in [
        a
        for n, t in vfiles.items()
        if n.endswith(".sh") and n.startswith("vllm_node")
        for a in commands(t, ["vllm", "serve"])
    ]:
        assert problems(a[3:], inventory("vllm")) == []
        assert json.loads(value(a, "--speculative-config"))["num_speculative_tokens"] >= 1
        assert ("--enable-prefix-caching" in a) == bool(hit)
    sfiles = sglang.emit(plan.best, plan.request)
    for a in [
        a
        for n, t in sfiles.items()
        if n.startswith("sglang_node")
        for a in commands(t, ["python", "-m", "sglang.launch_server"])
    ]:
        assert problems(a[3:], inventory("sglang")) == []
