"""Probe reports: the headline metric, the by-layer details, score-vs-layer CSVs and
per-cell/per-edge F1 maps on the grid, the trained probe's beside its two controls' (docs/probes.md,
"Outputs").

Everything is written into ``<out>.tmp/`` and swapped in at the end (mazesearch.io.atomic_dir).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from mazesearch.io import atomic_dir, write_json_atomic
from mazesearch.viz.heatmaps import render_maps

POSITIVE_CLASS = {"future_path": "still ahead", "on_solution": "on a shortest path", "walls": "open"}
RUNS = ("trained", "random_init", "permuted")
PANEL = {"trained": "trained model", "random_init": "control: random-init model",
         "permuted": "control: permuted labels"}


def headline(results: dict) -> dict:
    """The DVC metric, per probe: ``best_layer`` (chosen on val), the trained probe's main
    score on test at that layer, and the selectivity against each control there (None when the
    control is void or undefined, or no layer is defined)."""
    out = {}
    for name, probe in results.items():
        best = probe["best_layer"]
        at = probe["layers"][best] if best is not None else None
        out[name] = {
            "best_layer": best,
            "test_score": at["test"]["trained"][probe["main_score"]] if at else None,
            "selectivity_vs_random_init": at["selectivity"]["vs_random_init"] if at else None,
            "selectivity_vs_permuted": at["selectivity"]["vs_permuted"] if at else None,
        }
    return out


def by_layer_csv(probe: dict) -> str:
    """The main score per layer: test score of each run (blank when undefined, or for a void
    control) and the trained probe's val score (what picked best_layer)."""
    main, void = probe["main_score"], probe["void_controls"]
    lines = ["layer_idx,layer," + ",".join(RUNS) + ",trained_val"]
    for i, (layer, r) in enumerate(probe["layers"].items()):
        cells = [None if run in void else r["test"][run][main] for run in RUNS] + [r["val"]["trained"][main]]
        lines.append(f"{i},{layer}," + ",".join("" if v is None else repr(float(v)) for v in cells))
    return "\n".join(lines) + "\n"


def write_reports(results: dict, per_output_f1: dict, grid_n: int, out_dir: Path) -> None:
    """Everything into ``<out_dir>.tmp``, then swap it in place of ``out_dir``."""
    with atomic_dir(out_dir) as tmp:
        _write_all(results, per_output_f1, grid_n, tmp)


def _write_all(results: dict, per_output_f1: dict, grid_n: int, tmp: Path) -> None:
    (tmp / "by_layer").mkdir()
    (tmp / "metrics").mkdir()
    for name, head in headline(results).items():  # one file per probe: the same four columns
        write_json_atomic(tmp / "metrics" / f"{name}.json", head)  # in `dvc metrics show`, one row per probe
    write_json_atomic(tmp / "details.json", results)  # layers in model order
    for name, probe in results.items():
        (tmp / "by_layer" / f"{name}.csv").write_text(by_layer_csv(probe))
    maps = {}
    for name, by_layer in per_output_f1.items():
        layer = results[name]["best_layer"] or next(iter(results[name]["layers"]))
        void = results[name]["void_controls"]
        runs = {run: np.asarray(by_layer[layer][run], dtype=np.float64) for run in RUNS if run not in void}
        as_json = {run: [None if math.isnan(v) else float(v) for v in values] for run, values in runs.items()}
        maps[name] = {"layer": layer, "values": as_json["trained"],
                      **{run: as_json.get(run) for run in RUNS[1:]}}  # null: a void control
        panels = {}
        for run in RUNS:
            if run in void:
                panels[PANEL[run]] = "no map: void control\n" + textwrap.fill(f"({void[run]})", 30)
                continue
            values = runs[run]
            mean = f"mean F1 {np.nanmean(values):.2f}" if np.isfinite(values).any() else "F1 undefined"
            panels[f"{PANEL[run]}\n{mean}"] = values
        what = "edge" if name == "walls" else "cell"
        title = f"{name}: test F1 of '{POSITIVE_CLASS.get(name, 'true')}' per {what} at {layer}"
        render_maps(panels, grid_n, tmp / f"{name}_f1.png", on=what + "s", title=title, colorbar_label="test F1")
    write_json_atomic(tmp / "per_output_f1.json", maps, sort_keys=True)
