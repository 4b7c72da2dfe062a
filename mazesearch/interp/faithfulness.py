"""Faithfulness: how much of the behaviour do the heads patching ranks highest explain?
(docs/interp.md)

Keep the top k heads of a ranking (mazesearch.interp.patching.head_ranking: most necessary
first) and mean-ablate every other head: its output ``z`` is replaced, at every position, by its
mean over the dataset's real tokens (mazesearch.interp.intervene.head_means). Roll out greedily
and score the exact-path rate for k = 0 (every head ablated) .. all (the full model), beside the
same curve for a random order of the heads (the control). The answer is the smallest k whose
rate is at least ``level`` x the full model's.

Means hide cancellation, so the per-example table is kept too: examples the full model gets wrong
and an ablated model gets right ("ablation helps") are counted at every k.
"""

from __future__ import annotations

import numpy as np
import torch

LEVEL = 0.95  # share of the full model's exact-path rate the kept heads must reach


def keep_mask(ranking: list[tuple[int, int]], k: int, n_layers: int, n_heads: int) -> np.ndarray:
    """bool [n_layers, n_heads]: True for the first k heads of ``ranking`` (kept), False ablated."""
    if sorted(ranking) != [(l, h) for l in range(n_layers) for h in range(n_heads)]:
        raise ValueError(f"the ranking must name each of the {n_layers} x {n_heads} heads once")
    if not 0 <= k <= len(ranking):
        raise ValueError(f"k={k} outside 0..{len(ranking)}")
    keep = np.zeros((n_layers, n_heads), dtype=bool)
    for l, h in ranking[:k]:
        keep[l, h] = True
    return keep


def random_ranking(n_layers: int, n_heads: int, seed: int) -> list[tuple[int, int]]:
    heads = [(l, h) for l in range(n_layers) for h in range(n_heads)]
    order = np.random.default_rng(seed).permutation(len(heads))
    return [heads[i] for i in order]


def smallest_k(rates: np.ndarray, full: float, level: float = LEVEL) -> int | None:
    """The smallest k with ``rates[k] >= level * full`` (rates indexed by k); None if none."""
    hits = np.flatnonzero(np.asarray(rates) >= level * full - 1e-12)
    return int(hits[0]) if len(hits) else None


def helped(exact_by_k: np.ndarray) -> np.ndarray:
    """exact_by_k bool [K + 1, B] (last row: the full model) -> int64 [K + 1]: examples the full
    model gets wrong that the ablated model at k gets right."""
    full = exact_by_k[-1]
    return (exact_by_k & ~full[None, :]).sum(axis=1).astype(np.int64)


def exact_under_ablation(model, prompts: list[np.ndarray], keep: np.ndarray, means: torch.Tensor, score,
                         *, max_new_tokens: int, end_id: int, pad_id: int, batch_size: int) -> np.ndarray:
    """bool [B]: exact path of every prompt with the heads outside ``keep`` mean-ablated;
    ``score(generated) -> bool [B]``."""
    from mazesearch.interp.intervene import Intervention, rollout_under_cached

    ablate = torch.as_tensor(~keep, device=means.device)
    iv = Intervention(ablate=ablate, head_means=means) if bool(ablate.any()) else Intervention()
    generated = rollout_under_cached(model, prompts, iv, max_new_tokens=max_new_tokens, end_id=end_id, pad_id=pad_id,
                                     batch_size=batch_size)
    return np.asarray(score(generated), dtype=bool)
