"""The golden test: a refactor leaves every prediction and breakdown term unchanged (tests/golden.py)."""

import json
from pathlib import Path

from tests.golden import GOLDEN_FILE, collect, differences

PATH = Path(__file__).parent / "data" / GOLDEN_FILE


def test_predictions_match_golden_file():
    diffs = differences(json.loads(PATH.read_text()), collect())
    assert not diffs, (
        f"{len(diffs)} pinned values moved (first: {diffs[:5]}); if the move is meant, run "
        "`python tools/golden.py --write` and say why in the commit"
    )


def test_differences_sees_a_move_beyond_1e12():
    assert differences({"a": [1.0]}, {"a": [1.0 + 1e-9]}) == ["/a[0]: 1.0 -> 1.000000001"]
    assert differences({"a": 1.0}, {"a": 1.0 + 1e-14}) == []
    assert differences({"a": 1}, {}) == ["/a: missing"]
