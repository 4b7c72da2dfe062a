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
import pyarrow.parquet as pq

from mazesearch.activations import extract_activations
from mazesearch.model import GPT, load_gpt
from mazesearch.params import ActivationsSpec, load_params_or_exit
from mazesearch.tokens import Vocab, read_tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--tokens-dir", default="data/tokens")
    ap.add_argument("--mazes-dir", default="data/mazes")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out-dir", default="data/activations")
    ap.add_argument("--device", default="cpu", help="torch device (cpu keeps the bytes reproducible)")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = params.activations or ActivationsSpec()
    if spec.dataset not in params.datasets:
        raise SystemExit(f"error: activations.dataset={spec.dataset!r} is not in datasets")
    tokens = read_tokens(Path(args.tokens_dir) / f"{spec.dataset}.parquet")
    mazes = pq.read_table(Path(args.mazes_dir) / f"{spec.dataset}.parquet", columns=["maze_id", "grid_n"])
    n = spec.n_mazes
    if n > len(tokens):
        raise SystemExit(f"error: activations.n_mazes={n} exceeds the {len(tokens)} mazes of datasets.{spec.dataset}")
    if len(mazes) < n or not np.array_equal(mazes["maze_id"].to_numpy()[:n], tokens.maze_id[:n]):
        raise SystemExit(f"error: tokens and mazes of dataset {spec.dataset} disagree (re-run `dvc repro tokenize@{spec.dataset}`)")
    grid_n = int(mazes["grid_n"][0].as_py())
    vocab = Vocab.from_json(args.vocab)
    trained = load_gpt(args.model_dir, device=args.device)
    control = GPT(trained.cfg, seed=spec.control_seed).to(args.device)

    out = Path(args.out_dir)
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
            raise SystemExit(f"error: {exc}") from None
        seconds = time.perf_counter() - t0
        print(f"activations/{role}: {n} mazes, {len(store)} rows x {len(store.layers)} layers "
              f"({store.meta['backend']} backend) in {seconds:.1f}s ({n / seconds:.0f} mazes/s)")


if __name__ == "__main__":
    main()
