"""Parallel paths per layer (stage parallel, docs/interp.md): each version's probe score (the
alternative branches, the true path ahead, the branches already passed) beside both controls, and
each version's gap over the stronger control with its peak marked. Deterministic PNGs
(mazesearch.viz.figure)."""

from __future__ import annotations

import os

import numpy as np

from mazesearch.viz.figure import fitted_suptitle, new_figure, save

_COLOURS = {"alternatives": "#d62728", "ahead": "#2ca02c", "discarded": "#7f7f7f"}
_RUN_STYLE = {"trained": ("-", "o", "trained"), "random_init": ("--", "s", "random-init model"),
              "permuted": (":", "^", "permuted labels")}


def _values(xs: list) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=np.float64)


def render_parallel(scores: dict[str, dict[str, list]], gaps: dict[str, list], peaks: dict[str, int | None],
                    titles: dict[str, str], layer_ticks: list[str], out_png: str | os.PathLike, *,
                    title: str = "") -> None:
    """One panel per version (``scores``: version -> run -> one score per layer, None undefined),
    trained beside the controls on one scale; a last panel with every version's gap over the
    stronger control (``gaps``: version -> per layer), its peak layer (``peaks``: index) starred."""
    versions = list(scores)
    for v in versions:
        for run, ys in scores[v].items():
            if len(ys) != len(layer_ticks):
                raise ValueError(f"{v} {run}: need one score per layer ({len(layer_ticks)}), got {len(ys)}")
    x = np.arange(len(layer_ticks))
    fig = new_figure(1.5 + 3.3 * (len(versions) + 1), 3.6)
    axes = fig.subplots(1, len(versions) + 1, squeeze=False)[0]
    lo = np.nanmin([np.nanmin(np.r_[_values(ys), 0.5]) for v in versions for ys in scores[v].values()])
    hi = np.nanmax([np.nanmax(np.r_[_values(ys), 0.5]) for v in versions for ys in scores[v].values()])
    for ax, v in zip(axes, versions):
        for run, ys in scores[v].items():
            ls, marker, name = _RUN_STYLE[run]
            ax.plot(x, _values(ys), ls=ls, marker=marker, ms=4, color=_COLOURS.get(v, "black"),
                    alpha=1.0 if run == "trained" else 0.6, label=name)
        ax.axhline(0.5, color="black", lw=0.6, alpha=0.4)
        ax.set_ylim(lo - 0.02, hi + 0.02)
        ax.set_title(titles.get(v, v), fontsize=9)
        ax.set_xticks(x, layer_ticks, fontsize=7, rotation=30)
        ax.set_ylabel("test balanced accuracy (mean over cells)", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[-1]
    for v in versions:
        g = _values(gaps[v])
        ax.plot(x, g, marker="o", ms=4, color=_COLOURS.get(v, "black"), label=v)
        if peaks.get(v) is not None:
            ax.plot([peaks[v]], [g[peaks[v]]], marker="*", ms=14, color=_COLOURS.get(v, "black"), ls="")
    ax.axhline(0.0, color="black", lw=0.6, alpha=0.4)
    ax.set_title("gap over the stronger control (star: peak)", fontsize=9)
    ax.set_xticks(x, layer_ticks, fontsize=7, rotation=30)
    ax.set_ylabel("trained - max(random-init, permuted)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    if title:
        fitted_suptitle(fig, title, 9.0)
    save(fig, out_png)
