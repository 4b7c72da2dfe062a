"""reports/index.html in a real browser: headless Chromium (Debian's package, installed by
`make test`) driven by Playwright, with the network off. The page must load with no console
error and no failed request, decode every image, and the explorer must redraw on a click.
A screenshot of the explorer is kept in test-artifacts/ (git-ignored) to look at."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from browser import ARTIFACTS, check_page
from report_fixtures import build_report_run, report_args


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    root = build_report_run(tmp_path_factory.mktemp("browser_run"))
    res = subprocess.run([sys.executable, "-m", "stages.report", *report_args(root, root / "reports")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return root / "reports" / "index.html"


def test_page_loads_offline_and_the_explorer_reacts(page_path):
    seen = check_page(page_path, ARTIFACTS / "report_explorer.png")
    assert any(src.startswith("assets/") for src, _ in seen["images"])
    assert (ARTIFACTS / "report_explorer.png").stat().st_size > 10_000


def test_a_broken_image_is_caught(page_path, tmp_path):
    """The check is not blind: the same page with one picture truncated fails it."""
    copy = tmp_path / "reports"
    shutil.copytree(page_path.parent, copy)
    victim = sorted((copy / "assets").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:40])
    with pytest.raises(AssertionError, match="did not decode"):
        check_page(copy / "index.html")


def test_a_request_to_another_host_is_caught(page_path, tmp_path):
    """... and so is a page that asks the network for something (the context is offline)."""
    copy = tmp_path / "reports"
    shutil.copytree(page_path.parent, copy)
    page = (copy / "index.html").read_text()
    (copy / "index.html").write_text(page.replace("</main>", '<img src="https://example.com/x.png"></main>'))
    with pytest.raises(AssertionError):
        check_page(copy / "index.html")
