"""Training memory per device against formulas re-derived by hand in this file.

References: Megatron-LM ``megatron/training/theoretical_memory_usage.py`` (weights + optimizer:
18 bytes/param, 6 + 12/dp with the distributed optimizer, on the most loaded shard; activations:
sbh(18 + 4 ffn/h) per layer with selective recompute and SP, L layers in flight on the first stage)
and Korthikanti et al. 2022 Table 2.
"""

import math

import pytest

from roofplan.costmodel.shapes import model_shapes
from roofplan.costmodel.train import TrainConfigs, train_step
from roofplan.costmodel.train_memory import layer_activation_bytes
from roofplan.hardware.catalog import load_hardware
from roofplan.models.spec import ModelSpec
from tests.specs import LLAMA_8B

# A GPT-style model without biases (so parameter counts match Megatron's closed form up to norms).
GPT = ModelSpec(
    name="gpt-test",
    layers=24,
    hidden=4096,
    heads=32,
    kv_heads=32,
    head_dim=128,
    ffn=16384,
    vocab=51200,
    gated_mlp=False,
    tied_embeddings=False,
    linear_bias=False,
)
# Llama-style: GQA, SwiGLU, untied head.
LLAMA = LLAMA_8B


def megatron_weight_and_optimizer_bytes(m: ModelSpec, tp, pp, dp, distributed_optimizer):
    """theoretical_memory_usage.compute_weight_and_optimizer_memory, re-derived."""
    h, L = m.hidden, m.layers
    q_ratio = m.heads * m.head_dim / h
    gated = 1.5 if m.gated_mlp else 1.0
    per_layer_ratio = (1 + m.kv_heads / m.heads) * q_ratio + (m.ffn / h) * gated + 2 / h + 1 / (L * h)
    transformer = 2 * L * h * h * per_layer_ratio
    embedding = h * m.vocab
    most_loaded = (transformer / pp + embedding) / tp
    if not m.tied_embeddings and pp == 1:
        most_loaded += embedding / tp
    bytes_per_param = 6 + 12 / dp if distributed_optimizer else 18
    return most_loaded * bytes_per_param


def megatron_activation_bytes(m: ModelSpec, s, b, tp, pp, vpp, microbatches):
    """theoretical_memory_usage.compute_activation_memory (selective recompute + SP), re-derived."""
    h = m.hidden
    act = s * b * h * (18 + 4 * m.ffn / h) * m.layers
    act += 8 * s * b * pp + s * b * h * pp
    if vpp > 1:
        act *= 1 + (pp - 1) / (pp * vpp)
    elif pp > 1:
        act *= min(1, microbatches / pp)
    if pp == 1:
        act += s * b * h * 4 * (1 + m.vocab / h)
    return act / tp


def _cfg(**kw):
    base = {
        "recompute": 1,
        "sequence_parallel": True,
        "dtype": "bf16",
        "flash_attention": False,
        "dropout": True,
    }
    base.update(kw)
    return TrainConfigs.single(**base)


H100 = load_hardware("h100-sxm")


@pytest.mark.parametrize("model", [GPT, LLAMA])
@pytest.mark.parametrize(
    "tp,pp,dp,zero", [(1, 1, 8, 0), (4, 1, 2, 0), (2, 4, 4, 0), (8, 2, 16, 1), (4, 4, 2, 1)]
)
def test_weights_and_optimizer_match_megatron(model, tp, pp, dp, zero):
    cfg = _cfg(tp=tp, pp=pp, dp=dp, zero=zero, micro_batch=1, global_batch=8 * dp, seq_len=2048)
    a = train_step(model, H100, cfg)
    ours = float(a.mem_weights[0] + a.mem_gradients[0] + a.mem_optimizer[0])
    ref = megatron_weight_and_optimizer_bytes(model, tp, pp, dp, distributed_optimizer=zero == 1)
    # our parameter count carries RMSNorm (h) instead of LayerNorm (2h) weights: < 0.1 %
    assert ours == pytest.approx(ref, rel=1e-3)


@pytest.mark.parametrize(
    "tp,pp,vpp,mb,micro",
    [(1, 1, 1, 1, 8), (4, 1, 1, 2, 8), (8, 4, 1, 1, 16), (4, 4, 2, 1, 8), (2, 8, 3, 2, 16)],
)
def test_activations_match_megatron(tp, pp, vpp, mb, micro):
    model = GPT
    layers_ok = model.layers % (pp * vpp) == 0
    assert layers_ok
    s = 2048
    cfg = _cfg(tp=tp, pp=pp, vpp=vpp, dp=1, micro_batch=mb, global_batch=mb * micro, seq_len=s)
    a = train_step(model, H100, cfg)
    ref = megatron_activation_bytes(model, s, mb, tp, pp, vpp, micro)
    # Megatron divides the int64 token ids by tp too and ignores the last stage; both are < 1 %.
    assert float(a.mem_activations[0]) == pytest.approx(ref, rel=0.01)


def test_korthikanti_table2_per_layer():
    """sbh(34 + 5as/h) without parallelism, sbh(10 + 24/t + 5as/(ht)) with TP, sbh(34/t + 5as/(ht))
    with TP + SP, 2sbh with full recompute (MHA, GeLU MLP of 4h, dropout, 16-bit)."""
    m = GPT
    s, b, h, a = 2048, 2, m.hidden, m.heads
    sh = model_shapes(m)
    sbh = s * b * h

    def ours(tp, sp):
        return float(
            layer_activation_bytes(sh, tokens=s * b, seq_len=s, tp=tp, sp=sp, scores=True, dropout=True)
        )

    assert ours(1, False) == pytest.approx(sbh * (34 + 5 * a * s / h), rel=1e-12)
    assert ours(8, False) == pytest.approx(sbh * (10 + 24 / 8 + 5 * a * s / (h * 8)), rel=1e-12)
    assert ours(8, True) == pytest.approx(sbh * (34 / 8 + 5 * a * s / (h * 8)), rel=1e-12)
    # selective recompute drops exactly the 5as/h term (Korthikanti eq. 4 / 34 sbh / t with SP)
    sel = float(
        layer_activation_bytes(sh, tokens=s * b, seq_len=s, tp=8, sp=True, scores=False, dropout=True)
    )
    assert sel == pytest.approx(sbh * 34 / 8 + s * b * 4 * a / 8, rel=1e-12)  # + FlashAttention's fp32 LSE


def test_full_recompute_keeps_layer_inputs_only():
    m = GPT
    s, b, tp, pp = 2048, 1, 4, 1
    cfg = _cfg(tp=tp, pp=pp, dp=1, micro_batch=b, global_batch=b, seq_len=s, recompute=2)
    act = float(train_step(m, H100, cfg).mem_activations[0])
    sh = model_shapes(m)
    inputs = m.layers * 2 * s * b * m.hidden / tp  # 2sbh/t per layer with SP
    working = float(
        layer_activation_bytes(sh, tokens=s * b, seq_len=s, tp=tp, sp=True, scores=True, dropout=True)
    )
    embed = s * b * (8 + m.hidden / tp)
    logits = s * b * 4 * (m.hidden / tp + m.vocab / tp)
    assert act == pytest.approx(inputs + working + embed + logits, rel=1e-12)


def test_partial_recompute_between_none_and_full():
    base = {
        "tp": 2,
        "pp": 2,
        "dp": 2,
        "micro_batch": 1,
        "global_batch": 16,
        "seq_len": 4096,
        "flash_attention": True,
    }
    acts, times = [], []
    for rc, k in ((0, 0), (2, 8), (2, 16), (2, 0)):  # 32 layers / pp 2 = 16 per stage
        a = train_step(LLAMA, H100, _cfg(recompute=rc, recompute_layers=k, **base))
        acts.append(float(a.mem_activations[0]))
        times.append(float(a.t_compute[0]))
    assert acts[0] > acts[1] > acts[2]
    assert acts[2] == pytest.approx(acts[3])  # 16 of the 16 layers per stage == all (0)
    assert times[0] < times[1] < times[2] == pytest.approx(times[3])


def test_zero_stages_shard_state():
    P = None
    res = {}
    for zero in (0, 1, 2, 3):
        a = train_step(
            LLAMA, H100, _cfg(tp=1, pp=1, dp=8, zero=zero, micro_batch=1, global_batch=8, seq_len=2048)
        )
        res[zero] = (float(a.mem_weights[0]), float(a.mem_gradients[0]), float(a.mem_optimizer[0]))
    w0, g0, o0 = res[0]
    P = w0 / 2
    assert g0 == pytest.approx(4 * P) and o0 == pytest.approx(12 * P)
    assert res[1] == pytest.approx((2 * P, 4 * P, 12 * P / 8))
    assert res[2] == pytest.approx((2 * P, 4 * P / 8, 12 * P / 8))
    assert res[3] == pytest.approx((2 * P / 8, 4 * P / 8, 12 * P / 8))


def test_offload_moves_optimizer_off_hbm():
    on = train_step(LLAMA, H100, _cfg(tp=1, dp=8, micro_batch=1, global_batch=8, seq_len=2048))
    off = train_step(LLAMA, H100, _cfg(tp=1, dp=8, micro_batch=1, global_batch=8, seq_len=2048, offload=1))
    assert float(off.mem_optimizer[0]) == 0.0 and float(on.mem_optimizer[0]) > 0
    assert float(off.mem_total[0]) < float(on.mem_total[0])
    assert float(off.t_offload[0]) > 0 and float(off.t_optimizer[0]) == 0.0


def test_flash_attention_removes_score_memory():
    kw = {"tp": 1, "dp": 1, "micro_batch": 1, "global_batch": 1, "seq_len": 4096, "recompute": 0}
    flash = float(train_step(GPT, H100, _cfg(flash_attention=True, **kw)).mem_activations[0])
    legacy = float(train_step(GPT, H100, _cfg(flash_attention=False, **kw)).mem_activations[0])
    s, a = 4096, GPT.heads
    # 5 a s^2 b bytes per layer (Korthikanti) minus FlashAttention's 4-byte LSE per head and token
    assert legacy - flash == pytest.approx(GPT.layers * (5 * a * s * s - 4 * a * s), rel=1e-9)


def test_fp8_stores_gemm_inputs_in_one_byte():
    kw = {
        "tp": 1,
        "dp": 1,
        "micro_batch": 1,
        "global_batch": 1,
        "seq_len": 2048,
        "recompute": 0,
        "flash_attention": True,
        "dropout": False,
    }
    bf = float(train_step(LLAMA, H100, _cfg(dtype="bf16", **kw)).mem_activations[0])
    f8 = float(train_step(LLAMA, H100, _cfg(dtype="fp8", **kw)).mem_activations[0])
    h, s = LLAMA.hidden, 2048
    # QKV input, MLP input (h each), O-projection input (heads*head_dim), FC2 input (ffn): 1 byte saved each
    saved = LLAMA.layers * s * (2 * h + LLAMA.heads * LLAMA.head_dim + LLAMA.ffn)
    assert bf - f8 == pytest.approx(saved, rel=1e-9)
    assert math.isfinite(f8)
