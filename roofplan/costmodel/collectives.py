"""Alpha-beta model of collectives over the node hierarchy, vectorised.

Bandwidth terms use the bus-bandwidth convention of nccl-tests (``doc/PERFORMANCE.md``): an
all-reduce of B bytes over g ranks moves 2(g-1)/g·B per rank, all-gather and reduce-scatter
(g-1)/g·B (B = the full, unsharded buffer), all-to-all (g-1)/g·B. A group that spans nodes runs
hierarchically (NCCL's rail-aligned rings / Megatron's topology-aware groups): the intra-node part
at the fabric's bus bandwidth, the inter-node part on B/g_intra per device through that device's
own NIC, all NICs of a node in parallel. Latency is one alpha per intra-node phase plus a tree
(2·log2 nodes) of inter-node alphas, NCCL's choice for latency-bound sizes.

Placement follows Megatron's rank order (TP innermost, then CP, DP/EP, PP outermost): a group of
``size`` ranks whose members are ``stride`` ranks apart has ``min(size, node // stride)`` members
per node.

Topologies (``Fabric.topology``):
* ``switch`` (NVSwitch): any intra-node group gets the full per-device bandwidth; NVLink SHARP
  (``in_network_reduction``) multiplies all-reduce bus bandwidth by ``nvls_speedup``.
* ``full_mesh`` (Ascend HCCS, MI300X Infinity Fabric): each device has n-1 point-to-point links of
  ``bandwidth/(n-1)``; a group of g uses g-1 of them, so bandwidth scales with g-1.
* ``partial_mesh`` (MI250X / MI250 GCDs): two GCDs of one package share ``pair_bandwidth_Bps``;
  any larger group is limited by the slower package-to-package links ``bandwidth_Bps``.
* ``ring`` / ``torus``: the per-device bandwidth as given.
"""

from __future__ import annotations

import numpy as np

from roofplan.hardware.spec import DeviceSpec

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p")


def group_layout(size, stride, devices_per_node: int):
    """(members per node, nodes spanned) of a group of ``size`` ranks ``stride`` apart."""
    size = np.asarray(size, dtype=float)
    stride = np.asarray(stride, dtype=float)
    per_node = np.maximum(np.floor(devices_per_node / np.maximum(stride, 1.0)), 1.0)
    intra = np.minimum(size, per_node)
    nodes = np.ceil(size / intra)
    return intra, nodes


def intra_bandwidth(hw: DeviceSpec, group_intra, stride=1.0):
    """Achievable per-device bus bandwidth (bytes/s) of an intra-node group of ``group_intra``."""
    f = hw.intra
    g = np.asarray(group_intra, dtype=float)
    eff = hw.efficiency.intra_bw
    if f.topology == "full_mesh":
        n = max(hw.devices_per_node, 2)
        bw = f.bandwidth_Bps * np.maximum(g - 1.0, 1.0) / (n - 1.0)
    elif f.topology == "partial_mesh" and f.pair_bandwidth_Bps:
        pair = (g <= 2) & (np.asarray(stride, dtype=float) <= 1)
        bw = np.where(pair, f.pair_bandwidth_Bps, f.bandwidth_Bps)
    else:
        pair = hw.efficiency.intra_bw_pair
        if f.topology == "switch" and pair:
            # NCCL drives a 2-rank ring through the switch with fewer channels: measured bus
            # bandwidth of 2-GPU collectives on H100 is ~15 % below 4 and 8 GPUs (NCCL 2.29 tables,
            # aiconfigurator-core 0.12.0); intra_bw_pair is that pair's own fraction
            return np.where(g <= 2, f.bandwidth_Bps * pair, f.bandwidth_Bps * eff)
        return np.full_like(g, f.bandwidth_Bps * eff)
    return bw * eff


def inter_bandwidth(hw: DeviceSpec):
    """Achievable per-device bandwidth (bytes/s) into the inter-node network (its NIC)."""
    return hw.inter.bandwidth_Bps * hw.efficiency.inter_bw


#: NCCL protocols: (Efficiency field of the per-phase base latency, fraction of the Simple
#: protocol's bandwidth). LL moves 8 bytes of data per 16-byte flag+data line (50 %); LL128 uses
#: 120 of 128 bytes (NCCL ``src/device/prims_ll128.h``); Simple moves raw buffers. NCCL picks the
#: fastest for each size (``src/graph/tuning.cc``: time = latency + size / bandwidth per protocol).
PROTOCOLS = (("nccl_ll_latency_s", 0.5), ("nccl_ll128_latency_s", 120.0 / 128.0), ("intra_latency_s", 1.0))


def _step_latency(hw: DeviceSpec, intra, nodes, phases):
    """Ring hops inside the node and the inter-node tree: a base alpha per collective (added by
    :func:`_fastest_protocol`) plus one hop latency per ring step, phases x (g-1) steps (NCCL
    src/graph/tuning.cc: latency = baseLat + nsteps x hwLat, nsteps = 2(g-1) for all-reduce), and
    2 log2(nodes) inter-node alphas. Both terms vanish by themselves for one member per node and
    one node (``intra``, ``nodes`` >= 1 from :func:`group_layout`), so no mask is needed."""
    e = hw.efficiency
    lat_intra = phases * (intra - 1.0) * e.intra_step_latency_s
    lat_inter = 2.0 * np.ceil(np.log2(np.maximum(nodes, 1.0))) * e.inter_latency_s
    return lat_intra + lat_inter


def _fastest_protocol(hw: DeviceSpec, t_in, t_out, intra, nodes, phases, combine=np.add):
    """min over NCCL's protocols of latency + intra-node transfer at the protocol's bandwidth
    (+ the inter-node part, ``combine``d: summed, or overlapped for all-to-all)."""
    best = None
    has_intra = np.where(intra > 1, 1.0, 0.0)  # the base alpha is paid inside a node only
    for field, frac in PROTOCOLS:
        base = getattr(hw.efficiency, field)
        if field != "intra_latency_s" and not base:
            continue  # protocol not characterised for this device: Simple only
        t = combine(t_in / frac, t_out) + base * has_intra
        best = t if best is None else np.minimum(best, t)
    return best + _step_latency(hw, intra, nodes, phases)


def nvls_applies(hw: DeviceSpec, intra, nvls=None):
    """Whether an all-reduce inside a node of ``intra`` ranks runs on NVLink SHARP: the switch must
    reduce in the network, and NCCL picks NVLS only for groups of at least ``nvls_min_ranks``
    (measured: 2- and 4-GPU all-reduces on H100 reach the ring's bus bandwidth, 8-GPU ones NVLS's;
    NCCL 2.29 tables of aiconfigurator-core 0.12.0). ``nvls`` True/False forces it (NCCL_NVLS_ENABLE)."""
    if not hw.intra.in_network_reduction or nvls is False:
        return np.zeros_like(np.asarray(intra, dtype=float), dtype=bool)
    if nvls:
        return np.asarray(intra, dtype=float) >= 2
    return np.asarray(intra, dtype=float) >= hw.efficiency.nvls_min_ranks


def collective_time(op: str, nbytes, size, hw: DeviceSpec, stride=1.0, nvls=None):
    """Seconds for collective ``op`` on ``nbytes`` (the full buffer) over ``size`` ranks ``stride``
    apart. ``p2p`` is one send/recv of ``nbytes`` between neighbours ``stride`` ranks apart.
    Groups of one rank cost nothing. ``nvls`` forces NVLink SHARP on or off (None: NCCL's choice).

    NCCL's protocols (LL, LL128, Simple) trade latency for bandwidth; the fastest one for the size
    is taken (:data:`PROTOCOLS`)."""
    nbytes = np.asarray(nbytes, dtype=float)
    size = np.asarray(size, dtype=float)
    intra, nodes = group_layout(size, stride, hw.devices_per_node)
    bw_in = intra_bandwidth(hw, intra, stride)
    bw_out = inter_bandwidth(hw)
    gi = np.maximum(intra, 1.0)

    if op == "p2p":
        crosses = np.asarray(stride, dtype=float) >= hw.devices_per_node
        bw = np.where(crosses, bw_out, bw_in)
        lat = np.where(crosses, hw.efficiency.inter_latency_s, hw.efficiency.intra_latency_s)
        t = nbytes / bw + lat
        return np.where(size > 1, t, 0.0)

    if op == "all_reduce":
        boost = np.where(nvls_applies(hw, intra, nvls), hw.efficiency.nvls_speedup, 1.0)
        t_in = 2.0 * (gi - 1.0) / gi * nbytes / (bw_in * boost)
        t_out = 2.0 * (nodes - 1.0) / nodes * (nbytes / gi) / bw_out
        phases = 2.0
    elif op in ("all_gather", "reduce_scatter"):
        t_in = (gi - 1.0) / gi * nbytes / bw_in
        t_out = (nodes - 1.0) / nodes * (nbytes / gi) / bw_out
        phases = 1.0
    elif op == "all_to_all":
        # Each rank keeps 1/g of its buffer, sends (gi-1)/g inside the node and (g-gi)/g across
        # nodes; the two parts run concurrently on different links.
        t_in = (gi - 1.0) / size * nbytes / bw_in
        t_out = (size - gi) / size * nbytes / bw_out
        t = _fastest_protocol(hw, t_in, t_out, intra, nodes, 1.0, combine=np.maximum)
        return np.where(size > 1, t, 0.0)
    else:
        raise ValueError(f"unknown collective {op!r}; expected one of {COLLECTIVES}")
    t = _fastest_protocol(hw, t_in, t_out, intra, nodes, phases)
    return np.where(size > 1, t, 0.0)


def p2p_between(per_stream_bytes, hw_src: DeviceSpec, hw_dst: DeviceSpec, same_node) -> np.ndarray:
    """Seconds for point-to-point streams of ``per_stream_bytes`` from a device of ``hw_src`` to
    one of ``hw_dst``: the intra-node link where the two share a node (``same_node``), else the
    slower of the two ends' network links (each end's NIC carries the stream). The KV hand-off of
    disaggregated serving (Mooncake §3, DistServe §4.3)."""
    t_intra = collective_time("p2p", per_stream_bytes, 2, hw_src, stride=1)
    t_inter = np.maximum(
        collective_time("p2p", per_stream_bytes, 2, hw_src, stride=hw_src.devices_per_node),
        collective_time("p2p", per_stream_bytes, 2, hw_dst, stride=hw_dst.devices_per_node),
    )
    return np.where(same_node, t_intra, t_inter)
