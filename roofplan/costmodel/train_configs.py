"""Struct-of-arrays training configurations and the validity rules the frameworks enforce.

:class:`TrainConfigs` holds N configurations as numpy arrays (scalars broadcast), so the cost model
evaluates one or a million with the same code. :func:`check_train_config` returns one reject-reason
code per configuration (0 = valid); the codes are the assertions Megatron-LM makes at start-up
(``megatron/training/arguments.py``, ``megatron/core/parallel_state.py``) plus DeepSpeed's rule
that ZeRO-2/3 do not combine with pipeline parallelism (``deepspeed/runtime/pipe/engine.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import IntEnum

import numpy as np

from roofplan.models.spec import ModelSpec


class Recompute(IntEnum):
    """Activation recomputation, the code stored in ``TrainConfigs.recompute``: selective recomputes
    the attention core (Korthikanti et al. 2022), full whole layers (Megatron
    ``--recompute-granularity``)."""

    NONE = 0
    SELECTIVE = 1
    FULL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


class Offload(IntEnum):
    """What lives in host memory (``TrainConfigs.offload``): the optimizer states, or those and the
    parameters (DeepSpeed ZeRO-Offload / ZeRO-Infinity; SN40L: DDR)."""

    NONE = 0
    OPTIMIZER = 1
    OPTIMIZER_PARAMS = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "+")


#: Name -> code of each choice (the names are what the CLI, the JSON and the planner speak).
RECOMPUTE = {m.label: int(m) for m in Recompute}
OFFLOAD = {m.label: int(m) for m in Offload}
RECOMPUTE_NAMES = {v: k for k, v in RECOMPUTE.items()}
OFFLOAD_NAMES = {v: k for k, v in OFFLOAD.items()}
#: MoE token dispatchers (``TrainConfigs.moe_dispatcher``).
MOE_DISPATCHERS = ("alltoall", "deepep")
#: Transformer Engine FP8 scaling recipes (``TrainConfigs.fp8_recipe``).
FP8_RECIPES = ("current", "delayed")
#: Training precisions (``TrainConfigs.dtype``; the device decides which it runs).
TRAIN_DTYPES = ("bf16", "fp16", "fp8")
#: Pipeline engines (``TrainConfigs.pipeline_engine``).
PIPELINE_ENGINES = ("megatron", "deepspeed")
#: Cross-entropy implementations (``TrainConfigs.cross_entropy``).
CROSS_ENTROPY_IMPLS = ("unfused", "te")


def choices(name: str) -> tuple[str, ...]:
    """The allowed names of a :class:`TrainConfigs` knob, from its field metadata."""
    return next(f.metadata["choices"] for f in fields(TrainConfigs) if f.name == name)


#: Reject reasons of :func:`check_train_config`; the planner counts rejections with these names.
REJECT_REASONS: dict[int, str] = {
    1: "invalid_value",  # a degree or batch < 1, recompute/zero/offload code out of range
    2: "divisibility",  # heads/kv heads/ffn not divisible by tp, global batch by micro*dp
    3: "pipeline",  # pp > layers; interleaving needs pp > 1, pp*vpp <= layers, microbatches % pp
    4: "context_parallel",  # seq_len not divisible by 2*cp (causal load balancing chunks)
    5: "expert_parallel",  # ep*etp does not divide tp*dp*cp, ep not the experts; ep > 1 on a dense model
    6: "zero_pipeline",  # ZeRO-3 with pp > 1 on DeepSpeed's engine (it asserts) or with CPU offload
    7: "recompute_layers",  # recompute_layers > layers per pipeline stage
    8: "offload_zero",  # optimizer offload without a sharded optimizer, parameter offload without ZeRO-3
    9: "activation_offload",  # activation offload with pp > 1, with recompute, or of every layer
}

#: The integer fields of :class:`TrainConfigs` (the planner's search arrays carry the same names).
INT_FIELDS = (
    "tp",
    "pp",
    "dp",
    "cp",
    "ep",
    "vpp",
    "micro_batch",
    "global_batch",
    "seq_len",
    "recompute",
    "recompute_layers",
    "zero",
    "offload",
    "etp",
    "act_offload_layers",
)


@dataclass
class TrainConfigs:
    """N training configurations as arrays of equal length (scalars are broadcast).

    Batches are in sequences. ``recompute``: 0 none, 1 selective (attention core, Korthikanti et
    al. 2022), 2 full; with full, ``recompute_layers`` layers per pipeline stage are recomputed
    (Megatron ``--recompute-method block --recompute-num-layers``), 0 meaning all. ``zero``: 0 plain
    DDP, 1 optimizer states sharded (Megatron distributed optimizer), 2 + gradients, 3 + parameters.
    ``offload``: 0 none, 1 optimizer states to host (SN40L: DDR), 2 optimizer states and parameters.
    """

    tp: np.ndarray
    pp: np.ndarray
    dp: np.ndarray
    cp: np.ndarray
    ep: np.ndarray
    vpp: np.ndarray
    micro_batch: np.ndarray
    global_batch: np.ndarray
    seq_len: np.ndarray
    recompute: np.ndarray = field(metadata={"choices": tuple(RECOMPUTE)})
    recompute_layers: np.ndarray = field()
    sequence_parallel: np.ndarray = field()
    zero: np.ndarray = field(metadata={"choices": ("0", "1", "2", "3")})
    offload: np.ndarray = field(metadata={"choices": tuple(OFFLOAD)})
    dtype: str = field(default="bf16", metadata={"choices": TRAIN_DTYPES})
    gpus_per_node: int | None = None
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    tp_comm_overlap: bool = False
    #: Pipeline sends/receives overlapped with non-dependent computation in the steady 1F1B phase
    #: of the interleaved schedule (Megatron-Core ``overlap_p2p_comm``, on unless
    #: ``--no-overlap-p2p-communication``; NeMo docs "Pipeline-parallel Communication Overlap":
    #: only with virtual pipelining, fill and flush stay exposed). Not in the 2021 stack.
    overlap_p2p_comm: bool = True
    flash_attention: bool = True
    #: Dropout layers present (masks stored, extra elementwise traffic). None: GPT-style models
    #: (``linear_bias``: GPT-2/3, OPT, BLOOM recipes train with dropout 0.1) yes, Llama-style no.
    dropout: bool | None = None
    #: Transformer Engine FP8 scaling recipe for ``dtype="fp8"``: ``current`` (per-tensor current
    #: scaling, Megatron-Bridge ``FP8-CS`` recipes: each cast first reduces the tensor's amax, and
    #: with sequence parallelism all-reduces it over TP) or ``delayed`` (TE ``DelayedScaling``, the
    #: default of Megatron-LM ``--fp8-recipe`` and of the NeMo 24.x recipes: scales from the amax
    #: history, the amax reduction is asynchronous, ``NVTE_ASYNC_AMAX_REDUCTION=1``).
    fp8_recipe: str = field(default="current", metadata={"choices": FP8_RECIPES})
    #: Expert-parallel all-to-all overlapped with the computation of another microbatch
    #: (Megatron-Core ``--overlap-moe-expert-parallel-comm --delay-wgrad-compute``, the 1F1B A2A
    #: overlap of MCore v0.14; DeepSeek-V3 report §3.2.1 DualPipe). Megatron runs it without a
    #: pipeline or with the interleaved schedule, not with full recomputation; the cost model
    #: applies it only there.
    ep_comm_overlap: bool = True
    #: MoE token dispatcher: ``alltoall`` (Megatron's default; one copy per routed token slot) or
    #: ``deepep`` (``--moe-token-dispatcher-type flex`` with DeepEP/HybridEP: a token crosses the
    #: network once per destination node and is forwarded over NVLink, DeepSeek-V3 report §3.2.2).
    moe_dispatcher: str = field(default="alltoall", metadata={"choices": MOE_DISPATCHERS})
    #: Expert tensor parallel size (Megatron ``--expert-tensor-parallel-size``); 0 means equal to
    #: ``tp``. With parallel folding the expert layers regroup a stage's tp*cp*dp ranks as
    #: ETP x EP x expert-DP, so ep*etp must divide tp*cp*dp (Megatron-Bridge's DeepSeek-V3 and
    #: Qwen3 recipes run TP 2 with ETP 1).
    etp: np.ndarray | int = 0
    #: Data-parallel gradients reduced in fp32 (Megatron's default, ``main_grad`` buffers in fp32)
    #: or, when False, in the parameter dtype (``--grad-reduce-in-bf16``; Megatron-Bridge's
    #: performance recipes set ``ddp.grad_reduce_in_fp32 = False`` in
    #: ``scripts/performance/utils/helpers.py`` ``set_basic_perf_overrides``): half the bytes on
    #: the wire and in the gradient buffer.
    grad_reduce_in_fp32: bool = True
    #: Megatron ``--account-for-embedding-in-pipeline-split`` and ``--account-for-loss-in-pipeline-
    #: split``: the embedding and the loss each count as one layer when the layers are split over
    #: the pipeline, so the first and last stages hold one decoder layer fewer (Megatron-Bridge's
    #: and NeMo's Llama 3.1 405B recipes: 126 layers + 2 = 128 over PP 8 x VP 8).
    split_accounts_ends: bool = False
    #: Pipeline engine: ``megatron`` (Megatron-Core schedules) or ``deepspeed`` (DeepSpeed's
    #: ``PipelineEngine``, used by Megatron-DeepSpeed: 1F1B ``TrainSchedule`` whose
    #: ``ReduceTiedGrads``/``ReduceGrads`` instructions run after the last micro-batch, so the
    #: data-parallel reduction does not overlap the backward, nor does ZeRO-1's parameter
    #: all-gather after the step; like Megatron it sends 1/tp of the boundary activation and
    #: all-gathers it on arrival, ``deepspeed/runtime/pipe/engine.py`` and ``schedule.py``).
    pipeline_engine: str = field(default="megatron", metadata={"choices": PIPELINE_ENGINES})
    #: Vocab-parallel cross-entropy on the LM head's logits: ``unfused`` (Megatron's
    #: ``tensor_parallel.vocab_parallel_cross_entropy`` on fp32 logits, several passes) or ``te``
    #: (Megatron-Core ``cross_entropy_loss_fusion`` with ``cross_entropy_fusion_impl="te"``:
    #: Transformer Engine's Triton ``parallel_cross_entropy`` reads the bf16 logits in an online-
    #: softmax pass and once more to write the gradient in place, ``transformer_engine/pytorch/
    #: triton/cross_entropy.py``; Megatron-Bridge's performance scripts set it,
    #: ``scripts/performance/utils/helpers.py`` ``set_common_perf_overrides``).
    cross_entropy: str = field(default="unfused", metadata={"choices": CROSS_ENTROPY_IMPLS})
    #: Decoder layers whose activations are offloaded to host memory (Megatron ``--cpu-offloading
    #: --cpu-offloading-num-layers N``, Transformer Engine's ``get_cpu_offload_context``): each
    #: offloaded layer's saved tensors are copied out during the forward and back before its
    #: backward, overlapped with the neighbouring layer's compute. Megatron-Core allows it only
    #: without a pipeline, without recomputation and for fewer than all layers
    #: (``transformer_config.py``).
    act_offload_layers: np.ndarray | int = 0

    def __post_init__(self) -> None:
        arrays = [np.asarray(getattr(self, f), dtype=np.int64) for f in INT_FIELDS]
        arrays.append(np.asarray(self.sequence_parallel, dtype=bool))
        arrays = np.broadcast_arrays(*[np.atleast_1d(a) for a in arrays])
        for name, a in zip((*INT_FIELDS, "sequence_parallel"), arrays):
            object.__setattr__(self, name, np.ascontiguousarray(a))

    def __len__(self) -> int:
        return int(self.tp.shape[0])

    @classmethod
    def single(
        cls,
        *,
        tp=1,
        pp=1,
        dp=1,
        cp=1,
        ep=1,
        vpp=1,
        micro_batch=1,
        global_batch=None,
        seq_len=2048,
        recompute=0,
        recompute_layers=0,
        sequence_parallel=None,
        zero=0,
        offload=0,
        **scalars,
    ) -> TrainConfigs:
        """One configuration; ``recompute``/``offload`` may be names; SP defaults to on when tp > 1."""
        if isinstance(recompute, str):
            recompute = RECOMPUTE[recompute]
        if isinstance(offload, str):
            offload = OFFLOAD[offload]
        if sequence_parallel is None:
            sequence_parallel = tp > 1
        if global_batch is None:
            global_batch = micro_batch * dp
        return cls(
            tp=tp,
            pp=pp,
            dp=dp,
            cp=cp,
            ep=ep,
            vpp=vpp,
            micro_batch=micro_batch,
            global_batch=global_batch,
            seq_len=seq_len,
            recompute=recompute,
            recompute_layers=recompute_layers,
            sequence_parallel=sequence_parallel,
            zero=zero,
            offload=offload,
            **scalars,
        )

    def take(self, index) -> TrainConfigs:
        """The configurations at ``index`` (mask or integer indices), scalars kept."""
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v[index] if isinstance(v, np.ndarray) else v
        return TrainConfigs(**kw)

    def row(self, i: int = 0) -> dict:
        """Configuration ``i`` as plain Python values."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = v[i].item() if isinstance(v, np.ndarray) else v
        return out


def check_train_config(model: ModelSpec, cfg: TrainConfigs) -> np.ndarray:
    """Reject-reason code per configuration (0 = valid; names in :data:`REJECT_REASONS`).

    The first failing rule (in code order) wins, so each rejected configuration is counted once.
    """
    tp, pp, dp, cp, ep, vpp = cfg.tp, cfg.pp, cfg.dp, cfg.cp, cfg.ep, cfg.vpp
    mb, gb, s = cfg.micro_batch, cfg.global_batch, cfg.seq_len
    code = np.zeros(len(cfg), dtype=np.int64)

    def mark(bad, reason):
        np.copyto(code, reason, where=(code == 0) & bad)

    positive = np.minimum.reduce([tp, pp, dp, cp, ep, vpp, mb, gb, s])
    mark(
        (positive < 1)
        | (cfg.recompute < 0)
        | (cfg.recompute > 2)
        | (cfg.zero < 0)
        | (cfg.zero > 3)
        | (cfg.offload < 0)
        | (cfg.offload > 2)
        | (cfg.recompute_layers < 0)
        | (cfg.etp < 0),
        1,
    )
    safe_tp, safe_mbdp = np.maximum(tp, 1), np.maximum(mb * dp, 1)
    etp = np.maximum(np.where(cfg.etp > 0, cfg.etp, tp), 1)
    div = (model.heads % safe_tp != 0) | (model.kv_heads % safe_tp != 0) | (gb % safe_mbdp != 0)
    div |= model.ffn % safe_tp != 0
    if model.moe:
        div |= model.moe.expert_ffn % etp != 0
    mark(div, 2)
    micro = gb // safe_mbdp
    safe_pp, safe_v = np.maximum(pp, 1), np.maximum(vpp, 1)
    interleaved = vpp > 1
    # Interleaving: Megatron-Core places ceil(L / (p v)) layers per virtual stage when L is not a
    # multiple (``--pipeline-model-parallel-layout`` / account-for-embedding splits); each virtual
    # stage needs at least one layer.
    mark(
        (pp > model.layers)
        | (interleaved & ((pp < 2) | (safe_pp * safe_v > model.layers) | (micro % safe_pp != 0))),
        3,
    )
    if cfg.pipeline_engine == "deepspeed":
        mark(interleaved, 3)  # DeepSpeed's PipelineEngine runs plain 1F1B (TrainSchedule)
    mark((cp > 1) & (s % np.maximum(2 * cp, 1) != 0), 4)
    if model.moe is None:
        mark(ep > 1, 5)
    else:
        # parallel folding: EP x ETP regroup the tp*cp*dp ranks (Megatron ``parallel_state``)
        mark(
            ((tp * dp * cp) % np.maximum(ep * etp, 1) != 0)
            | (model.moe.num_experts % np.maximum(ep, 1) != 0),
            5,
        )
    # ZeRO-2 with a pipeline reduce-scatters each microbatch's gradients into the fp32 shard (FSDP
    # without no_sync, Llama 3's 4D parallelism, Dubey et al. 2024 §3.3.1-2); ZeRO-3 with a pipeline
    # is torchtitan's FSDP2 under a pipeline schedule (train_memory.fsdp_under_pipeline), which
    # DeepSpeed's PipelineEngine refuses; CPU offload under it (sharded state on the host while the
    # pipeline keeps the stage unsharded on the device) is not modelled
    deepspeed_pp = cfg.pipeline_engine == "deepspeed"
    mark((cfg.zero >= 3) & (pp > 1) & (deepspeed_pp | (cfg.offload >= 1)), 6)
    layers_per_stage = -(-model.layers // safe_pp)
    mark((cfg.recompute == 2) & (cfg.recompute_layers > layers_per_stage), 7)
    # Optimizer CPU offload runs on the optimizer's shard: Megatron ``--optimizer-cpu-offload`` needs
    # ``--use-distributed-optimizer``, DeepSpeed ``offload_optimizer`` needs ZeRO stage >= 1;
    # parameter offload exists only with ZeRO-3 (DeepSpeed ``offload_param``).
    mark(((cfg.offload >= 1) & (cfg.zero < 1)) | ((cfg.offload >= 2) & (cfg.zero < 3)), 8)
    aol = cfg.act_offload_layers
    mark((aol < 0) | ((aol > 0) & ((pp > 1) | (cfg.recompute > 0) | (aol >= model.layers))), 9)
    return code
