"""Per-cell and per-edge values drawn on one maze, returned as matplotlib Figures (notebooks).

mazesearch.viz.render draws the pipeline's pictures straight to PNG files; a notebook wants a
Figure to show, annotate or save. These follow render's conventions and colours: cell
``r*n + c`` is the unit square ``[c, c+1] x [r, r+1]`` with row 0 at the top, walls dark,
origin a white circle, target an orange cross, the stored path green; Agg canvas, no pyplot
state.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from mazesearch.data.maze import edge_endpoints, n_edges
from mazesearch.io import atomic_path
from mazesearch.viz.render import BLOCKED_COLOUR, DPI, NAN_COLOUR, TARGET_COLOUR, TRUE_COLOUR, WALL_COLOUR

PNG_METADATA = {"Software": None}  # as the pipeline's pictures: no version, no timestamp


def _centres(cells, n: int) -> np.ndarray:  # float [k, 2] as (x, y)
    r, c = np.divmod(np.asarray(cells, dtype=np.int64), n)
    return np.stack([c + 0.5, r + 0.5], axis=1).astype(np.float64)


def _degree(n: int, open_row) -> np.ndarray:  # int [n*n]: open edges at each cell
    return np.bincount(edge_endpoints(n)[np.asarray(open_row) != 0].ravel(), minlength=n * n)


def _walls(n: int, open_row: np.ndarray) -> np.ndarray:
    """Segments ``float [k, 2, 2]``: the shared side of every closed edge, plus the border."""
    ends = edge_endpoints(n)[np.asarray(open_row) == 0]
    r, c = np.divmod(ends[:, 1].astype(np.float64), n)  # the lower/right cell of each wall
    horizontal = ends[:, 1] == ends[:, 0] + 1  # neighbours in a row: the wall is x = c (vertical line)
    start = np.stack([c, r], axis=1)
    stop = np.where(horizontal[:, None], np.stack([c, r + 1], axis=1), np.stack([c + 1, r], axis=1))
    border = np.array([[[0, 0], [n, 0]], [[n, 0], [n, n]], [[n, n], [0, n]], [[0, n], [0, 0]]], float)
    return np.concatenate([np.stack([start, stop], axis=1), border])


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=(4.6, 4.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _maze_overlay(ax, n: int, open_row, origin, target, path, mark) -> None:
    """Walls, stored path, endpoints and an outlined ``mark`` cell over whatever is drawn;
    cells with no open edge (outside a placed maze, obstacles) greyed out, as render does."""
    ax.set_xlim(-0.05, n + 0.05)
    ax.set_ylim(n + 0.05, -0.05)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    for cell in np.flatnonzero(_degree(n, open_row) == 0):
        r, c = divmod(int(cell), n)
        ax.add_patch(Rectangle((c, r), 1, 1, facecolor=BLOCKED_COLOUR, edgecolor="none", alpha=0.85, zorder=3))
    ax.add_collection(LineCollection(_walls(n, open_row), colors=WALL_COLOUR, linewidths=2.2,
                                     capstyle="projecting", zorder=4))
    if path is not None and len(path):
        xy = _centres(path, n)
        ax.plot(xy[:, 0], xy[:, 1], color=TRUE_COLOUR, lw=1.6, alpha=0.8, zorder=5)
    if origin is not None:
        (x, y), = _centres([origin], n)
        ax.plot([x], [y], "o", ms=9, mfc="white", mec="black", zorder=6)
    if target is not None:
        (x, y), = _centres([target], n)
        ax.plot([x], [y], "X", ms=10, mfc=TARGET_COLOUR, mec="black", zorder=6)
    if mark is not None and mark >= 0:
        r, c = divmod(int(mark), n)
        ax.add_patch(Rectangle((c + 0.06, r + 0.06), 0.88, 0.88, fill=False, edgecolor="#e01b1b",
                               lw=2.0, ls="--", zorder=6))


def _scale(values: np.ndarray, vmin, vmax) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if vmin is None and len(finite) else (0.0 if vmin is None else float(vmin))
    hi = float(finite.max()) if vmax is None and len(finite) else (1.0 if vmax is None else float(vmax))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def cell_map(values, n: int, open_row, *, origin=None, target=None, path=None, mark=None,
             title: str = "", vmin=None, vmax=None, cmap: str = "viridis") -> Figure:
    """``values`` (float [n*n], NaN = undefined) as coloured cells under the maze's walls.

    The colour scale runs from ``vmin`` to ``vmax`` (default: the values' range); grids up to
    8 x 8 print each value. ``mark`` outlines one cell (e.g. the query token's cell).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n * n,):
        raise ValueError(f"values must have shape [{n * n}] (one per cell of a {n}x{n} grid), got {list(values.shape)}")
    lo, hi = _scale(values, vmin, vmax)
    fig, ax = _figure()
    norm, colormap = Normalize(lo, hi, clip=True), colormaps[cmap].with_extremes(bad=NAN_COLOUR)
    image = ax.imshow(np.ma.masked_invalid(values.reshape(n, n)), cmap=colormap, norm=norm,
                      extent=(0, n, n, 0), interpolation="nearest", zorder=1)
    if n <= 8:
        for cell in np.flatnonzero(_degree(n, open_row) > 0):
            v, (r, c) = values[cell], divmod(int(cell), n)
            dark = np.dot(colormap(norm(v))[:3], [0.299, 0.587, 0.114]) < 0.5 if np.isfinite(v) else False
            ax.text(c + 0.5, r + 0.78, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center",
                    va="center", fontsize=7, color="white" if dark else "black", zorder=7)
    _maze_overlay(ax, n, open_row, origin, target, path, mark)
    fig.colorbar(image, ax=ax, shrink=0.85)
    ax.set_title(title, fontsize=9)
    return fig


def edge_map(values, n: int, open_row, *, origin=None, target=None, path=None, title: str = "",
             vmin=None, vmax=None, cmap: str = "viridis") -> Figure:
    """``values`` (float [2n(n-1)], maze.py's canonical edge order, NaN = undefined) as coloured
    segments between cell centres, under the maze's walls."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_edges(n),):
        raise ValueError(f"values must have shape [{n_edges(n)}] (one per lattice edge of a {n}x{n} grid), "
                         f"got {list(values.shape)}")
    lo, hi = _scale(values, vmin, vmax)
    fig, ax = _figure()
    segments = _centres(edge_endpoints(n).ravel(), n).reshape(-1, 2, 2)  # [E, 2 ends, (x, y)]
    middle = segments.mean(axis=1, keepdims=True)
    segments = middle + (segments - middle) * 0.7  # edges meeting at a cell stay apart
    defined = np.isfinite(values)
    ax.add_collection(LineCollection(segments[~defined], colors=NAN_COLOUR, linewidths=2,
                                     linestyles=(0, (1, 1)), zorder=1))
    lines = LineCollection(segments[defined], cmap=cmap, norm=Normalize(lo, hi, clip=True),
                           linewidths=max(2.0, 30.0 / n), capstyle="butt", zorder=2)
    lines.set_array(values[defined])
    ax.add_collection(lines)
    _maze_overlay(ax, n, open_row, origin, target, path, None)
    fig.colorbar(lines, ax=ax, shrink=0.85)
    ax.set_title(title, fontsize=9)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """PNG without software or time metadata (byte-deterministic), written atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA, facecolor="white")
