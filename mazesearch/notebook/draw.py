"""Per-cell and per-edge values drawn on one maze, returned as matplotlib Figures (notebooks).

The pipeline's pictures go straight to PNG files; a notebook wants a Figure to show, annotate or
save. These are drawn with the same toolkit (mazesearch.viz): the heat maps of
``mazesearch.viz.heatmaps`` under the one maze overlay ``mazesearch.viz.overlay.draw_maze``
(walls, cells with no open edge greyed, origin a white disc, target an orange cross, the stored
path green, the predicted path as numbered arrows with moves through a wall and jumps red).
Agg canvas, no pyplot state.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from mazesearch.data.maze import n_edges
from mazesearch.viz.figure import blocked_cells, new_figure
from mazesearch.viz.figure import save as save_figure  # the notebook's PNG writer
from mazesearch.viz.heatmaps import draw_cell_values, draw_edge_values
from mazesearch.viz.overlay import draw_maze

__all__ = ["cell_map", "edge_map", "save_figure"]

FIG_IN = (4.6, 4.0)  # one map and its colour bar
MAP_IN = 3.4  # the map's side, inches (sets line widths and marker sizes)


def _scale(values: np.ndarray, vmin, vmax) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    lo = float(finite.min()) if vmin is None and len(finite) else (0.0 if vmin is None else float(vmin))
    hi = float(finite.max()) if vmax is None and len(finite) else (1.0 if vmax is None else float(vmax))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def cell_map(values, n: int, open_row, *, origin=None, target=None, path=None, predicted=None, mark=None,
             title: str = "", vmin=None, vmax=None, cmap: str = "viridis") -> Figure:
    """``values`` (float [n*n], NaN = undefined) as coloured cells under the maze's walls.

    The colour scale runs from ``vmin`` to ``vmax`` (default: the values' range); grids up to
    8 x 8 print each value (cells with no open edge are greyed instead). ``predicted`` (cells, -1
    for an entry that names no cell) draws a model's path as the gallery does: numbered arrows,
    moves through a wall red, jumps red dashed. ``mark`` outlines one cell (e.g. the query
    token's cell).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n * n,):
        raise ValueError(f"values must have shape [{n * n}] (one per cell of a {n}x{n} grid), got {list(values.shape)}")
    lo, hi = _scale(values, vmin, vmax)
    fig = new_figure(*FIG_IN)
    ax = fig.add_subplot()
    carved = np.ones(n * n, bool)
    carved[blocked_cells(n, open_row)] = False
    image = draw_cell_values(ax, values, n, vmin=lo, vmax=hi, cmap=cmap, annotate=carved & (n <= 8), fontsize=7)
    draw_maze(ax, n, open_row, origin, target, path, predicted, cell_pt=MAP_IN * 72 / n, on_map=True,
              marks=() if mark is None else (mark,), pad=0.05)
    fig.colorbar(image, ax=ax, shrink=0.85)
    ax.set_title(title, fontsize=9)
    return fig


def edge_map(values, n: int, open_row, *, origin=None, target=None, path=None, predicted=None, title: str = "",
             vmin=None, vmax=None, cmap: str = "viridis") -> Figure:
    """``values`` (float [2n(n-1)], maze.py's canonical edge order, NaN = undefined) as coloured
    segments between cell centres, under the maze's walls (``predicted``: as :func:`cell_map`)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (n_edges(n),):
        raise ValueError(f"values must have shape [{n_edges(n)}] (one per lattice edge of a {n}x{n} grid), "
                         f"got {list(values.shape)}")
    lo, hi = _scale(values, vmin, vmax)
    fig = new_figure(*FIG_IN)
    ax = fig.add_subplot()
    lines = draw_edge_values(ax, values, n, vmin=lo, vmax=hi, cmap=cmap, cell_pt=MAP_IN * 72 / n)
    draw_maze(ax, n, open_row, origin, target, path, predicted, cell_pt=MAP_IN * 72 / n, on_map=True, pad=0.05)
    fig.colorbar(lines, ax=ax, shrink=0.85)
    ax.set_title(title, fontsize=9)
    return fig
