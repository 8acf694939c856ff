"""Every project document the code and catalogs cite ships in the repository, and every cited
section of it exists (a citation that points nowhere cannot be checked by a reader)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_CITE = re.compile(r"docs/((?:reference/)?[\w.-]+\.md)(?:`*,?\s*§?\s*(\d+(?:\.\d+)?[a-z]?))?")


def _heading_numbers(doc: Path) -> set[str]:
    """Section numbers of the markdown headings (``## 3.`` -> 3, ``### 16c.`` -> 16c, ``### 3.1`` -> 3.1)."""
    out = set()
    for line in doc.read_text(encoding="utf-8").splitlines():
        m = re.match(r"#+\s+(\d+(?:\.\d+)?[a-z]?)\.?\s", line)
        if m:
            out.add(m.group(1))
    return out


def _citations():
    for path in sorted((ROOT / "roofplan").rglob("*")):
        if path.suffix in (".py", ".yaml"):
            for m in _CITE.finditer(path.read_text(encoding="utf-8")):
                yield path.relative_to(ROOT), m.group(1), m.group(2)


def test_cited_documents_exist_and_sections_resolve():
    cites = list(_citations())
    assert len(cites) > 80  # docs/SPEC.md, docs/reference/hardware.md and launch-configs.md are cited widely
    headings: dict[str, set[str]] = {}
    missing = []
    for src, doc, section in cites:
        target = ROOT / "docs" / doc
        if not target.is_file():
            missing.append(f"{src}: docs/{doc}")
            continue
        nums = headings.setdefault(doc, _heading_numbers(target))
        # "§10.1" may cite a numbered paragraph inside section 10: the section itself must exist.
        if section and section not in nums and section.split(".")[0] not in nums:
            missing.append(f"{src}: docs/{doc} §{section}")
    assert not missing, missing


def test_no_citation_of_a_document_outside_the_repository():
    """``hardware.md §4`` or ``SPEC §3`` without the docs/ path points at a file a reader cannot find."""
    bare = re.compile(
        r"(?<![\w/.-])(?:reference/)?(?:hardware|launch-configs)\.md|(?<![\w/.])SPEC(?:\.md)?\s*§|shared/reference/"
    )
    found = []
    for path in sorted((ROOT / "roofplan").rglob("*")):
        if path.suffix in (".py", ".yaml"):
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in bare.finditer(text)]
    assert not found, found
