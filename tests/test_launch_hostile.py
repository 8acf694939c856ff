"""Hostile names cannot run anything through the launch files.

A Hugging Face config.json whose ``_name_or_path`` holds a newline, ``$(...)``, backquotes, quotes
and a ``;`` is planned with every emitter; every emitted script is then run with bash in a scratch
directory where each launcher (torchrun, vllm, python, deepspeed, ...) is a stub that only records
its arguments. Nothing of the name may execute (no marker file appears), the name must reach the
engines as one literal argument, and every YAML / JSON / TOML / Python file must still parse to
the same name.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from roofplan.launch import dynamo, megatron, sglang, trtllm, vllm
from roofplan.launch.common import quote_for
from roofplan.models.loader import load_model

HOSTILE = "evil\n$(touch PWNED1)`touch PWNED2`;touch PWNED3 'q\" ${HOME} \\x # [/x]"
LAUNCHERS = ("torchrun", "deepspeed", "vllm", "python", "trtllm-serve", "srun", "nginx", "ray")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _hostile_config(tmp_path: Path) -> Path:
    src = Path(__file__).parent / "fixtures" / "hf" / "Qwen3-8B" / "config.json"
    doc = json.loads(src.read_text())
    doc["_name_or_path"] = HOSTILE
    d = tmp_path / "hostile"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(doc))
    return d / "config.json"


def _run_sandboxed(script: Path, work: Path) -> list[list[str]]:
    """Run ``script`` with every launcher stubbed (records argv NUL-separated); return the calls."""
    stubs = work / "bin"
    stubs.mkdir(exist_ok=True)
    log = work / "calls.log"
    for name in LAUNCHERS:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\nprintf "%s\\0" "{name}" "$@" >> "{log}"\nprintf "\\n" >> "{log}"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(work), "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    subprocess.run(
        ["bash", str(script)],
        cwd=work,
        env=env,
        timeout=30,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    calls = []
    if log.exists():
        for rec in log.read_bytes().split(b"\0\n"):
            if rec:
                calls.append([a.decode() for a in rec.split(b"\0")])
    return calls


def _no_marker(work: Path) -> None:
    found = sorted(p.name for p in work.rglob("PWNED*"))
    assert not found, f"injected command ran: {found}"


def test_quote_for_every_format_round_trips():
    assert ast.literal_eval(quote_for("python", HOSTILE)) == HOSTILE
    assert json.loads(quote_for("json", HOSTILE)) == HOSTILE
    assert tomllib.loads("k = " + quote_for("toml", HOSTILE))["k"] == HOSTILE
    assert yaml.safe_load(quote_for("yaml", HOSTILE)) == HOSTILE
    assert "\n" not in quote_for("comment", HOSTILE)
    out = subprocess.run(
        ["bash", "-c", "printf %s " + quote_for("sh", HOSTILE)],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    assert out.stdout == HOSTILE


def test_nul_byte_is_refused():
    from roofplan.errors import InputError

    with pytest.raises(InputError):
        quote_for("sh", "a\x00b")


def test_training_scripts_from_a_hostile_name_run_nothing(tmp_path):
    model = load_model(_hostile_config(tmp_path))
    assert model.name == HOSTILE.strip()
    cfg = {
        "model": model.name,
        "hardware": "h100-sxm",
        "gpus": 8,
        "gpus_per_node": 8,
        "tp": 2,
        "pp": 1,
        "dp": 4,
        "cp": 1,
        "ep": 1,
        "vpp": 1,
        "micro_batch": 1,
        "global_batch": 64,
        "seq_len": 4096,
        "dtype": "bf16",
        "recompute": "selective",
        "recompute_layers": 0,
        "sequence_parallel": True,
        "zero": 1,
        "offload": "none",
    }
    work = tmp_path / "train"
    work.mkdir()
    script = work / megatron.SCRIPT
    files = megatron.emit(model, cfg, {"tokens_per_s": 1.0})
    script.write_text(files[megatron.SCRIPT])
    calls = _run_sandboxed(script, work)
    _no_marker(work)
    assert calls and calls[0][0] == "torchrun" and "pretrain_gpt.py" in calls[0]


def _hostile_request(**extra) -> dict:
    """The serving request the emitters get, with the hostile name as model and model id;
    ``extra`` adds keys (the engine and its dtypes, which the README does not need)."""
    return {
        "model": HOSTILE,
        "model_id": HOSTILE,
        "moe": False,
        "isl": 1000,
        "osl": 100,
        **extra,
        "memory_reserve_fraction": 0.1,
    }


def _serve_case():
    from tests.test_launch_serve import BEST, _colocated, _role

    return BEST, _colocated(_role(4, batch=24, instances=2, chunk=512, max_num_batched_tokens=536))


@pytest.mark.parametrize("emitter", [vllm, sglang, trtllm])
def test_serving_scripts_from_a_hostile_name_run_nothing(tmp_path, emitter):
    request = _hostile_request(engine="vllm", dtype="bf16", kv_dtype=None)
    for k, best in enumerate(_serve_case()):
        work = tmp_path / f"{emitter.__name__.rsplit('.', 1)[1]}{k}"
        work.mkdir()
        files = emitter.emit(best, request)
        for name, text in files.items():
            (work / name).write_text(text)
            if name.endswith((".yaml", ".yml")):
                list(yaml.safe_load_all(text))  # still one well-formed document each
        engine_calls = []
        for name in files:
            if name.endswith(".sh"):
                engine_calls += _run_sandboxed(work / name, work)
        _no_marker(work)
        models = [
            c[c.index(flag) + 1]
            for c in engine_calls
            for flag in ("serve", "--model-path", "trtllm-serve")
            if flag in c[:6]
            and c.index(flag) + 1 < len(c)
            and c[0] != "nginx"
            and "disaggregated" not in c
            and "bench" not in c
        ]
        assert models and all(m == HOSTILE for m in models), models[:3]


def test_dynamo_graph_holds_a_hostile_name_as_text():
    best, _ = _serve_case()
    request = _hostile_request(engine="trtllm", dtype="bf16", kv_dtype=None)
    docs = list(yaml.safe_load_all(dynamo.emit(best, request)["dynamo_graph.yaml"]))
    graph = docs[-1]
    name = graph["metadata"]["name"]
    assert name and len(name) <= 63 and all(ch.isalnum() or ch == "-" for ch in name) and name == name.lower()
    args = [
        c["podTemplate"]["spec"]["containers"][0]["args"]
        for c in graph["spec"]["components"]
        if c["type"] != "frontend"
    ]
    assert all(a[a.index("--model") + 1] == HOSTILE for a in args)


def test_readme_keeps_a_hostile_name_on_one_line():
    best, _ = _serve_case()
    request = _hostile_request()
    text = vllm.emit(best, request)["README.md"]
    assert "\n$(touch" not in text and os.linesep + "$(" not in text
