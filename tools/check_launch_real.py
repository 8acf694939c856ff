"""Run the emit matrix through the frameworks' own parsers and validators (CPU only) and count.

The unit tests check emitted files against committed option inventories; this tool is the slower,
stronger check behind them: it writes every file of the emit matrix (``tests/test_launch_inventory
.py`` scenarios, every framework and release of ``roofplan/launch/versions.py``) and feeds each
command to the real code in a virtualenv prepared by ``tools/extract_inventories.py --venv DIR``:

* Megatron-LM: ``parse_args()`` then ``validate_args()`` (``megatron/training/arguments.py`` of
  ``--megatron-source``), with RANK / WORLD_SIZE of the job; its device queries answer as the
  planned GPU (compute capability 8 or 9) and its Transformer Engine version checks as a current
  TE, since neither exists on CPU;
* vLLM: ``make_arg_parser`` then ``AsyncEngineArgs.from_cli_args`` (``vllm serve``);
* SGLang: ``ServerArgs.add_cli_args``, ``parse_args`` then ``ServerArgs.from_cli_args``;
* DeepSpeed: ``DeepSpeedConfig(ds_config, mpu)`` with the plan's data-parallel size;
* torchtitan: ``ConfigManager().parse_args`` on the emitted job (the config module of 0.3, the
  TOML of 0.2), and the world size its degrees multiply to.

Only the rows of the release installed in the virtualenv are run (the others are reported as
skipped); Megatron runs the row named by ``--megatron-target`` against ``--megatron-source``.

Usage::

    python tools/check_launch_real.py --venv DIR --megatron-source PATH/Megatron-LM@core_v0.16.1 \
        --megatron-target core_v0.16 --only megatron
    python tools/check_launch_real.py --venv DIR --only vllm,sglang

It prints one line per file that failed (framework, scenario, the framework's error) and the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def _commands(text: str, program: list[str]) -> list[list[str]]:
    """The arguments of every command of script ``text`` that runs ``program`` (the unit tests'
    parser of emitted scripts, :func:`tests.test_launch_inventory.commands`)."""
    from tests.test_launch_inventory import commands

    return [argv[len(program) :] for argv in commands(text, program)]


def _fill(argv: list[str]) -> list[str]:
    """Placeholders replaced by plausible values (a path, a host)."""
    sub = {
        "DATA_PATH": "/data/text_document",
        "TOKENIZER_MODEL": "/tok",
        "CHECKPOINT_DIR": "/ckpt",
        "MODEL": "/model",
        "HOSTFILE": "/hostfile",
        "MASTER_ADDR": "127.0.0.1",
        "NODE_RANK": "0",
    }
    return [
        re.sub(r"\$\{([A-Z_0-9]+)(:-([^}]*))?\}", lambda m: m.group(3) or sub.get(m.group(1), "127.0.0.1"), a)
        for a in argv
    ]


def manifest(only: set[str], megatron_target: str | None = None) -> list[dict]:
    """Every command of the emit matrix for the frameworks in ``only``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from roofplan import plan_serving, plan_training
    from roofplan.launch import deepspeed, dynamo, megatron, sglang, torchtitan, versions, vllm
    from tests.test_launch_inventory import SERVE, TRAIN

    out = []
    if "megatron" in only:
        for model, hw, gpus, gb, seq in TRAIN:
            plan = plan_training(model, hw, gpus=gpus, global_batch=gb, seq_len=seq, emit="megatron", top=5)
            for version, (rank, cand) in (
                (v, rc)
                for v in ([megatron_target] if megatron_target else versions.VERSIONS["megatron"])
                for rc in enumerate(plan.candidates, 1)
            ):
                try:
                    files = megatron.emit(plan.model, plan.config(cand), cand, version)
                except Exception as exc:  # refused: counted, not run
                    out.append(
                        {"fw": "megatron", "version": version, "case": f"{model}#{rank}", "refused": str(exc)}
                    )
                    continue
                text = files["launch_megatron.sh"]
                (argv,) = _commands(text, ["pretrain_gpt.py"])
                env = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
                cap = 8 if hw.startswith("a100") else 9  # the compute capability validate_args asks CUDA for
                out.append(
                    {
                        "fw": "megatron",
                        "version": version,
                        "case": f"{model}/{gpus}#{rank}",
                        "argv": _fill(argv),
                        "world": gpus,
                        "env": env,
                        "cap": cap,
                    }
                )
    if "deepspeed" in only:
        for model, hw, gpus, gb, seq in TRAIN:
            plan = plan_training(model, hw, gpus=gpus, global_batch=gb, seq_len=seq, emit="deepspeed", top=5)
            for rank, cand in enumerate(plan.candidates, 1):
                case = f"{model}/{gpus}#{rank}"
                try:
                    files = deepspeed.emit(plan.model, plan.config(cand), cand)
                except Exception as exc:
                    out.append({"fw": "deepspeed", "version": "0.19", "case": case, "refused": str(exc)})
                    continue
                out.append(
                    {
                        "fw": "deepspeed",
                        "version": "0.19",
                        "case": case,
                        "dp": cand["dp"],
                        "config": json.loads(files[deepspeed.CONFIG]),
                    }
                )
    if "torchtitan" in only:
        for model, hw, gpus, gb, seq in TRAIN:
            plan = plan_training(model, hw, gpus=gpus, global_batch=gb, seq_len=seq, emit="torchtitan", top=3)
            for version in versions.VERSIONS["torchtitan"]:
                for rank, cand in enumerate(plan.candidates, 1):
                    case = f"{model}/{gpus}#{rank}"
                    try:
                        files = torchtitan.emit(plan.model, plan.config(cand), cand, version)
                    except Exception as exc:
                        out.append(
                            {"fw": "torchtitan", "version": version, "case": case, "refused": str(exc)}
                        )
                        continue
                    out.append(
                        {
                            "fw": "torchtitan",
                            "version": version,
                            "case": case,
                            "world": gpus,
                            "files": {k: v for k, v in files.items() if k.endswith((".py", ".toml"))},
                        }
                    )
    for engine, mod, prog in (
        ("vllm", vllm, ["vllm", "serve"]),
        ("sglang", sglang, ["python", "-m", "sglang.launch_server"]),
    ):
        if engine not in only:
            continue
        for model, hw, gpus in SERVE:
            for mode in ("colocated", "disagg"):
                try:
                    plan = plan_serving(model, hw, gpus=gpus, isl=2000, osl=200, mode=mode)
                except Exception:
                    continue
                for version in versions.VERSIONS[engine]:
                    files = mod.emit(plan.best, plan.request, version)
                    for name, text in files.items():
                        if name.endswith(".sh"):
                            for argv in _commands(text, prog):
                                out.append(
                                    {
                                        "fw": engine,
                                        "version": version,
                                        "case": f"{model}/{mode}/{name}",
                                        "argv": _fill(argv[1:] if engine == "vllm" else argv),
                                    }
                                )
                    g = dynamo.graph(plan.best, dict(plan.request, engine=engine))  # its workers' engine args
                    for comp in g["spec"].get("components", []):
                        if comp["type"] != "frontend":
                            args = comp["podTemplate"]["spec"]["containers"][0]["args"]
                            out.append(
                                {
                                    "fw": f"dynamo.{engine}",
                                    "version": version,
                                    "case": f"{model}/{mode}",
                                    "argv": list(args),
                                }
                            )
    return out


def probe(entries: list[dict], megatron_source: str | None) -> list[dict]:
    """Run inside the framework virtualenv: each entry through the real parser."""
    from importlib.metadata import PackageNotFoundError, version

    installed = {}
    for pkg in ("vllm", "sglang", "torchtitan"):
        try:
            installed[pkg] = version(pkg)
        except PackageNotFoundError:
            installed[pkg] = None
    results = []
    for e in entries:
        if "refused" in e:
            results.append({**e, "ok": None})
            continue
        pkg = e["fw"].removeprefix("dynamo.")
        if pkg in installed and not (installed[pkg] or "").startswith(e["version"]):
            results.append({**e, "ok": "skipped"})
            continue
        try:
            if e["fw"] == "megatron":
                _megatron(e, megatron_source)
            elif e["fw"] == "deepspeed":
                _deepspeed(e)
            elif e["fw"] == "torchtitan":
                _torchtitan(e)
            elif e["fw"] in ("vllm", "dynamo.vllm"):  # dynamo.<engine> workers take the engine's flags
                _vllm(e)
            else:
                _sglang(e)
            results.append({**e, "ok": True})
        except BaseException as exc:  # noqa: BLE001 - SystemExit from argparse included
            results.append({**e, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:400]})
    return results


def _megatron(e: dict, source: str) -> None:
    if source not in sys.path:
        sys.path.insert(0, source)
    for k in [k for k in os.environ if k == "CUDA_DEVICE_MAX_CONNECTIONS"]:
        del os.environ[k]
    os.environ.update({"RANK": "0", "WORLD_SIZE": str(e["world"]), "LOCAL_RANK": "0", **e["env"]})
    import megatron.training.arguments as margs
    import torch

    # no GPU here: answer validate_args' device queries as the planned device would
    torch.cuda.get_device_capability = lambda *a, **k: (e["cap"], 0)
    margs.get_device_arch_version = lambda: e["cap"]
    if getattr(margs, "is_te_min_version", None):  # no Transformer Engine on CPU: a current one (>= 2.9)
        margs.is_te_min_version = lambda *a, **k: True
    parse_args, validate_args = margs.parse_args, margs.validate_args
    sys.argv = ["pretrain_gpt.py", *e["argv"]]
    args = parse_args()
    validate_args(args)


def _vllm(e: dict) -> None:
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    argv = list(e["argv"])
    if e["fw"] == "dynamo.vllm":  # Dynamo's own flags, then the engine's
        i = argv.index("--disaggregation-mode") if "--disaggregation-mode" in argv else -1
        if i >= 0:
            del argv[i : i + 2]
    parser = make_arg_parser(FlexibleArgumentParser())
    args = parser.parse_args(argv if e["fw"] == "dynamo.vllm" else ["/model", *argv])
    AsyncEngineArgs.from_cli_args(args)


def _deepspeed(e: dict) -> None:
    """DeepSpeed's own config parser (``runtime/config.py`` DeepSpeedConfig: batch triple, ZeRO and
    offload models with extra keys forbidden, precision) for the job's data-parallel size."""
    import deepspeed.comm as dist
    from deepspeed.runtime.config import DeepSpeedConfig

    dist.get_rank = lambda *a, **k: 0  # no process group on CPU: rank 0 of the job

    class _Mpu:  # the data-parallel group of the plan (Megatron-DeepSpeed passes its mpu)
        def get_data_parallel_world_size(self):
            return e["dp"]

    DeepSpeedConfig(e["config"], mpu=_Mpu())


def _torchtitan(e: dict) -> None:
    """torchtitan's ConfigManager on the emitted job (0.3: the config module; 0.2: the TOML)."""
    from torchtitan.config import ConfigManager

    with tempfile.TemporaryDirectory() as d:
        for name, text in e["files"].items():
            Path(d, name).write_text(text)
        if "roofplan_torchtitan.py" in e["files"]:
            sys.path.insert(0, d)
            sys.modules.pop("roofplan_torchtitan", None)
            cfg = ConfigManager().parse_args(["--module", "roofplan_torchtitan", "--config", "roofplan_plan"])
            sys.path.remove(d)
        else:
            cfg = ConfigManager().parse_args(["--job.config_file", str(Path(d, "torchtitan.toml"))])
    p = cfg.parallelism
    shard = p.data_parallel_shard_degree
    world = (
        p.data_parallel_replicate_degree
        * shard
        * p.tensor_parallel_degree
        * p.pipeline_parallel_degree
        * p.context_parallel_degree
    )
    assert world == e["world"], f"world {world} != {e['world']}"


def _sglang(e: dict) -> None:
    from sglang.srt.server_args import ServerArgs

    p = argparse.ArgumentParser()
    ServerArgs.add_cli_args(p)
    ServerArgs.from_cli_args(p.parse_args(e["argv"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", required=False, help="the virtualenv of tools/extract_inventories.py --venv")
    ap.add_argument("--megatron-source")
    ap.add_argument("--megatron-target", help="the versions.py row the source is (e.g. core_v0.16)")
    ap.add_argument("--only", default="megatron,vllm,sglang,torchtitan,deepspeed")
    ap.add_argument("--probe", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe:
        print(json.dumps(probe(json.loads(Path(a.probe).read_text()), a.megatron_source)))
        return
    entries = manifest(set(a.only.split(",")), a.megatron_target)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "manifest.json"
        path.write_text(json.dumps(entries))
        py = Path(a.venv) / "venv" / "bin" / "python"
        cmd = [str(py), __file__, "--probe", str(path)] + (
            ["--megatron-source", a.megatron_source] if a.megatron_source else []
        )
        r = subprocess.run(
            cmd, capture_output=True, text=True, env=dict(os.environ, VLLM_TARGET_DEVICE="cpu"), check=False
        )
        if r.returncode:
            raise SystemExit(r.stderr[-4000:])
        results = json.loads(r.stdout.strip().splitlines()[-1])
    counts: dict[tuple, list[int]] = {}
    for res in results:
        key = (res["fw"], res["version"])
        c = counts.setdefault(key, [0, 0, 0, 0])
        c[{True: 0, False: 1, None: 2, "skipped": 3}[res["ok"]]] += 1
        if res["ok"] is False:
            print(f"FAIL {res['fw']} {res['version']} {res['case']}: {res['error']}")
    for (fw, ver), (ok, bad, refused, skipped) in sorted(counts.items()):
        if skipped:
            print(f"{fw} {ver}: {skipped} skipped (that release is not the one installed)")
        else:
            print(f"{fw} {ver}: {ok} accepted, {bad} rejected, {refused} refused by roofplan (exit 2)")


if __name__ == "__main__":
    main()
