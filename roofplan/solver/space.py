"""The discrete search space of training configurations, enumerated and pruned as arrays.

A training configuration is the tuple (TP, PP, CP, DP, EP, VPP, micro-batch, recompute, sequence
parallelism, ZeRO stage, offload) for a fixed GPU count, global batch and sequence length. The
space is the full cross product of

* the parallel degrees: every TP, PP, CP with TP·PP·CP dividing the GPU count (DP is the rest,
  Megatron ``validate_args``: world = TP·PP·CP·DP), EP over the divisors of the expert count,
  VPP over the divisors of the layers per pipeline stage (VPP > 1 needs PP > 1: the interleaved
  1F1B schedule of Narayanan et al., SC21 §2.2);
* micro-batch sizes that divide the per-replica batch GBS/DP (Megatron: GBS % (MBS·DP) == 0), up
  to ``max_micro_batch``;
* recompute none / selective / full (Korthikanti et al. 2022), sequence parallelism when TP > 1,
  ZeRO stage 0-3 (Rajbhandari et al. 2020; Megatron's distributed optimizer is stage 1) and
  offload none / optimizer / optimizer+params (ZeRO-Offload, ZeRO-Infinity).

Pruning happens in this order, each rejection counted by reason so the planner can report them:
structural divisibility (heads, KV heads, layers, experts, global batch, sequence length for CP),
TP crossing a node boundary (unless allowed), framework limits of an ``--emit`` target, and a
cheap lower bound of per-device model-state memory (before any timing). A rejected degree tuple
counts once for every knob combination it would have been expanded into, so ``searched`` is the
size of the whole cross product.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from roofplan.costmodel.train_configs import OFFLOAD as OFFLOAD_CODES  # noqa: F401 - re-exported
from roofplan.costmodel.train_configs import (
    OFFLOAD_NAMES,  # noqa: F401 - re-exported
    RECOMPUTE_NAMES,  # noqa: F401 - re-exported
)
from roofplan.costmodel.train_configs import RECOMPUTE as RECOMPUTE_CODES  # noqa: F401 - re-exported
from roofplan.costmodel.train_memory import fsdp_under_pipeline, pipeline_split
from roofplan.hardware.spec import DeviceSpec
from roofplan.models.spec import ModelSpec
from roofplan.solver.frameworks import framework_mask

#: Bytes per parameter of model state that every mixed-precision trainer keeps at minimum: low
#: precision weights, low precision gradients, and the fp32 master copy plus the two Adam moments
#: (ZeRO paper, Rajbhandari et al. 2020 §3.1: 2 + 2 + K with K = 12). fp8 training still keeps
#: bf16 weights for the optimizer (Transformer Engine), so 1 byte is a safe lower bound there.
_MIN_WEIGHT_BYTES = {"fp8": 1.0}
_MIN_GRAD_BYTES = 2.0
_MIN_OPTIMIZER_BYTES = 12.0
#: The memory bound rejects only configurations whose model state alone exceeds this fraction of
#: HBM; the cost model decides the rest (its total includes activations and buffers).
MEMORY_BOUND_SLACK = 1.0


def divisors(n: int) -> list[int]:
    """All positive divisors of ``n`` in increasing order."""
    n = int(n)
    small, large = [], []
    i = 1
    while i * i <= n:
        if n % i == 0:
            small.append(i)
            if i * i != n:
                large.append(n // i)
        i += 1
    return small + large[::-1]


@dataclass(frozen=True)
class SpaceOptions:
    """Which knobs the search may turn. ``None`` for a degree means: search every valid value."""

    recompute: tuple[str, ...] = ("none", "selective", "full")
    zero: tuple[int, ...] = (0, 1, 2, 3)
    offload: tuple[str, ...] = ("none", "optimizer", "optimizer+params")
    sequence_parallel: tuple[bool, ...] = (False, True)
    max_micro_batch: int = 16
    allow_cross_node_tp: bool = False
    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    cp: tuple[int, ...] | None = None
    ep: tuple[int, ...] | None = None
    vpp: tuple[int, ...] | None = None
    search_etp: bool = True  # MoE: expert tensor parallelism TP (default) or 1
    framework: str | tuple[str, ...] | None = None  # restrict to what these launchers can express


@dataclass
class Space:
    """The surviving configurations as flat int arrays (one entry per configuration)."""

    arrays: dict[str, np.ndarray]
    searched: int
    rejected: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return int(self.arrays["tp"].size)

    def take(self, idx) -> dict[str, np.ndarray]:
        return {k: v[idx] for k, v in self.arrays.items()}


# -- pipeline layer split ------------------------------------------------------------------------------
def pipeline_split_ok(layers, pp, vpp):
    """Whether the (pp, vpp) pair can be laid out: an even split, or an uneven first/last split
    with the plain 1F1B schedule (interleaving with uneven stages is not searched)."""
    pp = np.asarray(pp, dtype=np.int64)
    vpp = np.asarray(vpp, dtype=np.int64)
    even = layers % pp == 0
    first, _, _ = pipeline_split(layers, pp)
    return (even & ((vpp == 1) | ((pp > 1) & ((layers // pp) % vpp == 0)))) | (
        ~even & (vpp == 1) & (first > 0)
    )


# -- memory bound ------------------------------------------------------------------------------------
def state_bytes_lower_bound(model: ModelSpec, a: dict[str, np.ndarray], dtype: str) -> np.ndarray:
    """A lower bound on the per-device bytes of weights, gradients and optimizer state.

    Parameters per device: the transformer layers split over TP·PP, routed experts additionally
    over EP (Megatron's expert parallelism shards experts; ETP = TP). Embeddings are left out (they
    live on the first/last stage only), which keeps this a lower bound for every stage. ZeRO stage
    k shards optimizer (k >= 1), gradients (k >= 2), weights (k = 3) over DP·CP; offloaded state
    does not count against HBM. ZeRO-3 with a pipeline (torchtitan's FSDP2) shards only the
    optimizer.
    """
    tp, pp, dp, ep = (a[k].astype(float) for k in ("tp", "pp", "dp", "ep"))
    if model.moe is not None:
        m = model.moe
        expert = model.moe_layers * m.num_experts * model.mlp_params(m.expert_ffn)
    else:
        expert = 0
    dense = (
        model.layers * model.layer_params(False)
        if model.moe is None
        else (
            model.dense_layers * model.layer_params(False)
            + model.moe_layers * model.layer_params(True)
            - expert
        )
    )
    dense_dev = dense / (tp * pp)
    expert_dev = expert / (tp * pp * ep)
    # ZeRO shards over the data-parallel group, which includes CP ranks (Megatron's distributed
    # optimizer uses the DP x CP group); experts over their own data-parallel group DP·CP/EP
    dpcp = dp * a["cp"].astype(float)

    def sharded(flag):
        return np.where(
            flag, dense_dev / dpcp + expert_dev / np.maximum(dpcp / ep, 1.0), dense_dev + expert_dev
        )

    zero, off = a["zero"], a["offload"]
    # FSDP2 under a pipeline keeps the stage's weights and gradients whole (fsdp_under_pipeline)
    whole = fsdp_under_pipeline(zero, a["pp"])
    w = _MIN_WEIGHT_BYTES.get(dtype, 2.0) * sharded((zero >= 3) & ~whole)
    w = np.where(off >= 2, 0.0, w)
    g = _MIN_GRAD_BYTES * sharded((zero >= 2) & ~whole)
    o = _MIN_OPTIMIZER_BYTES * sharded(zero >= 1)
    o = np.where(off >= 1, 0.0, o)
    return w + g + o


# -- enumeration -------------------------------------------------------------------------------------
def _degree_grid(model: ModelSpec, gpus: int, opts: SpaceOptions):
    """All (tp, pp, cp, dp) with tp·pp·cp·dp == gpus (degrees restricted by ``opts``)."""
    divs = divisors(gpus)
    tps = [d for d in divs if opts.tp is None or d in opts.tp]
    pps = [d for d in divs if (opts.pp is None or d in opts.pp) and d <= model.layers]
    cps = [d for d in divs if opts.cp is None or d in opts.cp]
    tp, pp, cp = (x.ravel() for x in np.meshgrid(tps, pps, cps, indexing="ij"))
    prod = tp * pp * cp
    keep = gpus % prod == 0
    tp, pp, cp = tp[keep], pp[keep], cp[keep]
    return tp, pp, cp, gpus // (tp * pp * cp)


def _knob_table(opts: SpaceOptions, tp_gt1: bool) -> np.ndarray:
    """Rows of (recompute, sequence_parallel, zero, offload) that are meaningful together:
    sequence parallelism only with TP > 1; optimizer offload only with a ZeRO optimizer (DeepSpeed
    ``offload_optimizer`` needs stage >= 1, Megatron ``--optimizer-cpu-offload`` the distributed
    optimizer); parameter offload only with ZeRO-3 (DeepSpeed ``offload_param``)."""
    rows = []
    sps = [s for s in opts.sequence_parallel if tp_gt1 or not s] or [False]
    for rc in opts.recompute:
        for sp in sps:
            for z in opts.zero:
                for off in opts.offload:
                    o = OFFLOAD_CODES[off]
                    if (o == 2 and z != 3) or (o >= 1 and z == 0):
                        continue
                    rows.append((RECOMPUTE_CODES[rc], int(sp), z, o))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def enumerate_space(
    model: ModelSpec,
    hw: DeviceSpec,
    *,
    gpus: int,
    global_batch: int,
    seq_len: int,
    dtype: str = "bf16",
    gpus_per_node: int | None = None,
    opts: SpaceOptions | None = None,
    capacity_bytes: float | None = None,
) -> Space:
    """Enumerate, prune and count the search space; returns the survivors as flat arrays."""
    opts = opts or SpaceOptions()
    node = gpus_per_node or hw.devices_per_node
    rejected: Counter = Counter()
    searched = 0
    tp, pp, cp, dp = _degree_grid(model, gpus, opts)
    n_kn = {True: _knob_table(opts, True), False: _knob_table(opts, False)}

    tp, pp, cp, dp, ep, vpp, etp, split_ok = _degree_level(model, opts, tp, pp, cp, dp)

    # micro-batch candidates per dp; knob rows per tp>1
    per_replica, mbs_lists, n_mbs = _micro_batches(global_batch, dp, opts.max_micro_batch)
    n_knobs = np.where(tp > 1, len(n_kn[True]), len(n_kn[False]))
    mult = n_mbs * n_knobs

    reason = np.full(tp.size, "", dtype=object)

    def reject(mask, name):
        nonlocal reason
        new = mask & (reason == "")
        reason[new] = name

    heads_ok = (model.heads % tp == 0) & (model.kv_heads % tp == 0)
    reject(~heads_ok, "divisibility")
    reject(~split_ok, "divisibility")
    reject(per_replica == 0, "divisibility")
    reject((cp > 1) & (seq_len % (2 * cp) != 0), "divisibility")
    if model.moe is not None:
        # EP x ETP regroup the tp*dp*cp ranks (ETP = TP: ep divides dp*cp)
        reject(np.where(etp == 1, (tp * dp * cp) % ep, (dp * cp) % ep) != 0, "divisibility")
    if not opts.allow_cross_node_tp:
        reject(tp > node, "tp_cross_node")
    for name in np.unique(reason[reason != ""]):
        rejected[str(name)] += int(mult[reason == name].sum())
    searched += int(mult.sum())
    keep = reason == ""
    tp, pp, cp, dp, ep, vpp, etp = (x[keep] for x in (tp, pp, cp, dp, ep, vpp, etp))

    # -- expand micro-batches and knobs -------------------------------------------------------------
    arrays = _expanded((tp, pp, cp, dp, ep, vpp, etp), mbs_lists, n_kn)
    arrays["recompute_layers"] = np.zeros_like(arrays["tp"])
    arrays["global_batch"] = np.full_like(arrays["tp"], global_batch)
    arrays["seq_len"] = np.full_like(arrays["tp"], seq_len)

    # -- framework limits and memory bound ----------------------------------------------------------
    ok = framework_mask(opts.framework, arrays, model.layers)
    if (~ok).any():
        fw = opts.framework if isinstance(opts.framework, str) else "+".join(opts.framework)
        rejected[f"unsupported_by_{fw}"] += int((~ok).sum())
        arrays = {k: v[ok] for k, v in arrays.items()}
    cap = hw.hbm_bytes if capacity_bytes is None else capacity_bytes
    bound = state_bytes_lower_bound(model, arrays, dtype)
    fits = bound <= MEMORY_BOUND_SLACK * cap
    if (~fits).any():
        rejected["oom"] += int((~fits).sum())
        arrays = {k: v[fits] for k, v in arrays.items()}
    return Space(arrays=arrays, searched=searched, rejected=rejected)


def _degree_level(model: ModelSpec, opts: SpaceOptions, tp, pp, cp, dp):
    """One entry per (tp, pp, cp, dp, ep, vpp, etp) that exists as a configuration, with whether
    its pipeline split is possible: the (tp, pp, cp, dp) grid crossed with the expert degrees,
    virtual stages and expert-TP choices."""
    eps = (
        [1]
        if model.moe is None
        else [e for e in divisors(model.moe.num_experts) if opts.ep is None or e in opts.ep]
    )
    # expert tensor parallelism: 0 = TP (Megatron's default), 1 = experts unsplit by TP (parallel
    # folding, Liu et al. 2025; the Megatron MoE model zoo's ETP=1 recipes); MoE models only
    etps = [0, 1] if model.moe is not None and opts.search_etp else [0]
    blocks = []
    for e in eps:
        for v in opts.vpp or divisors(model.layers):
            for et in etps:
                blocks.append((np.full_like(tp, e), np.full_like(tp, v), np.full_like(tp, et)))
    ep = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    vpp = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    etp = np.concatenate([b[2] for b in blocks]) if blocks else np.zeros(0, dtype=np.int64)
    reps = len(blocks)
    tp, pp, cp, dp = (np.tile(x, reps) for x in (tp, pp, cp, dp))

    # a (pp, vpp) pair is a configuration only if the interleaved schedule can be built: vpp == 1,
    # or pp > 1 with vpp dividing the layers of a stage; other pairs are not counted at all; nor
    # is ETP = 1 with TP = 1 (the same configuration as ETP = TP)
    stage_ok = model.layers % pp == 0
    exists = (vpp == 1) | ((pp > 1) & stage_ok & ((model.layers // pp) % vpp == 0))
    exists &= ~((etp == 1) & (tp == 1))
    split_ok = pipeline_split_ok(model.layers, pp, vpp)
    tp, pp, cp, dp, ep, vpp, etp, split_ok = (x[exists] for x in (tp, pp, cp, dp, ep, vpp, etp, split_ok))
    return tp, pp, cp, dp, ep, vpp, etp, split_ok


def _micro_batches(global_batch: int, dp, max_micro_batch: int):
    """Per entry the micro-batch count of a replica (0: dp does not divide the batch), the
    micro-batch candidates of each dp, and how many there are per entry."""
    per_replica = np.where(global_batch % dp == 0, global_batch // np.maximum(dp, 1), 0)
    mbs_lists = {}
    for d in np.unique(dp):
        r = global_batch // d if global_batch % d == 0 else 0
        mbs_lists[int(d)] = [m for m in divisors(r) if m <= max_micro_batch] if r else []
    n_mbs = np.array([max(len(mbs_lists[int(d)]), 1) for d in dp])
    return per_replica, mbs_lists, n_mbs


def _expanded(degrees, mbs_lists: dict, n_kn: dict) -> dict:
    """Flat configuration arrays: every surviving degree entry crossed with its micro-batch
    candidates and the knob rows of its TP (``n_kn[tp > 1]``)."""
    tp, pp, cp, dp, ep, vpp, etp = degrees
    cols = {
        k: []
        for k in (
            "tp",
            "pp",
            "cp",
            "dp",
            "ep",
            "vpp",
            "etp",
            "micro_batch",
            "recompute",
            "sequence_parallel",
            "zero",
            "offload",
        )
    }
    for d in np.unique(dp):
        sel = dp == d
        mb = np.array(mbs_lists[int(d)], dtype=np.int64)
        for tgt in (True, False):
            s2 = sel & ((tp > 1) == tgt)
            if not s2.any():
                continue
            kn = n_kn[tgt]
            nd, nm, nk = int(s2.sum()), mb.size, kn.shape[0]
            idx_d = np.repeat(np.arange(nd), nm * nk)
            idx_m = np.tile(np.repeat(np.arange(nm), nk), nd)
            idx_k = np.tile(np.arange(nk), nd * nm)
            for k, x in (
                ("tp", tp),
                ("pp", pp),
                ("cp", cp),
                ("dp", dp),
                ("ep", ep),
                ("vpp", vpp),
                ("etp", etp),
            ):
                cols[k].append(x[s2][idx_d])
            cols["micro_batch"].append(mb[idx_m])
            for j, k in enumerate(("recompute", "sequence_parallel", "zero", "offload")):
                cols[k].append(kn[idx_k, j])
    arrays = {
        k: (np.concatenate(v) if v else np.zeros(0, dtype=np.int64)).astype(np.int64) for k, v in cols.items()
    }
    return arrays
