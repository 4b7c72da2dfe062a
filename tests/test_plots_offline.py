"""`dvc plots show` and `dvc plots diff` pages in headless Chromium (Debian's package, as in
test_report_browser.py) with the network off. The page template the committed .dvc/config names
(plots.html_template: build/plots_template.html, written by `make install` through
tools/plots_template.py) carries vega, vega-lite and vega-embed inline, so every plot DVC writes
must be drawn with no console error and no request leaving file://. DVC's own page, which loads
those scripts from a CDN, draws nothing offline: the last test shows the check sees that."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import CHROMIUM_ARGS, chromium_path

ROOT = Path(__file__).resolve().parents[1]
# Warnings DVC's own pages give too: its linear template's hover layers start with no data.
KNOWN_WARNING = re.compile(r"WARN Infinite extent for field")

# Four plots: a curve (DVC's linear template), the bars of .dvc/plots/interval_bars.json, and a
# directory of two CSVs (one plot per file), as in the project's dvc.yaml.
DVC_YAML = """\
plots:
  - train loss:
      x: step
      y:
        train/loss.tsv: loss
  - exact path per suite:
      template: interval_bars
      x: exact
      y:
        eval/summary_plot.csv: suite
  - probes/by_layer:
      x: layer_idx
      y: [trained, random_init]
"""


def _run(args: list[str], cwd: Path) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _dvc(*args: str, cwd: Path) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def committed_template() -> tuple[str, Path]:
    """.dvc/config's plots.html_template and the file it names (DVC reads it relative to .dvc/)."""
    from configobj import ConfigObj

    value = ConfigObj(str(ROOT / ".dvc" / "config")).get("plots", {}).get("html_template")
    assert value, ".dvc/config sets no plots.html_template: `dvc plots show` would load vega from a CDN"
    path = (ROOT / ".dvc" / value).resolve()
    if not path.is_file():
        pytest.fail(f"{path} is missing: `make install` writes it (tools/plots_template.py)")
    return value, path


def _write_data(repo: Path, scale: float) -> None:
    (repo / "train").mkdir(exist_ok=True)
    (repo / "train" / "loss.tsv").write_text(
        "step\tloss\n" + "".join(f"{10 * i}\t{scale * 4 / (1 + i):.4f}\n" for i in range(20)))
    (repo / "eval").mkdir(exist_ok=True)
    (repo / "eval" / "summary_plot.csv").write_text(
        "suite,series,exact,lo,hi\n" + "".join(
            f"{suite},{series},{x * scale:.3f},{x * scale - 0.05:.3f},{x * scale + 0.05:.3f}\n"
            for suite, series, x in [("test", "model", 0.8), ("test", "baseline", 0.3),
                                     ("size_5", "model", 0.4), ("size_5", "baseline", 0.2)]))
    (repo / "probes" / "by_layer").mkdir(parents=True, exist_ok=True)
    for name in ("walls", "target"):
        (repo / "probes" / "by_layer" / f"{name}.csv").write_text(
            "layer_idx,trained,random_init\n" + "".join(f"{k},{scale * (0.5 + 0.1 * k):.3f},0.4\n" for k in range(4)))


@pytest.fixture(scope="module")
def plots_repo(tmp_path_factory) -> Path:
    """A git + DVC repo with four plots, committed, then changed in the workspace (for diff). Its
    .dvc/config names the page template as the project's does, the file copied to the same place."""
    value, template = committed_template()
    repo = tmp_path_factory.mktemp("plots_repo")
    _run(["git", "init", "-q"], repo)
    _run(["git", "config", "user.email", "plots@example.com"], repo)
    _run(["git", "config", "user.name", "plots"], repo)
    _dvc("init", "-q", cwd=repo)
    _dvc("config", "core.analytics", "false", cwd=repo)
    _dvc("config", "plots.html_template", value, cwd=repo)
    (repo / ".dvc" / value).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, repo / ".dvc" / value)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    _write_data(repo, 1.0)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "plots"], repo)
    _write_data(repo, 0.9)
    return repo


def plot_ids(page: Path) -> list[str]:
    """The element id of every plot DVC wrote into ``page`` (one `vegaEmbed('#id', spec)` each)."""
    return re.findall(r"vegaEmbed\('#([^']+)'", page.read_text())


# Per plot: inked pixels of its canvas (neither transparent nor white), or marks of its SVG; 0 if
# vega-embed drew nothing there.
INK = """ids => ids.map(id => {
    const marks = document.getElementById(id).querySelector('.marks');
    if (!marks) return 0;
    if (marks.tagName !== 'CANVAS') return marks.querySelectorAll('path, line, rect, text').length;
    const copy = document.createElement('canvas');  // read a copy: no readback warning from vega's canvas
    [copy.width, copy.height] = [marks.width, marks.height];
    const ctx = copy.getContext('2d', {willReadFrequently: true});
    ctx.drawImage(marks, 0, 0);
    const d = ctx.getImageData(0, 0, copy.width, copy.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240);
    return n;
})"""


def observe(page: Path, ids: list[str], timeout_ms: int) -> dict:
    """Open ``page`` offline, wait up to ``timeout_ms`` for every plot to be drawn; what was seen."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    seen = {"console": [], "requests": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True)
            # nothing but the page's own file may load; anything else is recorded, then refused
            context.route(re.compile(r"^(?!file:)"), lambda route: route.abort())
            tab = context.new_page()
            tab.on("console", lambda m: m.type in ("error", "warning") and seen["console"].append(f"{m.type}: {m.text}"))
            tab.on("pageerror", lambda e: seen["console"].append(f"pageerror: {e}"))
            tab.on("request", lambda r: seen["requests"].append(r.url))
            tab.goto(page.resolve().as_uri(), wait_until="load")
            try:
                tab.wait_for_function(f"ids => ({INK})(ids).every(n => n > 0)", arg=ids, timeout=timeout_ms)
            except PlaywrightTimeout:
                pass
            seen["ink"] = tab.evaluate(INK, ids)
        finally:
            browser.close()
    return seen


def assert_drawn_offline(seen: dict, ids: list[str]) -> None:
    assert all(n > 0 for n in seen["ink"]), f"plots not drawn: {[i for i, n in zip(ids, seen['ink']) if n == 0]}"
    bad = [m for m in seen["console"] if not KNOWN_WARNING.search(m)]
    assert not bad, bad
    assert all(u.startswith("file:") for u in seen["requests"]), seen["requests"]


@pytest.mark.parametrize("command", [["plots", "show"], ["plots", "diff", "HEAD"]], ids=["show", "diff"])
def test_dvc_plots_draw_offline(plots_repo, command):
    out = plots_repo / f"out_{command[1]}"
    _dvc(*command, "-o", str(out), cwd=plots_repo)
    page = out / "index.html"
    html = page.read_text()
    assert "<script src" not in html, "the page loads its scripts: DVC did not use the inlined template"
    ids = plot_ids(page)
    assert len(ids) == 4, ids
    assert_drawn_offline(observe(page, ids, timeout_ms=15_000), ids)


def test_dvc_default_page_is_caught(plots_repo, tmp_path):
    """The check is not blind: DVC's own page (scripts from a CDN) asks the network, draws nothing."""
    from dvc_render.html import PAGE_HTML

    default = tmp_path / "dvc_default.html"
    default.write_text(PAGE_HTML)
    out = tmp_path / "out_default"
    _dvc("plots", "show", "-o", str(out), "--html-template", str(default), cwd=plots_repo)
    ids = plot_ids(out / "index.html")
    seen = observe(out / "index.html", ids, timeout_ms=1_000)
    assert len(ids) == 4 and seen["ink"] == [0] * 4, seen["ink"]
    assert any(u.startswith("https://cdn.jsdelivr.net/npm/vega") for u in seen["requests"]), seen["requests"]
    assert any("vegaEmbed is not defined" in m for m in seen["console"]), seen["console"]
    with pytest.raises(AssertionError, match="plots not drawn"):
        assert_drawn_offline(seen, ids)
