"""Rich renderings shared by several commands."""

from __future__ import annotations

from rich.table import Table

from roofplan.cli.common import styled


def memory_table(
    mem: dict, keys: tuple[str, ...], fits: bool, extra: tuple[tuple[str, float], ...] = ()
) -> Table:
    """'Memory per GPU': one row per component in ``keys`` (GiB and share of capacity), the
    ``extra`` (label, GiB) rows, then the capacity in green when the configuration fits, red
    when it does not."""
    cap = mem["capacity"]
    t = Table(title="Memory per GPU")
    t.add_column("component")
    t.add_column("GiB", justify="right")
    t.add_column("of capacity", justify="right")
    for key in keys:
        val = mem[key]
        label = styled(f"[bold]{key}[/bold]") if key == "total" else key
        t.add_row(label, f"{val:.2f}", f"{val / cap:.1%}" if cap else "-")
    for label, val in extra:
        t.add_row(label, f"{val:.2f}", f"{val / cap:.1%}" if cap else "")
    color = "green" if fits else "red"
    t.add_row("capacity", styled(f"[{color}]{cap:.2f}[/{color}]"), "")
    return t
