"""Long fuzz run over every input family (the CI suite, tests/test_fuzz.py, runs a few dozen).

Usage (from the repository root)::

    python tools/fuzz.py --cases 10000 [--seed 1] [--families hf_config,catalog] [--show 3]

Runs ``--cases`` cases split evenly over the families of ``tests/fuzzing.py`` (plus the physical
invariants through the Python API) and prints, per family: cases, exit codes seen, and the count of
each problem kind (internal errors, wrong exit codes, failures not on one stderr line, non-finite
results, writes outside ``--out``, hangs over 30 s, broken invariants), with the first few
examples of each. Exit status 1 when any problem was found.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from roofplan.cli.app import app  # noqa: E402
from tests.fuzzing import FAMILIES, PROBLEMS, check_invariants, check_plan_fits, run_case  # noqa: E402

KINDS = (*PROBLEMS, "invariant")


def _settings(n: int) -> settings:
    return settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))


def run_family(
    name: str, n: int, rng_seed: int, limit_s: float
) -> tuple[int, collections.Counter, dict, list]:
    runner = CliRunner()
    exits: collections.Counter = collections.Counter()
    problems: dict[str, list[str]] = collections.defaultdict(list)
    count = [0]

    @seed(rng_seed)
    @_settings(n)
    @given(FAMILIES[name]())
    def one(case):
        count[0] += 1
        with tempfile.TemporaryDirectory() as d:
            found = run_case(case, Path(d), runner, app, limit_s=limit_s)
            exits[_last_exit[0]] += 1
            for kind, detail in found:
                problems[kind].append(detail)

    _patch_exit_recording(runner)
    one()
    return count[0], exits, problems, []


_last_exit = [None]


def _patch_exit_recording(runner: CliRunner) -> None:
    """Record each invocation's exit code (run_case returns problems only)."""
    invoke = runner.invoke

    def recording(*a, **kw):
        r = invoke(*a, **kw)
        _last_exit[0] = r.exit_code
        return r

    runner.invoke = recording


def run_invariants(n: int, rng_seed: int) -> tuple[int, dict]:
    problems: dict[str, list[str]] = collections.defaultdict(list)
    count = [0]

    @seed(rng_seed)
    @_settings(n)
    @given(
        st.sampled_from(["llama-3.1-8b", "mixtral-8x7b", "qwen3-8b", "llama-3.1-70b", "deepseek-v3"]),
        st.sampled_from([1, 2, 4, 8]),
        st.sampled_from([1, 2, 8, 32, 128]),
        st.floats(1.0, 1000.0),
        st.sampled_from(["hbm", "peak", "nvlink"]),
    )
    def one(model, tp, batch, scale, which):
        count[0] += 1
        for kind, detail in check_invariants(model, tp, batch, scale, which):
            problems[kind].append(detail)
        if count[0] % 50 == 1:
            for kind, detail in check_plan_fits(model, 8 * (1 + count[0] % 4)):
                problems[kind].append(detail)

    one()
    return count[0], problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--families", default=",".join([*FAMILIES, "invariants"]))
    ap.add_argument("--limit-s", type=float, default=30.0, help="a case running longer is a hang")
    ap.add_argument("--show", type=int, default=3, help="examples printed per problem kind")
    args = ap.parse_args(argv)
    names = [f for f in args.families.split(",") if f]
    per = max(1, args.cases // len(names))
    total = collections.Counter()
    print(
        f"{'family':<18}{'cases':>7}  {'exit 0/2/3':<16}"
        + "".join(f"{k:>10}" for k in KINDS)
        + f"{'time s':>9}"
    )
    examples: dict[str, list[str]] = collections.defaultdict(list)
    for name in names:
        t0 = time.perf_counter()
        if name == "invariants":
            n, problems = run_invariants(per, args.seed)
            exits: collections.Counter = collections.Counter()
        else:
            n, exits, problems, _ = run_family(name, per, args.seed, args.limit_s)
        counts = {k: len(problems.get(k, [])) for k in KINDS}
        total.update(counts)
        total["cases"] += n
        for k, v in problems.items():
            examples[f"{name}/{k}"] += v[: args.show]
        codes = "/".join(str(exits.get(c, 0)) for c in (0, 2, 3)) if exits else "-"
        print(
            f"{name:<18}{n:>7}  {codes:<16}"
            + "".join(f"{counts[k]:>10}" for k in KINDS)
            + f"{time.perf_counter() - t0:>9.1f}",
            flush=True,
        )
    print(f"{'total':<18}{total['cases']:>7}  {'':<16}" + "".join(f"{total[k]:>10}" for k in KINDS))
    for key, items in examples.items():
        print(f"\n{key}:")
        for item in items:
            print(f"  {item[:400]}")
    return 1 if any(total[k] for k in KINDS) else 0


if __name__ == "__main__":
    sys.exit(main())
