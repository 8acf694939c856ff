"""vLLM launch scripts for a planned serving deployment (``vllm serve``, vLLM V1 ~0.11).

Flags from ``vllm/engine/arg_utils.py`` (docs/reference/launch-configs.md §4.2):
``--tensor-parallel-size``, ``--pipeline-parallel-size``, ``--data-parallel-size`` (MoE attention
DP; EP = TP x DP with ``--enable-expert-parallel``, there is no EP-size flag), ``--max-num-seqs``
(concurrency), ``--max-num-batched-tokens`` (token budget per step = prefill chunk + decodes; both
are per DP engine core, so the planned totals are divided by ``dp``),
``--max-model-len``, ``--gpu-memory-utilization``, ``--kv-cache-dtype``.

Disaggregation (§4.4, ``docs/features/nixl_connector_usage.md``): every prefill instance is a KV
producer and every decode instance a KV consumer through ``--kv-transfer-config`` with the
NixlConnector (``kv_load_failure_policy`` set explicitly, its default changed between versions);
each instance gets its own ``VLLM_NIXL_SIDE_CHANNEL_PORT`` on its host (5600 + a slot, with room
for one port per DP rank). Clients talk to the proxy shipped in the vLLM source tree
(``tests/v1/kv_connector/nixl_integration/toy_proxy_server.py``) on port 8000, which sends each
request to a prefiller then a decoder. Prefill instances listen on 8100+i, decode on 8200+j,
colocated ones on 8000+i (8000 when there is one).

Instances spanning nodes: attention-DP ranks are spread with ``--data-parallel-size-local``,
``--data-parallel-start-rank``, ``--data-parallel-address``/``--data-parallel-rpc-port`` and
``--headless`` on the secondary nodes; a TP x PP group wider than one node runs on a Ray cluster
(``--distributed-executor-backend ray``) started on its nodes.

One script per node (``vllm_node<n>.sh``) plus ``vllm_proxy.sh`` for disaggregation; several
colocated instances sit behind an nginx router (``router_nginx.conf``, ``vllm_router.sh``) on 8000.
"""

from __future__ import annotations

import json

from roofplan.launch import serve_common as sc
from roofplan.launch import versions

PROXY_SCRIPT = "tests/v1/kv_connector/nixl_integration/toy_proxy_server.py"
NIXL_PORT_BASE = 5600
DP_RPC_PORT_BASE = 13345


def kv_cache_dtype(kv_dtype: str | None) -> str:
    """vLLM ``--kv-cache-dtype``: ``auto`` keeps the model dtype (bf16/fp16)."""
    return {"fp8": "fp8", "int8": "int8"}.get(kv_dtype or "", "auto")


port = sc.instance_port


def kv_transfer_config(role: str) -> str:
    doc = {
        "kv_connector": "NixlConnector",
        "kv_role": "kv_producer" if role == "prefill" else "kv_consumer",
        "kv_load_failure_policy": "fail",
    }
    return json.dumps(doc, separators=(",", ":"))


def _engine_flags(inst: sc.Instance, request: dict) -> list:
    c = inst.cfg
    isl = int(request["isl"])
    argv = ["--tensor-parallel-size", c["tp"], "--pipeline-parallel-size", c["pp"]]
    if c["dp"] > 1:
        argv += ["--data-parallel-size", c["dp"]]
    if c["ep"] > 1:
        argv += ["--enable-expert-parallel"]
    dp = c["dp"]
    seqs = -(-c["batch"] // dp)  # each DP engine core schedules its own share (per-engine limits)
    if inst.role == "prefill":
        budget = max(seqs * isl, isl)
    elif inst.role == "decode":
        budget = max(seqs, isl)  # decodes only; room for a local re-prefill after a failed KV load
    else:
        budget = -(-c["max_num_batched_tokens"] // dp)
    argv += [
        "--max-num-seqs",
        seqs,
        "--max-num-batched-tokens",
        budget,
        "--max-model-len",
        sc.max_model_len(request),
        "--gpu-memory-utilization",
        sc.memory_fraction(request),
        "--kv-cache-dtype",
        kv_cache_dtype(request.get("kv_dtype")),
    ]
    if request.get("dtype") == "fp8":
        argv += ["--quantization", "fp8"]
    argv += [
        "--enable-chunked-prefill",
        "--enable-prefix-caching" if sc.prefix_caching(request) else "--disable-prefix-caching",
    ]
    argv += sc.vllm_spec_argv(request)
    if inst.role in ("prefill", "decode"):
        argv += ["--kv-transfer-config", kv_transfer_config(inst.role)]
    return argv


def commands(best: dict, request: dict) -> dict[int, list[str]]:
    """Shell command text per node number."""
    insts = sc.instances(best)
    n_colo = sum(1 for i in insts if i.role == "colocated")
    per_node: dict[int, list[str]] = {}
    slot: dict[int, int] = {}
    for k, inst in enumerate(insts):
        c = inst.cfg
        label = {
            "prefill": "prefill (KV producer)",
            "decode": "decode (KV consumer)",
            "colocated": "colocated",
        }[inst.role]
        ranks_per_node = max(1, len(inst.gpus[0]) // (c["tp"] * c["pp"]))
        dp_split = inst.multi_node and c["dp"] > 1 and c["tp"] * c["pp"] <= len(inst.gpus[0])
        for t, node in enumerate(inst.nodes):
            if inst.multi_node and not dp_split and t > 0:
                continue  # Ray places the workers of the other nodes
            s = slot.get(node, 0)
            slot[node] = s + 1
            env = [f"CUDA_VISIBLE_DEVICES={','.join(map(str, inst.gpus[t]))}"]
            if inst.role in ("prefill", "decode"):
                env += [
                    f"VLLM_NIXL_SIDE_CHANNEL_PORT={NIXL_PORT_BASE + 16 * s}",
                    f"VLLM_NIXL_SIDE_CHANNEL_HOST={sc.node_var(node)}",
                    "UCX_NET_DEVICES=all",
                ]
            argv = env + ["vllm", "serve", "${MODEL}", "--host", "0.0.0.0", "--port", port(inst, n_colo)]
            argv += _engine_flags(inst, request)
            if dp_split:
                argv += [
                    "--data-parallel-size-local",
                    ranks_per_node,
                    "--data-parallel-start-rank",
                    t * ranks_per_node,
                    "--data-parallel-address",
                    sc.node_var(inst.head),
                    "--data-parallel-rpc-port",
                    DP_RPC_PORT_BASE + k,
                ]
                if t > 0:
                    argv += ["--headless"]
            elif inst.multi_node:
                argv += ["--distributed-executor-backend", "ray"]
            where = f"node {node}" + (
                f" ({t + 1}/{len(inst.nodes)} of this instance)" if inst.multi_node else ""
            )
            lines = [f"# {label} instance {inst.index}: {where}, GPUs {','.join(map(str, inst.gpus[t]))}"]
            if inst.multi_node and not dp_split:
                lines.append(
                    "# start a Ray cluster on nodes "
                    + ", ".join(map(str, inst.nodes))
                    + " first (ray start --head here, ray start --address on the others)"
                )
            lines.append(sc.argv_lines(argv) + " &")
            per_node.setdefault(node, []).extend(lines)
    return per_node


def proxy_argv(best: dict) -> list:
    insts = [i for i in sc.instances(best) if i.role in ("prefill", "decode")]
    pre = [i for i in insts if i.role == "prefill"]
    dec = [i for i in insts if i.role == "decode"]
    return [
        "python",
        PROXY_SCRIPT,
        "--host",
        "0.0.0.0",
        "--port",
        sc.ROUTER_PORT,
        "--prefiller-hosts",
        *[sc.node_var(i.head) for i in pre],
        "--prefiller-ports",
        *[port(i) for i in pre],
        "--decoder-hosts",
        *[sc.node_var(i.head) for i in dec],
        "--decoder-ports",
        *[port(i) for i in dec],
    ]


def emit(best: dict, request: dict, target: str | None = None) -> dict[str, str]:
    """{file name: text}: one script per node, the proxy (disaggregation) or router (several
    colocated instances), and a README section."""
    target = target or versions.default_version("vllm")
    head = sc.header(best, request, "vllm") + [f"Written for vLLM {target}."]
    pre = [sc.model_default(request), *sc.node_defaults(best)]
    files = {}
    for node, lines in sorted(commands(best, request).items()):
        files[f"vllm_node{node}.sh"] = sc.script(
            head + [f"Run on node {node}."], pre + [""] + lines + ["wait"]
        )
    if best["mode"] == "disagg":
        body = pre + [
            "",
            f"# clients send OpenAI-compatible requests to port {sc.ROUTER_PORT}",
            sc.argv_lines(proxy_argv(best)),
        ]
        files["vllm_proxy.sh"] = sc.script(
            head + ["Run on node 0 (or any host reaching every instance)."], body
        )
    insts = sc.instances(best)
    n_colo = sum(1 for i in insts if i.role == "colocated")
    steps = ["On every node n: `bash vllm_node<n>.sh` (MODEL set; NODE<n> = each node's address)."]
    if best["mode"] == "disagg":
        steps.append(f"Then on node 0: `bash vllm_proxy.sh` (needs vLLM's source tree for {PROXY_SCRIPT}).")
    elif n_colo > 1:
        urls = [f"{sc.node_host(i.head, best)}:{port(i, n_colo)}" for i in insts]
        files.update(sc.nginx_router_files(best, urls, "vllm", head))
        steps.append(
            f"Then on node 0: `bash vllm_router.sh` (nginx; edit the hosts in {sc.ROUTER_CONF} "
            "if the nodes are not reachable as node<n>)."
        )
    files[sc.bench_name("vllm")] = sc.benchmark_script(
        best, request, "vllm", port(insts[0], n_colo) if n_colo == 1 else sc.ROUTER_PORT
    )
    steps.append(
        f"Send requests to port {sc.ROUTER_PORT}; `bash {sc.bench_name('vllm')}` measures the deployment at the "
        "plan's lengths and concurrency (vllm bench serve)."
    )
    files["README.md"] = sc.readme("vLLM", target, best, request, steps)
    return files
