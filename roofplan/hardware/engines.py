"""Former home of the engine profiles, now :mod:`roofplan.engines` (``profile``: the type and its
checks; ``catalog``: the YAML loader). Kept as a re-export while the serving modules move their
imports; new code imports from :mod:`roofplan.engines`.
"""

from roofplan.engines.catalog import ENGINE_DIR, load_engine
from roofplan.engines.profile import ENGINE_BOUNDS, ENGINES, EngineProfile, check_engine_fields

__all__ = ["ENGINES", "ENGINE_BOUNDS", "ENGINE_DIR", "EngineProfile", "check_engine_fields", "load_engine"]
