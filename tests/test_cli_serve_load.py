"""``estimate serve --concurrency/--rate``, ``simulate`` and the workload inputs through the CLI."""

import json

import numpy as np
import pytest

from roofplan.workload import PRESETS, make_workload, preset_workload
from tests.commands import serve_plan

BASE = ["--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--engine", "vllm"]
EST = ["estimate", "serve", *BASE]
SIM = ["simulate", *BASE]


def test_concurrency_json_has_the_spec_load_keys(cli):
    r = cli(*EST + ["--concurrency", "32", "--isl", "1000", "--osl", "200", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for m in ("ttft", "tpot", "latency"):
        assert doc[f"{m}_p50_ms"] <= doc[f"{m}_p90_ms"] <= doc[f"{m}_p99_ms"]
    assert 0 < doc["utilisation"] < 1
    assert doc["inputs"]["concurrency"] == 32
    # Little's law for the closed loop: 32 in flight = rate x mean latency
    assert doc["request_rate_rps"] * doc["latency_ms"] / 1e3 == pytest.approx(32, rel=0.02)
    assert doc["output_tokens_per_s"] == pytest.approx(doc["request_rate_rps"] * 200, rel=1e-9)


def test_static_batch_is_unchanged_and_exclusive(one_line_error, cli):
    r = cli(*EST + ["--batch", "8", "--isl", "1000", "--osl", "200", "--json"])
    assert r.exit_code == 0 and "ttft_p90_ms" not in json.loads(r.stdout)
    line = one_line_error(cli(*EST + ["--batch", "8", "--rate", "2", "--isl", "10", "--osl", "10"]), 2)
    assert "exactly one of --batch, --concurrency, --rate" in line
    line = one_line_error(cli(*EST + ["--batch", "8", "--workload", "chat"]), 2)
    assert "--batch" in line


def test_unsustainable_rate_exits_3_naming_the_largest_rate(one_line_error, cli):
    line = one_line_error(cli(*EST + ["--rate", "1000", "--isl", "1000", "--osl", "200"]), 3)
    assert "largest sustainable rate is" in line
    mr = float(line.split("largest sustainable rate is ")[1].split()[0])
    r = cli(*EST + ["--rate", str(0.95 * mr), "--isl", "1000", "--osl", "200", "--json"])
    assert r.exit_code == 0, r.output
    # simulate refuses the same rate with the same line (its queue would grow without bound, and
    # its percentiles with the number of requests simulated); below it, it runs
    sim = one_line_error(cli(*SIM + ["--rate", "1000", "--isl", "1000", "--osl", "200"]), 3)
    assert sim == line
    r = cli(*SIM + ["--rate", str(0.9 * mr), "--isl", "1000", "--osl", "200", "--requests", "2000", "--json"])
    assert r.exit_code == 0, r.output


def test_disagg_rate_above_either_role_exits_3_naming_the_instances(one_line_error, cli):
    """xPyD: the rate above the prefill instances' upper bound (iterations full of prompt tokens)
    or the decode instances' (the largest batch decoding) is refused like a colocated one; the
    instances the line names carry it."""
    args = ["--mode", "disagg", "--isl", "1000", "--osl", "200", "--requests", "1500"]
    line = one_line_error(cli(*SIM, *args, "--rate", "1000"), 3)
    assert "1 prefill and 1 decode instance(s)" in line and "side binds" in line
    bound = float(line.split("at most ")[1].split()[0])
    p = int(line.split("--prefill-instances ")[1].split()[0])
    d = int(line.split("--decode-instances ")[1].split(")")[0])
    assert p > 1 and d > 1 and bound < 1000
    ok = cli(*SIM, *args, "--rate", "1000", "--prefill-instances", str(p), "--decode-instances", str(d))
    assert ok.exit_code == 0, ok.output
    # below the bound it simulates
    assert cli(*SIM, *args, "--rate", str(0.5 * bound)).exit_code == 0


@pytest.mark.parametrize(
    "name,text,where",
    [
        ("w.csv", "isl,osl\n100,200\n100,abc\n", "w.csv:3:5 osl"),
        ("w.csv", "isl,osl\n0,200\n", "w.csv:2:1 isl"),
        ("w.csv", "prompt,out\n1,2\n", "w.csv:1:1"),
        ("w.jsonl", '{"isl": 10, "osl": 5}\n{"isl": 10, osl: 5}\n', "w.jsonl:2:"),
        ("w.jsonl", '{"isl": 10, "osl": -5}\n', "w.jsonl:1:13 osl"),
    ],
)
def test_bad_workload_files_get_file_line_and_column(tmp_path, name, text, where, one_line_error, cli):
    p = tmp_path / name
    p.write_text(text)
    line = one_line_error(cli(*EST + ["--rate", "1", "--workload", str(p)]), 2)
    assert where in line


def test_bad_distribution_and_conflicting_sources(one_line_error, cli):
    line = one_line_error(cli(*EST + ["--rate", "1", "--isl-dist", "weibull:1,2", "--osl", "9"]), 2)
    assert "--isl-dist" in line and "lognormal" in line
    line = one_line_error(
        cli(*EST + ["--rate", "1", "--isl", "9", "--isl-dist", "normal:9,1", "--osl", "9"]), 2
    )
    assert "not both" in line
    line = one_line_error(cli(*EST + ["--rate", "1", "--workload", "nonesuch"]), 2)
    assert "chat" in line


def test_distributions_have_the_requested_moments():
    for spec, sd in (
        ("normal:1000,200", 200),
        ("lognormal:1000,500", 500),
        ("uniform:1000,300", 300 / 3**0.5),
    ):
        w = make_workload(isl_dist=spec, osl=10, n=20000)
        assert w.isl.mean() == pytest.approx(1000, rel=0.02)
        assert w.isl.std() == pytest.approx(sd, rel=0.05)
    w = make_workload(isl_dist="empirical:100,300", osl=10, n=20000)
    assert set(np.unique(w.isl)) == {100, 300}


def test_presets_reproduce_their_published_medians_and_p90s():
    for name, p in PRESETS.items():
        w = preset_workload(name, n=20000)
        assert np.median(w.isl) == pytest.approx(p.isl_p50, rel=0.04)
        assert np.percentile(w.osl, 90) == pytest.approx(p.osl_p90, rel=0.06)
        assert "http" in p.source


def test_trace_with_arrivals_drives_the_simulator(tmp_path, cli):
    p = tmp_path / "t.jsonl"
    rows = [{"isl": 500, "osl": 50, "arrival_s": 0.25 * i} for i in range(400)]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    r = cli(*SIM + ["--workload", str(p), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["inputs"]["simulated_requests"] == 400
    assert doc["request_rate_rps"] == pytest.approx(4.0, rel=0.05)


def test_simulate_agrees_with_estimate_through_the_cli(cli):
    args = ["--rate", "6", "--isl", "1000", "--osl", "200", "--json"]
    est = json.loads(cli(*EST + args).stdout)
    sim = json.loads(cli(*SIM + args + ["--requests", "5000"]).stdout)
    assert sim["tpot_ms"] == pytest.approx(est["tpot_ms"], rel=0.05)
    assert sim["ttft_ms"] == pytest.approx(est["ttft_ms"], rel=0.12)
    assert set(k for k in est if k.endswith("_ms")) <= set(sim)


def test_simulate_a_plan(tmp_path, one_line_error, cli):
    plan = tmp_path / "plan.json"
    r = cli(*serve_plan(2, 1000, 200), "--engine", "vllm", "--json")
    assert r.exit_code == 0, r.output
    plan.write_text(r.stdout)
    s = cli("simulate", "--plan", str(plan), "--requests", "3000", "--json")
    assert s.exit_code == 0, s.output
    doc = json.loads(s.stdout)
    assert doc["inputs"]["gpus_total"] <= 2
    assert doc["request_rate_rps"] > 0
    line = one_line_error(cli("simulate", "--plan", str(tmp_path / "none.json")), 2)
    assert "--plan" in line
