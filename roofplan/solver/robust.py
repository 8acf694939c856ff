"""What a practitioner checks before accepting a plan: the error band of a prediction, MFU nobody
has reached, and the simplest of the candidates the model cannot tell apart.

* :func:`error_band` — the p90 absolute error of the validated training rows of the plan's device
  and model class (dense / MoE); :func:`serve_error_band` the same over the serving rows of the
  device. Both read the document of ``catalogs/error_bands.json`` (written by
  ``tools/error_bands.py`` from the suite behind ``roofplan validate``; a test keeps the two in
  step), which the door reads once (:func:`roofplan.resolve.error_bands`) and the planners take as
  an argument. A group with fewer than :data:`MIN_ROWS` rows falls back to the device, then to
  every validated row of its kind.
* :func:`mfu_warning` — a pick whose MFU exceeds the best published MFU of its device, model class
  and precision by more than its band lies where no measurement supports the model.
* :func:`simplicity_key` — the one tie-break rule: among candidates whose predicted score is within
  the band of the best, the planner ranks the simplest first; :func:`serve_simplicity_key` is its
  serving form (the colocated pick of ``plan serve``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roofplan.costmodel.train_configs import OFFLOAD, RECOMPUTE
from roofplan.solver.frameworks import launchable

#: Fewest validated rows a group needs before its own p90 is used.
MIN_ROWS = 5


@dataclass(frozen=True)
class ErrorBand:
    """A prediction's band: ``pct`` percent either way, from ``rows`` validated rows of ``scope``."""

    pct: float
    rows: int
    scope: str
    percentile: int = 90
    kind: str = "training"

    @property
    def fraction(self) -> float:
        return self.pct / 100.0

    @property
    def label(self) -> str:
        return f"±{self.pct:.1f}% (p{self.percentile} of {self.rows} validated {self.scope} {self.kind} rows)"


#: Dense models from this many parameters up form their own MFU class: they need pipeline or
#: sharded data parallelism across many nodes, and their published MFU is lower (Megatron SC21
#: Table 1, Llama 3 405B at 38-43%) than that of 70B-class models on a few nodes.
LARGE_DENSE_PARAMS = 100e9


def model_class(model) -> str:
    """The class whose validation residuals give the band: ``dense`` or ``moe``."""
    return "moe" if model.moe is not None else "dense"


def mfu_class(model) -> str:
    """The class whose best published MFU bounds a pick: ``moe``, ``dense-large``, ``dense-small``."""
    if model.moe is not None:
        return "moe"
    return "dense-large" if model.params_total >= LARGE_DENSE_PARAMS else "dense-small"


def precision(dtype: str) -> str:
    return "fp8" if dtype in ("fp8", "fp8_block") else "16bit"


def _band(groups: dict, keys, percentile: int, kind: str) -> ErrorBand:
    """The first of ``keys`` ((group, scope) pairs, the last one the catch-all) with enough rows."""
    for i, (key, scope) in enumerate(keys):
        g = groups.get(key)
        if g is not None and (g["rows"] >= MIN_ROWS or i == len(keys) - 1):
            return ErrorBand(float(g["band_pct"]), int(g["rows"]), scope, percentile, kind)
    raise KeyError(f"the error bands have no 'all' {kind} group")  # the tool always writes it


def error_band(bands: dict, hw_id: str, model) -> ErrorBand:
    """The band of a training prediction for ``model`` on device ``hw_id`` (see module doc);
    ``bands`` is the error-bands document."""
    cls = model_class(model)
    keys = ((f"{hw_id}/{cls}", f"{hw_id} {cls}"), (hw_id, hw_id), ("all", "(all devices)"))
    return _band(bands["bands"], keys, bands["percentile"], "training")


def serve_error_band(bands: dict, hw_id: str) -> ErrorBand:
    """The band of a serving prediction (TTFT, TPOT, throughput) on device ``hw_id``: the p90 of
    the device's validated serving rows (static, max-throughput and under load), else of all."""
    keys = ((hw_id, hw_id), ("all", "(all devices)"))
    return _band(bands["serve_bands"], keys, bands["percentile"], "serving")


def best_published_mfu(bands: dict, hw_id: str, model, dtype: str) -> dict | None:
    """``{"mfu", "case", "source"}`` of the best published run of this device, class and precision."""
    return bands["best_mfu"].get(f"{hw_id}/{mfu_class(model)}/{precision(dtype)}")


def mfu_warning(bands: dict, mfu: float, band: ErrorBand, hw_id: str, model, dtype: str) -> str | None:
    """A warning when ``mfu`` exceeds the best published MFU by more than the band, else None."""
    ref = best_published_mfu(bands, hw_id, model, dtype)
    if ref is None:
        return (
            f"no published {mfu_class(model)} training run on {hw_id} in {dtype}: the predicted MFU "
            f"{mfu:.1%} is not checked against a measurement"
        )
    limit = ref["mfu"] * (1.0 + band.fraction)
    if mfu <= limit:
        return None
    return (
        f"predicted MFU {mfu:.1%} exceeds the best published {mfu_class(model)} MFU on {hw_id} "
        f"({ref['mfu']:.1%}, {ref['case']}: {ref['source']}) by more than the {band.pct:.1f}% band; "
        "the model is optimistic outside validated territory"
    )


def simplicity_key(cfg: dict, free_bytes) -> tuple[np.ndarray, ...]:
    """Tie-break keys, most significant first (smaller is simpler), for ``np.lexsort(key[::-1])``.

    0. no built-in launcher (Megatron-LM, DeepSpeed, torchtitan) expresses it (e.g. ZeRO-2 with a
       pipeline, Meta's in-house FSDP);
    1. offload level (host round trips are the first thing to break in production), then
       activation offload on (Megatron-Core ``--cpu-offloading-num-layers``: the same host link,
       every micro-batch);
    2. context parallelism on (CP is only worth it where the sequence needs it: a CP-free
       candidate within the band says it does not);
    3. number of parallel dimensions besides data parallelism (TP, PP, CP, EP above 1);
    4. pipeline stages, then virtual stages (bubble, schedule and memory-imbalance risk);
    5. recompute (none, selective, full), then fewer fully recomputed layers (0 = all); 6. ZeRO stage;
    7. TP-comm overlap off (userbuffers); 8. expert TP at its default (= TP);
    9. more free memory (less headroom risk).

    ``cfg`` maps names to integer arrays (the search arrays or one candidate as 1-element arrays).
    """
    tp, pp, cp, ep = (np.asarray(cfg[k]) for k in ("tp", "pp", "cp", "ep"))
    dims = (tp > 1).astype(int) + (pp > 1) + (cp > 1) + (ep > 1)
    rl = np.asarray(cfg["recompute_layers"])
    rc_layers = np.where(np.asarray(cfg["recompute"]) == 2, np.where(rl == 0, np.iinfo(np.int64).max, rl), 0)
    act = np.asarray(cfg.get("act_offload_layers", np.zeros_like(tp)))
    return (
        (~launchable(cfg)).astype(int),
        np.asarray(cfg["offload"]),
        (act > 0).astype(int),
        (cp > 1).astype(int),
        dims,
        pp,
        np.asarray(cfg["vpp"]),
        np.asarray(cfg["recompute"]),
        rc_layers,
        np.asarray(cfg["zero"]),
        np.asarray(cfg.get("tp_comm_overlap", np.zeros_like(tp))),
        (np.asarray(cfg.get("etp", np.zeros_like(tp))) != 0).astype(int),
        -np.asarray(free_bytes, dtype=float),
    )


def serve_simplicity_key(tp, pp, ep, dp) -> tuple[np.ndarray, ...]:
    """The serving tie-break, most significant first (smaller is simpler): parallel dimensions of
    an instance (TP, PP, EP, attention DP above 1), then pipeline stages. Among deployments the
    model cannot tell apart (within the serving band) the one with fewer kinds of parallelism and
    no pipeline is what a practitioner runs first: fewer collectives and no pipeline bubbles at
    low load (the serving analogue of :func:`simplicity_key`). The degree of one dimension (TP 2
    or 4) is no simplicity: the score decides it."""
    tp, pp, ep, dp = (np.asarray(x) for x in (tp, pp, ep, dp))
    dims = (tp > 1).astype(int) + (pp > 1) + (ep > 1) + (dp > 1)
    return dims, pp


def simplicity_order(cfg: dict, free_bytes, score) -> np.ndarray:
    """Indices simplest first (ties of :func:`simplicity_key` broken by the higher score)."""
    keys = simplicity_key(cfg, free_bytes) + (-np.asarray(score, dtype=float),)
    return np.lexsort(keys[::-1])


def simpler_reasons(a: dict, b: dict) -> list[str]:
    """Why candidate dict ``a`` is simpler than ``b``, in the order of :func:`simplicity_key`."""
    out = []
    codes = [
        {
            "zero": c["zero"],
            "pp": c["pp"],
            "cp": c["cp"],
            "vpp": c["vpp"],
            "tp": c["tp"],
            "offload": OFFLOAD[c["offload"]],
            "recompute": RECOMPUTE[c["recompute"]],
            "recompute_layers": c["recompute_layers"],
            "act_offload_layers": c.get("act_offload_layers", 0),
        }
        for c in (a, b)
    ]
    if launchable(codes[0])[0] and not launchable(codes[1])[0]:
        out.append("a built-in launcher expresses it")
    if OFFLOAD[a["offload"]] < OFFLOAD[b["offload"]]:
        out.append("no offload" if a["offload"] == "none" else "less offload")
    elif a.get("act_offload_layers", 0) == 0 < b.get("act_offload_layers", 0):
        out.append("no activation offload")
    if a["cp"] == 1 < b["cp"]:
        out.append(f"no context parallelism instead of cp={b['cp']}")
    dims = [sum(int(c[k] > 1) for k in ("tp", "pp", "cp", "ep")) for c in (a, b)]
    if dims[0] < dims[1]:
        out.append(f"{dims[1] - dims[0]} fewer parallel dimension{'s' if dims[1] - dims[0] > 1 else ''}")
    if a["pp"] < b["pp"]:
        out.append(f"{a['pp']} pipeline stage{'s' if a['pp'] > 1 else ''} instead of {b['pp']}")
    elif a["pp"] == b["pp"] and a["vpp"] < b["vpp"]:
        out.append(f"{a['vpp']} virtual stages instead of {b['vpp']}")
    if RECOMPUTE[a["recompute"]] < RECOMPUTE[b["recompute"]]:
        out.append(f"recompute {a['recompute']} instead of {b['recompute']}")
    if a["zero"] < b["zero"]:
        out.append(f"ZeRO-{a['zero']} instead of ZeRO-{b['zero']}")
    fa, fb = a["free_memory_gib"], b["free_memory_gib"]
    if fa > fb + 0.05:
        out.append(f"{fa - fb:.1f} GiB more free memory")
    return out
