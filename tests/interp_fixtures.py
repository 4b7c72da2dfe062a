"""A tiny finished run for the interp stage tests (heads, geometry): 3x3 DFS mazes, a 2-layer
model trained for a few hundred steps, and the params / file layout `dvc repro` would write."""

from __future__ import annotations

from pathlib import Path

import yaml

from helpers import one_torch_thread

DATASETS = {"train": dict(generator="dfs", grid_n=3, n_mazes=400, seed=1),
            "val": dict(generator="dfs", grid_n=3, n_mazes=32, seed=2),
            "probe": dict(generator="dfs", grid_n=3, n_mazes=40, seed=6)}


def build_tiny_run(root: Path, steps: int = 150) -> Path:
    """data/{vocab.json, mazes/, tokens/}, models/ and params.yaml under ``root``."""
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.maze import write_mazes
    from mazesearch.data.tokens import Vocab, encode, write_tokens
    from mazesearch.model.gpt import save_checkpoint
    from mazesearch.model.train import train
    from mazesearch.params import ModelSpec, TrainSpec

    vocab = Vocab.build(3)
    vocab.to_json(root / "data" / "vocab.json")
    tokens = {}
    train_ids = None
    for name, spec in DATASETS.items():
        batch, _ = build_mazes(**spec, exclude_ids=train_ids)
        train_ids = batch.maze_id if name == "train" else train_ids
        write_mazes(batch, root / "data" / "mazes" / f"{name}.parquet")
        tokens[name] = encode(batch, vocab)
        write_tokens(tokens[name], root / "data" / "tokens" / f"{name}.parquet")
    with one_torch_thread():
        result = train(ModelSpec(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=64),
                       TrainSpec(device="cpu", batch_size=32, max_steps=steps, lr=3e-3, warmup_steps=10,
                                 eval_every=10_000, eval_batches=1, num_threads=1, loss_on="all"),
                       tokens["train"], tokens["val"], vocab, progress=False)
    save_checkpoint(result.model, root / "models")
    params = {"datasets": DATASETS, "tokenizer": {"max_grid_n": 3},
              "heads": {"dataset": "probe", "n_mazes": 24, "batch_size": 8, "num_threads": 1, "picture_maze": 1},
              "geometry": {"dataset": "probe", "n_mazes": 24, "batch_size": 8, "num_threads": 1,
                           "n_permutations": 200, "top_heads": 2}}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def stage_args(root: Path, out: Path, **extra: str) -> list[str]:
    args = ["--params", str(root / "params.yaml"), "--model-dir", str(root / "models"),
            "--tokens-dir", str(root / "data" / "tokens"), "--mazes-dir", str(root / "data" / "mazes"),
            "--vocab", str(root / "data" / "vocab.json"), "--out-dir", str(out)]
    for key, value in extra.items():
        args += [f"--{key.replace('_', '-')}", value]
    return args


def tree_bytes(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` by relative path: two runs compare byte for byte."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}
