"""Values on the maze grid: one per cell (a coloured square) or one per lattice edge (a coloured
segment between cell centres), alone or as maps side by side on one colour scale, e.g. a probe's
test F1 for the trained model beside its controls."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.patches import Rectangle

from mazesearch.data.maze import edge_endpoints, n_edges
from mazesearch.viz.figure import (
    NAN_COLOUR, centres, check_colour_scale, check_grid_n, check_values, fitted_suptitle, maze_axes, new_figure,
    save, shade_cells,
)

MAP_IN = 3.0  # width of one map beside others, inches


def _text_colour(rgba: np.ndarray) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def draw_cell_values(ax: Axes, values: np.ndarray, n: int, *, vmin: float, vmax: float, cmap: str,
                     annotate: bool | np.ndarray, fontsize: float = 9.0) -> ScalarMappable:
    """``values`` float [n*n], NaN = undefined (grey, hatched), each value printed on its cell when
    ``annotate`` (True: every cell; a bool [n*n] mask: those cells). Returns the image (for a
    colour bar)."""
    colormap = colormaps[cmap].with_extremes(bad=NAN_COLOUR)
    norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
    grid = np.ma.masked_invalid(values.reshape(n, n))
    image = ax.imshow(grid, cmap=colormap, norm=norm, extent=(0, n, n, 0),
                      interpolation="nearest", origin="upper")
    maze_axes(ax, n, 0.0)
    shade_cells(ax, np.flatnonzero(np.isnan(values)), n, facecolor="none", edgecolor="#8c8c8c",
                hatch="//", linewidth=0.0)
    printed = np.broadcast_to(np.asarray(annotate, dtype=bool), values.shape)
    for cell, v in enumerate(values):
        if printed[cell]:
            r, c = divmod(cell, n)
            text, colour = ("n/a", "#555555") if np.isnan(v) else (
                f"{v:.2f}", _text_colour(np.asarray(colormap(norm(v)))))
            ax.text(c + 0.5, r + 0.5, text, ha="center", va="center", fontsize=fontsize, color=colour)
    return image


def draw_edge_values(ax: Axes, values: np.ndarray, n: int, *, vmin: float, vmax: float, cmap: str,
                     cell_pt: float) -> ScalarMappable:
    """``values`` float [E] in canonical edge order, each drawn between its cell centres; NaN
    edges as grey dots. Returns the coloured segments (for a colour bar)."""
    maze_axes(ax, n, 0.05)
    ax.add_patch(Rectangle((0, 0), n, n, facecolor="#f7f7f7", edgecolor="#bdbdbd", lw=0.8,
                           zorder=0))
    segments = centres(edge_endpoints(n).ravel(), n).reshape(-1, 2, 2)  # [E, 2 ends, (x, y)]
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
    dots = centres(np.arange(n * n), n)
    ax.plot(dots[:, 0], dots[:, 1], "o", color="#4d4d4d", ms=max(1.0, 0.08 * cell_pt),
            zorder=3)
    return lines


def empty_panel(ax: Axes, n: int, text: str, fontsize: float = 8.0, wrap: bool = False) -> None:
    """A dashed empty lattice with ``text`` in its middle (e.g. why a control has no map)."""
    maze_axes(ax, n, 0.05)
    ax.add_patch(Rectangle((0, 0), n, n, facecolor="none", edgecolor="#bdbdbd", lw=0.8, ls="--"))
    ax.text(n / 2, n / 2, text, ha="center", va="center", fontsize=fontsize, color="#555555", wrap=wrap)


def render_maps(
    panels: dict[str, np.ndarray | str],
    grid_n: int,
    out_png: str | os.PathLike,
    *,
    on: str = "cells",
    title: str = "",
    vmin: float = 0,
    vmax: float = 1,
    cmap: str = "viridis",
    colorbar_label: str = "",
) -> None:
    """Maps of one quantity side by side, on one colour scale with one colour bar.

    ``panels`` maps a panel title to its values: ``float [grid_n**2]`` (cell r*n+c) when
    ``on="cells"``, ``float [2n(n-1)]`` (maze.py's edge order) when ``on="edges"``; NaN =
    undefined (grey). A string instead of values leaves the panel empty with that text (e.g. why
    a control has no map). Values outside [vmin, vmax] take the end colours; small grids also
    print each cell's value. The title is broken into lines to fit the figure.
    """
    if on not in ("cells", "edges"):
        raise ValueError(f"on must be 'cells' or 'edges', got {on!r}")
    if not panels:
        raise ValueError("panels is empty: give at least one {title: values}")
    n = check_grid_n(grid_n)
    size, what = (n * n, f"grid_n**2 cells for grid_n={n}") if on == "cells" else (
        n_edges(n), f"2*n*(n-1) lattice edges for grid_n={n}")
    panels = {str(k): v if isinstance(v, str) else check_values(v, size, what) for k, v in panels.items()}
    check_colour_scale(vmin, vmax, cmap)

    k = len(panels)
    map_in = 3.4 if k == 1 else MAP_IN
    fig = new_figure(4.6 if k == 1 else 0.9 + MAP_IN * k, 4.0 if k == 1 else 3.9)
    axes = fig.subplots(1, k, squeeze=False).ravel()
    cell_pt = map_in * 72 / n
    for ax, (name, values) in zip(axes, panels.items()):
        if isinstance(values, str):
            empty_panel(ax, n, values)
        elif on == "cells":
            draw_cell_values(ax, values, n, vmin=vmin, vmax=vmax, cmap=cmap, annotate=n <= (8 if k == 1 else 6),
                               fontsize=9 if n <= 5 else 7.5)
        else:
            draw_edge_values(ax, values, n, vmin=vmin, vmax=vmax, cmap=cmap, cell_pt=cell_pt)
        if name:
            ax.set_title(name, fontsize=9)
    scale = ScalarMappable(Normalize(vmin, vmax), cmap=colormaps[cmap])
    fig.colorbar(scale, ax=list(axes), shrink=0.85, label=colorbar_label)
    if title:
        fitted_suptitle(fig, title, 10.0)
    save(fig, out_png)


def render_cell_heatmap(values: np.ndarray, grid_n: int, out_png: str | os.PathLike, *, title: str = "",
                        vmin: float = 0, vmax: float = 1, cmap: str = "viridis") -> None:
    """One value per cell (``float [grid_n**2]``, cell r*n+c) as a coloured grid with colour bar.

    NaN cells are grey and hatched; values outside [vmin, vmax] take the end colours. Grids up
    to 8 x 8 also print each value."""
    render_maps({"": values}, grid_n, out_png, on="cells", title=title, vmin=vmin, vmax=vmax, cmap=cmap)


def render_edge_heatmap(values: np.ndarray, grid_n: int, out_png: str | os.PathLike, *, title: str = "",
                        vmin: float = 0, vmax: float = 1, cmap: str = "viridis") -> None:
    """One value per lattice edge (``float [2n(n-1)]``, maze.py's canonical order) as coloured
    segments between cell centres, with colour bar. NaN edges are drawn as grey dots."""
    render_maps({"": values}, grid_n, out_png, on="edges", title=title, vmin=vmin, vmax=vmax, cmap=cmap)
