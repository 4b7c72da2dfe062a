"""Stage activations: cache the trained model's and a random-init control's activations.

Reads models/ (model_config.json + model.safetensors), data/tokens/<activations.dataset>.parquet,
data/mazes/<activations.dataset>.parquet (grid size; row alignment check) and data/vocab.json;
writes data/activations/trained/ and data/activations/random/ (docs/activations.md). The control
is ``GPT(same config, seed=activations.control_seed)``: the same architecture, never trained.
"""

import argparse
import time
from pathlib import Path

import numpy as np

from mazesearch.interp.activations import extract_activations
from mazesearch.model.gpt import GPT, load_gpt
from mazesearch.data.maze import read_grid_n, read_maze_ids
from mazesearch.io import InputError, StageError, atomic_dir, stage_main
from mazesearch.model.device import resolve_device, set_threads
from mazesearch.params import load_params_or_exit, require_section
from mazesearch.data.tokens import Vocab, read_tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--tokens-dir", default="data/tokens")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out-dir", default="data/activations")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "activations", "activations")
    vocab = Vocab.from_json(args.vocab)
    tokens = read_tokens(Path(args.tokens_dir) / f"{spec.dataset}.parquet", vocab=vocab)
    mazes_path = Path(args.mazes_dir) / f"{spec.dataset}.parquet"
    maze_ids, grid_n = read_maze_ids(mazes_path), read_grid_n(mazes_path)
    n = spec.n_mazes
    if n > len(tokens):
        raise StageError(f"activations.n_mazes={n} exceeds the {len(tokens)} mazes of datasets.{spec.dataset}")
    if len(maze_ids) < n or not np.array_equal(maze_ids[:n], tokens.maze_id[:n]):
        raise InputError(mazes_path, f"its mazes disagree with the tokens of dataset {spec.dataset}",
                         f"re-run `dvc repro tokenize@{spec.dataset}`")
    set_threads(spec.num_threads)
    device = resolve_device(spec.device, "activations.device")
    print(f"activations: device {device}, {spec.num_threads} threads")
    trained = load_gpt(args.model_dir, device=device, vocab=vocab, vocab_path=args.vocab)
    control = GPT(trained.cfg, seed=spec.control_seed).to(device)

    with atomic_dir(args.out_dir) as out:  # both stores, or neither
        for role, model in (("trained", trained), ("random", control)):
            t0 = time.perf_counter()
            meta = {"dataset": spec.dataset, "model": role}
            if role == "random":
                meta["control_seed"] = spec.control_seed
            try:
                store = extract_activations(model, tokens, vocab, grid_n, out / role, n_mazes=n,
                                            batch_size=spec.batch_size, hooks=spec.hooks,
                                            positions=spec.positions, meta=meta)
            except ValueError as exc:  # hooks, positions, n_ctx or vocabulary do not fit the model
                raise StageError(str(exc)) from None
            seconds = time.perf_counter() - t0
            print(f"activations/{role}: {n} mazes, {len(store)} rows x {len(store.layers)} layers "
                  f"({store.meta['backend']} backend) in {seconds:.1f}s ({n / seconds:.0f} mazes/s)")


if __name__ == "__main__":
    stage_main(main)
