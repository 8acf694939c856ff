"""The README's set-up commands and .ci/run stay in step (CI must run the README's test command)."""

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_commands(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = _fenced_commands(readme)
    test_cmd = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()


def test_readme_run_command_uses_a_known_subcommand():
    from typer.testing import CliRunner

    from roofplan.cli.app import app

    readme = (ROOT / "README.md").read_text()
    run_cmd = _fenced_commands(readme)[0]
    roofplan_part = run_cmd.split("&&", 1)[1].strip()
    argv = shlex.split(roofplan_part)
    assert argv[0] == "roofplan"
    result = CliRunner().invoke(app, [*argv[1:3], "--help"])
    assert result.exit_code == 0, result.output


def test_readme_accuracy_table_matches_the_validation_suite():
    """The README's predicted-vs-published table is what `roofplan validate` computes now."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import accuracy_table
    finally:
        sys.path.pop(0)
    readme = (ROOT / "README.md").read_text()
    assert accuracy_table.readme_section(readme) == accuracy_table.table(), (
        "README accuracy table is stale: run `python tools/accuracy_table.py --write`"
    )


def test_the_readme_test_command_runs_the_slow_tests():
    """``slow`` only tags tests (for ``pytest -m "not slow"`` by hand); CI's run of the README's
    command must not deselect them, neither on its command line nor through pytest's addopts."""
    import tomllib

    readme = (ROOT / "README.md").read_text()
    test_cmd = next(c for c in _fenced_commands(readme) if "pytest" in c)
    assert "-m" not in shlex.split(test_cmd.split("pytest", 1)[1])
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "-m" not in shlex.split(conf.get("addopts", ""))
    assert any(m.startswith("slow:") for m in conf["markers"])
    assert "@pytest.mark.slow" in (ROOT / "tests" / "test_calibration.py").read_text()
