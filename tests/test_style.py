"""One style: the tree is `ruff format`-ted and `ruff check`-clean (the rules in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff(command):
    r = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, f"ruff {' '.join(command)}:\n{r.stdout}{r.stderr}"
