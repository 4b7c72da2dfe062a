"""Stage reach: per layer, how far (in maze moves) around the target and the current cell the
residual stream encodes, read by a linear probe and by a small MLP, each beside the random-init
and permuted-label controls -> reports/reach/.

Reads ``data/mazes/<activations.dataset>.parquet`` and the activation stores
``data/activations/{trained,random}``; params ``reach.*`` and ``probes.{test_frac, val_frac, C,
max_iter, seed}`` (the split and the fits of stage probes; seed is also the MLP's random_state).
Writes, all at once:

    metrics.json   headline (DVC metric): {target, current} -> layer -> linear reach, the largest k
                   at which "cell within distance k" is decoded with balanced accuracy >=
                   reach.min_balanced_accuracy and selectivity (vs the stronger control) >=
                   reach.min_selectivity (0: at no k); mlp_largest -> {target, current}: the MLP's
                   reach (same rule, on its gap over its own controls), largest over the layers
    details.json   per anchor: ks, split sizes, anchor_only baseline, layers -> {reach, by_k: k ->
                   {trained, random_init, permuted (test balanced accuracy), selectivity}}, and
                   mlp -> {split sizes, layers -> {reach, by_k: k -> {trained, random_init,
                   permuted, gap (vs each control and vs the stronger)}}}
    reach.csv      layer_idx, layer, reach_target, reach_current, reach_target_mlp, reach_current_mlp
                   (a DVC plot)
    reach.png      linear probe: balanced accuracy, layer x k, trained beside both controls;
                   passing cells boxed
    reach_mlp.png  the same for the MLP probe (its panel titles give the linear reach beside)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mazesearch.interp.activation_store import ActivationStore, open_checked_stores
from mazesearch.io import atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import ActivationsSpec, ProbesSpec, ReachSpec, load_params_or_exit

_RUN_TITLES = {"trained": "trained model", "random_init": "control: random-init model",
               "permuted": "control: permuted labels"}
_PROBE_TITLES = {"linear": "linear probe", "mlp": "MLP probe"}
_ANCHOR_TITLES = {"target": "within k of the target (at <PATH_START>)",
                  "current": "within k of the current cell (path positions)"}


def open_store(path: Path) -> ActivationStore:
    return ActivationStore(path)  # a seam: tests hand in planted stores


def render(details: dict, out_png: Path, title: str, probe: str = "linear") -> None:
    """2 x 3 heatmaps (anchor x run) of one probe's layer x k balanced accuracy on one 0.5..1
    scale; in the trained panels, the cells that pass both thresholds are boxed."""
    from matplotlib.patches import Rectangle

    from mazesearch.interp.reach import PROBES, _layers, score_grid
    from mazesearch.viz.figure import fitted_suptitle, new_figure, save

    layers = details["layers"]
    ticks = ["embed"] + [f"after L{i}" for i in range(len(layers) - 1)]
    th = details["thresholds"]
    fig = new_figure(13.0, 2.0 + 1.2 * len(layers) * 2)
    axes = fig.subplots(2, 3, squeeze=False)
    image = None
    for row, version in enumerate(("target", "current")):
        d, per_layer = details["versions"][version], _layers(details, version, probe)
        for col, run in enumerate(("trained", "random_init", "permuted")):
            ax, grid = axes[row, col], score_grid(details, version, run, probe)
            image = ax.imshow(np.ma.masked_invalid(grid), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                text = "–" if np.isnan(v) else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="black" if (not np.isnan(v) and v > 0.8) else "white")
            if run == "trained":
                for i, layer in enumerate(layers):
                    per = per_layer[layer]
                    for j, k in enumerate(d["ks"]):
                        s = per["by_k"][str(k)]
                        sel = s[PROBES[probe]]["vs_stronger"]
                        if (s["trained"] is not None and sel is not None and s["trained"] >= th["min_balanced_accuracy"]
                                and sel >= th["min_selectivity"]):
                            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
            ax.set_xticks(range(len(d["ks"])), [str(k) for k in d["ks"]], fontsize=8)
            ax.set_yticks(range(len(layers)), ticks if col == 0 else [""] * len(layers), fontsize=8)
            ax.set_xlabel("k (maze moves)", fontsize=8)
            reach = ", ".join(str(per_layer[l]["reach"]) for l in layers)
            other = ("" if probe == "linear" else
                     " (linear: " + ", ".join(str(d["layers"][l]["reach"]) for l in layers) + ")")
            ax.set_title(f"{_PROBE_TITLES[probe]}, {_RUN_TITLES[run]}\n{_ANCHOR_TITLES[version]}"
                         + (f"\nreach per layer: {reach}{other}" if run == "trained" else ""), fontsize=8)
    bar = fig.colorbar(image, ax=axes, shrink=0.8, label="test balanced accuracy (mean over cells)")
    bar.ax.axhline(th["min_balanced_accuracy"], color="red", lw=2)
    fitted_suptitle(fig, title)
    save(fig, out_png)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--activations-dir", default="data/activations")
    ap.add_argument("--out-dir", default="reports/reach")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec, probes = params.reach or ReachSpec(), params.probes or ProbesSpec()
    dataset = (params.activations or ActivationsSpec()).dataset
    from mazesearch.interp.reach import csv_table, headline, run_reach

    t0 = time.perf_counter()
    mazes, trained, random_init = open_checked_stores(args.mazes_dir, args.activations_dir, dataset, open_store)
    details = run_reach(mazes, trained, random_init, probes, spec)
    metrics = headline(details)
    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", {"dataset": dataset, **details})
        write_text_atomic(out / "reach.csv", csv_table(details))
        for probe, png, what in (("linear", "reach.png", "linear probe"),
                                 ("mlp", "reach_mlp.png", f"MLP probe ({spec.mlp_hidden} hidden units)")):
            render(details, out / png,
                   f"reach per layer, {what} ({len(mazes)} mazes of {dataset}, test mazes): balanced accuracy of "
                   f"'cell within k moves'; red box: >= {spec.min_balanced_accuracy} and >= "
                   f"{spec.min_selectivity} above the stronger control (red line on the scale)", probe)
    for version, per in metrics.items():
        print(f"reach {version:>11}: " + ", ".join(f"{l} {k}" for l, k in per.items()))
    print(f"reach: {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    stage_main(main)
