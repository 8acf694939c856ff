"""Request lengths of a serving workload: fixed numbers, distributions, traces and presets.

A workload is a sample of (isl, osl[, arrival_s]) requests (:class:`Workload`). The analytic load
model (:mod:`roofplan.costmodel.serve_load`) reads its moments and samples; the simulator
(:mod:`roofplan.costmodel.serve_sim`) runs it request by request. Sources:

* a number: every request has that many tokens;
* a distribution ``KIND:MEAN,SPREAD`` -- ``normal:1000,200`` (mean, standard deviation),
  ``lognormal:1000,500`` (mean and standard deviation of the length; the underlying normal is
  solved from them), ``uniform:1000,200`` (mean +- spread), or ``empirical:100,250,4000`` (values
  drawn with equal weight). Lengths are rounded and kept >= 1;
* a trace file, CSV (header ``isl,osl[,arrival_s]``) or JSONL (one object per line with those keys);
* a built-in preset (:data:`PRESETS`), each with its source.

Parsing errors name the file, the line and the column (exit 2, docs/SPEC.md §4).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roofplan.errors import InputError

#: Kinds accepted by ``--isl-dist`` / ``--osl-dist``.
DIST_KINDS = ("normal", "lognormal", "uniform", "empirical")
#: Requests drawn from a distribution when no trace fixes the count.
DEFAULT_SAMPLES = 4096


@dataclass(frozen=True)
class Workload:
    """Request lengths (integers >= 1) and optional arrival times (seconds, non-decreasing)."""

    isl: np.ndarray
    osl: np.ndarray
    arrival_s: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.isl)

    @property
    def fixed(self) -> bool:
        """True when every request has the same isl and osl (no length variance)."""
        return bool(np.all(self.isl == self.isl[0]) and np.all(self.osl == self.osl[0]))

    def describe(self) -> dict:
        """Means and percentiles of the lengths (for the JSON ``inputs``)."""
        out = {"source": self.source, "requests": len(self)}
        for name, v in (("isl", self.isl), ("osl", self.osl)):
            out[name] = {
                "mean": float(np.mean(v)),
                "p50": float(np.percentile(v, 50)),
                "p90": float(np.percentile(v, 90)),
                "p99": float(np.percentile(v, 99)),
            }
        return out


@dataclass(frozen=True)
class Preset:
    """A built-in workload: lognormal input and output lengths given by median and p90."""

    name: str
    isl_p50: float
    isl_p90: float
    osl_p50: float
    osl_p90: float
    source: str


#: Built-in workloads. Lognormal through the published median and p90 (sigma = ln(p90/p50)/z90).
PRESETS = {
    p.name: p
    for p in (
        Preset(
            "chat",
            1730,
            5696,
            415,
            834,
            "openchat_sharegpt4 (multi-turn ShareGPT-4 chat): median / p90 prompt 1730 / 5696, "
            "output 415 / 834 tokens; Agrawal et al., Sarathi-Serve, OSDI 2024, Table 3 "
            "(https://arxiv.org/abs/2403.02310)",
        ),
        Preset(
            "summarisation",
            7059,
            12985,
            208,
            371,
            "arxiv_summarization: median / p90 prompt 7059 / 12985, output 208 / 371 tokens; "
            "Agrawal et al., Sarathi-Serve, OSDI 2024, Table 3 (https://arxiv.org/abs/2403.02310)",
        ),
        Preset(
            "code",
            1500,
            4500,
            13,
            60,
            "Azure LLM inference trace 2023, coding: median prompt 1500 and median output 13 tokens "
            "(Patel et al., Splitwise, ISCA 2024, §III; https://arxiv.org/abs/2311.18677); the p90s "
            "(3x and ~4.6x the medians) are read off its length CDFs (Fig. 3) and are approximate",
        ),
        Preset(
            "long-context",
            7590,
            16000,
            182,
            400,
            "Mooncake conversation trace: mean input 7590, mean output 182 tokens (Qin et al., "
            "Mooncake, FAST 2025, §7 trace statistics; https://arxiv.org/abs/2407.00079); used as "
            "medians, with p90s about twice the median (approximate, a long-tailed trace)",
        ),
    )
}

_Z90 = 1.2815515655446004  # standard normal 90th percentile


def _lognormal(rng, median: float, sigma: float, n: int) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(n))


def _as_lengths(x, field: str) -> np.ndarray:
    v = np.maximum(np.rint(np.asarray(x, dtype=float)), 1.0).astype(np.int64)
    if not np.all(np.isfinite(x)):
        raise InputError(field, "non-finite sample", "a distribution with finite lengths")
    return v


def parse_dist(text: str, field: str) -> tuple[str, list[float]]:
    """``KIND:A,B`` -> (kind, params); bad text raises InputError naming ``field``."""
    kind, _, rest = str(text).partition(":")
    kind = kind.strip().lower()
    if kind not in DIST_KINDS or not rest:
        raise InputError(
            field,
            text,
            "KIND:MEAN,SPREAD with KIND one of "
            + ", ".join(DIST_KINDS)
            + " (e.g. lognormal:1000,400), or empirical:V1,V2,...",
        )
    try:
        vals = [float(x) for x in rest.split(",") if x.strip()]
    except ValueError:
        raise InputError(field, text, "numbers after the colon, separated by commas") from None
    if kind == "empirical":
        if not vals or min(vals) < 1:
            raise InputError(field, text, "empirical:V1,V2,... with every value >= 1")
        return kind, vals
    if len(vals) != 2 or vals[0] < 1 or vals[1] < 0 or not all(math.isfinite(v) for v in vals):
        raise InputError(field, text, f"{kind}:MEAN,SPREAD with MEAN >= 1 and SPREAD >= 0")
    if kind == "uniform" and vals[1] >= vals[0]:
        raise InputError(field, text, "uniform:MEAN,SPREAD with SPREAD < MEAN (lengths stay >= 1)")
    return kind, vals


def sample_dist(kind: str, params: list[float], n: int, rng, field: str) -> np.ndarray:
    """n lengths of a parsed distribution (see :func:`parse_dist`)."""
    if kind == "empirical":
        return _as_lengths(rng.choice(np.asarray(params), size=n), field)
    mean, spread = params
    if kind == "normal":
        x = mean + spread * rng.standard_normal(n)
    elif kind == "uniform":
        x = rng.uniform(mean - spread, mean + spread, n)
    else:  # lognormal with the given mean and standard deviation of the length
        s2 = math.log1p((spread / mean) ** 2)
        x = np.exp(math.log(mean) - s2 / 2 + math.sqrt(s2) * rng.standard_normal(n))
    return _as_lengths(x, field)


def _cell(path: str, lineno: int, col: int, name: str, raw, *, allow_zero: bool = False) -> float:
    try:
        v = float(raw)
    except (TypeError, ValueError):
        v = float("nan")
    # lengths up to 2^27 tokens (the longest context a model may declare), arrivals within ~30 years
    ok = math.isfinite(v) and (0 <= v <= 1e9 if allow_zero else 1 <= v <= 2**27)
    if not ok or (name != "arrival_s" and v != int(v)):
        what = "a number of seconds in [0, 1e9]" if allow_zero else "an integer in [1, 134,217,728]"
        raise InputError(f"{path}:{lineno}:{col} {name}", raw, what)
    return v


def load_trace(path: str | Path) -> Workload:
    """Rows of (isl, osl[, arrival_s]) from a CSV (header required) or JSONL file."""
    from roofplan.inputs import is_file, load_json, read_text, user_path

    p = user_path(path, "--workload")
    if not is_file(p):
        raise InputError(
            "--workload", str(path), f"a readable CSV or JSONL file or a preset ({', '.join(PRESETS)})"
        )
    text = read_text(p, "--workload", "measurements")
    rows: list[tuple[float, float, float | None]] = []
    if p.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip().startswith("{"):
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            obj = load_json(line, f"{p}:{lineno}", "valid JSON")  # strict: duplicates, NaN, depth
            if not isinstance(obj, dict) or "isl" not in obj or "osl" not in obj:
                raise InputError(f"{p}:{lineno}:1", line.strip()[:40], 'an object with "isl" and "osl"')
            col = {k: line.find(f'"{k}"') + 1 for k in ("isl", "osl", "arrival_s")}
            arr = obj.get("arrival_s")
            rows.append(
                (
                    _cell(str(p), lineno, col["isl"], "isl", obj["isl"]),
                    _cell(str(p), lineno, col["osl"], "osl", obj["osl"]),
                    None
                    if arr is None
                    else _cell(str(p), lineno, col["arrival_s"], "arrival_s", arr, allow_zero=True),
                )
            )
    else:
        reader = csv.reader(text.splitlines())
        header = [h.strip().lower() for h in next(reader, [])]
        if "isl" not in header or "osl" not in header:
            raise InputError(f"{p}:1:1", ",".join(header)[:40], "a CSV header with isl,osl[,arrival_s]")
        idx = {k: header.index(k) for k in ("isl", "osl", "arrival_s") if k in header}
        for lineno, rec in enumerate(reader, 2):
            if not any(c.strip() for c in rec):
                continue
            if len(rec) < len(header):
                raise InputError(f"{p}:{lineno}:{len(rec) + 1}", ",".join(rec)[:40], f"{len(header)} columns")
            vals = {
                k: _cell(
                    str(p),
                    lineno,
                    len(",".join(rec[:i])) + (i > 0) + 1,
                    k,
                    rec[i].strip(),
                    allow_zero=(k == "arrival_s"),
                )
                for k, i in idx.items()
            }
            rows.append((vals["isl"], vals["osl"], vals.get("arrival_s")))
    if not rows:
        raise InputError("--workload", str(path), "a trace with at least one (isl, osl) row")
    arrivals = [r[2] for r in rows]
    if any(a is None for a in arrivals) and not all(a is None for a in arrivals):
        raise InputError(f"{p} arrival_s", "missing on some rows", "arrival_s on every row or on none")
    arr = None if arrivals[0] is None else np.asarray(arrivals, dtype=float)
    if arr is not None and np.any(np.diff(arr) < 0):
        line = int(np.nonzero(np.diff(arr) < 0)[0][0]) + 2
        raise InputError(
            f"{p} row {line} arrival_s", float(arr[line - 1]), "arrival times in non-decreasing order"
        )
    return Workload(
        np.asarray([r[0] for r in rows], dtype=np.int64),
        np.asarray([r[1] for r in rows], dtype=np.int64),
        arr,
        source=f"trace {p.name}",
    )


def preset_workload(name: str, n: int = DEFAULT_SAMPLES, seed: int = 0) -> Workload:
    """n requests of a built-in preset (lognormal through its published median and p90)."""
    pr = PRESETS[name]
    rng = np.random.default_rng(seed)
    isl = _lognormal(rng, pr.isl_p50, math.log(pr.isl_p90 / pr.isl_p50) / _Z90, n)
    osl = _lognormal(rng, pr.osl_p50, math.log(pr.osl_p90 / pr.osl_p50) / _Z90, n)
    return Workload(
        _as_lengths(isl, name), _as_lengths(osl, name), None, source=f"preset {name}: {pr.source}"
    )


def make_workload(
    *,
    isl: int | None = None,
    osl: int | None = None,
    isl_dist: str | None = None,
    osl_dist: str | None = None,
    workload: str | None = None,
    n: int = DEFAULT_SAMPLES,
    seed: int = 0,
) -> Workload:
    """The workload the flags describe: ``workload`` (preset name or trace path) alone, or isl / osl
    each as a number or a distribution. Conflicting or missing sources raise InputError."""
    if workload is not None:
        if any(v is not None for v in (isl, osl, isl_dist, osl_dist)):
            raise InputError(
                "--workload", workload, "alone: it sets both lengths (drop --isl/--osl/--*-dist)"
            )
        if workload in PRESETS:
            return preset_workload(workload, n, seed)
        from roofplan.inputs import is_file, user_path

        if not is_file(user_path(workload, "--workload")):
            raise InputError(
                "--workload", workload, "a CSV/JSONL trace file or a preset: " + ", ".join(PRESETS)
            )
        return load_trace(workload)
    rng = np.random.default_rng(seed)

    def one(value, dist, name):
        if value is not None and dist is not None:
            raise InputError(f"--{name}-dist", dist, f"either --{name} or --{name}-dist, not both")
        if dist is not None:
            kind, params = parse_dist(dist, f"--{name}-dist")
            return sample_dist(kind, params, n, rng, f"--{name}-dist"), dist
        if value is None:
            raise InputError(f"--{name}", None, f"a token count, --{name}-dist or --workload")
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise InputError(f"--{name}", value, "a positive integer")
        return None, str(int(value))

    a, da = one(isl, isl_dist, "isl")
    b, db = one(osl, osl_dist, "osl")
    m = n if (a is not None or b is not None) else 1
    a = np.full(m, int(isl), dtype=np.int64) if a is None else a
    b = np.full(m, int(osl), dtype=np.int64) if b is None else b
    return Workload(a, b, None, source=f"isl {da}, osl {db}")
