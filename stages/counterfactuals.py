"""Stage counterfactuals: minimally edited twins of a dataset's mazes, for patching and steering.

    data/mazes/<counterfactuals.dataset>.parquet + data/tokens/<same>.parquet + data/vocab.json ->
        data/counterfactuals/pairs.parquet   one row per pair: kind, source row, both mazes (edge
                                             bits, origin, target, path), both token sequences,
                                             the edited positions, the decision step and position,
                                             the next cell each maze needs there, the edge removed /
                                             added
        reports/counterfactuals/metrics.json pairs per kind (DVC metric)
        reports/counterfactuals/details.json per kind: mazes tried, mean decision step, path lengths

Kinds (mazesearch.interp.counterfactuals, docs/interp.md): target_move (a new target that
changes a decision), wall_move (one wall moved, still a spanning tree, a fork's correct branch
changes), edge_add (one wall opened: a shortcut), edge_remove (its reverse). Every edited maze is
validated like a generated one.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mazesearch.io import InputError, StageError, atomic_dir, stage_main, write_json_atomic
from mazesearch.params import load_params_or_exit, require_section


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--tokens-dir", default="data/tokens")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out", default="data/counterfactuals")
    ap.add_argument("--reports", default="reports/counterfactuals")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "counterfactuals", "counterfactuals")
    from mazesearch.data.dataset import is_spanning_tree
    from mazesearch.data.maze import read_mazes
    from mazesearch.data.tokens import Vocab, read_tokens
    from mazesearch.interp import counterfactuals

    ds = params.datasets[spec.dataset]  # the schema checked it exists
    if not is_spanning_tree(ds.generator, ds.model_dump()) or ds.sizes is not None:
        raise StageError(f"counterfactuals.dataset={spec.dataset!r} is not a spanning-tree dataset of its whole "
                         f"grid (generator {ds.generator}, sizes {ds.sizes}); the edits start from trees")
    if params.tokenizer.coord != "unary":
        raise StageError("counterfactuals need tokenizer.coord: unary (one logit per cell at the decision)")
    t0 = time.perf_counter()
    vocab = Vocab.from_json(args.vocab)
    mazes_path = Path(args.mazes_dir) / f"{spec.dataset}.parquet"
    tokens_path = Path(args.tokens_dir) / f"{spec.dataset}.parquet"
    mazes = read_mazes(mazes_path)
    tokens = read_tokens(tokens_path, vocab=vocab)
    if len(mazes) != len(tokens) or not np.array_equal(mazes.maze_id, tokens.maze_id):
        raise InputError(tokens_path, f"its rows disagree with the mazes of {mazes_path}",
                         f"re-run `dvc repro tokenize@{spec.dataset}`")
    pairs = counterfactuals.make_pairs(mazes, tokens, vocab, n_per_kind=spec.n_per_kind, seed=spec.seed)
    details = counterfactuals.summary(pairs)
    metrics = {kind: int((pairs.kind == kind).sum()) for kind in counterfactuals.KINDS}
    with atomic_dir(args.out) as out:
        counterfactuals.write_pairs(pairs, out / "pairs.parquet")
    with atomic_dir(args.reports) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", {"dataset": spec.dataset, **details})
    print(f"counterfactuals: {len(pairs)} pairs from {len(mazes)} mazes of {spec.dataset} in "
          f"{time.perf_counter() - t0:.1f}s: " + ", ".join(f"{k} {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
