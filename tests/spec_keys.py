"""What docs/SPEC.md promises, written down once for the tests that check it: the hardware ids
(§2) and the keys of the ``estimate train`` (§3.1) and ``estimate serve`` (§3.2) documents."""

#: Hardware ids SPEC §2 lists (a catalog may hold more).
SPEC_HARDWARE_IDS = (
    "a100-sxm-40gb",
    "a100-sxm-80gb",
    "h100-sxm",
    "h200-sxm",
    "mi250x",
    "mi250",
    "mi300x",
    "ascend-910b",
    "sn40l",
)
#: ``memory_gib_per_gpu`` of ``estimate train --json`` (SPEC §3.1).
TRAIN_MEMORY_KEYS = frozenset(
    ("weights", "gradients", "optimizer", "activations", "other", "total", "capacity")
)
#: ``breakdown_s`` of ``estimate train --json`` (SPEC §3.1).
TRAIN_BREAKDOWN_KEYS = frozenset(
    (
        "compute",
        "tp_comm_exposed",
        "cp_comm_exposed",
        "ep_comm_exposed",
        "pp_bubble",
        "pp_comm_exposed",
        "dp_comm_exposed",
        "optimizer",
        "offload_exposed",
    )
)
#: The top-level keys of ``estimate serve --json`` beside ``schema`` (SPEC §3.2).
SERVE_ESTIMATE_KEYS = frozenset(
    (
        "inputs",
        "ttft_ms",
        "tpot_ms",
        "latency_ms",
        "output_tokens_per_s",
        "output_tokens_per_s_per_gpu",
        "fits",
        "max_batch",
        "memory_gib_per_gpu",
        "breakdown_ms",
    )
)
