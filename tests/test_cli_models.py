"""`roofplan models list | show` through the typer app (docs/SPEC.md §3.5, §4)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "hf"


def test_show_deepseek_json(cli_json):
    doc = cli_json("models", "show", "deepseek-v3")
    assert doc["schema"] == "roofplan.models.show/v1"
    assert doc["attention"] == "mla"
    # DeepSeek-V3 report: 671B total, 37B activated per token (rounded to whole billions).
    assert abs(doc["params_total"] - 671e9) <= 0.01 * 671e9
    # "37B activated" lies between the active count without the input embedding (a lookup) and with it.
    lookup = 129280 * 7168
    assert 0.99 * (doc["params_active"] - lookup) <= 37e9 <= 1.01 * doc["params_active"]
    # Latent cache: (kv_lora_rank 512 + RoPE key 64) x 61 layers.
    assert doc["kv_bytes_per_token"] == {"bf16": (512 + 64) * 61 * 2, "fp8": (512 + 64) * 61}
    assert doc["model"]["mla"]["kv_lora_rank"] == 512 and doc["model"]["moe"]["num_experts"] == 256
    # Forward FLOPs grow with context (attention term) and training is 3x forward.
    flops = doc["flops_per_token"]
    assert [r["context"] for r in flops] == sorted(r["context"] for r in flops)
    assert all(a["forward"] < b["forward"] for a, b in itertools.pairwise(flops))
    assert all(r["train"] == 3 * r["forward"] for r in flops)


def test_show_gqa_from_hf_config_json(cli_json):
    doc = cli_json("models", "show", str(FIXTURES / "Llama-3.1-70B" / "config.json"))
    assert doc["attention"] == "gqa"
    assert doc["kv_bytes_per_token"]["bf16"] == 2 * 80 * 8 * 128 * 2


def test_show_human_output(cli):
    result = cli("models", "show", "mixtral-8x7b")
    assert result.exit_code == 0, result.stderr
    assert "params total" in result.stdout and "KV bytes/token fp8" in result.stdout


def test_list_json_and_table(cli, cli_json):
    doc = cli_json("models", "list")
    ids = [m["id"] for m in doc["models"]]
    assert "llama-3.1-405b" in ids and "qwen3-235b-a22b" in ids and len(ids) == 31
    row = next(m for m in doc["models"] if m["id"] == "llama-3-70b")
    assert row["kv_bytes_per_token_bf16"] == 2 * 80 * 8 * 128 * 2
    table = cli("models", "list")
    assert table.exit_code == 0 and "bloom-176b" in table.stdout


def test_config_missing_hidden_size_exits_2_with_one_line(tmp_path, cli):
    doc = json.loads((FIXTURES / "Llama-3.1-70B" / "config.json").read_text())
    del doc["hidden_size"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    result = cli("models", "show", str(path), "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "hidden_size" in lines[0] and "Traceback" not in result.stderr


def test_unknown_id_exits_2(cli):
    result = cli("models", "show", "llama-9-1b")
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "llama-9-1b" in line and "llama-3.1-70b" in line
