"""``roofplan estimate train`` through the typer app (CliRunner)."""

import json

import pytest

from tests.commands import ESTIMATE_TRAIN_8B, train_estimate
from tests.spec_keys import TRAIN_BREAKDOWN_KEYS, TRAIN_MEMORY_KEYS

BASE = ESTIMATE_TRAIN_8B


def test_json_document_has_every_spec_key(cli_json):
    doc = cli_json(*BASE, *"--tp 2 --pp 2 --dp 2 --vpp 2 --recompute selective --zero 1".split())
    assert doc["schema"] == "roofplan.estimate.train/v1"
    for key in (
        "inputs",
        "step_time_s",
        "tokens_per_s",
        "model_tflops_per_gpu",
        "hardware_tflops_per_gpu",
        "mfu",
        "fits",
        "memory_gib_per_gpu",
        "breakdown_s",
    ):
        assert key in doc
    assert set(doc["memory_gib_per_gpu"]) >= TRAIN_MEMORY_KEYS
    assert set(doc["breakdown_s"]) >= TRAIN_BREAKDOWN_KEYS
    i = doc["inputs"]
    assert (i["tp"], i["pp"], i["dp"], i["vpp"], i["world_size"]) == (2, 2, 2, 2, 8)
    assert i["sequence_parallel"] is True and i["recompute"] == "selective" and i["zero"] == 1
    assert doc["tokens_per_s"] == pytest.approx(64 * 4096 / doc["step_time_s"])
    assert doc["fits"] is True


def test_no_sequence_parallel_flag_and_offload(cli_json):
    flags = "--tp 2 --dp 2 --no-sequence-parallel --offload optimizer --zero 1 --gpus-per-node 4 --dtype fp8"
    doc = cli_json(*BASE, *flags.split())
    assert doc["inputs"]["sequence_parallel"] is False
    assert doc["inputs"]["offload"] == "optimizer" and doc["inputs"]["gpus_per_node"] == 4
    assert doc["memory_gib_per_gpu"]["optimizer"] == 0.0 and doc["breakdown_s"]["offload_exposed"] > 0


def test_rich_output_shows_time_and_memory_breakdowns(cli):
    r = cli(*BASE + ["--tp", "4", "--dp", "2"])
    assert r.exit_code == 0, r.output
    assert "Time per step" in r.stdout and "Memory per GPU" in r.stdout
    assert "pipeline bubble" in r.stdout and "capacity" in r.stdout


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--tp", "3", "--dp", "2"], "tp"),
        (["--tp", "2", "--dp", "3"], "global_batch"),
        (["--ep", "2", "--dp", "2"], "ep"),
        (["--tp", "-2"], "tp"),
        (["--recompute", "most"], "recompute"),
        (["--zero", "5"], "zero"),
        (["--dtype", "fp4"], "dtype"),
    ],
)
def test_bad_input_exits_2_with_one_line(extra, needle, cli):
    r = cli(*BASE + extra)
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0]
    assert "Traceback" not in r.output


def test_unknown_model_is_exit_2(cli):
    r = cli(*train_estimate(8, 1, 1024, "no-such-model"))
    assert r.exit_code == 2


def test_megatron_knobs_reach_the_model(cli):
    """Each overlap or MoE flag is passed through (echoed in inputs) and an overlap never slows the step."""
    base = BASE + ["--tp", "4", "--pp", "2", "--vpp", "2", "--dp", "1", "--json"]
    plain = json.loads(cli(*base + ["--no-p2p-overlap"]).stdout)
    tuned = json.loads(cli(*base + ["--tp-comm-overlap"]).stdout)
    assert plain["inputs"]["overlap_p2p_comm"] is False and tuned["inputs"]["tp_comm_overlap"] is True
    assert tuned["step_time_s"] <= plain["step_time_s"]
    assert tuned["breakdown_s"]["pp_comm_exposed"] < plain["breakdown_s"]["pp_comm_exposed"]
    full = json.loads(cli(*BASE + ["--recompute", "full", "--recompute-layers", "2", "--json"]).stdout)
    assert full["inputs"]["recompute_layers"] == 2
    noflash = json.loads(cli(*BASE + ["--no-flash-attention", "--json"]).stdout)
    assert noflash["inputs"]["flash_attention"] is False


def test_bad_moe_dispatcher_is_one_line(cli):
    r = cli(*BASE + ["--moe-dispatcher", "nccl"])
    assert r.exit_code == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    # the flag's choices are checked while parsing: the line names the flag and the allowed values
    assert len(lines) == 1 and "--moe-dispatcher" in lines[0] and "alltoall, deepep" in lines[0]


def test_pipeline_engine_offload_and_bf16_grad_flags(cli):
    """--pipeline-engine deepspeed exposes the DP reduction; --act-offload-layers frees activation
    memory; --grad-reduce-bf16 halves the gradient buffer; offload with a pipeline is one line, exit 2."""

    def doc(*extra):
        r = cli(*BASE + ["--tp", "2", "--dp", "4", "--zero", "1", "--json", *extra])
        assert r.exit_code == 0, r.output
        return json.loads(r.stdout)

    base, off, bf16 = doc(), doc("--act-offload-layers", "8"), doc("--grad-reduce-bf16")
    assert off["memory_gib_per_gpu"]["activations"] < base["memory_gib_per_gpu"]["activations"]
    assert bf16["memory_gib_per_gpu"]["gradients"] == pytest.approx(
        base["memory_gib_per_gpu"]["gradients"] / 2
    )
    pipe = ["--pp", "2", "--dp", "2", "--tp", "2", "--zero", "1", "--json"]
    r_ds = cli(*BASE + pipe + ["--pipeline-engine", "deepspeed"])
    r_mg = cli(*BASE + pipe)
    assert r_ds.exit_code == 0 and r_mg.exit_code == 0, r_ds.output
    ds, mg = json.loads(r_ds.stdout), json.loads(r_mg.stdout)
    assert ds["breakdown_s"]["dp_comm_exposed"] > mg["breakdown_s"]["dp_comm_exposed"]
    r = cli(*BASE + ["--pp", "2", "--dp", "4", "--act-offload-layers", "4"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "act_offload_layers" in r.output
