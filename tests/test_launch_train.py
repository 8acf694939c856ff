"""Training launch emitters: parse what they write and check every chosen degree has its flag."""

from __future__ import annotations

import json
import re
import shlex
import tomllib

import pytest

from roofplan import plan_training
from roofplan.errors import InputError
from roofplan.launch import deepspeed, megatron, torchtitan
from roofplan.launch.registry import train_files
from roofplan.models.loader import load_model


def script_argv(text: str) -> list[str]:
    """The command of a generated bash script: comments and set/export lines dropped, backslash
    continuations joined, then shell-split."""
    body = [
        ln
        for ln in text.splitlines()
        if ln.strip()
        and not ln.lstrip().startswith(("#", "set ", "export ", "if "))
        and not re.match(r"^[A-Z_]+=\S*$", ln)
    ]
    return shlex.split(" ".join(ln.rstrip().removesuffix("\\") for ln in body))


def flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} appears {argv.count(name)} times"
    return argv[argv.index(name) + 1]


def _config(**kw) -> dict:
    c = {
        "model": "llama-3.1-70b",
        "hardware": "h100-sxm",
        "gpus": 64,
        "gpus_per_node": 8,
        "tp": 4,
        "pp": 4,
        "dp": 2,
        "cp": 2,
        "ep": 1,
        "vpp": 5,
        "micro_batch": 1,
        "global_batch": 128,
        "seq_len": 8192,
        "dtype": "bf16",
        "recompute": "full",
        "recompute_layers": 3,
        "sequence_parallel": True,
        "zero": 1,
        "offload": "none",
    }
    c.update(kw)
    return c


EST = {"tokens_per_s": 123456.0, "step_time_s": 8.5, "mfu": 0.41, "model_tflops_per_gpu": 405.0}


def test_megatron_script_carries_every_degree():
    m = load_model("llama-3.1-70b")
    c = _config()
    text = megatron.emit(m, c, EST)[megatron.SCRIPT]
    assert "123,456 tokens/s" in text  # the prediction is in the header
    argv = script_argv(text)
    assert argv[0] == "torchrun"
    nnodes, nproc = int(flag(argv, "--nnodes")), int(flag(argv, "--nproc_per_node"))
    tp, pp, cp = (
        int(flag(argv, f))
        for f in ("--tensor-model-parallel-size", "--pipeline-model-parallel-size", "--context-parallel-size")
    )
    assert (tp, pp, cp) == (4, 4, 2)
    assert nnodes * nproc == 64 and nnodes * nproc // (tp * pp * cp) == c["dp"]
    # VPP = layers / PP / layers-per-virtual-stage
    assert 80 // pp // int(flag(argv, "--num-layers-per-virtual-pipeline-stage")) == 5
    assert "--virtual-pipeline-model-parallel-size" not in argv
    assert int(flag(argv, "--micro-batch-size")) == 1 and int(flag(argv, "--global-batch-size")) == 128
    assert flag(argv, "--recompute-granularity") == "full" and flag(argv, "--recompute-method") == "block"
    assert int(flag(argv, "--recompute-num-layers")) == 3
    assert "--sequence-parallel" in argv and "--use-distributed-optimizer" in argv and "--bf16" in argv
    assert int(flag(argv, "--seq-length")) == 8192 and int(flag(argv, "--num-layers")) == 80
    assert int(flag(argv, "--num-query-groups")) == 8 and "--group-query-attention" in argv
    assert "--overlap-grad-reduce" in argv and "--overlap-param-gather" in argv
    # the one-line form is the same command
    assert shlex.split(megatron.command(m, c)) == argv


def test_megatron_recompute_all_layers_and_fp16_and_moe():
    m = load_model("mixtral-8x7b")
    c = _config(
        model="mixtral-8x7b",
        tp=2,
        pp=1,
        dp=32,
        cp=1,
        ep=8,
        vpp=1,
        recompute="full",
        recompute_layers=0,
        dtype="fp16",
        zero=0,
        sequence_parallel=False,
    )
    argv = script_argv(megatron.emit(m, c, EST)[megatron.SCRIPT])
    assert flag(argv, "--recompute-method") == "uniform" and flag(argv, "--recompute-num-layers") == "1"
    assert "--fp16" in argv and "--bf16" not in argv
    assert int(flag(argv, "--expert-model-parallel-size")) == 8 and int(flag(argv, "--num-experts")) == 8
    assert "--num-layers-per-virtual-pipeline-stage" not in argv and "--sequence-parallel" not in argv
    assert "--use-distributed-optimizer" not in argv and "--overlap-param-gather" not in argv


def test_megatron_refuses_parameter_offload():
    with pytest.raises(InputError):
        megatron.command(load_model("llama-3.1-70b"), _config(zero=3, pp=1, offload="optimizer+params"))


def test_deepspeed_config_and_launcher():
    m = load_model("llama-3.1-70b")
    c = _config(
        tp=8, pp=1, dp=8, cp=1, vpp=1, micro_batch=2, global_batch=256, zero=3, offload="optimizer+params"
    )
    files = deepspeed.emit(m, c, EST)
    doc = json.loads(files[deepspeed.CONFIG])
    z = doc["zero_optimization"]
    assert (
        z["stage"] == 3
        and z["offload_optimizer"]["device"] == "cpu"
        and z["offload_param"]["device"] == "cpu"
    )
    assert doc["train_micro_batch_size_per_gpu"] == 2 and doc["train_batch_size"] == 256
    # train_batch_size = micro x accumulation x data-parallel ranks
    assert doc["train_micro_batch_size_per_gpu"] * doc["gradient_accumulation_steps"] * c["dp"] == 256
    assert doc["bf16"]["enabled"] is True
    assert doc["roofplan"]["predicted"]["tokens_per_s"] == EST["tokens_per_s"]
    argv = script_argv(files[deepspeed.SCRIPT])
    assert argv[0] == "deepspeed"
    assert int(flag(argv, "--num_nodes")) * int(flag(argv, "--num_gpus")) == 64
    assert int(flag(argv, "--tensor-model-parallel-size")) == 8 and "--no-pipeline-parallel" in argv
    assert flag(argv, "--deepspeed_config") == deepspeed.CONFIG and int(flag(argv, "--zero-stage")) == 3
    assert int(flag(argv, "--num-key-value-heads")) == 8


def test_deepspeed_optimizer_offload_only_and_fp16():
    c = _config(
        tp=8,
        pp=2,
        dp=4,
        cp=1,
        vpp=1,
        zero=1,
        offload="optimizer",
        dtype="fp16",
        micro_batch=4,
        recompute_layers=0,
    )
    doc = deepspeed.ds_config(c, EST)
    assert doc["zero_optimization"]["stage"] == 1 and "offload_param" not in doc["zero_optimization"]
    assert doc["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert doc["fp16"]["enabled"] is True and "bf16" not in doc
    assert doc["gradient_accumulation_steps"] == 128 // (4 * 4)


@pytest.mark.parametrize("kw", [{"zero": 2, "pp": 2}, {"cp": 2}, {"vpp": 2}])
def test_deepspeed_refuses_what_it_cannot_run(kw):
    with pytest.raises(InputError):
        deepspeed.ds_config(_config(**kw), EST)


def test_torchtitan_toml():
    m = load_model("llama-3.1-70b")
    c = _config(zero=3, recompute="selective", recompute_layers=0)
    files = torchtitan.emit(m, c, EST, "0.2")
    doc = tomllib.loads(files[torchtitan.TOML])
    assert (doc["model"]["name"], doc["model"]["flavor"]) == ("llama3", "70B")  # a registered model
    par = doc["parallelism"]
    assert par["tensor_parallel_degree"] == 4 and par["pipeline_parallel_degree"] == 4
    assert par["context_parallel_degree"] == 2
    assert par["data_parallel_shard_degree"] * par["data_parallel_replicate_degree"] == c["dp"]
    world = (
        par["data_parallel_shard_degree"]
        * par["data_parallel_replicate_degree"]
        * par["tensor_parallel_degree"]
        * par["pipeline_parallel_degree"]
        * par["context_parallel_degree"]
    )
    assert world == 64
    assert par["pipeline_parallel_schedule"] == "Interleaved1F1B"
    # 80 layers on 4 x 5 virtual stages of 4, the embedding and head not counted as layers: torchtitan
    # builds ceil((80 + 0 + 0) / 4) = 20 stages, a multiple of pp (with its default weights of 1 it
    # would build ceil(82 / 4) = 21 and refuse)
    assert par["pipeline_parallel_layers_per_stage"] == 4
    assert (
        par["pipeline_parallel_first_stage_less_layers"]
        == par["pipeline_parallel_last_stage_less_layers"]
        == 0
    )
    assert par["pipeline_parallel_microbatch_size"] == 1
    assert doc["training"]["global_batch_size"] == 128 and doc["training"]["seq_len"] == 8192
    assert doc["activation_checkpoint"]["mode"] == "selective"
    assert "123,456 tokens/s" in files[torchtitan.TOML]
    argv = script_argv(files[torchtitan.SCRIPT])
    assert flag(argv, "--job.config_file") == torchtitan.TOML and "torchtitan.train" in argv


def test_torchtitan_zero0_replicates_and_refuses_zero1():
    m = load_model("llama-3.1-70b")
    doc = tomllib.loads(torchtitan.toml_doc(m, _config(zero=0, pp=1, vpp=1, dp=8, recompute="none"), EST))
    assert doc["parallelism"]["data_parallel_replicate_degree"] == 8
    assert doc["parallelism"]["data_parallel_shard_degree"] == 1
    # without pipeline parallelism the global batch is reached by accumulating micro-batches
    assert doc["training"]["local_batch_size"] == 1
    with pytest.raises(InputError):
        torchtitan.toml_doc(m, _config(zero=1), EST)


@pytest.mark.parametrize("framework", ["megatron", "deepspeed", "torchtitan"])
def test_planned_winner_round_trips_through_each_emitter(framework):
    plan = plan_training(
        "llama-3.1-8b", "h100-sxm", gpus=16, global_batch=128, seq_len=4096, emit=framework, top=2
    )
    b = plan.best
    files = train_files(plan, [framework])
    if framework == "megatron":
        argv = script_argv(files[megatron.SCRIPT])
        assert int(flag(argv, "--tensor-model-parallel-size")) == b["tp"]
        assert int(flag(argv, "--pipeline-model-parallel-size")) == b["pp"]
        assert int(flag(argv, "--context-parallel-size")) == b["cp"]
        assert int(flag(argv, "--micro-batch-size")) == b["micro_batch"]
        assert ("--use-distributed-optimizer" in argv) == (b["zero"] >= 1)
        assert ("--sequence-parallel" in argv) == (b["sequence_parallel"] and b["tp"] > 1)
    elif framework == "deepspeed":
        doc = json.loads(files[deepspeed.CONFIG])
        assert doc["zero_optimization"]["stage"] == b["zero"]
        assert doc["train_micro_batch_size_per_gpu"] == b["micro_batch"]
        argv = script_argv(files[deepspeed.SCRIPT])
        assert int(flag(argv, "--tensor-model-parallel-size")) == b["tp"]
    else:
        text = files[torchtitan.PYCONFIG]
        par = dict(re.findall(r"config\.parallelism\.(\w+) = (\S+)", text))
        assert (
            int(par["tensor_parallel_degree"]),
            int(par["pipeline_parallel_degree"]),
            int(par["context_parallel_degree"]),
        ) == (b["tp"], b["pp"], b["cp"])
    assert shlex.split(plan.launch[framework])[0] in ("torchrun", "deepspeed")


def test_fp8_plans_are_not_written_for_deepspeed():
    """DeepSpeed's config has fp16/bf16 sections only: an FP8 plan is refused with the reason
    (it used to be written with --bf16, a different recipe), and asking the planner for FP8
    DeepSpeed files is bad input naming --emit."""
    c = _config(dtype="fp8", pp=1, vpp=1, cp=1, dp=16, zero=1, recompute="none", recompute_layers=0)
    with pytest.raises(InputError, match="no FP8 recipe"):
        deepspeed.ds_config(c, EST)
    assert deepspeed.ds_config(dict(c, dtype="bf16"), EST)["bf16"] == {"enabled": True}
    with pytest.raises(InputError, match="emit"):
        plan_training(
            "llama-3.1-8b", "h100-sxm", gpus=8, global_batch=64, seq_len=4096, dtype="fp8", emit="deepspeed"
        )
