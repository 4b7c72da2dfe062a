"""Loading a run, one way for every stage that reads one:

* :func:`first_rows`: the first N mazes of a dataset with their token sequences, checked to be
  the same mazes;
* :func:`stage_device` / :func:`load_trained`: the stage's threads and device, the trained model;
* :func:`control_model`: its random-init control, the same architecture never trained.

A bad file or value is one InputError / StageError naming it (mazesearch.io.stage_main turns it
into one ``error:`` line)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mazesearch.data.maze import MazeBatch, read_maze_ids, read_mazes
from mazesearch.data.tokens import TokenBatch, Vocab, read_tokens
from mazesearch.io import InputError, StageError


def first_rows(section: str, dataset: str, n: int, *, tokens_dir, mazes_dir, vocab: Vocab,
               clip: bool = False, ids_only: bool = False) -> tuple[TokenBatch, MazeBatch | np.ndarray]:
    """The first ``n`` mazes of ``dataset`` and their token sequences, the same rows (maze ids
    checked). ``n`` larger than the dataset is a StageError naming ``<section>.n_mazes``, or with
    ``clip`` the whole dataset. ``ids_only``: the mazes' ids (uint64 [n]) instead of the mazes."""
    tokens_path = Path(tokens_dir) / f"{dataset}.parquet"
    mazes_path = Path(mazes_dir) / f"{dataset}.parquet"
    tokens = read_tokens(tokens_path, vocab=vocab)
    mazes = read_maze_ids(mazes_path) if ids_only else read_mazes(mazes_path)
    ids = mazes if ids_only else mazes.maze_id
    if clip:
        n = min(n, len(ids))
    if n > len(tokens):
        raise StageError(f"{section}.n_mazes={n} exceeds the {len(tokens)} mazes of datasets.{dataset} "
                         f"({tokens_path})")
    if len(ids) < n or not np.array_equal(ids[:n], tokens.maze_id[:n]):
        raise InputError(mazes_path, f"its mazes disagree with the tokens of dataset {dataset} ({tokens_path})",
                         f"re-run `dvc repro tokenize@{dataset}`")
    first = np.arange(n)
    return tokens.take(first), (ids[:n] if ids_only else mazes.take(first))


def stage_device(spec, section: str):
    """``<section>.num_threads`` applied and ``<section>.device`` resolved (StageError naming the key)."""
    from mazesearch.model.device import resolve_device, set_threads

    set_threads(spec.num_threads)
    try:
        return resolve_device(spec.device, f"{section}.device")
    except ValueError as exc:
        raise StageError(str(exc)) from None


def load_trained(section: str, spec, *, model_dir, vocab: Vocab, vocab_path):
    """(the trained GPT in eval mode on ``<section>.device``, that device), threads applied."""
    from mazesearch.model.gpt import load_gpt

    device = stage_device(spec, section)
    return load_gpt(model_dir, device=device, vocab=vocab, vocab_path=vocab_path).eval(), device


def control_model(trained, seed: int):
    """The random-init control: the trained model's architecture (config) with weights drawn from
    ``seed`` alone, never trained, on the trained model's device, in eval mode."""
    from mazesearch.model.gpt import GPT

    device = next(trained.parameters()).device
    return GPT(trained.cfg, seed=seed).to(device).eval()
