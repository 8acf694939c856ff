"""Model shapes written out by hand for tests whose expected values are derived from published
architecture numbers, independent of the model catalog (a catalog edit must not move them).

Llama 3 8B: 32 layers, hidden 4096, 32 query / 8 KV heads of 128, SwiGLU FFN 14336, vocabulary
128256, untied head (``config.json`` of meta-llama/Llama-3.1-8B; Dubey et al. 2024, Table 3).
"""

from __future__ import annotations

from roofplan.models.spec import ModelSpec

#: The Llama 3 8B shape under a test name (its context is ModelSpec's 4096 default).
LLAMA_8B = ModelSpec(
    name="llama-test",
    layers=32,
    hidden=4096,
    heads=32,
    kv_heads=8,
    head_dim=128,
    ffn=14336,
    vocab=128256,
    gated_mlp=True,
    tied_embeddings=False,
)
