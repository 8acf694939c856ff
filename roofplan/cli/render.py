"""Rich renderings shared by several commands."""

from __future__ import annotations

from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn
from rich.table import Table

from roofplan.cli.common import console, err_console, esc, styled


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
        t.add_row(label, f"{val:.2f}", share(val, cap))
    for label, val in extra:
        t.add_row(label, f"{val:.2f}", share(val, cap, ""))
    color = "green" if fits else "red"
    t.add_row("capacity", styled(f"[{color}]{cap:.2f}[/{color}]"), "")
    return t


def share(part: float, whole: float, none: str = "-") -> str:
    """``part`` as a percentage of ``whole`` (one decimal), or ``none`` when the whole is zero."""
    return f"{part / whole:.1%}" if whole else none


def heading(inputs: dict, devices: str, rest: str = "") -> None:
    """The first line of an estimate: the model and hardware in bold (user strings escaped), then
    ``devices`` (e.g. "x 8  (tp=8 pp=1)") and ``rest`` as given (roofplan's own markup)."""
    console.print(
        styled(
            f"[bold]{esc(inputs['model'])}[/bold] on [bold]{esc(inputs['hardware'])}[/bold]{devices}{rest}"
        )
    )


def progress_bar(label: str, *columns: ProgressColumn) -> Progress:
    """A started progress bar on stderr (stdout stays the result): ``label``, the bar, then
    ``columns``; transient, so it leaves no line behind."""
    bar = Progress(TextColumn(label), BarColumn(), *columns, console=err_console, transient=True)
    bar.start()
    return bar


def summary_table(rows: list[tuple[str, str]], fits: bool) -> Table:
    """The headline numbers of an estimate as label/value rows without borders, ending with
    whether the configuration fits in memory (green yes, red no)."""
    t = Table(show_header=False, box=None)
    for label, text in rows:
        t.add_row(label, text)
    t.add_row("fits", styled("[green]yes[/green]" if fits else "[red]no (out of memory)[/red]"))
    return t
