"""Maps of residual clusters: one 2-D embedding (t-SNE) per layer and model, the points coloured
by a row label, the trained model beside its random-init control (stage clusters,
docs/interp.md). Deterministic PNGs (mazesearch.viz.figure)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import BoundaryNorm
from matplotlib.lines import Line2D

from mazesearch.viz.figure import fitted_suptitle, new_figure, save

_BINARY = ("#9e9e9e", "#d62728")  # 0 grey, 1 red


def render_cluster_maps(points: dict[str, list[np.ndarray]], colour: np.ndarray, layers: list[str],
                        panel_titles: dict[str, list[str]], label: str, out_png: str | os.PathLike, *,
                        title: str = "") -> None:
    """One row of panels per model (``points``: model -> one ``float [m, 2]`` per layer), one
    column per layer; every point coloured by its integer class ``colour`` ``[m]`` (two classes:
    grey / red with a legend; more: viridis with a discrete colour bar). ``panel_titles``: model ->
    one title per layer (e.g. the layer's score)."""
    colour = np.asarray(colour, dtype=np.int64)
    models = list(points)
    for model in models:
        if len(points[model]) != len(layers) or len(panel_titles[model]) != len(layers):
            raise ValueError(f"model {model!r}: need one map and one title per layer ({len(layers)})")
        for xy in points[model]:
            if np.shape(xy) != (len(colour), 2):
                raise ValueError(f"model {model!r}: expected [{len(colour)}, 2] points, got {list(np.shape(xy))}")
    classes = np.unique(colour)
    binary = len(classes) <= 2 and set(classes.tolist()) <= {0, 1}
    lo, hi = int(classes.min()), int(classes.max())
    cmap = colormaps["viridis"].resampled(hi - lo + 1)
    norm = BoundaryNorm(np.arange(lo - 0.5, hi + 1.5), cmap.N)
    fig = new_figure(1.0 + 2.6 * len(layers), 0.9 + 2.7 * len(models))
    axes = fig.subplots(len(models), len(layers), squeeze=False)
    order = np.argsort(colour, kind="stable")  # class by class: the same overplotting in every panel
    for i, model in enumerate(models):
        for j, layer in enumerate(layers):
            ax, xy = axes[i, j], np.asarray(points[model][j], dtype=np.float64)[order]
            c = np.asarray(_BINARY)[colour[order]] if binary else cmap(norm(colour[order]))
            ax.scatter(xy[:, 0], xy[:, 1], c=c, s=4, edgecolors="none")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(panel_titles[model][j], fontsize=8)
            if j == 0:
                ax.set_ylabel(model, fontsize=9)
    if binary:
        handles = [Line2D([], [], ls="", marker="o", ms=5, color=_BINARY[v], label=f"{label} = {v}") for v in (0, 1)]
        fig.legend(handles=handles, loc="outside right center", fontsize=7)
    else:
        bar = fig.colorbar(ScalarMappable(norm, cmap=cmap), ax=axes, shrink=0.8, label=label)
        bar.set_ticks(np.arange(lo, hi + 1, max(1, (hi - lo + 1) // 10)))
    if title:
        fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)
