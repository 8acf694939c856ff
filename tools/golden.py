"""Regenerate (``--write``) or check the golden predictions that ``tests/test_golden.py`` pins.

    python tools/golden.py            # list what moved
    python tools/golden.py --write    # accept the current predictions

Run ``--write`` only in a commit that means to move predictions, and say which and why.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.golden import GOLDEN_FILE, collect, differences  # noqa: E402

PATH = ROOT / "tests" / "data" / GOLDEN_FILE


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the current predictions as the golden file")
    args = ap.parse_args()
    doc = collect()
    if args.write:
        PATH.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(
            f"wrote {PATH.relative_to(ROOT)}: {len(doc['suite'])} suite predictions, {len(doc['plans'])} plans"
        )
        return 0
    diffs = differences(json.loads(PATH.read_text()), doc)
    print("\n".join(diffs[:200]) or "unchanged")
    if len(diffs) > 200:
        print(f"... {len(diffs) - 200} more")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
