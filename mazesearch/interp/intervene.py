"""Interventions on the plain GPT (torch hooks), and greedy rollouts / teacher-forced logits under them.

An :class:`Intervention` edits one forward pass of :class:`mazesearch.model.gpt.GPT`, at the same
places TransformerLens names (tests/test_intervene.py checks each against the bridge):

* ``add[l]``: a vector added to ``blocks.{l}.hook_resid_post`` (the output of block l);
* ``replace[l]``: ``fn(resid) -> resid`` applied there (e.g. a sparse autoencoder's reconstruction);
  at a layer with both, ``replace`` runs first, then ``add``;
* ``ablate``/``head_means``: chosen heads' ``blocks.{l}.attn.hook_z`` replaced by a fixed vector
  (mean ablation; :func:`head_means` computes the means), at every position;
* ``from_pos``, ``to_pos``: add/replace only at positions ``from_pos <= p < to_pos`` (each an int,
  or one per row; ``to_pos=None``: no end).

Per-row tensors (``add[l]`` of shape ``[batch, d_model]``, ``from_pos`` of shape ``[batch]``) belong to
rows of the caller's list; the batched helpers sort and chunk rows and hand each chunk its rows.
The hooks assume a plain ``GPT.forward`` (column j = position j). :func:`rollout_under` re-runs
the full right-padded forward each step (``rollout._Recompute``: causal attention keeps pads out of
real positions); :func:`rollout_under_cached` drives the key/value-cached decoder
(``rollout._KVCache``, left-padded) and shifts ``from_pos`` per call so the same positions are
edited (tests/test_intervene.py: equal tokens), many times faster.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch

from mazesearch.evaluation.rollout import _check_prompts, _decode, _KVCache, _Recompute, _row_caps
from mazesearch.model.gpt import GPT


@dataclasses.dataclass
class Intervention:
    add: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)  # l -> [batch, d_model] | [d_model]
    replace: dict[int, Callable[[torch.Tensor], torch.Tensor]] = dataclasses.field(default_factory=dict)
    ablate: torch.Tensor | None = None  # bool [n_layers, n_heads]: True = z replaced by head_means
    head_means: torch.Tensor | None = None  # [n_layers, n_heads, d_head]
    from_pos: int | torch.Tensor = 0  # add/replace at positions >= from_pos; int or long [batch]
    to_pos: int | torch.Tensor | None = None  # ... and < to_pos; int or long [batch]; None = no end

    def n_rows(self) -> int | None:
        """Rows the per-row tensors cover (None if there are none)."""
        sizes = {int(v.shape[0]) for v in self.add.values() if v.ndim == 2}
        for bound in (self.from_pos, self.to_pos):
            if isinstance(bound, torch.Tensor) and bound.ndim == 1:
                sizes.add(int(bound.shape[0]))
        if len(sizes) > 1:
            raise ValueError(f"per-row tensors of the intervention disagree on the number of rows: {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def check(self, model: GPT) -> None:
        cfg = model.cfg
        for kind, layers in (("add", self.add), ("replace", self.replace)):
            bad = [l for l in layers if not (isinstance(l, int) and 0 <= l < cfg.n_layers)]
            if bad:
                raise ValueError(f"Intervention.{kind} has layers {bad}; the model has layers 0..{cfg.n_layers - 1}")
        for l, v in self.add.items():
            if v.ndim not in (1, 2) or v.shape[-1] != cfg.d_model:
                raise ValueError(f"Intervention.add[{l}] must be [d_model] or [batch, d_model] with "
                                 f"d_model={cfg.d_model}, got {tuple(v.shape)}")
        for name in ("from_pos", "to_pos"):
            bound = getattr(self, name)
            if isinstance(bound, torch.Tensor) and bound.ndim not in (0, 1):
                raise ValueError(f"Intervention.{name} must be an int or [batch], got {tuple(bound.shape)}")
        if self.ablate is not None:
            if tuple(self.ablate.shape) != (cfg.n_layers, cfg.n_heads) or self.ablate.dtype != torch.bool:
                raise ValueError(f"Intervention.ablate must be bool [{cfg.n_layers}, {cfg.n_heads}], "
                                 f"got {self.ablate.dtype} {tuple(self.ablate.shape)}")
            want = (cfg.n_layers, cfg.n_heads, cfg.d_head)
            if bool(self.ablate.any()) and (self.head_means is None or tuple(self.head_means.shape) != want):
                got = None if self.head_means is None else tuple(self.head_means.shape)
                raise ValueError(f"Intervention.ablate needs head_means of shape {want}, got {got}")
        self.n_rows()


def _pick(t: torch.Tensor, rows: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """A per-row tensor's rows for the batch ``like [batch, ...]`` runs, on its device."""
    t = t.to(like.device) if rows is None else t.to(like.device)[rows.to(like.device)]
    if t.shape[0] != like.shape[0]:
        raise ValueError(f"a per-row intervention tensor has {t.shape[0]} rows for a batch of {like.shape[0]} "
                         "(pass rows= to pick them)")
    return t


def _bound(value, rows: torch.Tensor | None, like: torch.Tensor):
    """A position bound as something to compare ``[1, pos]`` columns with: ``[batch, 1]`` or an int."""
    if isinstance(value, torch.Tensor) and value.ndim == 1:
        return _pick(value, rows, like)[:, None]
    return int(value)


@contextlib.contextmanager
def intervened(model: GPT, iv: Intervention, rows: torch.Tensor | np.ndarray | None = None):
    """Apply ``iv`` to every ``model.forward`` inside the block; hooks are removed on exit (also on
    exceptions). ``rows`` (long [batch]) picks the rows of per-row tensors for the batch that runs."""
    iv.check(model)
    rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)  # [batch]
    handles = []

    def post_hook(layer: int):
        def hook(module, args, resid):  # resid: [batch, pos, d_model]
            batch, pos, _ = resid.shape
            cols = torch.arange(pos, device=resid.device)[None, :]  # [1, pos]
            mask = cols >= _bound(iv.from_pos, rows, resid)  # [1 | batch, pos]
            if iv.to_pos is not None:
                mask = mask & (cols < _bound(iv.to_pos, rows, resid))
            mask = mask.expand(batch, pos)[..., None]  # [batch, pos, 1]
            new = resid
            if layer in iv.replace:
                new = torch.where(mask, iv.replace[layer](new), new)
            if layer in iv.add:
                v = iv.add[layer].to(resid.dtype)
                v = _pick(v, rows, resid) if v.ndim == 2 else v.to(resid.device)  # [batch | 1, d_model]
                new = new + mask * v.reshape(-1, 1, v.shape[-1])
            return new
        return hook

    def z_hook(layer: int):
        heads = torch.nonzero(iv.ablate[layer]).squeeze(1)  # [k]

        def hook(module, args):  # z flattened: [batch, pos, n_heads * d_head]
            (z,) = args
            z = z.reshape(*z.shape[:2], model.cfg.n_heads, model.cfg.d_head).clone()  # [batch, pos, head, d_head]
            z[:, :, heads.to(z.device)] = iv.head_means[layer, heads].to(z)
            return (z.flatten(2),)
        return hook

    try:
        for layer in sorted(set(iv.add) | set(iv.replace)):
            handles.append(model.blocks[layer].register_forward_hook(post_hook(layer)))
        if iv.ablate is not None:
            for layer in range(model.cfg.n_layers):
                if bool(iv.ablate[layer].any()):
                    handles.append(model.blocks[layer].attn.o.register_forward_pre_hook(z_hook(layer)))
        yield model
    finally:
        for h in handles:
            h.remove()


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
    lengths = _check_prompts(seqs)
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


class _Intervened(_Recompute):
    """rollout's right-padded recompute state, running the GPT under an intervention; ``rows``
    (indices into the caller's prompts) follow the state's rows through ``keep``."""

    def __init__(self, model: GPT, iv: Intervention, prompts, rows: np.ndarray, pad_id: int, width: int, device):
        super().__init__(self._logits, prompts, pad_id, width, device)
        self.model, self.iv = model, iv
        self.rows = torch.as_tensor(rows, dtype=torch.long)  # [state rows]

    def _logits(self, tokens: torch.Tensor) -> torch.Tensor:  # [rows, pos] -> [rows, pos, vocab]
        return logits_under(self.model, tokens, self.iv, self.rows)

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        self.rows = self.rows[rows.cpu()]


def _rollout(state, model: GPT, prompts: Sequence[np.ndarray], iv: Intervention, max_new_tokens: int,
             end_id: int, pad_id: int, batch_size: int) -> list[np.ndarray]:
    """Greedy decoding through ``state`` (:class:`_Intervened` or :class:`_IntervenedCached`), in eval mode."""
    prompts = list(prompts)
    iv.check(model)
    _check_rows(iv, len(prompts))
    lengths = _check_prompts(prompts)
    caps = _row_caps(lengths, max_new_tokens, model.cfg.n_ctx)
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        def make(rows, width):
            return state(model, iv, [prompts[r] for r in rows], rows, pad_id, width, device)

        with torch.inference_mode():  # _decode is inference-mode too; the state's prompt buffer is built here
            return _decode(make, prompts, caps, end_id, batch_size, device)[0]
    finally:
        model.train(was_training)


def rollout_under(model: GPT, prompts: Sequence[np.ndarray], iv: Intervention, *, max_new_tokens: int,
                  end_id: int, pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """Greedy continuation of every prompt with ``iv`` active at every step.

    Same convention as :func:`mazesearch.evaluation.rollout.greedy_rollout`: per prompt in input order,
    ``int32 [k]`` generated ids up to and including ``end_id``, or ``min(max_new_tokens, n_ctx - len)``
    tokens (``GPT.forward`` accepts at most n_ctx tokens, rotary models included). Row i of a per-row
    tensor belongs to ``prompts[i]``.
    """
    return _rollout(_Intervened, model, prompts, iv, max_new_tokens, end_id, pad_id, batch_size)


NO_END = 2**40  # to_pos=None in the cached decoder: past any sequence


class _IntervenedCached(_KVCache):
    """rollout's key/value-cached state under an intervention. Each forward call runs columns
    start..start+t-1, row r's column c holding position c - pad[r]: the call's ``from_pos`` is
    moved to ``from_pos + pad - start``, and ``to_pos`` likewise (pads, at negative positions, are
    never edited)."""

    def __init__(self, model: GPT, iv: Intervention, prompts, rows: np.ndarray, pad_id: int, width: int, device):
        self.iv = iv
        self.rows = torch.as_tensor(rows, dtype=torch.long)  # [state rows]: caller's prompt indices
        def per_row(bound, default: int) -> torch.Tensor:  # [state rows]
            if isinstance(bound, torch.Tensor) and bound.ndim == 1:
                return bound.to(torch.long).cpu()[self.rows]
            return torch.full((len(rows),), default if bound is None else int(bound), dtype=torch.long)

        self.from_pos, self.to_pos = per_row(iv.from_pos, 0), per_row(iv.to_pos, NO_END)
        super().__init__(model, prompts, pad_id, width, device)

    def _forward(self, tokens: torch.Tensor, start: int, first_logit_col: int | None = None) -> torch.Tensor:
        iv = self.iv
        shifted = Intervention(
            add={l: (_pick(v, self.rows, tokens) if v.ndim == 2 else v) for l, v in iv.add.items()},
            replace=iv.replace, ablate=iv.ablate, head_means=iv.head_means,
            from_pos=(self.from_pos.to(self.pad.device) + self.pad - start).clamp(min=0),
            to_pos=(self.to_pos.to(self.pad.device) + self.pad - start).clamp(min=0))
        with intervened(self.model, shifted):
            return super()._forward(tokens, start, first_logit_col)

    def keep(self, rows: torch.Tensor) -> None:
        super().keep(rows)
        keep = rows.cpu()
        self.rows, self.from_pos, self.to_pos = self.rows[keep], self.from_pos[keep], self.to_pos[keep]


def rollout_under_cached(model: GPT, prompts: Sequence[np.ndarray], iv: Intervention, *, max_new_tokens: int,
                         end_id: int, pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """:func:`rollout_under` on the key/value-cached decoder: the same tokens, many times faster."""
    return _rollout(_IntervenedCached, model, prompts, iv, max_new_tokens, end_id, pad_id, batch_size)


@torch.inference_mode()
def teacher_forced_logits_under(model: GPT, sequences, positions: Sequence[np.ndarray], iv: Intervention,
                                pad_id: int, batch_size: int = 256) -> list[np.ndarray]:
    """Per sequence, float32 logits ``[k, vocab]`` at ``positions[i]`` (ints in 0..len-1) under ``iv``;
    row i of a per-row tensor belongs to sequence i."""
    seqs = _sequences(sequences)
    if len(positions) != len(seqs):
        raise ValueError(f"positions has {len(positions)} entries, sequences has {len(seqs)}")
    lengths = _check_prompts(seqs)
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
