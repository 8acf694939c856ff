"""Rows measured under an open-loop rate (H200, gpustack performance lab): how they are
predicted, and invariants the predictions must keep."""

from __future__ import annotations

import numpy as np
import pytest

from roofplan.costmodel import serve_load
from roofplan.validation.load_predict import stated_rate
from roofplan.validation.serve_predict import _setup
from roofplan.validation.suite import Case, predict, read_cases


def _rows(prefix: str) -> list[Case]:
    return [c for c in read_cases() if c.id.startswith(prefix)]


def test_rate_is_read_from_the_note_and_not_from_request_rate():
    assert stated_rate(Case({"id": "a", "note": "guidellm open loop rate=8 req/s"})) == 8.0
    assert stated_rate(Case({"id": "b", "note": "vllm bench serve --request_rate=8"})) is None


def test_open_loop_rows_are_the_open_loop_steady_state():
    """A rate row is predicted by open_loop at the stated rate, and its mean latency is its mean
    TTFT plus (E[O] - 1) mean decode iterations (the definition of TPOT, same samples)."""
    case = next(c for c in _rows("gpustack-h200-qwen35-35b-a3b-r8-") if c.metric == "latency_s_mean")
    model, hw, engine, cfg = _setup(case, None)
    r = serve_load.open_loop(
        serve_load.Instance(model, hw, engine, cfg), np.array([342]), np.array([281]), 8.0
    )
    assert predict(case) == pytest.approx(r.latency_s["mean"], rel=1e-12)
    assert r.latency_s["mean"] == pytest.approx(r.ttft_s["mean"] + 280 * r.tpot_s["mean"], rel=1e-9)


def test_h200_latency_rows_under_load():
    """Held-out rows (no constant was fitted on them): gpustack Qwen3.5-35B-A3B on one H200,
    vLLM v0.17.1, ShareGPT at 1, 4 and 8 requests/s (bf16) and 8 requests/s (FP8). vLLM 0.17
    schedules asynchronously, so its 0.6 ms of host work per step hides behind the GPU's step; the
    rows then read -18%, -20%, -13% (bf16) and -27% (FP8, block-scaled), where the synchronous step
    with the earlier 1.5 ms prior read +6..+7% and -17%: at one or two running requests this
    hybrid MoE (Gated DeltaNet + attention, 256 experts) measures ~6.5 ms per token against
    ~4.7 ms of priced GPU work, although its MoE kernels are priced within 10% of vLLM's measured
    ones (tests/test_ops.py moe_vllm): the gap is elsewhere (the small per-layer kernels of the
    GDN and gated-attention blocks are the candidates; not measured here). The bounds pin that
    shortfall, not a target."""
    cases = {c.id: c for c in _rows("gpustack-h200-") if c.metric == "latency_s_mean"}
    assert len(cases) == 4
    for rid, c in cases.items():
        bound = 0.32 if "-fp8-" in rid else 0.25
        assert abs(predict(c) / c.measured - 1) <= bound, rid


def test_h200_ttft_rows_with_the_vllm_017_api_server():
    """vLLM v0.17.1 behind guidellm (engine string vllm-0.17), median TTFTs: its per-request API
    time is fitted on the 1 req/s row and its per-running-request output pass on the 8 req/s bf16
    row (tools/fit_request_overhead.py); the 4 req/s and FP8 8 req/s rows are held back. The
    medians grow 35.6 -> 42.1 -> 62.6 ms from 1 to 8 req/s, the GPU iterations alone 28.8 -> 36.5 (synchronous step)
    ms: without the output pass the held-back rows were -8% and -35%. The means are not rows: a
    few multi-second first tokens carry them (4 req/s: mean 126 ms, median 42, P99 3.6 s)."""
    from roofplan.validation.serve_predict import VLLM_017_API_OUTPUT_S, VLLM_017_REQUEST_OVERHEAD_S

    cases = {c.id: c for c in _rows("gpustack-h200-") if c.metric == "ttft_ms_p50"}
    assert len(cases) == 4 and all(c.str("engine") == "vllm-0.17" for c in cases.values())
    assert 0.001 < VLLM_017_REQUEST_OVERHEAD_S < 0.030
    assert 1e-5 < VLLM_017_API_OUTPUT_S < 2e-3
    for rid in (
        "gpustack-h200-qwen35-35b-a3b-r1-vllm-ttft-p50",
        "gpustack-h200-qwen35-35b-a3b-r8-vllm-ttft-p50",
    ):
        assert predict(cases[rid]) == pytest.approx(cases[rid].measured, rel=0.01), rid  # the fit
    for rid in (
        "gpustack-h200-qwen35-35b-a3b-r4-vllm-ttft-p50",
        "gpustack-h200-qwen35-35b-a3b-fp8-r8-vllm-ttft-p50",
    ):
        assert abs(predict(cases[rid]) / cases[rid].measured - 1) < 0.17, rid  # held back (FP8: -16%)


def test_frontend_wait_is_half_a_pass_plus_the_busy_rest():
    """d running requests at c seconds each make a pass of x = d·c: the first token waits x / 2
    for its place in the pass plus, with probability min(x / t, 1), the rest of the previous pass
    (x / 2); engines without a characterised output pass (the built-in profiles) wait nothing."""
    from roofplan import resolve

    eng = resolve.engine("vllm").replace(api_output_s=4e-4)
    d, t = np.array([10.0, 50.0]), np.array([0.02, 0.02])
    x = 4e-4 * d
    expect = x / 2 * (1 + np.minimum(x / t, 1.0))
    assert serve_load.frontend_wait(eng, d, t) == pytest.approx(expect, rel=1e-12)
    assert expect[1] == pytest.approx(x[1])  # saturated: one pass
    for name in ("vllm", "sglang", "trtllm", "generic"):
        assert serve_load.frontend_wait(resolve.engine(name), d, t).max() == 0.0


def test_server_flags_in_the_note_set_the_engine_profile():
    """SGLang --mem-fraction-static 0.8 leaves 20 % of the memory out of the pool; the running-
    request cap and token budget follow --max-running-requests / --chunked-prefill-size."""
    from roofplan.validation.serve_predict import engine_for, note_engine_args

    case = Case(
        {
            "id": "x",
            "engine": "sglang",
            "note": "mem_fraction_static=0.8 max_running_requests=128 chunked_prefill_size=16384",
        }
    )
    assert note_engine_args(case) == {
        "memory_reserve_fraction": pytest.approx(0.2),
        "max_num_seqs": 128,
        "max_num_batched_tokens": 16384,
    }
    profile, _ = engine_for(case)
    assert (profile.memory_reserve_fraction, profile.max_num_seqs, profile.max_num_batched_tokens) == (
        pytest.approx(0.2),
        128,
        16384,
    )
    assert note_engine_args(Case({"id": "y", "note": "vllm bench serve --max-concurrency 4"})) == {}
    assert note_engine_args(Case({"id": "z", "note": "mamba_ssm_dtype=bfloat16;"})) == {
        "linear_state_bytes": 2.0
    }


def test_saturated_h200_sglang_rows():
    """SGLang cookbook, Qwen3.5 on H200 at 1024 clients (SGLang 0.5.16, 8192/1024 fixed lengths,
    held back): the instance's throughput within 10 % and the median TPOT within 25 % on all four
    servers. Pricing the Gated DeltaNet kernels (costmodel.linear_mixer, on vLLM's measured tables)
    moved the throughput from +11/+8/+9/-3 % to -1/-6/-4/-9 % and the TPOT from +6/-1/+15/+11 % to
    +19/+13/+29/+18 %: at 8192-token prompts about half of each second is prefill (27B FP8: 0.52 s
    per 8192-token step), so TPOT ~ decode step / (1 - prefill share) is as sensitive to the prefill
    step as the throughput is and misses the other way; SGLang's own chunked scan (FLA) measures
    slower than the FlashInfer kernel priced, so the GDN kernels do not explain the gap. SGLang's
    FA3 prefill and DeepGEMM block-FP8 GEMMs (on their measured tables) then brought the FP8 rows
    to TPOT +11 / +20 % and throughput -4 / +3 % (35B-A3B, 27B). The FP8 35B-A3B server ran --mamba-ssm-dtype bfloat16 (its note says so): with the
    linear state at 2 bytes the running batch that Little's law gives from the page's own numbers,
    output tokens/s x TPOT = 35770 x 1024 / 9216 x 42.93 ms = 171 requests, is matched within 10 %
    (the fp32 state admitted 114: TPOT was -34 %)."""
    rows = {c.id: c for c in _rows("sglang-cookbook-h200-")}
    assert len(rows) == 8
    for c in rows.values():
        err = predict(c) / c.measured - 1
        assert abs(err) <= (0.10 if c.metric == "total_tokens_per_s_per_gpu" else 0.25), c.id
    tput, tpot = (rows[f"sglang-cookbook-h200-qwen35-35b-a3b-fp8-c1024-{m}"] for m in ("tput", "tpot"))
    share = 1024 / (8192 + 1024)  # output tokens of the total
    running = predict(tput) * share * predict(tpot) / 1e3
    assert running == pytest.approx(tput.measured * share * tpot.measured / 1e3, rel=0.10)
