"""`--format html`: the reports of wdiff, show and trend open in a real headless Chromium (Debian's
package, driven by Playwright; `make test` installs both) with no console error, no network
request, and charts that render: every plotly figure has drawn its SVG, and a screenshot of each
kind of chart has colour in it.

Chromium runs with a fresh profile and its background networking, component updates and sync
off, so that any request the browser sees comes from the page."""
from __future__ import annotations

import base64
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import weightkit
from weightkit.converters.store import Store

from conftest import run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytest.importorskip("plotly", reason="the report extra (pip install 'weightkit[report]')")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is in the test extra; `make test` installs it")
if not os.path.exists(CHROMIUM):
    pytest.skip("chromium is not installed (`make test` installs Debian's package with apt-get; "
                "here it could not)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()


_COLOURED = """async (b64) => {
  const img = new Image(); img.src = 'data:image/png;base64,' + b64; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data; let coloured = 0;
  for (let i = 0; i < d.length; i += 4) {
    const [r, gr, b] = [d[i], d[i + 1], d[i + 2]];
    if (Math.max(r, gr, b) - Math.min(r, gr, b) > 40) coloured++;
  }
  return coloured / (d.length / 4);
}"""


def open_report(browser, path: Path) -> dict:
    """Load the report; return console errors, requests, figures drawn, and the share of
    coloured pixels in a screenshot of each chart kind (bars, heatmap, lines)."""
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.goto(path.as_uri(), wait_until="load")
    drawn_js = ("[...document.querySelectorAll('.plotly-graph-div')]"
                ".filter(d => d.querySelector('.cartesianlayer .trace, .heatmaplayer .hm image'))"
                ".length")
    try:  # every figure has drawn its traces
        page.wait_for_function(f"{drawn_js} === document.querySelectorAll('.plotly-graph-div')"
                               ".length", timeout=30_000)
    except sync_api.TimeoutError:
        pass  # the assertion below says how many did
    figures = page.locator(".plotly-graph-div").count()
    drawn = page.evaluate(drawn_js)
    kinds = {}
    for kind, selector in (("bars", ".plotly-graph-div:has(.barlayer .point)"),
                           ("heatmap", ".plotly-graph-div:has(.hm)"),
                           ("lines", ".plotly-graph-div:has(.scatterlayer .js-line)")):
        chart = page.locator(selector)
        if chart.count():
            shot = chart.first.screenshot()
            kinds[kind] = shot
    page.close()
    blank = browser.new_page()  # decode the screenshots away from the report page
    shares = {k: blank.evaluate(_COLOURED, base64.b64encode(v).decode()) for k, v in kinds.items()}
    blank.close()
    return {"errors": errors, "requests": [u for u in requests if not u.startswith("file:")],
            "figures": figures, "drawn": drawn, "colour": shares,
            "text": path.read_text(encoding="utf-8")}


def assert_clean(report: dict, kinds: set[str]) -> None:
    assert report["errors"] == []
    assert report["requests"] == []  # not even data: or blob: fetches: everything is inline
    assert report["figures"] > 0 and report["drawn"] == report["figures"]
    assert set(report["colour"]) >= kinds
    for kind in kinds:
        assert report["colour"][kind] > 0.005, (kind, report["colour"])
    assert "<script src" not in report["text"] and "<link" not in report["text"]


def test_wdiff_report(browser, tmp_path):
    out = tmp_path / "diff.html"
    done = run_cli("diff", FIXTURES / "conv--tfkeras-before-full.h5",
                   FIXTURES / "conv--tfkeras-after-full.h5", "--format", "html", "-o", out)
    assert done.returncode == 1 and done.stdout == "", done.stderr
    report = open_report(browser, out)
    assert_clean(report, {"bars", "heatmap"})
    assert "Histograms, A and B overlaid" in report["text"] and "heatmaps" in report["text"]


def test_show_report_escapes_names(browser, tmp_path):
    path = tmp_path / "evil.safetensors"
    rng = np.random.default_rng(0)
    weightkit.save(Store.from_arrays({"<script>alert(1)</script>/k": rng.standard_normal((8, 4)),
                                      "ok/bias": rng.standard_normal(4)}), path)
    out = tmp_path / "show.html"
    done = run_cli("show", path, "--format", "html", "-o", out)
    assert done.returncode == 0, done.stderr
    report = open_report(browser, out)
    assert_clean(report, {"bars"})
    assert "<script>alert(1)</script>" not in report["text"]


def test_trend_report(browser, tmp_path):
    out = tmp_path / "trend.html"
    done = run_cli("trend", FIXTURES / "run--tfkeras-ckptdir", "--format", "html", "-o", out,
                   "--fail-if", "nan>0")
    assert done.returncode == 1 and "gate nan>0 tripped" in done.stderr
    report = open_report(browser, out)
    assert_clean(report, {"lines", "bars"})
    assert "NaN@4" in report["text"] and "frozen" in report["text"]
