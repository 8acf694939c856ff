"""NVIDIA Dynamo DynamoGraphDeployment (``nvidia.com/v1alpha1``) for a planned serving deployment.

Fields from the Dynamo examples ``examples/backends/<backend>/deploy/disagg.yaml`` (launch-configs.md
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

import yaml

from roofplan.launch import serve_common as sc
from roofplan.launch import trtllm

BACKENDS = {
    "vllm": ("Vllm", "vllm-runtime", "dynamo.vllm"),
    "sglang": ("SGLang", "sglang-runtime", "dynamo.sglang"),
    "trtllm": ("TRTLLM", "tensorrtllm-runtime", "dynamo.trtllm"),
}
IMAGE = "nvcr.io/nvidia/ai-dynamo/{runtime}:<dynamo-version>"


def backend_of(request: dict) -> str:
    e = request.get("engine")
    return e if e in BACKENDS else "vllm"


def _worker_args(backend: str, role: str, c: dict, request: dict, best: dict) -> list[str]:
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
            "--model-path",
            model,
            "--served-model-name",
            model,
            "--extra-engine-args",
            f"/config/{trtllm.config_name(role)}",
        ]
        if role != "colocated":
            args += ["--disaggregation-mode", role]
    return [str(a) for a in args]


def _worker(backend: str, role: str, c: dict, replicas: int, request: dict, best: dict) -> dict:
    prefix, runtime, module = BACKENDS[backend]
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
        "mainContainer": {
            "image": IMAGE.format(runtime=runtime),
            "workingDir": f"/workspace/examples/backends/{backend}",
            "command": ["python3", "-m", module],
            "args": _worker_args(backend, role, c, request, best),
        }
    }
    return svc


def graph(best: dict, request: dict) -> dict:
    """The DynamoGraphDeployment document."""
    backend = backend_of(request)
    prefix, runtime, _ = BACKENDS[backend]
    name = (
        (str(request.get("model") or "model") + "-" + best["mode"])
        .lower()
        .replace(".", "-")
        .replace("_", "-")
    )
    services: dict = {
        "Frontend": {
            "componentType": "frontend",
            "replicas": 1,
            "extraPodSpec": {
                "mainContainer": {
                    "image": IMAGE.format(runtime=runtime),
                    "command": ["python3", "-m", "dynamo.frontend"],
                    "args": ["--http-port", str(sc.ROUTER_PORT), "--router-mode", "kv"],
                }
            },
        }
    }
    if best["mode"] == "colocated":
        services[f"{prefix}Worker"] = _worker(
            backend, "colocated", best["prefill"], best["instances"], request, best
        )
    else:
        services[f"{prefix}PrefillWorker"] = _worker(
            backend, "prefill", best["prefill"], best["prefill"]["instances"], request, best
        )
        services[f"{prefix}DecodeWorker"] = _worker(
            backend, "decode", best["decode"], best["decode"]["instances"], request, best
        )
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": name[:63].strip("-")},
        "spec": {"services": services},
    }


def emit(best: dict, request: dict) -> dict[str, str]:
    head = sc.header(best, request, f"dynamo/{backend_of(request)}")
    doc = graph(best, request)
    files = {
        "dynamo_graph.yaml": sc.comment_block(
            head + ["Apply with: kubectl apply -f dynamo_graph.yaml -n <ns>"]
        )
        + yaml.safe_dump(doc, sort_keys=False)
    }
    if backend_of(request) == "trtllm":
        moe = bool(request.get("moe"))
        roles = ("colocated",) if best["mode"] == "colocated" else ("prefill", "decode")
        for role in roles:
            c = best["prefill"] if role in ("prefill", "colocated") else best["decode"]
            files[f"dynamo_{trtllm.config_name(role)}"] = trtllm.yaml_text(
                trtllm.llm_api_options(role, c, request, moe=moe),
                head + [f"Mount as /config/{trtllm.config_name(role)} for the {role} workers."],
            )
    return files
