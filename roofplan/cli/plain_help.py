"""``roofplan --help`` on an interpreter without roofplan's dependencies (standard library only).

The commands and their one-line summaries are read from the CLI's own sources with :mod:`ast`
(``app.py`` names the groups and which module registers into each; every ``*_cmd.py``'s
``register`` names its commands and the functions whose docstrings the typer help shows), so this
listing cannot drift from the real one and nothing here imports typer, numpy or the cost model.
"""

from __future__ import annotations

import ast
from pathlib import Path

_CLI = Path(__file__).resolve().parent


def _call_name(node: ast.AST) -> tuple[str, str] | None:
    """(receiver, first string argument) of ``receiver.command("name")``, else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "command"
        and isinstance(node.func.value, ast.Name)
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return node.func.value.id, str(node.args[0].value)
    return None


def _summary(fn: ast.FunctionDef | ast.AsyncFunctionDef | None) -> str:
    doc = ast.get_docstring(fn) if fn is not None else None
    return " ".join((doc or "").split("\n\n")[0].split())


def _module_commands(path: Path) -> list[tuple[str, str]]:
    """(command name, summary) registered by one ``*_cmd.py``: ``group.command("x")(fn)`` calls
    and ``@group.command("x")`` decorators inside its ``register``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    defs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    out = []
    for node in ast.walk(defs.get("register") or tree):
        if isinstance(node, ast.Call) and _call_name(node.func) and node.args:
            target = node.args[0]
            name = _call_name(node.func)[1]
            out.append((name, _summary(defs.get(target.id) if isinstance(target, ast.Name) else None)))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                if _call_name(dec):
                    out.append((_call_name(dec)[1], _summary(node)))
    return out


def commands() -> list[tuple[str, str]]:
    """Every command as (full name, summary), sorted by name (as typer lists them)."""
    tree = ast.parse((_CLI / "app.py").read_text(encoding="utf-8"))
    groups: dict[str, str] = {}  # typer variable -> group name ("app": top level)
    order: list[tuple[str, str]] = []  # (module, typer variable)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        f = node.func
        if f.attr == "add_typer" and node.args and isinstance(node.args[0], ast.Name):
            name = next((k.value.value for k in node.keywords if k.arg == "name"), None)
            groups[node.args[0].id] = str(name)
        elif f.attr == "register" and isinstance(f.value, ast.Name) and node.args:
            order.append((f.value.id, node.args[0].id))
    out = []
    for module, var in order:
        prefix = groups.get(var, "")
        for name, summary in _module_commands(_CLI / f"{module}.py"):
            out.append((f"{prefix} {name}".strip(), summary))
    return sorted(out)


def render(missing: str) -> str:
    """The help text, with the one line on what this interpreter lacks to run a command."""
    rows = commands()
    width = max(len(n) for n, _ in rows)
    lines = [
        "usage: roofplan COMMAND [ARGS]... (roofplan COMMAND --help for its options)",
        "",
        "Analytical cost model and auto-configurator for LLM training and serving.",
        "",
        "commands:",
        *(f"  {n:<{width}}  {s}" for n, s in rows),
        "",
        f"note: this interpreter lacks the Python package {missing!r}, so commands do not run here;",
        "install roofplan with: pip install -e . (or pip install roofplan)",
    ]
    return "\n".join(lines) + "\n"
