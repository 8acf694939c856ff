"""SGLang launch scripts for a planned serving deployment (``python -m sglang.launch_server``, 0.5.x).

Flags from ``docs/advanced_features/server_arguments.md`` (docs/reference/launch-configs.md §5.2). SGLang's
``--tp-size`` counts every GPU of the attention-DP group, so an instance of our ``tp`` x ``dp``
ranks is ``--tp-size tp*dp --dp-size dp --enable-dp-attention``; ``--ep-size`` is EP
(equal to the TP size when experts are fully sharded); ``--pp-size`` the pipeline.
Concurrency is ``--max-running-requests``; the prefill chunk ``--chunked-prefill-size``; prompt
tokens of one prefill batch ``--max-prefill-tokens``; ``--context-length`` isl + osl.

Disaggregation (``docs/advanced_features/pd_disaggregation.md``): ``--disaggregation-mode prefill``
or ``decode``, the KV transfer engine ``--disaggregation-transfer-backend`` (NIXL), a bootstrap
port on each prefill server (``--disaggregation-bootstrap-port``, 8998 + i); decode servers learn
the prefill layout from the bootstrap server (the former ``--disaggregation-decode-tp/-dp`` and
``--disaggregation-prefill-pp`` flags are gone from current releases). The router
``python -m sglang_router.launch_router --pd-disaggregation --prefill URL BOOTSTRAP_PORT ...
--decode URL ...`` listens on 8000. Prefill servers use ports 30000+i, decode 31000+j, colocated
30000+i behind ``sglang_router.launch_router --worker-urls`` when there are several.

Several instances on one host: ``--base-gpu-id`` (first GPU); across nodes: ``--nnodes``,
``--node-rank``, ``--dist-init-addr`` on each node of the instance.
"""

from __future__ import annotations

from roofplan.launch import serve_common as sc
from roofplan.launch import versions

BOOTSTRAP_PORT_BASE = 8998
DIST_INIT_PORT_BASE = 5000


def kv_cache_dtype(kv_dtype: str | None) -> str:
    """SGLang spells FP8 KV as ``fp8_e4m3`` (docs/reference/launch-configs.md §10)."""
    return "fp8_e4m3" if kv_dtype == "fp8" else "auto"


def port(inst: sc.Instance) -> int:
    return {"prefill": 30000, "decode": 31000, "colocated": 30000}[inst.role] + inst.index


def bootstrap_port(inst: sc.Instance) -> int:
    return BOOTSTRAP_PORT_BASE + inst.index


def _parallel(c: dict) -> list:
    argv = ["--tp-size", c["tp"] * c["dp"]]
    if c["dp"] > 1:
        argv += ["--dp-size", c["dp"], "--enable-dp-attention"]
    if c["ep"] > 1:
        argv += ["--ep-size", c["ep"]]
    if c["pp"] > 1:
        argv += ["--pp-size", c["pp"]]
    return argv


def server_argv(inst: sc.Instance, t: int, best: dict, request: dict, k: int) -> list:
    """The launch_server argument vector of node ``t`` of instance ``inst``."""
    c = inst.cfg
    isl = int(request["isl"])
    argv = [
        "python",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "${MODEL}",
        *_parallel(c),
        "--base-gpu-id",
        inst.gpus[t][0],
        "--host",
        "0.0.0.0",
        "--port",
        port(inst),
    ]
    if inst.multi_node:
        argv += [
            "--nnodes",
            len(inst.nodes),
            "--node-rank",
            t,
            "--dist-init-addr",
            f"{sc.node_var(inst.head)}:{DIST_INIT_PORT_BASE + k}",
        ]
    if inst.role == "prefill":
        argv += [
            "--disaggregation-mode",
            "prefill",
            "--disaggregation-transfer-backend",
            "nixl",
            "--disaggregation-bootstrap-port",
            bootstrap_port(inst),
        ]
        argv += [
            "--max-running-requests",
            c["batch"],
            "--max-prefill-tokens",
            max(c["batch"] * isl, isl),
            "--chunked-prefill-size",
            max(c["batch"] * isl, isl),
        ]
    elif inst.role == "decode":
        argv += ["--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "nixl"]
        argv += ["--max-running-requests", c["batch"]]
    else:
        argv += ["--max-running-requests", c["batch"], "--chunked-prefill-size", c["chunk"]]
    argv += [
        "--mem-fraction-static",
        sc.memory_fraction(request),
        "--context-length",
        sc.max_model_len(request),
        "--kv-cache-dtype",
        kv_cache_dtype(request.get("kv_dtype")),
    ]
    if not sc.prefix_caching(request):
        argv += ["--disable-radix-cache"]
    argv += sc.sglang_spec_argv(request)
    if request.get("dtype") == "fp8":
        argv += ["--quantization", "fp8"]
    return argv


def router_argv(best: dict) -> list | None:
    insts = sc.instances(best)
    argv = ["python", "-m", "sglang_router.launch_router"]
    if best["mode"] == "disagg":
        argv += ["--pd-disaggregation"]
        for i in insts:
            if i.role == "prefill":
                argv += ["--prefill", f"http://{sc.node_var(i.head)}:{port(i)}", bootstrap_port(i)]
        for i in insts:
            if i.role == "decode":
                argv += ["--decode", f"http://{sc.node_var(i.head)}:{port(i)}"]
    else:
        if len(insts) == 1:
            return None
        argv += ["--worker-urls", *[f"http://{sc.node_var(i.head)}:{port(i)}" for i in insts]]
    return argv + ["--host", "0.0.0.0", "--port", sc.ROUTER_PORT]


def emit(best: dict, request: dict, target: str | None = None) -> dict[str, str]:
    """{file name: text}: one script per node, ``sglang_router.sh`` when a router is needed, and a
    README section."""
    target = target or versions.default_version("sglang")
    head = sc.header(best, request, "sglang") + [f"Written for SGLang {target}."]
    pre = [sc.model_default(request), *sc.node_defaults(best)]
    per_node: dict[int, list[str]] = {}
    for k, inst in enumerate(sc.instances(best)):
        for t, node in enumerate(inst.nodes):
            where = f"node {node}" + (f", rank {t} of {len(inst.nodes)}" if inst.multi_node else "")
            per_node.setdefault(node, []).extend(
                [
                    f"# {inst.role} instance {inst.index}: {where}, GPUs {','.join(map(str, inst.gpus[t]))}",
                    sc.argv_lines(server_argv(inst, t, best, request, k)) + " &",
                ]
            )
    files = {
        f"sglang_node{n}.sh": sc.script(head + [f"Run on node {n}."], pre + [""] + lines + ["wait"])
        for n, lines in sorted(per_node.items())
    }
    r = router_argv(best)
    if r is not None:
        files["sglang_router.sh"] = sc.script(
            head + ["Run on node 0 (or any host reaching every instance)."], pre + ["", sc.argv_lines(r)]
        )
    steps = ["On every node n: `bash sglang_node<n>.sh` (MODEL set; NODE<n> = each node's address)."]
    if r is not None:
        steps.append("Then on node 0: `bash sglang_router.sh` (pip package sglang-router).")
    entry = sc.ROUTER_PORT if r is not None else port(sc.instances(best)[0])
    files[sc.bench_name("sglang")] = sc.benchmark_script(best, request, "sglang", entry)
    steps.append(
        f"Send requests to port {entry}; `bash {sc.bench_name('sglang')}` measures the deployment at the plan's "
        "lengths and concurrency (vllm bench serve against the OpenAI API)."
    )
    files["README.md"] = sc.readme("SGLang", target, best, request, steps)
    return files
