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
img{max-width:100%;height:auto;border:1px solid #eee}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.gallery figure{margin:0;max-width:640px}
.caption,figcaption{color:#555;font-size:12px}.missing{color:#92400e}.metric{font-weight:600}
#explorer .controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0}
#explorer .panels{display:flex;flex-wrap:wrap;gap:16px}#explorer .panel{max-width:300px}
#explorer .panel p{font-size:12px;color:#444;margin:4px 0}
#ex-heads{display:grid;gap:4px;margin-top:10px}
#ex-heads button.head{border:2px solid transparent;background:#fff;padding:1px;cursor:pointer;font-size:10px}
#ex-heads button.head.sel{border-color:#ff7f0e}#ex-heads span{display:block}
#ex-info{font-weight:500}
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
        probe = (f" The probe panel: a linear <code>future_path</code> probe per layer, fitted on {p['n_mazes']} "
                 f"teacher-forced mazes of dataset <code>{html.escape(p['dataset'])}</code> (held-out F1 beside "
                 f"the same fit on the random-init model in its caption).")
    return f"""<section id="explorer"><h2>Maze explorer</h2>
<p class="caption">{html.escape(note)} Pick a suite and a maze, step through the model's own path
(buttons, slider, or ← →). Green dashes: the true shortest path; orange: the cells the model has emitted;
dashed orange box: the cell chosen at this step. Click a small map to pick its head.{probe}</p>
<div class="controls">
<label>suite <select id="ex-suite"></select></label>
<label>maze <select id="ex-maze"></select></label>
<button id="ex-prev" type="button">◀ prev</button>
<input id="ex-step" type="range" min="0" max="0" value="0" aria-label="step">
<button id="ex-next" type="button">next ▶</button>
<span id="ex-step-label"></span>
<label>attention <select id="ex-block"></select></label><select id="ex-head" aria-label="head"></select>
<label>residual <select id="ex-layer"></select></label>
</div>
<p id="ex-info"></p>
<div class="panels">
<div class="panel"><svg id="ex-attn" role="img" aria-label="attention"></svg><p id="ex-attn-caption"></p></div>
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
    """The whole page as one string; the explorer goes right after section ``explorer_after``."""
    def wrap(s: Section) -> str:
        cls = "" if s.present else ' class="missing"'
        return f'<section id="{html.escape(s.id)}"{cls}><h2>{html.escape(s.title)}</h2>\n{s.html}\n</section>'

    order = [(s.id, s.title, s.present, wrap(s)) for s in sections]  # (id, title, present, html)
    at = next((i + 1 for i, s in enumerate(sections) if s.id == explorer_after), len(order))
    order.insert(at, ("explorer", "Maze explorer", bool(explorer and explorer.get("suites")),
                      _explorer_html(explorer, explorer_note)))
    nav = " ".join(f'<a href="#{html.escape(i)}"{"" if present else " class=missing"}>{html.escape(t)}</a>'
                   for i, t, present, _ in order)
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
</main></body></html>
"""


def write_report(out_html: Path, assets_dir: Path, page: str, assets: dict[str, Path]) -> None:
    """Write the assets directory (PNG copies stripped of metadata) and then the page, each atomically."""
    with atomic_dir(assets_dir) as tmp:
        for name in sorted(assets):
            data = Path(assets[name]).read_bytes()
            (tmp / name).write_bytes(strip_png(data) if name.endswith(".png") else data)
    write_text_atomic(out_html, page)
