"""FSDP2 with pipeline parallelism (torchtitan): memory, traffic, the search and the launch file.

Under a pipeline schedule FSDP2 gathers a stage's weights once per step and keeps them and the
accumulated fp32 gradients unsharded until the last backward, which reduce-scatters once
(``roofplan.costmodel.train_memory.fsdp_under_pipeline``, with its torchtitan / PyTorch sources).
"""

from __future__ import annotations

import tomllib

import pytest

from roofplan import estimate_training, plan_training, resolve
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.train_memory import pipeline_split
from roofplan.launch import torchtitan
from roofplan.solver.frameworks import violation
from tests.picks import estimate_of_pick

GiB = 2**30
#: Llama 3.1 8B by hand (Dubey et al. 2024 Table 3: h 4096, 32 heads / 8 KV heads of 128, FFN 14336,
#: vocabulary 128,256, untied head): Q and O 4096 x 4096 each, K and V 4096 x 1024 each, gated MLP
#: 3 x 4096 x 14336, two RMSNorm vectors of 4096.
LAYER_8B = 4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336 + 2 * 4096
EMBED_8B = 128256 * 4096
#: 32 layers on 2 stages: the heavier is the last, its 16 layers, the final RMSNorm and the head
#: (as large as the first stage's embedding).
STAGE_8B = 16 * LAYER_8B + 4096 + EMBED_8B
LAYOUT = {"tp": 1, "pp": 2, "dp": 8, "micro_batch": 1, "seq_len": 8192}


def _est(**kw):
    return estimate_training("llama-3.1-8b", "h100-sxm", **{**LAYOUT, "global_batch": 32, **kw}).arrays


def test_fsdp2_pipeline_memory_by_hand():
    """Weights (2 B) and fp32 gradients (4 B) of the whole stage stay on every rank; master
    weights and Adam moments (12 B) are sharded over the 8 data-parallel ranks."""
    a = _est(zero=3)
    assert STAGE_8B == 4_015_132_672
    assert float(a.mem_weights[0]) == pytest.approx(2.0 * STAGE_8B, rel=1e-12)
    assert float(a.mem_gradients[0]) == pytest.approx(4.0 * STAGE_8B, rel=1e-12)
    assert float(a.mem_optimizer[0]) == pytest.approx(12.0 * STAGE_8B / 8, rel=1e-12)
    # the same model state as Megatron's distributed optimizer (ZeRO-1) of that layout ...
    z1 = _est(zero=1)
    assert float(a.mem_total[0]) == pytest.approx(float(z1.mem_total[0]), rel=1e-12)
    # ... and far more than ZeRO-3 without a pipeline, which shards all 18 bytes
    flat = estimate_training(
        "llama-3.1-8b", "h100-sxm", **{**LAYOUT, "pp": 1, "dp": 16, "global_batch": 32}, zero=3
    )
    assert float(flat.arrays.mem_weights[0]) < float(a.mem_weights[0]) / 8


def test_fsdp2_pipeline_traffic_is_once_per_step():
    """One reduce-scatter of the stage's fp32 gradients, exposed (it runs after the last
    backward), plus what of one all-gather the first forward does not hide; neither grows with
    the micro-batches, while ZeRO-3 without a pipeline gathers per micro-batch."""
    hw = resolve.hardware("h100-sxm")
    rs = float(collective_time("reduce_scatter", 4.0 * STAGE_8B, 8, hw, 1))
    ag = float(collective_time("all_gather", 2.0 * STAGE_8B, 8, hw, 1))
    # ring reduce-scatter moves (n-1)/n of the bytes through each GPU's NVLink (450 GB/s a direction)
    assert rs >= 7 / 8 * 4.0 * STAGE_8B / 450e9
    few, many = _est(zero=3, global_batch=32), _est(zero=3, global_batch=128)
    t_dp = float(few.t_dp_comm[0])
    assert rs <= t_dp <= rs + ag
    assert float(many.t_dp_comm[0]) == pytest.approx(t_dp, rel=1e-12)
    # everything else equals ZeRO-1's step (same memory, same compute), only the DP term differs
    z1 = _est(zero=1, global_batch=32)
    for term in ("t_compute", "t_tp_comm", "t_pp_bubble", "t_pp_comm", "t_optimizer"):
        assert float(getattr(few, term)[0]) == pytest.approx(float(getattr(z1, term)[0]), rel=1e-12)
    assert float(few.step_time_s[0]) - float(z1.step_time_s[0]) == pytest.approx(
        t_dp - float(z1.t_dp_comm[0]), rel=1e-9
    )
    # nothing hidden: exactly one reduce-scatter and one all-gather per step, whatever the batch
    for gb in (32, 128):
        bare = _est(zero=3, global_batch=gb, overlap_param_gather=False, overlap_grad_reduce=False)
        assert float(bare.t_dp_comm[0]) == pytest.approx(rs + ag, rel=1e-12)
    # ZeRO-3 without a pipeline gathers and reduces per micro-batch: 4x the micro-batches, 4x the time
    flat = [
        estimate_training(
            "llama-3.1-8b",
            "h100-sxm",
            **{**LAYOUT, "pp": 1, "dp": 16},
            zero=3,
            global_batch=gb,
            overlap_param_gather=False,
        ).arrays
        for gb in (32, 128)
    ]
    assert float(flat[1].t_dp_comm[0]) == pytest.approx(4 * float(flat[0].t_dp_comm[0]), rel=1e-9)


#: Llama 3.1 405B on 256 H100 with TP fixed at 8 (Meta's own TP degree): torchtitan's best plan
#: pipelines with FSDP2 (ZeRO-3 without a pipeline would gather 405B / 8 weights per micro-batch).
PLAN_405B = {"gpus": 256, "global_batch": 512, "seq_len": 4096, "emit": "torchtitan", "top": 3}


def test_torchtitan_plan_picks_fsdp2_with_pipeline_and_equals_estimate():
    plan = plan_training("llama-3.1-405b", "h100-sxm", constraints={"fix": "tp=8"}, **PLAN_405B)
    b = plan.best
    assert b["pp"] > 1 and b["zero"] == 3 and b["dp"] > 1
    fixed = plan_training(
        "llama-3.1-405b",
        "h100-sxm",
        constraints={
            "fix": f"tp=8,pp={b['pp']},cp={b['cp']},zero=3,mb={b['micro_batch']},recompute={b['recompute']}"
        },
        **PLAN_405B,
    ).best
    est = estimate_of_pick("llama-3.1-405b", fixed)
    assert fixed["step_time_s"] == pytest.approx(est["step_time_s"], rel=1e-12)
    assert fixed["memory_gib_per_gpu"]["total"] == pytest.approx(
        est["memory_gib_per_gpu"]["total"], rel=1e-12
    )
    doc = tomllib.loads(torchtitan.emit(plan.model, plan.config(b), b, "0.2")[torchtitan.TOML])
    par = doc["parallelism"]
    assert (par["pipeline_parallel_degree"], par["data_parallel_shard_degree"]) == (b["pp"], b["dp"])
    assert par["data_parallel_replicate_degree"] == 1
    # "default" resolves to no resharding after forward under PP: what the cost model prices
    assert par["fsdp_reshard_after_forward"] == "default"
    assert par["pipeline_parallel_schedule"] == ("Interleaved1F1B" if b["vpp"] > 1 else "1F1B")
    # Megatron-LM and DeepSpeed cannot run it, and say so
    assert violation("megatron", plan.config(b)) and violation("deepspeed", plan.config(b))


def _torchtitan_stage_layers(layers: int, stages: int, first_less: int, last_less: int) -> list[int]:
    """Decoder layers per stage as torchtitan deals them out (``_generate_llm_fqn_per_model_part``:
    the embedding and the head count ``first_less`` / ``last_less`` layers, the effective layers
    split evenly, the remainder to the first stages)."""
    eff = layers + first_less + last_less
    per, extra = divmod(eff, stages)
    out = [per + (i < extra) for i in range(stages)]
    out[0] -= first_less
    out[-1] -= last_less
    return out


@pytest.mark.parametrize("layers,pp,vpp", [(126, 16, 1), (80, 8, 1), (32, 2, 1), (80, 4, 5), (61, 4, 1)])
def test_torchtitan_stage_split_matches_the_cost_model(layers, pp, vpp):
    keys = torchtitan.stage_split(layers, pp, vpp)
    lps = keys["pipeline_parallel_layers_per_stage"]
    first_less = keys["pipeline_parallel_first_stage_less_layers"]
    last_less = keys["pipeline_parallel_last_stage_less_layers"]
    stages = -(-(layers + first_less + last_less) // lps)  # torchtitan: ceil(effective / per stage)
    assert stages == pp * vpp  # a multiple of pp with vpp stages per rank, as the schedule needs
    got = _torchtitan_stage_layers(layers, stages, first_less, last_less)
    if vpp > 1:
        assert got == [layers // stages] * stages
    else:
        first, middle, last = (int(x) for x in pipeline_split(layers, pp))
        assert got == [first] + [middle] * (pp - 2) + [last]
