"""Load a report page in headless Chromium (Debian's package) through Playwright, offline, and
exercise its maze explorer: shared by the report's browser test and the end-to-end test."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# Flags without which this machine's closed network refuses Chromium's own background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def chromium_path() -> str:
    path = os.environ.get("MAZESEARCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no Chromium: `make test` installs Debian's chromium package (or set MAZESEARCH_CHROMIUM)")
    return path


def explorer_doc(page_path: Path) -> dict:
    """The explorer's embedded JSON (docs/report.md) read back from the page."""
    return json.loads(re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>',
                                page_path.read_text(), re.S)[1])


def check_page(page_path: Path, screenshot: Path | None = None) -> dict:
    """Open ``page_path`` offline, exercise the explorer; returns what was observed (asserts inside)."""
    from playwright.sync_api import sync_playwright

    doc = explorer_doc(page_path)
    # the first maze whose model output has two steps or more (a model may stop at once)
    si, mi = next((s, m) for s, suite in enumerate(doc["suites"]) for m, maze in enumerate(suite["mazes"])
                  if len(maze["steps"]) > 1)
    chosen = doc["suites"][si]["mazes"][mi]["steps"][1]["cell"]  # -1: step 1 chose no cell
    n_mazes, L, H = len(doc["suites"][si]["mazes"]), doc["n_layers"], doc["n_heads"]
    seen = {"console": [], "failed": [], "requests": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000})
            page = context.new_page()
            page.on("console", lambda m: m.type in ("error", "warning") and seen["console"].append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: seen["console"].append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: seen["failed"].append(r.url))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.goto(page_path.resolve().as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])")
            seen["images"] = images
            assert images and all(ok for _, ok in images), f"images that did not decode: {[s for s, ok in images if not ok]}"

            page.select_option("#ex-suite", str(si))
            page.select_option("#ex-maze", str(mi))
            before = page.get_attribute("#explorer", "data-state")
            assert before.split("/")[2] == "0", before
            attn_before = page.inner_html("#ex-attn")
            page.click("#ex-next")
            after = page.get_attribute("#explorer", "data-state")
            assert after != before and after.split("/")[2] == "1", (before, after)  # step 0 -> 1
            assert page.inner_html("#ex-attn") != attn_before  # the walked path and chosen-cell box moved
            assert page.locator("#ex-attn rect.chosen").count() == (chosen >= 0)
            # a click on a head's small map selects it for the big panel
            page.click("#ex-heads button.head >> nth=-1")
            state = page.get_attribute("#explorer", "data-state").split("/")
            assert state[3:5] == [str(L - 1), str(H - 1)], state  # the last head of the last block
            assert page.locator("#ex-heads button.head.sel").count() == 1
            page.select_option("#ex-maze", str((mi + 1) % n_mazes))
            assert page.get_attribute("#explorer", "data-state").split("/")[2] == "0"  # a new maze starts at step 0
            page.click("#ex-next")
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.locator("#explorer").screenshot(path=str(screenshot))
                page.screenshot(path=str(screenshot.with_name(screenshot.stem + "_top.png")))
        finally:
            browser.close()
    assert not seen["console"], seen["console"]
    assert not seen["failed"], seen["failed"]
    assert all(u.startswith(("file:", "data:")) for u in seen["requests"]), seen["requests"]
    return seen
