"""Model shapes written out by hand for tests whose expected values are derived from published
architecture numbers, independent of the model catalog (a catalog edit must not move them).

Llama 3 8B: 32 layers, hidden 4096, 32 query / 8 KV heads of 128, SwiGLU FFN 14336, vocabulary
128256, untied head (``config.json`` of meta-llama/Llama-3.1-8B; Dubey et al. 2024, Table 3).
"""

from __future__ import annotations

from roofplan.models.spec import ModelSpec

#: The Llama 3 8B shape under a test name (SwiGLU and an untied head are ModelSpec's defaults, and
#: so is its 4096-token context).
LLAMA_8B = ModelSpec(
    name="llama-test", layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128, ffn=14336, vocab=128256
)


def instance(model: str, hardware: str = "h100-sxm", engine: str = "vllm", **shape):
    """A serving instance (``serving.make_instance``) of catalog ids, resolved as the API resolves
    them; ``shape`` sets tp/pp/ep/dp, dtypes and the request lengths ``isl``/``osl``."""
    from roofplan import resolve, serving

    return serving.make_instance(
        resolve.model(model), resolve.hardware(hardware), engine=resolve.engine(engine), **shape
    )
