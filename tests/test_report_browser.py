"""reports/index.html in a real browser: headless Chromium (Debian's package, installed by
`make test`) driven by Playwright, with the network off. The page must load with no console
error and no failed request, decode every image, and the explorer must redraw on a click.
A screenshot of the explorer is kept in test-artifacts/ (git-ignored) to look at."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
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


# ---------------------------------------------------------------------------- a failure, explained


def failure_doc() -> dict:
    """An explorer document (docs/report.md's layout) for one failure, made by hand: a 2x2 maze
    placed in the top-left of a 3x3 lattice (cells 0, 1, 3, 4; 3-4 walled), origin 3, target 4;
    the model goes 3 -> 4 through the wall and stops. One layer, one head. At step 1 the head puts
    0.11 of its attention on <TARGET_END> and 0.05 on ';', the rest on cell 4; the lens gives the
    right cell (0) 0.3 after the block."""
    from mazesearch.data.maze import edge_endpoints, edge_index, n_edges
    from mazesearch.report.explorer import END, pack, right_choices, step_kinds
    from mazesearch.viz.overlay import scheme

    n, L, H = 3, 1, 1
    open_row = np.zeros(n_edges(n), np.uint8)
    for a, b in [(0, 1), (1, 4), (0, 3)]:
        open_row[edge_index(n, a, b)] = 1
    chosen = [3, 4, END]
    right, first = right_choices(n, open_row, 3, 4, chosen)
    kinds = step_kinds(n, open_row, chosen)
    S, K = 3, 2
    attn, noncell = np.zeros((S, L, H, n * n)), np.zeros((S, L, H, K))
    attn[:, 0, 0, 4], noncell[1, 0, 0] = 1.0, [0.11, 0.05]
    attn[1, 0, 0, 4] = 0.84
    lens = np.zeros((S, L + 1, n * n))
    lens[1, 1, 0], lens[1, 1, 4] = 0.3, 0.6
    tokens = ["(1,0)", "(1,1)", "<PATH_END>"]
    steps = [{"token": t, "cell": c if c >= 0 else -1, "kind": k, "right": r,
              "p_right": [0.1, 0.3 if s == 1 else 0.9], "lens_top": [["(1,1)", 0.5], ["(1,1)", 0.6]]}
             for s, (t, c, k, r) in enumerate(zip(tokens, chosen, kinds, right))]
    maze = {"maze_id": "7", "n": n, "open": "".join(map(str, open_row)), "origin": 3, "target": 4,
            "true_path": [3, 0, 1, 4], "steps": steps, "first_wrong": first, "exact": False,
            "attn": pack(attn), "lens": pack(lens), "noncell_tokens": ["<TARGET_END>", ";"],
            "noncell": pack(noncell), "probe": None}
    return {"n_layers": L, "n_heads": H, "style": scheme(), "layer_names": ["embedding", "after block 0"],
            "edges": {"3": edge_endpoints(n).ravel().tolist()}, "probe": None,
            "suites": [{"name": "placed", "dataset": "placed", "grid_n": n, "mazes": [maze]}]}


def test_the_explorer_explains_a_failure_on_a_placed_maze(tmp_path):
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM_ARGS, chromium_path
    from mazesearch.report.page import render_page, write_report

    doc = failure_doc()
    style = doc["style"]
    write_report(tmp_path / "index.html", tmp_path / "assets", render_page("t", "s", [], doc, "note"), {})
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000}).new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: m.type in ("error", "warning") and errors.append(m.text))
            page.goto((tmp_path / "index.html").as_uri(), wait_until="load")
            assert "WRONG at step 1" in page.inner_text("#ex-maze")
            assert page.locator("#ex-attn .first-wrong").count() == 0  # step 0: nothing wrong yet
            page.click("#ex-first-wrong")
            assert page.get_attribute("#explorer", "data-state").split("/")[2] == "1"
            info = page.inner_text("#ex-info")
            assert "first wrong step 1" in info and "through a wall" in info and "right was (0,0)" in info
            # uncarved cells greyed as in the gallery; the wall crossing red; the wrong choice flagged
            grey = page.eval_on_selector_all("#ex-attn rect.blocked", "rs => rs.map(r => r.getAttribute('fill'))")
            assert grey == [style["blocked"]] * 5
            strokes = page.eval_on_selector_all('#ex-attn g.walked[data-kind="wall"] line',
                                                "ls => ls.map(l => l.getAttribute('stroke'))")
            assert strokes == ["#fff", style["bad"]]  # casing, then the red line
            assert page.locator("#ex-attn .first-wrong").count() == 1
            assert page.locator("#ex-attn rect.chosen.wrong").count() == 1
            # origin and target in the scheme's marks
            assert page.get_attribute("#ex-attn circle.origin", "fill") == style["origin"]["fill"]
            assert page.get_attribute("#ex-attn polygon.target", "fill") == style["target"]["fill"]
            # attention on non-cell tokens: a bar per token with its mass, the cells' total beside
            bars = page.eval_on_selector_all("#ex-noncell g.bar", "gs => gs.map(g => [g.dataset.token, g.dataset.mass])")
            assert bars == [["all cells", "0.839"], ["<TARGET_END>", "0.110"], [";", "0.051"]]
            assert "0.16 of its attention on tokens that name no cell" in page.inner_text("#ex-noncell-caption")
            # the lens table carries p(right) per layer
            cells = page.eval_on_selector_all("#ex-lens-top td.p-right", "ts => ts.map(t => t.textContent)")
            assert cells == ["0.10", "0.30"]
            page.click("#ex-next")  # later steps keep the first wrong one flagged
            assert page.locator("#ex-attn .first-wrong").count() == 1
        finally:
            browser.close()
    assert not errors, errors


# ---------------------------------------------------------------------------- the page around the sections


def _open(page_path, width=900, height=700):
    """(playwright, browser, page, errors) on the page, offline; close with ``_close``."""
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM_ARGS, chromium_path

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
    page = browser.new_context(offline=True, viewport={"width": width, "height": height}).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.resolve().as_uri(), wait_until="load")
    return pw, browser, page, errors


def _close(pw, browser, errors):
    browser.close()
    pw.stop()
    assert not errors, errors


def test_the_header_counts_the_sections_the_nav_lists(page_path):
    pw, browser, page, errors = _open(page_path)
    try:
        links = page.eval_on_selector_all("nav a", "as => as.map(a => [a.getAttribute('href'), a.className])")
        present = sum(cls != "missing" for _, cls in links)
        assert page.inner_text("header p").startswith(f"{present} of {len(links)} sections present")
    finally:
        _close(pw, browser, errors)


def test_a_nav_jump_lands_the_heading_below_the_sticky_nav(page_path):
    pw, browser, page, errors = _open(page_path)
    try:
        for href in ("#probes", "#explorer", "#training"):  # (the last sections cannot reach the top)
            page.click(f'nav a[href="{href}"]')
            page.wait_for_timeout(50)
            nav_bottom = page.evaluate("document.querySelector('nav').getBoundingClientRect().bottom")
            top = page.evaluate(f"document.querySelector('{href} h2').getBoundingClientRect().top")
            assert nav_bottom <= top < nav_bottom + 60, (href, nav_bottom, top)  # visible, right below
    finally:
        _close(pw, browser, errors)


def test_a_click_shows_a_figure_at_its_native_size(page_path):
    """In a narrow window the figures shrink; a click shows one at its native size, Esc closes it."""
    pw, browser, page, errors = _open(page_path, width=180, height=600)
    try:
        thumb = page.locator("figure img").first
        natural = thumb.evaluate("i => i.naturalWidth")
        assert thumb.evaluate("i => i.clientWidth") < natural
        thumb.click()
        big = page.locator("#zoom img")
        assert page.locator("#zoom").is_visible() and big.count() == 1
        page.wait_for_function("() => document.querySelector('#zoom img').complete")
        assert big.evaluate("i => [i.naturalWidth, i.clientWidth]") == [natural, natural]
        page.keyboard.press("Escape")
        assert not page.locator("#zoom").is_visible() and big.count() == 0
    finally:
        _close(pw, browser, errors)
