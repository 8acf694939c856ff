"""Which all-reduce algorithm an engine's custom all-reduce runs, by message size and group size.

An engine does not take the fastest algorithm for each message: it follows a dispatch rule fixed
in its source, and the rule differs between engines. :data:`STRATEGIES` states each rule as size
windows per group size, read from the engine's source; the operator library prices each
algorithm (``roofplan.costmodel.ops.custom_allreduce_time``). Algorithms:

* ``one_shot``: every rank reads the (g-1) peer buffers over NVLink and reduces locally.
* ``two_shot``: reduce-scatter then all-gather through peer buffers (2(g-1)/g of the message per rank).
* ``multimem``: the same two phases with the reduction and the broadcast done in the NVSwitch
  (``multimem.ld_reduce`` / ``multimem.st``; PyTorch symmetric memory ``multimem_all_reduce_``).
* ``nccl``: the engine hands the message to NCCL (``roofplan.costmodel.collectives``).

The rules are the engines' SM90 (Hopper) dispatch. A device catalog characterises an engine's
kernel with ``Efficiency.custom_ar_<engine>_latency_s`` (fitted on that engine's measured table);
where that is 0 the rule is not used and the engine-neutral model prices the fastest of one-shot,
two-shot and NCCL (:data:`GENERIC`), since other architectures dispatch differently (vLLM's SM100
size table, TensorRT-LLM's MNNVL two-shot on NVL72, ROCm's quick all-reduce).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MiB = 2**20
KiB = 2**10
#: Algorithm codes, in the order ``custom_allreduce_time`` stacks their times.
ALGORITHMS = ("one_shot", "two_shot", "multimem", "nccl")


@dataclass(frozen=True)
class AllReduceStrategy:
    """An engine's dispatch rule. ``windows``: per group size class ``(max_ranks, ((below_bytes,
    algorithm), ...))``, classes in increasing ``max_ranks`` (a group takes the first class it fits;
    larger groups the last); inside a class the first window whose ``below_bytes`` exceeds the
    message takes it, and messages beyond the last window go to NCCL. ``latency`` names the
    ``Efficiency`` field of the engine's kernel latency; ``windows`` empty = the engine-neutral
    fastest-of model."""

    name: str
    latency: str = "custom_ar_latency_s"
    windows: tuple = ()
    source: str = ""

    def characterised(self, eff) -> bool:
        """Whether the device's efficiency parameters ``eff`` characterise this engine's kernel, so
        the rule is priced (else the engine-neutral model is)."""
        return bool(self.windows) and getattr(eff, self.latency) > 0

    def algorithm(self, nbytes, ranks) -> np.ndarray:
        """Index into :data:`ALGORITHMS` of the algorithm each (message, group) runs."""
        B, g = np.broadcast_arrays(np.asarray(nbytes, dtype=float), np.asarray(ranks, dtype=float))
        out = np.full(B.shape, ALGORITHMS.index("nccl"))
        done = np.zeros(B.shape, dtype=bool)
        for i, (max_ranks, windows) in enumerate(self.windows):
            last = i == len(self.windows) - 1
            cls = ~done & ((g <= max_ranks) | last)
            taken = np.zeros(B.shape, dtype=bool)
            for below, algo in windows:
                hit = cls & ~taken & (B < below)
                out = np.where(hit, ALGORITHMS.index(algo), out)
                taken |= hit
            done |= cls
        return out


#: The engine-neutral model: the fastest of one-shot, two-shot and NCCL.
GENERIC = AllReduceStrategy("generic", source="fastest of one-shot, two-shot and NCCL for each message")

#: Built-in dispatch rules (SM90, bf16, CUDA-graph mode) by engine profile ``allreduce_strategy``.
STRATEGIES: dict[str, AllReduceStrategy] = {
    "generic": GENERIC,
    "trtllm": AllReduceStrategy(
        "trtllm",
        latency="custom_ar_trtllm_latency_s",
        windows=(
            (2, ((16e6 + 1, "one_shot"),)),
            (4, ((1e6, "one_shot"),)),
            (8, ((500e3, "one_shot"),)),
        ),
        source="TensorRT-LLM AllReduceStrategy.AUTO (cpp/tensorrt_llm/thop/allreduceOp.cpp "
        "selectImplementation): one-shot up to the IPC workspace (customAllReduceUtils "
        "getMaxRequiredWorkspaceSize: 16e6 bytes for 2 ranks) for 2 ranks, below 1e6 bytes for up to 4 "
        "ranks and below 500e3 bytes beyond, NCCL otherwise (AUTO keeps two-shot off: the WAR for "
        "NVIDIA bug 4718747 in that function). The measured TensorRT-LLM 1.3.0rc20 AUTO table "
        "(aiconfigurator-core 0.12.0) follows this rule; the per-SM lookup table of later sources "
        "(customAllReduceUtils.h AllReduceBestStrategyTableSM90, by tokens and hidden size) would run "
        "two-shot at 4 and 8 ranks for mid-size messages (hidden 4096: 8-512 tokens), which that table "
        "does not show",
    ),
    "vllm": AllReduceStrategy(
        "vllm",
        latency="custom_ar_vllm_latency_s",
        windows=(
            (2, ((8 * MiB, "one_shot"), (64 * MiB + 1, "two_shot"))),
            (4, ((512 * KiB, "one_shot"), (8 * MiB, "two_shot"), (32 * MiB + 1, "multimem"))),
            (6, ((256 * KiB, "one_shot"), (512 * KiB, "two_shot"), (64 * MiB + 1, "multimem"))),
            (8, ((256 * KiB, "one_shot"), (64 * MiB + 1, "multimem"))),
        ),
        source="vLLM 0.24 on SM90 with symmetric memory on (VLLM_ALLREDUCE_USE_SYMM_MEM default): "
        "device_communicators/cuda_communicator.py all_reduce tries the custom all-reduce, then "
        "SymmMemCommunicator, then PyNccl; custom_all_reduce.py takes messages below "
        "min(8 MiB, all_reduce_utils.CUSTOM_ALL_REDUCE_MAX_SIZES['9.0'][g]: 64 MiB / 32 MiB / 512 KiB / "
        "256 KiB for 2 / 4 / 6 / 8 ranks); csrc/custom_all_reduce.cuh runs 1-stage for 2 ranks, below "
        "512 KiB for up to 4 ranks and below 256 KiB for up to 8, 2-stage otherwise; symm_mem.py takes "
        "messages up to SYMM_MEM_ALL_REDUCE_MAX_SIZES['9.0'][g] (64 / 32 / 64 / 64 MiB), multimem for "
        "4, 6 and 8 ranks (_WORLD_SIZES_MULTIMEM['9.0']) and PyTorch's two-shot for 2",
    ),
    "sglang": AllReduceStrategy(
        "sglang",
        latency="custom_ar_sglang_latency_s",
        windows=(
            (2, ((16 * MiB + 1, "one_shot"),)),
            (4, ((384 * KiB + 1, "one_shot"), (16 * MiB + 1, "two_shot"))),
            (6, ((192 * KiB + 1, "one_shot"), (16 * MiB + 1, "two_shot"))),
            (8, ((160 * KiB + 1, "one_shot"), (16 * MiB + 1, "two_shot"))),
        ),
        source="SGLang custom all-reduce v2 (device_communicators/custom_all_reduce_v2.py): messages up "
        "to max_pull_size 16 MiB (should_custom_ar), NCCL beyond; THRESHOLD_2_SHOT_MAP for SM90 (tuned "
        "on H200): one-shot (push, then pull) up to 16 MiB for 2 ranks (pull threshold unbounded), "
        "384 KiB for 4, 192 KiB for 6, 160 KiB for 8 ranks, two-shot pull above",
    ),
}
