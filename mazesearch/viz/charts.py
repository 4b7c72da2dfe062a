"""Line charts of rates with their intervals (e.g. exact-path rate against maze size)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps

from mazesearch.viz.figure import new_figure, save


def render_interval_lines(
    series: dict[str, tuple[list[float], list[float], list[float], list[float]]],
    out_png: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
) -> None:
    """One line per series through its points, with a vertical bar from low to high at each
    (e.g. a 95% interval). ``series`` maps a name to ``(x, values, lows, highs)``, one entry per
    point; NaN values are skipped. With no point at all the chart says so instead of failing
    (a profile without size suites)."""
    fig = new_figure(5.2, 3.6)
    ax = fig.add_subplot()
    colours = colormaps["tab10"].colors
    n_points = 0
    for s, (name, arrays) in enumerate(series.items()):
        xs, vals, lows, highs = (np.asarray(a, dtype=np.float64) for a in arrays)
        if not (xs.shape == vals.shape == lows.shape == highs.shape):
            raise ValueError(f"series {name!r}: x, values, lows and highs need one entry per point")
        ok = ~np.isnan(vals)
        n_points += int(ok.sum())
        if not ok.any():
            continue
        offset = (s - (len(series) - 1) / 2) * 0.05  # side by side, not on top of each other
        ax.errorbar(xs[ok] + offset, vals[ok], yerr=[vals[ok] - lows[ok], highs[ok] - vals[ok]], marker="o",
                    ms=4, capsize=3, lw=1.5, color=colours[s % 10], label=name)
    if n_points == 0:
        ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(fontsize=8, frameon=False)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    save(fig, out_png)
