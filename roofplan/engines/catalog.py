"""Engine profiles from their YAML catalogs (``roofplan/catalogs/engines/<name>.yaml``), with a
calibration overlay's ``engines.<name>`` block applied. Each field there is ``{value, source}``.
"""

from __future__ import annotations

import functools
from pathlib import Path

from roofplan.engines.profile import ENGINES, EngineProfile
from roofplan.errors import InputError
from roofplan.hardware.overlay import load_overlay
from roofplan.inputs import load_yaml, read_text

#: Where the engine profile YAMLs live (package data, see pyproject.toml).
ENGINE_DIR = Path(__file__).resolve().parent.parent / "catalogs" / "engines"


def _read_profile(name: str) -> dict:
    """The fields of engine ``name`` (a fresh dict; the parse is cached)."""
    return dict(_parse_profile(name))


@functools.cache
def _parse_profile(name: str) -> dict:
    path = ENGINE_DIR / f"{name}.yaml"
    doc = load_yaml(read_text(path, f"engine catalog {name}.yaml", "yaml"), f"engine catalog {name}.yaml")
    if not isinstance(doc, dict):
        raise InputError(f"engine catalog {name}.yaml", "not a mapping", "a mapping of EngineProfile fields")
    # Every field in the YAML is {value: .., source: ..} or a bare value.
    fields = {}
    for key, item in doc.items():
        fields[key] = item["value"] if isinstance(item, dict) and "value" in item else item
    return fields


def load_engine(name: str | EngineProfile = "generic", calibration=None) -> EngineProfile:
    """The profile of engine ``name`` with the ``engines.<name>`` block of a calibration overlay
    applied. An unknown name is a user error (exit 2)."""
    if isinstance(name, EngineProfile):
        profile = name
    else:
        if name not in ENGINES:
            raise InputError("engine", name, "one of " + ", ".join(ENGINES))
        fields = _read_profile(name)
        fields["name"] = name
        profile = EngineProfile(name=name).replace(**{k: v for k, v in fields.items() if k != "name"})
    if calibration is not None:
        block = (load_overlay(calibration).get("engines") or {}).get(profile.name) or {}
        if block:
            profile = profile.replace(**block)
    return profile
