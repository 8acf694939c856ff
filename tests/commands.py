"""Command lines several test modules run (one copy of each).

Each is a token list; a test appends its own flags (``[*ESTIMATE_SERVE_8B, "--json"]``). The models,
devices and sizes are small on purpose: each line runs in well under a second.
"""

#: Training Llama 3.1 8B on H100s, 64 x 4096 tokens per step (plan train adds --gpus).
PLAN_TRAIN_8B_ANY_GPUS = (
    "plan train --model llama-3.1-8b --hardware h100-sxm --global-batch 64 --seq-len 4096".split()
)
#: A small training plan: the same on one H100 node.
PLAN_TRAIN_8B = [*PLAN_TRAIN_8B_ANY_GPUS, "--gpus", "8"]
#: A larger training plan: Llama 3.1 70B on 8 H100 nodes, 512 x 8192 tokens per step.
PLAN_TRAIN_70B = (
    "plan train --model llama-3.1-70b --hardware h100-sxm --gpus 64 --global-batch 512 --seq-len 8192".split()
)
#: One training configuration of Llama 3.1 8B on H100 (every degree 1 unless a test adds one);
#: it ends with --seq-len so that a test can drop a required option with ``[:-2]``.
ESTIMATE_TRAIN_8B = (
    "estimate train --model llama-3.1-8b --hardware h100-sxm --global-batch 64 --micro-batch 1 --seq-len 4096"
).split()
#: One serving instance of Llama 3.1 8B on one H100 at a static batch of 8; it ends with the
#: request lengths so that a test can replace them with ``[:-4]``.
ESTIMATE_SERVE_8B = (
    "estimate serve --model llama-3.1-8b --hardware h100-sxm --batch 8 --isl 1024 --osl 128".split()
)
#: Serving plans for Llama 3.1 8B on H100: one node with 1000/200-token requests, and two GPUs
#: with short requests (the fastest plan serve there is).
PLAN_SERVE_8B = "plan serve --model llama-3.1-8b --hardware h100-sxm --gpus 8 --isl 1000 --osl 200".split()
PLAN_SERVE_8B_2GPU = "plan serve --model llama-3.1-8b --hardware h100-sxm --gpus 2 --isl 512 --osl 64".split()
