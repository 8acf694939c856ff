"""The serving rows of the built-in suite: every row predicted, accuracy bounds we achieve, and the
engine table covering every engine string."""

import pytest

from roofplan.validation.serve_predict import ENGINE_MAP, engine_for
from roofplan.validation.suite import read_cases, run_suite

SERVE = ("serve_step", "serve_throughput")


@pytest.fixture(scope="module")
def result():
    return run_suite(cases=[c for c in read_cases() if c.kind in SERVE])


def test_every_serving_row_is_predicted(result):
    assert len(result.results) >= 28
    assert all(r.predicted is not None and r.predicted > 0 for r in result.results)


def test_serving_accuracy_bounds(result):
    # median |error| over the serving rows (goal <= 15%); the worst case is the H100 8192-token
    # prefill of the Splitwise profile (measured 848 ms, well above any fused-attention estimate)
    assert result.median_abs_error(SERVE) <= 0.12
    assert result.worst_abs_error(SERVE) <= 0.65
    within_25 = sum(e <= 0.25 for e in result.errors(SERVE)) / len(result.errors(SERVE))
    assert within_25 >= 0.8


def test_each_family_is_accurate_on_its_own(result):
    by_engine = {}
    for r in result.results:
        family = r.case.str("engine") + ("-fp4" if r.case.str("dtype") == "fp4" else "")
        by_engine.setdefault(family, []).append(abs(r.error))
    med = {k: sorted(v)[len(v) // 2] for k, v in by_engine.items()}
    assert med["trtllm-0.6.1"] <= 0.10
    assert med["fastertransformer"] <= 0.15
    assert med["splitwise-profile"] <= 0.25
    # today's engines: TensorRT-LLM perf-overview max-throughput tables (v0.17 TRT engines, 1.0
    # PyTorch backend), Llama 3.1 8B / 70B / 405B and 3.3 70B in FP8 on H100 and H200, TP 1-8
    assert med["trtllm-0.17-bench"] <= 0.08
    assert med["trtllm-1.0-bench"] <= 0.08
    # B200 / GB200 NVFP4 rows of the same 1.0 table, on the NVFP4 GEMM and TensorRT-LLM decode
    # kernels fitted on NVIDIA's measured B200 / GB200 tables: median +5 %, bounded here
    assert med["trtllm-1.0-bench-fp4"] <= 0.10


def test_blackwell_fp4_rows_are_over_predicted_not_scattered(result):
    """The Blackwell rows err high or within a point of zero (what the kernel fits leave out is
    serving overhead, which adds time: -0.5 % .. +16 %), and GB200 sits above B200 as its peaks do."""
    rows = {r.case.id: r for r in result.results if r.case.str("dtype") == "fp4"}
    assert len(rows) >= 10 and all(-0.02 < r.error < 0.20 for r in rows.values())
    b, g = rows["trtllm10-b200-l33-70b-tp1-fp4-1000-1000"], rows["trtllm10-gb200-l33-70b-tp1-fp4-1000-1000"]
    assert g.case.measured > b.case.measured and g.predicted > b.predicted


def test_engine_table_covers_every_serving_engine_string():
    for case in read_cases():
        if case.kind in SERVE:
            assert case.str("engine") in ENGINE_MAP


def test_engine_versions_differ_from_todays_profile_only_where_documented():
    case = next(c for c in read_cases() if c.str("engine") == "trtllm-0.6.1" and c.str("dtype") == "fp8")
    profile, kv = engine_for(case)
    assert profile.name == "trtllm" and not profile.gqa_kv_shared and kv == "fp8"
    case = next(c for c in read_cases() if c.str("engine") == "splitwise-profile")
    profile, kv = engine_for(case)
    assert profile.name == "vllm" and not profile.cuda_graphs and kv is None


def test_ambiguous_a100_rows_read_per_gpu(result):
    """The A100 rows whose header says 'tok/s' are read per GPU; for the 2-GPU row the total reading
    would double the prediction and be far off, the per-GPU reading is close."""
    r = next(r for r in result.results if r.case.id == "trtllm061-a100-l7b-tp2-2048-2048")
    assert abs(r.error) < 0.15
    assert abs(2 * r.predicted / r.case.measured - 1) > 0.8


def test_max_throughput_rows_run_at_the_batch_the_kv_cache_admits(result):
    """A max-throughput row (no batch column) runs at the largest batch whose KV cache fits, in an
    engine built with trtllm-bench's tuned limits (here a 2048-token budget, see
    test_bench_settings_follow_trtllm_bench_tuning). Hand calculation for Llama-3.1-70B FP8 on one
    H100 at 128/2048 (trtllm-bench, v0.17): weights = 68.45e9 FP8 decoder params (1 B) + embedding
    and LM head 2 x 128256 x 8192 in bf16 (2 B) = 72.65e9 B; HBM 80 GiB = 85.90e9 less the 2 GiB
    runtime reserve = 83.75e9; the KV cache gets 0.95 of the 11.10e9 left, less the 2048-token
    activation workspace (2048 x 2 x (4 x 8192 + 8192 + 2048 + 8192 + 2 x 28672) B = 0.445e9):
    10.10e9 B; each request holds (128 + 2048) tokens x 80 layers x 8 KV heads x 128 x 2 (K, V) x
    1 B = 356.5e6 B (+ 0.5e6 of fp32 logits) -> 28 requests."""
    from roofplan.costmodel.serve import ServeConfigs, serve_step
    from roofplan.hardware.catalog import load_hardware
    from roofplan.models.loader import load_model
    from roofplan.validation.serve_predict import bench_settings, bench_throughput, engine_batch

    case = next(c for c in read_cases() if c.id == "trtllm017-h100-l31-70b-tp1-128-2048")
    model, hw = load_model("llama-3.1-70b"), load_hardware("h100-sxm")
    engine, kv = engine_for(case)
    cfg = ServeConfigs.single(tp=1, batch=1, isl=128, osl=2048, dtype="fp8", kv_dtype=kv, engine="trtllm")
    max_bs, budget = bench_settings(model, hw, cfg)
    engine = engine.replace(max_num_seqs=max_bs, max_num_batched_tokens=budget)
    reached = engine_batch(model, hw, engine, cfg)
    assert 27 <= int(reached.batch[0]) <= 29
    # the prediction composes the 3000-request run at that batch (107 full waves and one of 4:
    # within a few % of the static batch), and one more request would not fit
    r = next(r for r in result.results if r.case.id == case.id)
    a = serve_step(model, hw, reached, engine)
    assert r.predicted == pytest.approx(bench_throughput(model, hw, engine, reached, 3000))
    assert r.predicted == pytest.approx(float(a.output_tokens_per_s[0]), rel=0.05)
    assert a.fits[0]
    bigger = ServeConfigs.single(
        tp=1, batch=int(reached.batch[0]) + 1, isl=128, osl=2048, dtype="fp8", kv_dtype=kv, engine="trtllm"
    )
    assert not serve_step(model, hw, bigger, engine).fits[0]
    # measured 911.6 tok/s: with 28 running requests the memory-bound decode step (~31 ms)
    assert abs(r.error) < 0.10


@pytest.mark.parametrize(
    "batch,isl,osl,budget",
    [
        (1573, 128, 2048, 2048),  # 1573 x 1.0625 = 1671 < 4096: at least 2048
        (2500, 128, 2048, 2816),  # 2656.25 -> up to a multiple of 256
        (300, 2048, 128, 5120),  # 5100 -> up to a multiple of 512
        (1633, 5000, 500, 18432),  # 17963 -> up to a multiple of 1024
        (4096, 2048, 128, 32768),  # 69632 capped at 32768
    ],
)
def test_bench_token_budget_is_trtllm_bench_tuning(batch, isl, osl, budget):
    """trtllm-bench's max_num_tokens (tuning.py finetune_setting), by hand."""
    from roofplan.validation.serve_predict import bench_token_budget

    assert bench_token_budget(batch, isl, osl) == budget


def test_a_bench_run_pays_for_its_last_partial_wave():
    """B + 1 requests at batch B run a second wave of one request: its osl - 1 decode steps at
    batch 1 come on top of the first wave, so the run's throughput falls below that of 2B
    requests (two full waves), and the extra span is at least those steps."""
    from roofplan.costmodel.serve import ServeConfigs, step_time
    from roofplan.engines.catalog import load_engine
    from roofplan.hardware.catalog import load_hardware
    from roofplan.models.loader import load_model
    from roofplan.validation.serve_predict import bench_throughput

    model, hw = load_model("llama-3.1-8b"), load_hardware("h100-sxm")
    engine = load_engine("trtllm")
    B, isl, osl = 64, 128, 256
    cfg = ServeConfigs.single(tp=1, batch=B, isl=isl, osl=osl, dtype="fp8", kv_dtype="fp8", engine="trtllm")
    full = bench_throughput(model, hw, engine, cfg, 2 * B)
    one = bench_throughput(model, hw, engine, cfg, B)
    partial = bench_throughput(model, hw, engine, cfg, B + 1)
    assert partial < full
    t1 = float(step_time(model, hw, engine, cfg, 0.0, 0.0, 1.0, isl + osl / 2.0)[0])
    span_one, span_partial = B * osl / one, (B + 1) * osl / partial
    assert span_partial - span_one >= 0.9 * (osl - 1) * t1


@pytest.mark.parametrize("tp,settings", [(1, (64, 2048)), (8, (1792, 2048))])
def test_bench_settings_follow_trtllm_bench_tuning(tp, settings):
    """trtllm-bench's tuning for Llama-3.1-70B FP8 (70.55e9 params x 1 B) on H100 (80 GiB =
    85.90e9 B) at 128/2048, by hand: KV per token 2 x 80 layers x max(tp, 8) heads x 128 x 1 B =
    163840 B, x 2176 tokens = 356.5e6 B a request. TP1: 0.95 x (85.90e9 - 70.55e9) / 356.5e6 =
    40.9 requests -> batch cap 64 (the minimum), budget 40.9 x 1.0625 = 43 -> 2048. TP8:
    0.95 x (8 x 85.90e9 - 70.55e9) / 356.5e6 = 1643 -> 1792 (multiple of 256), 1746 -> 2048."""
    from roofplan.costmodel.serve import ServeConfigs
    from roofplan.hardware.catalog import load_hardware
    from roofplan.models.loader import load_model
    from roofplan.validation.serve_predict import bench_settings

    cfg = ServeConfigs.single(tp=tp, batch=1, isl=128, osl=2048, dtype="fp8", kv_dtype="fp8", engine="trtllm")
    assert bench_settings(load_model("llama-3.1-70b"), load_hardware("h100-sxm"), cfg) == settings


@pytest.mark.parametrize("raw,cap", [(40.9, 64), (300, 384), (1643, 1792), (9000, 4096)])
def test_bench_batch_cap_is_trtllm_bench_tuning(raw, cap):
    from roofplan.validation.serve_predict import bench_batch_cap

    assert bench_batch_cap(raw) == cap


@pytest.mark.parametrize(
    "batch,max_bs,tokens,padded",
    [
        (393, 512, 2048, 512),  # the next listed size
        (1320, 1536, 2048, 1536),  # above 1024 and under the cap: the cap itself is captured
        (1000, 4096, 2048, 1024),
        (3000, 4096, 2048, 3000),  # above min(max_batch_size, max_num_tokens): eager, unpadded
        (64, 64, 2048, 64),
    ],
)
def test_padded_graph_batch_is_trtllm_pytorch_padding(batch, max_bs, tokens, padded):
    from roofplan.validation.serve_predict import padded_graph_batch

    assert padded_graph_batch(batch, max_bs, tokens) == padded


def test_mixed_share_counts_iterations_that_carry_a_replacement_prompt():
    """434 requests of 128/2048 under a 2048-token budget: 434 / 2048 finish per iteration, each
    replacement prompt fits the 1614 tokens left in one iteration -> 21.2% of iterations; 128/128
    at 1694 requests: 13 finish per iteration -> every iteration carries prompts."""
    from roofplan.validation.serve_predict import mixed_share

    assert mixed_share(434, 128, 2048, 2048) == pytest.approx(434 / 2048)
    assert mixed_share(1694, 128, 128, 3584) == 1.0
    assert mixed_share(100, 5000, 1000, 2148) == pytest.approx(100 / 1000 * 3)


def test_a_calibration_overlay_applies_after_the_engine_version_table():
    """The suite's vLLM V0 rows set step_overhead_s from their version table; a user's overlay that
    fits vllm.step_overhead_s must still move them (calibrate could not before: the table won).
    Static batch of 16 for 1023 decode steps: 1 ms more per step is ~1.02 s more in series."""
    from roofplan.validation.suite import predict, read_cases

    (case,) = [c for c in read_cases() if c.id == "lib-h100-l3-8b-b16-1024"]
    base = predict(case)
    ov = {
        "schema": "roofplan.calibration/v1",
        "hardware": "h100-sxm",
        "engines": {"vllm": {"step_overhead_s": 0.0}},
    }
    zero = predict(case, ov)
    ov["engines"]["vllm"]["step_overhead_s"] = 1e-3
    one = predict(case, ov)
    assert zero < base
    assert one - zero == pytest.approx(1024 * 1e-3, rel=0.01)
