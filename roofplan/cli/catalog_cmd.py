"""``roofplan catalog list | show ID | validate FILE``: browse and check hardware catalogs.

Thin: the numbers come from :mod:`roofplan.hardware.catalog` (which also validates), this module
only renders them as rich tables or as one JSON document.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from roofplan.cli.common import console, esc, print_json, run, styled
from roofplan.cli.options import Calibration, Json
from roofplan.errors import InputError
from roofplan.hardware.catalog import (
    MEASURED_BASES,
    CatalogEntry,
    CatalogField,
    list_hardware,
    load_entry,
    resolve,
    validate_catalog_file,
)
from roofplan.hardware.overlay import apply_overlay, load_overlay
from roofplan.hardware.spec import DeviceSpec
from roofplan.hardware.units import SI_UNIT, format_quantity

CATALOG_DIR_OPTION = typer.Option(
    None,
    "--catalog-dir",
    metavar="DIR",
    help="Directory of extra <id>.yaml catalogs, searched before $ROOFPLAN_CATALOG_PATH and the built-ins.",
)


# -- summaries ----------------------------------------------------------------------------------------


def summary(spec: DeviceSpec) -> dict:
    """The one-line summary of a device used by ``catalog list`` (units in the key names)."""
    bf16 = spec.peak_flops.get("bf16")
    return {
        "id": spec.id,
        "name": spec.name,
        "vendor": spec.vendor,
        "bf16_tflops": bf16 / 1e12 if bf16 is not None else None,
        "hbm_gib": spec.hbm_bytes / 2**30,
        "hbm_tbps": spec.hbm_Bps / 1e12,
        "devices_per_node": spec.devices_per_node,
        "intra_topology": spec.intra.topology,
        "intra_gb_per_s": spec.intra.bandwidth_Bps / 1e9,  # GB/s per device per direction
        "nic_gbit_per_s": spec.inter.bandwidth_Bps * 8 / 1e9,  # Gb/s per device
        "price_per_hour": spec.price_per_hour,  # USD per device-hour
        "tiers": [t.name for t in spec.tiers],
    }


def spec_to_json(spec: DeviceSpec) -> dict:
    """Every field of a DeviceSpec in SI units."""
    return dataclasses.asdict(spec)


def _dir(catalog_dir: str | None) -> Path | None:
    """``--catalog-dir`` as a Path; typed str on the command line so that an empty value is an error
    instead of silently meaning the current directory."""
    if catalog_dir is None:
        return None
    if not catalog_dir.strip():
        raise InputError("catalog-dir", catalog_dir, "expected an existing directory of <id>.yaml files")
    return Path(catalog_dir)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


# -- list ---------------------------------------------------------------------------------------------


def _list(as_json: bool, catalog_dir: Path | None) -> None:
    entries = [load_entry(i, catalog_dir) for i in list_hardware(catalog_dir)]
    rows = [summary(e.spec) | {"path": e.path} for e in entries]
    if as_json:
        print_json({"schema": "roofplan.catalog.list/v1", "hardware": rows})
        return
    table = Table(
        title="Hardware catalogs (per device as software schedules it; dense peaks)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    cells = [
        [
            _fmt(r["bf16_tflops"], ",.1f"),
            _fmt(r["hbm_gib"], ",.0f"),
            _fmt(r["hbm_tbps"], ".2f"),
            str(r["devices_per_node"]),
            _fmt(r["intra_gb_per_s"], ",.0f"),
            _fmt(r["nic_gbit_per_s"], ",.0f"),
            _fmt(r["price_per_hour"], ".2f"),
        ]
        for r in rows
    ]
    # the name column only where it fits on one line: in 80 columns it wrapped every row into three
    with_name = console.width >= 100
    table.add_column("id", no_wrap=True)
    if with_name:
        table.add_column("name")
    headers = (
        "bf16\nTFLOPS",
        "HBM\nGiB",
        "HBM\nTB/s",
        "dev/\nnode",
        "intra\nGB/s",
        "NIC\nGb/s",
        "price\n$/h",
    )
    for i, col in enumerate(headers):
        width = max([len(c[i]) for c in cells] + [max(len(x) for x in col.split("\n"))])
        table.add_column(col, justify="right", no_wrap=True, min_width=width)
    for r, c in zip(rows, cells, strict=True):
        table.add_row(r["id"], *([r["name"]] if with_name else []), *c)
    console.print(table)


# -- show ---------------------------------------------------------------------------------------------


def _with_calibration(entry: CatalogEntry, calibration) -> tuple[DeviceSpec, list[CatalogField], dict | None]:
    fields = list(entry.fields)
    if calibration is None:
        return entry.spec, fields, None
    overlay = load_overlay(calibration)
    spec = apply_overlay(entry.spec, overlay)
    label = (  # "fit:" so that the basis column says these are fitted (to the user's measurements)
        f"fit: calibration overlay {Path(calibration).name}"
        if isinstance(calibration, (str, Path))
        else "fit: calibration"
    )
    for name, value in overlay["efficiency"].items():
        path = f"efficiency.{name}"
        fields = [dataclasses.replace(f, value=value, source=label) if f.path == path else f for f in fields]
    return spec, fields, overlay


def efficiency_basis(fields) -> dict[str, int]:
    """How many efficiency parameters rest on each basis (fitted, measured, prior, ...), the
    measured ones first: the one line that says how much of a device's model is measured."""
    counts: dict[str, int] = {}
    for f in fields:
        if f.path.startswith("efficiency."):
            counts[f.basis] = counts.get(f.basis, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] not in MEASURED_BASES, -kv[1], kv[0])))


def _render_value(f: CatalogField) -> str:
    if f.kind in ("text", "flag"):
        return str(f.value).lower() if isinstance(f.value, bool) else str(f.value)
    if f.value is None:
        return "-"
    return format_quantity(f.value, f.kind)


def _show(hw: str, as_json: bool, catalog_dir: Path | None, calibration: str | None) -> None:
    entry = load_entry(hw, catalog_dir)
    spec, fields, overlay = _with_calibration(entry, calibration)
    if as_json:
        print_json(
            {
                "schema": "roofplan.catalog.show/v1",
                "id": spec.id,
                "name": spec.name,
                "vendor": spec.vendor,
                "path": entry.path,
                "source": spec.source,
                "summary": summary(spec),
                "hardware": spec_to_json(spec),
                "fields": [
                    {
                        "path": f.path,
                        "value": f.value,
                        "unit": SI_UNIT.get(f.kind, ""),
                        "basis": f.basis,
                        "source": f.source,
                    }
                    for f in fields
                ],
                "efficiency_basis": efficiency_basis(fields),
                "calibration": overlay,
            }
        )
        return
    console.print(
        styled(
            f"[bold]{esc(spec.name)}[/bold] ({esc(spec.id)}, {esc(spec.vendor)})  file: {esc(entry.path)}"
        ),
        highlight=False,
    )
    if spec.source:
        console.print(f"main sources: {spec.source}", highlight=False, markup=False)
    # field and value at their natural width; the (long) source wraps in what is left
    table = Table(show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value", justify="right", max_width=24)
    table.add_column("basis", no_wrap=True)
    table.add_column("source", overflow="fold", ratio=1)
    section = None
    for f in fields:
        if "." not in f.path:  # a top-level scalar (tdp, price_per_hour, dataflow)
            section = None
            table.add_row(f.path, _render_value(f), f.basis, f.source)
            continue
        top, rest = f.path.split(".", 1)
        if top != section:
            section = top
            table.add_row(styled(f"[bold]{esc(top)}[/bold]"), "", "", "")
        table.add_row("  " + rest, _render_value(f), f.basis, f.source)
    console.print(table)
    counts = efficiency_basis(fields)
    console.print(
        "efficiency parameters by basis: " + ", ".join(f"{n} {b}" for b, n in counts.items()),
        highlight=False,
        markup=False,
    )
    tiers = ", ".join(
        f"{t.name} {format_quantity(t.capacity_bytes, 'bytes')} @ "
        f"{format_quantity(t.bandwidth_Bps, 'bandwidth')}"
        + (f" shared by {t.shared_by}" if t.shared_by > 1 else "")
        for t in spec.tiers
    )
    console.print(f"memory tiers: {tiers}", highlight=False, markup=False)


# -- validate -----------------------------------------------------------------------------------------


def _validate(file: str, as_json: bool, catalog_dir: Path | None, calibration: str | None = None) -> None:
    path, _ = resolve(file, catalog_dir)
    spec = validate_catalog_file(path)
    if calibration is not None:
        apply_overlay(spec, load_overlay(calibration))  # InputError when fitted for another device
    if as_json:
        print_json(
            {
                "schema": "roofplan.catalog.validate/v1",
                "file": str(path),
                "valid": True,
                "id": spec.id,
                "summary": summary(spec),
            }
        )
        return
    console.print(
        f"ok: {path} is a valid catalog for {spec.id} ({spec.name}; tiers "
        f"{', '.join(t.name for t in spec.tiers)})",
        highlight=False,
        markup=False,
    )


# -- registration -------------------------------------------------------------------------------------


def catalog_list(
    as_json: Json = False, catalog_dir: str | None = CATALOG_DIR_OPTION, calibration: Calibration = None
) -> None:
    """List every hardware id with its headline numbers."""

    def body() -> None:
        load_overlay(calibration)  # checked even where it changes nothing shown (None: nothing)
        _list(as_json, _dir(catalog_dir))

    return run(body)


def catalog_show(
    hw: str = typer.Argument(..., metavar="ID", help="Hardware id or path to a catalog YAML."),
    as_json: Json = False,
    catalog_dir: str | None = CATALOG_DIR_OPTION,
    calibration: Calibration = None,
) -> None:
    """Show every number of one catalog with its source, every memory tier included."""
    return run(lambda: _show(hw, as_json, _dir(catalog_dir), calibration))


def catalog_validate(
    file: str = typer.Argument(..., metavar="FILE", help="Catalog YAML to check (or an id)."),
    as_json: Json = False,
    catalog_dir: str | None = CATALOG_DIR_OPTION,
    calibration: Calibration = None,
) -> None:
    """Check one catalog file: schema, units, positive numbers and a source for every number
    (with --calibration: also that the overlay is valid and applies to this device)."""

    def body() -> None:
        load_overlay(calibration)  # checked even where it changes nothing shown (None: nothing)
        _validate(file, as_json, _dir(catalog_dir), calibration)

    return run(body)


def register(group: typer.Typer) -> None:
    group.command("list")(catalog_list)
    group.command("show")(catalog_show)
    group.command("validate")(catalog_validate)
