"""Stage clusters: per layer, how well the residual stream at path positions clusters by a row
label (distance to target, fork vs corridor, one cell still ahead), beside the random-init and
permuted-label controls -> reports/clusters/.

Reads ``data/mazes/<activations.dataset>.parquet`` and the activation stores
``data/activations/{trained,random}``; params ``clusters.*``. Writes, all at once:

    metrics.json   headline (DVC metric, 3 numbers): for label clusters.headline, at its best layer
                   (largest lead over the stronger control), the score (leave-one-maze-out kNN
                   purity minus chance) of the trained model, the random-init model and permuted labels
    details.json   method, row counts, the on-future-path cell, per label: classes, chance, best
                   layer, per layer and run the score and the raw purity
    by_layer.csv   layer_idx, layer, per label: trained, _random_init, _permuted scores (a DVC plot)
    maps.png       t-SNE of <= clusters.tsne_rows rows per layer, trained above random-init,
                   coloured by the headline label
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mazesearch.interp.activation_store import ActivationStore, open_checked_stores
from mazesearch.io import atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section

_LAYER = {"embed": "embeddings"}


def open_store(path: Path) -> ActivationStore:
    return ActivationStore(path)  # a seam: tests hand in planted stores


def _short(layer: str) -> str:
    return _LAYER.get(layer, layer.replace("blocks.", "after L").replace(".hook_resid_post", ""))


def render(details: dict, maps: dict, out_png: Path, title: str) -> None:
    from mazesearch.viz.cluster_charts import render_cluster_maps

    name = details["headline"]
    per = details["labels"][name]["layers"]
    titles = {run: [f"{_short(l)}: {per[l][run]:+.3f}" for l in details["layers"]]
              for run in ("trained", "random_init")}
    render_cluster_maps({"trained": maps["points"]["trained"], "random-init": maps["points"]["random_init"]},
                        maps["colour"], details["layers"],
                        {"trained": titles["trained"], "random-init": titles["random_init"]}, name, out_png,
                        title=title)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--activations-dir", default="data/activations")
    ap.add_argument("--out-dir", default="reports/clusters")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "clusters", "clusters")
    dataset = require_section(params, "activations", "clusters").dataset
    from mazesearch.interp.clusters import csv_table, headline, run_clusters

    t0 = time.perf_counter()
    mazes, trained, random_init = open_checked_stores(args.mazes_dir, args.activations_dir, dataset, open_store)
    details, maps = run_clusters(mazes, trained, random_init, spec)
    metrics = headline(details)
    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", {"dataset": dataset, **details})
        write_text_atomic(out / "by_layer.csv", csv_table(details))
        d = details["labels"][spec.headline]
        render(details, maps, out / "maps.png",
               f"path-position residuals, t-SNE per layer ({details['n_map_rows']} rows of {maps['n_mazes']} "
               f"{dataset} mazes), coloured by {spec.headline}; panel titles: {spec.k}-NN purity (other mazes "
               f"only, {spec.metric}) minus chance {d['chance']:.3f} on {d['n_rows']} rows")
    for name, d in details["labels"].items():
        best = d["layers"][d["best_layer"]]
        print(f"clusters {name:>14}: best {d['best_layer']}: trained {best['trained']:+.3f}, random-init "
              f"{best['random_init']:+.3f}, permuted {best['permuted']:+.3f}")
    print(f"clusters: {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    stage_main(main)
