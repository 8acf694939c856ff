"""Which launchers run on which device vendors.

A launch file is only useful where its framework runs. Sources (the projects' install pages):

* TensorRT-LLM is CUDA-only (NVIDIA/TensorRT-LLM README, "TensorRT-LLM ... on NVIDIA GPUs"), and
  NVIDIA Dynamo deploys on NVIDIA GPUs (ai-dynamo/dynamo README, support matrix).
* vLLM and SGLang run on NVIDIA CUDA and AMD ROCm; on Ascend NPUs through vLLM-Ascend and SGLang's
  NPU backend (docs/reference/launch-configs.md §8). Megatron-LM, DeepSpeed and torchtitan are PyTorch programs
  that run on CUDA and ROCm builds of PyTorch, and on Ascend through torch_npu (Megatron via
  MindSpeed).
* A SambaNova RDU is a dataflow device programmed through SambaFlow / SambaStudio
  (docs/reference/launch-configs.md, SambaNova section), not through any of these launchers.
"""

from __future__ import annotations

from roofplan.hardware.spec import DeviceSpec

#: Launchers restricted to some vendors (vendor names as in the catalogs' ``vendor`` field).
_VENDORS: dict[str, tuple[str, ...]] = {
    "trtllm": ("NVIDIA",),
    "dynamo": ("NVIDIA",),
}


def unsupported_on(framework: str, hw: DeviceSpec) -> str | None:
    """Why ``framework`` cannot launch on ``hw`` (None when it can)."""
    if hw.dataflow:
        return f"{hw.name} is a dataflow device programmed through its vendor's own stack, not {framework}"
    vendors = _VENDORS.get(framework)
    if vendors and hw.vendor not in vendors:
        return f"{framework} runs on {' / '.join(vendors)} GPUs only, not on {hw.vendor} {hw.id}"
    return None
