"""Model specs: the :class:`ModelSpec` shape, presets, and readers for HF configs and model YAML."""

from roofplan.models.hf_config import SUPPORTED_MODEL_TYPES, read_hf_config
from roofplan.models.loader import list_models, load_model, parse_inline_gpt
from roofplan.models.spec import MLASpec, ModelSpec, MoESpec

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "MLASpec",
    "MoESpec",
    "ModelSpec",
    "list_models",
    "load_model",
    "parse_inline_gpt",
    "read_hf_config",
]
