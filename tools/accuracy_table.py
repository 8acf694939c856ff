"""Print the README's accuracy table (predicted vs published) from the built-in validation suite.

Usage: ``python tools/accuracy_table.py`` prints the markdown that stands between the
``<!-- accuracy:start -->`` and ``<!-- accuracy:end -->`` markers of README.md; ``--write``
replaces it there. ``tests/test_readme_ci.py`` fails when the README and the suite disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from roofplan.validation.suite import run_suite

START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
GROUPS = (
    ("training", ("train",)),
    ("serving", ("serve_step", "serve_throughput")),
    ("serving under load", ("serve_load",)),
    ("operators", ("op_gemm", "op_allreduce")),
    ("energy", ("train_energy", "serve_energy")),
)


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _source(text: str, previous: str) -> str:
    text = previous if text.strip().lower() == "same" else text
    for cut in (" '", " (", ";", " as tabulated"):
        text = text.split(cut)[0]
    return text[:60]


def table() -> str:
    res = run_suite()
    lines = [
        "| case | hardware | model | metric | measured | predicted | error | source |",
        "|---|---|---|---|---:|---:|---:|---|",
    ]
    previous = ""
    for r in res.results:
        c = r.case
        src = _source(c.source, previous)
        previous = src
        if r.predicted is None:
            continue
        lines.append(
            f"| {c.id} | {c.str('hardware')} | {c.str('model', '-')} | {c.metric} | "
            f"{_num(c.measured)} {c.str('unit')} | {_num(r.predicted)} | {r.error:+.1%} | {src} |"
        )
    lines += ["", "| group | cases | median abs error | worst abs error |", "|---|---:|---:|---:|"]
    for name, kinds in GROUPS:
        lines.append(
            f"| {name} | {len(res.errors(kinds))} | {res.median_abs_error(kinds):.1%} | "
            f"{res.worst_abs_error(kinds):.1%} |"
        )
    lines.append(
        f"| all | {len(res.errors())} | {res.median_abs_error():.1%} | {res.worst_abs_error():.1%} |"
    )
    return "\n".join(lines)


def readme_section(readme: str) -> str:
    return readme.split(START, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> None:
    text = table()
    if "--write" in argv:
        path = Path(__file__).resolve().parents[1] / "README.md"
        readme = path.read_text()
        head, rest = readme.split(START, 1)
        path.write_text(f"{head}{START}\n{text}\n{END}{rest.split(END, 1)[1]}")
    else:
        print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
