"""Pictures of the interpretability stages (heads, geometry): values on one maze with its walls,
2-D projections of cell embeddings, and of residual streams coloured by a label.

Conventions as the rest of mazesearch.viz (figure.py): cell ``r*n + c`` is the unit square
``[c, c+1] x [r, r+1]``, row 0 at the top; Agg canvas; PNGs without metadata (byte-identical for
equal inputs)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from mazesearch.viz.figure import (
    blocked_cells, check_colour_scale, check_grid_n, check_values, fitted_suptitle, new_figure, save,
)
from mazesearch.viz.heatmaps import draw_cell_values, empty_panel
from mazesearch.viz.overlay import draw_maze


def render_maze_maps(panels: dict[str, np.ndarray | str], grid_n: int, open_row: np.ndarray,
                     out_png: str | os.PathLike, *, origin: int | None = None, target: int | None = None,
                     path: np.ndarray | None = None, marks: tuple[int, ...] | list[int] = (),
                     title: str = "", vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis",
                     colorbar_label: str = "") -> None:
    """Per-cell values (``float [grid_n**2]``, or a string: an empty panel with that text) side by
    side on one colour scale, under the one maze overlay (mazesearch.viz.overlay.draw_maze): the
    maze's walls (``open_row`` uint8 [E]), cells with no open edge greyed, its stored path (green),
    origin (white disc), target (orange cross) and the ``marks`` cells outlined in dashed red (e.g.
    the query's cell)."""
    n = check_grid_n(grid_n)
    if not panels:
        raise ValueError("panels is empty")
    panels = {k: v if isinstance(v, str) else check_values(v, n * n, f"grid_n**2 cells for grid_n={n}")
              for k, v in panels.items()}
    check_colour_scale(vmin, vmax, cmap)
    open_row = np.asarray(open_row)
    carved = np.ones(n * n, bool)
    carved[blocked_cells(n, open_row)] = False  # greyed by the overlay: no value printed there
    k = len(panels)
    fig = new_figure(0.9 + 3.2 * k, 4.3)
    axes = fig.subplots(1, k, squeeze=False).ravel()
    for ax, (name, values) in zip(axes, panels.items()):
        if isinstance(values, str):
            empty_panel(ax, n, values, fontsize=7, wrap=True)
        else:
            draw_cell_values(ax, values, n, vmin=vmin, vmax=vmax, cmap=cmap, annotate=carved & (n <= 6),
                             fontsize=8 if n <= 5 else 6.5)
            draw_maze(ax, n, open_row, origin, target, path, on_map=True, marks=marks, pad=0.0)
        ax.set_title(name, fontsize=9)
    fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap=colormaps[cmap]), ax=list(axes), shrink=0.85,
                 label=colorbar_label)
    if title:
        fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)


def render_embedding_pca(panels: dict[str, np.ndarray], grid_n: int, out_png: str | os.PathLike, *,
                         title: str = "") -> None:
    """Cell embeddings projected to 2-D (``float [grid_n**2, 2]`` per panel, row = cell r*n+c),
    each point labelled ``(r,c)`` and coloured by its column, lattice neighbours joined by grey
    lines: a learnt lattice looks like a (bent) grid, a random one like a tangle."""
    n = check_grid_n(grid_n)
    k = len(panels)
    fig = new_figure(0.4 + 4.2 * k, 4.6)
    axes = fig.subplots(1, k, squeeze=False).ravel()
    r, c = np.divmod(np.arange(n * n), n)
    right = [(i, i + 1) for i in range(n * n) if c[i] < n - 1]
    down = [(i, i + n) for i in range(n * n) if r[i] < n - 1]
    colours = colormaps["viridis"](c / max(1, n - 1))
    for ax, (name, xy) in zip(axes, panels.items()):
        xy = np.asarray(xy, dtype=np.float64)
        if xy.shape != (n * n, 2):
            raise ValueError(f"panel {name!r}: expected [{n * n}, 2] points, got {list(xy.shape)}")
        ax.add_collection(LineCollection(xy[np.array(right + down)], colors="#b0b0b0", linewidths=0.8, zorder=1))
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=18, zorder=2, edgecolors="none")
        for i in range(n * n):
            ax.annotate(f"({r[i]},{c[i]})", xy[i], fontsize=6 if n > 5 else 7, ha="center", va="bottom",
                        xytext=(0, 2), textcoords="offset points", zorder=3)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("PC 1", fontsize=8)
        ax.set_ylabel("PC 2", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.autoscale_view()
    if title:
        fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)


def render_residual_pca(panels: dict[str, np.ndarray], current_cell: np.ndarray, ahead: np.ndarray,
                        grid_n: int, ahead_cell: int, out_png: str | os.PathLike, *, title: str = "") -> None:
    """Residual streams in 2-D (``float [N, 2]`` per model, one row per path position), one row
    of panels per model: left coloured by the position's current cell, right by whether cell
    ``ahead_cell`` is still ahead on the path (``ahead`` bool [N])."""
    n = check_grid_n(grid_n)
    current_cell, ahead = np.asarray(current_cell), np.asarray(ahead, dtype=bool)
    models = list(panels)
    fig = new_figure(8.6, 0.6 + 3.6 * len(models))
    axes = fig.subplots(len(models), 2, squeeze=False)
    few = n * n <= 20
    cell_cmap = colormaps["tab20"] if few else colormaps["viridis"]
    cell_colour = cell_cmap(current_cell % 20) if few else cell_cmap(current_cell / max(1, n * n - 1))
    ar, ac = divmod(int(ahead_cell), n)
    for row, model in enumerate(models):
        xy = np.asarray(panels[model], dtype=np.float64)
        if xy.shape != (len(current_cell), 2):
            raise ValueError(f"panel {model!r}: expected [{len(current_cell)}, 2] points, got {list(xy.shape)}")
        left, right = axes[row]
        left.scatter(xy[:, 0], xy[:, 1], c=cell_colour, s=5, edgecolors="none")
        left.set_title(f"{model}: coloured by current cell", fontsize=9)
        for flag, colour, label in ((False, "#9e9e9e", "no"), (True, "#d62728", "yes")):
            pick = ahead == flag
            right.scatter(xy[pick, 0], xy[pick, 1], c=colour, s=5, edgecolors="none", label=label)
        right.set_title(f"{model}: is ({ar},{ac}) still ahead on the path?", fontsize=9)
        right.legend(fontsize=7, markerscale=2.5, loc="best")
        for ax in (left, right):
            ax.tick_params(labelsize=7)
            ax.set_xlabel("PC 1", fontsize=8)
            ax.set_ylabel("PC 2", fontsize=8)
    if few:
        cells = sorted(set(current_cell.tolist()))
        handles = [Line2D([], [], ls="", marker="o", ms=5, color=cell_cmap(c % 20), label=f"({c // n},{c % n})")
                   for c in cells]
        fig.legend(handles=handles, loc="outside right center", fontsize=6, title="cell", title_fontsize=7)
    else:
        fig.colorbar(ScalarMappable(Normalize(0, n * n - 1), cmap=cell_cmap), ax=axes[:, 0].tolist(),
                     label="current cell r*n+c", shrink=0.8)
    if title:
        fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)
