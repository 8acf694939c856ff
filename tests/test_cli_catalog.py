"""`roofplan catalog list | show | validate` through the typer app (docs/SPEC.md §3.5, §4)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from roofplan.hardware.catalog import BUILTIN_DIR
from tests.spec_keys import SPEC_HARDWARE_IDS


def _user_file(tmp_path: Path, mutate=None, name: str = "my-gpu.yaml") -> Path:
    doc = yaml.safe_load((BUILTIN_DIR / "h100-sxm.yaml").read_text())
    doc["id"] = Path(name).stem
    doc["name"] = "My GPU"
    if mutate:
        mutate(doc)
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _one_error_line(result) -> str:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_list_json_contains_every_id(cli_json):
    doc = cli_json("catalog", "list")
    assert doc["schema"] == "roofplan.catalog.list/v1"
    rows = {r["id"]: r for r in doc["hardware"]}
    assert set(SPEC_HARDWARE_IDS) <= set(rows)
    # docs/reference/hardware.md §4: 989.4 TFLOPS BF16, 3.35 TB/s, 450 GB/s NVLink, 400 Gb/s NIC.
    h = rows["h100-sxm"]
    assert h["bf16_tflops"] == 989.4 and h["hbm_tbps"] == 3.35
    assert h["intra_gb_per_s"] == 450 and h["nic_gbit_per_s"] == 400 and h["devices_per_node"] == 8


def test_list_table(cli):
    result = cli("catalog", "list")
    assert result.exit_code == 0, result.stderr
    for hw_id in ("h100-sxm", "sn40l", "mi300x"):
        assert hw_id in result.stdout


def test_show_sn40l_has_three_tiers(cli):
    result = cli("catalog", "show", "sn40l")
    assert result.exit_code == 0, result.stderr
    for tier in ("sram", "hbm", "ddr"):
        assert f"{tier}.capacity" in result.stdout and f"{tier}.bandwidth" in result.stdout
    result = cli("catalog", "show", "sn40l", "--json")
    doc = json.loads(result.stdout)
    assert [t["name"] for t in doc["hardware"]["tiers"]] == ["sram", "hbm", "ddr"]
    assert all(f["source"] for f in doc["fields"] if f["unit"])
    assert doc["hardware"]["dataflow"] is True


def test_show_with_calibration(tmp_path, cli):
    overlay = tmp_path / "cal.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {"schema": "roofplan.calibration/v1", "hardware": "h100-sxm", "efficiency": {"gemm_max": 0.71}}
        )
    )
    result = cli("catalog", "show", "h100-sxm", "--json", "--calibration", str(overlay))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["hardware"]["efficiency"]["gemm_max"] == 0.71
    field = next(f for f in doc["fields"] if f["path"] == "efficiency.gemm_max")
    assert field["value"] == 0.71 and "cal.yaml" in field["source"]
    # An overlay for another device is a usage error.
    result = cli("catalog", "show", "a100-sxm-80gb", "--calibration", str(overlay))
    assert result.exit_code == 2
    _one_error_line(result)


def test_unknown_id_exit_2(cli):
    result = cli("catalog", "show", "h1000")
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "h1000" in line and "h100-sxm" in line


def test_validate_ok_and_json(tmp_path, cli):
    p = _user_file(tmp_path)
    result = cli("catalog", "validate", str(p))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ok")
    result = cli("catalog", "validate", str(BUILTIN_DIR / "mi250x.yaml"), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["valid"] is True


def test_validate_malformed_yaml_exit_2(tmp_path, cli):
    p = tmp_path / "bad.yaml"
    p.write_text("id: bad\nmemory: {hbm: [\n")
    result = cli("catalog", "validate", str(p))
    assert result.exit_code == 2
    assert "bad.yaml" in _one_error_line(result)


def test_validate_negative_bandwidth_names_the_field(tmp_path, cli):
    p = _user_file(tmp_path, lambda d: d["node"]["intra"]["bandwidth"].update(value="-450 GB/s"))
    result = cli("catalog", "validate", str(p))
    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "node.intra.bandwidth" in line and "-450 GB/s" in line


def test_catalog_dir_option(tmp_path, cli):
    _user_file(tmp_path)
    result = cli("catalog", "list", "--json", "--catalog-dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    ids = [r["id"] for r in json.loads(result.stdout)["hardware"]]
    assert "my-gpu" in ids and "h100-sxm" in ids
    result = cli("catalog", "show", "my-gpu", "--catalog-dir", str(tmp_path), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "My GPU"
    result = cli("catalog", "show", "my-gpu")
    assert result.exit_code == 2


def test_env_catalog_path(tmp_path, cli):
    _user_file(tmp_path)
    result = cli(*["catalog", "list", "--json"], env={"ROOFPLAN_CATALOG_PATH": str(tmp_path)})
    assert result.exit_code == 0, result.stderr
    assert "my-gpu" in [r["id"] for r in json.loads(result.stdout)["hardware"]]
