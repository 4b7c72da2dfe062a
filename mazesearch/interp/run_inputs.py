"""Loading a run, one way for every stage that reads one: the first N mazes of a dataset with
their token sequences, checked to match (:func:`first_rows`); the trained model on the stage's
device and threads (:func:`load_trained`); its random-init control (:func:`control_model`); and
what the teacher-forced analysis stages (logit_lens, dla, faithfulness) read, all of it at once as
TransformerLens bridges (:func:`load_inputs`). A bad file or value is one InputError / StageError
naming it (mazesearch.io.stage_main turns it into one ``error:`` line)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.interp.forks import Moves, cell_tokens, move_positions
from mazesearch.io import InputError, StageError
from mazesearch.model.run_loader import control_model, first_rows, load_trained


@dataclasses.dataclass
class RunInputs:
    vocab: Vocab
    mazes: MazeBatch  # the first n_mazes of the dataset
    tokens: TokenBatch  # their sequences, same rows
    moves: Moves
    cell_token: np.ndarray  # int64 [n_cells]
    trained: object  # TransformerBridge of the trained model
    control: object  # TransformerBridge of GPT(same config, seed=control_seed)
    gpt: object  # the trained model as a hook-free GPT (what ``trained`` bridges), for fast rollouts
    n_layers: int


def load_inputs(section: str, spec, params, *, model_dir: str, tokens_dir: str, mazes_dir: str,
                vocab_path: str) -> RunInputs:
    """``spec`` is ``params.<section>`` (dataset, n_mazes, device, num_threads, control_seed)."""
    if spec.dataset not in params.datasets:
        raise StageError(f"{section}.dataset={spec.dataset!r} is not in datasets")
    vocab = Vocab.from_json(vocab_path)
    tokens, mazes = first_rows(section, spec.dataset, spec.n_mazes, tokens_dir=tokens_dir, mazes_dir=mazes_dir,
                               vocab=vocab)
    try:
        moves = move_positions(mazes, tokens, vocab)
        cell_token = cell_tokens(vocab, mazes.grid_n)
    except ValueError as exc:  # pair coordinates, paths that are not the stored ones, grid too big
        raise InputError(Path(tokens_dir) / f"{spec.dataset}.parquet", str(exc),
                         f"re-run `dvc repro tokenize@{spec.dataset}`") from None

    import torch

    from mazesearch.interp.bridge import to_bridge  # imports transformer_lens: slow

    trained, _ = load_trained(section, spec, model_dir=model_dir, vocab=vocab, vocab_path=vocab_path)
    longest = int(moves.token_pos.max()) + 1 if len(moves) else 0
    if longest > trained.cfg.n_ctx:
        if trained.cfg.positional == "learned":
            raise StageError(f"datasets.{spec.dataset} has sequences of {longest} tokens but the model's "
                             f"n_ctx is {trained.cfg.n_ctx} (learned positions)")
        from mazesearch.model.gpt import with_context  # rotary: the same weights read any length

        trained = with_context(trained, longest).eval()
    control = control_model(trained, spec.control_seed)
    with torch.no_grad():
        bridges = [to_bridge(m) for m in (trained, control)]
    return RunInputs(vocab=vocab, mazes=mazes, tokens=tokens, moves=moves, cell_token=cell_token,
                     trained=bridges[0], control=bridges[1], gpt=trained, n_layers=trained.cfg.n_layers)
