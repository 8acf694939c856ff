"""Command lines several test modules run, built in one place.

Each builder returns a token list for ``cli(*argv)`` / ``runner.invoke(app, argv)``; a test appends
its own flags (``[*serve_plan(8, 1000, 100), "--emit", "dynamo"]``). Model and hardware default to
Llama 3.1 8B on H100, which most tests use because it plans in well under a second.
"""

from __future__ import annotations

_MODEL, _HARDWARE = "llama-3.1-8b", "h100-sxm"


def _argv(command: str, model: str | None, hardware: str, *flags: tuple[str, object]) -> list[str]:
    """``command --model M --hardware H`` then each (flag, value) whose value is not None, in order
    (without ``--model`` when ``model`` is None: a test that adds its own)."""
    argv = command.split()
    for flag, val in (("--model", model), ("--hardware", hardware), *flags):
        if val is not None:
            argv += [flag, str(val)]
    return argv


def train_plan(gpus, global_batch, seq_len, model: str = _MODEL, hardware: str = _HARDWARE) -> list[str]:
    """``plan train``; without ``--gpus`` when ``gpus`` is None. It ends with ``--seq-len N``."""
    return _argv(
        "plan train",
        model,
        hardware,
        ("--gpus", gpus),
        ("--global-batch", global_batch),
        ("--seq-len", seq_len),
    )


def train_estimate(
    global_batch, micro_batch, seq_len, model: str | None = _MODEL, hardware: str = _HARDWARE
) -> list[str]:
    """``estimate train`` of one configuration (every degree 1 unless a test adds one); it ends
    with ``--seq-len N``."""
    return _argv(
        "estimate train",
        model,
        hardware,
        ("--global-batch", global_batch),
        ("--micro-batch", micro_batch),
        ("--seq-len", seq_len),
    )


def serve_plan(gpus, isl, osl, model: str = _MODEL, hardware: str = _HARDWARE) -> list[str]:
    """``plan serve`` for a GPU budget (``N`` or one per pool, ``8,8``) and request lengths."""
    return _argv("plan serve", model, hardware, ("--gpus", gpus), ("--isl", isl), ("--osl", osl))


def serve_estimate(batch, isl, osl, model: str | None = _MODEL, hardware: str = _HARDWARE) -> list[str]:
    """``estimate serve`` of one instance at a static batch; it ends with the request lengths."""
    return _argv("estimate serve", model, hardware, ("--batch", batch), ("--isl", isl), ("--osl", osl))


#: Training Llama 3.1 8B on H100s, 64 x 4096 tokens per step, with and without a GPU budget
#: (one H100 node).
PLAN_TRAIN_8B_ANY_GPUS = train_plan(None, 64, 4096)
PLAN_TRAIN_8B = train_plan(8, 64, 4096)
#: A larger training plan: Llama 3.1 70B on 8 H100 nodes, 512 x 8192 tokens per step.
PLAN_TRAIN_70B = train_plan(64, 512, 8192, "llama-3.1-70b")
#: One training configuration of Llama 3.1 8B on H100 (every degree 1 unless a test adds one);
#: it ends with --seq-len so that a test can drop a required option with ``[:-2]``.
ESTIMATE_TRAIN_8B = train_estimate(64, 1, 4096)
#: One serving instance of Llama 3.1 8B on one H100 at a static batch of 8.
ESTIMATE_SERVE_8B = serve_estimate(8, 1024, 128)
#: Serving plans for Llama 3.1 8B on H100: one node with 1000/200-token requests, and two GPUs
#: with short requests (the fastest plan serve there is).
PLAN_SERVE_8B = serve_plan(8, 1000, 200)
PLAN_SERVE_8B_2GPU = serve_plan(2, 512, 64)
