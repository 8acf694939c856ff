"""Hardware catalogs: find, parse and validate the device YAML files into :class:`DeviceSpec`.

Search path
-----------
An id (``h100-sxm``) resolves to the first ``<dir>/<id>.yaml`` found in: the ``catalog_dir``
argument (``--catalog-dir``), then every directory of the environment variable
``ROOFPLAN_CATALOG_PATH`` (``os.pathsep``-separated), then the built-in ``roofplan/catalogs/``.
A user file therefore shadows a built-in of the same id. Anything that looks like a path (ends in
``.yaml``/``.yml`` or names an existing file) is loaded directly.

Schema (``schema: roofplan.hardware/v1``)
-----------------------------------------
Every number is a *quantity*: a mapping ``{value: ..., source: "..."}`` whose ``source`` names
the document and section (or URL) it comes from, ``"derived: <arithmetic on sourced numbers>"``,
``"fit: <data it was fitted to>"`` or ``"unsourced (typical value ...)"``. A number without a
source is rejected. ``value`` is SI (FLOP/s, bytes, bytes/s, seconds, watts, USD per
device-hour) or a string with an explicit unit that the loader converts (``"989.4 TFLOPS"``,
``"80 GB"``, ``"64 GiB"``, ``"3.35 TB/s"``, ``"400 Gb/s"``, ``"2 us"``, ``"700 W"``; see
:mod:`roofplan.hardware.units`). Bandwidths are per device and per direction. ::

    schema: roofplan.hardware/v1
    id: h100-sxm                      # must equal the file name when found by id
    name: NVIDIA H100 SXM5 80GB
    vendor: NVIDIA
    source: "[NV-H100-web] ..."       # optional: the main datasheet
    peak_flops:                       # dense peak per dtype; omit dtypes the device lacks
      bf16: {value: 989.4 TFLOPS, source: "..."}
    memory:                           # tiers: sram | hbm (required) | ddr | host
      hbm:  {capacity: {value: 80 GB, source: ...}, bandwidth: {value: 3.35 TB/s, source: ...}}
      host: {capacity: ..., bandwidth: ..., shared_by: {value: 8, source: ...}}
    node:
      devices_per_node: {value: 8, source: ...}
      intra:                          # scale-up fabric as one device sees it
        name: NVLink 4 via NVSwitch
        topology: {value: switch, source: ...}   # switch|full_mesh|partial_mesh|ring|torus
        bandwidth: {value: 450 GB/s, source: ...}
        latency: {value: 1 us, source: ...}
        pair_bandwidth: {value: ..., source: ...}        # optional (partial_mesh)
        in_network_reduction: {value: true, source: ...} # optional (NVLink SHARP)
      inter: {name: ..., topology: ..., bandwidth: {value: 400 Gb/s, ...}, latency: ...}  # NIC per device
    tdp: {value: 700 W, source: ...}              # value may be null (with a source saying why)
    price:                                        # (or the older top-level price_per_hour quantity)
      per_device_hour: {value: 4.916, source: ...}  # USD per device-hour; may be null
      date: "2024"                                # when it was read: YYYY, YYYY-MM or YYYY-MM-DD
    power:                                        # optional; costmodel/power.py
      idle: {value: 70 W, source: ...}            # board power with nothing running
      max: {value: 700 W, source: ...}            # optional: fully active (default: the tdp)
    dataflow: {value: false, source: ...}         # optional; SN40L: true
    efficiency:                                   # any Efficiency field; missing ones use defaults
      gemm_max: {value: 0.803, source: "[MLENG] MAMF 794.5 / 989.4"}

Parsed built-ins are cached (the planners load hardware in loops); user files are cached by
modification time. Every validation failure is an :class:`InputError` naming the file, the field
path, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from roofplan.errors import InputError, did_you_mean
from roofplan.hardware.spec import (
    DTYPE_BYTES,
    TOPOLOGIES,
    DeviceSpec,
    Efficiency,
    Fabric,
    MemoryTier,
    out_of_bounds,
)
from roofplan.hardware.units import parse_quantity
from roofplan.inputs import is_dir, is_file, load_yaml, read_text, user_path

SCHEMA = "roofplan.hardware/v1"
ENV_VAR = "ROOFPLAN_CATALOG_PATH"
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "catalogs"

#: Memory tiers, fastest first (the order of ``DeviceSpec.tiers``).
TIER_NAMES = ("sram", "hbm", "ddr", "host")

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_TOP_KEYS = (
    "schema",
    "id",
    "name",
    "vendor",
    "source",
    "notes",
    "peak_flops",
    "memory",
    "node",
    "tdp",
    "price_per_hour",
    "price",
    "power",
    "dataflow",
    "efficiency",
    "compute_units",
)
_PRICE_KEYS = ("per_device_hour", "date", "notes")
_POWER_KEYS = ("idle", "max", "notes")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_TIER_KEYS = ("capacity", "bandwidth", "shared_by", "notes")
_NODE_KEYS = ("devices_per_node", "intra", "inter", "notes")
_FABRIC_KEYS = ("name", "topology", "bandwidth", "latency", "pair_bandwidth", "in_network_reduction", "notes")
_QTY_KEYS = ("value", "source", "note")


#: How a catalog number was obtained, read from the start of its ``source`` string (the convention
#: every built-in catalog follows): prefix -> basis. A source that starts otherwise cites a
#: document (a datasheet or paper key such as ``[AMD-MI300X-web]``): basis "cited".
BASIS_PREFIXES = (
    ("fit:", "fitted"),  # tools/fit_ops.py (or a hand fit) on measured rows
    ("measured:", "measured"),  # read off one published measurement
    ("derived:", "derived"),  # computed from other sourced numbers or from the design
    ("fixed:", "fixed"),  # a model constant chosen on purpose (its source says why)
    ("prior:", "prior"),  # borrowed from another device or a default: not measured on this one
    ("not measured", "prior"),
    ("unsourced", "unsourced"),  # a typical value without a source
    ("not applicable", "n/a"),
)
#: The bases that rest on a measurement of this device.
MEASURED_BASES = ("fitted", "measured")


def basis(source: str) -> str:
    """The basis of a catalog number ("fitted", "measured", "derived", "fixed", "prior", "unsourced",
    "n/a" or "cited"), so that ``catalog show`` can say which parameters are measured and which are
    priors without the reader parsing each source string."""
    text = source.strip()
    for prefix, name in BASIS_PREFIXES:
        if text.startswith(prefix):
            return name
    return "cited"


@dataclass(frozen=True)
class CatalogField:
    """One number (or flag) of a catalog with its source, for ``roofplan catalog show``."""

    path: str  # dotted path in the YAML, e.g. "memory.hbm.bandwidth"
    value: object  # SI float, int, bool, str or None
    kind: str  # flops | bytes | bandwidth | time | power | usd_per_hour | count | fraction | text | flag
    source: str

    @property
    def basis(self) -> str:
        """How this number was obtained (:func:`basis` of its source)."""
        return basis(self.source)


@dataclass(frozen=True)
class CatalogEntry:
    """A parsed catalog file: the spec plus every field with its source."""

    spec: DeviceSpec
    path: str
    fields: tuple[CatalogField, ...]

    def source_of(self, path: str) -> str | None:
        for f in self.fields:
            if f.path == path:
                return f.source
        return None


# -- search path ------------------------------------------------------------------------------------


def search_dirs(catalog_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for ``<id>.yaml``, highest priority first."""
    dirs: list[Path] = []
    if catalog_dir:
        d = user_path(catalog_dir, "catalog-dir")
        if not is_dir(d):
            raise InputError(
                "catalog-dir", str(catalog_dir), "expected an existing directory of <id>.yaml files"
            )
        dirs.append(d)
    for part in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if part.strip():
            dirs.append(Path(part.strip()))  # a missing directory in the env var is skipped, like PATH
    dirs.append(BUILTIN_DIR)
    return dirs


def _catalog_files(d: Path) -> list[Path]:
    if not is_dir(d):
        return []
    try:
        return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and is_file(p))
    except OSError:  # unreadable directory on the search path: skipped, like PATH
        return []


def list_hardware(catalog_dir: str | os.PathLike | None = None) -> list[str]:
    """Every hardware id on the search path, sorted."""
    ids = {p.stem for d in search_dirs(catalog_dir) for p in _catalog_files(d)}
    return sorted(ids)


def _looks_like_path(s: str) -> bool:
    return s.endswith((".yaml", ".yml")) or os.sep in s or (os.altsep is not None and os.altsep in s)


def resolve(id_or_path: str | os.PathLike, catalog_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """(file, found_by_id) for an id or a path; unknown ids raise InputError listing the known ones."""
    s = str(id_or_path).strip()
    if isinstance(id_or_path, os.PathLike) or _looks_like_path(s):
        p = user_path(s, "hardware")
        if not is_file(p):
            raise InputError(
                "hardware",
                s,
                "expected an existing catalog YAML file or one of: " + ", ".join(list_hardware(catalog_dir)),
            )
        return p, False
    user_path(s, "hardware")  # a name no file system accepts is an error here, not an OSError below
    for d in search_dirs(catalog_dir):
        for suffix in (".yaml", ".yml"):
            p = d / f"{s}{suffix}"
            if is_file(p):
                return p, True
    if is_file(Path(s)):
        return Path(s), False
    ids = list_hardware(catalog_dir)
    raise InputError(
        "hardware",
        s,
        did_you_mean(s, ids) + "expected one of: " + ", ".join(ids) + " (or a path to a catalog YAML)",
    )


# -- loading ----------------------------------------------------------------------------------------


def load_entry(id_or_path: str | os.PathLike, catalog_dir: str | os.PathLike | None = None) -> CatalogEntry:
    """Parse and validate the catalog for an id or path (cached)."""
    path, by_id = resolve(id_or_path, catalog_dir)
    path = path.resolve()
    entry = _parse_cached(str(path), path.stat().st_mtime_ns)
    if by_id and entry.spec.id != path.stem:
        raise InputError(f"{path.name}: id", entry.spec.id, f"expected '{path.stem}' (the file name)")
    return entry


def load_hardware(id_or_path, calibration=None, catalog_dir=None) -> DeviceSpec:
    """A :class:`DeviceSpec` from a catalog id, a YAML path or a DeviceSpec, with an optional
    calibration overlay (None, a YAML path or a dict; see :mod:`roofplan.hardware.overlay`)."""
    from roofplan.hardware.overlay import apply_overlay, load_overlay

    if isinstance(id_or_path, DeviceSpec):
        spec = id_or_path
    else:
        if not isinstance(id_or_path, (str, os.PathLike)):
            raise InputError(
                "hardware", repr(id_or_path), "expected a catalog id, a YAML path or a DeviceSpec"
            )
        spec = load_entry(id_or_path, catalog_dir).spec
    if calibration is None:
        return spec
    return apply_overlay(spec, load_overlay(calibration))


def validate_catalog_file(path: str | os.PathLike) -> DeviceSpec:
    """Parse and validate one catalog file (uncached); raises InputError on the first problem."""
    p = user_path(path, "catalog file")
    if not is_file(p):
        raise InputError("catalog file", str(path), "expected an existing YAML file")
    return _parse_file(p).spec


@functools.lru_cache(maxsize=256)
def _parse_cached(path: str, mtime_ns: int) -> CatalogEntry:
    return _parse_file(Path(path))


def _parse_file(path: Path) -> CatalogEntry:
    doc = load_yaml(read_text(path, "catalog file", "yaml"), path.name, "expected valid YAML")
    return _Parser(path.name, str(path)).document(doc)


class _Parser:
    """Walks one catalog document, converting units and collecting sources."""

    def __init__(self, file_name: str, path: str):
        self.file = file_name
        self.path = path
        self.fields: list[CatalogField] = []

    # -- primitives --------------------------------------------------------------------------------
    def fail(self, where: str, value: object, allowed: str) -> InputError:
        return InputError(f"{self.file}: {where}", value, allowed)

    def mapping(self, node: object, where: str, keys: tuple[str, ...] | None = None) -> dict:
        if not isinstance(node, dict):
            raise self.fail(where or "document", _short(node), "expected a mapping")
        if keys is not None:
            for k in node:
                if k not in keys:
                    raise self.fail(
                        f"{where}.{k}" if where else str(k),
                        "unknown key",
                        did_you_mean(str(k), keys) + "allowed keys: " + ", ".join(keys),
                    )
        return node

    def text(self, node: dict, key: str, where: str, required: bool = True) -> str | None:
        v = node.get(key)
        if v is None:
            if required:
                raise self.fail(_join(where, key), "missing", "expected a non-empty string")
            return None
        if not isinstance(v, str) or not v.strip():
            raise self.fail(_join(where, key), _short(v), "expected a non-empty string")
        if any(not ch.isprintable() for ch in v.strip()):  # a newline would forge output lines
            raise self.fail(_join(where, key), _short(v), "expected one line of printable text")
        return v.strip()

    def sourced(self, node: dict, key: str, where: str, required: bool = True) -> tuple[object, str] | None:
        """(raw value, source) of a ``{value, source}`` quantity; None when optional and absent."""
        path = _join(where, key)
        if key not in node:
            if required:
                raise self.fail(path, "missing", "expected {value: ..., source: '...'}")
            return None
        q = node[key]
        if not isinstance(q, dict):
            raise self.fail(
                path, _short(q), "expected {value: ..., source: '...'}: every number needs a source"
            )
        self.mapping(q, path, _QTY_KEYS)
        if "value" not in q:
            raise self.fail(f"{path}.value", "missing", "expected a value")
        src = q.get("source")
        if not isinstance(src, str) or not src.strip():
            raise self.fail(
                f"{path}.source",
                _short(src) if src is not None else "missing",
                "expected a non-empty source (document and section, URL, 'derived: ...', "
                "'fit: ...' or 'unsourced (typical value ...)')",
            )
        return q["value"], src.strip()

    def number(
        self,
        node: dict,
        key: str,
        where: str,
        kind: str,
        *,
        required: bool = True,
        nullable: bool = False,
        integer: bool = False,
        minimum: float = 0.0,
        inclusive: bool = False,
    ) -> float | int | None:
        got = self.sourced(node, key, where, required)
        if got is None:
            return None
        raw, src = got
        path = _join(where, key)
        if raw is None:
            if nullable:
                self.fields.append(CatalogField(path, None, kind, src))
                return None
            raise self.fail(path, None, "expected a number (null is not allowed here)")
        try:
            value = parse_quantity(raw, kind)
        except ValueError as exc:
            raise self.fail(path, raw, str(exc)) from None
        ok = value >= minimum if inclusive else value > minimum
        if not ok:
            rel = ">=" if inclusive else ">"
            raise self.fail(path, raw, f"expected a number {rel} {minimum:g}")
        bad = out_of_bounds(path, kind, value, zero_ok=inclusive and minimum == 0)
        if bad:
            raise self.fail(path, raw, bad)
        if integer:
            if value != int(value):
                raise self.fail(path, raw, "expected a whole number")
            value = int(value)
        self.fields.append(CatalogField(path, value, kind, src))
        return value

    def choice_or_flag(
        self,
        node: dict,
        key: str,
        where: str,
        *,
        flag: bool,
        choices: tuple[str, ...] = (),
        required: bool = True,
        default: object = None,
    ) -> object:
        """A string choice or boolean flag, given plainly or as ``{value, source}``."""
        path = _join(where, key)
        if key not in node:
            if required:
                raise self.fail(
                    path, "missing", "expected " + ("true or false" if flag else " | ".join(choices))
                )
            return default
        q = node[key]
        if isinstance(q, dict):
            raw, src = self.sourced(node, key, where)
        else:
            raw, src = q, ""
        if flag:
            if not isinstance(raw, bool):
                raise self.fail(path, _short(raw), "expected true or false")
        elif raw not in choices:
            raise self.fail(path, _short(raw), "expected one of " + ", ".join(choices))
        self.fields.append(CatalogField(path, raw, "flag" if flag else "text", src))
        return raw

    # -- sections ----------------------------------------------------------------------------------
    def document(self, doc: object) -> CatalogEntry:
        if doc is None:
            raise self.fail("document", "empty file", "expected a catalog mapping (schema, id, name, ...)")
        doc = self.mapping(doc, "", _TOP_KEYS)
        schema = doc.get("schema", SCHEMA)
        if schema != SCHEMA:
            raise self.fail("schema", _short(schema), f"expected {SCHEMA}")
        dev_id = self.text(doc, "id", "")
        if doc["id"] != dev_id:
            raise self.fail("id", _short(doc["id"]), "expected an id without surrounding spaces or newlines")
        if not _ID.fullmatch(dev_id) or len(dev_id) > 64:
            raise self.fail("id", dev_id, "expected up to 64 lowercase letters, digits, '.', '_' or '-'")
        name = self.text(doc, "name", "")
        vendor = self.text(doc, "vendor", "")
        source = self.text(doc, "source", "", required=False) or ""

        peaks = self.peak_flops(doc.get("peak_flops"))
        tiers = self.memory(doc.get("memory"))
        node = self.mapping(doc.get("node"), "node", _NODE_KEYS)
        devices = self.number(node, "devices_per_node", "node", "count", integer=True)
        intra = self.fabric(node.get("intra"), "node.intra")
        inter = self.fabric(node.get("inter"), "node.inter")
        tdp = self.number(doc, "tdp", "", "power", required=False, nullable=True)
        price, price_date = self.price(doc)
        idle_w, max_w = self.power(doc.get("power"), tdp)
        dataflow = self.choice_or_flag(doc, "dataflow", "", flag=True, required=False, default=False)
        eff = self.efficiency(doc.get("efficiency"))
        units = self.number(doc, "compute_units", "", "count", integer=True, required=False, nullable=True)
        if intra.topology == "partial_mesh" and intra.pair_bandwidth_Bps is None:
            raise self.fail(
                "node.intra.pair_bandwidth", "missing", "expected a bandwidth for a partial_mesh fabric"
            )

        spec = DeviceSpec(
            id=dev_id,
            name=name,
            vendor=vendor,
            peak_flops=peaks,
            tiers=tiers,
            devices_per_node=devices,
            intra=intra,
            inter=inter,
            tdp_w=tdp,
            price_per_hour=price,
            efficiency=eff,
            dataflow=bool(dataflow),
            source=source,
            compute_units=int(units) if units else None,
            idle_w=idle_w,
            max_w=max_w,
            price_date=price_date,
        )
        return CatalogEntry(spec=spec, path=self.path, fields=tuple(self.fields))

    def price(self, doc: dict) -> tuple[float | None, str | None]:
        """USD per device-hour and the date it was read: the ``price`` block, or the older
        top-level ``price_per_hour`` quantity (no date); not both."""
        if "price" not in doc:
            return self.number(doc, "price_per_hour", "", "usd_per_hour", required=False, nullable=True), None
        if "price_per_hour" in doc:
            raise self.fail("price_per_hour", "given with a price block", "one of price_per_hour or price")
        node = self.mapping(doc["price"], "price", _PRICE_KEYS)
        value = self.number(node, "per_device_hour", "price", "usd_per_hour", nullable=True)
        date = node.get("date")
        if value is None and date is None:  # no price, so no date to give
            return None, None
        if not isinstance(date, str) or not _DATE.match(date):
            raise self.fail(
                "price.date",
                _short(date) if date is not None else "missing",
                "expected the date the price was read, as a string YYYY, YYYY-MM or YYYY-MM-DD",
            )
        self.fields.append(CatalogField("price.date", date, "text", self.fields[-1].source))
        return value, date

    def power(self, node: object, tdp: float | None) -> tuple[float | None, float | None]:
        """Idle and fully-active board power (W) of the power model; ``max`` defaults to the TDP."""
        if node is None:
            return None, None
        node = self.mapping(node, "power", _POWER_KEYS)
        idle = self.number(node, "idle", "power", "power", inclusive=True)
        top = self.number(node, "max", "power", "power", required=False)
        ceiling = top if top is not None else tdp
        if ceiling is not None and idle >= ceiling:
            raise self.fail("power.idle", idle, f"expected less than the fully active power ({ceiling:g} W)")
        return idle, top

    def peak_flops(self, node: object) -> dict[str, float]:
        if node is None:
            raise self.fail("peak_flops", "missing", "expected a mapping dtype -> {value, source}")
        node = self.mapping(node, "peak_flops", tuple(DTYPE_BYTES))
        if not node:
            raise self.fail("peak_flops", "empty", "expected at least one of " + ", ".join(DTYPE_BYTES))
        return {dt: self.number(node, dt, "peak_flops", "flops") for dt in DTYPE_BYTES if dt in node}

    def memory(self, node: object) -> tuple[MemoryTier, ...]:
        if node is None:
            raise self.fail(
                "memory", "missing", "expected tiers " + ", ".join(TIER_NAMES) + " (hbm required)"
            )
        node = self.mapping(node, "memory", TIER_NAMES)
        if "hbm" not in node:
            raise self.fail("memory.hbm", "missing", "every device needs an hbm tier (device memory)")
        tiers = []
        for name in TIER_NAMES:
            if name not in node:
                continue
            where = f"memory.{name}"
            t = self.mapping(node[name], where, _TIER_KEYS)
            cap = self.number(t, "capacity", where, "bytes")
            bw = self.number(t, "bandwidth", where, "bandwidth")
            shared = self.number(t, "shared_by", where, "count", required=False, integer=True) or 1
            tiers.append(MemoryTier(name=name, capacity_bytes=cap, bandwidth_Bps=bw, shared_by=shared))
        return tuple(tiers)

    def fabric(self, node: object, where: str) -> Fabric:
        if node is None:
            raise self.fail(
                where, "missing", "expected a fabric mapping (name, topology, bandwidth, latency)"
            )
        f = self.mapping(node, where, _FABRIC_KEYS)
        name = self.text(f, "name", where)
        topo = self.choice_or_flag(f, "topology", where, flag=False, choices=TOPOLOGIES)
        bw = self.number(f, "bandwidth", where, "bandwidth")
        lat = self.number(f, "latency", where, "time", inclusive=True)
        pair = self.number(f, "pair_bandwidth", where, "bandwidth", required=False)
        innet = self.choice_or_flag(
            f, "in_network_reduction", where, flag=True, required=False, default=False
        )
        return Fabric(
            name=name,
            topology=topo,
            bandwidth_Bps=bw,
            latency_s=lat,
            pair_bandwidth_Bps=pair,
            in_network_reduction=bool(innet),
        )

    def efficiency(self, node: object) -> Efficiency:
        from roofplan.hardware.overlay import efficiency_kind

        if node is None:
            node = {}
        names = Efficiency.field_names()
        node = self.mapping(node, "efficiency", names)
        values = {}
        defaults = Efficiency()
        for name in names:
            kind, inclusive = efficiency_kind(name)
            if name in node:
                values[name] = self.number(node, name, "efficiency", kind, inclusive=inclusive)
            else:
                self.fields.append(
                    CatalogField(
                        f"efficiency.{name}",
                        getattr(defaults, name),
                        kind,
                        "roofplan default (not set in this catalog)",
                    )
                )
        return dataclasses.replace(defaults, **values)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _short(v: object) -> object:
    s = repr(v)
    return v if len(s) <= 60 else s[:57] + "..."
