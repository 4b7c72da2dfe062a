"""Stage probes: linear probes on cached activations, with controls -> reports/probes/.

Reads ``data/mazes/<activations.dataset>.parquet`` and the two activation stores
``data/activations/trained`` and ``data/activations/random`` (a random-init model of the same
architecture). Writes, all at once (into ``<out>.tmp`` then renamed):

    metrics/<probe>.json    the headline (a DVC metric, one file per probe so that
                            `dvc metrics show` has one row per probe): {best_layer (chosen on
                            the val split), test_score, selectivity_vs_random_init,
                            selectivity_vs_permuted} (null: void or undefined)
    details.json            probe -> {split sizes, void_controls, best_layer, layers: layer ->
                            {test, val: run -> scores, selectivity}} (docs/probes.md)
    by_layer/<probe>.csv    layer_idx, layer, trained, random_init, permuted (test main score),
                            trained_val
    per_output_f1.json      per-cell / per-edge test F1 of the multilabel probes at best_layer:
                            the trained probe's (values) and both controls' (random_init,
                            permuted; null for a void control)
    <probe>_f1.png          those F1 values on the maze grid: the trained map beside the two
                            control maps, one colour scale and colour bar
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mazesearch.params import ActivationsSpec, ProbesSpec, load_params_or_exit
from mazesearch.interp.activation_store import ActivationStore, open_checked_stores
from mazesearch.interp.probes import run_probes
from mazesearch.interp.probe_report import headline, write_reports
from mazesearch.io import stage_main


def open_store(path: Path) -> ActivationStore:
    return ActivationStore(path)  # a seam: tests hand in planted stores


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

    mazes, trained, random_init = open_checked_stores(args.mazes_dir, args.activations_dir, dataset, open_store)
    results, per_output_f1 = run_probes(mazes, trained, random_init, spec, progress=not args.quiet)
    write_reports(results, per_output_f1, mazes.grid_n, Path(args.out_dir))

    for name, h in headline(results).items():
        if h["best_layer"] is None:
            print(f"{name:>15}: undefined (labels constant or no val rows)")
            continue
        sel = ", ".join(f"vs {c} {h['selectivity_vs_' + c]}" for c in ("random_init", "permuted"))
        print(f"{name:>15}: test {results[name]['main_score']} {h['test_score']} at {h['best_layer']} "
              f"(chosen on val); selectivity {sel}")


if __name__ == "__main__":
    stage_main(main)
