"""Devices, nodes and their catalogs.

``spec`` holds the typed specs (:class:`DeviceSpec`, :class:`MemoryTier`, :class:`Fabric`,
:class:`Efficiency`); ``catalog`` finds, parses and validates the YAML catalogs (search path:
``--catalog-dir``, ``$ROOFPLAN_CATALOG_PATH``, built-ins); ``overlay`` reads calibration overlays
and applies them; ``units`` converts ``"3.35 TB/s"``-style quantities to SI.
"""

from roofplan.hardware.catalog import list_hardware, load_hardware, validate_catalog_file
from roofplan.hardware.overlay import apply_overlay, load_overlay
from roofplan.hardware.spec import DTYPE_BYTES, DeviceSpec, Efficiency, Fabric, MemoryTier

__all__ = [
    "DTYPE_BYTES",
    "DeviceSpec",
    "Efficiency",
    "Fabric",
    "MemoryTier",
    "apply_overlay",
    "list_hardware",
    "load_hardware",
    "load_overlay",
    "validate_catalog_file",
]
