"""Sweep outputs: the resumable journal, the CSV / Parquet tables and the JSON summary.

* ``rows.jsonl`` — one finished row per line, appended and flushed as rows arrive, so an
  interrupted sweep keeps what it finished; a rerun skips the scenarios whose ``id`` is in it.
* ``results.csv`` (always) and ``results.parquet`` (when pyarrow is installed: the ``parquet``
  extra) — every scenario in spec order, columns :data:`roofplan.sweep.run.COLUMNS`.
* ``summary.json`` — counts by status, the best scenario of each workload by time, money and
  energy, the files, and a ``timing`` object (the only part that differs between runs).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from roofplan.errors import InputError
from roofplan.outputs import write_file
from roofplan.sweep.run import COLUMNS

SUMMARY_SCHEMA = "roofplan.sweep.summary/v1"
JOURNAL = "rows.jsonl"


def read_journal(out: Path) -> dict[str, dict]:
    """Rows already finished, by scenario id (a truncated last line from a crash is ignored)."""
    path = out / JOURNAL
    rows: dict[str, dict] = {}
    if not path.exists():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            rows[row["id"]] = row
    return rows


class Journal:
    """Appends rows to ``rows.jsonl`` as they finish. The file is opened without following a link
    (``O_NOFOLLOW``): a symlink planted at that name is an input error, never a write elsewhere."""

    def __init__(self, out: Path):
        flags = (
            os.O_WRONLY
            | os.O_APPEND
            | os.O_CREAT
            | getattr(os, "O_NOFOLLOW", 0)
            | getattr(os, "O_CLOEXEC", 0)
        )
        try:
            out.mkdir(parents=True, exist_ok=True)
            fd = os.open(out / JOURNAL, flags, 0o666)
        except OSError as exc:
            raise InputError("out", str(out), f"a writable directory ({exc.strerror or exc})") from None
        self.fh = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, row: dict) -> None:
        self.fh.write(json.dumps(row, separators=(",", ":")) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def ordered_rows(scenarios: list[dict], done: dict[str, dict]) -> list[dict]:
    """The rows of ``scenarios`` in spec order (index renumbered to the current spec)."""
    out = []
    for s in scenarios:
        row = dict(done[s["id"]])
        row["index"] = s["index"]
        out.append(row)
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as CSV, written whole through the safe writer (:func:`roofplan.outputs.write_file`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if r.get(k) is None else r[k] for k in COLUMNS])
    write_file(path, buf.getvalue())


def write_parquet(path: Path, rows: list[dict]) -> bool:
    """Write ``rows`` as Parquet; False (and nothing written) when pyarrow is not installed."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return False
    table = pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in COLUMNS})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    write_file(path, buf.getvalue())
    return True


def workload_key(r: dict) -> str:
    """The workload a row belongs to (everything but hardware, GPU count and objective)."""
    if r["kind"] == "train":
        parts = [r["model"], f"gbs{r['global_batch']}", f"seq{r['seq_len']}", r.get("dtype") or "bf16"]
        if r.get("tokens"):
            parts.append(f"{r['tokens']:.3g}tok")
    else:
        parts = [r["model"], f"isl{r['isl']}", f"osl{r['osl']}"]
        for k in ("rate", "ttft_ms", "tpot_ms"):
            if r.get(k) is not None:
                parts.append(f"{k}{r[k]:g}")
    return f"{r['kind']}:" + " ".join(parts)


def _best(rows: list[dict], key: str, higher: bool = False) -> str | None:
    vals = [(r[key], r["index"], r["id"]) for r in rows if r.get(key) is not None]
    if not vals:
        return None
    return (max(vals, key=lambda v: (v[0], -v[1])) if higher else min(vals))[2]


def summary(rows: list[dict], files: dict, resumed: int) -> dict:
    """The summary document (without ``timing``)."""
    status: dict[str, int] = {}
    for r in rows:
        status[r["status"]] = status.get(r["status"], 0) + 1
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault(workload_key(r), []).append(r)
    best = {}
    for k, rs in groups.items():
        if rs[0]["kind"] == "train":
            best[k] = {
                "fastest": _best(rs, "tokens_per_s", higher=True),
                "cheapest": _best(rs, "usd_per_million_tokens"),
                "least_energy": _best(rs, "joules_per_token"),
            }
        else:
            best[k] = {
                "most_goodput_per_gpu": _best(rs, "output_tokens_per_s_per_gpu", higher=True),
                "cheapest": _best(rs, "usd_per_million_tokens"),
                "least_energy": _best(rs, "joules_per_token"),
            }
    return {
        "schema": SUMMARY_SCHEMA,
        "scenarios": len(rows),
        "status": dict(sorted(status.items())),
        "resumed": resumed,
        "best": best,
        "files": files,
    }
