"""Hostile input to every command (docs/SPEC.md §4): bad input exits 2 with ONE line on stderr naming the
field, the value and what is allowed; infeasible exits 3 naming the smallest change; nothing ever
exits 1; ``--json`` puts exactly one JSON document on stdout; nothing is written to ``--out``
unless the whole plan succeeded.

Each case below is one class of bad input found by driving the CLI as a user would; the expected
field names come from the flags themselves, not from the implementation.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofplan.cli.app import app
from roofplan.errors import InputError
from roofplan.outputs import write_tree
from tests.commands import ESTIMATE_SERVE_8B, ESTIMATE_TRAIN_8B, PLAN_TRAIN_8B_ANY_GPUS, train_plan

runner = CliRunner()

ET = ESTIMATE_TRAIN_8B
ES = ESTIMATE_SERVE_8B
PT = PLAN_TRAIN_8B_ANY_GPUS
PS = ["plan", "serve", "--model", "llama-3.1-8b", "--isl", "1000", "--osl", "200"]
HUGE = "99999999999999999999"  # beyond int64: once an OverflowError (exit 1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("hostile")
    made = {
        "empty.yaml": "",
        "bad.yaml": "a: [1,\n",
        "list.yaml": "- 1\n- 2\n",
        "bad.json": '{"model_type": "llama"',
        "junk.csv": "a,b\n1,2\n",
    }
    out = {}
    for name, text in made.items():
        (d / name).write_text(text)
        out[name] = str(d / name)
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    out["binary.yaml"] = str(d / "binary.yaml")
    (d / "dir.yaml").mkdir()
    out["dir.yaml"] = str(d / "dir.yaml")
    out["dir"] = str(d)
    overlays = {
        "mi300x.yaml": "schema: roofplan.calibration/v1\nhardware: mi300x\nefficiency: {gemm_max: 0.7}\n",
        "over1.yaml": "schema: roofplan.calibration/v1\nhardware: h100-sxm\nefficiency: {gemm_max: 7}\n",
        "tgi.yaml": "schema: roofplan.calibration/v1\nengines: {tgi: {step_overhead_s: 0.1}}\n",
        "ok.yaml": "schema: roofplan.calibration/v1\nhardware: h100-sxm\nefficiency: {gemm_max: 0.75}\n",
    }
    for name, text in overlays.items():
        (d / name).write_text(text)
        out[name] = str(d / name)
    return out


# -- parser errors: one line, exit 2, the option named -----------------------------------------------


@pytest.mark.parametrize(
    "argv, needles",
    [
        (ET + ["--tp", "abc"], ("--tp", "'abc'", "integer")),
        (ET + ["--tp=2.5"], ("--tp", "'2.5'", "integer")),
        (ET + ["--tp", HUGE], ("--tp", HUGE, "at most")),
        (ES + ["--batch", HUGE], ("--batch", HUGE)),
        (PT + ["--gpus", HUGE], ("--gpus", HUGE)),
        (PS + ["--hardware", "h100-sxm", "--gpus", "8", "--rate", "fast"], ("--rate", "'fast'", "number")),
        (ET[:-2], ("--seq-len",)),  # missing required option
        (ET + ["--jsn"], ("--jsn", "--json")),  # typo: the right flag suggested
        (["catalog", "show"], ("ID",)),  # missing argument
        (["catalog", "lst"], ("lst", "list")),  # unknown subcommand
        (["models", "show", "llama-3.1-8b", "extra"], ("extra",)),
        (["plan", "train", "--emit"], ("--emit",)),
    ],
)
def test_parser_errors_are_one_line(argv, needles, one_line_error):
    one_line_error(runner.invoke(app, argv), 2, "error:", *needles)


def test_no_arguments_prints_help_not_an_error():
    r = runner.invoke(app, [])
    assert "Usage" in r.stdout and "error" not in r.stderr


# -- bad values: the API names the field ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, field",
    [
        (ET + ["--tp", "3"], "tp"),  # does not divide 32 heads / 8 KV heads
        (ET + ["--tp", "0"], "tp"),
        (ET + ["--pp", "-2"], "pp"),
        (ET + ["--ep", "2"], "ep"),  # experts on a dense model
        (ET + ["--dp", "3"], "global_batch"),  # 64 not divisible by micro_batch x dp
        (ET + ["--zero", "4"], "zero"),
        (ET + ["--dtype", "int4"], "dtype"),
        (ET + ["--sequence-parallel", "--no-sequence-parallel"], "sequence-parallel"),
        (ES + ["--tp", "3"], "tp"),
        (ES + ["--ep", "2"], "ep"),
        (ES + ["--engine", "tgi"], "engine"),
        (PT + ["--gpus", "0"], "gpus"),
        (PT + ["--gpus", "8", "--gpus-per-node", "0"], "gpus_per_node"),  # 0 once silently meant "default"
        (PT + ["--gpus", "8", "--tokens", "1e400"], "tokens"),  # inf once passed as a budget
        (PT + ["--gpus", "8", "--objective", "speed"], "objective"),
        (PS + ["--hardware", "h100-sxm", "--gpus", "8", "--ttft-ms", "nan"], "ttft_ms"),
        (PS + ["--hardware", "h100-sxm", "--gpus", HUGE], "gpus"),
        (PS + ["--hardware", "h100-sxm", "--gpus", "8", "--mode", "both"], "mode"),
        (
            PS + ["--hardware", "h100-sxm", "--gpus", "2147483647"],
            "gpus",
        ),  # once ran out of memory writing files
        (PT + ["--gpus", str(2**30)], "gpus"),  # degree products overflowed int64
        (["models", "show", "llama-3.1-7b"], "model"),
        (["catalog", "show", "h100"], "hardware"),
        (["validate", "--kind", "foo"], "kind"),
    ],
)
def test_bad_values_name_the_field(argv, field, one_line_error):
    line = one_line_error(runner.invoke(app, argv), 2, "error:")
    flag = "--" + field.replace("_", "-")  # a choice checked while parsing names the flag
    assert line.startswith(f"error: {field}:") or f" {field}:" in line or f" {flag}:" in line, line


# -- files: missing, directories, empty, malformed, binary ------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        ["models", "show"],
        ["catalog", "show"],
        ["catalog", "validate"],
        ["validate", "--cases"],
    ],
)
@pytest.mark.parametrize(
    "name", ["empty.yaml", "bad.yaml", "list.yaml", "binary.yaml", "dir.yaml", "missing"]
)
def test_unreadable_or_malformed_input_files(files, cmd, name, one_line_error):
    path = files.get(name, str(Path(files["dir"]) / "does-not-exist.yaml"))
    line = one_line_error(runner.invoke(app, cmd + [path]), 2, "error:")
    assert "is not valid" in line


@pytest.mark.parametrize("name", ["bad.json", "binary.yaml", "dir"])
def test_model_paths(files, name, one_line_error):
    one_line_error(
        runner.invoke(app, ["models", "show", files[name]]), 2, "model" if name != "bad.json" else "JSON"
    )


@pytest.mark.parametrize("name", ["empty.yaml", "junk.csv", "binary.yaml", "dir"])
def test_calibrate_measurement_files(files, name, one_line_error):
    one_line_error(runner.invoke(app, ["calibrate", files[name], "--hardware", "h100-sxm"]), 2, "error:")


@pytest.mark.parametrize("flag, value", [("--ranks", "0"), ("--nodes", "0"), ("--op", "broadcastish")])
def test_calibrate_nccl_flags_are_checked_even_for_csv(flag, value, one_line_error):
    csv_path = str(Path(__file__).parent / "fixtures" / "calibration" / "ops_h100.csv")
    one_line_error(
        runner.invoke(app, ["calibrate", csv_path, "--hardware", "h100-sxm", flag, value]),
        2,
        flag.lstrip("-"),
    )


# -- calibration overlays -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overlay, needle",
    [
        ("mi300x.yaml", "mi300x"),  # fitted for another device
        ("over1.yaml", "gemm_max"),  # a fraction of peak above 1
        ("tgi.yaml", "tgi"),  # an engine roofplan has no profile for
        ("bad.yaml", "YAML"),
        ("dir.yaml", "calibration"),
    ],
)
def test_bad_overlays(files, overlay, needle, one_line_error):
    one_line_error(runner.invoke(app, ES + ["--calibration", files[overlay]]), 2, needle)


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog", "list"],
        ["catalog", "show", "h100-sxm"],
        ["catalog", "validate", "h100-sxm"],
        ["models", "list"],
        ["models", "show", "llama-3.1-8b"],
        ["validate", "--kind", "op_gemm"],
    ],
)
def test_every_command_takes_calibration(files, argv, one_line_error):
    ok = runner.invoke(app, argv + ["--calibration", files["ok.yaml"], "--json"])
    assert ok.exit_code == 0, ok.stderr
    json.loads(ok.stdout)
    one_line_error(runner.invoke(app, argv + ["--calibration", files["bad.yaml"]]), 2, "YAML")


# -- --json: exactly one document on stdout -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["catalog", "list"],
        ["catalog", "show", "mi300x"],
        ["catalog", "validate", "sn40l"],
        ["models", "list"],
        ["models", "show", "deepseek-v3"],
        ET + ["--tp", "2", "--dp", "4"],
        ES + ["--engine", "vllm"],
        PT + ["--gpus", "8", "--top", "2"],
        PS + ["--hardware", "h100-sxm", "--gpus", "8"],
        ["validate", "--kind", "op_allreduce"],
    ],
)
def test_json_stdout_is_one_document(argv):
    r = runner.invoke(app, argv + ["--json"])
    assert r.exit_code == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)


def test_json_warnings_go_to_stderr():
    r = runner.invoke(app, ES[:-4] + ["--isl", "200000", "--osl", "200", "--json"])
    assert r.exit_code == 0, r.stderr
    json.loads(r.stdout)
    assert r.stderr.startswith("warning:") and "131,072" in r.stderr


# -- --out: checked before the search, all or nothing ------------------------------------------------


@pytest.mark.parametrize("cmd", [PT + ["--gpus", "8"], PS + ["--hardware", "h100-sxm", "--gpus", "8"]])
def test_out_to_a_file_or_under_a_file_or_empty(tmp_path, cmd, one_line_error):
    f = tmp_path / "existing.txt"
    f.write_text("keep")
    for out in (str(f), str(f / "sub"), ""):
        one_line_error(runner.invoke(app, cmd + ["--out", out]), 2, "out:")
    assert f.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]


def test_infeasible_plan_writes_nothing(tmp_path, one_line_error):
    out = tmp_path / "launch"
    r = runner.invoke(
        app,
        [*train_plan(8, 64, 4096, "llama-3.1-405b"), "--out", str(out)],
    )
    one_line_error(r, 3, "infeasible:", "GPUs")
    assert not out.exists()


def test_write_tree_failure_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError) as e:
        write_tree(blocker / "plan", {"a.sh": "echo\n", "plan.json": "{}"}, executable=["a.sh"])
    assert e.value.field == "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_write_tree_is_complete_on_success(tmp_path):
    written = write_tree(tmp_path / "new" / "dir", {"a.sh": "echo\n", "plan.json": "{}"}, executable=["a.sh"])
    d = tmp_path / "new" / "dir"
    assert sorted(Path(w).name for w in written) == ["a.sh", "plan.json"]
    assert sorted(p.name for p in d.iterdir()) == ["a.sh", "plan.json"]  # no temporaries left
    assert (d / "a.sh").stat().st_mode & 0o111


def test_calibrate_out_creates_its_directory_and_rejects_a_directory(tmp_path, one_line_error):
    csv_path = str(Path(__file__).parent / "fixtures" / "calibration" / "ops_h100.csv")
    one_line_error(
        runner.invoke(app, ["calibrate", csv_path, "--hardware", "h100-sxm", "--out", str(tmp_path)]),
        2,
        "out:",
        "directory",
    )
    target = tmp_path / "new" / "overlay.yaml"
    r = runner.invoke(app, ["calibrate", csv_path, "--hardware", "h100-sxm", "--out", str(target), "--json"])
    assert r.exit_code == 0, r.stderr
    assert target.is_file()


# -- --emit: names, lists, and launchers that cannot run on the device -------------------------------


@pytest.mark.parametrize(
    "argv, needle",
    [
        (PT + ["--gpus", "8", "--emit", "pytorch"], "pytorch"),
        (PS + ["--hardware", "h100-sxm", "--gpus", "8", "--emit", ""], "emit"),
        (PS + ["--hardware", "h100-sxm", "--gpus", "8", "--emit", ","], "emit"),
        (PS + ["--hardware", "mi300x", "--gpus", "8", "--emit", "trtllm"], "NVIDIA"),
        (PS + ["--hardware", "mi300x", "--gpus", "8", "--emit", "vllm,dynamo"], "dynamo"),
        (PT[:4] + ["--hardware", "sn40l"] + PT[6:] + ["--gpus", "8", "--emit", "megatron"], "dataflow"),
    ],
)
def test_emit_errors(argv, needle, one_line_error):
    one_line_error(runner.invoke(app, argv), 2, "emit", needle)


def test_emit_takes_comma_lists_and_repeats_on_both_planners(tmp_path):
    r = runner.invoke(
        app,
        PT
        + [
            "--gpus",
            "8",
            "--emit",
            "megatron,deepspeed",
            "--emit",
            "megatron",
            "--out",
            str(tmp_path / "t"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["inputs"]["emit"] == ["megatron", "deepspeed"]
    r = runner.invoke(
        app,
        PS
        + [
            "--hardware",
            "h100-sxm",
            "--gpus",
            "8",
            "--emit",
            "vllm",
            "--emit",
            "sglang",
            "--out",
            str(tmp_path / "s"),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.stderr
    names = {p.name for p in (tmp_path / "s").iterdir()}
    assert any(n.startswith("vllm") for n in names) and any(n.startswith("sglang") for n in names)
    assert not any(n.startswith(("trtllm", "dynamo")) for n in names)


def test_default_emit_leaves_out_launchers_the_device_cannot_run(tmp_path):
    r = runner.invoke(app, PS + ["--hardware", "mi300x", "--gpus", "8", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc["launch_unsupported"]) == {"trtllm", "dynamo"}
    assert not any(p.name.startswith(("trtllm", "dynamo")) for p in tmp_path.iterdir())


# -- infeasible: the smallest change -------------------------------------------------------------------


def test_more_gpus_than_the_batch_can_use_suggests_fewer(one_line_error):
    # 64 sequences cannot be spread over 10^6 GPUs: the fix is fewer GPUs, never "more"
    r = runner.invoke(app, PT + ["--gpus", "1000000"])
    line = one_line_error(r, 3, "infeasible:", "fewer GPUs")
    fewer = int(line.rsplit("fewer GPUs:", 1)[1].split()[0].rstrip(";"))
    assert fewer < 1000000 and fewer % 8 == 0


def test_unreachable_rate_is_infeasible_not_garbage(one_line_error):
    # 1e308 requests/s once overflowed an int cast (RuntimeWarning on stderr, exit 0 with a bogus plan)
    r = runner.invoke(app, PS + ["--hardware", "h100-sxm", "--gpus", "8", "--rate", "1e308"])
    one_line_error(r, 3, "infeasible:", "lower --rate")


# -- terminal widths ----------------------------------------------------------------------------------


def test_models_list_keeps_every_number_in_80_columns():
    r = runner.invoke(app, ["models", "list"])  # CliRunner output is not a terminal: rich uses 80 columns
    assert r.exit_code == 0
    assert "…" not in r.stdout
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    assert "671.03" in r.stdout  # deepseek-v3 total parameters, once cut to "671.…"


def test_estimate_train_help_shows_full_flag_names_in_80_columns():
    r = runner.invoke(app, ["estimate", "train", "--help"], env={"COLUMNS": "80"})
    assert r.exit_code == 0
    for flag in (
        "--sequence-parallel",
        "--no-sequence-parallel",
        "--global-batch",
        "--gpus-per-node",
        "--calibration",
        "--json",
    ):
        assert flag in r.stdout
    assert "…" not in r.stdout


def test_version():
    from roofplan import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"roofplan {__version__}"


def test_out_warns_about_files_of_an_earlier_plan(tmp_path):
    (tmp_path / "launch_deepspeed.sh").write_text("# from an earlier plan\n")
    r = runner.invoke(app, PT + ["--gpus", "8", "--emit", "megatron", "--out", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.stderr
    json.loads(r.stdout)
    assert r.stderr.startswith("warning:") and "launch_deepspeed.sh" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_launch_text_is_printed_without_borders():
    r = runner.invoke(app, PS + ["--hardware", "h100-sxm", "--gpus", "8", "--emit", "vllm"])
    assert r.exit_code == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "vllm serve" in ln]
    assert lines and all(ln.startswith("CUDA_VISIBLE_DEVICES=") for ln in lines)  # copy-pasteable as is


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["catalog", "show", "h100"], "did you mean h100-sxm?"),
        (["catalog", "show", "a100"], "did you mean a100-sxm-40gb or a100-sxm-80gb?"),
        (["models", "show", "llama3-70b"], "did you mean llama-3-70b?"),
        (["models", "show", "LLAMA-3.1-70B"], "did you mean llama-3.1-70b?"),
    ],
)
def test_mistyped_ids_get_a_suggestion(argv, hint, one_line_error):
    one_line_error(runner.invoke(app, argv), 2, hint)


def test_unrelated_ids_get_no_suggestion(one_line_error):
    line = one_line_error(runner.invoke(app, ["catalog", "show", "tpu-v5p"]), 2, "tpu-v5p")
    assert "did you mean" not in line


def test_python_m_without_dependencies_says_so_in_one_line():
    # an interpreter without typer (the CLI's first import): one line naming the package, exit 2
    import subprocess
    import sys

    code = "import sys, runpy; sys.modules['typer'] = None; runpy.run_module('roofplan', run_name='__main__')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "'typer'" in r.stderr and "pip install" in r.stderr
    assert "Traceback" not in r.stderr
