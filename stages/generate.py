"""Stage generate@<name>: build one maze dataset -> data/mazes/<name>.parquet.

Every dataset except `train` excludes mazes (walls + origin + target) that occur in the
training set. The training set is rebuilt in memory from its params (generation is
deterministic and fast) instead of read from disk, so each generate stage depends only on
params; it is rebuilt only when grid sizes match, since otherwise no maze can coincide.

Reports: ``reports/data/<name>.json`` holds the headline count (a DVC metric:
n_duplicates); ``reports/data/details/<name>.json`` the rest of the generation info
(n_mazes, n_generated, n_dropped_overlap, n_dropped_no_endpoints, path length, dead ends, forks, ...;
docs/data.md).
"""

import argparse
from pathlib import Path

from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import write_mazes
from mazesearch.io import InputError, stage_main, write_json_atomic
from mazesearch.params import load_params_or_exit

HEADLINE = ("n_duplicates",)  # the DVC metric (n_mazes is a param); the rest is details


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", help="dataset name (a key of `datasets` in params.yaml)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out-dir", default="data/mazes")
    ap.add_argument("--report-dir", default="reports/data", help="headline metrics (details/ beside them)")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    if args.name not in params.datasets:
        raise InputError(args.params, f"datasets.{args.name} is not defined")
    spec = params.datasets[args.name]

    exclude_ids = None
    train = params.datasets["train"]
    if args.name != "train" and train.grid_n == spec.grid_n:
        print(f"rebuilding train ({train.n_mazes} mazes) in memory to exclude its mazes")
        train_batch, _ = build_mazes(**train.model_dump(), progress=True)
        exclude_ids = train_batch.maze_id

    batch, info = build_mazes(**spec.model_dump(), exclude_ids=exclude_ids, progress=True)
    print(f"{args.name}: {len(batch)} mazes, dropped {info['n_dropped_overlap']} present in train")

    write_mazes(batch, Path(args.out_dir) / f"{args.name}.parquet")
    report_dir = Path(args.report_dir)
    write_json_atomic(report_dir / f"{args.name}.json", {k: info[k] for k in HEADLINE})
    details = {k: v for k, v in info.items() if k not in HEADLINE}
    write_json_atomic(report_dir / "details" / f"{args.name}.json", details, sort_keys=True)


if __name__ == "__main__":
    stage_main(main)
