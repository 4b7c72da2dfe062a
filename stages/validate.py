"""Stage validate: check params.yaml before any other stage runs -> data/params_valid.txt.

DVC removes a stage's outputs just before it runs the stage, and a stage can only refuse bad
params once it runs. So a bad value (`dvc exp run -S datasets.train.grid_n=1`) used to cost the
outputs of the first stage it reached, uncached reports included. This stage reads the whole
params.yaml and comes first: `generate` and `vocab` depend on its output, and every other stage
is downstream of those. A bad value stops `dvc repro` / `dvc exp run` here with the one `error:`
line, before any output is touched.

The output is the same bytes whenever params.yaml is valid, so a valid edit reruns this stage
(well under a second) but nothing because of it. It is a `persist` output: a failed check leaves
it in place instead of deleting it.
"""

import argparse
from pathlib import Path

from mazesearch.io import stage_main, write_text_atomic
from mazesearch.params import load_params_or_exit

VALID = "params.yaml is valid (stages/validate.py); this file does not change while it stays valid\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/params_valid.txt")
    args = ap.parse_args()
    load_params_or_exit(args.params)
    write_text_atomic(Path(args.out), VALID)
    print(f"validate: {args.params} is valid")


if __name__ == "__main__":
    stage_main(main)
