"""Helpers shared by the launch emitters: shell quoting, scripts, prediction headers, file output.

Emitters turn a chosen configuration (a plain dict) into launch files; they never recompute costs,
they only print what the planner predicted. Placeholders a user must fill in (node rank, master
address, data and tokenizer paths) are written as shell variables ``${NAME}`` and left unquoted so
the shell expands them.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping

from roofplan.errors import InputError

_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./\-]+$")
# a ``${NAME}`` placeholder (optionally ``${NAME:-default}`` with a default of safe characters only),
# alone or inside a word of safe characters: left unquoted so the shell expands it, nothing else
_VAR = re.compile(
    r"^[A-Za-z0-9_./:=@%+,-]*\$\{[A-Za-z_][A-Za-z0-9_]*(:-[A-Za-z0-9_./:=@%+,-]*)?\}"
    r"[A-Za-z0-9_./:=@%+,-]*$"
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


def check_text(field: str, value: object) -> str:
    """``value`` as text that every emitted format can hold: a NUL byte cannot be an argument of a
    program (C strings end there), so it is rejected (exit 2) rather than silently cut."""
    s = str(value)
    if "\x00" in s:
        raise InputError(field, s.replace("\x00", "\\0"), "text without NUL bytes")
    return s


def quote_for(fmt: str, value: object) -> str:
    """``value`` written safely for one emitted format: the one helper every emitter uses for text
    that comes from its inputs (model names and ids, paths) so that none of it can run or change
    the file's structure.

    * ``sh``: one shell word (``shlex.quote``); ``${VAR}`` placeholders stay expandable, inside
      double quotes so that their value stays one word.
    * ``comment``: one line of a ``#`` comment: control characters (newline, CR, ...) are shown as
      escapes instead of ending the comment.
    * ``json`` / ``toml``: a double-quoted string with JSON escapes (valid TOML basic strings).
    * ``python``: a Python string literal (``repr``).
    * ``yaml``: a YAML scalar from ``yaml.safe_dump``.
    """
    s = check_text("launch text", value)
    if fmt == "sh":
        if _SAFE.match(s):
            return s
        # a placeholder is double-quoted: expanded, but never split into words or globbed; in an
        # environment assignment (NAME=value) only the value, so it stays an assignment
        if _VAR.match(s):
            name, eq, value = s.partition("=")
            return f'{name}="{value}"' if eq and _NAME.match(name) else f'"{s}"'
        return shlex.quote(s)
    if fmt == "comment":
        return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), s)
    if fmt in ("json", "toml"):
        return json.dumps(s)
    if fmt == "python":
        return repr(s)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(s, default_flow_style=True, width=1 << 30).removesuffix("\n...\n").strip()
    raise ValueError(f"unknown format {fmt}")


def quote_arg(arg: object) -> str:
    """Shell-quote one argument, leaving ``${VAR}`` placeholders expandable."""
    return quote_for("sh", arg)


def comment_lines(lines: Iterable[str], prefix: str = "# ") -> list[str]:
    """Comment lines with every line made safe (:func:`quote_for` ``comment``)."""
    return [f"{prefix}{quote_for('comment', h)}".rstrip() if h else prefix.rstrip() for h in lines]


#: Shell placeholders a user sets for a training job, with what each holds.
TRAIN_PLACEHOLDERS = {
    "DATA_PATH": ("/path/to/dataset_text_document", "tokenized training data (the framework's own format)"),
    "TOKENIZER_MODEL": ("/path/to/tokenizer", "tokenizer: a Hugging Face id or local directory"),
    "CHECKPOINT_DIR": ("./checkpoints", "where checkpoints are written and resumed from"),
}


def megatron_full_recompute_args(layers: int) -> list[str]:
    """Megatron's flags for full activation recompute (``megatron/training/arguments.py``, shared
    by the Megatron-DeepSpeed fork): ``block`` recomputes the first ``layers`` layers of each
    stage (a partial recompute), 0 means every layer (``uniform``, one layer per checkpoint)."""
    if layers:
        return [
            "--recompute-granularity",
            "full",
            "--recompute-method",
            "block",
            "--recompute-num-layers",
            str(layers),
        ]
    return ["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "1"]


#: Flags Megatron-LM and its DeepSpeed fork spell alike, around the placeholders above: the data
#: (a 99/1/0 train/valid/test split), the learning-rate schedule (cosine from 1.5e-4 to 1.5e-5,
#: weight decay 0.1, clipping at 1.0: starting values in the style of Megatron-LM's example
#: scripts, not chosen by the plan) and logging and checkpoints every 10 and 500 iterations.
def megatron_width_args(model) -> list[str]:
    """The decoder's depth and widths, spelled alike by Megatron-LM and Megatron-DeepSpeed
    (``--num-layers --hidden-size --ffn-hidden-size --num-attention-heads``)."""
    return [
        "--num-layers",
        str(model.layers),
        "--hidden-size",
        str(model.hidden),
        "--ffn-hidden-size",
        str(model.ffn),
        "--num-attention-heads",
        str(model.heads),
    ]


def megatron_length_args(model, seq_len: int) -> list[str]:
    """Sequence length, position-table size (at least a learned table's) and vocabulary, spelled
    alike by Megatron-LM and Megatron-DeepSpeed."""
    return [
        "--seq-length",
        str(seq_len),
        "--max-position-embeddings",
        str(max(seq_len, model.learned_positions or seq_len)),
        "--vocab-size",
        str(model.vocab),
    ]


MEGATRON_DATA_ARGS = ["--data-path", "${DATA_PATH}", "--split", "99,1,0"]
MEGATRON_LR_ARGS = [
    "--lr",
    "1.5e-4",
    "--min-lr",
    "1.5e-5",
    "--lr-decay-style",
    "cosine",
    "--weight-decay",
    "0.1",
    "--clip-grad",
    "1.0",
]
MEGATRON_CHECKPOINT_ARGS = [
    "--log-interval",
    "10",
    "--save",
    "${CHECKPOINT_DIR}",
    "--load",
    "${CHECKPOINT_DIR}",
    "--save-interval",
    "500",
]


def placeholder_lines(placeholders: Mapping[str, tuple[str, str]]) -> list[str]:
    """Shell lines that give each placeholder its default unless the environment sets it."""
    out = ["# --- placeholders: set these in the environment (or edit the defaults here) ---"]
    for name, (default, what) in placeholders.items():
        out.append(f"# {name}: {quote_for('comment', what)}")
        out.append(
            f"{name}=${{{name}:-{quote_for('sh', default)}}}"
            if _SAFE.match(str(default))
            else f'if [ -z "${{{name}:-}}" ]; then {name}={quote_for("sh", default)}; fi'
        )
    out.append("# ---")
    return out


def command_line(argv: Iterable[object]) -> str:
    """One shell command line from an argument vector."""
    return " ".join(quote_arg(a) for a in argv)


def group_flags(argv: list[str]) -> list[list[str]]:
    """Split an argument vector into lines: each ``--flag`` with its values on one line."""
    lines: list[list[str]] = []
    for a in argv:
        if a.startswith("-") and not _is_number(a) or not lines:
            lines.append([a])
        else:
            lines[-1].append(a)
    return lines


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def shell_script(
    argv: list[str],
    *,
    header: Iterable[str] = (),
    env: Mapping[str, object] | None = None,
    split_at: int | None = None,
    placeholders: Mapping[str, tuple[str, str]] | None = None,
    prelude: Iterable[str] = (),
) -> str:
    """A bash script running ``argv``, one flag per continuation line, with ``header`` comments and
    the ``placeholders`` a user fills in, all at the top.

    ``split_at`` is the index of the first argument after the launcher (the training script), so
    the launcher's own options stay together on the first lines.
    """
    out = ["#!/usr/bin/env bash", *comment_lines(header), "set -euo pipefail"]
    if placeholders:
        out += placeholder_lines(placeholders)
    for k, v in (env or {}).items():
        out.append(f"export {k}={quote_arg(v)}")
    out += list(prelude)  # fixed lines of the emitter (no input text)
    head, tail = (argv, []) if split_at is None else (argv[:split_at], argv[split_at:])
    lines = [" ".join(quote_arg(a) for a in grp) for grp in ([head] if head else [])]
    lines += [" ".join(quote_arg(a) for a in grp) for grp in group_flags(tail)]
    out.append(" \\\n  ".join(lines))
    return "\n".join(out) + "\n"


def nodes(gpus: int, gpus_per_node: int) -> tuple[int, int]:
    """(nnodes, nproc_per_node) for a job of ``gpus`` devices on nodes of ``gpus_per_node``."""
    per = min(gpus, gpus_per_node)
    if gpus % per:
        raise InputError("gpus", gpus, f"a multiple of the node size {gpus_per_node} (or at most one node)")
    return gpus // per, per


def torchrun_argv(gpus: int, gpus_per_node: int, port: int = 29500) -> list[str]:
    """The ``torchrun`` launcher part (PyTorch ``torch.distributed.run``, static rendezvous)."""
    nn, per = nodes(gpus, gpus_per_node)
    argv = ["torchrun", "--nproc_per_node", str(per), "--nnodes", str(nn)]
    if nn > 1:
        argv += ["--node_rank", "${NODE_RANK}", "--master_addr", "${MASTER_ADDR}", "--master_port", str(port)]
    else:
        argv += ["--standalone"]
    return argv


def prediction_header(config: Mapping, estimate: Mapping, *, tool: str = "roofplan") -> list[str]:
    """Comment lines stating the configuration and what the planner predicted for it."""
    deg = " ".join(f"{k}={config[k]}" for k in ("tp", "pp", "dp", "cp", "ep", "vpp") if k in config)
    lines = [
        (
            f"Generated by {tool} plan train for {config.get('model', '?')} on "
            f"{config.get('gpus', '?')} x {config.get('hardware', '?')}."
        ),
        (
            f"Parallelism: {deg}; micro-batch {config.get('micro_batch')}, global batch "
            f"{config.get('global_batch')}, sequence {config.get('seq_len')}."
        ),
    ]
    if estimate:
        tps = estimate.get("tokens_per_s")
        step = estimate.get("step_time_s")
        mfu = estimate.get("mfu")
        tfl = estimate.get("model_tflops_per_gpu")
        parts = []
        if tps is not None:
            parts.append(f"{tps:,.0f} tokens/s")
        if step is not None:
            parts.append(f"step {step:.3f} s")
        if tfl is not None:
            parts.append(f"{tfl:.1f} model TFLOP/s per GPU")
        if mfu is not None:
            parts.append(f"MFU {100 * mfu:.1f}%")
        lines.append("Predicted throughput: " + ", ".join(parts) + " (analytical model, unmeasured).")
    return lines


def dumps_json(doc: Mapping) -> str:
    return json.dumps(doc, indent=2) + "\n"


def unexpressed_shape(model, framework: str) -> str | None:
    """A model feature the training launch files here do not write (sliding-window / chunked
    attention, linear-attention or state-space mixers, DeepSeek sparse attention, a gated attention
    output): emitting the file anyway would build a different model, so the launcher refuses."""
    feats = [
        name
        for name, on in (
            ("sliding-window or chunked attention", getattr(model, "window", None)),
            ("linear-attention / state-space mixers", getattr(model, "linear", None)),
            ("DeepSeek sparse attention", getattr(model, "dsa", None)),
            ("a gated attention output", getattr(model, "attn_output_gate", False)),
        )
        if on
    ]
    if feats:
        return f"the {framework} files here do not express {' and '.join(feats)} of {model.name}"
    return None


README = "README.md"


def readme_section(title: str, intro: Iterable[str], steps: Iterable[str]) -> str:
    """One framework's section of an output directory's README: what it is, then numbered steps."""
    out = [f"## {quote_for('comment', title)}", ""]
    out += [quote_for("comment", line) for line in intro]
    out.append("")
    out += [f"{i}. {quote_for('comment', s)}" for i, s in enumerate(steps, 1)]
    return "\n".join(out) + "\n"


def train_readme(
    framework: str, version: str, config: Mapping, estimate: Mapping, steps: Iterable[str]
) -> str:
    """README section of a training launch: the plan it came from, its prediction and the order of
    commands."""
    return readme_section(f"{framework} ({version})", prediction_header(config, estimate), steps)


def merge_files(parts: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The files of several emitters in one directory: their README sections are joined under one
    heading, every other name must be unique."""
    files: dict[str, str] = {}
    sections: list[str] = []
    for part in parts:
        for name, text in part.items():
            if name == README:
                sections.append(text)
            else:
                files[name] = text
    if sections:
        files[README] = "# Launch files written by roofplan\n\n" + "\n".join(sections)
    return files
