"""Candidate serving instances: parallel shapes, batch sizes and prefill chunk sizes.

An *instance* is one model replica served by one engine process group on ``tp·pp·dp`` devices
(the cost model's :class:`~roofplan.costmodel.serve.ServeConfigs` convention): ``tp`` tensor
parallel, ``pp`` pipeline stages, ``dp`` attention data-parallel ranks (MoE, DeepSeek-style) and
experts sharded over ``ep`` devices, ``ep`` dividing ``tp·dp``. The rules below are the launch-time
checks of the engines (see ``docs/reference/launch-configs.md`` §4–§6 and §10.1):

* ``tp`` divides the attention heads, and the KV heads divide ``tp`` or ``tp`` divides them
  (vLLM replicates KV heads when ``tp > kv_heads``); ``tp`` stays inside one node — engines
  scale across nodes with PP, attention DP and EP, not with TP over the NIC.
* ``pp`` is at most the number of layers (vLLM and SGLang split layers unevenly if needed).
* MoE only: ``dp`` attention ranks and ``ep`` in {1, tp·dp} — vLLM has no separate EP size
  (EP = TP × DP with ``--enable-expert-parallel``) and SGLang's ``--ep-size`` equals its TP size
  (which counts the attention-DP ranks); ``ep`` divides the routed experts. TensorRT-LLM's
  ``enable_attention_dp`` spans the whole TP group, so with it attention TP is 1.

Every rejected shape is counted by reason; the planner reports the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from roofplan.models.spec import ModelSpec

#: Concurrency / batch grid: 1, 2, 3, 4, 6, 8, 12, ... (powers of two and their 1.5x midpoints),
#: fine enough that the planner's optimum is within 1.5x of the continuous optimum batch.
_MAX_BATCH = 8192
#: Prefill tokens per mixed (colocated) step: vLLM ``max_num_batched_tokens`` / SGLang
#: ``chunked-prefill-size`` values in common use (Sarathi-Serve §5 sweeps 256..4096; engines
#: default to 2048..16384, docs/reference/launch-configs.md §4.2).
CHUNK_GRID = (256, 512, 1024, 2048, 4096, 8192, 16384)
#: Largest prompt-token count one prefill-only pass is allowed to process (SGLang's
#: ``--max-prefill-tokens`` default is 16384; disaggregated prefill servers are run at 16k..64k).
MAX_PREFILL_TOKENS = 65536
#: Deepest pipeline considered.
MAX_PP = 16


def batch_grid(limit: int = _MAX_BATCH) -> np.ndarray:
    """1, 2, 3, 4, 6, 8, 12, 16, ... up to ``limit`` (powers of two and 1.5x midpoints)."""
    vals = {1}
    p = 1
    while p <= limit:
        vals.add(p)
        if p >= 2:
            vals.add(p * 3 // 2)
        p *= 2
    return np.array(sorted(v for v in vals if v <= limit), dtype=np.int64)


def _powers_of_two(limit: int) -> list[int]:
    out, p = [], 1
    while p <= limit:
        out.append(p)
        p *= 2
    return out


@dataclass
class Shapes:
    """Instance shapes as a struct of arrays."""

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    ep: np.ndarray
    rejected: dict = field(default_factory=dict)

    @property
    def gpus(self) -> np.ndarray:
        return self.tp * self.pp * self.dp

    def __len__(self) -> int:
        return len(self.tp)

    def take(self, idx) -> Shapes:
        return Shapes(self.tp[idx], self.pp[idx], self.dp[idx], self.ep[idx], dict(self.rejected))


def instance_shapes(
    model: ModelSpec, devices_per_node: int, max_gpus: int, engine: str = "generic"
) -> Shapes:
    """Every valid (tp, pp, dp, ep) of at most ``max_gpus`` devices, with rejections by reason."""
    tps = sorted(set(_powers_of_two(devices_per_node)) | {devices_per_node})
    pps = [p for p in _powers_of_two(min(MAX_PP, model.layers))]
    moe = model.moe is not None
    dps = _powers_of_two(max(max_gpus, 1)) if moe else [1]
    rows = []
    rejected: dict[str, int] = {}

    def reject(reason: str) -> None:
        rejected[reason] = rejected.get(reason, 0) + 1

    for tp in tps:
        for pp in pps:
            for dp in dps:
                # Attention DP on an MoE model pairs with expert parallelism over the tp x dp ranks
                # (SGLang --enable-dp-attention --ep-size, TRT-LLM enable_attention_dp with
                # moe_expert_parallel_size, vLLM --data-parallel-size --enable-expert-parallel). The
                # serving cost model charges the MoE layer of an ep=1, dp>1 shape only the tp-group
                # all-reduce (none at tp=1) although its experts are split over all tp x dp ranks,
                # so those shapes are not offered until that term covers them.
                eps = ([tp * dp] if dp > 1 else sorted({1, tp})) if moe else [1]
                for ep in eps:
                    if tp * pp * dp > max_gpus:
                        reject("gpu_budget")
                        continue
                    if model.heads % tp or (model.kv_heads % tp and tp % model.kv_heads):
                        reject("divisibility")
                        continue
                    if moe and ep > 1 and (model.moe.num_experts % ep):
                        reject("divisibility")
                        continue
                    if engine == "trtllm" and dp > 1 and tp > 1:
                        reject("engine_support")
                        continue
                    rows.append((tp, pp, dp, ep))
    arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
    shapes = Shapes(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], rejected)
    # The cost model's own validity check (what vLLM's config checks reject) has the last word.
    from roofplan.costmodel.serve import REJECT_REASONS, ServeConfigs, check_serve_config

    codes = check_serve_config(
        model, ServeConfigs(tp=shapes.tp, pp=shapes.pp, ep=shapes.ep, dp=shapes.dp, batch=1, isl=1, osl=1)
    )
    for code in np.unique(codes[codes > 0]):
        reason = "divisibility" if code in (1, 2, 3) else REJECT_REASONS.get(int(code), "invalid")
        rejected[reason] = rejected.get(reason, 0) + int(np.count_nonzero(codes == code))
    return shapes.take(np.nonzero(codes == 0)[0]) if np.any(codes) else shapes


def cross(shapes: Shapes, *grids: np.ndarray) -> tuple[Shapes, list[np.ndarray]]:
    """Cartesian product of shapes with one or more 1-D grids, flattened (struct of arrays)."""
    n = len(shapes)
    sizes = [len(g) for g in grids]
    total = n * int(np.prod(sizes)) if sizes else n
    idx = np.indices((n, *sizes)).reshape(len(sizes) + 1, total)
    s = shapes.take(idx[0])
    return s, [np.asarray(g)[idx[k + 1]] for k, g in enumerate(grids)]
