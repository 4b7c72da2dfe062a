"""The logit lens at teacher-forced moves: what each layer's residual stream already says about
the next cell (definitions: docs/interp.md; moves and forks: mazesearch.interp.forks).

Layer 0 is the embedding (``blocks.0.hook_resid_pre``), layer i+1 the output of block i
(``blocks.{i}.hook_resid_post``). Each is decoded as if it were the last: TransformerLens'
``ActivationCache.accumulated_resid(apply_ln=True)`` puts it through the real final LayerNorm
with its *own* mean and scale, then ``@ W_U + b_U``. The last layer's decoding is the model's
own logits (tests/test_lens.py).

Everything past :func:`run_lens` is plain numpy on the decoded logits, so it can be checked on
planted logits.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mazesearch.data.tokens import TokenBatch
from mazesearch.interp.forks import Moves, batches

GROUPS = ("forks", "corridors")
# Where the softmax mass sits at a fork: a partition of the vocabulary (docs/interp.md).
MASSES = ("correct", "dead_end", "back", "other_cells", "not_a_cell")


def layer_names(n_layers: int) -> list[str]:
    return ["embed"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


def lens_hooks(n_layers: int) -> list[str]:
    """The residual streams the lens reads: entering every block, then after the last one (= layer_names)."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)] + [f"blocks.{n_layers - 1}.hook_resid_post"]


def decode_cached(bridge, cache, bi: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """A cache holding :func:`lens_hooks` -> decoded logits ``[n_layers + 1, rows, d_vocab]`` at the
    rows (``bi``, ``pi``: long [rows], sequence and position of each)."""
    stack = cache.accumulated_resid(apply_ln=True)  # [layers, batch, pos, d_model], each normalized alone
    return stack[:, bi, pi] @ bridge.W_U + bridge.b_U  # [layers, rows, d_vocab]


def lens_logits(bridge, ids: torch.Tensor, bi: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """ids long ``[batch, pos]`` -> :func:`decode_cached` of its forward pass."""
    with torch.no_grad():
        _, cache = bridge.run_with_cache(ids, names_filter=lens_hooks(bridge.cfg.n_layers))
        return decode_cached(bridge, cache, bi, pi)


def run_lens(bridge, tokens: TokenBatch, moves: Moves, batch_size: int, pad_id: int) -> np.ndarray:
    """The logit lens at every move: ``float32 [n_layers + 1, P, d_vocab]`` (rows as ``moves``)."""
    device = bridge.W_U.device
    out = np.zeros((bridge.cfg.n_layers + 1, len(moves), bridge.cfg.d_vocab), dtype=np.float32)
    for rows, ids, bi, pi in batches(tokens, moves, batch_size, pad_id, device):
        out[:, rows] = lens_logits(bridge, ids, bi, pi).float().cpu().numpy()
    return out


# ---------------------------------------------------------------------------- scores (numpy)


def softmax(logits: np.ndarray) -> np.ndarray:
    """float64 softmax over the last axis."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def token_cells(cell_token: np.ndarray, d_vocab: int) -> np.ndarray:
    """The inverse of forks.cell_tokens: cell of each token id, -1 for tokens naming no cell. ``int64 [d_vocab]``"""
    out = np.full(d_vocab, -1, dtype=np.int64)
    out[cell_token] = np.arange(len(cell_token))
    return out


def hits(logits: np.ndarray, moves: Moves, cell_token: np.ndarray) -> np.ndarray:
    """Is the argmax token a correct next cell? ``bool [..., P]`` for logits ``[..., P, d_vocab]``.
    Ties go to the lowest token id, as in greedy decoding."""
    cell = token_cells(cell_token, logits.shape[-1])[np.argmax(logits, axis=-1)]  # [..., P]
    rows = np.broadcast_to(np.arange(len(moves)), cell.shape)
    return (cell >= 0) & moves.correct[rows, np.maximum(cell, 0)]


def fork_masses(probs: np.ndarray, moves: Moves, cell_token: np.ndarray) -> dict[str, np.ndarray]:
    """Softmax mass per kind of token at each move: probs ``[..., P, d_vocab]`` -> ``{kind: [..., P]}``.

    ``correct``: the correct next cell(s); ``dead_end``: cells inside dead-end branches (of which
    ``dead_end_entry``: the wrong legal neighbours themselves); ``back``: the cell just left;
    ``other_cells``: every other cell of the grid (current cell, rest of the path, cells behind);
    ``not_a_cell``: special tokens and coordinates off this grid. The five kinds of MASSES sum to 1.
    """
    cell_p = probs[..., cell_token]  # [..., P, n_cells]
    correct = (cell_p * moves.correct).sum(-1)
    dead = (cell_p * moves.dead_end).sum(-1)
    entry = (cell_p * (moves.dead_end & moves.legal)).sum(-1)
    rows = np.arange(len(moves))
    back = np.where(moves.previous >= 0, cell_p[..., rows, np.maximum(moves.previous, 0)], 0.0)
    on_grid = cell_p.sum(-1)
    return {"correct": correct, "dead_end": dead, "dead_end_entry": entry, "back": back,
            "other_cells": on_grid - correct - dead - back, "not_a_cell": probs.sum(-1) - on_grid}


def decision_layers(argmax: np.ndarray) -> np.ndarray:
    """argmax ``[layers, P]`` -> ``int64 [P]``: the first layer from which the argmax is the final
    layer's and stays so at every later layer (0 = already in the embedding)."""
    agree = argmax == argmax[-1]
    trailing = np.cumprod(agree[::-1], axis=0).sum(axis=0)  # layers agreeing, counted from the top
    return (agree.shape[0] - trailing).astype(np.int64)


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


def summarize(logits: np.ndarray, moves: Moves, cell_token: np.ndarray) -> dict:
    """One model's lens curves: per layer accuracy and correct-cell probability at forks and
    corridors, the decision layer (mean, counts per layer), and the mass kinds at forks (plus
    ``dead_end_share`` = dead_end / (dead_end + correct), averaged over forks)."""
    n_layers = logits.shape[0]
    probs = softmax(logits)  # [layers, P, d_vocab]
    hit = hits(logits, moves, cell_token)  # [layers, P]
    masses = fork_masses(probs, moves, cell_token)
    # dead-end mass against the next cell's, per fork: 0 = all on the answer, 1 = all in dead ends
    masses["dead_end_share"] = masses["dead_end"] / np.maximum(masses["dead_end"] + masses["correct"], 1e-300)
    decided = decision_layers(np.argmax(logits, axis=-1))
    out = {"accuracy": {}, "p_correct": {}, "decision_layer": {}}
    for group, sel in (("forks", moves.is_fork), ("corridors", ~moves.is_fork)):
        out["accuracy"][group] = [_mean(hit[i, sel]) for i in range(n_layers)]
        out["p_correct"][group] = [_mean(masses["correct"][i, sel]) for i in range(n_layers)]
        out["decision_layer"][group] = {"mean": _mean(decided[sel]),
                                        "counts": np.bincount(decided[sel], minlength=n_layers).tolist()}
    out["fork_mass"] = {kind: [_mean(m[i, moves.is_fork]) for i in range(n_layers)] for kind, m in masses.items()}
    return out


def chance(moves: Moves) -> dict:
    """A blind walker's accuracy: mean of 1 / (legal options) (the baseline's rule) and of
    1 / (open neighbours) (a walker that may also step back), at forks and at corridors."""
    out = {}
    for group, sel in (("forks", moves.is_fork), ("corridors", ~moves.is_fork)):
        out[group] = _mean(1.0 / moves.n_legal[sel])
        out[f"{group}_any_neighbour"] = _mean(1.0 / moves.degree[sel])
    return out


def rounded(value):
    """Floats to 6 significant digits (NaN -> None), recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    return value


def report(trained: dict, control: dict, moves: Moves, layers: list[str]) -> tuple[dict, dict, str]:
    """(metrics headline, details, lens.csv text) from two :func:`summarize` results."""
    odds = chance(moves)
    details = rounded({
        "layers": layers,
        "n_positions": {"forks": int(moves.is_fork.sum()), "corridors": int((~moves.is_fork).sum())},
        "chance": odds, "trained": trained, "control": control,
    })
    t, c = details["trained"], details["control"]
    metrics = {
        "acc_forks": t["accuracy"]["forks"][-1],
        "control_acc_forks": c["accuracy"]["forks"][-1],
        "chance_forks": details["chance"]["forks"],
        "acc_corridors": t["accuracy"]["corridors"][-1],
        "decision_layer_forks": t["decision_layer"]["forks"]["mean"],
        "decision_layer_corridors": t["decision_layer"]["corridors"]["mean"],
        "dead_end_mass_final": t["fork_mass"]["dead_end"][-1],
        "dead_end_share_final": t["fork_mass"]["dead_end_share"][-1],
        "control_dead_end_share_final": c["fork_mass"]["dead_end_share"][-1],
    }
    lines = ["layer_idx,layer,forks,corridors,control_forks,control_corridors,chance_forks"]
    cell = lambda v: "" if v is None else repr(v)  # noqa: E731
    for i, layer in enumerate(layers):
        values = [t["accuracy"]["forks"][i], t["accuracy"]["corridors"][i], c["accuracy"]["forks"][i],
                  c["accuracy"]["corridors"][i], details["chance"]["forks"]]
        lines.append(f"{i},{layer}," + ",".join(cell(v) for v in values))
    return metrics, details, "\n".join(lines) + "\n"
