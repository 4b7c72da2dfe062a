"""Stage pictures: sample mazes of every suite with the model's predicted paths, failures first.

    data/mazes/<dataset>.parquet + data/predictions/<suite>.parquet ->
        reports/eval/pictures/<suite>.png   up to evaluate.n_pictures mazes per suite (the
                                            baseline's paths where the model cannot read it)

Apart from stage evaluate, so changing a picture param redraws pictures and reruns no rollout.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mazesearch.data.maze import read_mazes
from mazesearch.io import atomic_dir, stage_main
from mazesearch.params import load_params_or_exit, require_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--predictions-dir", default="data/predictions")
    ap.add_argument("--out-dir", default="reports/eval/pictures")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    ev = require_section(params, "evaluate", "pictures")
    from mazesearch.evaluation.pictures import draw_suite

    mazes = {}
    with atomic_dir(args.out_dir) as tmp:  # all suites or nothing
        for suite, spec in ev.suites.items():
            if spec.dataset not in mazes:
                mazes[spec.dataset] = read_mazes(Path(args.mazes_dir) / f"{spec.dataset}.parquet")
            batch = mazes[spec.dataset]
            if spec.n_mazes is not None:
                batch = batch.take(np.arange(min(spec.n_mazes, len(batch))))
            drawn = draw_suite(batch, Path(args.predictions_dir) / f"{suite}.parquet", ev.n_pictures,
                               Path(tmp) / f"{suite}.png")
            print(f"pictures {suite}: {drawn} mazes")


if __name__ == "__main__":
    stage_main(main)
