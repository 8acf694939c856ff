"""The door (roofplan/resolve.py): ids, paths, overlays and pool strings become specs once, and the
layers below take specs only."""

from __future__ import annotations

import pytest

import roofplan
from roofplan import resolve
from roofplan.costmodel.train_estimate import estimate_training as costmodel_estimate
from roofplan.errors import InputError
from roofplan.hardware import catalog
from roofplan.hardware.spec import DeviceSpec


def test_pools_keep_the_given_order_and_apply_an_overlay_to_its_device_only():
    one = resolve.pools("h100-sxm")
    assert isinstance(one, DeviceSpec) and one.id == "h100-sxm"
    overlay = {"hardware": "a100-sxm-80gb", "efficiency": {"gemm_max": 0.5}}
    mixed = resolve.pools("a100-sxm-80gb:decode,h100-sxm:prefill", overlay)
    assert list(mixed) == ["decode", "prefill"]
    assert [d.id for d in resolve.devices(mixed)] == ["a100-sxm-80gb", "h100-sxm"]
    assert mixed["decode"].efficiency.gemm_max == 0.5
    assert mixed["prefill"].efficiency.gemm_max == resolve.hardware("h100-sxm").efficiency.gemm_max
    with pytest.raises(InputError, match="hardware"):
        resolve.pools("h100-sxm:prefill")


def test_the_cost_model_takes_specs_and_the_api_resolves_them():
    kw = dict(tp=1, dp=8, global_batch=64, micro_batch=1, seq_len=2048)
    with pytest.raises(InputError, match="^model: .*ModelSpec"):
        costmodel_estimate("llama-3.1-8b", resolve.hardware("h100-sxm"), **kw)
    overlay = {"hardware": "h100-sxm", "efficiency": {"gemm_max": 0.5}}
    via_api = roofplan.estimate_training("llama-3.1-8b", "h100-sxm", calibration=overlay, **kw)
    direct = costmodel_estimate(resolve.model("llama-3.1-8b"), resolve.hardware("h100-sxm", overlay), **kw)
    assert via_api.step_time_s == direct.step_time_s
    assert (
        via_api.to_json()["inputs"]["calibration"] == "overlay"
        and direct.to_json()["inputs"]["calibration"] is None
    )
    # the overlay reached the model: a GEMM ceiling of half the catalog's makes the step slower
    assert via_api.step_time_s > roofplan.estimate_training("llama-3.1-8b", "h100-sxm", **kw).step_time_s


@pytest.fixture
def catalog_reads(monkeypatch):
    """Count the catalog entries read (each a parse or a cache look-up of one YAML)."""
    seen: list[str] = []
    real = catalog.load_entry

    def counting(id_or_path, catalog_dir=None):
        seen.append(str(id_or_path))
        return real(id_or_path, catalog_dir)

    monkeypatch.setattr(catalog, "load_entry", counting)
    return seen


def test_plan_train_reads_its_catalog_once(cli, catalog_reads):
    r = cli(
        "plan",
        "train",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm",
        "--gpus",
        "8",
        "--global-batch",
        "64",
        "--seq-len",
        "4096",
        "--top",
        "1",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    assert catalog_reads == ["h100-sxm"]


def test_plan_serve_reads_each_pool_once(cli, catalog_reads):
    r = cli(
        "plan",
        "serve",
        "--model",
        "llama-3.1-8b",
        "--hardware",
        "h100-sxm:prefill,a100-sxm-80gb:decode",
        "--gpus",
        "4",
        "--isl",
        "512",
        "--osl",
        "64",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    assert sorted(catalog_reads) == ["a100-sxm-80gb", "h100-sxm"]
