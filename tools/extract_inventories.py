"""Extract the option inventories of the launch frameworks into ``tests/data/inventories/``.

An inventory is what a framework's own parser accepts: every option with whether it takes a value,
its type (int / float / str / ...) and its choices; for torchtitan the config dataclass fields and
the registered models. ``tests/test_launch_inventory.py`` checks every emitted launch file against
the inventory of the release it targets (``roofplan/launch/versions.py``), so a flag a release does
not know, a value of the wrong type or an invalid choice fails a test instead of a job submission.

How each one is made (CPU only, no GPU needed):

* vLLM, SGLang: ``pip install --no-deps`` of the release into a throwaway virtualenv (after the CPU
  build of torch), plus the release's own requirements without the GPU kernels; then the real
  parser is built (vLLM ``make_arg_parser`` + ``AsyncEngineArgs.add_cli_args`` with
  ``VLLM_TARGET_DEVICE=cpu``; SGLang ``ServerArgs.add_cli_args``) and its actions are read.
* Megatron-LM (``--source`` = a checkout of the tag): ``megatron.training.arguments.
  add_megatron_arguments`` imported in the virtualenv (torch, numpy, einops, ... only).
* Megatron-DeepSpeed (``--source`` = a checkout): read from ``megatron/arguments.py`` by ``ast``
  (importing it needs apex and CUDA builds of DeepSpeed), plus DeepSpeed's ``--deepspeed`` /
  ``--deepspeed_config`` (``deepspeed.add_config_arguments``).
* torchtitan (``--source`` = the unpacked release, e.g. ``pip download torchtitan==0.3.0 --no-deps``
  and unzip): read by ``ast`` from ``torchtitan/config`` dataclasses and the model registries.

Refresh (one framework at a time; minutes each, most of it pip)::

    python tools/extract_inventories.py vllm 0.33.0
    python tools/extract_inventories.py vllm-bench 0.33.0     (the benchmark scripts' vllm bench serve)
    python tools/extract_inventories.py sglang 0.5.23
    python tools/extract_inventories.py sglang 0.5.11 --source PATH/TO/unpacked/sglang-0.5.11   (ast)
    python tools/extract_inventories.py megatron core_v0.16.1 --source PATH/TO/Megatron-LM@core_v0.16.1
    python tools/extract_inventories.py megatron-deepspeed HEAD --source PATH/TO/Megatron-DeepSpeed \
        --deepspeed-source PATH/TO/unpacked/deepspeed-0.19.8
    python tools/extract_inventories.py torchtitan 0.3.0 --source PATH/TO/unpacked/torchtitan-0.3.0
    python tools/extract_inventories.py dynamo 1.6.1 --source PATH/TO/unpacked/ai_dynamo-1.6.1    (ast)

then add the new file name to ``roofplan/launch/versions.py`` (``inventory``) and rerun the tests.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "inventories"
TORCH = "torch==2.13.0"  # the CPU wheel; the frameworks only need it to import their parsers
# GPU kernels, compilers and heavy optional stacks a parser import does not need
_SKIP = re.compile(
    r"^(torch|torchaudio|torchvision|xformers|flashinfer|triton|nvidia|cupy|ray|numba|cuda|deep|"
    r"flash|fastsafetensors|tilelang|apache-tvm|helion|pynvvideocodec|nvtx|instanttensor|sgl-kernel|"
    r"tokenspeed|humming|quack|kernels|decord|torchao|xgrammar|mooncake|nixl)",
    re.I,
)
_MODULE_PACKAGE = {
    "PIL": "pillow",
    "yaml": "pyyaml",
    "zmq": "pyzmq",
    "cpuinfo": "py-cpuinfo",
    "google": "protobuf",
    "attr": "attrs",
    "IPython": "ipython",
}


# ---------------------------------------------------------------- inventory records (shared)
def _type_name(t) -> str:
    if t is None or t is str:
        return "str"
    if t in (int, float, bool):
        return t.__name__
    return getattr(t, "__name__", type(t).__name__)


def argparse_inventory(parser) -> dict:
    """Options of a live ``argparse`` parser: {option: {takes_value, type, choices, nargs}}."""
    out = {}
    for action in parser._actions:
        nargs = action.nargs
        takes = not (
            nargs == 0
            or action.const is not None
            and nargs is None
            and action.type is None
            and type(action).__name__ in ("_StoreConstAction", "_AppendConstAction")
        )
        if type(action).__name__ in (
            "_StoreTrueAction",
            "_StoreFalseAction",
            "_CountAction",
            "_HelpAction",
            "_VersionAction",
            "BooleanOptionalAction",
            "_StoreConstAction",
        ):
            takes = False
        choices = None
        if action.choices is not None:
            try:
                choices = sorted(str(c) for c in action.choices)
            except TypeError:
                choices = None
        rec = {
            "takes_value": takes,
            "type": _type_name(action.type),
            "choices": choices,
            "nargs": nargs if isinstance(nargs, (int, str)) else None,
        }
        for opt in action.option_strings:
            out[opt] = rec
    return out


# ---------------------------------------------------------------- probes (run inside the venv)
def _probe(framework: str, source: str | None) -> dict:
    if framework == "vllm":
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        from vllm.entrypoints.common.cli_args import make_arg_parser
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        return {
            "method": "import: vllm.entrypoints.common.cli_args.make_arg_parser (vllm serve)",
            "options": argparse_inventory(make_arg_parser(FlexibleArgumentParser())),
        }
    if framework == "vllm-bench":
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        from vllm.benchmarks.serve import add_cli_args
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        p = FlexibleArgumentParser()
        add_cli_args(p)
        return {
            "method": "import: vllm.benchmarks.serve.add_cli_args (vllm bench serve)",
            "options": argparse_inventory(p),
        }
    if framework == "sglang":
        from sglang.srt.server_args import ServerArgs

        p = argparse.ArgumentParser()
        ServerArgs.add_cli_args(p)
        return {
            "method": "import: sglang.srt.server_args.ServerArgs.add_cli_args",
            "options": argparse_inventory(p),
        }
    if framework == "megatron":
        sys.path.insert(0, source)
        from megatron.training.arguments import add_megatron_arguments

        p = argparse.ArgumentParser(allow_abbrev=False)
        add_megatron_arguments(p)
        return {
            "method": "import: megatron.training.arguments.add_megatron_arguments",
            "options": argparse_inventory(p),
        }
    raise SystemExit(f"no import probe for {framework}")


# ---------------------------------------------------------------- ast readers (host python)
def _literal(node):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError):
        return None


def ast_argparse(path: Path) -> dict:
    """Options of every ``*.add_argument(...)`` call in a source file (for parsers that cannot be
    imported on CPU): option strings, ``type`` (a name), ``choices`` (when literal), ``action``."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            continue
        opts = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("-")]
        if not opts:
            continue
        kw = {k.arg: k.value for k in node.keywords}
        action = _literal(kw["action"]) if "action" in kw else None
        t = kw.get("type")
        tname = "str" if t is None else (t.id if isinstance(t, ast.Name) else ast.unparse(t))
        choices = _literal(kw["choices"]) if "choices" in kw else None
        nargs = _literal(kw["nargs"]) if "nargs" in kw else None
        takes = action not in ("store_true", "store_false", "count", "help", "version", "store_const")
        rec = {
            "takes_value": takes,
            "type": tname,
            "choices": sorted(map(str, choices)) if choices else None,
            "nargs": nargs,
        }
        for o in opts:
            out[o] = rec
    return out


def _ast_dynamo_flags(files: list[Path]) -> dict:
    """Dynamo spells its options as ``add_argument(group, flag_name="--x", choices=..., obsolete_flag=
    "--old")`` / ``add_negatable_bool_argument(...)`` (``dynamo/common/configuration/utils.py``),
    besides plain ``parser.add_argument("--x")``."""
    out: dict = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            fname = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            kw = {k.arg: k.value for k in node.keywords}
            if fname in ("add_argument", "add_negatable_bool_argument") and "flag_name" in kw:
                flag = _literal(kw["flag_name"])
                if not isinstance(flag, str):
                    continue  # a computed name
                boolean = fname == "add_negatable_bool_argument" or _literal(kw.get("action")) in (
                    "store_true",
                    "store_false",
                )
                choices = _literal(kw["choices"]) if "choices" in kw else None
                t = kw.get("arg_type") or kw.get("type")
                rec = {
                    "takes_value": not boolean,
                    "type": (t.id if isinstance(t, ast.Name) else "str"),
                    "choices": sorted(map(str, choices)) if isinstance(choices, (list, tuple)) else None,
                    "nargs": _literal(kw["nargs"]) if "nargs" in kw else None,
                }
                names = [flag] + ([f"--no-{flag[2:]}"] if fname == "add_negatable_bool_argument" else [])
                old = _literal(kw["obsolete_flag"]) if "obsolete_flag" in kw else None
                for n in names:
                    out[n] = rec
                if isinstance(old, str):
                    out[old] = dict(rec, obsolete=True)
    return out


def dynamo_inventory(src: Path) -> dict:
    """Options of ``dynamo.frontend`` and of each worker (``dynamo.vllm`` / ``sglang`` / ``trtllm``: its
    own flags; vLLM and SGLang workers also take their engine's flags, in those inventories)."""
    dyn = next(src.rglob("dynamo/frontend")).parent
    shared = [p for p in (dyn / "common" / "configuration").rglob("*.py") if "tests" not in p.parts]

    def files(part: str) -> list[Path]:
        return [p for p in (dyn / part).glob("*.py")] + shared

    return {
        "method": "ast: dynamo/{frontend,vllm,sglang,trtllm}/*.py and common/configuration (flag_name=...)",
        "components": {c: _ast_dynamo_flags(files(c)) for c in ("frontend", "vllm", "sglang", "trtllm")},
    }


def _annotation(node) -> tuple[str, list[str] | None]:
    """(type name, Literal choices) of a dataclass field annotation."""
    text = ast.unparse(node)
    m = re.search(r"Literal\[(.*?)\]", text)
    if m:
        choices = _literal(ast.parse("[" + m.group(1) + "]", mode="eval").body)
        return "str", [str(c) for c in choices or []]
    for t in ("bool", "int", "float", "str"):
        if re.fullmatch(rf"{t}(\s*\|\s*None)?", text):
            return t, None
    if re.fullmatch(r"float\s*\|\s*int|int\s*\|\s*float", text):
        return "float", None
    return text, None


def dataclass_fields(path: Path, classes: dict[str, str]) -> dict:
    """``section.field`` -> {type, choices} for the named dataclasses of a file (class -> section)."""
    out = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    t, ch = _annotation(stmt.annotation)
                    out[f"{classes[node.name]}.{stmt.target.id}".lstrip(".")] = {"type": t, "choices": ch}
    return out


def torchtitan_inventory(src: Path, version: str) -> dict:
    tt = src / "torchtitan"
    models = sorted(p.name for p in (tt / "models").iterdir() if (p / "__init__.py").exists())
    if version.startswith("0.2"):
        fields = dataclass_fields(
            tt / "config" / "job_config.py",
            {
                "Job": "job",
                "Model": "model",
                "Training": "training",
                "Parallelism": "parallelism",
                "ActivationCheckpoint": "activation_checkpoint",
                "Checkpoint": "checkpoint",
                "Float8": "float8",
            },
        )
        flavors = {}
        for m in models:
            tree = ast.parse((tt / "models" / m / "__init__.py").read_text())
            for node in ast.walk(tree):
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                    keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant)]
                    if keys and all(isinstance(k, str) for k in keys):
                        flavors[m] = sorted(keys)
        return {
            "method": "ast: torchtitan/config/job_config.py dataclasses, torchtitan/models/*/__init__.py flavors",
            "fields": fields,
            "registry": flavors,
        }
    fields = dataclass_fields(
        tt / "config" / "configs.py", {"TrainingConfig": "training", "ParallelismConfig": "parallelism"}
    )
    trainer = dataclass_fields(tt / "trainer.py", {"Config": ""})
    fields.update({k: v for k, v in trainer.items() if "." not in k})
    registry = {}
    for m in models:
        reg = tt / "models" / m / "config_registry.py"
        if reg.exists():
            registry[m] = sorted(
                n.name
                for n in ast.parse(reg.read_text()).body
                if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")
            )
    ac = sorted(
        n.name
        for n in ast.walk(ast.parse((tt / "distributed" / "activation_checkpoint.py").read_text()))
        if isinstance(n, ast.ClassDef) and n.name.endswith("AC")
    )
    return {
        "method": "ast: torchtitan/config/configs.py and trainer.py dataclasses, models/*/config_registry.py",
        "fields": fields,
        "registry": registry,
        "activation_checkpoint": ac,
    }


def _model_fields(path: Path, cls: str) -> list[str]:
    """Field names and their ``alias=`` spellings of one pydantic model class."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    out.append(stmt.target.id)
                    for sub in ast.walk(stmt.value) if stmt.value else ():
                        if (
                            isinstance(sub, ast.keyword)
                            and sub.arg == "alias"
                            and isinstance(sub.value, ast.Constant)
                        ):
                            out.append(sub.value.value)
    return sorted(set(out))


def _string_constants(path: Path) -> list[str]:
    """Values of ``NAME = "key"`` module constants (DeepSpeed spells its config keys so)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            and re.fullmatch(r"[a-z][a-z0-9_]*", node.value.value)
        ):
            out.append(node.value.value)
    return sorted(set(out))


def ds_config_inventory(src: Path) -> dict:
    """Keys DeepSpeed reads from ds_config.json: ``zero_optimization`` and its offload blocks are
    pydantic models with ``extra="forbid"`` (``runtime/config_utils.py``); the other sections are
    read by key from ``runtime/constants.py`` and ``runtime/activation_checkpointing/config.py``."""
    ds = next(src.rglob("deepspeed/runtime/zero/config.py")).parent.parent.parent
    zero = ds / "runtime" / "zero"
    return {
        "zero_optimization": _model_fields(zero / "config.py", "DeepSpeedZeroConfig"),
        "offload_optimizer": _model_fields(zero / "offload_config.py", "DeepSpeedZeroOffloadOptimizerConfig"),
        "offload_param": _model_fields(zero / "offload_config.py", "DeepSpeedZeroOffloadParamConfig"),
        "keys": sorted(
            set(_string_constants(ds / "runtime" / "constants.py"))
            | set(_string_constants(zero / "config.py"))
            | set(_string_constants(ds / "runtime" / "activation_checkpointing" / "config.py"))
        ),
        "activation_checkpointing": _string_constants(
            ds / "runtime" / "activation_checkpointing" / "config.py"
        ),
    }


# ---------------------------------------------------------------- virtualenv driver
def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)


def _venv(path: Path, framework: str, version: str, source: str | None) -> Path:
    py = path / "bin" / "python"
    if not py.exists():
        _run([sys.executable, "-m", "venv", str(path)])
    pins = path / "constraints.txt"  # nothing may replace the CPU torch (a framework pins its CUDA build)
    pins.write_text(TORCH + "\n")
    pip = [str(py), "-m", "pip", "install", "-q", "-c", str(pins)]
    _run(pip + [TORCH, "numpy", "packaging", "pyyaml", "einops", "six", "regex", "pydantic"])
    pkg = {"vllm": "vllm", "vllm-bench": "vllm", "sglang": "sglang"}.get(framework)
    if pkg:
        _run(pip + ["--no-deps", f"{pkg}=={version}"])
        reqs = _run(
            [str(py), "-c", f"from importlib.metadata import requires; print('\\n'.join(requires('{pkg}')))"]
        )
        for line in reqs.stdout.splitlines():
            if "extra ==" in line:
                continue
            name = re.split(r"[ ;<>=!~\[(]", line.strip(), maxsplit=1)[0]
            if name and not _SKIP.match(name):
                _run(pip + [name])  # one at a time: a package with no CPU build must not stop the rest
    return py


def extract(
    framework: str, version: str, source: str | None, venv: str | None, deepspeed_source: str | None = None
) -> dict:
    if framework == "torchtitan":
        return torchtitan_inventory(Path(source), version)
    if framework == "dynamo":
        return dynamo_inventory(Path(source))
    if framework == "sglang" and source:  # releases whose add_cli_args spells every add_argument out
        path = next(Path(source).rglob("sglang/srt/server_args.py"))
        return {"method": "ast: sglang/srt/server_args.py add_argument calls", "options": ast_argparse(path)}
    if framework == "megatron-deepspeed":
        opts = ast_argparse(Path(source) / "megatron" / "arguments.py")
        for o in ("--deepspeed", "--deepscale", "--deepspeed_mpi"):  # deepspeed.add_config_arguments
            opts[o] = {"takes_value": False, "type": "str", "choices": None, "nargs": None}
        for o in ("--deepspeed_config", "--deepscale_config"):
            opts[o] = {"takes_value": True, "type": "str", "choices": None, "nargs": None}
        doc = {"method": "ast: megatron/arguments.py + deepspeed.add_config_arguments", "options": opts}
        if deepspeed_source:
            doc["ds_config"] = ds_config_inventory(Path(deepspeed_source))
            doc["method"] += " + DeepSpeed config models (ast)"
        return doc
    with tempfile.TemporaryDirectory() as tmp:
        py = _venv(Path(venv or tmp) / "venv", framework, version, source)
        env = dict(os.environ, VLLM_TARGET_DEVICE="cpu")
        for _ in range(25):  # import, install what is missing, retry
            r = _run(
                [str(py), __file__, "--probe", framework, version] + (["--source", source] if source else []),
                env=env,
            )
            if r.returncode == 0:
                return json.loads(r.stdout)
            m = re.search(r"No module named '([^'.]+)", r.stderr)
            if not m:
                raise SystemExit(r.stderr[-3000:])
            _run(
                [
                    str(py),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "-c",
                    str(py.parent.parent / "constraints.txt"),
                    _MODULE_PACKAGE.get(m.group(1), m.group(1)),
                ]
            )
    raise SystemExit("gave up after 25 missing modules")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "framework",
        choices=["vllm", "vllm-bench", "sglang", "megatron", "megatron-deepspeed", "torchtitan", "dynamo"],
    )
    ap.add_argument("version")
    ap.add_argument("--source", help="checkout / unpacked release (megatron, megatron-deepspeed, torchtitan)")
    ap.add_argument("--venv", help="keep the virtualenv here (default: a temporary one)")
    ap.add_argument(
        "--deepspeed-source", help="unpacked DeepSpeed sdist (megatron-deepspeed: its ds_config keys)"
    )
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    if a.probe:
        print(json.dumps(_probe(a.framework, a.source)))
        return
    doc = {"schema": "roofplan.inventory/v1", "framework": a.framework, "version": a.version}
    doc.update(extract(a.framework, a.version, a.source, a.venv, a.deepspeed_source))
    name = {"megatron": "megatron-"}.get(a.framework, a.framework + "-") + a.version
    path = Path(a.out) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    n = len(doc.get("options") or doc.get("fields") or doc.get("components") or {})
    print(f"wrote {path} ({n} entries; {doc['method']})")


if __name__ == "__main__":
    main()
