"""Interventions on the plain GPT, as torch forward hooks: what a rollout, a teacher-forced pass or
an ablation runs under (``mazesearch.evaluation.rollout``'s decoders take one; the instruments in
``mazesearch.interp.intervene`` build on it).

An :class:`Intervention` edits one forward pass of :class:`mazesearch.model.gpt.GPT`, at the same
places TransformerLens names (tests/test_intervene.py checks each against the bridge):

* ``add[l]``: a vector added to ``blocks.{l}.hook_resid_post`` (the output of block l);
* ``add_pre[l]``: a vector added to ``blocks.{l}.hook_resid_pre`` (the input of block l: the
  embeddings for l = 0, else the same point as ``add[l-1]``, which runs first);
* ``replace[l]``: ``fn(resid) -> resid`` applied there (e.g. a sparse autoencoder's reconstruction);
  at a layer with both, ``replace`` runs first, then ``add``;
* ``ablate``/``head_means``: chosen heads' ``blocks.{l}.attn.hook_z`` replaced by a fixed vector
  (mean ablation), at every position;
* ``from_pos``, ``to_pos``: add/replace only at positions ``from_pos <= p < to_pos`` (each an int,
  or one per row; ``to_pos=None``: no end).

Per-row tensors (``add[l]`` of shape ``[batch, d_model]``, ``from_pos`` of shape ``[batch]``) belong
to rows of the caller's list; whoever runs a subset of rows passes ``rows=`` to :func:`intervened`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from mazesearch.model.gpt import GPT


@dataclasses.dataclass
class Intervention:
    add: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)  # l -> [batch, d_model] | [d_model]
    replace: dict[int, Callable[[torch.Tensor], torch.Tensor]] = dataclasses.field(default_factory=dict)
    add_pre: dict[int, torch.Tensor] = dataclasses.field(default_factory=dict)  # l -> [batch, d_model] | [d_model]
    ablate: torch.Tensor | None = None  # bool [n_layers, n_heads]: True = z replaced by head_means
    head_means: torch.Tensor | None = None  # [n_layers, n_heads, d_head]
    from_pos: int | torch.Tensor = 0  # add/replace at positions >= from_pos; int or long [batch]
    to_pos: int | torch.Tensor | None = None  # ... and < to_pos; int or long [batch]; None = no end

    def n_rows(self) -> int | None:
        """Rows the per-row tensors cover (None if there are none)."""
        sizes = {int(v.shape[0]) for v in (*self.add.values(), *self.add_pre.values()) if v.ndim == 2}
        for bound in (self.from_pos, self.to_pos):
            if isinstance(bound, torch.Tensor) and bound.ndim == 1:
                sizes.add(int(bound.shape[0]))
        if len(sizes) > 1:
            raise ValueError(f"per-row tensors of the intervention disagree on the number of rows: {sorted(sizes)}")
        return sizes.pop() if sizes else None

    def check(self, model: GPT) -> None:
        cfg = model.cfg
        for kind, layers in (("add", self.add), ("add_pre", self.add_pre), ("replace", self.replace)):
            bad = [l for l in layers if not (isinstance(l, int) and 0 <= l < cfg.n_layers)]
            if bad:
                raise ValueError(f"Intervention.{kind} has layers {bad}; the model has layers 0..{cfg.n_layers - 1}")
        for kind, layers in (("add", self.add), ("add_pre", self.add_pre)):
            for l, v in layers.items():
                if v.ndim not in (1, 2) or v.shape[-1] != cfg.d_model:
                    raise ValueError(f"Intervention.{kind}[{l}] must be [d_model] or [batch, d_model] with "
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
def intervened(model: GPT, iv: Intervention, rows: torch.Tensor | np.ndarray | None = None,
               positions: torch.Tensor | None = None):
    """Apply ``iv`` to every forward pass of ``model`` inside the block (``forward`` and the
    key/value-cached ``forward_cached``); hooks are removed on exit (also on exceptions).

    ``rows`` (long [batch]) picks the rows of per-row tensors for the batch that runs.
    ``positions`` (long [batch | 1, pos]) is each column's position in its sequence, which
    ``from_pos``/``to_pos`` are compared with; default: column j is position j (a plain,
    right-padded forward). A left-padded, cached decoder passes ``column - pad`` (pads are
    negative, so never edited).
    """
    iv.check(model)
    rows = None if rows is None else torch.as_tensor(rows, dtype=torch.long)  # [batch]
    handles = []

    def window(resid: torch.Tensor) -> torch.Tensor:  # resid [batch, pos, d] -> bool [batch, pos, 1]
        batch, pos, _ = resid.shape
        cols = (torch.arange(pos, device=resid.device)[None, :] if positions is None
                else positions.to(resid.device))  # [1 | batch, pos]
        mask = cols >= _bound(iv.from_pos, rows, resid)  # [1 | batch, pos]
        if iv.to_pos is not None:
            mask = mask & (cols < _bound(iv.to_pos, rows, resid))
        return mask.expand(batch, pos)[..., None]

    def added(resid: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        v = v.to(resid.dtype)
        v = _pick(v, rows, resid) if v.ndim == 2 else v.to(resid.device)  # [batch | 1, d_model]
        return resid + mask * v.reshape(-1, 1, v.shape[-1])

    def post_hook(layer: int):
        def hook(module, args, resid):  # resid: [batch, pos, d_model]
            mask = window(resid)
            new = resid
            if layer in iv.replace:
                new = torch.where(mask, iv.replace[layer](new), new)
            if layer in iv.add:
                new = added(new, iv.add[layer], mask)
            return new
        return hook

    def pre_hook(layer: int):
        def hook(module, args):  # args[0]: the block's input resid [batch, pos, d_model]
            resid = args[0]
            return (added(resid, iv.add_pre[layer], window(resid)), *args[1:])
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
        for layer in sorted(iv.add_pre):
            handles.append(model.blocks[layer].register_forward_pre_hook(pre_hook(layer)))
        if iv.ablate is not None:
            for layer in range(model.cfg.n_layers):
                if bool(iv.ablate[layer].any()):
                    handles.append(model.blocks[layer].attn.o.register_forward_pre_hook(z_hook(layer)))
        yield model
    finally:
        for h in handles:
            h.remove()
