"""Stage activations: cache the trained model's and a random-init control's activations.

Reads models/ (model_config.json + model.safetensors), data/tokens/<activations.dataset>.parquet,
data/mazes/<activations.dataset>.parquet (grid size; row alignment check) and data/vocab.json;
writes data/activations/trained/ and data/activations/random/ (docs/activations.md). The control
is ``GPT(same config, seed=activations.control_seed)``: the same architecture, never trained.
"""

import argparse
import time
from pathlib import Path

from mazesearch.data.maze import read_grid_n
from mazesearch.data.tokens import Vocab
from mazesearch.interp.activations import extract_activations
from mazesearch.model.run_loader import control_model, first_rows, load_trained
from mazesearch.io import StageError, atomic_dir, stage_main
from mazesearch.params import load_params_or_exit, require_section


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
    n = spec.n_mazes
    tokens, _ = first_rows("activations", spec.dataset, n, tokens_dir=args.tokens_dir, mazes_dir=args.mazes_dir,
                           vocab=vocab, ids_only=True)
    grid_n = read_grid_n(Path(args.mazes_dir) / f"{spec.dataset}.parquet")
    trained, device = load_trained("activations", spec, model_dir=args.model_dir, vocab=vocab, vocab_path=args.vocab)
    print(f"activations: device {device}, {spec.num_threads} threads")
    control = control_model(trained, spec.control_seed)

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
