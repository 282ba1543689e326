"""The threshold explorer (``steproute eval --html``) in headless Chromium: the slider is moved (by the
page's address ``#t=...`` and by ``input`` events, as a hand on the slider fires them) and the
readouts are read back from the rendered DOM, against the figures Python computes at that threshold."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from steproute.cli import main
from steproute.evaluation import evaluate, read_rows, write_rows
from steproute.evaluation._train import train_classifier
from steproute.policies._artefact import save_artefact
from tests.unit.test_learned_policies import MODELS, synthetic_rows


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return path


def _dom(url: str, profile: Path) -> tuple[str, str]:
    """The DOM after the page's scripts ran, and Chromium's log (console messages included)."""
    result = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--window-size=1200,900", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def _readouts(dom: str) -> dict[str, tuple[float, str]]:
    """Every readout's value (``data-value``) and text, by id."""
    found = re.findall(r'<td class="v" id="([\w-]+)" data-value="([^"]*)">([^<]*)</td>', dom)
    out = {i: (float(v), html.unescape(t)) for i, v, t in found}
    m = re.search(r'<b id="threshold" data-value="([^"]*)">([^<]*)</b>', dom)
    assert m, dom[-2000:]
    out["threshold"] = (float(m.group(1)), m.group(2))
    return out


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    d = tmp_path_factory.mktemp("explorer")
    write_rows(synthetic_rows(120, seed=2), d / "test.jsonl")
    save_artefact(train_classifier(synthetic_rows(300, seed=1), MODELS, folds=0), d / "a.steproute")
    page = d / "explorer.html"
    assert main(["eval", "--data", str(d / "test.jsonl"), "--policy", str(d / "a.steproute"), "--html", str(page)]) == 0
    rows, _ = read_rows(d / "test.jsonl")
    return d, page, rows


def test_the_address_moves_the_slider_and_the_readouts_are_the_figures_at_that_threshold(explorer, tmp_path):
    d, page, rows = explorer
    data = json.loads(re.search(r'id="sweep">(.*?)</script>', page.read_text(), re.S).group(1))
    points = data["points"]
    assert len(points) > 10
    seen = set()
    for k in (len(points) // 5, len(points) // 2, 4 * len(points) // 5):
        t = (points[k]["threshold"] + points[k + 1]["threshold"]) / 2  # between two swept thresholds
        dom, log = _dom(f"{page.as_uri()}#t={t!r}", tmp_path / f"p{k}")
        assert [line for line in log.splitlines() if "CONSOLE" in line] == []
        assert re.search(rf'<input type="range" id="slider"[^>]*data-index="{k}"', dom), dom[:3000]
        got = _readouts(dom)
        # what Python computes for the policy at threshold t, independently of the page
        s = evaluate(rows, d / "a.steproute", threshold=t).summary
        assert got["threshold"][0] == points[k]["threshold"]
        assert got["quality"] == (s.quality, f"{s.quality:.4f}")
        assert got[f"share-{MODELS[1]}"] == (s.strong_share, f"{s.strong_share:.1%}")
        assert got[f"share-{MODELS[0]}"][0] == pytest.approx(1 - s.strong_share)
        assert got["quality-ratio"][0] == pytest.approx(s.quality / s.strong_quality)
        assert got["quality-ratio"][1] == f"{s.quality / s.strong_quality:.1%}"
        assert got["cost-per-call"][0] == pytest.approx(s.cost_usd / s.rows)
        assert got["saving"][0] == pytest.approx(1 - s.cost_usd / s.strong_cost_usd)
        assert got["saving"][1] == f"{1 - s.cost_usd / s.strong_cost_usd:.1%}"
        seen.add(got["quality"][0])
    assert len(seen) > 1  # the readouts moved with the slider


_DRAG = """<script>
const slider = document.getElementById('slider'), out = [];
for (const k of [0, %(mid)d, %(last)d]) {
  slider.value = String(k);
  slider.dispatchEvent(new Event('input', {bubbles: true}));
  const r = {index: k, current: [document.getElementById('current').getAttribute('cx'),
                                 document.getElementById('current').getAttribute('cy')]};
  document.querySelectorAll('[data-value]').forEach(e => { r[e.id] = Number(e.dataset.value); });
  out.push(r);
}
const pre = document.createElement('pre'); pre.id = 'drag'; pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def test_dragging_the_slider_updates_every_readout_and_the_point_on_the_curve(explorer, tmp_path):
    _, page, _ = explorer
    data = json.loads(re.search(r'id="sweep">(.*?)</script>', page.read_text(), re.S).group(1))
    points, rows = data["points"], data["rows"]
    probe = tmp_path / "drag.html"
    mid, last = len(points) // 2, len(points) - 1
    probe.write_text(page.read_text().replace("</body>", _DRAG % {"mid": mid, "last": last} + "</body>"))
    dom, log = _dom(probe.as_uri(), tmp_path / "profile")
    assert [line for line in log.splitlines() if "CONSOLE" in line] == []
    found = re.search(r'<pre id="drag">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    moved = json.loads(html.unescape(found.group(1)))
    for r in moved:
        p = points[r["index"]]
        assert r["threshold"] == p["threshold"] and r["quality"] == p["quality"]
        assert [r[f"share-{t}"] for t in data["tiers"]] == p["tier_shares"]
        assert r["cost-per-call"] == pytest.approx(p["cost_usd"] / rows)
        assert r["saving"] == pytest.approx(1 - p["cost_usd"] / data["strong_cost_usd"])
    # the lowest threshold sends every call to the strongest tier; the highest keeps them cheapest
    assert moved[0][f"share-{MODELS[1]}"] == 1.0 and moved[-1][f"share-{MODELS[0]}"] == 1.0
    assert len({tuple(r["current"]) for r in moved}) == 3  # the point moved along the curve
