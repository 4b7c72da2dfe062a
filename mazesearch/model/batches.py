"""Token sequences -> training batches: right-padded sequences and their target masks, the
same batches gathered on the device, and the data order (epoch permutations, optionally
length-bucketed so a batch is padded to nearly its own length).

Everything here is a pure function of the stored tokens, the rows and ``(seed, step)``; the
training loop (train.py) and its tests build batches only through this module.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np
import torch

from mazesearch.data.tokens import TokenBatch

# ---------------------------------------------------------------------------- sequences


def padded_sequences(
    tokens: TokenBatch, rows: np.ndarray, pad_id: int, upto: Literal["all", "prompt"] = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """The stored token sequences of mazes ``rows``, right-padded to the longest of them.

    ``upto="all"`` gives whole sequences (teacher forcing); ``"prompt"`` gives each sequence up
    to and including ``<PATH_START>``, where greedy decoding starts. Returns
    ``(tokens int64 [b, T], lengths int64 [b])``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.ndim != 1:
        raise ValueError(f"rows must be a 1-d index array, got shape {rows.shape}")
    if len(rows) and (rows.min() < 0 or rows.max() >= len(tokens)):
        raise ValueError(f"rows must lie in 0..{len(tokens) - 1}")
    starts = tokens.offsets[rows].astype(np.int64)
    if upto == "all":
        lengths = tokens.offsets[rows + 1].astype(np.int64) - starts
    elif upto == "prompt":
        lengths = tokens.prompt_len[rows].astype(np.int64)
    else:
        raise ValueError(f"upto must be 'all' or 'prompt', got {upto!r}")
    width = int(lengths.max()) if len(rows) else 0
    pos = np.arange(width, dtype=np.int64)
    inside = pos[None, :] < lengths[:, None]
    out = np.full((len(rows), width), pad_id, dtype=np.int64)
    out[inside] = tokens.flat[(starts[:, None] + pos[None, :])[inside]]
    return out, lengths


def target_masks(prompt_len: np.ndarray, lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Which next-token targets count, for inputs of ``width`` positions.

    Position ``j`` predicts token ``j + 1``. Returns ``(path, real)``, both ``bool [b, width]``:
    ``path`` marks targets at token indices ``prompt_len .. length-1`` (path cells and
    ``<PATH_END>``), ``real`` marks every non-padding target.
    """
    target_index = np.arange(1, width + 1, dtype=np.int64)[None, :]  # [1, width]
    real = target_index < lengths[:, None]
    path = real & (target_index >= prompt_len.astype(np.int64)[:, None])
    return path, real


@dataclasses.dataclass
class LMBatch:
    inputs: torch.Tensor  # int64 [b, T-1]: tokens 0..T-2
    targets: torch.Tensor  # int64 [b, T-1]: tokens 1..T-1
    loss_mask: torch.Tensor  # bool [b, T-1]: targets that enter the loss
    path_mask: torch.Tensor  # bool [b, T-1]: path targets (for exact-path accuracy)
    n_tokens: int  # real (non-padding) tokens fed, for throughput
    loss_weight: torch.Tensor | None = None  # float [b, T-1]: per-target weights (None: loss_mask)
    positions: torch.Tensor | None = None  # int64 [b, T-1]: position ids (None: 0..T-2)


def make_lm_batch(
    tokens: TokenBatch, rows: np.ndarray, pad_id: int, loss_on: Literal["path", "all"], device: torch.device | str = "cpu"
) -> LMBatch:
    seqs, lengths = padded_sequences(tokens, rows, pad_id)  # [b, T]
    path, real = target_masks(tokens.prompt_len[np.asarray(rows, dtype=np.int64)], lengths, seqs.shape[1] - 1)
    if loss_on not in ("path", "all"):
        raise ValueError(f"loss_on must be 'path' or 'all', got {loss_on!r}")
    as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
    return LMBatch(
        inputs=as_t(np.ascontiguousarray(seqs[:, :-1])),
        targets=as_t(np.ascontiguousarray(seqs[:, 1:])),
        loss_mask=as_t(path if loss_on == "path" else real),
        path_mask=as_t(path),
        n_tokens=int(lengths.sum()),
    )


class DeviceBatcher:
    """:func:`make_lm_batch` with the token data resident on ``device``: a batch is gathered
    there from the row indices, so a step copies only ``b`` indices to the device and never
    waits on it (the batch width comes from lengths kept on the host). Same tensors as
    :func:`make_lm_batch` (tested)."""

    def __init__(self, tokens: TokenBatch, pad_id: int, loss_on: Literal["path", "all"],
                 device: torch.device | str = "cpu", target_weight: np.ndarray | None = None) -> None:
        """``target_weight`` (float ``[len(tokens.flat)]``, optional): the loss weight of each
        stored token as a target (mazesearch.model.objectives.target_weights); a batch then
        carries ``loss_weight`` = ``loss_mask`` x the weights of its targets."""
        if loss_on not in ("path", "all"):
            raise ValueError(f"loss_on must be 'path' or 'all', got {loss_on!r}")
        self.device, self.pad_id, self.loss_on, self.tokens = torch.device(device), pad_id, loss_on, tokens
        if target_weight is not None and len(target_weight) != len(tokens.flat):
            raise ValueError(f"target_weight has {len(target_weight)} entries for {len(tokens.flat)} tokens")
        self.weight = None if target_weight is None else torch.from_numpy(
            np.ascontiguousarray(target_weight, dtype=np.float32)).to(self.device)  # [N]
        self.lengths = tokens.lengths.astype(np.int64)  # host copy: batch widths without a sync
        as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64)).to(self.device)  # noqa: E731
        self.flat = as_t(tokens.flat)  # [N]
        self.starts, self.lens = as_t(tokens.offsets[:-1]), as_t(self.lengths)  # [rows]
        self.prompt_len = as_t(tokens.prompt_len)  # [rows]

    def batch(self, rows: np.ndarray) -> LMBatch:
        rows_np = np.asarray(rows, dtype=np.int64)
        width = int(self.lengths[rows_np].max())
        rows_t = torch.from_numpy(rows_np)
        if self.device.type == "cuda":
            rows_t = rows_t.pin_memory().to(self.device, non_blocking=True)
        pos = torch.arange(width, device=self.device)  # [T]
        lens = self.lens[rows_t][:, None]  # [b, 1]
        inside = pos[None, :] < lens  # [b, T]
        index = (self.starts[rows_t][:, None] + pos[None, :]).clamp_(max=self.flat.numel() - 1)
        seqs = torch.where(inside, self.flat[index], self.pad_id)  # [b, T]
        target_index = pos[1:][None, :]  # position j predicts token j + 1
        real = target_index < lens
        path = real & (target_index >= self.prompt_len[rows_t][:, None])
        loss_mask = path if self.loss_on == "path" else real
        weight = None if self.weight is None else self.weight[index[:, 1:]] * loss_mask  # [b, T-1]
        return LMBatch(inputs=seqs[:, :-1], targets=seqs[:, 1:], loss_mask=loss_mask, path_mask=path,
                       n_tokens=int(self.lengths[rows_np].sum()), loss_weight=weight)


# ---------------------------------------------------------------------------- data order


class DataOrder:
    """Rows of training batch ``step``: epoch-wise permutations, a pure function of the step.

    Each epoch ``e`` shuffles all rows with ``default_rng([seed, e])`` and is cut into
    ``len // batch_size`` full batches (the remainder rows wait for the next shuffle).

    Length bucketing (``length_window`` > 1, with ``lengths``): the shuffled rows are taken
    ``length_window`` batches at a time; inside such a window they are sorted by sequence length
    (stable) and cut into batches, so each batch holds sequences of nearly one length and a
    right-padded batch wastes almost nothing; the window's batches are then visited in the order
    ``default_rng([seed, e, window]).permutation``. Every row still appears once per epoch and
    the loss of a batch is unchanged (padding never reaches a real position); ``length_window=1``
    is the plain shuffled order.

    Size curriculum (``curriculum_epochs`` > 0, with ``sizes``): in each of the first
    ``curriculum_epochs`` epochs the shuffled rows are stably sorted by ``sizes`` (e.g. the
    prompt length, which grows with the maze) before the windows are cut, so the epoch runs from
    small mazes to large ones, shuffled inside each size; later epochs are plain. Every epoch
    still visits every row once.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int, lengths: np.ndarray | None = None,
                 length_window: int = 1, sizes: np.ndarray | None = None, curriculum_epochs: int = 0) -> None:
        if curriculum_epochs < 0:
            raise ValueError(f"curriculum_epochs must be >= 0, got {curriculum_epochs}")
        if curriculum_epochs and (sizes is None or len(sizes) != n_rows):
            raise ValueError("a size curriculum needs one size per training row")
        self.sizes, self.curriculum_epochs = None if sizes is None else np.asarray(sizes), curriculum_epochs
        if batch_size > n_rows:
            raise ValueError(f"train.batch_size={batch_size} exceeds the {n_rows} training sequences")
        if length_window < 1:
            raise ValueError(f"length_window must be >= 1, got {length_window}")
        if length_window > 1 and (lengths is None or len(lengths) != n_rows):
            raise ValueError("length bucketing needs one length per training row")
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self.window, self.lengths = length_window, None if lengths is None else np.asarray(lengths)
        self.batches_per_epoch = n_rows // batch_size
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)
        self._window_key, self._window_batches = None, []

    def rows(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)
            if epoch < self.curriculum_epochs:  # small -> large, shuffled within a size
                self._perm = self._perm[np.argsort(self.sizes[self._perm], kind="stable")]
        if self.window == 1:
            return self._perm[k * self.batch_size : (k + 1) * self.batch_size]
        w, j = divmod(k, self.window)
        if self._window_key != (epoch, w):
            first, last = w * self.window, min((w + 1) * self.window, self.batches_per_epoch)
            rows = self._perm[first * self.batch_size : last * self.batch_size]
            rows = rows[np.argsort(self.lengths[rows], kind="stable")]
            batches = rows.reshape(last - first, self.batch_size)
            visit = np.random.default_rng([self.seed, epoch, w]).permutation(last - first)
            self._window_key, self._window_batches = (epoch, w), batches[visit]
        return self._window_batches[j]


def padding_fraction(lengths: np.ndarray, batches: list[np.ndarray]) -> float:
    """Share of computed input positions that are padding: right-padding each batch of rows to
    its longest sequence (inputs are ``length - 1`` tokens: the last token is only a target)."""
    computed = sum(int(lengths[b].max() - 1) * len(b) for b in batches)
    real = sum(int((lengths[b] - 1).sum()) for b in batches)
    return 1.0 - real / computed if computed else 0.0
