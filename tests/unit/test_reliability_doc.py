"""docs/reliability.md names the test behind each guarantee: every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_the_reliability_page_names_exists():
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b(test_[a-z0-9_]+)\b", text)) - {"test_"}
    files = set(re.findall(r"\b((?:tests/)?(?:unit|integration|e2e|[ui])/test_[a-z0-9_]+\.py)", text))
    defined = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        defined |= set(re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(encoding="utf-8"), re.M))
        defined.add(path.stem)
    missing = sorted(n for n in named if n not in defined)
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
    for f in files:
        short = {"u/": "unit/", "i/": "integration/"}
        rel = f.removeprefix("tests/")
        rel = short.get(rel[:2], rel[:2]) + rel[2:] if rel[:2] in short else rel
        assert (ROOT / "tests" / rel).is_file(), f
    assert len(named) > 50  # the page does name its tests
