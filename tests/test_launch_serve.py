"""Serving launch emitters: parse the generated vLLM / SGLang scripts (shlex) and the TensorRT-LLM /
Dynamo YAML and check roles, degrees, sizes, GPUs and ports against the plan they were made from."""

import json
import re
import shlex

import pytest
import yaml

from roofplan.launch import dynamo, sglang, trtllm, vllm
from roofplan.solver.serve_planner import placement

REQUEST = {
    "model": "llama-3.1-70b",
    "model_id": "meta-llama/Llama-3.1-70B",
    "moe": False,
    "isl": 4000,
    "osl": 500,
    "engine": "vllm",
    "dtype": "bf16",
    "kv_dtype": "fp8",
    "memory_reserve_fraction": 0.1,
    "reserve_of_free": False,
}


def _role(tp, pp=1, dp=1, ep=1, batch=1, instances=1, hw="h100-sxm", **extra):
    d = {
        "tp": tp,
        "pp": pp,
        "dp": dp,
        "ep": ep,
        "batch": batch,
        "instances": instances,
        "gpus_per_instance": tp * pp * dp,
        "hardware": hw,
        "devices_per_node": 8,
    }
    d.update(extra)
    return d


def _disagg(p, d):
    best = {
        "mode": "disagg",
        "prefill": p,
        "decode": d,
        "ratio": f"{p['instances']}P{d['instances']}D",
        "ttft_ms": 812.5,
        "tpot_ms": 23.4,
        "output_tokens_per_s": 4000.0,
        "output_tokens_per_s_per_gpu": 250.0,
        "goodput_rps": 8.0,
        "gpus": p["instances"] * p["gpus_per_instance"] + d["instances"] * d["gpus_per_instance"],
    }
    best["placement"] = placement(best)
    return best


def _colocated(c):
    best = {
        "mode": "colocated",
        "prefill": c,
        "decode": dict(c),
        "ratio": None,
        "instances": c["instances"],
        "ttft_ms": 400.0,
        "tpot_ms": 28.0,
        "output_tokens_per_s": 3000.0,
        "output_tokens_per_s_per_gpu": 190.0,
        "goodput_rps": 6.0,
        "gpus": c["instances"] * c["gpus_per_instance"],
    }
    best["placement"] = placement(best)
    return best


def commands(text: str, program: list[str]) -> list[list[str]]:
    """Every command of a bash script that runs ``program`` (continuations joined), as argv with
    its ``VAR=value`` prefixes."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        if line.lstrip().startswith("#"):
            continue
        argv = shlex.split(line)
        if argv and argv[-1] == "&":
            argv = argv[:-1]
        k = 0
        while k < len(argv) and "=" in argv[k] and not argv[k].startswith("-"):
            k += 1
        if argv[k : k + len(program)] == program:
            out.append(argv)
    return out


def flag(argv, name, n=1):
    i = argv.index(name)
    return argv[i + 1] if n == 1 else argv[i + 1 : i + 1 + n]


def env(argv) -> dict:
    e = {}
    for a in argv:
        if "=" in a and not a.startswith("-"):
            k, v = a.split("=", 1)
            if k.isupper():
                e[k] = v
                continue
        break
    return e


def values_after(argv, name):
    """All values following ``name`` up to the next --flag."""
    i = argv.index(name) + 1
    out = []
    while i < len(argv) and not argv[i].startswith("--"):
        out.append(argv[i])
        i += 1
    return out


# 3 prefill TP2 + 1 decode TP4: 10 GPUs, fits 2 nodes; first-fit-decreasing: node0 = D0 + P0 + P1, node1 = P2
BEST = _disagg(_role(2, batch=2, instances=3, ttft_ms=780.0), _role(4, batch=96, instances=1, tpot_ms=23.4))


def test_placement_uses_each_gpu_once_and_fills_nodes():
    seen = set()
    for e in BEST["placement"]:
        for node, gpus in zip(e["nodes"], e["gpus"]):
            for g in gpus:
                assert (node, g) not in seen
                seen.add((node, g))
    assert len(seen) == 10
    assert {n for n, _ in seen} == {0, 1}  # ceil(10 / 8) nodes


def test_vllm_disagg_roles_sizes_and_ports():
    files = vllm.emit(BEST, REQUEST)
    assert set(files) == {"vllm_node0.sh", "vllm_node1.sh", "vllm_proxy.sh", "README.md", "benchmark_vllm.sh"}
    serves = {n: commands(files[f"vllm_node{n}.sh"], ["vllm", "serve"]) for n in (0, 1)}
    roles = {"kv_producer": [], "kv_consumer": []}
    for node, cmds in serves.items():
        gpus_on_node, ports, side = set(), set(), set()
        for argv in cmds:
            cfg = json.loads(flag(argv, "--kv-transfer-config"))
            assert cfg["kv_connector"] == "NixlConnector"
            tp = int(flag(argv, "--tensor-parallel-size"))
            e = env(argv)
            devs = [int(g) for g in e["CUDA_VISIBLE_DEVICES"].split(",")]
            assert len(devs) == tp * int(flag(argv, "--pipeline-parallel-size"))
            assert not gpus_on_node & set(devs)
            gpus_on_node |= set(devs)
            port = int(flag(argv, "--port"))
            assert port not in ports and e["VLLM_NIXL_SIDE_CHANNEL_PORT"] not in side
            ports.add(port)
            side.add(e["VLLM_NIXL_SIDE_CHANNEL_PORT"])
            roles[cfg["kv_role"]].append((node, port, tp, int(flag(argv, "--max-num-seqs"))))
            assert flag(argv, "--max-model-len") == "4500"
            assert flag(argv, "--kv-cache-dtype") == "fp8"
    assert sorted(t for *_, t, _ in roles["kv_producer"]) == [2, 2, 2]
    assert [(t, b) for _, _, t, b in roles["kv_consumer"]] == [(4, 96)]
    # the proxy names every prefiller and decoder with the right host variable and port
    (proxy,) = commands(files["vllm_proxy.sh"], ["python"])
    pre = list(
        zip(values_after(proxy, "--prefiller-hosts"), map(int, values_after(proxy, "--prefiller-ports")))
    )
    dec = list(zip(values_after(proxy, "--decoder-hosts"), map(int, values_after(proxy, "--decoder-ports"))))
    assert sorted(pre) == sorted((f"${{NODE{n}}}", p) for n, p, *_ in roles["kv_producer"])
    assert dec == [(f"${{NODE{n}}}", p) for n, p, *_ in roles["kv_consumer"]]
    assert flag(proxy, "--port") == "8000"


def test_sglang_disagg_roles_bootstrap_and_router():
    files = sglang.emit(BEST, REQUEST)
    servers = []
    for name, text in files.items():
        if name.startswith("sglang_node"):
            node = int(name[len("sglang_node") : -3])
            servers += [(node, a) for a in commands(text, ["python", "-m", "sglang.launch_server"])]
    prefill = [(n, a) for n, a in servers if flag(a, "--disaggregation-mode") == "prefill"]
    decode = [(n, a) for n, a in servers if flag(a, "--disaggregation-mode") == "decode"]
    assert len(prefill) == 3 and len(decode) == 1
    for _, a in prefill:
        assert flag(a, "--tp-size") == "2"
        # decode learns the prefill layout from the bootstrap server: the removed flags stay out
        assert not {"--disaggregation-decode-tp", "--disaggregation-decode-dp"} & set(a)
    assert flag(decode[0][1], "--tp-size") == "4" and flag(decode[0][1], "--max-running-requests") == "96"
    assert flag(decode[0][1], "--kv-cache-dtype") == "fp8_e4m3"
    # GPUs of instances on one node do not overlap (base-gpu-id + tp-size)
    for node in {n for n, _ in servers}:
        used = []
        for n, a in servers:
            if n == node:
                base, size = int(flag(a, "--base-gpu-id")), int(flag(a, "--tp-size"))
                used += list(range(base, base + size))
        assert len(used) == len(set(used)) and max(used) < 8
    (router,) = commands(files["sglang_router.sh"], ["python", "-m", "sglang_router.launch_router"])
    assert "--pd-disaggregation" in router
    routed = [(router[i + 1], int(router[i + 2])) for i, a in enumerate(router) if a == "--prefill"]
    expect = [
        (f"http://${{NODE{n}}}:{flag(a, '--port')}", int(flag(a, "--disaggregation-bootstrap-port")))
        for n, a in prefill
    ]
    assert sorted(routed) == sorted(expect)
    assert len({p for _, p in expect}) == 3  # distinct bootstrap ports
    decodes = [router[i + 1] for i, a in enumerate(router) if a == "--decode"]
    assert decodes == [f"http://${{NODE{decode[0][0]}}}:{flag(decode[0][1], '--port')}"]


def test_trtllm_yaml_and_proxy():
    files = trtllm.emit(BEST, REQUEST)
    ctx = yaml.safe_load(files["trtllm_prefill.yaml"])
    gen = yaml.safe_load(files["trtllm_decode.yaml"])
    assert ctx["tensor_parallel_size"] == 2 and gen["tensor_parallel_size"] == 4
    assert ctx["disable_overlap_scheduler"] is True and "cache_transceiver_config" in gen
    assert gen["max_batch_size"] == 96 and ctx["max_num_tokens"] == 2 * 4000
    assert ctx["kv_cache_config"]["dtype"] == "fp8" and ctx["max_seq_len"] == 4500
    proxy = yaml.safe_load(files["trtllm_disagg.yaml"])
    assert proxy["context_servers"]["num_instances"] == 3 == len(proxy["context_servers"]["urls"])
    assert proxy["generation_servers"]["num_instances"] == 1 == len(proxy["generation_servers"]["urls"])
    serves = [
        a
        for n, t in files.items()
        if n.endswith(".sh")
        for a in commands(t, ["trtllm-serve"])
        if a[a.index("trtllm-serve") + 1] != "disaggregated"
    ]
    ports = sorted(int(flag(a, "--port")) for a in serves)
    urls = proxy["context_servers"]["urls"] + proxy["generation_servers"]["urls"]
    assert sorted(int(u.rsplit(":", 1)[1]) for u in urls) == ports
    for text in files.values():
        assert "TTFT 812.5 ms" in text and "TPOT 23.40 ms" in text  # predictions carried in every file


def test_dynamo_graph_replicas_and_gpus():
    files = dynamo.emit(BEST, REQUEST, "1.3")
    doc = yaml.safe_load(files["dynamo_graph.yaml"])
    assert doc["kind"] == "DynamoGraphDeployment" and doc["apiVersion"] == "nvidia.com/v1alpha1"
    svc = doc["spec"]["services"]
    assert (
        svc["VllmPrefillWorker"]["replicas"] == 3
        and svc["VllmPrefillWorker"]["subComponentType"] == "prefill"
    )
    assert (
        svc["VllmDecodeWorker"]["replicas"] == 1
        and svc["VllmDecodeWorker"]["resources"]["limits"]["gpu"] == "4"
    )
    args = svc["VllmPrefillWorker"]["extraPodSpec"]["mainContainer"]["args"]
    assert flag(args, "--disaggregation-mode") == "prefill" and flag(args, "--tensor-parallel-size") == "2"
    gpus = sum(
        s["replicas"] * int(s["resources"]["limits"]["gpu"]) * s.get("multinode", {}).get("nodeCount", 1)
        for s in svc.values()
        if s["componentType"] == "worker"
    )
    assert gpus == BEST["gpus"]


def test_multi_node_moe_instances():
    # DeepSeek-style: prefill tp1 x dp8 (EP8, one node), decode tp1 x dp16 (EP16, two nodes)
    req = dict(REQUEST, model="deepseek-v3", model_id="deepseek-ai/DeepSeek-V3", moe=True, engine="sglang")
    best = _disagg(
        _role(1, dp=8, ep=8, batch=16, instances=2), _role(1, dp=16, ep=16, batch=1024, instances=1)
    )
    files = sglang.emit(best, req)
    servers = [
        a
        for n, t in files.items()
        if n.startswith("sglang_node")
        for a in commands(t, ["python", "-m", "sglang.launch_server"])
    ]
    dec = [a for a in servers if flag(a, "--disaggregation-mode") == "decode"]
    assert len(dec) == 2  # one per node of the 16-GPU instance
    assert sorted(flag(a, "--node-rank") for a in dec) == ["0", "1"]
    for a in dec:
        assert flag(a, "--tp-size") == "16" and flag(a, "--dp-size") == "16" and "--enable-dp-attention" in a
        assert flag(a, "--ep-size") == "16" and flag(a, "--nnodes") == "2"
    assert len({flag(a, "--dist-init-addr") for a in dec}) == 1
    vfiles = vllm.emit(best, req)
    vdec = [
        a
        for n, t in vfiles.items()
        if n.endswith(".sh")
        for a in commands(t, ["vllm", "serve"])
        if json.loads(flag(a, "--kv-transfer-config"))["kv_role"] == "kv_consumer"
    ]
    assert len(vdec) == 2
    assert sorted(flag(a, "--data-parallel-start-rank") for a in vdec) == ["0", "8"]
    assert all(flag(a, "--data-parallel-size") == "16" and "--enable-expert-parallel" in a for a in vdec)
    assert sum("--headless" in a for a in vdec) == 1
    tfiles = trtllm.emit(best, req)
    (srun,) = [a for n, t in tfiles.items() if n.endswith(".sh") for a in commands(t, ["srun"])]
    assert flag(srun, "-N") == "2" and "trtllm-llmapi-launch" in srun
    nodes = next(a for a in srun if a.startswith("--nodelist=")).split("=", 1)[1].split(",")
    dec_nodes = [e["nodes"] for e in best["placement"] if e["role"] == "decode"][0]
    assert nodes == [f"${{NODE{n}}}" for n in dec_nodes]  # expandable by the shell, not single-quoted
    assert "'--nodelist" not in "".join(tfiles.values())
    gen = yaml.safe_load(tfiles["trtllm_decode.yaml"])
    assert gen["tensor_parallel_size"] == 16 and gen["enable_attention_dp"] is True
    assert gen["moe_expert_parallel_size"] * gen["moe_tensor_parallel_size"] == 16
    graph = yaml.safe_load(dynamo.emit(best, req, "1.3")["dynamo_graph.yaml"])
    dw = graph["spec"]["services"]["SGLangDecodeWorker"]
    assert dw["multinode"]["nodeCount"] == 2 and dw["resources"]["limits"]["gpu"] == "8"


def test_colocated_instances_and_router():
    best = _colocated(
        _role(4, batch=24, instances=4, chunk=512, max_num_batched_tokens=536, ttft_ms=400.0, tpot_ms=28.0)
    )
    files = vllm.emit(best, REQUEST)
    serves = [a for n, t in files.items() if n.endswith(".sh") for a in commands(t, ["vllm", "serve"])]
    assert len(serves) == 4 and "vllm_proxy.sh" not in files
    # several colocated instances: the router on the advertised port lists every instance's port
    conf = files["router_nginx.conf"]
    assert f"listen {8000};" in conf
    assert sorted(int(x) for x in re.findall(r"server [^:;]+:(\d+);", conf)) == sorted(
        int(flag(a, "--port")) for a in serves
    )
    assert all(
        flag(a, "--max-num-batched-tokens") == "536" and "--kv-transfer-config" not in a for a in serves
    )
    assert len({(flag(a, "--port")) for a in serves}) == 4
    sfiles = sglang.emit(best, REQUEST)
    (router,) = commands(sfiles["sglang_router.sh"], ["python", "-m", "sglang_router.launch_router"])
    assert len(values_after(router, "--worker-urls")) == 4
    graph = yaml.safe_load(dynamo.emit(best, REQUEST, "1.3")["dynamo_graph.yaml"])
    assert graph["spec"]["services"]["VllmWorker"]["replicas"] == 4


@pytest.mark.parametrize("emitter", [vllm, sglang, trtllm, dynamo])
def test_every_file_is_parseable(emitter):
    for name, text in emitter.emit(BEST, REQUEST).items():
        if name.endswith((".yaml", ".yml")):
            list(yaml.safe_load_all(text))
        elif name.endswith(".sh"):
            for line in text.replace("\\\n", " ").splitlines():
                shlex.split(line)


def test_block_fp8_comes_from_the_checkpoint_not_a_flag():
    """Per-tensor fp8 quantises a 16-bit checkpoint online (``--quantization fp8``); block-scaled
    fp8 is read from the checkpoint's quantization_config, so no flag is written and the MODEL
    placeholder says what the weights must be."""
    best = _colocated(_role(8, batch=32, chunk=512, max_num_batched_tokens=544))
    for emitter, program in ((vllm, ["vllm", "serve"]), (sglang, ["python", "-m", "sglang.launch_server"])):
        for dtype, flagged in (("fp8", True), ("fp8_block", False)):
            files = emitter.emit(best, {**REQUEST, "dtype": dtype})
            text = "\n".join(t for n, t in files.items() if n.endswith(".sh"))
            argvs = commands(text, program)
            assert argvs, (emitter.__name__, program)
            assert all(("--quantization" in a) == flagged for a in argvs)
            assert ("128 x 128 block scales" in text) == (not flagged)
