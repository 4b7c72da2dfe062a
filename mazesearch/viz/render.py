"""Pictures: maze panels with true and predicted paths, grouped bar charts (the maze overlay:
``mazesearch.viz.overlay``; heatmaps: ``mazesearch.viz.heatmaps``; the figure, the PNG writer and
the colour scheme: ``mazesearch.viz.figure``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from mazesearch.data.maze import MazeBatch, n_edges
from mazesearch.viz.figure import BAD_COLOUR, PANEL_IN, check_grid_n, new_figure, save
from mazesearch.viz.overlay import NUMBERED_CELL_PT, draw_maze, legend_handles, numbered

# ---------------------------------------------------------------------------- maze panels


def _panel_title(title: str, failed: bool, n_noncell: int) -> str:
    """The caller's first line, then on one line: "FAIL", the rest of the caller's title, and
    the number of predicted entries that name no cell."""
    head, _, rest = title.partition("\n")
    parts = ["FAIL"] * failed + [rest.replace("\n", " · ")] * bool(rest)
    parts += [f"{n_noncell} non-cell entr{'y' if n_noncell == 1 else 'ies'}"] * bool(n_noncell)
    return "\n".join([head] + [" · ".join(parts)] * bool(parts))


def render_mazes(
    batch: MazeBatch,
    idx: Sequence[int],
    out_png: str | os.PathLike,
    *,
    predicted: list[list[int]] | None = None,
    failed: np.ndarray | None = None,
    ncols: int = 4,
    titles: list[str] | None = None,
) -> None:
    """A grid of maze panels, one per ``batch`` row in ``idx``.

    ``predicted``, ``failed`` and ``titles`` are aligned with ``idx`` (entry k belongs to panel k,
    i.e. maze ``idx[k]``), not with the batch. ``predicted[k]`` is a list of cells; -1 marks a
    token that decoded to no cell. Titles default to the ``maze_id``; failed panels get a red
    frame and "FAIL" in the title, and the number of non-cell entries is added to it. The
    predicted path is drawn as numbered arrows (``mazesearch.viz.overlay.draw_predicted``).
    """
    if not isinstance(batch, MazeBatch):
        raise ValueError(f"batch must be a MazeBatch, got {type(batch).__name__}")
    n = check_grid_n(batch.grid_n)
    if batch.open.ndim != 2 or batch.open.shape[1] != n_edges(n):
        raise ValueError(f"batch.open must have shape [B, {n_edges(n)}] for grid_n={n}, "
                         f"got {list(batch.open.shape)}")
    idx = [int(i) for i in idx]
    k = len(idx)
    if k == 0:
        raise ValueError("idx is empty: nothing to render")
    bad = [i for i in idx if not 0 <= i < len(batch)]
    if bad:
        raise ValueError(f"idx {bad[:5]} out of range for a batch of {len(batch)} mazes")
    if not isinstance(ncols, (int, np.integer)) or ncols < 1:
        raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
    if predicted is not None and len(predicted) != k:
        raise ValueError(f"predicted must have one path per idx entry: length {k}, "
                         f"got {len(predicted)}")
    failed = np.zeros(k, bool) if failed is None else np.asarray(failed)
    if failed.shape != (k,):
        raise ValueError(f"failed must have shape [{k}] (one flag per idx entry), "
                         f"got {list(failed.shape)}")
    if titles is not None and len(titles) != k:
        raise ValueError(f"titles must have one entry per idx entry: length {k}, got {len(titles)}")

    ncols = min(int(ncols), k)
    nrows = -(-k // ncols)
    # big grids get bigger panels: up to 14 x 14, big enough that every step gets its number
    panel_in = float(np.clip(max(0.14 * n, 1.01 * NUMBERED_CELL_PT * n / (72 * 0.85)), PANEL_IN, 6.0))
    cell_pt = panel_in * 72 * 0.85 / n
    handles = legend_handles(predicted is not None, numbered(cell_pt))
    per_row = max(1, min(len(handles), int(ncols * panel_in / 1.9)))  # an entry is up to 1.9 inches wide
    # each row: a square panel under a two-line title; then the legend's rows
    fig = new_figure(ncols * panel_in, nrows * (panel_in + 0.42) + 0.15 + 0.16 * -(-len(handles) // per_row))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for panel, (ax, i) in enumerate(zip(axes, idx)):
        n_noncell = draw_maze(ax, n, batch.open[i], int(batch.origin[i]), int(batch.target[i]), batch.path(i),
                               None if predicted is None else predicted[panel], cell_pt=cell_pt)
        title = titles[panel] if titles is not None else f"maze_id {int(batch.maze_id[i])}"
        ax.set_title(_panel_title(title, bool(failed[panel]), n_noncell), fontsize=7.5,
                     color=BAD_COLOUR if failed[panel] else "black")
        if failed[panel]:
            for spine in ax.spines.values():
                spine.set(visible=True, edgecolor=BAD_COLOUR, linewidth=3.0)
    for ax in axes[k:]:
        ax.set_visible(False)

    fig.legend(handles=handles, loc="outside lower center", ncols=per_row, fontsize=7, frameon=False)
    save(fig, out_png)


# ---------------------------------------------------------------------------- bar chart


def _check_intervals(intervals: dict | None, heights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{series: (lo, hi)}`` -> ``{series: float [2, categories]}``, checked."""
    out = {}
    for name, pair in (intervals or {}).items():
        if str(name) not in heights:
            raise ValueError(f"intervals name a series that is not drawn: {name!r}")
        lo_hi = np.asarray(pair, dtype=np.float64)
        if lo_hi.shape != (2, len(next(iter(heights.values())))):
            raise ValueError(f"intervals[{name!r}] must be (lows, highs), one value per category each: "
                             f"shape [2, {len(next(iter(heights.values())))}], got {list(lo_hi.shape)}")
        if np.isinf(lo_hi).any() or (lo_hi[0] > lo_hi[1]).any():
            raise ValueError(f"intervals[{name!r}] need finite lows <= highs (NaN: no interval)")
        out[str(name)] = lo_hi
    return out


def render_bar_chart(
    categories: list[str],
    series: dict[str, list[float]],
    out_png: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "",
    intervals: dict[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    interval_label: str = "95% interval",
) -> None:
    """Grouped bars: one group per category, one bar per series (e.g. model vs baseline per
    evaluation suite). NaN values leave a gap marked "n/a".

    ``intervals`` (optional) maps a series name to ``(lows, highs)``, one entry per category:
    each is drawn as a black error bar from low to high on that series' bar (NaN low or high:
    none there); series left out get none. The legend names them ``interval_label``."""
    categories = [str(c) for c in categories]
    if not categories:
        raise ValueError("categories is empty")
    if not series:
        raise ValueError("series is empty: give at least one {name: values}")
    heights = {}
    for name, vals in series.items():
        vals = np.asarray(vals, dtype=np.float64)
        if vals.shape != (len(categories),):
            raise ValueError(f"series {name!r} must have shape [{len(categories)}] (one value per "
                             f"category), got {list(vals.shape)}")
        if np.isinf(vals).any():
            raise ValueError(f"series {name!r} contains +-inf")
        heights[str(name)] = vals
    bounds = _check_intervals(intervals, heights)

    n_cat, n_ser = len(categories), len(heights)
    fig = new_figure(max(4.0, 1.2 + n_cat * (0.35 + 0.28 * n_ser)), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / n_ser
    x = np.arange(n_cat, dtype=np.float64)
    annotate = n_cat * n_ser <= 40
    colours = colormaps["tab10"].colors
    labelled = False  # one legend entry for all intervals
    for s, (name, vals) in enumerate(heights.items()):
        pos = x - 0.4 + width * (s + 0.5)
        ax.bar(pos, np.nan_to_num(vals), width * 0.92, label=name, color=colours[s % 10])
        lo, hi = bounds.get(name, np.full((2, n_cat), np.nan))
        ok = ~np.isnan(lo) & ~np.isnan(hi)
        if ok.any():
            ax.errorbar(pos[ok], (lo[ok] + hi[ok]) / 2, yerr=(hi[ok] - lo[ok]) / 2, fmt="none",
                        ecolor="black", elinewidth=1.0, capsize=min(3.0, 40 * width), zorder=3,
                        label=None if labelled else interval_label)
            labelled = True
        if annotate:  # the value, above the bar and its interval
            for p, v, top in zip(pos, vals, np.where(ok, hi, vals)):
                text = "n/a" if np.isnan(v) else f"{v:.3g}"
                ax.annotate(text, (p, 0 if np.isnan(v) else max(v, top)), xytext=(0, 2),
                            textcoords="offset points", ha="center",
                            va="bottom" if np.isnan(v) or v >= 0 else "top", fontsize=7)
    finite = np.concatenate(list(heights.values()) + [b.ravel() for b in bounds.values()])
    finite = finite[~np.isnan(finite)]
    low = min(0.0, finite.min()) if len(finite) else 0.0
    high = max(0.0, finite.max()) if len(finite) else 1.0
    if high == low:
        high = low + 1.0
    ax.set_ylim(low - 0.12 * (high - low) * (low < 0), high + 0.12 * (high - low))
    ax.set_xticks(x, categories, rotation=30 if max(map(len, categories)) > 8 else 0,
                  ha="right" if max(map(len, categories)) > 8 else "center", fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    handles, names = ax.get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda h: names[h] == interval_label)  # the intervals last
    if len(handles) > 1:
        ax.legend([handles[h] for h in order], [names[h] for h in order], fontsize=8, frameon=False)
    save(fig, out_png)
