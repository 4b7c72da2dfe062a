"""Assemble ``reports/index.html``: the sections (mazesearch.report.sections), the maze explorer
(its data embedded as JSON, its script and styles inline) and the images copied beside the page
under ``assets/``. Offline by construction: nothing on the page names another host, and the test
loads it in Chromium with the network off. Same inputs -> the same bytes (no timestamps; PNG
copies keep only the chunks that draw the image)."""

from __future__ import annotations

import html
import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from mazesearch.io import atomic_dir, write_text_atomic

if TYPE_CHECKING:
    from mazesearch.report.sections import Section

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that change the pixels; everything else (tEXt, iTXt, zTXt, tIME: matplotlib's
# Software / creation time, ...) is dropped so a copy never carries a timestamp.
_PNG_KEEP = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"iCCP", b"sBIT", b"pHYs"}


def strip_png(data: bytes) -> bytes:
    """``data`` with only the drawing chunks kept; ValueError if it is not a PNG."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG file")
    out, i = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > len(data):
            raise ValueError("truncated PNG chunk")
        if kind in _PNG_KEEP:
            out.append(data[i:end])
        i = end
        if kind == b"IEND":
            break
    return b"".join(out)


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#1f2937;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cbd5e1}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:6px 24px;z-index:2}
nav a{margin-right:14px;color:#1d4ed8;text-decoration:none}nav a.missing{color:#999}
main{padding:0 24px 40px;max-width:1400px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:18px 0;padding:8px 18px 16px}
section h2{margin:8px 0}section.missing{opacity:.75}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid #e5e7eb;padding:3px 8px;text-align:left}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.sel td{background:#fef3c7}
img{max-width:100%;height:auto;border:1px solid #eee}a.zoom{cursor:zoom-in}
section,h3,[id]{scroll-margin-top:var(--nav-h,52px)}
td.num,th.num{white-space:nowrap}
#zoom{position:fixed;inset:0;z-index:10;background:rgba(15,23,42,.85);overflow:auto;cursor:zoom-out;padding:16px}
#zoom[hidden]{display:none}#zoom img{max-width:none;width:auto;height:auto;background:#fff;display:block;margin:0 auto}
#zoom p{color:#e5e7eb;margin:0 0 8px;font-size:12px;text-align:center}
table.findings td.verdict{font-weight:600;white-space:nowrap}table.findings td.source{color:#6b7280;font-size:12px}
table.findings tr.supported td.verdict{color:#15803d}table.findings tr.contradicted td.verdict{color:#b91c1c}
table.findings tr.open td.verdict{color:#92400e}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;max-width:640px}
.caption,figcaption{color:#555;font-size:12px}.missing{color:#92400e}.metric{font-weight:600}
#explorer .controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0}
#explorer .panels{display:flex;flex-wrap:wrap;gap:16px}#explorer .panel{max-width:300px}
#explorer .panel p{font-size:12px;color:#444;margin:4px 0}
#ex-heads{display:grid;gap:4px;margin-top:10px}
#ex-heads button.head{border:2px solid transparent;background:#fff;padding:1px;cursor:pointer;font-size:10px}
#ex-heads button.head.sel{border-color:#ff7f0e}#ex-heads span{display:block}
#ex-info{font-weight:500}#ex-info.wrong{color:#b91c1c}
#explorer .legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;color:#444;margin:4px 0}
#explorer .legend svg{vertical-align:middle}
"""


# Page behaviour, no library: a click on a figure opens it at its native size over the page (Esc,
# or another click, closes it; without scripts the link opens the PNG itself), and the sticky
# nav's height sets how far below it a jump to a section lands (CSS scroll-margin-top).
_PAGE_JS = """
(function () {
  "use strict";
  const nav = document.querySelector("nav");
  const fit = () => document.documentElement.style.setProperty("--nav-h", (nav.offsetHeight + 8) + "px");
  fit();
  window.addEventListener("resize", fit);
  const zoom = document.getElementById("zoom"), label = zoom.querySelector("p");
  const close = () => { zoom.hidden = true; zoom.querySelectorAll("img").forEach((i) => i.remove()); };
  document.querySelectorAll("a.zoom").forEach((a) => a.addEventListener("click", (e) => {
    e.preventDefault();
    close();
    const big = document.createElement("img");
    big.src = a.getAttribute("href");
    big.alt = a.querySelector("img").alt;
    label.textContent = big.alt + " (native size; click or Esc to close)";
    zoom.appendChild(big);
    zoom.hidden = false;
    zoom.scrollTo(0, 0);
  }));
  zoom.addEventListener("click", close);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !zoom.hidden) close(); });
})();
"""


def _explorer_html(doc: dict | None, note: str) -> str:
    if doc is None or not doc.get("suites"):
        return (f'<section id="explorer" class="missing"><h2>Maze explorer</h2><p class="missing">'
                f"{html.escape(note)}</p></section>")
    L, H = doc["n_layers"], doc["n_heads"]
    # "</" cannot end the script element early once escaped; JSON parses "<\/" as "</"
    payload = json.dumps(doc, separators=(",", ":"), sort_keys=True).replace("</", "<\\/")
    script = (Path(__file__).with_name("explorer.js")).read_text(encoding="utf-8")
    probe = ""
    if doc.get("probe"):
        p = doc["probe"]
        probe = (f" The probe panel: the explorer's own linear <code>future_path</code> probe per layer, fitted "
                 f"on {p['n_mazes']} teacher-forced mazes of dataset <code>{html.escape(p['dataset'])}</code>; its "
                 f"caption gives the <em>explorer probe micro-F1</em> (pooled over cells, held-out mazes) beside the "
                 f"same fit on the random-init model. It is a lens for looking, not the Probes section's result: "
                 f"that section's <code>future_path</code> test score is a balanced accuracy of the stage's probe "
                 f"at its best layer, and its picture maps a per-cell F1 (see there).")
    return f"""<section id="explorer"><h2>Maze explorer</h2>
<p class="caption">{html.escape(note)} Pick a suite and a maze, step through the model's own path
(buttons, slider, or ← →); "first wrong step" jumps to the first choice that leaves every shortest path
(the right choices at each step: the cells one move closer to the target from where the model stands,
<code>&lt;PATH_END&gt;</code> on the target). The marks are the gallery's: arrows are the model's steps up to
this one, a dashed box the cell chosen at this step (red at the first wrong step, which keeps a red "!" after).
Click a small map to pick its head.{probe}</p>
<div class="controls">
<label>suite <select id="ex-suite"></select></label>
<label>maze <select id="ex-maze"></select></label>
<button id="ex-prev" type="button">◀ prev</button>
<input id="ex-step" type="range" min="0" max="0" value="0" aria-label="step">
<button id="ex-next" type="button">next ▶</button>
<span id="ex-step-label"></span>
<button id="ex-first-wrong" type="button">first wrong step</button>
<label>attention <select id="ex-block"></select></label><select id="ex-head" aria-label="head"></select>
<label>residual <select id="ex-layer"></select></label>
</div>
<p id="ex-legend" class="legend"></p>
<p id="ex-info"></p>
<div class="panels">
<div class="panel"><svg id="ex-attn" role="img" aria-label="attention"></svg><p id="ex-attn-caption"></p></div>
<div class="panel"><svg id="ex-noncell" role="img" aria-label="attention on non-cell tokens"></svg>
<p id="ex-noncell-caption"></p></div>
<div class="panel"><svg id="ex-lens" role="img" aria-label="logit lens"></svg><p id="ex-lens-caption"></p></div>
<div class="panel"><svg id="ex-probe" role="img" aria-label="probe"></svg><p id="ex-probe-caption"></p></div>
<div class="panel"><table id="ex-lens-top"></table></div>
</div>
<div id="ex-heads" style="grid-template-columns:repeat({H},76px)" aria-label="all {L * H} heads at this step"></div>
<script id="explorer-data" type="application/json">{payload}</script>
<script>{script}</script>
</section>"""


def render_page(title: str, subtitle: str, sections: list[Section], explorer: dict | None,
                explorer_note: str, explorer_after: str = "size") -> str:
    """The whole page as one string; the explorer goes right after section ``explorer_after``. The
    header starts with how many sections are present out of those the nav lists (the explorer
    included), then ``subtitle``."""
    def wrap(s: Section) -> str:
        cls = "" if s.present else ' class="missing"'
        return f'<section id="{html.escape(s.id)}"{cls}><h2>{html.escape(s.title)}</h2>\n{s.html}\n</section>'

    order = [(s.id, s.title, s.present, wrap(s)) for s in sections]  # (id, title, present, html)
    at = next((i + 1 for i, s in enumerate(sections) if s.id == explorer_after), len(order))
    order.insert(at, ("explorer", "Maze explorer", bool(explorer and explorer.get("suites")),
                      _explorer_html(explorer, explorer_note)))
    nav = " ".join(f'<a href="#{html.escape(i)}"{"" if present else " class=missing"}>{html.escape(t)}</a>'
                   for i, t, present, _ in order)
    count = f"{sum(present for _, _, present, _ in order)} of {len(order)} sections present"  # as the nav lists them
    subtitle = count + (f"; {subtitle}" if subtitle else "")
    body = "\n".join(o[3] for o in order)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body><header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>
<nav>{nav}</nav>
<main>
{body}
</main>
<div id="zoom" hidden><p></p></div>
<script>{_PAGE_JS}</script></body></html>
"""


def write_report(out_html: Path, assets_dir: Path, page: str, assets: dict[str, Path]) -> None:
    """Write the assets directory (PNG copies stripped of metadata) and then the page, each atomically."""
    with atomic_dir(assets_dir) as tmp:
        for name in sorted(assets):
            data = Path(assets[name]).read_bytes()
            (tmp / name).write_bytes(strip_png(data) if name.endswith(".png") else data)
    write_text_atomic(out_html, page)
