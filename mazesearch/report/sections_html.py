"""Building blocks of the report sections (mazesearch.report.sections): number formats, tables,
figures, notes for missing or unreadable files, and a small deterministic SVG line chart.

Every text that reaches the HTML goes through ``html.escape`` here; paths are shown relative to
the repository (``reports/...``), never absolute, so the page is the same on every machine."""

from __future__ import annotations

import csv
import html
import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path

# What a missing or malformed stage output can raise while it is read and laid out (a list where
# an object was expected gives AttributeError / TypeError). Anything else is a bug here: it fails.
READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, csv.Error)

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def num(x, sig: int = 3) -> str:
    """Compact number: integers as such, otherwise ``sig`` significant digits; – when absent."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, str):
        try:
            x = float(x) if x.strip() else None
        except ValueError:
            return x
    if not _finite(x):
        return "–"
    if isinstance(x, int) or (float(x).is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    if abs(x) >= 10 ** sig:
        return f"{x:,.0f}"
    return f"{x:.{sig}g}"


def rate(x, decimals: int = 3) -> str:
    """A rate in fixed decimals, so a column lines up."""
    if isinstance(x, str):
        x = float(x) if x.strip() else None
    return f"{x:.{decimals}f}" if _finite(x) else "–"


def interval(x, lo, hi, decimals: int = 3) -> str:
    """``0.773 [0.754, 0.791]``; the bare rate when the interval is absent."""
    if not _finite(lo) or not _finite(hi):
        return rate(x, decimals)
    return f"{rate(x, decimals)} [{rate(lo, decimals)}, {rate(hi, decimals)}]"


def signed(x, decimals: int = 3) -> str:
    """A difference with its sign; one that rounds to zero shows as +0.000, never -0.000."""
    return f"{round(x, decimals) + 0.0:+.{decimals}f}" if _finite(x) else "–"


def as_dict(x, what: str) -> dict:
    """``x`` if it is a JSON object; TypeError naming ``what`` otherwise (a malformed file)."""
    if not isinstance(x, dict):
        raise TypeError(f"{what} is a {type(x).__name__}, expected an object")
    return x


class Num(str):
    """A table cell holding a formatted number: right-aligned (class ``num``)."""


def table(caption: str, header: list[str], rows: Iterable[list], sel: Iterable[int] = ()) -> str:
    """A plain table; cells that are ``Num`` get class ``num``; rows whose index is in ``sel`` get
    class ``sel`` (the page highlights them: a chosen layer, say)."""
    sel = set(sel)
    num_cls = ' class="num"'
    head = "".join(f"<th{num_cls if isinstance(h, Num) else ''}>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = "".join(f'<td class="num">{esc(c)}</td>' if isinstance(c, Num) else f"<td>{esc(c)}</td>" for c in row)
        row_cls = ' class="sel"' if i in sel else ""
        body.append(f"<tr{row_cls}>{cells}</tr>")
    return (f"<table><caption>{esc(caption)}</caption>\n<thead><tr>{head}</tr></thead>\n"
            f"<tbody>\n" + "\n".join(body) + "\n</tbody></table>")


def metric(label: str, value: str) -> str:
    return f'<p class="metric">{esc(label)}: {esc(value)}</p>'


def caption(text: str) -> str:
    return f'<p class="caption">{esc(text)}</p>'


def heading(anchor: str, text: str) -> str:
    return f'<h3 id="{esc(anchor)}">{esc(text)}</h3>'


class ReadError(ValueError):
    def __init__(self, rel: str, reason: str):
        super().__init__(f"{rel}: {reason}")
        self.rel, self.reason = rel, reason


def _reason(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"missing key {exc.args[0]!r}" if exc.args else "missing key"
    if isinstance(exc, OSError):  # its str() carries the absolute path
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__


class Ctx:
    """Reads one ``reports/`` tree for the sections: remembers which expected files exist or are
    missing (per section), the last file read (to name it when laying it out fails) and the
    images to copy (asset name -> source path)."""

    def __init__(self, reports: Path):
        self.reports = Path(reports)
        self.datasets: dict[str, tuple] = {}  # dataset -> (generator, lattice side), from data/mazes
        self.assets: dict[str, Path] = {}
        self._asset_of: dict[str, str] = {}
        self.found = 0
        self.missing: list[tuple[str, str]] = []  # (shown path, stage)
        self.last = ""

    def start_section(self) -> None:
        self.found, self.missing = 0, []

    @staticmethod
    def show(rel: str) -> str:
        return f"reports/{rel}"

    def exists(self, rel: str, stage: str) -> bool:
        """Whether reports/<rel> exists (a file, or a folder with something in it); recorded."""
        p = self.reports / rel
        ok = p.is_file() or (p.is_dir() and any(p.iterdir()))
        if ok:
            self.found += 1
        else:
            self.missing.append((self.show(rel), stage))
        return ok

    def read_json(self, rel: str) -> dict:
        self.last = rel
        try:
            return as_dict(json.loads((self.reports / rel).read_text(encoding="utf-8")), "the file")
        except READ_ERRORS as exc:
            raise ReadError(rel, _reason(exc)) from None

    def read_rows(self, rel: str, delimiter: str = ",") -> tuple[list[str], list[list[str]]]:
        """(header, rows) of a CSV / TSV file."""
        self.last = rel
        try:
            with open(self.reports / rel, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f, delimiter=delimiter))
        except READ_ERRORS as exc:
            raise ReadError(rel, _reason(exc)) from None
        if not rows:
            raise ReadError(rel, "empty file")
        return rows[0], rows[1:]

    def guard(self, render: Callable[[], str]) -> str:
        """``render()``, or a "could not read" note naming the file that broke it."""
        try:
            return render()
        except READ_ERRORS as exc:
            return self.note(exc)

    def note(self, exc: Exception) -> str:
        """The "could not read" note for an error raised while reading or laying out a file."""
        if isinstance(exc, ReadError):
            return self.unreadable(exc.rel, exc.reason)
        return self.unreadable(self.last, _reason(exc))

    def unreadable(self, rel: str, reason: str) -> str:
        return f'<p class="missing">could not read {esc(self.show(rel))}: {esc(reason)}</p>'

    def missing_note(self, rels: list[str], stage: str) -> str:
        shown = ", ".join(self.show(r) for r in rels)
        return f'<p class="missing">missing: {esc(shown)} (written by <code>dvc repro {esc(stage)}</code>)</p>'

    def block(self, rels: list[str], stage: str, render: Callable[[], str]) -> str:
        """``render()`` when every file of ``rels`` exists, else a note naming the missing ones."""
        gone = [r for r in rels if not self.exists(r, stage)]
        return self.missing_note(gone, stage) if gone else self.guard(render)

    def asset(self, rel: str) -> str:
        """Flat, unique asset name for reports/<rel>: ``eval/pictures/test.png`` -> ``eval_pictures_test.png``."""
        if rel in self._asset_of:
            return self._asset_of[rel]
        base = re.sub(r"[^A-Za-z0-9._-]", "_", rel.replace("/", "_"))
        name, i = base, 2
        while name in self.assets:  # "a/b_c.png" and "a_b/c.png" would collide
            stem, dot, ext = base.rpartition(".")
            name = f"{stem}_{i}.{ext}" if dot else f"{base}_{i}"
            i += 1
        self.assets[name] = self.reports / rel
        self._asset_of[rel] = name
        return name

    def figure(self, rel: str, stage: str, text: str) -> str:
        if not self.exists(rel, stage):
            return self.missing_note([rel], stage)
        src = f"assets/{esc(self.asset(rel))}"  # a click opens it at native size (page.py)
        return (f'<figure><a class="zoom" href="{src}"><img src="{src}" alt="{esc(text)}"></a>'
                f'<figcaption class="caption">{esc(text)} ({esc(self.show(rel))})</figcaption></figure>')

    def gallery(self, figures: list[str]) -> str:
        return '<div class="gallery">\n' + "\n".join(figures) + "\n</div>" if figures else ""


def nice_ticks(lo: float, hi: float, most: int = 6) -> list[float]:
    """Round values (1, 2 or 5 times a power of ten apart) from ``lo`` to ``hi``, at most ``most``."""
    if not hi > lo:
        return [lo]
    for step in (m * 10.0 ** e for e in range(math.floor(math.log10((hi - lo) / most)) - 1, 40) for m in (1, 2, 5)):
        first = math.ceil(lo / step - 1e-9)
        ticks = [round((first + i) * step, 12) for i in range(int((hi - lo) / step + 1e-9) + 2)]
        ticks = [t for t in ticks if lo - 1e-9 * step <= t <= hi + 1e-9 * step]
        if len(ticks) <= most:
            return ticks
    return [lo, hi]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Ticks for a log axis from ``lo`` to ``hi`` (both > 0): 1, 2 and 5 times each power of ten
    over up to 2.5 decades, 1 and 3 times it up to 4, powers of ten beyond; a range under half a
    decade (or one where these give fewer than three) gets linear round ticks."""
    span = math.log10(hi / lo)
    mults = (1, 2, 5) if span <= 2.5 else (1, 3) if span <= 4 else (1,)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [round(m * 10.0 ** e, 12) for e in decades for m in mults]
    ticks = [t for t in ticks if lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9)]
    return ticks if len(ticks) >= 3 else nice_ticks(lo, hi, 5)


def svg_chart(title: str, series: list[tuple[str, list[tuple[float, float]]]], x_label: str, y_label: str,
              y_range: tuple[float, float] | None = None, width: int = 600, height: int = 260,
              log_y: bool = False) -> str:
    """A line chart as inline SVG: axes with round ticks and light grid lines (``log_y``: a log
    scale, ticks at 1, 2, 5 x powers of ten; points <= 0 left out), one polyline per series and a
    legend right of the plot (never over a curve). Coordinates are rounded to 0.1 px, so equal
    inputs give equal strings."""
    keep = (lambda x, y: _finite(x) and _finite(y) and (y > 0 or not log_y))  # noqa: E731
    pts = [(x, y) for _, s in series for x, y in s if keep(x, y)]
    if not pts:
        return f'<p class="missing">{esc(title)}: no points to draw</p>'
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = y_range if y_range else (min(p[1] for p in pts), max(p[1] for p in pts))
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else (y0 * 10 if log_y else y0 + 1)
    if log_y and not y_range:  # out to the round values (1, 2, 5 x a power of ten) around the data
        steps = [m * 10.0 ** e for e in range(math.floor(math.log10(y0)) - 1, math.ceil(math.log10(y1)) + 2)
                 for m in (1, 2, 5)]
        y0, y1 = max(t for t in steps if t <= y0 * (1 + 1e-9)), min(t for t in steps if t >= y1 * (1 - 1e-9))
    left, right, top, bottom = 52, 150, 22, 36
    pw, ph = width - left - right, height - top - bottom
    f = (lambda y: math.log10(y)) if log_y else (lambda y: y)  # noqa: E731

    def sx(x):
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y):
        return top + ph - (f(min(max(y, y0), y1)) - f(y0)) / (f(y1) - f(y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'role="img" aria-label="{esc(title)}" font-family="sans-serif" font-size="11">',
           f"<title>{esc(title)}</title>",
           f'<text x="{left}" y="14" font-weight="bold">{esc(title)}</text>']
    for t in (log_ticks(y0, y1) if log_y else nice_ticks(y0, y1)):
        y = sy(t)
        out.append(f'<line class="ytick" x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        out.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end">{esc(num(t))}</text>')
    for t in nice_ticks(x0, x1):
        x = sx(t)
        out.append(f'<line class="xtick" x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 4}" stroke="#333"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 15}" text-anchor="middle">{esc(num(t))}</text>')
    out += [f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#333"/>',
            f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle">{esc(x_label)}</text>',
            f'<text x="12" y="{top + ph / 2:.1f}" text-anchor="middle" transform="rotate(-90 12 {top + ph / 2:.1f})">'
            f"{esc(y_label + (' (log scale)' if log_y else ''))}</text>"]
    for i, (name, s) in enumerate(series):
        color = _PALETTE[i % len(_PALETTE)]
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s if keep(x, y))
        if coords:
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>')
        ly = top + 10 + 14 * i
        out.append(f'<line x1="{left + pw + 10}" y1="{ly - 4}" x2="{left + pw + 30}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 34}" y="{ly}">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
