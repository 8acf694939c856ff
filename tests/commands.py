"""Command lines several test modules run (one copy of each)."""

#: A small training plan: Llama 3.1 8B on one H100 node, 64 x 4096 tokens per step.
PLAN_TRAIN_8B = (
    "plan train --model llama-3.1-8b --hardware h100-sxm --gpus 8 --global-batch 64 --seq-len 4096".split()
)
