"""Roofline and collective primitives against hand calculations and invariants."""

import dataclasses

import numpy as np
import pytest

from roofplan.costmodel.collectives import collective_time, group_layout
from roofplan.hardware.spec import DeviceSpec, Efficiency, Fabric, MemoryTier


def _device(topology="switch", intra=300e9, nic=25e9, per_node=8, pair=None, nvls=False, **eff):
    return DeviceSpec(
        id="test",
        name="test",
        vendor="test",
        peak_flops={"bf16": 312e12},
        tiers=(MemoryTier("hbm", 80e9, 2.0e12),),
        devices_per_node=per_node,
        intra=Fabric("x", topology, intra, 5e-6, pair_bandwidth_Bps=pair, in_network_reduction=nvls),
        inter=Fabric("ib", "switch", nic, 10e-6),
        tdp_w=400,
        price_per_hour=None,
        efficiency=Efficiency(**eff),
    )


def test_group_layout_follows_megatron_order():
    intra, nodes = group_layout(np.array([8, 4, 16, 32]), np.array([1, 8, 1, 8]), 8)
    assert intra.tolist() == [8, 1, 8, 1]
    assert nodes.tolist() == [1, 4, 2, 32]


def test_ring_allreduce_intra_node_matches_bus_bandwidth_formula():
    hw = _device(intra_bw=0.8, intra_latency_s=0.0)
    b = 64 * 2**20
    t = float(collective_time("all_reduce", b, 8, hw))
    assert t == pytest.approx(2 * 7 / 8 * b / (300e9 * 0.8))


def test_hierarchical_allreduce_across_nodes():
    hw = _device(intra_bw=1.0, inter_bw=1.0, intra_latency_s=0.0, inter_latency_s=0.0)
    b = 1e9
    t = float(collective_time("all_reduce", b, 16, hw))  # 2 nodes x 8
    expected = 2 * 7 / 8 * b / 300e9 + 2 * 1 / 2 * (b / 8) / 25e9
    assert t == pytest.approx(expected)


def test_collectives_of_one_rank_are_free():
    hw = _device()
    for op in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"):
        assert float(collective_time(op, 1e9, 1, hw)) == 0.0


def test_full_mesh_bandwidth_grows_with_group_size():
    hw = _device(topology="full_mesh", intra=448e9, intra_latency_s=0.0)
    b = 256 * 2**20
    per_rank_traffic = lambda g: 2 * (g - 1) / g * b  # noqa: E731
    bw2 = per_rank_traffic(2) / float(collective_time("all_reduce", b, 2, hw))
    bw8 = per_rank_traffic(8) / float(collective_time("all_reduce", b, 8, hw))
    assert bw8 == pytest.approx(7 * bw2)


def test_partial_mesh_pairs_are_faster():
    hw = _device(topology="partial_mesh", intra=50e9, pair=200e9, intra_latency_s=0.0)
    b = 1e9
    assert float(collective_time("all_reduce", b, 2, hw, stride=1)) < float(
        collective_time("all_reduce", b, 2, hw, stride=2)
    )


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"])
def test_more_bandwidth_never_slower(op):
    slow, fast = _device(intra=300e9, nic=25e9), _device(intra=600e9, nic=50e9)
    sizes = np.array([2, 8, 16, 64])
    strides = np.array([1, 1, 8, 1])
    assert np.all(
        collective_time(op, 1e8, sizes, fast, strides) <= collective_time(op, 1e8, sizes, slow, strides)
    )


def test_nvls_speeds_up_allreduce_only():
    plain = _device(nvls=False, nvls_speedup=1.3)
    nvls = dataclasses.replace(plain, intra=dataclasses.replace(plain.intra, in_network_reduction=True))
    assert float(collective_time("all_reduce", 1e9, 8, nvls)) < float(
        collective_time("all_reduce", 1e9, 8, plain)
    )
    assert float(collective_time("all_gather", 1e9, 8, nvls)) == float(
        collective_time("all_gather", 1e9, 8, plain)
    )
