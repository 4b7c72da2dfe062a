"""Pictures: maze panels with true and predicted paths, grouped bar charts (heatmaps:
``mazesearch.viz.heatmaps``; shared figure helpers and palette: ``mazesearch.viz.figure``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch

from mazesearch.data.maze import MazeBatch, edge_endpoints, n_edges
from mazesearch.viz.figure import (  # noqa: F401 (re-exported: notebook.draw, tests)
    BAD_COLOUR, BLOCKED_COLOUR, DPI, NAN_COLOUR, NONCELL_COLOUR, PANEL_IN, PRED_COLOUR, TARGET_COLOUR,
    TRUE_COLOUR, WALL_COLOUR, _centres, _check_grid_n, _grid_axes, _new_figure, _save, _shade_cells,
)


def _wall_segments(n: int, open_row: np.ndarray) -> np.ndarray:
    """Line segments ``float [k, 2, 2]`` for every closed edge plus the outer border."""
    ends = edge_endpoints(n)
    closed = ends[open_row == 0]
    r, c = np.divmod(closed[:, 0].astype(np.float64), n)
    horizontal = closed[:, 1] == closed[:, 0] + 1  # wall between (r,c),(r,c+1): the line x=c+1
    start = np.stack([np.where(horizontal, c + 1, c), np.where(horizontal, r, r + 1)], axis=1)
    inner = np.stack([start, np.stack([c + 1, r + 1], axis=1)], axis=1)  # both end at (c+1, r+1)
    border = np.array([[[0, 0], [n, 0]], [[n, 0], [n, n]], [[n, n], [0, n]], [[0, n], [0, 0]]],
                      dtype=np.float64)
    return np.concatenate([inner.reshape(-1, 2, 2), border])


# ---------------------------------------------------------------------------- maze panels


def _draw_maze(
    ax: Axes,
    n: int,
    open_row: np.ndarray,  # uint8 [E]
    origin: int | None = None,
    target: int | None = None,
    path: np.ndarray | None = None,  # int [k] cells, the stored shortest path
    predicted: Sequence[int] | None = None,  # int [m] cells, -1 (or off-grid) = invalid token
    *,
    cell_pt: float = 40.0,  # side of one cell in points: sets line widths and marker sizes
) -> int:
    """Draw one maze on ``ax``: blocked cells, walls, true path, predicted path, endpoints.
    Returns the number of predicted entries that name no cell (0 without a prediction)."""
    pad = 0.06 * n + 0.06
    _grid_axes(ax, n, pad)
    wall_w = float(np.clip(0.09 * cell_pt, 0.6, 3.0))
    path_w = float(np.clip(0.13 * cell_pt, 0.8, 3.5))
    marker = float(np.clip(0.45 * cell_pt, 5.0, 14.0))

    degree = np.bincount(edge_endpoints(n)[open_row != 0].ravel(), minlength=n * n)
    _shade_cells(ax, np.flatnonzero(degree == 0), n, facecolor=BLOCKED_COLOUR, edgecolor="none",
                 zorder=1)
    ax.add_collection(LineCollection(_wall_segments(n, open_row), colors=WALL_COLOUR,
                                     linewidths=wall_w, capstyle="projecting", zorder=2))

    if path is not None and len(path):
        xy = _centres(path, n)
        ax.plot(xy[:, 0], xy[:, 1], color=TRUE_COLOUR, lw=path_w, solid_capstyle="round",
                solid_joinstyle="round", zorder=3)

    n_noncell = 0 if predicted is None else _draw_predicted(ax, n, open_row, predicted, path_w, cell_pt)

    if origin is not None:
        x, y = _centres([origin], n)[0]
        ax.plot([x], [y], "o", ms=marker, mfc="white", mec="black", mew=max(1.0, wall_w * 0.6),
                zorder=5)
    if target is not None:
        x, y = _centres([target], n)[0]
        ax.plot([x], [y], "X", ms=marker, mfc=TARGET_COLOUR, mec="black",
                mew=max(0.8, wall_w * 0.5), zorder=5)
    return n_noncell


def _step_kind(n: int, open_edges: set[tuple[int, int]], a: int, b: int) -> str:
    """docs/metrics.md's kinds of a step between two cells: "move" (open edge), "wall" (a walled
    jump: neighbours, edge closed), "jump" (not neighbours) or "stay" (the same cell again)."""
    if a == b:
        return "stay"
    (ra, ca), (rb, cb) = divmod(a, n), divmod(b, n)
    if abs(ra - rb) + abs(ca - cb) != 1:
        return "jump"
    return "move" if (min(a, b), max(a, b)) in open_edges else "wall"


STEP_STYLE = {  # colour, line style
    "move": (PRED_COLOUR, "solid"),
    "wall": (BAD_COLOUR, "solid"),
    "jump": (BAD_COLOUR, (0, (3.0, 1.5))),
    "stay": (BAD_COLOUR, "solid"),
}


def _draw_predicted(ax: Axes, n: int, open_row: np.ndarray, predicted: Sequence[int],
                    path_w: float, cell_pt: float = 40.0) -> int:
    """The predicted path in order: one arrow per step between two cells, beside the cell
    centres on the right-hand side of its direction (so the true path on the centres and a move
    back along the same edge stay visible), numbered 1, 2, ... when the cells are big enough;
    a dot marks the first cell. Walled jumps are red, jumps to a non-neighbour red dashed,
    staying on a cell a red loop. Entries that name no cell (-1, or off the grid) show as a
    purple "?" (with their count when several follow each other) where they occur in the
    sequence, on a dotted line joining the cells either side. Returns the number of such entries.

    Artists carry gids for tests: "predicted-step" (one arrow per pair of consecutive cells),
    "predicted-gap", "predicted-noncell" (one per run of non-cell entries), "predicted-start".
    """
    entries = np.asarray(list(predicted), dtype=np.int64).reshape(-1)
    is_cell = (entries >= 0) & (entries < n * n)
    n_noncell = int((~is_cell).sum())
    pos = np.flatnonzero(is_cell)  # positions of the cells in the sequence
    text_pt = float(np.clip(0.22 * cell_pt, 5.0, 8.0))
    if len(pos) == 0:
        if n_noncell:
            _noncell_mark(ax, (n / 2, n / 2), n_noncell, text_pt)
        return n_noncell
    centres = _centres(entries[pos], n)  # [k, 2] (x, y), y grows downwards
    open_edges = {(int(a), int(b)) for a, b in edge_endpoints(n)[open_row != 0]}
    lane = 0.15  # data units beside the centre line
    head = float(np.clip(0.3 * cell_pt, 4.0, 12.0))
    shrink = float(np.clip(0.12 * cell_pt, 1.0, 6.0))
    numbered = cell_pt >= 26.0  # smaller numbers would be unreadable
    labels: dict[tuple, list[str]] = {}  # (x, y, colour) -> step numbers: a repeated step gets "3,9"
    start = centres[0] + 0.16
    for k in range(len(pos) - 1):
        A, B = centres[k], centres[k + 1]
        d = B - A
        length = float(np.hypot(*d))
        normal = np.array([-d[1], d[0]]) / length if length else np.zeros(2)
        A, B = A + lane * normal, B + lane * normal
        if k == 0 and length:
            start = A
        gap = int(pos[k + 1] - pos[k] - 1)
        if gap:  # non-cell entries between two cells
            ax.add_patch(FancyArrowPatch(A, B, arrowstyle="-", color=NONCELL_COLOUR, lw=path_w * 0.5,
                                         linestyle=(0, (1.0, 1.5)), shrinkA=shrink, shrinkB=shrink,
                                         zorder=4, gid="predicted-gap"))
            _noncell_mark(ax, (A + B) / 2, gap, text_pt)
            continue
        kind = _step_kind(n, open_edges, int(entries[pos[k]]), int(entries[pos[k + 1]]))
        colour, style = STEP_STYLE[kind]
        if kind == "stay":  # a small loop above the cell, back onto it
            A, B = A + np.array([-0.2, -0.12]), A + np.array([0.2, -0.12])
        arrow = FancyArrowPatch(A, B, arrowstyle="-|>", mutation_scale=head, color=colour,
                                lw=path_w * 0.6, linestyle=style, shrinkA=shrink * (kind != "stay"),
                                shrinkB=shrink * (kind != "stay"), zorder=4, gid="predicted-step",
                                connectionstyle="arc3,rad=-1.6" if kind == "stay" else "arc3")
        ax.add_patch(arrow)
        xy = (A + B) / 2 + (0.17 * normal if length else np.array([0.0, -0.3]))  # outside the lane
        xy = np.clip(xy, 0.18, n - 0.18)  # inside the frame
        labels.setdefault((round(xy[0], 3), round(xy[1], 3), colour), []).append(str(int(pos[k + 1])))
    for (x, y, colour), steps in labels.items() if numbered else ():
        ax.text(x, y, ",".join(steps), ha="center", va="center", fontsize=text_pt * 0.8, color=colour,
                zorder=6, gid="predicted-number")
    ax.plot([start[0]], [start[1]], "o", color=PRED_COLOUR, ms=float(np.clip(0.16 * cell_pt, 2.5, 6.0)),
            zorder=6, gid="predicted-start")
    lead, trail = int(pos[0]), int(len(entries) - 1 - pos[-1])
    if lead:  # non-cell entries before the first cell: up-left of it
        _noncell_mark(ax, np.clip(centres[0] - 0.32, 0.2, n - 0.2), lead, text_pt)
    if trail:  # after the last cell: down-right of it
        _noncell_mark(ax, np.clip(centres[-1] + 0.32, 0.2, n - 0.2), trail, text_pt)
    return n_noncell


def _noncell_mark(ax: Axes, xy, count: int, fontsize: float) -> None:
    """A purple "?" box, "?×k" for k entries in a row that name no cell."""
    ax.text(float(xy[0]), float(xy[1]), "?" if count == 1 else f"?×{count}", ha="center",
            va="center", fontsize=fontsize, fontweight="bold", color="white", zorder=7,
            gid="predicted-noncell",
            bbox=dict(boxstyle="round,pad=0.15", facecolor=NONCELL_COLOUR, edgecolor="none"))


def _legend_handles(predicted: bool) -> list[Line2D]:
    handles = [Line2D([], [], color=TRUE_COLOUR, lw=2.5, label="shortest path")]
    if predicted:
        arrow = dict(marker=">", ms=5, lw=1.8)
        handles += [
            Line2D([], [], color=PRED_COLOUR, label="predicted move (n = step)", **arrow),
            Line2D([], [], color=BAD_COLOUR, label="through a wall", **arrow),
            Line2D([], [], color=BAD_COLOUR, ls=STEP_STYLE["jump"][1], label="jump", **arrow),
            Line2D([], [], marker="$?$", ls="none", color=NONCELL_COLOUR, label="non-cell entry"),
            Line2D([], [], marker="o", ms=4, ls="none", color=PRED_COLOUR, label="predicted start"),
        ]
    handles += [
        Line2D([], [], marker="o", ls="none", mfc="white", mec="black", label="origin"),
        Line2D([], [], marker="X", ls="none", mfc=TARGET_COLOUR, mec="black", label="target"),
    ]
    return handles


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
    predicted path is drawn as numbered arrows (see ``_draw_predicted``).
    """
    if not isinstance(batch, MazeBatch):
        raise ValueError(f"batch must be a MazeBatch, got {type(batch).__name__}")
    n = _check_grid_n(batch.grid_n)
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
    panel_in = float(np.clip(0.14 * n, PANEL_IN, 6.0))  # big grids get bigger panels
    handles = _legend_handles(predicted is not None)
    per_row = max(1, min(len(handles), int(ncols * panel_in / 1.9)))  # an entry is up to 1.9 inches wide
    # each row: a square panel under a two-line title; then the legend's rows
    fig = _new_figure(ncols * panel_in, nrows * (panel_in + 0.42) + 0.15 + 0.16 * -(-len(handles) // per_row))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cell_pt = panel_in * 72 * 0.85 / n
    for panel, (ax, i) in enumerate(zip(axes, idx)):
        n_noncell = _draw_maze(ax, n, batch.open[i], int(batch.origin[i]), int(batch.target[i]), batch.path(i),
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
    _save(fig, out_png)


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
    fig = _new_figure(max(4.0, 1.2 + n_cat * (0.35 + 0.28 * n_ser)), 3.6)
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
    _save(fig, out_png)
