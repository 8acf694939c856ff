"""Sweep specs: a YAML grid (or list) of training and serving scenarios, validated up front.

Schema (``schema: roofplan.sweep/v1``, every section optional but at least one scenario)::

    prices: {h100-sxm: 2.49}                 # USD per device-hour in place of the catalogs'
    calibration: [h100-fit.yaml]             # overlays written by `roofplan calibrate` (a path or a
                                             # list; relative to the spec's folder): each applies to
                                             # the scenarios using the device it was fitted for
    train:                                   # a grid: models x hardware x gpus x workloads x objectives
      models: [llama-3.1-8b, llama-3.1-70b]
      hardware: [h100-sxm, mi300x]
      gpus: [64, 128]
      workloads: [{global_batch: 512, seq_len: 8192, tokens: 15T, dtype: bf16}]
      objectives: [throughput, cost, energy]
    serve:                                   # models x hardware x gpus x workloads x slas x objectives
      models: [llama-3.1-70b]
      hardware: [h100-sxm, "h100-sxm:prefill,a100-sxm-80gb:decode"]   # mixed pools allowed
      gpus: [8, 16]
      workloads: [{isl: 4000, osl: 500, rate: 2}]  # rate optional; also dtype, kv_dtype, engine, mode
      slas: [{ttft_ms: 1000, tpot_ms: 30}, {}]     # optional (default: no target)
      objectives: [gpus, cost, energy]
    scenarios:                               # explicit scenarios, after the grids
      - {kind: train, model: llama-3.1-8b, hardware: h100-sxm, gpus: 8, global_batch: 256, seq_len: 4096}

At most one overlay may apply to a scenario (a mixed pool of two calibrated devices is refused: the
planner takes one overlay, applied to the pool of its device). The overlay's content is part of the
scenario ``id``, so a resumed sweep reruns what a changed fit affects.

Order is the spec's: grids expand in the order above (last key fastest), then the list. Each
scenario gets a stable ``id`` (a hash of its content) that resuming matches on. A bad spec is an
:class:`InputError` naming the key (``serve.workloads[1].isl``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os

from roofplan.errors import InputError

SCHEMA = "roofplan.sweep/v1"
KINDS = ("train", "serve")
TRAIN_OBJECTIVES = ("throughput", "cost", "energy")
SERVE_OBJECTIVES = ("gpus", "cost", "energy")
_TOP = ("schema", "prices", "calibration", "train", "serve", "scenarios", "notes")
_GRID = {
    "train": ("models", "hardware", "gpus", "workloads", "objectives"),
    "serve": ("models", "hardware", "gpus", "workloads", "slas", "objectives"),
}
_WORKLOAD = {
    "train": {"global_batch": "int", "seq_len": "int", "tokens": "tokens", "dtype": "str"},
    "serve": {
        "isl": "int",
        "osl": "int",
        "rate": "num",
        "dtype": "str",
        "kv_dtype": "str",
        "engine": "str",
        "mode": "str",
    },
}
_REQUIRED = {"train": ("global_batch", "seq_len"), "serve": ("isl", "osl")}
_SLA = {"ttft_ms": "num", "tpot_ms": "num"}
#: The keys of a scenario in column order (after ``index`` and ``id``).
SCENARIO_KEYS = (
    "kind",
    "model",
    "hardware",
    "gpus",
    "objective",
    "global_batch",
    "seq_len",
    "tokens",
    "dtype",
    "isl",
    "osl",
    "rate",
    "ttft_ms",
    "tpot_ms",
    "kv_dtype",
    "engine",
    "mode",
    "calibration",
)


def load_spec(path: str | os.PathLike) -> dict:
    """The parsed YAML of ``path`` (InputError when unreadable or not YAML)."""
    from roofplan.inputs import is_file, load_yaml, read_text, user_path

    p = user_path(path, "spec")
    if not is_file(p):
        raise InputError("spec", str(path), "a readable YAML file (no such file)")
    doc = load_yaml(read_text(p, "spec", "yaml"), "spec", "valid YAML")
    if not isinstance(doc, dict):
        raise InputError("spec", type(doc).__name__, "a mapping with train, serve or scenarios")
    return doc


def expand(doc: dict, base: str | os.PathLike | None = None) -> tuple[list[dict], dict[str, float]]:
    """(scenarios in spec order, each with ``index`` and ``id``; the price overrides). ``base`` is
    the folder relative calibration paths are read from (the spec file's; default: the cwd)."""
    from roofplan.hardware.pricing import parse_prices

    for k in doc:
        if k not in _TOP:
            raise InputError(str(k), "unknown key", "allowed: " + ", ".join(_TOP))
    if doc.get("schema", SCHEMA) != SCHEMA:
        raise InputError("schema", doc.get("schema"), SCHEMA)
    prices = parse_prices(_mapping(doc.get("prices") or {}, "prices"), field="prices")
    out: list[dict] = []
    for kind in KINDS:
        if doc.get(kind) is not None:
            out += _grid(kind, _mapping(doc[kind], kind))
    items = doc.get("scenarios") or []
    if not isinstance(items, list):
        raise InputError("scenarios", type(items).__name__, "a list of scenarios")
    for i, item in enumerate(items):
        out.append(_scenario(_mapping(item, f"scenarios[{i}]"), f"scenarios[{i}]"))
    if not out:
        raise InputError("spec", "no scenarios", "a train or serve grid, or a scenarios list")
    _check_names(out)
    overlays = _overlays(doc.get("calibration"), base)
    for i, s in enumerate(out):
        _attach_overlay(s, overlays)
        s["index"] = i
        s["id"] = scenario_id(s, prices)
    return out, prices


def _overlays(node, base) -> list[tuple[str, dict]]:
    """(file name, normalised overlay) of each ``calibration`` entry, read and checked up front."""
    from pathlib import Path

    from roofplan.hardware.overlay import load_overlay

    if node is None:
        return []
    out = []
    for i, item in enumerate(_list(node, "calibration")):
        where = f"calibration[{i}]" if isinstance(node, list) else "calibration"
        path = _text(item, where)
        if base is not None and not path.startswith(("/", "~")):
            path = str(Path(base) / path)
        try:
            out.append((Path(path).name, load_overlay(path)))
        except InputError as exc:
            raise InputError(where, item, exc.allowed) from None
    return out


def _attach_overlay(s: dict, overlays: list[tuple[str, dict]]) -> None:
    """Give ``s`` the overlay fitted for one of its devices (or for any device), if there is one."""
    devs = devices(s["hardware"])
    mine = [(name, o) for name, o in overlays if o.get("hardware") is None or o.get("hardware") in devs]
    if len(mine) > 1:
        raise InputError(
            "calibration",
            ", ".join(n for n, _ in mine),
            f"at most one overlay for the devices of a scenario ({s['hardware']})",
        )
    if mine:
        s["calibration"], s["overlay"] = mine[0]


def devices(hardware: str) -> list[str]:
    """Device ids of a hardware argument (``h100-sxm`` or ``h100-sxm:prefill,a100-sxm-80gb:decode``)."""
    out = []
    for part in hardware.split(","):
        dev = part.strip()
        out.append(dev.rpartition(":")[0] if dev.endswith((":prefill", ":decode")) else dev)
    return out


def scenario_id(s: dict, prices: dict | None = None) -> str:
    """A stable id of a scenario's content and the user prices of its devices (index excluded), so a
    resumed sweep reruns what a changed price affects."""
    body = {k: s.get(k) for k in SCENARIO_KEYS if k != "calibration"}
    mine = {d: prices[d] for d in devices(s["hardware"]) if prices and d in prices}
    if mine:
        body["prices"] = mine
    if s.get("overlay"):
        body["overlay"] = s["overlay"]
    return hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _mapping(node, where: str) -> dict:
    if not isinstance(node, dict):
        raise InputError(where, type(node).__name__ if node is not None else "missing", "a mapping")
    return node


def _list(node, where: str) -> list:
    if node is None:
        raise InputError(where, "missing", "a non-empty list")
    items = node if isinstance(node, list) else [node]
    if not items:
        raise InputError(where, "[]", "a non-empty list")
    return items


def _grid(kind: str, g: dict) -> list[dict]:
    keys = _GRID[kind]
    for k in g:
        if k not in keys:
            raise InputError(f"{kind}.{k}", "unknown key", "allowed: " + ", ".join(keys))
    models = [_text(m, f"{kind}.models[{i}]") for i, m in enumerate(_list(g.get("models"), f"{kind}.models"))]
    hws = [
        _text(h, f"{kind}.hardware[{i}]") for i, h in enumerate(_list(g.get("hardware"), f"{kind}.hardware"))
    ]
    gpus = [_int(n, f"{kind}.gpus[{i}]") for i, n in enumerate(_list(g.get("gpus"), f"{kind}.gpus"))]
    loads = [
        _workload(kind, _mapping(w, f"{kind}.workloads[{i}]"), f"{kind}.workloads[{i}]")
        for i, w in enumerate(_list(g.get("workloads"), f"{kind}.workloads"))
    ]
    slas = [{}]
    if kind == "serve" and g.get("slas") is not None:
        slas = [
            _fields(_mapping(s, f"serve.slas[{i}]"), _SLA, f"serve.slas[{i}]")
            for i, s in enumerate(_list(g.get("slas"), "serve.slas"))
        ]
    allowed = TRAIN_OBJECTIVES if kind == "train" else SERVE_OBJECTIVES
    objs = g.get("objectives", [allowed[0]])
    objs = [
        _choice(o, allowed, f"{kind}.objectives[{i}]")
        for i, o in enumerate(_list(objs, f"{kind}.objectives"))
    ]
    return [
        {"kind": kind, "model": m, "hardware": h, "gpus": n, **w, **s, "objective": o}
        for m, h, n, w, s, o in itertools.product(models, hws, gpus, loads, slas, objs)
    ]


def _scenario(d: dict, where: str) -> dict:
    kind = _choice(d.get("kind"), KINDS, f"{where}.kind")
    allowed = (
        ("kind", "model", "hardware", "gpus", "objective")
        + tuple(_WORKLOAD[kind])
        + (tuple(_SLA) if kind == "serve" else ())
    )
    for k in d:
        if k not in allowed:
            raise InputError(f"{where}.{k}", "unknown key", "allowed: " + ", ".join(allowed))
    objectives = TRAIN_OBJECTIVES if kind == "train" else SERVE_OBJECTIVES
    out = {
        "kind": kind,
        "model": _text(d.get("model"), f"{where}.model"),
        "hardware": _text(d.get("hardware"), f"{where}.hardware"),
        "gpus": _int(d.get("gpus"), f"{where}.gpus"),
        "objective": _choice(d.get("objective", objectives[0]), objectives, f"{where}.objective"),
    }
    out.update(_workload(kind, {k: v for k, v in d.items() if k in _WORKLOAD[kind]}, where))
    if kind == "serve":
        out.update(_fields({k: v for k, v in d.items() if k in _SLA}, _SLA, where))
    return out


def _workload(kind: str, w: dict, where: str) -> dict:
    out = _fields(w, _WORKLOAD[kind], where)
    for k in _REQUIRED[kind]:
        if k not in out:
            raise InputError(f"{where}.{k}", "missing", "a positive integer")
    return out


def _fields(d: dict, types: dict, where: str) -> dict:
    out = {}
    for k, v in d.items():
        if k not in types:
            raise InputError(f"{where}.{k}", "unknown key", "allowed: " + ", ".join(types))
        kind, path = types[k], f"{where}.{k}"
        if kind == "int":
            out[k] = _int(v, path)
        elif kind == "num":
            out[k] = _num(v, path)
        elif kind == "tokens":
            out[k] = _tokens(v, path)
        else:
            out[k] = _text(v, path)
    return out


def _tokens(v, where: str) -> float:
    from roofplan.inputs import parse_tokens

    try:
        return parse_tokens(str(v))
    except InputError as exc:
        raise InputError(where, v, exc.allowed) from None


def _int(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise InputError(where, v, "a positive integer")
    return int(v)


def _num(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
        raise InputError(where, v, "a positive number")
    return float(v)


def _text(v, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise InputError(where, v if v is not None else "missing", "a non-empty string")
    return v.strip()


def _choice(v, allowed: tuple[str, ...], where: str) -> str:
    if v not in allowed:
        raise InputError(where, v if v is not None else "missing", "one of " + ", ".join(allowed))
    return v


def _check_names(scenarios: list[dict]) -> None:
    """Every model and device resolves (once per name), so a typo fails before the sweep starts."""
    from roofplan import resolve

    for name in dict.fromkeys(s["model"] for s in scenarios):
        try:
            resolve.model(name)
        except InputError as exc:
            raise InputError("model", name, exc.allowed) from None
    for pool in dict.fromkeys(s["hardware"] for s in scenarios):
        for dev in devices(pool):
            try:
                resolve.hardware(dev)
            except InputError as exc:
                raise InputError("hardware", dev, exc.allowed) from None
