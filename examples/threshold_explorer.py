"""The threshold explorer of `steproute calibrate --html`: writes docs/images/threshold-explorer.png.

GSM8K rows of the shared RouteLLM data (Mixtral as the cheap tier, GPT-4 as the strong one) are
split 70/30 (seed 0); a classifier is trained on the 70%, and `steproute calibrate` picks the
step's threshold on the 30% for quality >= 95% of the strongest tier, writing the explorer page
with `--html`. Headless Chromium then takes the page's screenshot with the slider moved by the
page's address (`#t=...`) to a cheaper threshold than the calibrated one.

    python examples/threshold_explorer.py                 # writes docs/images/threshold-explorer.png
    python examples/threshold_explorer.py --out /tmp/te   # also keeps the rows, artefact and page there
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "routellm" / "routellm" / "evals" / "gsm8k"
PNG = ROOT / "docs" / "images" / "threshold-explorer.png"

CONFIG = """\
tiers:
  fast:
    models: [{model: openai/gpt-4o-mini, mock_response: ok}]
  strong:
    models: [{model: openai/gpt-4o, mock_response: ok}]
default: fast
steps:
  solve:
    policy: classifier
    artefact: solve.steproute
"""


def write_page(out: Path) -> tuple[Path, dict]:
    """Train, calibrate with ``--html``; the page and calibrate's JSON."""
    from steproute.cli import main
    from steproute.evaluation import load_routellm, split_rows, write_rows
    from steproute.evaluation._routellm import GPT4, MIXTRAL
    from steproute.evaluation._train import train_classifier
    from steproute.policies._artefact import save_artefact

    rows = load_routellm(DATA).rows
    train, test = split_rows(rows, 0.3, seed=0)
    write_rows(test, out / "test.jsonl")
    save_artefact(train_classifier(train, (MIXTRAL, GPT4), folds=0), out / "solve.steproute")
    (out / "steproute.yaml").write_text(CONFIG)
    page = out / "threshold-explorer.html"
    argv = ["calibrate", "--data", str(out / "test.jsonl"), "--config", str(out / "steproute.yaml"), "--step", "solve",
            "--quality-ratio", "0.95", "--model", f"fast={MIXTRAL}", "--model", f"strong={GPT4}", "--json",
            "--html", str(page)]
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(argv)
    if code:
        raise SystemExit(f"steproute calibrate failed ({code})")
    return page, json.loads(buffer.getvalue())


def screenshot(page: Path, png: Path, threshold: float, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (apt-get install chromium)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                    "--disable-background-networking", "--disable-component-update", "--hide-scrollbars",
                    f"--user-data-dir={profile}", "--window-size=1160,600", f"--screenshot={png}",
                    f"{page.as_uri()}#t={threshold!r}"], check=True, capture_output=True, timeout=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="keep the rows, artefact and page in this folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        page, calibrated = write_page(out)
        data = json.loads(page.read_text().split('id="sweep">', 1)[1].split("</script>", 1)[0])
        points = data["points"]
        # a cheaper point than the calibrated one: a third of the way from it to the top of the sweep
        k = data["marked"]["index"] + (len(points) - 1 - data["marked"]["index"]) // 3
        PNG.parent.mkdir(parents=True, exist_ok=True)
        screenshot(page, PNG, points[k]["threshold"], Path(tmp) / "profile")
    print(f"calibrated threshold {calibrated['threshold']:.4g} ({calibrated['target']}); "
          f"screenshot at threshold {points[k]['threshold']:.4g}: wrote {PNG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
