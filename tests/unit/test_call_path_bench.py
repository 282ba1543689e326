"""benchmarks/call_path.py runs both source trees and writes a complete table (timings themselves
are not asserted: they are the benchmark's output, not behaviour). About 20 s."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "call_path.py"
PER_CALL = [
    "litellm.completion",
    "litellm.acompletion",
    "litellm.completion, stream",
    "StepRouter.complete, fixed step",
    "StepRouter.acomplete, fixed step",
    "StepRouter.stream, fixed step",
    "cascade, first tier accepted",
    "cascade, first tier rejected, escalates",
    "fallback, first tier fails",
    "complete_batch of 50, per item",
]
THROUGHPUT = ["litellm.acompletion, 64 concurrent", "StepRouter.acomplete, 64 concurrent"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "TMPDIR": str(tmp_path / "tmp")}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=400, check=False)


def rows(text: str, header: str) -> dict[str, list[str]]:
    """The rows of the markdown table under the line starting with ``header``, by first cell."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        table[cells[0]] = cells[1:]
    return table


def number(cell: str) -> float:
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(?:x| ms| µs| calls/s)?", cell.replace(",", ""))
    assert match, cell
    return float(match.group(1))


def ordered_spread(cell: str) -> bool:
    """``median (q1–q3)`` with 0 < q1 <= median <= q3."""
    match = re.fullmatch(r"(\S+) \((\S+)–(\S+)\)", cell)
    assert match, cell
    median, q1, q3 = (number(g) for g in match.groups())
    return 0 < q1 <= median <= q3


@pytest.mark.timeout(420)  # two trees, each benchmarked in a subprocess: minutes on a busy 2-core machine
def test_a_quick_run_against_head_measures_every_variant_in_both_trees(tmp_path):
    out = tmp_path / "page.md"
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    done = run(tmp_path, "--quick", "--rounds", "3", "--against", "HEAD", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text(encoding="utf-8")
    assert text in done.stdout
    assert "python benchmarks/call_path.py --quick --rounds 3 --against HEAD" in text
    assert f"`{head}`" in text and "3 rounds" in text and "litellm " in text and "Python " in text
    per_call = rows(text, "| variant | unit |")
    assert list(per_call) == PER_CALL
    for name, cells in per_call.items():
        # unit, reference median, working-tree median, new/old, rounds' new/old: median (q1–q3), each tree ÷ LiteLLM,
        # new/old of those
        assert len(cells) == 8, (name, cells)
        assert all(number(c) > 0 for c in cells[1:4] + cells[5:]), (name, cells)
        assert ordered_spread(cells[4]), (name, cells)
    throughput = rows(text, "| variant | reference calls/s |")
    assert list(throughput) == THROUGHPUT
    for name, cells in throughput.items():
        assert len(cells) == 7 and all(number(c) > 0 for c in cells[:3] + cells[4:]), (name, cells)
        assert ordered_spread(cells[3]), (name, cells)
    # each tree in its own subprocess: the reference is imported from its own copy, removed at the end
    assert re.search(r"reference: steproute from \S+/tmp/\S+/steproute/__init__\.py", done.stderr)
    assert f"working tree: steproute from {ROOT}/steproute/__init__.py" in done.stderr
    assert list((tmp_path / "tmp").iterdir()) == []
    assert "round 3/3" in done.stderr


def test_an_unknown_revision_is_refused_before_anything_runs(tmp_path):
    done = run(tmp_path, "--quick", "--against", "no-such-revision", "--out", str(tmp_path / "page.md"))
    assert done.returncode != 0
    assert "no-such-revision" in done.stderr and "not a revision" in done.stderr
    assert not (tmp_path / "page.md").exists() and list((tmp_path / "tmp").iterdir()) == []
