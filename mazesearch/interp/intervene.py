"""Instruments on interventions: logits, head means and greedy rollouts under an edit.

:class:`Intervention` and :func:`intervened` (the torch hooks: added vectors, replaced residuals,
mean-ablated heads, position windows) live in :mod:`mazesearch.model.intervention`, below
evaluation, and are re-exported here. Rollouts under an intervention are the evaluation decoders'
own (``mazesearch.evaluation.rollout``'s ``intervention=`` argument): :func:`rollout_under` re-runs
the full right-padded forward each step; :func:`rollout_under_cached` drives the key/value-cached,
left-padded decoder, which hands the hooks each column's true position so the same positions are
edited (tests/test_intervene.py: equal tokens), many times faster.

Per-row tensors (``add[l]`` of shape ``[batch, d_model]``, ``from_pos`` of shape ``[batch]``) belong to
rows of the caller's list; the batched helpers sort and chunk rows and hand each chunk its rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mazesearch.evaluation.rollout import check_prompts, greedy_rollout, greedy_rollout_cached
from mazesearch.model.gpt import GPT
from mazesearch.model.intervention import Intervention, intervened

__all__ = ["Intervention", "intervened", "logits_under", "head_means", "rollout_under", "rollout_under_cached",
           "teacher_forced_logits_under"]


def logits_under(model: GPT, tokens: torch.Tensor, iv: Intervention,
                 rows: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """``model(tokens [batch, pos])`` under ``iv``: logits ``[batch, pos, vocab]`` (grad mode is the caller's)."""
    with intervened(model, iv, rows):
        return model(tokens)


def _sequences(sequences) -> list[np.ndarray]:
    """A list of token arrays, or anything with ``len`` and ``.tokens(i)`` (a TokenBatch)."""
    if hasattr(sequences, "tokens") and callable(sequences.tokens):
        return [sequences.tokens(i) for i in range(len(sequences))]
    return list(sequences)


def _padded(seqs: list[np.ndarray], rows: np.ndarray, pad_id: int, device) -> torch.Tensor:
    """Right-padded long ``[len(rows), longest]`` of the given rows."""
    width = max(len(seqs[r]) for r in rows)
    buf = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for j, r in enumerate(rows):
        buf[j, : len(seqs[r])] = torch.from_numpy(np.asarray(seqs[r], dtype=np.int64))
    return buf.to(device)


def _device(model: GPT) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def head_means(model: GPT, sequences, pad_id: int, batch_size: int = 256) -> torch.Tensor:
    """Mean z of every head over every real (non-pad) position: float32 ``[n_layers, n_heads, d_head]``."""
    cfg, seqs = model.cfg, _sequences(sequences)
    lengths = check_prompts(seqs)
    if not len(seqs):
        raise ValueError("head_means needs at least one sequence")
    total = torch.zeros(cfg.n_layers, cfg.n_heads, cfg.d_head, dtype=torch.float64, device=_device(model))
    real = None  # bool [batch, pos, 1, 1] of the running batch

    def capture(layer: int):
        def hook(module, args):  # z: [batch, pos, n_heads * d_head]
            z = args[0].reshape(*args[0].shape[:2], cfg.n_heads, cfg.d_head)  # [batch, pos, head, d_head]
            total[layer] += (z.double() * real).sum((0, 1))
        return hook

    handles = [b.attn.o.register_forward_pre_hook(capture(l)) for l, b in enumerate(model.blocks)]
    try:
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            tokens = _padded(seqs, rows, pad_id, _device(model))  # [batch, pos]
            n = torch.as_tensor(lengths[rows], device=tokens.device)
            real = (torch.arange(tokens.shape[1], device=tokens.device)[None, :] < n[:, None])[..., None, None]
            model(tokens)
    finally:
        for h in handles:
            h.remove()
    return (total / float(lengths.sum())).float()


def _check_rows(iv: Intervention, n: int) -> None:
    rows = iv.n_rows()
    if rows is not None and rows != n:
        raise ValueError(f"the intervention's per-row tensors have {rows} rows, but there are {n} sequences")


def _rollout(model: GPT, prompts: Sequence[np.ndarray], iv: Intervention, max_new_tokens: int, end_id: int,
             pad_id: int, batch_size: int, cached: bool) -> list[np.ndarray]:
    """Greedy decoding under ``iv`` in eval mode, every sequence capped at ``n_ctx`` tokens."""
    prompts = list(prompts)
    was_training = model.training
    model.eval()
    try:
        if cached:
            return greedy_rollout_cached(model, prompts, max_new_tokens, end_id, pad_id, batch_size,
                                         intervention=iv, n_ctx=model.cfg.n_ctx)
        return greedy_rollout(model, prompts, max_new_tokens, end_id, pad_id, batch_size, model.cfg.n_ctx,
                              _device(model), intervention=iv)
    finally:
        model.train(was_training)


def rollout_under(model: GPT, prompts: Sequence[np.ndarray], iv: Intervention, *, max_new_tokens: int,
                  end_id: int, pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """Greedy continuation of every prompt with ``iv`` active at every step (full recompute per step).

    Same convention as :func:`mazesearch.evaluation.rollout.greedy_rollout`: per prompt in input order,
    ``int32 [k]`` generated ids up to and including ``end_id``, or ``min(max_new_tokens, n_ctx - len)``
    tokens (``GPT.forward`` accepts at most n_ctx tokens, rotary models included). Row i of a per-row
    tensor belongs to ``prompts[i]``.
    """
    return _rollout(model, prompts, iv, max_new_tokens, end_id, pad_id, batch_size, cached=False)


def rollout_under_cached(model: GPT, prompts: Sequence[np.ndarray], iv: Intervention, *, max_new_tokens: int,
                         end_id: int, pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """:func:`rollout_under` on the key/value-cached decoder: the same tokens, many times faster."""
    return _rollout(model, prompts, iv, max_new_tokens, end_id, pad_id, batch_size, cached=True)


@torch.inference_mode()
def teacher_forced_logits_under(model: GPT, sequences, positions: Sequence[np.ndarray], iv: Intervention,
                                pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """Per sequence, float32 logits ``[k, vocab]`` at ``positions[i]`` (ints in 0..len-1) under ``iv``;
    row i of a per-row tensor belongs to sequence i."""
    seqs = _sequences(sequences)
    if len(positions) != len(seqs):
        raise ValueError(f"positions has {len(positions)} entries, sequences has {len(seqs)}")
    lengths = check_prompts(seqs)
    iv.check(model)
    _check_rows(iv, len(seqs))
    pos = [np.asarray(p, dtype=np.int64) for p in positions]
    for i, p in enumerate(pos):
        if p.size and (p.min() < 0 or p.max() >= lengths[i]):
            raise ValueError(f"positions[{i}] must lie in 0..{lengths[i] - 1}")
    out: list[np.ndarray] = [np.zeros((0, model.cfg.d_vocab), np.float32)] * len(seqs)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        logits = logits_under(model, _padded(seqs, rows, pad_id, _device(model)), iv, rows)  # [rows, pos, vocab]
        logits = logits.float().cpu().numpy()
        for j, r in enumerate(rows):
            out[r] = logits[j, pos[r]]
    return out
