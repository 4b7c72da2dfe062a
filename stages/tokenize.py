"""Stage tokenize@<name>: data/mazes/<name>.parquet -> data/tokens/<name>.parquet."""

import argparse
from pathlib import Path

from mazesearch.data.maze import read_mazes
from mazesearch.io import StageError, stage_main
from mazesearch.params import load_params_or_exit
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, write_tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", help="dataset name (a key of `datasets` in params.yaml)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out-dir", default="data/tokens")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    tok = params.tokenizer
    opts = TokenizerOptions(coord=tok.coord, edges=tok.edges, edge_order=tok.edge_order, seed=tok.seed)
    vocab = Vocab.from_json(args.vocab)
    batch = read_mazes(Path(args.mazes_dir) / f"{args.name}.parquet")
    if batch.grid_n > vocab.max_grid_n:
        raise StageError(f"dataset {args.name} has grid_n={batch.grid_n} > tokenizer.max_grid_n="
                         f"{vocab.max_grid_n}; raise tokenizer.max_grid_n to tokenize it")
    tokens = encode(batch, vocab, opts)
    write_tokens(tokens, Path(args.out_dir) / f"{args.name}.parquet")
    lengths = tokens.offsets[1:] - tokens.offsets[:-1]
    print(f"{args.name}: {len(batch)} sequences, length {lengths.min()}..{lengths.max()}")


if __name__ == "__main__":
    stage_main(main)
