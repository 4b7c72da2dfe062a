"""Probe reports: metrics JSON, score-vs-layer CSVs and per-cell/per-edge F1 maps on the grid.

Everything is written into ``<out>.tmp/`` and swapped in at the end (mazesearch.io.atomic_dir).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from mazesearch.io import atomic_dir
from mazesearch.viz.render import render_cell_heatmap, render_edge_heatmap

POSITIVE_CLASS = {"future_path": "still ahead", "on_solution": "on a shortest path", "walls": "open"}


def _by_layer_csv(probe: dict) -> str:
    main = probe["main_score"]
    lines = ["layer_idx,layer,trained,random_init,permuted"]
    for i, (layer, runs) in enumerate(probe["layers"].items()):
        cells = [runs[run][main] for run in ("trained", "random_init", "permuted")]
        lines.append(f"{i},{layer}," + ",".join("" if v is None else repr(float(v)) for v in cells))
    return "\n".join(lines) + "\n"


def write_reports(metrics: dict, per_output_f1: dict, grid_n: int, out_dir: Path) -> None:
    """Everything into ``<out_dir>.tmp``, then swap it in place of ``out_dir``."""
    with atomic_dir(out_dir) as tmp:
        _write_all(metrics, per_output_f1, grid_n, tmp)


def _write_all(metrics: dict, per_output_f1: dict, grid_n: int, tmp: Path) -> None:
    (tmp / "by_layer").mkdir()
    text = json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False)
    (tmp / "metrics.json").write_text(text + "\n")
    for name, probe in metrics.items():
        (tmp / "by_layer" / f"{name}.csv").write_text(_by_layer_csv(probe))
    maps = {}
    for name, by_layer in per_output_f1.items():
        layer = metrics[name]["best_layer"] or next(iter(metrics[name]["layers"]))
        values = np.asarray(by_layer[layer], dtype=np.float64)
        maps[name] = {"layer": layer, "values": [None if math.isnan(v) else float(v) for v in values]}
        title = f"{name}: F1 of '{POSITIVE_CLASS.get(name, 'true')}' at {layer}"
        if name == "walls":
            render_edge_heatmap(values, grid_n, tmp / f"{name}_f1.png", title=title)
        else:
            render_cell_heatmap(values, grid_n, tmp / f"{name}_f1.png", title=title)
    (tmp / "per_output_f1.json").write_text(json.dumps(maps, indent=2, sort_keys=True) + "\n")
