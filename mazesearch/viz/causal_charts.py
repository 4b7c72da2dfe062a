"""Pictures of the causal stages: patching maps (layer x position group, layer x head), path
patching beside random paths, steering success against strength, faithfulness curves."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps

from mazesearch.viz.figure import BAD_COLOUR, NAN_COLOUR, fitted_suptitle, new_figure, save


def _annotated_map(ax, values: np.ndarray, rows: list[str], cols: list[str], vmin: float, vmax: float):
    cmap = colormaps["RdBu"].with_extremes(bad=NAN_COLOUR)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto",
                      interpolation="nearest")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for (r, c), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(v - (vmin + vmax) / 2) > 0.35 * (vmax - vmin) else "black")
    return image


def render_patching(maps: dict[str, np.ndarray], rows: list[str], cols: list[str], out_png: str | os.PathLike, *,
                    title: str, xlabel: str, ylabel: str) -> None:
    """One panel per entry of ``maps`` (e.g. "target_move, denoise"), each ``[rows, cols]`` of
    normalised logit difference on one diverging scale centred at 0.5 (0 = corrupt, 1 = clean)."""
    n = len(maps)
    fig = new_figure(0.55 * len(cols) * min(n, 2) + 2.0, (0.42 * len(rows) + 1.4) * ((n + 1) // 2) + 0.6)
    image = None
    for i, (name, values) in enumerate(maps.items()):
        ax = fig.add_subplot((n + 1) // 2, min(n, 2), i + 1)
        image = _annotated_map(ax, np.asarray(values, dtype=float), rows, cols, -0.25, 1.25)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=fig.axes, shrink=0.8, label="normalised logit difference (1 = clean)")
    fitted_suptitle(fig, title)
    save(fig, out_png)


def render_curves(panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]], out_png: str | os.PathLike, *,
                  title: str, xlabel: str, ylabel: str, ylim: tuple[float, float] = (0.0, 1.0),
                  logx: bool = False) -> None:
    """One panel per entry; each panel maps a series name to (x, y) arrays."""
    n = len(panels)
    fig = new_figure(3.4 * min(n, 4) + 0.4, 3.0 * ((n + 3) // 4) + 0.6)
    for i, (name, series) in enumerate(panels.items()):
        ax = fig.add_subplot((n + 3) // 4, min(n, 4), i + 1)
        for label, (x, y) in series.items():
            ax.plot(x, y, marker="o", markersize=3, linewidth=1.2, label=label)
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_ylim(*ylim)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fitted_suptitle(fig, title)
    save(fig, out_png)


def render_paths(paths: dict[str, tuple[float, np.ndarray]], out_png: str | os.PathLike, *, title: str) -> None:
    """One row per path (name -> (its restored fraction, the random paths' fractions [n])): the
    random paths as grey dots (jittered by a fixed rule, not an RNG) and their mean as a grey bar,
    the path itself as a red diamond; 0 = corrupt behaviour, 1 = clean."""
    names = list(paths)
    fig = new_figure(7.0, 0.55 * max(len(names), 1) + 1.6)
    ax = fig.add_subplot(1, 1, 1)
    for row, name in enumerate(names):
        own, rand = paths[name]
        rand = np.asarray(rand, dtype=float)
        if len(rand):
            jitter = (np.arange(len(rand)) % 5 - 2) * 0.06
            ax.scatter(rand, row + jitter, s=12, color="#9a9a9a", label="random paths" if row == 0 else None)
            ax.plot([rand.mean()] * 2, [row - 0.3, row + 0.3], color="#555555", linewidth=2,
                    label="random mean" if row == 0 else None)
        if np.isfinite(own):
            ax.scatter([own], [row], s=60, marker="D", color=BAD_COLOUR, zorder=3, label="path" if row == 0 else None)
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.axvline(1.0, color="black", linewidth=0.6, linestyle="--")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(max(len(names), 1) - 0.5, -0.5)
    if not names:
        ax.text(0.5, 0, "no path configured (patching.paths)", ha="center", va="center", fontsize=9)
    ax.set_xlabel("restored fraction of the logit difference (1 = clean)", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    if names:
        ax.legend(fontsize=7, loc="lower right")
    fitted_suptitle(fig, title)
    save(fig, out_png)
