"""``roofplan validate --measurements``: every operator row predicted without a fit, errors per family
and size band, one line and exit 2 for a malformed row."""

import json
from pathlib import Path

import pytest

from roofplan.calibration.formats import read_measurements
from roofplan.calibration.op_rows import predict_op_rows
from roofplan.hardware.catalog import load_hardware

DATA = Path(__file__).parent / "data"

ROWS = """kind,hardware,id,m,n,k,dtype,batch,heads,kv_heads,head_dim,seq_len,kv_len,kv_dtype,op,ranks,bytes,impl,tokens,experts,topk,hidden,moe_ffn,ep,distribution,time_us
gemm,h100-sxm,g1,4096,8192,8192,bf16,,,,,,,,,,,,,,,,,,,355
gemm,h100-sxm,g2,1,8192,8192,fp8,,,,,,,,,,,,,,,,,,,37
attention,h100-sxm,a1,,,,bf16,8,32,8,128,4096,4096,bf16,,,,,,,,,,,,1200
decode_attention,h100-sxm,d1,,,,,64,32,8,128,,4096,bf16,,,,,,,,,,,,180
moe,h100-sxm,m1,,,,bf16,,,,,,,,,,,,4096,128,8,4096,1536,8,balanced,900
collective,h100-sxm,c1,,,,,,,,,,,,all_reduce,8,1048576,nccl,,,,,,,,40
collective,h100-sxm,c2,,,,,,,,,,,,all_reduce,8,65536,custom,,,,,,,,12
collective,h100-sxm,c3,,,,,,,,,,,,all_reduce,8,4194304,custom_vllm,,,,,,,,31
linear_attention,h100-sxm,l1,,,,fp32,64,32,16,128,1,,,recurrent_update,,,vllm,,,,,,,,71
linear_attention,h100-sxm,l2,,,,,8,32,16,128,4096,,,chunk_scan,,,sglang,,,,,,,,3380
"""


def test_every_row_is_predicted_by_the_shared_row_predictor(tmp_path, cli):
    f = tmp_path / "ops.csv"
    f.write_text(ROWS)
    r = cli("validate", "--measurements", str(f), "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "roofplan.validate.measurements/v1"
    assert [row["id"] for row in doc["rows"]] == ["g1", "g2", "a1", "d1", "m1", "c1", "c2", "c3", "l1", "l2"]
    # the numbers are the operator library's, row by row (no fit)
    hw = load_hardware("h100-sxm")
    ms = read_measurements(f)
    for row, m in zip(doc["rows"], ms, strict=True):
        expect = float(predict_op_rows(m.kind, [m], hw)[0])
        assert row["predicted_s"] == pytest.approx(expect, rel=1e-12)
        assert row["error"] == pytest.approx(expect / m.target - 1, rel=1e-9)
    fams = {f["family"] for f in doc["families"]}
    assert fams == {
        "gemm",
        "attention",
        "decode_attention",
        "moe",
        "nccl",
        "custom_allreduce",
        "linear_attention_vllm",
        "linear_attention_sglang",
    }


def test_table_shows_families_and_bands(tmp_path, cli):
    f = tmp_path / "ops.csv"
    f.write_text(ROWS)
    r = cli("validate", "--measurements", str(f))
    assert r.exit_code == 0, r.output
    assert "decode_attention" in r.stdout and "held back" in r.stdout and "p90" in r.stdout


def test_hardware_filter_counts_what_it_skips(cli):
    r = cli(
        "validate",
        "--measurements",
        str(DATA / "measured_kernels_a100.csv"),
        "--measurements",
        str(DATA / "measured_kernels_hopper.csv"),
        "--hardware",
        "a100-sxm-80gb",
        "--json",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {row["hardware"] for row in doc["rows"]} == {"a100-sxm-80gb"}
    assert doc["skipped"]["hardware h100-sxm"] > 1000 and doc["skipped"]["hardware h200-sxm"] > 1000
    gemm = next(f for f in doc["families"] if f["family"] == "gemm")
    assert gemm["held_back"]["rows"] > 500 and gemm["held_back"]["median_abs_error"] < 0.15


@pytest.mark.parametrize(
    "line,where",
    [
        ("gemm,h100-sxm,bad,4096,abc,8192,bf16,,,,,,,,,,,,,,,,,,,355", "line 2 n"),
        ("moe,h100-sxm,bad,,,,bf16,,,,,,,,,,,,4096,128,8,4096,1536,8,zipf,900", "line 2 distribution"),
        ("collective,h100-sxm,bad,,,,,,,,,,,,all_gather,8,4096,custom,,,,,,,,12", "line 2 impl"),
        ("collective,h100-sxm,bad,,,,,,,,,,,,all_gather,8,4096,custom_vllm,,,,,,,,12", "line 2 impl"),
        ("collective,h100-sxm,bad,,,,,,,,,,,,all_reduce,8,4096,custom_tgi,,,,,,,,12", "line 2 impl"),
        ("decode_attention,h100-sxm,bad,,,,,64,32,8,128,,-5,bf16,,,,,,,,,,,,180", "line 2 kv_len"),
        ("decode_attention,h100-sxm,bad,,,,,64,32,8,128,,4096,bf16,,,,nvls,,,,,,,,180", "line 2 impl"),
        ("linear_attention,h100-sxm,bad,,,,,64,32,16,128,1,,,scan,,,vllm,,,,,,,,71", "line 2 op"),
        ("linear_attention,h100-sxm,bad,,,,,64,32,16,128,4,,,conv_update,,,vllm,,,,,,,,9", "line 2 seq_len"),
        ("linear_attention,h100-sxm,bad,,,,,64,32,16,128,4096,,,conv,,,vllm,,,,,,,,ms", "line 2 time_us"),
    ],
)
def test_malformed_row_is_one_line_naming_file_line_and_column(tmp_path, line, where, cli):
    f = tmp_path / "bad.csv"
    f.write_text(ROWS.splitlines()[0] + "\n" + line + "\n")
    r = cli("validate", "--measurements", str(f))
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and f"bad.csv {where}" in err and "Traceback" not in err


def test_hardware_without_measurements_flag_is_a_usage_error(cli):
    r = cli("validate", "--hardware", "h100-sxm")
    assert r.exit_code == 2 and "--measurements" in r.stderr


def test_a_custom_row_naming_its_engine_is_priced_by_that_engines_rule(tmp_path):
    """On H100 a 4 MiB all-reduce on 8 ranks is NCCL under TensorRT-LLM AUTO (above 500e3 bytes),
    symmetric-memory multimem under vLLM and two-shot under SGLang: three different predictions,
    each the operator library's for that rule."""
    from roofplan.costmodel import ops
    from roofplan.costmodel.collectives import collective_time
    from roofplan.engines.allreduce import STRATEGIES

    head = ROWS.splitlines()[0]
    lines = [
        f"collective,h100-sxm,{e},,,,,,,,,,,,all_reduce,8,4194304,custom_{e},,,,,,,,30"
        for e in STRATEGIES
        if e != "generic"
    ]
    f = tmp_path / "ar.csv"
    f.write_text(head + "\n" + "\n".join(lines) + "\n")
    hw = load_hardware("h100-sxm")
    ms = read_measurements(f)
    got = {m.id: float(predict_op_rows("collective", [m], hw)[0]) for m in ms}
    assert got["trtllm"] == pytest.approx(float(collective_time("all_reduce", 4194304, 8, hw)))
    for e in ("vllm", "sglang"):
        assert got[e] == pytest.approx(
            float(ops.custom_allreduce_time(4194304, 8, hw, strategy=STRATEGIES[e]))
        )
    assert len(set(got.values())) == 3
