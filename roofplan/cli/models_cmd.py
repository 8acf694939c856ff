"""``roofplan models list | show``: model presets, parameter counts, FLOPs and KV bytes per token."""

from __future__ import annotations

import typer
from rich import box
from rich.table import Table

from roofplan import resolve
from roofplan.cli.common import console, print_json, run
from roofplan.cli.options import Calibration, Json
from roofplan.models.loader import list_models
from roofplan.models.spec import ModelSpec

SHOW_SCHEMA = "roofplan.models.show/v1"
LIST_SCHEMA = "roofplan.models.list/v1"

#: Contexts at which ``show`` reports FLOPs per token (plus the model's own max_seq_len).
FLOP_CONTEXTS = (2048, 8192)


def _billions(n: float) -> str:
    return f"{n / 1e9:,.2f}B"


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def _summary(spec: ModelSpec) -> dict:
    """One row of ``models list``."""
    return {
        "id": spec.name,
        "layers": spec.layers,
        "hidden": spec.hidden,
        "heads": spec.heads,
        "kv_heads": spec.kv_heads,
        "attention": spec.attention_kind,
        "moe": spec.moe is not None,
        "params_total": spec.params_total,
        "params_active": spec.params_active,
        "kv_bytes_per_token_bf16": spec.kv_bytes_per_token("bf16"),
    }


def show_document(spec: ModelSpec) -> dict:
    """The ``models show --json`` document (schema roofplan.models.show/v1)."""
    contexts = sorted({*FLOP_CONTEXTS, spec.max_seq_len})
    flops = []
    for ctx in contexts:
        fwd = spec.forward_flops_per_token(ctx)
        # Training = forward + backward (2x forward) without recompute (Kaplan et al. 2020 §2.1).
        flops.append({"context": ctx, "forward": fwd, "train": 3.0 * fwd})
    return {
        "schema": SHOW_SCHEMA,
        "model": spec.to_dict(),
        "attention": spec.attention_kind,
        "kv_cache": "latent (kv_lora_rank + qk_rope_head_dim per layer)"
        if spec.mla
        else "2 x kv_heads x head_dim per layer",
        "params_total": spec.params_total,
        "params_active": spec.params_active,
        "params_embedding": spec.embedding_params() + spec.head_params(),
        "matmul_params_active": spec.matmul_params_active,
        "moe_layers": spec.moe_layers,
        "dense_layers": spec.dense_layers,
        "kv_bytes_per_token": {
            "bf16": spec.kv_bytes_per_token("bf16"),
            "fp8": spec.kv_bytes_per_token("fp8"),
        },
        "layer_mix": {
            "full_attention": spec.full_attention_layers,
            "windowed_attention": spec.window_layers,
            "linear_mixers": spec.linear_layers,
        },
        "state_bytes_per_seq_bf16": spec.state_bytes_per_seq("bf16"),
        "flops_per_token": flops,
    }


def _list(json_out: bool) -> None:
    rows = [_summary(resolve.model(m)) for m in list_models()]
    if json_out:
        print_json({"schema": LIST_SCHEMA, "models": rows})
        return
    # a light box and unit-free cells: in 80 columns the boxed table cut numbers to "176.…"
    table = Table(
        title="Model presets (params in billions; KV cache per token in bf16)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    table.add_column("id", no_wrap=True)
    for col in ("layers", "hidden", "heads/kv", "attn", "total B", "active B", "KV KiB"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            r["id"],
            str(r["layers"]),
            str(r["hidden"]),
            f"{r['heads']}/{r['kv_heads']}",
            r["attention"],
            f"{r['params_total'] / 1e9:,.2f}"
            if r["params_total"] < 1e12
            else f"{r['params_total'] / 1e9:,.0f}",
            f"{r['params_active'] / 1e9:,.2f}",
            f"{r['kv_bytes_per_token_bf16'] / 1024:,.1f}",
        )
    console.print(table)


def _show(model: str, json_out: bool) -> None:
    spec = resolve.model(model)
    doc = show_document(spec)
    if json_out:
        print_json(doc)
        return
    fields = Table(title=f"{spec.name}", show_header=False)
    fields.add_column("field")
    fields.add_column("value", overflow="fold")  # URLs fold instead of ending in "…"
    for key, value in doc["model"].items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        fields.add_row(key, "-" if value is None or value == "" else str(value))
    console.print(fields)

    derived = Table(show_header=False, title="derived")
    derived.add_column("quantity")
    derived.add_column("value", justify="right")
    derived.add_row("attention", doc["attention"] + (" (latent KV cache)" if spec.mla else ""))
    derived.add_row("params total", f"{doc['params_total']:,} ({_billions(doc['params_total'])})")
    derived.add_row("params active", f"{doc['params_active']:,} ({_billions(doc['params_active'])})")
    derived.add_row("MoE / dense layers", f"{doc['moe_layers']} / {doc['dense_layers']}")
    for dtype, nbytes in doc["kv_bytes_per_token"].items():
        derived.add_row(f"KV bytes/token {dtype}", f"{nbytes:,.0f} ({_kib(nbytes)})")
    for row in doc["flops_per_token"]:
        derived.add_row(
            f"FLOPs/token @ {row['context']} ctx",
            f"fwd {row['forward'] / 1e9:,.1f} GFLOP, train {row['train'] / 1e9:,.1f} GFLOP",
        )
    console.print(derived)


def register(group: typer.Typer) -> None:
    """Add ``list`` and ``show`` to the ``models`` sub-app."""

    @group.command("list")
    def list_cmd(json_out: Json = False, calibration: Calibration = None) -> None:
        """List the model presets with layers, heads, parameters and KV bytes per token."""

        def body() -> None:
            resolve.overlay(calibration)  # checked even where it changes nothing shown
            _list(json_out)

        return run(body)

    @group.command("show")
    def show_cmd(
        model: str = typer.Argument(
            ..., metavar="MODEL", help="Preset id, path to a HF config.json or model YAML, or gpt(...)."
        ),
        json_out: Json = False,
        calibration: Calibration = None,
    ) -> None:
        """Show every field of a model, its parameter counts, FLOPs and KV bytes per token."""

        def body() -> None:
            resolve.overlay(calibration)  # checked even where it changes nothing shown
            _show(model, json_out)

        return run(body)
