"""The tiny run the notebook tests read (tests/test_notebook_*.py): built once per xdist worker
by conftest's session fixture ``notebook_run_dir``; each file takes ``run_dir`` and ``run`` from
here (``from notebook_fixtures import run, run_dir``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import one_torch_thread
from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import write_mazes, write_parquet_atomic
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode, read_tokens, to_text, write_tokens

ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocab.build(4)
MAZES = dict(generator="dfs", grid_n=4, sizes=[3, 4])  # placed 3x3 and 4x4 mazes in a 4x4 lattice
OPTION_SETS = [TokenizerOptions(coord=c, edges=e) for c in ("unary", "pair") for e in ("adjlist", "walls")]


def build_run(root: Path) -> Path:
    """data/, models/, reports/eval/{details,suites}/ of a 200-step run: suites test and
    test_sorted, their files written as stage evaluate writes them."""
    from mazesearch.evaluation.suite import evaluate_suite, headline, rounded
    from mazesearch.model.gpt import save_checkpoint
    from mazesearch.model.train import train
    from mazesearch.params import ModelSpec, TrainSpec

    VOCAB.to_json(root / "data" / "vocab.json")
    train_mazes, _ = build_mazes(n_mazes=400, seed=1, **MAZES)
    sets = {"train": train_mazes}
    for name, seed, count in (("val", 2, 32), ("test", 3, 12)):
        sets[name], _ = build_mazes(n_mazes=count, seed=seed, exclude_ids=train_mazes.maze_id, **MAZES)
    for name, batch in sets.items():
        write_mazes(batch, root / "data" / "mazes" / f"{name}.parquet")
        write_tokens(encode(batch, VOCAB), root / "data" / "tokens" / f"{name}.parquet")
    with one_torch_thread():
        result = train(ModelSpec(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64),
                       TrainSpec(device="cpu", batch_size=32, max_steps=200, lr=3e-3, warmup_steps=10,
                                 eval_every=1000, eval_batches=1, num_threads=1),
                       encode(sets["train"], VOCAB), encode(sets["val"], VOCAB), VOCAB, progress=False)
        save_checkpoint(result.model, root / "models")
        for suite, opts in (("test", TokenizerOptions()), ("test_sorted", TokenizerOptions(edge_order="sorted"))):
            out = evaluate_suite(result.model, sets["test"], VOCAB, opts, baseline_seed=0, batch_size=16)
            write_parquet_atomic(out.table, root / "data" / "predictions" / f"{suite}.parquet")
            details = rounded({"suite": suite, "dataset": "test", **out.report, "leakage": 0})
            for kind, doc in (("details", details), ("suites", headline(details))):
                (root / "reports" / "eval" / kind).mkdir(parents=True, exist_ok=True)
                (root / "reports" / "eval" / kind / f"{suite}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def run_dir(notebook_run_dir) -> Path:
    return notebook_run_dir


@pytest.fixture(scope="module")
def run(run_dir):
    from mazesearch.notebook import load_run

    with one_torch_thread():
        yield load_run(run_dir)


def run_text(run_dir: Path) -> str:
    """The first test maze's tokens as text."""
    return to_text(read_tokens(run_dir / "data" / "tokens" / "test.parquet").tokens(0), VOCAB)
