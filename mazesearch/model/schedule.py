"""Optimizer and learning-rate schedule for training.

The schedule is a pure function of the step, so resuming a run needs only the step number (no
scheduler object to save) and the curve can be plotted or tested without a model.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def lr_at(step: int, lr: float, warmup_steps: int, max_steps: int, min_lr_frac: float) -> float:
    """Learning rate for optimizer step ``step`` (0-based, ``0 <= step < max_steps``).

    Linear warmup from ``lr / warmup_steps`` to ``lr`` over the first ``warmup_steps`` steps,
    then a cosine from ``lr`` down to ``lr * min_lr_frac``, reached exactly at the last step.
    """
    if not 0 <= step < max_steps:
        raise ValueError(f"step={step} is outside 0..max_steps-1={max_steps - 1}")
    if not 0 <= warmup_steps < max_steps:
        raise ValueError(f"warmup_steps={warmup_steps} must be in 0..max_steps-1={max_steps - 1}")
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max_steps - 1 - warmup_steps
    progress = (step - warmup_steps) / decay_steps if decay_steps > 0 else 1.0
    min_lr = lr * min_lr_frac
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def _is_embedding(module: nn.Module, param_name: str) -> bool:
    # Token and position tables are lookups, not linear maps: decaying them only shrinks rarely
    # seen rows (e.g. coordinates of larger grids) towards zero, so they are left undecayed.
    return isinstance(module, nn.Embedding) or param_name in ("W_E", "W_pos")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices only, not on norms, biases or embeddings.

    Groups list parameters in ``model.named_parameters()`` order so the optimizer state layout,
    and hence a resumed run, is identical from run to run.
    """
    no_decay: set[int] = set()
    for module in model.modules():
        for p_name, p in module.named_parameters(recurse=False):
            if p.dim() < 2 or _is_embedding(module, p_name):
                no_decay.add(id(p))
    decay, keep = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (keep if id(p) in no_decay else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]


def make_optimizer(
    model: nn.Module, lr: float, weight_decay: float, beta1: float, beta2: float, fused_ok: bool = False
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; ``fused_ok`` enables the fused CUDA kernel."""
    kwargs = {"fused": True} if fused_ok else {"foreach": True}
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(beta1, beta2), **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
