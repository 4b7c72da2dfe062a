"""Per layer x head maps of a ratio (e.g. heads' bottleneck attention), trained beside random-init,
with one maze that shows which cells the ratio compares. Conventions as figure.py (Agg canvas,
PNGs without metadata)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps

from mazesearch.viz.figure import NAN_COLOUR, check_grid_n, fitted_suptitle, new_figure, save
from mazesearch.viz.heatmaps import draw_cell_values
from mazesearch.viz.overlay import draw_maze


def render_ratio_maps(maps: dict[str, np.ndarray], grid_n: int, open_row: np.ndarray, cells: np.ndarray,
                      out_png: str | os.PathLike, *, origin: int, target: int, path: np.ndarray,
                      marks: np.ndarray | list[int], maze_title: str, title: str,
                      ratio_label: str = "ratio (0 = no preference)") -> None:
    """One panel per entry of ``maps`` (``float [layer, head]`` ratios, NaN = undefined) on one
    log2 colour scale centred at 1, then the maze ``open_row`` (uint8 [E]) with ``cells``
    (float [grid_n**2]: +1 / -1 for the two compared sets, 0 elsewhere) and ``marks`` outlined."""
    n = check_grid_n(grid_n)
    logs = {k: np.log2(np.where(np.asarray(v, float) > 0, v, np.nan)) for k, v in maps.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in logs.values()] + [np.array([0.25])])
    span = float(np.abs(finite).max())
    cmap = colormaps["RdBu_r"].with_extremes(bad=NAN_COLOUR)
    fig = new_figure(3.2 * (len(maps) + 1) + 1.6, 4.0)
    axes = fig.subplots(1, len(maps) + 1, squeeze=False, width_ratios=[1.0] * len(maps) + [1.1]).ravel()
    image = None
    for ax, (name, values) in zip(axes, logs.items()):
        L, H = values.shape
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-span, vmax=span, aspect="auto",
                          interpolation="nearest")
        ax.set_xticks(range(H), [f"H{h}" for h in range(H)], fontsize=8)
        ax.set_yticks(range(L), [f"L{layer}" for layer in range(L)], fontsize=8)
        for (r, c), v in np.ndenumerate(np.asarray(maps[name], float)):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if abs(logs[name][r, c]) > 0.6 * span else "black")
        ax.set_title(name, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes[:-1]), shrink=0.85, label=f"log2 {ratio_label}")
    ax = axes[-1]
    draw_cell_values(ax, np.asarray(cells, float), n, vmin=-1.5, vmax=1.5, cmap="RdBu_r", annotate=False)
    draw_maze(ax, n, np.asarray(open_row), origin, target, path, on_map=True, marks=list(marks), pad=0.0)
    ax.set_title(maze_title, fontsize=8)
    fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)
