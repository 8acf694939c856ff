"""Bounded parsing of hostile input files (not part of the test suite).

Writes ~100 MB measurement files of four shapes and times ``read_measurements`` on each, with
the peak memory of the process (target: seconds and well under 1 GB each; before bounded,
streaming parsing a 100 MB CSV ran 537 s and 7.6 GB, 100 MB of nccl-tests text 100 s and 5.1 GB):

* ``csv rows``: a 100 MB CSV of valid GEMM rows (stops at the row cap, ``MAX_ROWS``);
* ``csv comments``: 100 MB of comment lines and one valid row (streamed line by line);
* ``nccl noise``: nccl-tests output with 100 MB of ``NCCL INFO`` lines around its result rows;
* ``one line``: 100 MB without a newline;
* ``over limit``: a file larger than ``SIZE_LIMITS["measurements"]`` (refused before reading).

Also times a 389-byte YAML alias tree ("billion laughs", 9 levels) and 50,000 levels of nested
JSON through the bounded loaders.

    python benchmarks/bench_inputs.py
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from roofplan.calibration.formats import read_measurements
from roofplan.errors import InputError
from roofplan.inputs import SIZE_LIMITS, load_json, load_yaml

MB = 10**6
NCCL_HEAD = """# nThread 1 nGpus 8 minBytes 8 maxBytes 8589934592 step: 2(factor) warmup iters: 5 iters: 20
#  Rank  0 Group  0 Pid 1 on node01 device  0 [0x1b] NVIDIA H100 80GB HBM3
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
"""


def _write(path: Path, head: str, line: str, size: int, tail: str = "") -> None:
    with path.open("w") as f:
        f.write(head)
        block = line * max(1, 2**20 // len(line))
        written = len(head)
        while written < size:
            f.write(block)
            written += len(block)
        f.write(tail)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(label: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        result = f"{len(fn())} rows"
    except InputError as exc:
        result = f"InputError: {str(exc)[:90]}"
    print(f"{label:<14} {time.perf_counter() - t0:7.2f} s  peak RSS {_peak_mb():7.0f} MB  {result}")


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        cases = {
            "csv rows": ("m.csv", "kind,m,n,k,dtype,value,unit\n", "gemm,4096,4096,4096,bf16,1.5,ms\n", ""),
            "csv comments": (
                "c.csv",
                "kind,m,n,k,dtype,value,unit\n",
                "# a comment line of a long export\n",
                "gemm,4096,4096,4096,bf16,1.5,ms\n",
            ),
            "nccl noise": (
                "all_reduce_perf.txt",
                NCCL_HEAD,
                "node01:1:1 [0] NCCL INFO Channel 00/32 : 0 1 2 3\n",
                "     1048576  262144  float  sum  -1  45.2  23.2  40.6  0  44.9  23.3  40.8  0\n",
            ),
            "one line": ("one.csv", "kind,m,n,k,dtype,value,unit\n", "x" * 4096, "\n"),
        }
        for label, (name, head, line, tail) in cases.items():
            path = d / name
            _write(path, head, line, 100 * MB, tail)
            _time(label, lambda p=path: read_measurements(p, ranks=8))
            path.unlink()
        big = d / "big.csv"
        with big.open("wb") as f:
            f.truncate(SIZE_LIMITS["measurements"] + 1)  # sparse: no disk used
        _time("over limit", lambda: read_measurements(big))

    laughs = "\n".join(
        ['a0: &a0 ["lol"]'] + [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    )
    _time("billion laughs", lambda: load_yaml(laughs, "laughs.yaml") or [])
    _time("deep JSON", lambda: load_json("[" * 50_000 + "]" * 50_000, "deep.json") or [])


if __name__ == "__main__":
    main()
