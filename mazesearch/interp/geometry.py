"""Embedding geometry: does the model lay the coordinate tokens out like the lattice?

* **Spearman** between the embedding distance of two cells' tokens and their lattice (Manhattan)
  distance, over every pair of cells, with a permutation p-value (cell labels shuffled) and
  the random-init control's value.
* **OV / QK circuits** of every head on the cell embeddings: ``OV[i, j]`` = how much attending
  to cell i's token writes cell j's embedding (``LN1(e_i) W_V W_O . e_j``) or raises its logit
  (``. W_U[:, j]``, ln_final folded in); ``QK[i, j]`` = the attention score of a query at cell
  i's token for a key at cell j's (content only: the rotary angle at distance 0). Each matrix is
  centred per column (so a cell every row likes, or a bias, cannot win every row), then asked:
  is the row's best other cell a lattice neighbour (chance = mean degree / (cells - 1))?
* **Residual PCA**: the residual stream at path positions in 2-D, for the pictures.

Cells are the coordinate tokens of a ``grid_n`` lattice: one ``(r,c)`` token each (unary), or
the sum of the ``(r,`` and ``,c)`` token vectors (pair coordinates).
"""

from __future__ import annotations

import numpy as np
import scipy.stats
import torch

from mazesearch.data.tokens import Vocab
from mazesearch.model.gpt import GPT


def cell_token_ids(vocab: Vocab, grid_n: int, coord: str = "unary") -> np.ndarray:
    """Token ids of each cell r*n+c: ``int64 [n*n, 1]`` (unary) or ``[n*n, 2]`` (pair: row, col)."""
    r, c = np.divmod(np.arange(grid_n * grid_n), grid_n)
    if coord == "unary":
        return vocab.unary_id[r, c].astype(np.int64)[:, None]
    if coord == "pair":
        return np.stack([vocab.pair_row_id[r], vocab.pair_col_id[c]], axis=1).astype(np.int64)
    raise ValueError(f"coord must be 'unary' or 'pair', got {coord!r}")


def lattice_distance(grid_n: int) -> np.ndarray:
    """Manhattan distance between cells: ``int64 [n*n, n*n]``."""
    r, c = np.divmod(np.arange(grid_n * grid_n), grid_n)
    return np.abs(r[:, None] - r[None, :]) + np.abs(c[:, None] - c[None, :])


def pairwise_distance(x: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """x ``[k, d]`` -> ``float64 [k, k]``: Euclidean distance or cosine distance (1 - cos)."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "euclidean":
        sq = (x * x).sum(1)
        return np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0))
    if metric == "cosine":
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        return 1.0 - unit @ unit.T
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")


def spearman_lattice(x: np.ndarray, grid_n: int, metric: str = "euclidean", n_permutations: int = 0,
                     rng: np.random.Generator | None = None) -> dict:
    """Spearman correlation between the cells' embedding distances (rows of x ``[n*n, d]``) and
    their lattice distances over all pairs i < j, and (``n_permutations`` > 0) the one-sided
    permutation p-value of a correlation this high when the cells' labels are shuffled:
    ``(1 + #{null >= rho}) / (1 + n_permutations)``."""
    k = grid_n * grid_n
    iu, ju = np.triu_indices(k, 1)
    emb = scipy.stats.rankdata(pairwise_distance(x, metric)[iu, ju])
    lat = lattice_distance(grid_n)[iu, ju]
    rho = float(np.corrcoef(emb, scipy.stats.rankdata(lat))[0, 1])
    out = {"rho": rho, "n_pairs": len(iu)}
    if n_permutations:
        # relabelling the cells permutes the pairs: null rho = corr(emb ranks, permuted lattice ranks)
        pair = np.zeros((k, k), dtype=np.int64)
        pair[iu, ju] = pair[ju, iu] = np.arange(len(iu))
        lat_rank = scipy.stats.rankdata(lat)
        perms = np.stack([rng.permutation(k) for _ in range(n_permutations)])  # [perm, k]
        permuted = lat_rank[pair[perms[:, iu], perms[:, ju]]]  # [perm, pairs]
        e = (emb - emb.mean()) / np.linalg.norm(emb - emb.mean())
        p = permuted - permuted.mean(1, keepdims=True)
        null = (p @ e) / np.linalg.norm(p, axis=1)
        out["p_value"] = float((1 + np.sum(null >= rho - 1e-12)) / (1 + n_permutations))
        out["null_q95"] = float(np.quantile(null, 0.95))
    return out


# ---------------------------------------------------------------------------- circuits


def cell_embeddings(model: GPT, ids: np.ndarray) -> torch.Tensor:
    """Embedding of each cell: the sum over its tokens, ``[n*n, d_model]``."""
    return model.embed.weight.detach()[torch.from_numpy(ids)].sum(1).double().cpu()


def head_circuits(model: GPT, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Every head's cell-to-cell circuits, ``float64 [layer, head, n*n, n*n]`` each (rows: the
    source cell, the attended key for OV and the query for QK):

    * ``ov_embed``:   ``LN1(e_i) W_V W_O . e_j``
    * ``ov_unembed``: ``LN1(e_i) W_V W_O . u_j``, u_j = W_U[:, j] scaled by ln_final's weight and
      centred over d_model (what ln_final does to a direction, up to the common 1/std)
    * ``qk``:         ``LN1(e_i) W_Q . LN1(e_j) W_K`` (no rotation: both at one position)

    Biases are left out (a per-column constant, removed by :func:`neighbour_scores` anyway).
    """
    cfg = model.cfg
    e = cell_embeddings(model, ids)  # [cells, d]
    W_U = model.unembed.weight.detach().double().cpu()[torch.from_numpy(ids)].sum(1)  # [cells, d]
    if cfg.normalization == "LN":
        W_U = W_U * model.ln_final.weight.detach().double().cpu()
        W_U = W_U - W_U.mean(1, keepdim=True)
    out = {name: np.zeros((cfg.n_layers, cfg.n_heads, len(ids), len(ids))) for name in ("ov_embed", "ov_unembed", "qk")}
    H, dh = cfg.n_heads, cfg.d_head
    for layer, block in enumerate(model.blocks):
        x = _layer_norm(block.ln1, e) if cfg.normalization == "LN" else e  # [cells, d]
        attn = block.attn
        proj = {name: getattr(attn, name).weight.detach().double().cpu().T.reshape(cfg.d_model, H, dh)
                for name in ("q", "k", "v")}  # W_X [d, H, dh]
        W_O = attn.o.weight.detach().double().cpu().T.reshape(H, dh, cfg.d_model)  # [H, dh, d]
        q, k, v = (torch.einsum("cd,dhe->hce", x, proj[name]) for name in ("q", "k", "v"))  # [H, cells, dh]
        written = torch.einsum("hce,hed->hcd", v, W_O)  # [H, cells, d]
        out["ov_embed"][layer] = (written @ e.T).numpy()
        out["ov_unembed"][layer] = (written @ W_U.T).numpy()
        out["qk"][layer] = (q @ k.transpose(1, 2)).numpy()
    return out


def _layer_norm(ln: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``ln`` applied in float64 on the CPU, the module left as it is."""
    w, b = (t.detach().double().cpu() for t in (ln.weight, ln.bias))
    return torch.nn.functional.layer_norm(x, ln.normalized_shape, w, b, ln.eps)


def neighbour_scores(m: np.ndarray, grid_n: int) -> dict[str, np.ndarray]:
    """m ``[..., n*n, n*n]`` (row = source cell) -> per matrix (``[...]``), after centring each
    column over the rows:

    * ``neighbour_top1``: fraction of rows whose highest other cell (j != i) is a lattice
      neighbour of i (chance: :func:`neighbour_chance`);
    * ``neighbour_auroc``: mean over rows of P(score of a neighbour > score of a non-neighbour
      j != i), ties half (chance 0.5);
    * ``self_top1``: fraction of rows whose highest cell is i itself (copying; chance 1/(n*n)).
    """
    m = np.asarray(m, dtype=np.float64)
    k = grid_n * grid_n
    m = m - m.mean(-2, keepdims=True)
    nbr = lattice_distance(grid_n) == 1  # [k, k]
    eye = np.eye(k, dtype=bool)
    others = np.where(eye, -np.inf, m)
    best = others.argmax(-1)  # [..., k]
    top1 = nbr[np.arange(k), best].mean(-1)
    non = ~nbr & ~eye
    diff = m[..., :, :, None] - m[..., :, None, :]  # [..., i, j, j']
    wins = (diff > 0) + 0.5 * (diff == 0)
    pairs = nbr[:, :, None] & non[:, None, :]  # [i, neighbour j, non-neighbour j']
    auroc = (wins * pairs).sum((-1, -2)) / pairs.sum((-1, -2))  # [..., i]
    return {"neighbour_top1": top1, "neighbour_auroc": auroc.mean(-1),
            "self_top1": (m.argmax(-1) == np.arange(k)).mean(-1)}


def neighbour_chance(grid_n: int) -> float:
    """Expected neighbour_top1 of a row's best cell drawn at random: mean degree / (n*n - 1)."""
    return float((lattice_distance(grid_n) == 1).sum(1).mean() / (grid_n * grid_n - 1))


# ---------------------------------------------------------------------------- residual stream


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x ``[N, d]`` -> (projection ``float64 [N, 2]``, explained variance ratio ``[2]``).
    Deterministic signs: each component's largest-magnitude loading is positive."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:2] * np.sign(vt[:2][np.arange(2), np.abs(vt[:2]).argmax(1)])[:, None]
    return x @ vt.T, (s[:2] ** 2) / (s**2).sum()


def final_residuals(model: GPT, ids: np.ndarray, rows: np.ndarray, positions: np.ndarray,
                    batch_size: int) -> np.ndarray:
    """``blocks.{L-1}.hook_resid_post`` at (rows[i], positions[i]) of ids ``int64 [B, T]``
    (right-padded; causal, so padding is harmless): ``float32 [N, d_model]``."""
    device = next(model.parameters()).device
    out = np.zeros((len(rows), model.cfg.d_model), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            sel = np.flatnonzero((rows >= start) & (rows < start + batch_size))
            batch = torch.from_numpy(ids[start : start + batch_size]).to(device)
            *_, resid = model.residual_stream(batch)  # [b, T, d_model] after the last block
            out[sel] = resid[rows[sel] - start, positions[sel]].float().cpu().numpy()
    return out
