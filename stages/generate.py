"""Stage generate@<name>: build one maze dataset -> data/mazes/<name>.parquet.

Every dataset except `train` excludes mazes (walls + origin + target) that occur in the
training set. The training set is rebuilt in memory from its params (generation is
deterministic and fast) instead of read from disk, so each generate stage depends only on
params; it is rebuilt only when grid sizes match, since otherwise no maze can coincide.
"""

import argparse
from pathlib import Path

from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import write_mazes
from mazesearch.io import InputError, stage_main, write_json_atomic
from mazesearch.params import load_params_or_exit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", help="dataset name (a key of `datasets` in params.yaml)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out-dir", default="data/mazes")
    ap.add_argument("--report-dir", default="reports/data")
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
    write_json_atomic(Path(args.report_dir) / f"{args.name}.json", info, sort_keys=True)


if __name__ == "__main__":
    stage_main(main)
