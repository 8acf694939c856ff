"""Node placement of a serving deployment: which nodes and GPUs each instance runs on."""

from __future__ import annotations

import math


def placement(best: dict) -> list[dict]:
    """Instances packed onto nodes, first fit by decreasing size: an instance of at most one node
    stays inside one node, larger ones take whole nodes, and with node sizes that are multiples of
    the instance sizes no node is left part-empty (the deployment uses ceil(gpus / node) nodes).
    Equal-size prefill and decode instances are interleaved in proportion so P/D neighbours share a
    node's NVLink for the KV transfer, as the transfer time assumed when both fit in one node.
    Node numbers are global; each pool (hardware type) has its own nodes."""
    if best["mode"] == "colocated":
        groups = [("colocated", best["prefill"], best["instances"])]
    else:
        groups = [
            ("prefill", best["prefill"], best["prefill"]["instances"]),
            ("decode", best["decode"], best["decode"]["instances"]),
        ]
    order = sorted(
        (-int(inst["gpus_per_instance"]), (k + 0.5) / n, r, k)
        for r, (role, inst, n) in enumerate(groups)
        for k in range(n)
    )
    pools: dict[str, list] = {g[1]["hardware"]: [] for g in groups}  # prefill pool first
    for _, _, r, k in order:
        pools.setdefault(groups[r][1]["hardware"], []).append((r, k))
    out, node_base = [], 0
    for hw_id, items in pools.items():
        free: list[int] = []  # free GPUs per node of this pool (first fit)
        for r, k in items:
            role, inst, _ = groups[r]
            g, dpn = int(inst["gpus_per_instance"]), int(inst["devices_per_node"])
            if g <= dpn:
                node = next((n for n, f in enumerate(free) if f >= g), None)
                if node is None:
                    free.append(dpn)
                    node = len(free) - 1
                start = dpn - free[node]
                free[node] -= g
                entry_nodes, entry_gpus = [node_base + node], [list(range(start, start + g))]
            else:
                n_nodes = math.ceil(g / dpn)
                first = len(free)
                free.extend([0] * n_nodes)
                entry_nodes = [node_base + first + t for t in range(n_nodes)]
                entry_gpus = [list(range(min(dpn, g - t * dpn))) for t in range(n_nodes)]
            out.append(
                {"role": role, "index": k, "hardware": hw_id, "nodes": entry_nodes, "gpus": entry_gpus}
            )
        node_base += len(free)
    out.sort(key=lambda e: (("prefill", "decode", "colocated").index(e["role"]), e["index"]))
    return out
