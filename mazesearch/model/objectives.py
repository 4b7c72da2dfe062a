"""Sample-efficiency levers of the training objective (issue 26), each a ``train.*`` key, off by
default: the defaults reproduce the plain next-token loop bit for bit.

* ``decision_weight``: the loss weight of path targets that follow a decision point (the origin
  with degree >= 2, an interior path cell with degree >= 3: ``evaluation.metrics.decision_points``);
  corridor moves, which the walls alone decide, keep weight 1. :func:`decision_targets` finds them
  in the stored tokens.
* ``position_ids: random``: each training sequence is placed at a sorted random subset of
  ``[0, max_position)`` instead of ``0..T-1`` (Ruoss et al. 2023, arXiv 2305.16843), so the model
  sees every position up to ``max_position`` while no training maze is that long.
  :func:`random_positions` is a pure function of ``(seed, step)``.
* ``lookahead``: ``k`` auxiliary linear heads on the last residual; head ``m`` predicts the path
  token ``m + 1`` steps ahead at every path position (a cheap relative of MLM-U's multi-step
  objective, arXiv 2412.05117), its loss weighted by ``lookahead_weight``. The heads live in
  :class:`LookaheadHeads`, apart from the GPT: the exported model (and the bridge) is the plain GPT.

The size curriculum is a data order: ``mazesearch.model.batches.DataOrder`` (``curriculum_epochs``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.data.vocab import CONNECTOR

POSITION_STREAM = 0x706F73  # "pos": keeps the position draws apart from other (seed, step) streams


def decision_targets(tokens: TokenBatch, vocab: Vocab) -> np.ndarray:
    """bool ``[len(tokens.flat)]``, aligned with ``tokens.flat``: True at a path token (a cell)
    whose previous token is a decision cell of the path: the origin with >= 2 open neighbours,
    or a later path cell, not the target, with >= 3. Degrees are counted from the sequence's own
    adjacency list, so this needs the default text (``coord: unary``, ``edges: adjlist``)."""
    flat = np.asarray(tokens.flat, dtype=np.int64)
    if CONNECTOR not in vocab.token_to_id:
        raise ValueError("decision weights need the adjacency-list text")
    row_of, col_of = vocab.coord_row.astype(np.int64), vocab.coord_col.astype(np.int64)
    cell_of = np.where(row_of >= 0, row_of * 256 + col_of, -1)  # token id -> cell (-1: not a unary cell)
    cells = cell_of[flat]  # [N]
    lengths = np.diff(tokens.offsets).astype(np.int64)
    row = np.repeat(np.arange(len(lengths)), lengths)  # [N]: the sequence of each token
    conn = np.flatnonzero(flat == vocab.token_to_id[CONNECTOR])
    if len(conn) == 0 and len(flat):
        raise ValueError("decision weights need tokenizer edges: adjlist (no '<-->' in the training tokens)")
    ends = np.concatenate([conn - 1, conn + 1])
    if (cells[ends] < 0).any():
        raise ValueError("decision weights need tokenizer coord: unary (an edge end is not one cell token)")
    key = lambda r, c: r * (256 * 256) + c  # noqa: E731  (sequence, cell) -> one integer
    ends_key = np.sort(key(row[ends], cells[ends]))
    start = tokens.offsets[:-1].astype(np.int64)
    first_path = start + tokens.prompt_len.astype(np.int64)  # the origin token of each path
    out = np.zeros(len(flat), dtype=bool)
    # candidate targets: tokens after the origin inside the path region, that are cells
    idx = np.arange(len(flat))
    in_path = idx > first_path[row]
    is_cell = cells >= 0
    cand = np.flatnonzero(in_path & is_cell)
    prev = cand - 1
    prev_key = key(row[prev], cells[prev])
    degree = np.searchsorted(ends_key, prev_key, side="right") - np.searchsorted(ends_key, prev_key, side="left")
    at_origin = prev == first_path[row[prev]]
    out[cand] = np.where(at_origin, degree >= 2, degree >= 3)
    return out


def target_weights(tokens: TokenBatch, vocab: Vocab, decision_weight: float) -> np.ndarray | None:
    """float32 ``[len(tokens.flat)]``: ``decision_weight`` at decision targets, 1 elsewhere
    (None when the weight is 1: the plain loss)."""
    if decision_weight == 1.0:
        return None
    return np.where(decision_targets(tokens, vocab), np.float32(decision_weight), np.float32(1.0))


def random_positions(seed: int, step: int, batch: int, width: int, max_position: int) -> np.ndarray:
    """int64 ``[batch, width]``: row i is a sorted sample of ``width`` distinct positions from
    ``[0, max_position)``, drawn from ``default_rng([seed, step, POSITION_STREAM])``: a pure
    function of its arguments (a resumed run draws the same)."""
    if width > max_position:
        raise ValueError(f"a batch of width {width} does not fit train.max_position={max_position}")
    rng = np.random.default_rng([seed, step, POSITION_STREAM])
    keys = rng.random((batch, max_position))
    return np.sort(np.argpartition(keys, width - 1, axis=1)[:, :width], axis=1)


class LookaheadHeads(nn.Module):
    """``k`` linear heads (``d_model -> d_vocab``, no bias) on the final, normalized residual;
    head ``m`` (0-based) predicts the token ``m + 2`` places ahead. Seeded init like the GPT's
    unembedding, from a generator of its own."""

    def __init__(self, d_model: int, d_vocab: int, k: int, seed: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(d_model, d_vocab, bias=False) for _ in range(k))
        g = torch.Generator().manual_seed(seed + 0x6C6B)  # "lk": apart from the GPT's own draws
        with torch.no_grad():
            for head in self.heads:
                head.weight.copy_(torch.empty(head.weight.shape).normal_(0.0, 0.8 / d_model**0.5, generator=g))

    def forward(self, normed: torch.Tensor) -> list[torch.Tensor]:  # [b, T, d_model] -> k x [b, T, V]
        return [head(normed) for head in self.heads]


class WithLookahead(nn.Module):
    """The GPT and its lookahead heads as one trainable module (optimizer, checkpoints, DDP);
    ``forward`` returns the GPT's logits and the heads' logits."""

    def __init__(self, gpt: nn.Module, heads: LookaheadHeads) -> None:
        super().__init__()
        self.gpt, self.lookahead = gpt, heads

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None):
        resid = self.gpt.hidden(tokens, positions)  # [b, T, d_model]
        normed = self.gpt.ln_final(resid)
        return self.gpt.unembed(normed), self.lookahead(normed)


def lookahead_loss(ahead: list[torch.Tensor], targets: torch.Tensor, path_mask: torch.Tensor) -> torch.Tensor:
    """Mean over heads of head m's masked cross-entropy: at input position j whose own target is
    a path token, head m predicts target ``j + m + 1`` when that too is a path token.
    ``ahead``: k x ``[b, T, V]``; targets, path_mask ``[b, T]``."""
    total = torch.zeros((), device=targets.device)
    for m, logits in enumerate(ahead, start=1):
        if targets.shape[1] <= m:
            continue
        mask = (path_mask[:, :-m] & path_mask[:, m:]).flatten().float()  # [b*(T-m)]
        ce = F.cross_entropy(logits[:, :-m].float().flatten(0, 1), targets[:, m:].flatten(), reduction="none")
        total = total + (ce * mask).sum() / mask.sum().clamp(min=1.0)
    return total / max(len(ahead), 1)
