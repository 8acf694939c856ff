"""Serving configurations (struct of arrays), result arrays, dtype rules and config checks.

Shared by the serving cost model (:mod:`roofplan.costmodel.serve`) and the serving planner. A
configuration is one model instance on tp·pp·dp devices serving a static batch: B requests of
``isl`` prompt tokens prefilled together, then decoded together for ``osl`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from roofplan.errors import InputError
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec
from roofplan.models.spec import ModelSpec

#: ``fp8`` is W8A8 with per-tensor scales (ModelOpt, llm-compressor checkpoints: static activation
#: scales); ``fp8_block`` W8A8 with 128 x 128 weight-block scales and 1 x 128 activation groups
#: quantised on the fly (DeepSeek-V3 and Qwen FP8 checkpoints).
WEIGHT_DTYPES = ("bf16", "fp16", "fp8", "fp8_block", "int8", "int4", "fp4")
KV_DTYPES = ("bf16", "fp16", "fp8", "int8")


# ------------------------------------------------------------------------------------------------
# configurations and results
# ------------------------------------------------------------------------------------------------
@dataclass
class ServeConfigs:
    """Struct of arrays of serving configurations, length N (scalars broadcast).

    An instance has tp·pp·dp devices; ``dp`` are attention data-parallel ranks (DeepSeek-style
    MoE serving) and experts are sharded over ``ep`` devices, ``ep`` dividing tp·dp (vLLM/SGLang
    reuse the TP x DP ranks for EP). Dense models use ep = dp = 1. B = ``batch`` requests of
    ``isl`` prompt tokens are prefilled together, then decoded together for ``osl`` tokens.
    """

    tp: np.ndarray
    pp: np.ndarray
    ep: np.ndarray
    dp: np.ndarray
    batch: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    dtype: str = "bf16"
    kv_dtype: str | None = None
    engine: str = "generic"

    _ARRAYS = ("tp", "pp", "ep", "dp", "batch", "isl", "osl")

    def __post_init__(self) -> None:
        arrays = np.broadcast_arrays(*[np.atleast_1d(np.asarray(getattr(self, n))) for n in self._ARRAYS])
        for name, arr in zip(self._ARRAYS, arrays):
            setattr(self, name, np.array(arr, dtype=np.int64))

    @classmethod
    def single(
        cls,
        *,
        tp=1,
        pp=1,
        ep=1,
        dp=1,
        batch=1,
        isl=1024,
        osl=128,
        dtype="bf16",
        kv_dtype=None,
        engine="generic",
    ) -> ServeConfigs:
        return cls(
            tp=tp,
            pp=pp,
            ep=ep,
            dp=dp,
            batch=batch,
            isl=isl,
            osl=osl,
            dtype=dtype,
            kv_dtype=kv_dtype,
            engine=engine,
        )

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    def broadcast_to(self, n: int) -> ServeConfigs:
        """The same configurations broadcast to length ``n`` (a length-1 config against token arrays)."""
        return ServeConfigs(
            **{k: np.broadcast_to(getattr(self, k), (n,)) for k in self._ARRAYS},
            dtype=self.dtype,
            kv_dtype=self.kv_dtype,
            engine=self.engine,
        )

    @property
    def devices(self) -> np.ndarray:
        return self.tp * self.pp * self.dp

    @property
    def kv_dtype_resolved(self) -> str:
        """KV-cache dtype: as given, else the 16-bit activation dtype (vLLM ``--kv-cache-dtype auto``)."""
        return self.kv_dtype or act_dtype(self.dtype)


@dataclass
class ServeArrays:
    """Per-configuration results (arrays of length N; bytes per device, seconds)."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    latency_s: np.ndarray
    output_tokens_per_s: np.ndarray
    output_tokens_per_s_per_gpu: np.ndarray
    fits: np.ndarray
    max_batch: np.ndarray
    mem_weights: np.ndarray
    mem_kv_cache: np.ndarray
    mem_activations: np.ndarray
    mem_total: np.ndarray
    capacity: np.ndarray
    prefill_compute_s: np.ndarray
    prefill_memory_s: np.ndarray
    prefill_comm_s: np.ndarray
    prefill_overhead_s: np.ndarray
    decode_compute_s: np.ndarray
    decode_memory_s: np.ndarray
    decode_comm_s: np.ndarray
    decode_overhead_s: np.ndarray

    def row(self, i: int = 0) -> dict:
        """One configuration as plain Python scalars."""
        return {f.name: getattr(self, f.name)[i].item() for f in fields(self)}


# ------------------------------------------------------------------------------------------------
# dtypes
# ------------------------------------------------------------------------------------------------
def act_dtype(weight_dtype: str) -> str:
    """Activations (and the default KV cache) stay 16-bit: fp16 for fp16 models, else bf16."""
    return "fp16" if weight_dtype == "fp16" else "bf16"


def dense_weight_dtype(model: ModelSpec, weight_dtype: str) -> str:
    """Dtype of the weights outside the experts (attention, router, dense MLPs): the checkpoint's
    ``dense_dtype`` where it keeps them wider than the serving dtype (gpt-oss: MXFP4 experts,
    bf16 elsewhere, ``quantization_config.modules_to_not_convert``), else the serving dtype."""
    kept = model.dense_dtype
    if kept is not None and DTYPE_BYTES[kept] > DTYPE_BYTES[weight_dtype]:
        return kept
    return weight_dtype


def compute_dtype(hw: DeviceSpec, weight_dtype: str) -> str:
    """Dtype whose tensor-core peak the GEMMs run at (see module docstring)."""
    act = act_dtype(weight_dtype)
    if act not in hw.peak_flops:  # a device without bf16 (or fp16) units falls back to the other
        act = "fp16" if "fp16" in hw.peak_flops else "bf16"
    if weight_dtype in ("fp8", "int8") and weight_dtype in hw.peak_flops:
        return weight_dtype
    if weight_dtype == "fp8_block" and "fp8" in hw.peak_flops:
        return "fp8"
    if weight_dtype == "fp4" and "fp4" in hw.peak_flops:  # W4A4 NVFP4 / MXFP4 GEMMs (Blackwell, CDNA 4)
        return "fp4"
    # fp4 without FP4 tensor cores is weight-only W4A16: vLLM's MXFP4 MoE takes its Triton backend
    # on ROCm (triton_kernels ``matmul_ogs``, vllm/model_executor/layers/quantization/mxfp4.py
    # get_mxfp4_backend: "Auto-selected: Triton (ROCm)") and Triton / Marlin on Hopper, both with
    # ``mxfp4_w4a16_moe_quant_config`` and bf16 activations (Mxfp4Config.get_supported_act_dtypes)
    if weight_dtype == "int4" and "fp8" in hw.peak_flops:
        return "fp8"
    return act


# ------------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------------
def check_serve_config(model: ModelSpec, cfg: ServeConfigs) -> np.ndarray:
    """Reason code per configuration (0 = valid), what vLLM's config checks would reject:
    1 heads not divisible by tp; 2 kv heads neither divisible by tp nor dividing it;
    3 ep not dividing tp·dp or experts not divisible by ep; 4 ep/dp > 1 on a dense model;
    5 pp larger than the layer count; 6 non-positive sizes."""
    tp, pp, ep, dp = cfg.tp, cfg.pp, cfg.ep, cfg.dp
    code = np.zeros(len(cfg), dtype=np.int64)
    positive = (
        (tp >= 1) & (pp >= 1) & (ep >= 1) & (dp >= 1) & (cfg.batch >= 1) & (cfg.isl >= 1) & (cfg.osl >= 1)
    )
    code = np.where(~positive, 6, code)
    safe_tp = np.maximum(tp, 1)
    code = np.where((code == 0) & (model.heads % safe_tp != 0), 1, code)
    if model.mla is None:
        kv = model.kv_heads
        kv_ok = np.where(safe_tp <= kv, kv % safe_tp == 0, safe_tp % kv == 0)
        code = np.where((code == 0) & ~kv_ok, 2, code)
    if model.moe is None:
        code = np.where((code == 0) & ((ep > 1) | (dp > 1)), 4, code)
    else:
        safe_ep = np.maximum(ep, 1)
        bad = ((tp * dp) % safe_ep != 0) | (model.moe.num_experts % safe_ep != 0)
        code = np.where((code == 0) & bad, 3, code)
    code = np.where((code == 0) & (pp > model.layers), 5, code)
    return code


REJECT_REASONS = {
    1: "tp must divide the attention heads",
    2: "tp must divide the KV heads or be a multiple of them",
    3: "ep must divide tp*dp and the number of experts",
    4: "ep and dp apply to MoE models only",
    5: "pp must not exceed the layers",
    6: "sizes must be positive",
}


def validate_serve_config(model: ModelSpec, cfg: ServeConfigs) -> None:
    if cfg.dtype not in WEIGHT_DTYPES:
        raise InputError("dtype", cfg.dtype, "one of " + ", ".join(WEIGHT_DTYPES))
    if cfg.kv_dtype is not None and cfg.kv_dtype not in KV_DTYPES:
        raise InputError("kv_dtype", cfg.kv_dtype, "one of " + ", ".join(KV_DTYPES))
    codes = check_serve_config(model, cfg)
    if np.any(codes):
        i = int(np.flatnonzero(codes)[0])
        c = int(codes[i])
        tp, ep, dp = int(cfg.tp[i]), int(cfg.ep[i]), int(cfg.dp[i])
        if c == 1:
            raise InputError("tp", tp, f"a divisor of the {model.heads} attention heads of {model.name}")
        if c == 2:
            raise InputError(
                "tp", tp, f"a divisor or multiple of the {model.kv_heads} KV heads of {model.name}"
            )
        if c == 3:
            raise InputError(
                "ep",
                ep,
                f"a divisor of tp*dp ({tp * dp}) and of the {model.moe.num_experts} experts of {model.name}",
            )
        if c == 4:
            raise InputError(
                "ep" if ep > 1 else "dp",
                ep if ep > 1 else dp,
                f"1 for the dense model {model.name} (run more instances instead)",
            )
        if c == 5:
            raise InputError("pp", int(cfg.pp[i]), f"at most the {model.layers} layers of {model.name}")
        raise InputError("batch/isl/osl/tp/pp/ep/dp", "a value < 1", "positive integers")
