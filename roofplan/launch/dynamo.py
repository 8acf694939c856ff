"""NVIDIA Dynamo DynamoGraphDeployment for a planned serving deployment.

The API follows the targeted Dynamo release (``launch/versions.py``): ``nvidia.com/v1beta1``
(``spec.components`` list, ``podTemplate`` with a container named ``main``; the served version by
Dynamo 1.4, DGD API reference) by default, ``nvidia.com/v1alpha1`` (``spec.services``) for 1.3. The
image tag is the release's (``nvcr.io/nvidia/ai-dynamo/<backend>-runtime:<tag>``). TensorRT-LLM
workers read their LLM-API YAML from ``/config``: the YAMLs travel in a ConfigMap written as the
first document of ``dynamo_graph.yaml`` and mounted there.

Fields from the Dynamo examples ``examples/backends/<backend>/deploy/disagg.yaml`` (docs/reference/launch-configs.md
§7.2-§7.3): ``spec.services`` holds a ``Frontend`` (``python3 -m dynamo.frontend --http-port 8000
--router-mode kv``) and one worker service per role with ``componentType: worker``,
``subComponentType: prefill|decode``, ``replicas`` = the planned instance count,
``resources.limits.gpu`` = GPUs per pod (per node) and ``multinode.nodeCount`` for instances wider
than a node (GPUs per replica = nodeCount x gpu, §10.1). Worker ``args`` are the backend's own
engine flags plus ``--disaggregation-mode prefill|decode`` (Dynamo >= 1.0). The backend follows
the planned engine (vllm, sglang, trtllm; generic -> vllm). A TensorRT-LLM worker reads its
LLM-API YAML through ``--extra-engine-args``; those files are emitted next to the graph and must be
mounted at ``/config`` (e.g. from a ConfigMap).
"""

from __future__ import annotations

import json
import re

import yaml

from roofplan.launch import serve_common as sc
from roofplan.launch import trtllm, versions

BACKENDS = {
    "vllm": ("Vllm", "vllm-runtime", "dynamo.vllm"),
    "sglang": ("SGLang", "sglang-runtime", "dynamo.sglang"),
    "trtllm": ("TRTLLM", "tensorrtllm-runtime", "dynamo.trtllm"),
}
IMAGE = "nvcr.io/nvidia/ai-dynamo/{runtime}:{tag}"
CONFIG_VOLUME = "engine-config"


def backend_of(request: dict) -> str:
    e = request.get("engine")
    return e if e in BACKENDS else "vllm"


def _worker_args(
    backend: str, role: str, c: dict, request: dict, best: dict, trt_model_flag: str = "--model"
) -> list[str]:
    model = str(request.get("model_id") or request.get("model"))
    isl = int(request["isl"])
    if backend == "vllm":
        args = ["--model", model, "--tensor-parallel-size", c["tp"], "--pipeline-parallel-size", c["pp"]]
        if c["dp"] > 1:
            args += ["--data-parallel-size", c["dp"]]
        if c["ep"] > 1:
            args += ["--enable-expert-parallel"]
        seqs = -(-c["batch"] // c["dp"])  # per DP engine core, as in launch/vllm.py
        args += [
            "--max-model-len",
            sc.max_model_len(request),
            "--max-num-seqs",
            seqs,
            "--gpu-memory-utilization",
            sc.memory_fraction(request),
        ]
        if role == "prefill":
            args += ["--max-num-batched-tokens", max(seqs * isl, isl)]
        elif role == "colocated":
            args += ["--max-num-batched-tokens", -(-c["max_num_batched_tokens"] // c["dp"])]
        if role != "colocated":
            args += [
                "--disaggregation-mode",
                role,
                "--kv-transfer-config",
                json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"}, separators=(",", ":")),
            ]
    elif backend == "sglang":
        args = ["--model-path", model, "--tp-size", c["tp"] * c["dp"]]
        if c["dp"] > 1:
            args += ["--dp-size", c["dp"], "--enable-dp-attention"]
        if c["ep"] > 1:
            args += ["--ep-size", c["ep"]]
        if c["pp"] > 1:
            args += ["--pp-size", c["pp"]]
        args += [
            "--context-length",
            sc.max_model_len(request),
            "--max-running-requests",
            c["batch"],
            "--mem-fraction-static",
            sc.memory_fraction(request),
        ]
        if role == "colocated":
            args += ["--chunked-prefill-size", c["chunk"]]
        else:
            args += ["--disaggregation-mode", role, "--disaggregation-transfer-backend", "nixl"]
    else:
        args = [
            trt_model_flag,  # --model-path before Dynamo 1.4, an obsolete alias since
            model,
            "--served-model-name",
            model,
            "--extra-engine-args",
            f"/config/{trtllm.config_name(role)}",
        ]
        if role != "colocated":
            args += ["--disaggregation-mode", role]
    return [str(a) for a in args]


def _roles(best: dict) -> list[tuple[str, dict, int]]:
    if best["mode"] == "colocated":
        return [("colocated", best["prefill"], best["instances"])]
    return [
        ("prefill", best["prefill"], best["prefill"]["instances"]),
        ("decode", best["decode"], best["decode"]["instances"]),
    ]


def _name(request: dict, best: dict) -> str:
    """A DNS-1123 name (lower-case letters, digits, '-'; at most 63) from the model name."""
    raw = f"{request.get('model') or 'model'}-{best['mode']}".lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw)[:63].strip("-")
    return name or "roofplan"


def _container(
    backend: str,
    role: str,
    c: dict,
    request: dict,
    best: dict,
    tag: str,
    beta: bool,
    trt_model_flag: str = "--model",
) -> dict:
    _, runtime, module = BACKENDS[backend]
    g, dpn = int(c["gpus_per_instance"]), int(c["devices_per_node"])
    box: dict = {"name": "main"} if beta else {}
    box.update(
        {
            "image": IMAGE.format(runtime=runtime, tag=tag),
            "workingDir": f"/workspace/examples/backends/{backend}",
            "command": ["python3", "-m", module],
            "args": _worker_args(backend, role, c, request, best, trt_model_flag),
        }
    )
    if beta:
        box["envFrom"] = [{"secretRef": {"name": "hf-token-secret"}}]
        box["resources"] = {"limits": {"nvidia.com/gpu": str(min(g, dpn))}}
    if backend == "trtllm":
        box["volumeMounts"] = [{"name": CONFIG_VOLUME, "mountPath": "/config"}]
    return box


def _volumes(backend: str, name: str) -> list[dict]:
    return (
        [{"name": CONFIG_VOLUME, "configMap": {"name": f"{name}-engine-config"}}]
        if backend == "trtllm"
        else []
    )


def _component_beta(
    backend: str, role: str, c: dict, replicas: int, request: dict, best: dict, tag: str, trt_model_flag: str
) -> dict:
    prefix = BACKENDS[backend][0]
    g, dpn = int(c["gpus_per_instance"]), int(c["devices_per_node"])
    comp: dict = {
        "name": f"{prefix}{'Worker' if role == 'colocated' else role.capitalize() + 'Worker'}",
        "type": "worker" if role == "colocated" else role,
        "replicas": int(replicas),
    }
    if g > dpn:
        comp["multinode"] = {"nodeCount": -(-g // dpn)}
    spec: dict = {"containers": [_container(backend, role, c, request, best, tag, True, trt_model_flag)]}
    if vols := _volumes(backend, _name(request, best)):
        spec["volumes"] = vols
    comp["podTemplate"] = {"spec": spec}
    return comp


def _worker(
    backend: str, role: str, c: dict, replicas: int, request: dict, best: dict, tag: str, trt_model_flag: str
) -> dict:
    g, dpn = int(c["gpus_per_instance"]), int(c["devices_per_node"])
    svc: dict = {"componentType": "worker"}
    if role != "colocated":
        svc["subComponentType"] = role
    svc["envFromSecret"] = "hf-token-secret"
    svc["replicas"] = int(replicas)
    svc["resources"] = {"limits": {"gpu": str(min(g, dpn))}}
    if g > dpn:
        svc["multinode"] = {"nodeCount": -(-g // dpn)}
    svc["extraPodSpec"] = {
        "mainContainer": _container(backend, role, c, request, best, tag, False, trt_model_flag)
    }
    if vols := _volumes(backend, _name(request, best)):
        svc["extraPodSpec"]["volumes"] = vols
    return svc


def graph(best: dict, request: dict, target: str | None = None) -> dict:
    """The DynamoGraphDeployment document of release ``target``."""
    backend = backend_of(request)
    api = versions.feature("dynamo", target, "api")
    tag = versions.feature("dynamo", target, "image_tag")
    flag = versions.feature("dynamo", target, "trtllm_model_flag")
    _, runtime, _ = BACKENDS[backend]
    image = IMAGE.format(runtime=runtime, tag=tag)
    front_args = ["--http-port", str(sc.ROUTER_PORT), "--router-mode", "kv"]
    front_cmd = ["python3", "-m", "dynamo.frontend"]
    doc: dict = {
        "apiVersion": api,
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": _name(request, best)},
    }
    if api.endswith("v1beta1"):
        comps = [
            {
                "name": "Frontend",
                "type": "frontend",
                "replicas": 1,
                "podTemplate": {
                    "spec": {
                        "containers": [
                            {"name": "main", "image": image, "command": front_cmd, "args": front_args}
                        ]
                    }
                },
            }
        ]
        comps += [
            _component_beta(backend, role, c, n, request, best, tag, flag) for role, c, n in _roles(best)
        ]
        doc["spec"] = {"backendFramework": backend, "components": comps}
        return doc
    services: dict = {
        "Frontend": {
            "componentType": "frontend",
            "replicas": 1,
            "extraPodSpec": {"mainContainer": {"image": image, "command": front_cmd, "args": front_args}},
        }
    }
    prefix = BACKENDS[backend][0]
    for role, c, n in _roles(best):
        key = f"{prefix}Worker" if role == "colocated" else f"{prefix}{role.capitalize()}Worker"
        services[key] = _worker(backend, role, c, n, request, best, tag, flag)
    doc["spec"] = {"services": services}
    return doc


def config_map(best: dict, request: dict, head: list[str]) -> dict:
    """The ConfigMap holding the TensorRT-LLM LLM-API YAML of each role (mounted at /config)."""
    moe = bool(request.get("moe"))
    data = {
        trtllm.config_name(role): trtllm.yaml_text(
            trtllm.llm_api_options(role, c, request, moe=moe),
            head + [f"LLM-API options of the {role} workers."],
        )
        for role, c, _ in _roles(best)
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{_name(request, best)}-engine-config"},
        "data": data,
    }


def emit(best: dict, request: dict, target: str | None = None) -> dict[str, str]:
    """``dynamo_graph.yaml`` (with the engine ConfigMap first for TensorRT-LLM) and a README section."""
    target = target or versions.default_version("dynamo")
    head = sc.header(best, request, f"dynamo/{backend_of(request)}") + [f"Written for Dynamo {target}."]
    docs = [graph(best, request, target)]
    if backend_of(request) == "trtllm":
        docs.insert(0, config_map(best, request, head))
    text = sc.comment_block(
        head + ["Apply with: kubectl apply -f dynamo_graph.yaml -n <ns>"]
    ) + yaml.safe_dump_all(docs, sort_keys=False)
    steps = [
        "Install the Dynamo platform (operator) in the cluster and create the `hf-token-secret` secret.",
        "`kubectl apply -f dynamo_graph.yaml -n <namespace>`"
        + (" (its first document is the engine ConfigMap)." if len(docs) > 1 else "."),
        f"The Frontend component serves the OpenAI API on port {sc.ROUTER_PORT} and routes to the workers "
        "(KV-aware); expose it with `kubectl port-forward` or a Service.",
        f"`HOST=<frontend address> bash {sc.bench_name('dynamo')}` measures the deployment at the plan's lengths and "
        "concurrency (vllm bench serve).",
    ]
    return {
        "dynamo_graph.yaml": text,
        sc.bench_name("dynamo"): sc.benchmark_script(best, request, "dynamo"),
        "README.md": sc.readme("Dynamo", target, best, request, steps),
    }
