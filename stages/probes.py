"""Stage probes: linear probes on cached activations, with controls -> reports/probes/.

Reads ``data/mazes/<activations.dataset>.parquet`` and the two activation stores
``data/activations/trained`` and ``data/activations/random`` (a random-init model of the same
architecture). Writes, all at once (into ``<out>.tmp`` then renamed):

    metrics.json            probe -> {best_layer, layers: layer -> {trained, random_init,
                            permuted, selectivity}} (docs/probes.md)
    by_layer/<probe>.csv    layer_idx, layer, trained, random_init, permuted (main score)
    per_output_f1.json      per-cell / per-edge F1 of the multilabel probes at their best layer
    <probe>_f1.png          those F1 values drawn on the maze grid
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np

from mazesearch.maze import read_mazes
from mazesearch.params import ActivationsSpec, ProbesSpec, load_params_or_exit
from mazesearch.probes import ProbeConfig, run_probes
from mazesearch.render import render_cell_heatmap, render_edge_heatmap


POSITIVE_CLASS = {"future_path": "still ahead", "on_solution": "on a shortest path", "walls": "open"}


def open_store(path: Path):
    # imported here: the cache module is C's; its reader must not pull in transformer_lens
    from mazesearch.activations import ActivationStore

    return ActivationStore(path)


def _by_layer_csv(probe: dict) -> str:
    main = probe["main_score"]
    lines = ["layer_idx,layer,trained,random_init,permuted"]
    for i, (layer, runs) in enumerate(probe["layers"].items()):
        cells = [runs[run][main] for run in ("trained", "random_init", "permuted")]
        lines.append(f"{i},{layer}," + ",".join("" if v is None else repr(float(v)) for v in cells))
    return "\n".join(lines) + "\n"


def write_reports(metrics: dict, per_output_f1: dict, grid_n: int, out_dir: Path) -> None:
    """Everything into ``<out_dir>.tmp``, then swap it in place of ``out_dir``."""
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "by_layer").mkdir(parents=True)
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
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--activations-dir", default="data/activations")
    ap.add_argument("--out-dir", default="reports/probes")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = params.probes or ProbesSpec()
    dataset = (params.activations or ActivationsSpec()).dataset
    cfg = ProbeConfig(**spec.model_dump())

    mazes = read_mazes(Path(args.mazes_dir) / f"{dataset}.parquet")
    acts = Path(args.activations_dir)
    trained, random_init = open_store(acts / "trained"), open_store(acts / "random")
    metrics, per_output_f1 = run_probes(mazes, trained, random_init, cfg, progress=not args.quiet)
    write_reports(metrics, per_output_f1, mazes.grid_n, Path(args.out_dir))

    for name, probe in metrics.items():
        best, main = probe["best_layer"], probe["main_score"]
        if best is None:
            print(f"{name:>15}: undefined (labels constant or no test rows)")
            continue
        runs = {run: probe["layers"][best][run][main] for run in ("trained", "random_init", "permuted")}
        print(f"{name:>15}: {main} at {best}: " + ", ".join(f"{k} {v}" for k, v in runs.items()))


if __name__ == "__main__":
    main()
