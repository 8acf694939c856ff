"""The ``train`` cases of the validation suite: published measurements vs predictions."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from roofplan.cli.app import app
from roofplan.validation.suite import read_cases, run_suite
from roofplan.validation.train_predict import estimate_case, paper_flops_per_iteration

TRAIN = [c for c in read_cases() if c.kind == "train"]
SC21 = [c for c in TRAIN if c.id.startswith("sc21-")]


def test_paper_flops_formula_by_hand():
    # SC21 eq. 3 for the 1.7B row: 96 B s l h^2 (1 + s/(6h) + V/(16 l h))
    B, s, l, h, V = 512, 2048, 24, 2304, 51200  # noqa: E741 - the paper's notation
    by_hand = 96 * 512 * 2048 * 24 * 2304**2 * (1 + 2048 / (6 * 2304) + 51200 / (16 * 24 * 2304))
    assert paper_flops_per_iteration(B, s, l, h, V) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(1.5e16, rel=0.1)  # order of magnitude sanity: 15 PFLOP/iteration


def test_sc21_table1_within_published_bounds():
    res = run_suite(cases=SC21)
    # 8 of SC21's 10 Table 1 rows: 3.6B and 310.1B are held out to fit a100 sustained_compute
    assert len(res.errors()) == len(SC21) == 8
    # achieved: median 1.3 %, worst 3.7 % (goal 10 % / 20 %)
    assert res.median_abs_error() <= 0.05
    assert res.worst_abs_error() <= 0.10


def test_all_train_cases_within_bounds():
    res = run_suite(cases=TRAIN)
    assert all(r.error is not None for r in res.results)
    assert res.median_abs_error() <= 0.10
    # the worst row is MT-NLG 530B on 420 DGX A100 80GB nodes (about -21 %, a known miss in the
    # README: the cause is not found); every other row is within 17 %
    assert res.worst_abs_error() <= 0.22
    assert sorted(abs(e) for e in res.errors())[-4] <= 0.17


DENSE_H100 = [c for c in TRAIN if c.str("hardware") == "h100-sxm" and c.str("model").startswith("llama")]


def test_dense_h100_rows_fp8_and_bf16_within_bounds():
    # Megatron-Bridge 25.11/26.02 FP8-CS and NeMo 24.12 BF16/FP8 Llama rows: both dtypes covered
    assert {c.str("dtype") for c in DENSE_H100} == {"bf16", "fp8"}
    res = run_suite(cases=DENSE_H100)
    assert res.median_abs_error() <= 0.10
    assert res.worst_abs_error() <= 0.20


def test_sustained_compute_was_fitted_on_runs_outside_the_suite():
    # h100-sxm's sustained_compute is a fit to the NeMo 24.09 Llama 3.1 8B runs; those runs must not
    # be validation rows (a parameter may not be judged on the data it was fitted to)
    import yaml

    import roofplan

    held = read_cases(Path(__file__).parents[1] / "tools" / "data" / "heldout_training.csv")
    suite_ids = {c.id for c in read_cases()}
    assert held and not suite_ids & {c.id for c in held}
    assert not [
        c.id
        for c in read_cases()
        if "README_8b.md" in c.source or c.str("model") == "llama-3.1-8b" and c.kind == "train"
    ]
    for hw_id in ("h100-sxm", "a100-sxm-80gb"):
        doc = yaml.safe_load((Path(roofplan.__file__).parent / "catalogs" / f"{hw_id}.yaml").read_text())
        entry = doc["efficiency"]["sustained_compute"]
        mine = [c.id for c in held if c.str("hardware") == hw_id]
        assert len(mine) >= 2 and all(i in entry["source"] for i in mine) and entry["value"] < 1.0


@pytest.mark.parametrize("case", TRAIN, ids=[c.id for c in TRAIN])
def test_every_published_run_fits_in_memory(case):
    est = estimate_case(case)
    assert est.fits, est.memory_gib()


def test_validate_cli_json_and_table():
    r = CliRunner().invoke(app, ["validate", "--kind", "train", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["schema"] == "roofplan.validate/v1"
    assert {c["kind"] for c in doc["cases"]} == {"train"}
    assert doc["summary"]["train"]["cases"] == len(TRAIN)
    r = CliRunner().invoke(app, ["validate", "--kind", "train"])
    assert r.exit_code == 0
    assert "sc21-t1-1008b" in r.stdout and "median" in r.stdout


def test_validate_cli_rejects_unknown_kind():
    r = CliRunner().invoke(app, ["validate", "--kind", "nope"])
    assert r.exit_code == 2
