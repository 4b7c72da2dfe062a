"""Stage vocab: the token vocabulary, fixed by tokenizer.max_grid_n -> data/vocab.json."""

import argparse

from mazesearch.io import stage_main
from mazesearch.params import load_params_or_exit
from mazesearch.data.tokens import Vocab


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="data/vocab.json")
    args = ap.parse_args()
    params = load_params_or_exit(args.params)
    vocab = Vocab.build(params.tokenizer.max_grid_n)
    vocab.to_json(args.out)
    print(f"vocab: {len(vocab.id_to_token)} tokens (max_grid_n={params.tokenizer.max_grid_n})")


if __name__ == "__main__":
    stage_main(main)
