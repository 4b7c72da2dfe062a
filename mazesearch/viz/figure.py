"""The drawing toolkit every picture shares: the figure, the PNG writer, the colour scheme, input
checks, and the lattice geometry (maze.py's): cell ``r*n + c`` is the unit square
``[c, c+1] x [r, r+1]`` with row 0 at the top, its centre at ``(c + 0.5, r + 0.5)``.

Everything draws on matplotlib's object-oriented API (``Figure`` + ``FigureCanvasAgg``), so no
pyplot global state is touched and no GUI backend is ever needed. PNGs carry no software or time
metadata: equal inputs give byte-identical files, which keeps DVC from re-running downstream.

The maze overlay (walls, endpoints, paths) is :func:`mazesearch.viz.overlay.draw_maze`; values
on the grid are :mod:`mazesearch.viz.heatmaps`.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from mazesearch.data.maze import edge_endpoints
from mazesearch.io import atomic_path

DPI = 100
PANEL_IN = 2.3  # side of one maze panel, inches
WALL_COLOUR = "#1a1a1a"
BLOCKED_COLOUR = "#9a9a9a"  # cells with no open edge (obstacles, uncarved cells)
TRUE_COLOUR = "#2ca02c"
PRED_COLOUR = "#1f5fd6"
BAD_COLOUR = "#e01b1b"  # predicted moves that are not open lattice edges
NONCELL_COLOUR = "#8e24aa"  # predicted entries that name no cell
NAN_COLOUR = "#d9d9d9"
TARGET_COLOUR = "#f2a900"
MARK_COLOUR = BAD_COLOUR  # a cell outlined in dashes (the query's cell, the chosen cell)
PNG_METADATA = {"Software": None}  # no version string, no timestamp: byte-deterministic


def new_figure(width_in: float, height_in: float) -> Figure:
    """A constrained-layout Figure on an Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, out_png: str | os.PathLike) -> None:
    """Write the PNG (no metadata: byte-deterministic) to ``<out>.tmp`` and rename, so a killed
    stage leaves no half file."""
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata=PNG_METADATA, facecolor="white")


def check_grid_n(grid_n: int) -> int:
    if isinstance(grid_n, bool) or not isinstance(grid_n, (int, np.integer)) or grid_n < 2:
        raise ValueError(f"grid_n must be an integer >= 2, got {grid_n!r}")
    return int(grid_n)


def check_values(values: np.ndarray, expected: int, what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (expected,):
        raise ValueError(f"values must have shape [{expected}] ({what}), got {list(values.shape)}")
    if np.isinf(values).any():
        raise ValueError("values contain +-inf; use NaN for undefined entries")
    return values


def check_colour_scale(vmin: float, vmax: float, cmap: str) -> None:
    if not (np.isfinite(vmin) and np.isfinite(vmax) and vmin < vmax):
        raise ValueError(f"need finite vmin < vmax, got vmin={vmin}, vmax={vmax}")
    if cmap not in colormaps:
        raise ValueError(f"unknown colormap {cmap!r}")


def maze_axes(ax: Axes, n: int, pad: float) -> None:
    """Square axes showing the n x n lattice, row 0 at the top, no ticks."""
    ax.set_xlim(-pad, n + pad)
    ax.set_ylim(n + pad, -pad)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def centres(cells: np.ndarray, n: int) -> np.ndarray:
    """Cell indices -> centre coordinates ``float [k, 2]`` as (x, y)."""
    r, c = np.divmod(np.asarray(cells, dtype=np.int64), n)
    return np.stack([c + 0.5, r + 0.5], axis=1).astype(np.float64)


def shade_cells(ax: Axes, cells: np.ndarray, n: int, **style) -> None:
    """Fill the unit squares of the given cells (style: PatchCollection keywords)."""
    if len(cells):
        squares = [Rectangle((c, r), 1, 1) for r, c in zip(*np.divmod(cells, n))]
        ax.add_collection(PatchCollection(squares, **style))


def blocked_cells(n: int, open_row: np.ndarray) -> np.ndarray:
    """Cells with no open edge (uncarved cells of a placed maze, obstacles): ``int64 [k]``."""
    degree = np.bincount(edge_endpoints(n)[np.asarray(open_row) != 0].ravel(), minlength=n * n)
    return np.flatnonzero(degree == 0)


def wall_segments(n: int, open_row: np.ndarray) -> np.ndarray:
    """Line segments ``float [k, 2, 2]`` for every closed edge plus the outer border."""
    ends = edge_endpoints(n)
    closed = ends[np.asarray(open_row) == 0]
    r, c = np.divmod(closed[:, 0].astype(np.float64), n)
    horizontal = closed[:, 1] == closed[:, 0] + 1  # wall between (r,c),(r,c+1): the line x=c+1
    start = np.stack([np.where(horizontal, c + 1, c), np.where(horizontal, r, r + 1)], axis=1)
    inner = np.stack([start, np.stack([c + 1, r + 1], axis=1)], axis=1)  # both end at (c+1, r+1)
    border = np.array([[[0, 0], [n, 0]], [[n, 0], [n, n]], [[n, n], [0, n]], [[0, n], [0, 0]]],
                      dtype=np.float64)
    return np.concatenate([inner.reshape(-1, 2, 2), border])


def fitted_suptitle(fig: Figure, text: str, fontsize: float = 10.0) -> Text:
    """``fig.suptitle(text)`` broken into lines between words so that no line is wider than the
    figure (measured with the figure's renderer), and made smaller if one word alone is."""
    renderer = fig.canvas.get_renderer()
    limit = 0.96 * fig.bbox.width
    title = fig.suptitle("", fontsize=fontsize)

    def width(s: str) -> float:
        title.set_text(s)
        return title.get_window_extent(renderer).width

    lines: list[str] = []
    for word in text.split():
        if lines and width(f"{lines[-1]} {word}") <= limit:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    title.set_text("\n".join(lines))
    while fontsize > 5 and title.get_window_extent(renderer).width > limit:
        fontsize -= 0.5
        title.set_fontsize(fontsize)
    return title
