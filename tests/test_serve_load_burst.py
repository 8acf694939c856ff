"""One-burst serving rows (``burst=N``: N requests handed to the engine at t = 0 and drained,
``vllm bench throughput``) and the simulator's burst start of a closed loop: the burst path against
a hand calculation from the step times, and the settings the MI300X rows must state."""

from __future__ import annotations

import numpy as np
import pytest

from roofplan import resolve
from roofplan.costmodel import serve_load, serve_sim
from roofplan.costmodel.serve import ServeConfigs
from roofplan.validation.load_predict import burst, stated_burst
from roofplan.validation.serve_predict import engine_for
from roofplan.validation.suite import Case, read_cases


def _inst(max_num_seqs: int, budget: int = 8192) -> serve_load.Instance:
    """Llama-3.1-8B on one H100, vLLM without API-server time, the given sequence cap and budget."""
    eng = resolve.engine("vllm").replace(
        request_overhead_s=0.0, max_num_seqs=max_num_seqs, max_num_batched_tokens=budget
    )
    cfg = ServeConfigs.single(
        tp=1, pp=1, ep=1, dp=1, batch=1, isl=128, osl=64, dtype="bf16", kv_dtype=None, engine=eng.name
    )
    return serve_load.Instance(resolve.model("llama-3.1-8b"), resolve.hardware("h100-sxm"), eng, cfg)


def _step(inst, p, cp, d, cd) -> float:
    return float(np.ravel(serve_load.round_time(inst, float(p), float(cp), float(d), float(cd)))[0])


def test_burst_is_read_from_the_note():
    assert stated_burst(Case({"id": "a", "note": "burst=3200: vllm bench throughput"})) == 3200
    assert stated_burst(Case({"id": "b", "note": "vllm bench serve --max-concurrency 4"})) is None


def test_burst_in_one_chunk_is_one_prefill_then_lockstep_decode():
    """64 prompts of 128 tokens fill the 8192-token budget exactly: one prefill iteration of 8192
    tokens (mean context 64.5) gives every first token, then 63 decode iterations of all 64
    requests at contexts 129..191 finish them together. Hand sum of round_time against the
    simulator (which interpolates a table of the same round_time): makespan and TTFT within 2 %."""
    inst = _inst(max_num_seqs=1024)
    n, isl, osl = 64, 128, 64
    t_pre = _step(inst, n * isl, (isl + 1) / 2, 0, 1)
    t_dec = sum(_step(inst, 0, 1, n, isl + 1 + k) for k in range(osl - 1))
    r = burst(inst, isl, osl, n)
    assert r.makespan_s == pytest.approx(t_pre + t_dec, rel=0.02)
    assert r.summary("ttft_s", skip=0.0)["p50"] == pytest.approx(t_pre, rel=0.02)
    assert np.nanmax(r.ttft_s) == pytest.approx(np.nanmin(r.ttft_s), rel=1e-9)  # one wave
    assert r.preemptions == 0


def test_burst_beyond_the_sequence_cap_runs_in_waves():
    """With max_num_seqs = n/2 the second half waits for the first to finish: the makespan is
    about twice that of one half (two waves of the same work; within 10 %)."""
    n, isl, osl = 64, 128, 64
    half = burst(_inst(max_num_seqs=n // 2), isl, osl, n // 2).makespan_s
    two = burst(_inst(max_num_seqs=n // 2), isl, osl, n)
    assert two.makespan_s == pytest.approx(2 * half, rel=0.10)
    assert np.nanmax(two.ttft_s) > 0.9 * half  # the second wave's first tokens follow the first wave


def test_closed_loop_burst_start_is_lockstep():
    """``burst_start``: C clients with fixed lengths send their first requests together, so those
    C first tokens come at the same time, that of a burst of C; the default spread start staggers
    them over one lifetime."""
    inst = _inst(max_num_seqs=1024)
    C, n, isl, osl = 8, 40, 128, 64
    lock = serve_sim.simulate_colocated(
        inst, np.full(n, isl), np.full(n, osl), concurrency=C, burst_start=True
    )
    first = lock.ttft_s[np.argsort(lock.arrival_s, kind="stable")][:C]
    assert np.ptp(first) == pytest.approx(0.0, abs=1e-12)
    assert first[0] == pytest.approx(float(burst(inst, isl, osl, C).ttft_s[0]), rel=1e-9)
    spread = serve_sim.simulate_colocated(inst, np.full(n, isl), np.full(n, osl), concurrency=C)
    assert np.ptp(spread.arrival_s[:C]) > 0.0


def test_mi300x_burst_rows_state_every_setting():
    """The AMD performance-results rows (rocm/vllm 0.11.1 image, vllm bench throughput): burst=N
    equals the batch column and the engine's max_num_seqs, the token budget and memory fraction
    come from the note, and the offline engine has no API-server time and an FP8 KV cache."""
    rows = [c for c in read_cases() if c.id.startswith("amd-perf-mi300x-")]
    assert len(rows) == 8
    for c in rows:
        note = c.str("note")
        assert stated_burst(c) == c.int("batch") and f"max_num_seqs={c.int('batch')}" in note, c.id
        for s in ("rocm7.0.0_vllm_0.11.1_20251103", "TP8", "max_num_batched_tokens=131072"):
            assert s in note, (c.id, s)
        assert (c.str("hardware"), c.int("tp"), c.str("dtype")) == ("mi300x", 8, "fp8")
        profile, kv = engine_for(c)
        assert profile.max_num_seqs == c.int("batch") and profile.max_num_batched_tokens == 131072
        assert profile.request_overhead_s == 0.0 and kv == "fp8"
        assert profile.memory_reserve_fraction == pytest.approx(0.1)


def test_burst_output_rate_is_the_total_rate_times_the_output_share():
    """``output_tokens_per_s`` of a burst (MAD's throughput_gen = N·osl / elapsed) and
    ``total_tokens_per_s`` (vllm bench throughput's tokens_per_second = N·(isl + osl) / elapsed)
    come from the same makespan: their ratio is osl / (isl + osl) exactly, and the output rate is
    N·osl over the simulated makespan."""
    rows = {c.metric: c for c in read_cases() if c.id == "amd-perf-mi300x-l31-70b-fp8-2048-2048-n1500-tput"}
    (case,) = rows.values()
    assert case.metric == "output_tokens_per_s"
    from roofplan.validation.load_predict import _burst_metric

    inst = _inst(max_num_seqs=1024)
    n, isl, osl = 48, 512, 64
    r = burst(inst, isl, osl, n)
    out = _burst_metric(Case({"id": "o", "metric": "output_tokens_per_s"}), inst, isl, osl, n)
    tot = _burst_metric(Case({"id": "t", "metric": "total_tokens_per_s"}), inst, isl, osl, n)
    assert out == pytest.approx(n * osl / r.makespan_s, rel=1e-12)
    assert out / tot == pytest.approx(osl / (isl + osl), rel=1e-12)


def test_triton_attention_prices_the_kv_stream_at_its_own_fraction():
    """vLLM V1's Triton attention on ROCm (rocm_triton_attention) streams the paged KV at the
    device's triton_decode_hbm instead of decode_hbm: on MI300X a long-context decode step grows by
    the KV bytes x (1/triton - 1/decode) / HBM bandwidth (hand calculation; the step is otherwise
    the same), and a device that does not characterise the kernel (H100: 0) is unchanged."""
    model = resolve.model("llama-3.1-70b")
    for hw_id in ("mi300x", "h100-sxm"):
        hw = resolve.hardware(hw_id)
        cfg = ServeConfigs.single(
            tp=8, pp=1, ep=1, dp=1, batch=1, isl=4096, osl=1, dtype="fp8", kv_dtype="fp8", engine="vllm"
        )
        on = resolve.engine("vllm")
        off = on.replace(rocm_triton_attention=False)
        assert on.rocm_triton_attention
        d, ctx = 256.0, 4096.0

        def step(eng, hw=hw, cfg=cfg, d=d, ctx=ctx):
            i = serve_load.Instance(model, hw, eng, cfg)
            return float(np.ravel(serve_load.round_time(i, 0.0, 0.0, d, ctx))[0])

        eff = hw.efficiency
        if eff.triton_decode_hbm == 0:
            assert step(on) == step(off)
            continue
        # 80 layers, 1 KV head per GPU of 128 dims, K and V, 1 byte (FP8): bytes one step reads;
        # the generic model's occupancy: d x 1 head x ctx/split_len work items against the CUs
        kv_bytes = d * ctx * model.layers * 1 * 128 * 2 * 1.0
        items = d * 1 * max(ctx / eff.decode_split_len, 1.0)
        par = items / (items + hw.compute_units * eff.decode_occupancy)
        extra = kv_bytes / (hw.hbm_Bps * par) * (1 / eff.triton_decode_hbm - 1 / eff.decode_hbm)
        assert step(on) - step(off) == pytest.approx(extra, rel=0.05)
