"""TensorRT-LLM launch files for a planned serving deployment (``trtllm-serve``, PyTorch backend).

Names from ``tensorrt_llm/commands/serve.py`` and the LLM-API YAML (docs/reference/launch-configs.md §6.2-§6.4,
top-level ``max_*`` keys of TRT-LLM >= 1.2.0rc5). TRT-LLM's tensor-parallel group contains the
attention-DP ranks (``enable_attention_dp`` makes attention data parallel over the whole TP
group), and MoE layers split it as ``moe_tensor_parallel_size x moe_expert_parallel_size`` = TP
(§10.1): our ``tp`` x ``dp`` ranks are ``tensor_parallel_size = tp*dp``, EP ``ep``.

Files:
* ``trtllm_<role>.yaml``: the LLM-API options of each role (``--config``): parallel sizes,
  ``max_batch_size``, ``max_num_tokens``, ``max_seq_len``, ``kv_cache_config``; context (prefill)
  servers disable the overlap scheduler and every disaggregated server has a
  ``cache_transceiver_config`` (§6.6 example).
* ``trtllm_disagg.yaml``: the proxy (``trtllm-serve disaggregated -c``) with the context and
  generation server URLs (host:port; hosts ``node<n>`` or ``localhost`` literally).
* ``trtllm_node<n>.sh``: the ``trtllm-serve`` commands per node; an instance spanning nodes is
  started once through Slurm (``srun --mpi=pmix ... trtllm-llmapi-launch``, §6.6).
Prefill servers listen on 8100+i, generation servers on 8200+j, colocated on 8000(+1+i).
"""

from __future__ import annotations

import yaml

from roofplan.launch import serve_common as sc
from roofplan.launch import versions


def _host(n: int, best: dict) -> str:
    h = sc.node_host(n, best)
    return "localhost" if h == "127.0.0.1" else h


port = sc.instance_port


def batch_per_rank(c: dict) -> int:
    """``max_batch_size``: with attention DP every rank schedules its own requests."""
    return -(-c["batch"] // c["dp"])


def max_num_tokens(role: str, c: dict, request: dict) -> int:
    """Tokens one iteration of one rank may carry: a whole prefill pass, the decodes, or chunk +
    decodes (the planned instance totals divided over the attention-DP ranks)."""
    isl = int(request["isl"])
    if role == "prefill":
        return max(batch_per_rank(c) * isl, isl)
    if role == "decode":
        return max(batch_per_rank(c), 256)
    return -(-int(c["max_num_batched_tokens"]) // c["dp"])


def llm_api_options(role: str, c: dict, request: dict, *, moe: bool) -> dict:
    """The LLM-API YAML document of one role."""
    tp_group = c["tp"] * c["dp"]
    doc: dict = {"backend": "pytorch", "tensor_parallel_size": tp_group, "pipeline_parallel_size": c["pp"]}
    if moe:
        doc["moe_expert_parallel_size"] = c["ep"]
        doc["moe_tensor_parallel_size"] = tp_group // c["ep"]
    doc["enable_attention_dp"] = c["dp"] > 1
    doc["max_batch_size"] = batch_per_rank(c)
    doc["max_num_tokens"] = max_num_tokens(role, c, request)
    doc["max_seq_len"] = sc.max_model_len(request)
    doc["enable_chunked_prefill"] = role == "colocated" and c.get("chunk", 0) < int(request["isl"])
    doc["kv_cache_config"] = {
        "free_gpu_memory_fraction": sc.memory_fraction(request, of_free=True),
        "dtype": "fp8" if request.get("kv_dtype") == "fp8" else "auto",
        "enable_block_reuse": sc.prefix_caching(request),
    }
    spec = sc.trtllm_spec_config(request)
    if spec is not None:
        doc["speculative_config"] = spec
    if role in ("decode", "colocated"):
        doc["cuda_graph_config"] = {"enable_padding": True, "max_batch_size": batch_per_rank(c)}
    if role == "prefill":
        doc["disable_overlap_scheduler"] = True
    if role in ("prefill", "decode"):
        doc["cache_transceiver_config"] = {
            "backend": "DEFAULT",
            "max_tokens_in_buffer": sc.max_model_len(request),
        }
    return doc


def yaml_text(doc: dict, head: list[str]) -> str:
    return sc.comment_block(head) + yaml.safe_dump(doc, sort_keys=False)


def config_name(role: str) -> str:
    return f"trtllm_{role}.yaml"


def serve_argv(inst: sc.Instance, request: dict, n_colo: int) -> list:
    c = inst.cfg
    argv = [
        "trtllm-serve",
        "${MODEL}",
        "--host",
        "0.0.0.0",
        "--port",
        port(inst, n_colo),
        "--backend",
        "pytorch",
        "--tp_size",
        c["tp"] * c["dp"],
        "--pp_size",
        c["pp"],
    ]
    if c["ep"] > 1:
        argv += ["--ep_size", c["ep"]]
    argv += [
        "--max_batch_size",
        batch_per_rank(c),
        "--max_num_tokens",
        max_num_tokens(inst.role, c, request),
        "--max_seq_len",
        sc.max_model_len(request),
        "--config",
        config_name(inst.role),
    ]
    return argv


def _instance_lines(inst, request: dict, n_colo: int) -> list[str]:
    """The lines of the head node's script that start one instance: a comment naming its nodes
    and GPUs, then trtllm-serve in the background, under ``srun`` with ``trtllm-llmapi-launch``
    when the instance spans nodes (one MPI task per GPU), else on its node's GPUs."""
    argv = serve_argv(inst, request, n_colo)
    if inst.multi_node:
        hosts = ",".join(sc.node_var(n) for n in inst.nodes)
        argv = [
            "srun",
            "-N",
            len(inst.nodes),
            f"--ntasks-per-node={len(inst.gpus[0])}",
            "--mpi=pmix",
            sc.Raw(f'--nodelist="{hosts}"'),
            "trtllm-llmapi-launch",
            *argv,
        ]
    else:
        argv = [f"CUDA_VISIBLE_DEVICES={','.join(map(str, inst.gpus[0]))}", *argv]
    where = f"nodes {', '.join(map(str, inst.nodes))}" if inst.multi_node else f"node {inst.head}"
    return [
        f"# {inst.role} instance {inst.index}: {where}, GPUs {','.join(map(str, inst.gpus[0]))}",
        sc.argv_lines(argv) + " &",
    ]


def _proxy_config(best: dict, insts) -> dict:
    """The ``trtllm-serve disaggregated`` proxy configuration: the context (prefill) and
    generation (decode) servers' URLs, serving on the router port."""
    return {
        "hostname": "0.0.0.0",
        "port": sc.ROUTER_PORT,
        "backend": "pytorch",
        "context_servers": {
            "num_instances": best["prefill"]["instances"],
            "urls": [f"{_host(i.head, best)}:{port(i)}" for i in insts if i.role == "prefill"],
        },
        "generation_servers": {
            "num_instances": best["decode"]["instances"],
            "urls": [f"{_host(i.head, best)}:{port(i)}" for i in insts if i.role == "decode"],
        },
    }


def emit(best: dict, request: dict, target: str | None = None) -> dict[str, str]:
    """LLM-API YAMLs, one script per node, the proxy (disaggregation) or an nginx router (several
    colocated instances: trtllm-serve has no replica router), and a README section."""
    target = target or versions.default_version("trtllm")
    head = sc.header(best, request, "trtllm") + [f"Written for TensorRT-LLM {target}."]
    moe = bool(request.get("moe"))
    files: dict[str, str] = {}
    roles = ("colocated",) if best["mode"] == "colocated" else ("prefill", "decode")
    for role in roles:
        c = best["prefill"] if role in ("prefill", "colocated") else best["decode"]
        files[config_name(role)] = yaml_text(
            llm_api_options(role, c, request, moe=moe),
            head + [f"LLM-API options of the {role} servers (--config)."],
        )
    insts = sc.instances(best)
    n_colo = sum(1 for i in insts if i.role == "colocated")
    per_node: dict[int, list[str]] = {}
    for inst in insts:
        per_node.setdefault(inst.head, []).extend(_instance_lines(inst, request, n_colo))
    if best["mode"] == "disagg":
        files["trtllm_disagg.yaml"] = yaml_text(
            _proxy_config(best, insts), head + ["Proxy: trtllm-serve disaggregated -c trtllm_disagg.yaml"]
        )
        per_node.setdefault(0, []).extend(
            [
                f"# the disaggregated proxy (clients use port {sc.ROUTER_PORT})",
                "trtllm-serve disaggregated -c trtllm_disagg.yaml &",
            ]
        )
    pre = [sc.model_default(request), *sc.node_defaults(best)]
    for n, lines in sorted(per_node.items()):
        files[f"trtllm_node{n}.sh"] = sc.script(
            head + [f"Run on node {n}, next to the trtllm_*.yaml files."], pre + [""] + lines + ["wait"]
        )
    steps = [
        "Copy the trtllm_*.yaml files next to the scripts on every node.",
        "On every node n with a script: `bash trtllm_node<n>.sh` (MODEL set; an instance spanning "
        "nodes is started once, through srun, from its first node).",
    ]
    if best["mode"] == "disagg":
        steps.append("Node 0's script also starts the disaggregated proxy (trtllm_disagg.yaml).")
    elif n_colo > 1:
        urls = [f"{_host(i.head, best)}:{port(i, n_colo)}" for i in insts]
        files.update(sc.nginx_router_files(best, urls, "trtllm", head))
        steps.append(f"Then on node 0: `bash trtllm_router.sh` (nginx; hosts in {sc.ROUTER_CONF}).")
    files[sc.bench_name("trtllm")] = sc.benchmark_script(best, request, "trtllm")
    steps.append(
        f"Send requests to port {sc.ROUTER_PORT}; `bash {sc.bench_name('trtllm')}` measures the deployment at the "
        "plan's lengths and concurrency (vllm bench serve against the OpenAI API)."
    )
    files["README.md"] = sc.readme("TensorRT-LLM", target, best, request, steps)
    return files
