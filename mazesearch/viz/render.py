"""Pictures: maze panels with true and predicted paths, cell/edge heatmaps, grouped bar charts.

Everything draws on matplotlib's object-oriented API (``Figure`` + ``FigureCanvasAgg``), so no
pyplot global state is touched and no GUI backend is ever needed. PNGs carry no software or time
metadata: equal inputs give byte-identical files, which keeps DVC from re-running downstream.

Geometry (maze.py's): cell ``r*n + c`` is the unit square ``[c, c+1] x [r, r+1]`` with row 0
at the top, its centre at ``(c + 0.5, r + 0.5)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from mazesearch.data.maze import MazeBatch, edge_endpoints, n_edges
from mazesearch.io import atomic_path

DPI = 100
PANEL_IN = 2.3  # side of one maze panel, inches
WALL_COLOUR = "#1a1a1a"
BLOCKED_COLOUR = "#9a9a9a"  # cells with no open edge (obstacles, uncarved cells)
TRUE_COLOUR = "#2ca02c"
PRED_COLOUR = "#1f5fd6"
BAD_COLOUR = "#e01b1b"  # predicted moves that are not open lattice edges
NAN_COLOUR = "#d9d9d9"
TARGET_COLOUR = "#f2a900"
PNG_METADATA = {"Software": None}  # no version string, no timestamp: byte-deterministic


# ---------------------------------------------------------------------------- helpers


def _new_figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, out_png: str | os.PathLike) -> None:
    """Write the PNG to ``<out>.tmp`` and rename, so a killed stage leaves no half file."""
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA, facecolor="white")


def _check_grid_n(grid_n: int) -> int:
    if isinstance(grid_n, bool) or not isinstance(grid_n, (int, np.integer)) or grid_n < 2:
        raise ValueError(f"grid_n must be an integer >= 2, got {grid_n!r}")
    return int(grid_n)


def _check_values(values: np.ndarray, expected: int, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (expected,):
        raise ValueError(f"values must have shape [{expected}] ({what}), got {list(values.shape)}")
    if np.isinf(values).any():
        raise ValueError("values contain +-inf; use NaN for undefined entries")
    return values


def _check_colour_scale(vmin: float, vmax: float, cmap: str) -> None:
    if not (np.isfinite(vmin) and np.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"need finite vmin < vmax, got vmin={vmin}, vmax={vmax}")
    if cmap not in colormaps:
        raise ValueError(f"unknown colormap {cmap!r}")


def _grid_axes(ax: Axes, n: int, pad: float) -> None:
    """Square axes showing the n x n lattice, row 0 at the top, no ticks."""
    ax.set_xlim(-pad, n + pad)
    ax.set_ylim(n + pad, -pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _centres(cells: np.ndarray, n: int) -> np.ndarray:
    """Cell indices -> centre coordinates ``float [k, 2]`` as (x, y)."""
    r, c = np.divmod(np.asarray(cells, dtype=np.int64), n)
    return np.stack([c + 0.5, r + 0.5], axis=1).astype(np.float64)


def _shade_cells(ax: Axes, cells: np.ndarray, n: int, **style) -> None:
    """Fill the unit squares of the given cells (style: PatchCollection keywords)."""
    if len(cells):
        squares = [Rectangle((c, r), 1, 1) for r, c in zip(*np.divmod(cells, n))]
        ax.add_collection(PatchCollection(squares, **style))


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
) -> None:
    """Draw one maze on ``ax``: blocked cells, walls, true path, predicted path, endpoints."""
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

    if predicted is not None:
        _draw_predicted(ax, n, open_row, predicted, path_w)

    if origin is not None:
        x, y = _centres([origin], n)[0]
        ax.plot([x], [y], "o", ms=marker, mfc="white", mec="black", mew=max(1.0, wall_w * 0.6),
                zorder=5)
    if target is not None:
        x, y = _centres([target], n)[0]
        ax.plot([x], [y], "X", ms=marker, mfc=TARGET_COLOUR, mec="black",
                mew=max(0.8, wall_w * 0.5), zorder=5)


def _draw_predicted(ax: Axes, n: int, open_row: np.ndarray, predicted: Sequence[int],
                    path_w: float) -> None:
    """Dashed line offset from the cell centres; moves through walls or jumps drawn in red.

    Invalid cells (-1, or anything off the grid) are skipped: the line joins the valid cells
    either side, and that join counts as a bad move unless it happens to be an open edge.
    """
    cells = np.asarray(list(predicted), dtype=np.int64)
    cells = cells[(cells >= 0) & (cells < n * n)]
    if len(cells) == 0:
        return
    shift = 0.16  # data units: the true path stays on the centres, this one sits to its lower right
    xy = _centres(cells, n) + shift
    if len(cells) == 1:
        ax.plot(xy[:, 0], xy[:, 1], "o", color=PRED_COLOUR, ms=path_w * 2, zorder=4)
        return
    open_edges = {(int(a), int(b)) for a, b in edge_endpoints(n)[open_row != 0]}
    good, bad = [], []
    for i in range(len(cells) - 1):
        a, b = int(cells[i]), int(cells[i + 1])
        (good if (min(a, b), max(a, b)) in open_edges else bad).append(xy[i : i + 2])
    if good:
        ax.add_collection(LineCollection(good, colors=PRED_COLOUR, linewidths=path_w * 0.8,
                                         linestyles=(0, (2.0, 1.2)), capstyle="butt", zorder=4))
    if bad:
        segs = np.array(bad)
        ax.add_collection(LineCollection(segs, colors=BAD_COLOUR, linewidths=path_w * 0.8,
                                         zorder=4))
        pts = segs.reshape(-1, 2)  # mark both ends so a repeated cell (zero-length move) shows
        ax.plot(pts[:, 0], pts[:, 1], "o", color=BAD_COLOUR, ms=path_w * 1.4, zorder=4)


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
    token that decoded to no cell. Failed panels get a red frame and "FAIL" in the title.
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
    fig = _new_figure(ncols * panel_in, nrows * (panel_in + 0.05) + 0.3)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    cell_pt = panel_in * 72 * 0.85 / n
    for panel, (ax, i) in enumerate(zip(axes, idx)):
        _draw_maze(ax, n, batch.open[i], int(batch.origin[i]), int(batch.target[i]),
                   batch.path(i), None if predicted is None else predicted[panel], cell_pt=cell_pt)
        title = titles[panel] if titles is not None else f"{int(batch.maze_id[i]):016x}"[:8]
        if failed[panel]:
            title = f"FAIL  {title}"
            for spine in ax.spines.values():
                spine.set(visible=True, edgecolor=BAD_COLOUR, linewidth=3.0)
        ax.set_title(title, fontsize=8, color=BAD_COLOUR if failed[panel] else "black")
    for ax in axes[k:]:
        ax.set_visible(False)

    handles = [
        Line2D([], [], color=TRUE_COLOUR, lw=2.5, label="shortest path"),
        Line2D([], [], marker="o", ls="none", mfc="white", mec="black", label="origin"),
        Line2D([], [], marker="X", ls="none", mfc=TARGET_COLOUR, mec="black", label="target"),
    ]
    if predicted is not None:
        handles[1:1] = [
            Line2D([], [], color=PRED_COLOUR, lw=2, ls=(0, (2.0, 1.2)), label="predicted"),
            Line2D([], [], color=BAD_COLOUR, lw=2, marker="o", ms=3, label="invalid move"),
        ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7,
               frameon=False)
    _save(fig, out_png)


# ---------------------------------------------------------------------------- heatmaps


def _text_colour(rgba: np.ndarray) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def _draw_cell_heatmap(fig: Figure, ax: Axes, values: np.ndarray, n: int, *, vmin: float,
                       vmax: float, cmap: str, annotate: bool) -> None:
    """``values`` float [n*n], NaN = undefined (grey, hatched)."""
    colormap = colormaps[cmap].with_extremes(bad=NAN_COLOUR)
    norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
    grid = np.ma.masked_invalid(values.reshape(n, n))
    image = ax.imshow(grid, cmap=colormap, norm=norm, extent=(0, n, n, 0),
                      interpolation="nearest", origin="upper")
    _grid_axes(ax, n, 0.0)
    _shade_cells(ax, np.flatnonzero(np.isnan(values)), n, facecolor="none", edgecolor="#8c8c8c",
                 hatch="//", linewidth=0.0)
    if annotate:
        fontsize = 9 if n <= 5 else 8
        for cell, v in enumerate(values):
            r, c = divmod(cell, n)
            text, colour = ("n/a", "#555555") if np.isnan(v) else (
                f"{v:.2f}", _text_colour(np.asarray(colormap(norm(v)))))
            ax.text(c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=fontsize,
                    color=colour)
    fig.colorbar(image, ax=ax, shrink=0.85)


def render_cell_heatmap(
    values: np.ndarray,
    grid_n: int,
    out_png: str | os.PathLike,
    *,
    title: str = "",
    vmin: float = 0,
    vmax: float = 1,
    cmap: str = "viridis",
) -> None:
    """One value per cell (``float [grid_n**2]``, cell r*n+c) as a coloured grid with colour bar.

    NaN cells are grey and hatched; values outside [vmin, vmax] take the end colours. Grids up
    to 8 x 8 also print each value.
    """
    n = _check_grid_n(grid_n)
    values = _check_values(values, n * n, f"grid_n**2 cells for grid_n={n}")
    _check_colour_scale(vmin, vmax, cmap)
    fig = _new_figure(4.6, 4.0)
    ax = fig.add_subplot()
    _draw_cell_heatmap(fig, ax, values, n, vmin=vmin, vmax=vmax, cmap=cmap, annotate=n <= 8)
    ax.set_title(title, fontsize=10)
    _save(fig, out_png)


def _draw_edge_heatmap(fig: Figure, ax: Axes, values: np.ndarray, n: int, *, vmin: float,
                       vmax: float, cmap: str, cell_pt: float) -> None:
    """``values`` float [E] in canonical edge order, each drawn between its cell centres."""
    _grid_axes(ax, n, 0.05)
    ax.add_patch(Rectangle((0, 0), n, n, facecolor="#f7f7f7", edgecolor="#bdbdbd", lw=0.8,
                           zorder=0))
    segments = _centres(edge_endpoints(n).ravel(), n).reshape(-1, 2, 2)  # [E, 2 ends, (x, y)]
    width = float(np.clip(0.2 * cell_pt, 1.0, 9.0))
    defined = ~np.isnan(values)
    # shorten each segment a little so neighbouring edges meeting at a cell stay distinguishable
    middle = segments.mean(axis=1, keepdims=True)
    segments = middle + (segments - middle) * 0.78
    if (~defined).any():
        ax.add_collection(LineCollection(segments[~defined], colors=NAN_COLOUR,
                                         linewidths=width * 0.5, linestyles=(0, (1, 1)), zorder=1))
    lines = LineCollection(segments[defined], cmap=cmap, norm=Normalize(vmin, vmax, clip=True),
                           linewidths=width, capstyle="butt", zorder=2)
    lines.set_array(values[defined])
    ax.add_collection(lines)
    centres = _centres(np.arange(n * n), n)
    ax.plot(centres[:, 0], centres[:, 1], "o", color="#4d4d4d", ms=max(1.0, 0.08 * cell_pt),
            zorder=3)
    fig.colorbar(lines, ax=ax, shrink=0.85)


def render_edge_heatmap(
    values: np.ndarray,
    grid_n: int,
    out_png: str | os.PathLike,
    *,
    title: str = "",
    vmin: float = 0,
    vmax: float = 1,
    cmap: str = "viridis",
) -> None:
    """One value per lattice edge (``float [2n(n-1)]``, maze.py's canonical order) as coloured
    segments between cell centres, with colour bar. NaN edges are drawn as grey dots."""
    n = _check_grid_n(grid_n)
    values = _check_values(values, n_edges(n), f"2*n*(n-1) lattice edges for grid_n={n}")
    _check_colour_scale(vmin, vmax, cmap)
    fig = _new_figure(4.6, 4.0)
    ax = fig.add_subplot()
    _draw_edge_heatmap(fig, ax, values, n, vmin=vmin, vmax=vmax, cmap=cmap,
                       cell_pt=3.4 * 72 / n)
    ax.set_title(title, fontsize=10)
    _save(fig, out_png)


# ---------------------------------------------------------------------------- bar chart


def render_bar_chart(
    categories: list[str],
    series: dict[str, list[float]],
    out_png: str | os.PathLike,
    *,
    title: str = "",
    ylabel: str = "",
) -> None:
    """Grouped bars: one group per category, one bar per series (e.g. model vs baseline per
    evaluation suite). NaN values leave a gap marked "n/a"."""
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

    n_cat, n_ser = len(categories), len(heights)
    fig = _new_figure(max(4.0, 1.2 + n_cat * (0.35 + 0.28 * n_ser)), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / n_ser
    x = np.arange(n_cat, dtype=np.float64)
    annotate = n_cat * n_ser <= 40
    colours = colormaps["tab10"].colors
    for s, (name, vals) in enumerate(heights.items()):
        pos = x - 0.4 + width * (s + 0.5)
        ax.bar(pos, np.nan_to_num(vals), width * 0.92, label=name, color=colours[s % 10])
        if annotate:
            for p, v in zip(pos, vals):
                text = "n/a" if np.isnan(v) else f"{v:.3g}"
                ax.annotate(text, (p, 0 if np.isnan(v) else v), xytext=(0, 2),
                            textcoords="offset points", ha="center",
                            va="bottom" if np.isnan(v) or v >= 0 else "top", fontsize=7)
    finite = np.concatenate(list(heights.values()))
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
    if n_ser > 1:
        ax.legend(fontsize=8, frameon=False)
    _save(fig, out_png)
