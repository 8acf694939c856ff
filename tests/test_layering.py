"""The package layering, read from the source with ``ast`` (no import is executed).

Floors, lowest first: catalogs (data) -> hardware / engines / models specs and their loaders ->
costmodel -> solver -> launch -> the door and its users (resolve, validation, calibration, sweep)
-> cli and the public API. A module may import its own floor or lower ones only. On top of that:

* the cost model imports no solver, launch, cli, validation or calibration, no catalog loader and
  not yaml (it is pure numpy over specs);
* the solver imports no cli, no launch and no catalog loader (it takes specs; ids are resolved at
  the door, roofplan/resolve.py); nor do ``serving`` and the launch emitters read catalogs;
* there is no import cycle between modules. Every ``import`` statement counts, the ones inside
  functions too (a lazy import still ties two modules), and importing ``a.b.c`` also runs the
  package ``a.b``'s ``__init__``.

Violations other developers are removing right now are listed in ALLOWED with why. The test also
fails when a listed violation is gone, so the list only shrinks. The pattern is aiconfigurator's
package-layering test.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "roofplan"

#: Floor of each top-level part of ``roofplan`` (modules not listed are the base floor 0).
FLOORS = {
    "errors": 0,
    "inputs": 0,
    "outputs": 0,
    "plain": 0,
    "catalogs": 0,
    "hardware": 1,
    "engines": 1,
    "models": 1,
    "workload": 1,
    "costmodel": 2,
    "solver": 3,
    "serving": 3,
    "launch": 4,
    "resolve": 5,
    "validation": 5,
    "calibration": 5,
    "sweep": 5,
    "cli": 6,
    "__init__": 6,
    "__main__": 6,
}
#: Modules that read catalogs, overlays or model files (ids and paths in, specs out).
LOADERS = (
    "roofplan.hardware.catalog",
    "roofplan.hardware.engines",
    "roofplan.engines.catalog",
    "roofplan.models.loader",
    "roofplan.models.hf_config",
    "roofplan.resolve",
)
FORBIDDEN = {
    "costmodel": (
        "roofplan.solver",
        "roofplan.launch",
        "roofplan.cli",
        "roofplan.validation",
        "roofplan.calibration",
        "yaml",
        *LOADERS,
    ),
    "solver": ("roofplan.cli", "roofplan.launch", *LOADERS),
    # below the door too: the serving-under-load composition and the launch emitters take specs
    "serving": LOADERS,
    "launch": ("roofplan.cli", *LOADERS),
}

#: (importer, imported) pairs that break a rule today, each with who removes it.
ALLOWED = {}
#: Import cycles that exist today (each a sorted tuple of its modules), with who removes them.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module (of ``roofplan``, plus ``yaml``) that ``path`` imports, wherever the statement is."""
    me = _module_name(path)
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = me.split(".")[: len(me.split(".")) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import mod`` imports the submodule pkg.mod when there is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            if name == "yaml" or name.startswith("yaml."):
                out.add("yaml")
            elif name.startswith("roofplan"):
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                out.add(name)
    out.discard(me)
    return out


def _graph() -> dict[str, set[str]]:
    files = sorted(PKG.rglob("*.py"))
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _floor(module: str) -> int:
    return FLOORS.get(_part(module), 0)


def _violations(graph: dict[str, set[str]]) -> dict[tuple[str, str], str]:
    found = {}
    for mod, deps in graph.items():
        for dep in deps:
            if dep != "yaml" and dep != "roofplan" and _floor(dep) > _floor(mod):
                found[(mod, dep)] = f"floor {_floor(mod)} imports floor {_floor(dep)}"
            for prefix in FORBIDDEN.get(_part(mod), ()):
                if dep == prefix or dep.startswith(prefix + "."):
                    found[(mod, dep)] = f"{_part(mod)} must not import {prefix}"
    return found


def _with_packages(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Edges as Python runs them: importing a.b.c also imports package a.b (the root package
    ``roofplan`` aside: its __init__ imports nothing at module level but the error classes)."""
    out = {}
    for mod, deps in graph.items():
        full = set()
        for dep in deps:
            full.add(dep)
            parts = dep.split(".")
            # a package the importer lives in is already being initialised: no edge to it
            full.update(
                pkg for i in range(2, len(parts)) if not mod.startswith((pkg := ".".join(parts[:i])) + ".")
            )
        out[mod] = {d for d in full if d in graph and d != mod}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_the_ast_reader_sees_lazy_and_relative_imports(tmp_path):
    src = tmp_path / "roofplan" / "costmodel" / "x.py"
    src.parent.mkdir(parents=True)
    src.write_text("import yaml\ndef f():\n    from roofplan.solver import space\n    from . import ops\n")
    modules = {"roofplan.solver.space", "roofplan.costmodel.ops", "roofplan.solver"}
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        assert _imports(src, modules) == {"yaml", "roofplan.solver.space", "roofplan.costmodel.ops"}
    finally:
        ROOT = saved
    bad = _violations({"roofplan.costmodel.x": {"yaml", "roofplan.solver.space", "roofplan.costmodel.ops"}})
    assert set(bad) == {("roofplan.costmodel.x", "yaml"), ("roofplan.costmodel.x", "roofplan.solver.space")}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]


def test_no_module_imports_a_higher_floor_or_a_forbidden_package():
    found = _violations(_graph())
    new = {k: v for k, v in found.items() if k not in ALLOWED}
    assert not new, "\n".join(f"{a} -> {b}: {why}" for (a, b), why in sorted(new.items()))


def test_the_allowlist_only_shrinks():
    found = _violations(_graph())
    gone = sorted(k for k in ALLOWED if k not in found)
    assert not gone, "no longer a violation, remove from ALLOWED: " + ", ".join(
        f"{a} -> {b}" for a, b in gone
    )


def test_no_import_cycle():
    cycles = _cycles(_with_packages(_graph()))
    new = [c for c in cycles if c not in ALLOWED_CYCLES]
    assert not new, "import cycles: " + "; ".join(" <-> ".join(c) for c in new)
    gone = [c for c in ALLOWED_CYCLES if c not in cycles]
    assert not gone, "no longer a cycle, remove from ALLOWED_CYCLES: " + "; ".join(map(str, gone))
