"""Steering along found directions: does the model *use* what the probes find? (docs/interp.md)

For each counterfactual pair (mazesearch.interp.counterfactuals) the model reads the **clean**
prompt while a vector is added to its residual stream after one block, at every position,
during the whole greedy rollout. The vector asks for the pair's edit:

    edge_add     +w[e_added]                 (walls probe: "edge e is open")
    edge_remove  -w[e_removed]
    wall_move    +w[e_added] - w[e_removed]
    target_move  +u[t_new] - u[t_old]        (target probe: "the target is cell t")

normalised to unit length and scaled by ``strength x`` the mean residual norm at that layer, at
the positions from ``<PATH_START>`` on (where the probes were fitted; ``steering.positions:
path``) or at every position (``all``).
**Success** is strict and behavioural: the rollout is exactly the shortest path of the
*corrupt* (edited) maze. **Broken**: the rollout is not a valid path in the edited maze (wall
jump, off-grid token, no end). **Unchanged**: still the clean maze's path.

Directions, each at the same norm: the trained probe's weights (gradient of the probe's logit
with respect to the raw residual), the same probe fitted on permuted labels (labels of another
maze of the same shape), random Gaussian directions, and sparse-autoencoder decoder rows matched
to the edge / target (mazesearch.interp.sae).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import TokenBatch
from mazesearch.evaluation.metrics import Walks, compute_metrics
from mazesearch.evaluation.predict import walks_of
from mazesearch.evaluation.stats import wilson_interval
from mazesearch.interp.probes import fit_logistic_multilabel, fit_logistic_multinomial, permute_across_mazes

OUTCOMES = ("success", "broken", "unchanged")


@torch.inference_mode()
def residuals_at(model, tokens: TokenBatch, maze_row: np.ndarray, token_pos: np.ndarray, layers: list[int],
                 pad_id: int, batch_size: int = 128, point: str = "post") -> dict[int, np.ndarray]:
    """The residual stream after block ``l`` (``blocks.{l}.hook_resid_post``; ``point="pre"``: its
    input, ``blocks.{l}.hook_resid_pre``) at the given (sequence, position) rows:
    ``{l: float32 [rows, d_model]}``."""
    if point not in ("pre", "post"):
        raise ValueError(f"point must be 'pre' or 'post', got {point!r}")
    shift = 1 if point == "post" else 0  # stream[0] is block 0's input, stream[l + 1] block l's output
    device = next(model.parameters()).device
    out = {l: np.zeros((len(maze_row), model.cfg.d_model), np.float32) for l in layers}
    depth = max(layers) + shift
    for lo in range(0, len(tokens), batch_size):
        chunk = np.arange(lo, min(lo + batch_size, len(tokens)))
        ids = torch.as_tensor(tokens.take(chunk).padded(pad_id).astype(np.int64), device=device)
        stream = list(model.residual_stream(ids, depth=depth))  # depth + 1 x [batch, pos, d_model]
        sel = np.flatnonzero((maze_row >= lo) & (maze_row < chunk[-1] + 1))
        bi = torch.as_tensor(maze_row[sel] - lo, device=device)
        pi = torch.as_tensor(token_pos[sel], device=device)
        for l in layers:
            out[l][sel] = stream[l + shift][bi, pi].float().cpu().numpy()
    return out


@dataclasses.dataclass(frozen=True)
class ProbeWeights:
    """A linear probe's output directions in the raw residual space: ``[outputs, d_model]``."""

    trained: np.ndarray
    permuted: np.ndarray


def _raw_directions(W_std: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Weights fitted on z-scored X -> d logit / d raw x, one row per output: ``[K, d]``."""
    return (W_std / std[:, None]).T


def fit_probe(X: np.ndarray, labels: np.ndarray, task: str, n_outputs: int, maze_id: np.ndarray,
              slot: np.ndarray, C: float, max_iter: int, seed: int) -> ProbeWeights:
    """Fit the probe on X ``[rows, d]`` and again on labels permuted across mazes of one shape."""
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std < 1e-8] = 1.0
    Z = (X.astype(np.float64) - mean) / std
    src, _ = permute_across_mazes(maze_id, slot, np.zeros(len(maze_id), np.int64), seed)
    out = []
    for y in (labels, labels[src]):
        if task == "multilabel":
            W, _ = fit_logistic_multilabel(Z, y.astype(np.float64), C, max_iter)
        else:
            W, _ = fit_logistic_multinomial(Z, y.astype(np.int64), n_outputs, C, max_iter)
        out.append(_raw_directions(W, std))
    return ProbeWeights(trained=out[0], permuted=out[1])


def edit_vectors(kind: np.ndarray, added: np.ndarray, removed: np.ndarray, old_target: np.ndarray,
                 new_target: np.ndarray, edge_dirs: np.ndarray, cell_dirs: np.ndarray) -> np.ndarray:
    """Per pair, the unit vector asking for its edit (module doc): ``float32 [P, d]``."""
    P, d = len(kind), edge_dirs.shape[1]
    v = np.zeros((P, d), np.float64)
    for i in range(P):
        if kind[i] == "target_move":
            v[i] = cell_dirs[new_target[i]] - cell_dirs[old_target[i]]
        else:
            if added[i] >= 0:
                v[i] += edge_dirs[added[i]]
            if removed[i] >= 0:
                v[i] -= edge_dirs[removed[i]]
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    return (v / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def random_vectors(P: int, d: int, n: int, seed: int) -> np.ndarray:
    """``n`` random unit directions per pair: ``float32 [n, P, d]``."""
    g = np.random.default_rng(seed).standard_normal((n, P, d))
    return (g / np.linalg.norm(g, axis=2, keepdims=True)).astype(np.float32)


def outcomes(walks: Walks, clean: MazeBatch, corrupt: MazeBatch) -> dict[str, np.ndarray]:
    """bool [P] per outcome (module doc)."""
    edited = compute_metrics(corrupt, walks)
    return {"success": edited["exact_path"].astype(bool), "broken": ~edited["valid_path"].astype(bool),
            "unchanged": compute_metrics(clean, walks)["exact_path"].astype(bool)}


def roll(model, layer: int, prompts: list[np.ndarray], vectors: np.ndarray, scale: float | np.ndarray, vocab,
         grid_n: int, *, from_pos: np.ndarray | int = 0, to_pos: np.ndarray | int | None = None, at: str = "post",
         max_new_tokens: int, batch_size: int, cached: bool = True) -> Walks:
    """Greedy walks of every prompt with ``scale * vectors[i]`` added to block ``layer``'s output
    (``at="post"``) or input (``at="pre"``) at positions ``from_pos <= p < to_pos`` (per prompt,
    or one int; ``to_pos`` None: no end). ``cached=False``: the full-recompute decoder (same
    tokens; for models without a key/value path)."""
    from mazesearch.interp.intervene import Intervention, rollout_under, rollout_under_cached

    if at not in ("pre", "post"):
        raise ValueError(f"at must be 'pre' or 'post', got {at!r}")
    device = next(model.parameters()).device
    scale = np.asarray(scale, dtype=np.float32)
    add = torch.as_tensor(vectors * (scale[:, None] if scale.ndim else scale), device=device)
    bound = lambda b: torch.as_tensor(np.asarray(b, dtype=np.int64)) if np.ndim(b) else (None if b is None else int(b))  # noqa: E731
    iv = Intervention(**{"add" if at == "post" else "add_pre": {layer: add}}, from_pos=bound(from_pos),
                      to_pos=bound(to_pos))
    run = rollout_under_cached if cached else rollout_under
    generated = run(model, prompts, iv, max_new_tokens=max_new_tokens, end_id=vocab.token_to_id["<PATH_END>"],
                    pad_id=vocab.pad_id, batch_size=batch_size)
    return walks_of(generated, vocab, grid_n)


def steer(model, layer: int, prompts: list[np.ndarray], vectors: np.ndarray, scale: float | np.ndarray,
          clean: MazeBatch, corrupt: MazeBatch, vocab, **kw) -> dict[str, np.ndarray]:
    """:func:`roll`, then the outcomes against the clean and the edited maze."""
    return outcomes(roll(model, layer, prompts, vectors, scale, vocab, clean.grid_n, **kw), clean, corrupt)


def rate(flags: np.ndarray) -> dict:
    """Mean of a bool array with its 95% Wilson interval."""
    k, n = int(np.sum(flags)), int(np.size(flags))
    lo, hi = wilson_interval(k, n) if n else (None, None)
    return {"rate": round(k / n, 4) if n else None, "lo": None if lo is None else round(lo, 4),
            "hi": None if hi is None else round(hi, 4), "n": n}


# ---------------------------------------------------------------------------- SAE directions


@dataclasses.dataclass
class SaeDirections:
    """Decoder rows of a TopK SAE matched to each edge ("edge e is open") and each target cell,
    signed so that adding the row asks for the label: ``edge_dirs [E, d]``, ``cell_dirs
    [n_cells, d]`` (zero rows where no label could be matched)."""

    sae: object
    edge_dirs: np.ndarray
    cell_dirs: np.ndarray
    metrics: dict
    details: dict


def _signed_rows(sae, matches: dict, n: int, d: int) -> np.ndarray:
    out = np.zeros((n, d), np.float32)
    for j in range(n):
        m = matches.get(j)
        if m is not None:
            out[j] = m["sign"] * sae.direction(m["feature"]).detach().cpu().numpy()
    return out


def sae_directions(X: np.ndarray, walls_open: np.ndarray, target_cell: np.ndarray, n_cells: int, spec) -> SaeDirections:
    """Train a TopK SAE on X ``[rows, d]`` (``spec``: steering.sae_*, seed) and match its features
    to the walls labels (bool ``[rows, E]``) and the target (int ``[rows]``) by AUROC."""
    from mazesearch.interp.sae import SAEConfig, match_features, sae_codes, sae_metrics, train_sae

    cfg = SAEConfig(d_in=X.shape[1], n_features=spec.sae_features, k=spec.sae_k, steps=spec.sae_steps,
                    batch_size=spec.sae_batch_size, lr=spec.sae_lr, seed=spec.seed)
    sae, _ = train_sae(X.astype(np.float32), cfg)
    codes = sae_codes(sae, X.astype(np.float32))  # [rows, F]
    edges = match_features(codes, walls_open)
    cells = match_features(codes, target_cell[:, None] == np.arange(n_cells)[None, :])
    fit = sae_metrics(sae, X.astype(np.float32))
    auroc = lambda ms: [m["auroc"] for m in ms.values() if m is not None]  # noqa: E731
    strength = lambda ms: [abs(a - 0.5) + 0.5 for a in auroc(ms)]  # noqa: E731
    metrics = {"fvu": round(fit["fvu"], 4), "l0": round(fit["l0"], 3), "dead_frac": round(fit["dead_frac"], 4),
               "edge_auroc": round(float(np.mean(strength(edges))), 4) if edges else None,
               "target_auroc": round(float(np.mean(strength(cells))), 4) if cells else None}
    details = {"config": dataclasses.asdict(cfg), "n_rows": fit["n_rows"],
               "distinct_edge_features": len({m["feature"] for m in edges.values() if m is not None}),
               "distinct_target_features": len({m["feature"] for m in cells.values() if m is not None}),
               "edges": {str(k): v for k, v in edges.items()}, "target_cells": {str(k): v for k, v in cells.items()}}
    d = X.shape[1]
    return SaeDirections(sae=sae, edge_dirs=_signed_rows(sae, edges, walls_open.shape[1], d),
                         cell_dirs=_signed_rows(sae, cells, n_cells, d), metrics=metrics, details=details)


def sae_splice(sae):
    """``replace`` function for mazesearch.interp.intervene: the residual ``[batch, pos, d]`` ->
    the SAE's reconstruction of it."""
    def fn(resid: torch.Tensor) -> torch.Tensor:
        flat = resid.reshape(-1, resid.shape[-1])
        return sae(flat.float()).to(resid.dtype).reshape(resid.shape)

    return fn
