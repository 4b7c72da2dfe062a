"""Pictures of the logit lens (curves over layers) and of direct logit attribution (bars), the
trained model beside its random-init control. Deterministic PNGs (mazesearch.viz.figure)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps

from mazesearch.viz.figure import fitted_suptitle, new_figure, save

_COLOURS = colormaps["tab10"].colors
_MASS_STYLE = {"correct": ("correct next cell", _COLOURS[2]), "dead_end": ("dead-end branches", _COLOURS[3]),
               "back": ("cell just left", _COLOURS[1]), "other_cells": ("other cells", _COLOURS[7]),
               "not_a_cell": ("not a cell", _COLOURS[4])}


def _nan(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def render_lens(layers: list[str], trained: dict, control: dict, chance_forks: float | None,
                out_png: str | os.PathLike, *, title: str = "") -> None:
    """Three panels over layers (0 = embeddings): accuracy at forks and corridors (trained solid,
    control dashed, blind-walker chance dotted); softmax mass at forks per kind (trained solid,
    control dashed); where the final answer settles (decision layer) at forks and corridors.
    ``trained``/``control``: mazesearch.interp.lens.summarize results (rounded)."""
    x = np.arange(len(layers))
    ticks = ["embed"] + [f"after L{i}" for i in range(len(layers) - 1)]
    fig = new_figure(13.0, 4.8)
    acc, mass, dec = fig.subplots(1, 3)
    for group, colour in (("forks", _COLOURS[0]), ("corridors", _COLOURS[1])):
        acc.plot(x, _nan(trained["accuracy"][group]), "-o", color=colour, ms=4, label=f"trained, {group}")
        acc.plot(x, _nan(control["accuracy"][group]), "--", color=colour, alpha=0.7, label=f"control, {group}")
    if chance_forks is not None:
        acc.axhline(chance_forks, color="0.4", ls=":", lw=1, label="chance at forks (1 / legal options)")
    acc.set(ylim=(0, 1.02), ylabel="argmax = correct next cell", title="next-cell accuracy per layer")
    for kind, (label, colour) in _MASS_STYLE.items():
        mass.plot(x, _nan(trained["fork_mass"][kind]), "-o", color=colour, ms=4, label=label)
        mass.plot(x, _nan(control["fork_mass"][kind]), "--", color=colour, alpha=0.6)
    mass.set(ylim=(0, 1.02), ylabel="mean softmax mass at forks",
             title="where the probability sits at forks\n(dashed: control)")
    width = 0.38
    for j, (group, colour) in enumerate((("forks", _COLOURS[0]), ("corridors", _COLOURS[1]))):
        counts = np.asarray(trained["decision_layer"][group]["counts"], dtype=np.float64)
        frac = counts / counts.sum() if counts.sum() else counts
        mean = trained["decision_layer"][group]["mean"]
        dec.bar(x + (j - 0.5) * width, frac, width, color=colour,
                label=f"{group} (mean {mean:.2f})" if mean is not None else group)
    dec.set(ylim=(0, 1.02), ylabel="fraction of positions", title="decision layer: the final answer\n"
            "is the argmax from here on (trained)")
    for ax in (acc, mass, dec):
        ax.set_xticks(x, ticks, fontsize=8)
        ax.set_xlabel("residual stream")
        ax.legend(fontsize=7, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
        ax.spines[["top", "right"]].set_visible(False)
    if title:
        fitted_suptitle(fig, title)
    save(fig, out_png)


def render_attribution(names: list[str], mean: list[float], std: list[float], control_mean: list[float],
                       out_png: str | os.PathLike, *, title: str = "") -> None:
    """Horizontal bars, one row per component in the given order (top row first): the trained
    model's mean contribution (± one std as a whisker) beside the control's mean."""
    k = len(names)
    fig = new_figure(7.0, 1.2 + 0.32 * max(k, 1))
    ax = fig.add_subplot()
    y = np.arange(k)
    h = 0.4
    ax.barh(y - h / 2, _nan(mean), h, xerr=_nan(std), color=_COLOURS[0], ecolor="0.5",
            error_kw={"lw": 0.8, "capsize": 2}, label="trained (mean ± std)")
    ax.barh(y + h / 2, _nan(control_mean), h, color="0.65", label="control: random-init (mean)")
    ax.axvline(0, color="0.2", lw=0.8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("contribution to logit(correct) − logit(best wrong neighbour)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        fitted_suptitle(fig, title)
    save(fig, out_png)
