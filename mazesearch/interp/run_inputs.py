"""What the teacher-forced analysis stages (logit_lens, dla) read, checked once: the first N mazes
of a dataset with their token sequences, their move positions, the trained model and its
random-init control as TransformerLens bridges. A bad file or value is one InputError /
StageError naming it (mazesearch.io.stage_main turns it into one ``error:`` line)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from mazesearch.data.maze import MazeBatch, read_mazes
from mazesearch.data.tokens import TokenBatch, Vocab, read_tokens
from mazesearch.interp.forks import Moves, cell_tokens, move_positions
from mazesearch.io import InputError, StageError


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
    tokens_path = Path(tokens_dir) / f"{spec.dataset}.parquet"
    mazes_path = Path(mazes_dir) / f"{spec.dataset}.parquet"
    tokens = read_tokens(tokens_path, vocab=vocab)
    mazes = read_mazes(mazes_path)
    n = spec.n_mazes
    if n > len(tokens):
        raise StageError(f"{section}.n_mazes={n} exceeds the {len(tokens)} mazes of datasets.{spec.dataset} "
                         f"({tokens_path})")
    if len(mazes) < n or not np.array_equal(mazes.maze_id[:n], tokens.maze_id[:n]):
        raise InputError(mazes_path, f"its mazes disagree with the tokens of dataset {spec.dataset} ({tokens_path})",
                         f"re-run `dvc repro tokenize@{spec.dataset}`")
    tokens, mazes = tokens.take(np.arange(n)), mazes.take(np.arange(n))
    try:
        moves = move_positions(mazes, tokens, vocab)
        cell_token = cell_tokens(vocab, mazes.grid_n)
    except ValueError as exc:  # pair coordinates, paths that are not the stored ones, grid too big
        raise InputError(tokens_path, str(exc), f"re-run `dvc repro tokenize@{spec.dataset}`") from None

    import torch

    from mazesearch.interp.bridge import to_bridge  # imports transformer_lens: slow
    from mazesearch.model.device import resolve_device, set_threads
    from mazesearch.model.gpt import GPT, load_gpt

    set_threads(spec.num_threads)
    try:
        device = resolve_device(spec.device, f"{section}.device")
    except ValueError as exc:
        raise StageError(str(exc)) from None
    trained = load_gpt(model_dir, device=device, vocab=vocab, vocab_path=vocab_path)
    longest = int(moves.token_pos.max()) + 1 if len(moves) else 0
    if longest > trained.cfg.n_ctx:
        if trained.cfg.positional == "learned":
            raise StageError(f"datasets.{spec.dataset} has sequences of {longest} tokens but the model's "
                             f"n_ctx is {trained.cfg.n_ctx} (learned positions)")
        from mazesearch.evaluation.suite import with_context  # rotary: the same weights read any length

        trained = with_context(trained, longest)
    control = GPT(trained.cfg, seed=spec.control_seed).to(device)
    with torch.no_grad():
        bridges = [to_bridge(m.eval()) for m in (trained, control)]
    return RunInputs(vocab=vocab, mazes=mazes, tokens=tokens, moves=moves, cell_token=cell_token,
                     trained=bridges[0], control=bridges[1], gpt=trained.eval(), n_layers=trained.cfg.n_layers)
