"""What the model predicts on a maze: its greedy path and its choice at every decision point.

Reads paths and forks out of the tokens the decoders of :mod:`mazesearch.evaluation.rollout`
write: :func:`predict_paths` (greedy paths as ``metrics.Walks``), :func:`predict_forks` (the
next cell at every decision point of the stored path, teacher-forced) and :func:`predict` (both,
in one cached pass for our GPT). :func:`walks_of` decodes any generated tokens into ``Walks``.
"""

from __future__ import annotations

import numpy as np

from mazesearch.evaluation.rollout import greedy_rollout, greedy_rollout_cached, is_gpt, teacher_forced_argmax


def _run(model, prompts, max_new_tokens, end_id, pad_id, batch_size, n_ctx, device):
    """Cached decoding for our GPT; the full-recompute reference for any other logits_fn."""
    if is_gpt(model):
        return greedy_rollout_cached(model, prompts, max_new_tokens, end_id, pad_id, batch_size, device)
    return greedy_rollout(model, prompts, max_new_tokens, end_id, pad_id, batch_size, n_ctx, device or "cpu")


def tokens_per_cell(coord: str) -> int:
    if coord not in ("unary", "pair"):
        raise ValueError(f"coord must be 'unary' or 'pair', got {coord!r}")
    return 2 if coord == "pair" else 1


def walks_of(generated, vocab, grid_n: int, coord: str = "unary"):
    """Decoded greedy outputs (each the tokens after ``<PATH_START>``) as ``Walks``."""
    from mazesearch.data.decode import decode_path
    from mazesearch.evaluation.metrics import Walks

    decoded = [decode_path(g, vocab, grid_n, coord) for g in generated]
    return Walks.from_lists([d[0] for d in decoded], [d[2] for d in decoded])


def _first_cells(chunks, vocab, grid_n: int, coord: str) -> np.ndarray:
    """The first cell each token chunk names (-1 if none): ``int32 [len(chunks)]``."""
    from mazesearch.data.decode import decode_path

    cells = [decode_path(c, vocab, grid_n, coord)[0] for c in chunks]
    return np.array([c[0] if c else -1 for c in cells], dtype=np.int32)


def _path_setup(tokens, vocab, grid_n: int, coord: str):
    w = tokens_per_cell(coord)
    prompts = [tokens.prompt(i) for i in range(len(tokens))]
    max_new = w * (grid_n * grid_n + grid_n) + 1  # every cell once, room to show a loop, <PATH_END>
    return prompts, max_new, vocab.token_to_id["<PATH_END>"]


def predict_paths(model, tokens, vocab, grid_n: int, coord: str, batch_size: int = 256,
                  n_ctx: int | None = None, device=None):
    """Greedy paths for every maze of a ``TokenBatch`` (prompt = tokens up to ``<PATH_START>``).

    ``model`` is a GPT (cached decoding) or any ``logits_fn`` (then ``n_ctx`` caps lengths).
    A path may have up to ``grid_n**2 + grid_n`` cells (every cell once, plus room to show a
    loop). Returns ``(generated ids per maze, metrics.Walks)``.
    """
    prompts, max_new, end_id = _path_setup(tokens, vocab, grid_n, coord)
    generated = _run(model, prompts, max_new, end_id, vocab.pad_id, batch_size, n_ctx, device)
    return generated, walks_of(generated, vocab, grid_n, coord)


def _fork_positions(tokens, batch, w: int) -> list[np.ndarray]:
    """Per maze, the index of the last token of each decision cell in the full sequence."""
    from mazesearch.evaluation.metrics import decision_points

    fork_k, fork_off = decision_points(batch)
    return [tokens.prompt_len[i] + w * fork_k[fork_off[i] : fork_off[i + 1]] + (w - 1) for i in range(len(tokens))]


def predict_forks(model, tokens, batch, vocab, coord: str, batch_size: int = 256, device=None) -> np.ndarray:
    """The model's next cell at every decision point of the stored paths, teacher-forced.

    The model reads the true sequence up to and including the decision cell. Unary coordinates:
    one forward pass per maze, argmax at the decision cell's token. Pair coordinates: the next
    cell takes two tokens, so each decision prefix is decoded greedily for two tokens.
    ``int32 [F]`` aligned with ``metrics.decision_points(batch)``; -1 = not a cell.
    """
    w = tokens_per_cell(coord)
    positions = _fork_positions(tokens, batch, w)
    if w == 1:
        device = device or (next(model.parameters()).device if is_gpt(model) else "cpu")
        ids = teacher_forced_argmax(model, [tokens.tokens(i) for i in range(len(tokens))], positions,
                                    vocab.pad_id, batch_size, device)
        chunks = [np.array([t]) for row in ids for t in row]
    else:
        prefixes = [tokens.tokens(i)[: p + 1] for i in range(len(tokens)) for p in positions[i]]
        end_id = vocab.token_to_id["<PATH_END>"]
        chunks = _run(model, prefixes, 2, end_id, vocab.pad_id, batch_size, None, device) if prefixes else []
    return _first_cells(chunks, vocab, batch.grid_n, coord)


def predict(model, tokens, batch, vocab, coord: str, batch_size: int = 256, n_ctx: int | None = None, device=None):
    """Greedy paths and teacher-forced fork choices: ``(generated, metrics.Walks, fork_pred)``.

    For our GPT with unary coordinates, one cached pass does both: the true path rides along
    behind each prompt in the prompt pass (``greedy_rollout_cached(teacher=...)``), then
    decoding continues from the prompt. Otherwise :func:`predict_paths` + :func:`predict_forks`.
    """
    if not (is_gpt(model) and coord == "unary"):
        generated, walks = predict_paths(model, tokens, vocab, batch.grid_n, coord, batch_size, n_ctx, device)
        return generated, walks, predict_forks(model, tokens, batch, vocab, coord, batch_size, device)
    prompts, max_new, end_id = _path_setup(tokens, vocab, batch.grid_n, coord)
    # the true path's cell tokens (without <PATH_END>: the target is never a decision point)
    teacher = [tokens.tokens(i)[tokens.prompt_len[i] : -1] for i in range(len(tokens))]
    generated, argmax = greedy_rollout_cached(model, prompts, max_new, end_id, vocab.pad_id, batch_size,
                                              device, teacher=teacher)
    positions = _fork_positions(tokens, batch, 1)
    # argmax[i][k] predicts teacher token k; the cell after the decision cell at token j is k = j + 1
    chunks = [np.array([argmax[i][p - tokens.prompt_len[i] + 1]]) for i in range(len(tokens)) for p in positions[i]]
    return generated, walks_of(generated, vocab, batch.grid_n, coord), _first_cells(chunks, vocab, batch.grid_n, coord)
