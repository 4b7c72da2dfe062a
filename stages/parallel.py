"""Stage parallel: per layer, does the residual stream hold the alternative branches within k moves
of the current cell that the path has not passed, apart from the true path ahead and the branches
already passed? Per-cell linear probes beside the random-init and permuted-label controls ->
reports/parallel/.

Reads ``data/mazes/<activations.dataset>.parquet`` and the activation stores
``data/activations/{trained,random}`` (rows: <PATH_START> and path positions); params
``parallel.*``. Writes, all at once:

    metrics.json   headline (DVC metric, 3 numbers) at the alternatives' best layer (largest gap
                   over the stronger control at k = parallel.k): the alternatives probe's test
                   balanced accuracy, the stronger control's, and the true-path-ahead probe's
    details.json   method, split sizes, cells per row, per version (alternatives, ahead,
                   discarded): the explore-then-discard shape statistic and, per layer and k, every
                   run's score, the stronger control and the gap (alternatives: also ``near``)
    by_layer.csv   layer_idx, layer, per version: trained, _random_init, _permuted; alternatives_near
                   per run (k = parallel.k; a DVC plot)
    parallel.png   per version, trained beside both controls per layer; every gap, peaks starred
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mazesearch.interp.activation_store import ActivationStore, open_checked_stores
from mazesearch.io import atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section

_TITLES = {"alternatives": "alternatives: off-path branches not yet passed",
           "ahead": "true path ahead", "discarded": "branches already passed (discarded)"}


def open_store(path: Path) -> ActivationStore:
    return ActivationStore(path)  # a seam: tests hand in planted stores


def _short(layer: str) -> str:
    return "embed" if layer == "embed" else layer.replace("blocks.", "after L").replace(".hook_resid_post", "")


def render(details: dict, out_png: Path, title: str) -> None:
    from mazesearch.interp.parallel import RUNS, VERSIONS
    from mazesearch.viz.parallel_charts import render_parallel

    layers, k = details["layers"], str(details["method"]["k"])
    per = {v: details["versions"][v] for v in VERSIONS}
    scores = {v: {run: [per[v]["layers"][l][k][run] for l in layers] for run in RUNS} for v in VERSIONS}
    gaps = {v: [per[v]["layers"][l][k]["gap"] for l in layers] for v in VERSIONS}
    peaks = {v: None if per[v]["shape"]["peak_layer"] is None else layers.index(per[v]["shape"]["peak_layer"])
             for v in VERSIONS}
    titles = {v: f"{_TITLES[v]}, k = {k}" + (" (explore, then discard)" if per[v]["shape"]["explore_then_discard"]
                                                 else "") for v in VERSIONS}
    render_parallel(scores, gaps, peaks, titles, [_short(l) for l in layers], out_png, title=title)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--activations-dir", default="data/activations")
    ap.add_argument("--out-dir", default="reports/parallel")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "parallel", "parallel")
    dataset = require_section(params, "activations", "parallel").dataset
    from mazesearch.interp.parallel import csv_table, headline, run_parallel

    t0 = time.perf_counter()
    mazes, trained, random_init = open_checked_stores(args.mazes_dir, args.activations_dir, dataset, open_store)
    details = run_parallel(mazes, trained, random_init, spec)
    metrics = headline(details)
    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", {"dataset": dataset, **details})
        write_text_atomic(out / "by_layer.csv", csv_table(details))
        render(details, out / "parallel.png",
               f"parallel paths per layer ({details['n_mazes']} {dataset} mazes, {details['n_test_rows']} test "
               f"rows at <PATH_START> and path positions): per-cell probes of cells within {spec.k} moves of the "
               f"current cell; test balanced accuracy, mean over cells (0.5 = chance)")
    alt = metrics["alternatives"]
    print(f"parallel: best layer {details['best_layer']}: alternatives {alt['trained']}, stronger control "
          f"{alt['stronger_control']}, ahead {alt['ahead']}")
    for v, d in details["versions"].items():
        s = d["shape"]
        print(f"parallel {v:>12}: peak {s['peak_layer']} gap {s['peak_gap']}, rise {s['rise_to_peak']}, drop "
              f"{s['drop_after_peak']}, explore then discard: {s['explore_then_discard']}")
    print(f"parallel: {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    stage_main(main)
