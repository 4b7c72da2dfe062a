"""Score grids side by side: one panel per model or control, rows x columns of coloured,
annotated cells on one colour scale (the geometry stage's SVD alignment per layer and matrix).

Agg canvas, PNG without metadata (mazesearch.viz.figure): equal inputs, byte-identical files."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, to_rgba
from matplotlib.patches import Rectangle

from mazesearch.viz.figure import NAN_COLOUR, check_colour_scale, fitted_suptitle, new_figure, save


def render_score_grids(panels: dict[str, np.ndarray], row_labels: list[str], col_labels: list[str],
                       out_png: str | os.PathLike, *, marks: list[tuple[int, int]] = (), title: str = "",
                       vmin: float = 0.0, vmax: float = 1.0, cmap: str = "viridis", colorbar_label: str = "") -> None:
    """Each panel ``float [rows, cols]`` (NaN: grey, unannotated) as coloured cells with their value
    printed, panels side by side on one colour scale; ``marks`` (row, col) cells outlined in red
    in every panel (e.g. the heads a headline averages)."""
    if not panels:
        raise ValueError("panels is empty")
    check_colour_scale(vmin, vmax, cmap)
    shape = (len(row_labels), len(col_labels))
    grids = {}
    for name, grid in panels.items():
        grids[name] = np.asarray(grid, dtype=np.float64)
        if grids[name].shape != shape:
            raise ValueError(f"panel {name!r}: expected {list(shape)} values, got {list(grids[name].shape)}")
    colours = colormaps[cmap]
    norm = Normalize(vmin, vmax)
    k = len(grids)
    fig = new_figure(1.0 + k * (0.9 + 0.42 * shape[1]), 1.6 + 0.42 * shape[0])
    axes = fig.subplots(1, k, squeeze=False).ravel()
    for ax, (name, grid) in zip(axes, grids.items()):
        shown = np.where(np.isnan(grid), vmin, grid)
        rgba = colours(norm(shown))
        rgba[np.isnan(grid)] = to_rgba(NAN_COLOUR)
        ax.imshow(rgba, aspect="auto", interpolation="nearest")
        for (r, c), v in np.ndenumerate(grid):
            if not np.isnan(v):  # dark text on the light end of the scale
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if norm(v) > 0.6 else "white")
        for r, c in marks:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="#e01b1b", lw=1.6))
        ax.set_xticks(range(shape[1]), col_labels, rotation=90, fontsize=7)
        ax.set_yticks(range(shape[0]), row_labels, fontsize=7)
        ax.set_title(name, fontsize=9)
    fig.colorbar(ScalarMappable(norm, cmap=colours), ax=list(axes), shrink=0.85, label=colorbar_label)
    if title:
        fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)
