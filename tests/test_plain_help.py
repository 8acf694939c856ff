"""``python -m roofplan --help`` on an interpreter without the dependencies lists the real commands."""

import subprocess
import sys
from pathlib import Path

import typer

from roofplan.cli.app import app
from roofplan.cli.plain_help import commands

ROOT = Path(__file__).resolve().parents[1]


def _typer_commands() -> dict[str, str]:
    """Full command names and their help summaries as the typer app itself registers them."""
    group = typer.main.get_command(app)
    out = {}

    def walk(cmd, prefix):
        for name, sub in getattr(cmd, "commands", {}).items():
            full = f"{prefix} {name}".strip()
            if getattr(sub, "commands", None):
                walk(sub, full)
            else:
                out[full] = " ".join((sub.help or "").split("\n\n")[0].split())

    walk(group, "")
    return out


def test_the_plain_listing_is_the_typer_apps():
    assert dict(commands()) == _typer_commands()


def test_help_without_typer_lists_the_commands_and_exits_0():
    # typer made unimportable in a child interpreter: what a bare python3 sees
    code = "import sys, runpy; sys.modules['typer'] = None; sys.argv = ['roofplan', '--help']; runpy.run_module('roofplan', run_name='__main__')"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for name, _ in commands():
        assert f"  {name} " in r.stdout
    assert "lacks the Python package 'typer'" in r.stdout
    code = code.replace("'--help'", "'validate'")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "pip install" in r.stderr
