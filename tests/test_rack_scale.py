"""Rack-scale NVLink (GB200/GB300 NVL72), wide EP with attention DP, and speculative decoding in
the plan and its launch files.

Expected values: the catalog's sourced figures re-derived by hand (NVL72 page: 130 TB/s NVLink
over 72 GPUs, 576 TB/s HBM), invariants (a 16-GPU all-to-all inside an NVLink domain beats one
that crosses 400 Gb/s NICs), and the flags each engine documents for what the plan chose."""

from __future__ import annotations

import json

import pytest
import yaml

from roofplan import load_hardware, plan_serving
from roofplan.costmodel.collectives import collective_time
from roofplan.costmodel.serve_features import SpecDecode


@pytest.mark.parametrize("hw_id", ["gb200-nvl72", "gb300-nvl72"])
def test_nvl72_node_is_the_nvlink_domain(hw_id):
    hw = load_hardware(hw_id)
    assert hw.devices_per_node == 72
    assert hw.intra.bandwidth_Bps == pytest.approx(130e12 / 72 / 2, rel=0.01)  # per direction
    assert hw.hbm_Bps == pytest.approx(576e12 / 72, rel=0.01)
    assert hw.intra.in_network_reduction


def test_wide_ep_all_to_all_stays_on_nvlink_in_the_rack():
    nbytes = 64 * 2**20
    rack = collective_time("all_to_all", nbytes, 16, load_hardware("gb200-nvl72"))
    hgx = collective_time("all_to_all", nbytes, 16, load_hardware("b200-sxm"))  # 2 nodes over IB
    assert float(rack) < float(hgx) / 4  # 900 GB/s NVLink vs 50 GB/s NIC per GPU


@pytest.fixture(scope="module")
def plan():
    return plan_serving(
        "deepseek-v3.2",
        "gb200-nvl72",
        gpus=72,
        isl=4000,
        osl=1000,
        tpot_ms=50,
        dtype="fp8",
        engine="sglang",
        speculative=SpecDecode.of("mtp", 3),
    )


def test_deepseek_plans_on_gb200_with_attention_dp_wide_ep_and_mtp(plan):
    d = plan.best["decode"]
    assert d["dp"] > 1 and d["ep"] == d["tp"] * d["dp"] >= 8
    assert d["tp"] * d["pp"] * d["dp"] > 8  # an instance larger than an HGX node: NVL72 only
    assert plan.request["speculative"]["method"] == "mtp"
    assert plan.best["tpot_ms"] <= 50


def test_launch_files_carry_ep_dp_attention_and_mtp(plan):
    d = plan.best["decode"]
    sglang = "\n".join(plan.launch["sglang"].values())
    assert "--speculative-algorithm EAGLE" in sglang and "--speculative-num-steps 3" in sglang
    assert "--speculative-num-draft-tokens 4" in sglang
    assert f"--ep-size {d['ep']}" in sglang and "--enable-dp-attention" in sglang
    vllm = "\n".join(plan.launch["vllm"].values())
    assert '"method":"mtp","num_speculative_tokens":3' in vllm and "--enable-expert-parallel" in vllm
    trt = yaml.safe_load(plan.launch["trtllm"]["trtllm_decode.yaml"])
    assert trt["speculative_config"] == {"decoding_type": "MTP", "num_nextn_predict_layers": 3}
    assert trt["moe_expert_parallel_size"] == d["ep"] and trt["enable_attention_dp"]
    pre = yaml.safe_load(plan.launch["trtllm"]["trtllm_prefill.yaml"])
    assert pre["speculative_config"] == trt["speculative_config"]  # the context phase drafts too
    json.dumps(plan.to_json())  # the plan document stays serialisable with the new inputs
