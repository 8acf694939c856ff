"""Writes under ``--out`` (issue: no write outside --out, all or nothing, no mixed plans).

Each test plants what a hostile or unlucky file system holds (a symlink at every name roofplan
once used for its temporaries, a file-size limit, a second writer) and checks the files outside
``--out`` and the previous contents afterwards.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofplan.cli.app import app
from roofplan.errors import InputError
from roofplan.outputs import write_file, write_tree
from tests.commands import PLAN_TRAIN_8B

runner = CliRunner()
PT = [
    *PLAN_TRAIN_8B,
    "--emit",
    "megatron",
]


def test_planted_symlinks_are_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    for name in (".plan.json.tmp", ".launch_megatron.sh.tmp", "plan.json", "launch_megatron.sh"):
        (out / name).symlink_to(victim)
    r = runner.invoke(app, PT + ["--out", str(out)])
    assert r.exit_code == 0, r.stderr
    assert victim.read_text() == "keep me\n"
    assert not os.access(victim, os.X_OK)
    assert not (out / "plan.json").is_symlink() and json.loads((out / "plan.json").read_text())["best"]
    assert (out / "launch_megatron.sh").stat().st_mode & 0o100


def test_overlay_write_through_planted_link_is_refused(tmp_path):
    victim = tmp_path / "victim.yaml"
    victim.write_text("keep\n")
    target = tmp_path / "o" / "overlay.yaml"
    target.parent.mkdir()
    target.symlink_to(victim)
    write_file(target, "new\n")
    assert victim.read_text() == "keep\n" and target.read_text() == "new\n" and not target.is_symlink()


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    old = "x" * 10_000
    target = tmp_path / "overlay.yaml"
    target.write_text(old)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096));"
        "from roofplan.outputs import write_file; write_file(sys.argv[1], 'y' * 100_000)"
    )
    p = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "InputError" in p.stderr and "too large" in p.stderr.lower(), p.stderr
    assert target.read_text() == old
    assert sorted(x.name for x in tmp_path.iterdir()) == ["overlay.yaml"]  # no temporary left behind
    assert resource.getrlimit(resource.RLIMIT_FSIZE)  # the limit applied to the child only


def test_tree_failure_writes_nothing(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(InputError):
        write_tree(out, {"a.sh": "echo a\n", "../escape.txt": "x"})
    assert not out.exists() and not (tmp_path / "escape.txt").exists()
    assert list(tmp_path.iterdir()) == []


def test_new_directory_appears_whole_with_modes(tmp_path):
    out = tmp_path / "deep" / "new"
    written = write_tree(out, {"run.sh": "#!/bin/sh\n", "plan.json": "{}\n"}, executable=["run.sh"])
    assert sorted(Path(w).name for w in written) == ["plan.json", "run.sh"]
    assert (out / "run.sh").stat().st_mode & 0o111 and not (out / "plan.json").stat().st_mode & 0o111
    assert out.stat().st_mode & 0o755 == 0o755 & ~_umask()
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "run.sh"]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_concurrent_writers_never_mix_two_plans(tmp_path):
    out = tmp_path / "out"
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for i in range(40):
                write_tree(out, {f"f{j}.txt": f"{tag}{i}\n" for j in range(6)})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    contents = {(out / f"f{j}.txt").read_text() for j in range(6)}
    assert len(contents) == 1, contents  # all six files come from the same write
    assert sorted(p.name for p in out.iterdir()) == [f"f{j}.txt" for j in range(6)]
