"""SVD of the weights: do the top singular directions of each head's OV and QK circuits and of
each MLP's input and output matrices read or write the cells' lattice coordinates?

Matrices act on row vectors, ``x [d_model] @ M``: a head's ``OV = W_V W_O`` and
``QK = W_Q W_K^T`` (``[d_model, d_model]``), an MLP's ``W_in [d_model, d_mlp]`` and
``W_out [d_mlp, d_model]``. A side that reads the residual stream through a LayerNorm has the
norm folded in, ``C diag(w) W`` (C = I - 11^T/d_model): what the matrix sees of x up to LN's
per-token 1/std (TransformerLens' fold_ln; the bias only shifts, so it is left out). Residual
sides (the singular vectors in d_model): OV read (left) and write (right), QK query (left) and
key (right), W_in read (left), W_out write (right).

**Lattice alignment** of a unit direction u: project the cell embeddings, centred over the cells,
on it (p = (E - mean E) u, one number per cell) and take the one-way ANOVA R^2 of p by the cell's
row and by its column: the between-group over the total sum of squares, the fraction of the
projection's variance the row (the column) explains. The direction's score is the larger of the
two; a matrix's score is the **unweighted max** over its residual sides and top-k singular
directions (k = ``geometry.svd_top_k``): 1 when one of them carries a coordinate linearly. A
random direction in isotropic embeddings has E[R^2] = 1/(n+1) per factor on an n x n lattice.

Controls beside every score: the random-init model's matrix on its own embeddings, and a
**spectrum-matched** matrix (the same singular values, Haar-random orthonormal singular vectors
from a seeded Generator) on the trained embeddings. Under the unweighted max the singular values
only fix the rank, so that control is what k random directions per side score against these
embeddings: the chance of the trained directions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mazesearch.data.tokens import Vocab
from mazesearch.interp.geometry import cell_embeddings, cell_token_ids
from mazesearch.model.gpt import GPT

ROLES = ("trained", "random_init", "spectrum_matched")
KINDS = ("ov", "qk", "mlp_in", "mlp_out")
SIDES = {"ov": {"read": "left", "write": "right"}, "qk": {"query": "left", "key": "right"},
         "mlp_in": {"read": "left"}, "mlp_out": {"write": "right"}}


def _num(x) -> float | None:
    return None if x is None or math.isnan(float(x)) else round(float(x), 6)


def _w(linear: torch.nn.Linear) -> np.ndarray:
    """An nn.Linear's weight in the row-vector convention (x @ W): ``float64 [in, out]``."""
    return linear.weight.detach().double().cpu().numpy().T


def _reader(ln: torch.nn.Module, d: int) -> np.ndarray:
    """``[d, d]``: C diag(w) for a LayerNorm (centring, then its weight), else the identity."""
    if not isinstance(ln, torch.nn.LayerNorm):
        return np.eye(d)
    return (np.eye(d) - 1.0 / d) * ln.weight.detach().double().cpu().numpy()[None, :]


def residual_matrices(model: GPT) -> list[dict]:
    """Every head's OV and QK, then its layer's W_in and W_out: ``{name, layer, head, kind,
    matrix}``, matrix ``float64`` with LN folded into its reading side, layer by layer."""
    cfg = model.cfg
    d, dh = cfg.d_model, cfg.d_head
    out = []
    for layer, block in enumerate(model.blocks):
        read1, read2 = _reader(block.ln1, d), _reader(block.ln2, d)  # [d, d]
        q, k, v = (read1 @ _w(getattr(block.attn, p)) for p in "qkv")  # [d, H*dh], LN1 folded
        W_O = _w(block.attn.o)  # [H*dh, d]
        for h in range(cfg.n_heads):
            sl = slice(h * dh, (h + 1) * dh)
            out.append({"name": f"L{layer}H{h}.ov", "layer": layer, "head": h, "kind": "ov",
                        "matrix": v[:, sl] @ W_O[sl]})  # [d, d], rank <= d_head
            out.append({"name": f"L{layer}H{h}.qk", "layer": layer, "head": h, "kind": "qk",
                        "matrix": q[:, sl] @ k[:, sl].T})  # [d, d]: query rows, key columns
        out.append({"name": f"L{layer}.mlp_in", "layer": layer, "head": None, "kind": "mlp_in",
                    "matrix": read2 @ _w(getattr(block.mlp, "in"))})  # [d, d_mlp]
        out.append({"name": f"L{layer}.mlp_out", "layer": layer, "head": None, "kind": "mlp_out",
                    "matrix": _w(block.mlp.out)})  # [d_mlp, d]
    return out


def top_directions(m: np.ndarray, k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """m ``[a, b]`` -> (all singular values, descending; ``{"left": U [a, k], "right": V [b, k]}``,
    the top-k singular vectors as unit columns, m = U diag(s) V^T)."""
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    k = min(k, len(s))
    return s, {"left": u[:, :k], "right": vt[:k].T}


def haar_columns(n: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, r]`` orthonormal columns, uniform (Haar) over such frames: QR of a Gaussian with the
    signs of R's diagonal moved into Q (numpy's QR alone is not uniform)."""
    q, r_ = np.linalg.qr(rng.standard_normal((n, r)))
    return q * np.sign(np.diag(r_))[None, :]


def spectrum_matched(m: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random matrix of m's shape and singular values: ``Q1 diag(s) Q2^T``, Q1, Q2 Haar."""
    s = np.linalg.svd(m, compute_uv=False)  # [r], r = min(a, b)
    return (haar_columns(m.shape[0], len(s), rng) * s) @ haar_columns(m.shape[1], len(s), rng).T


def centred_cells(model: GPT, ids: np.ndarray) -> np.ndarray:
    """The cell embeddings minus their mean over the cells: ``float64 [n*n, d_model]``."""
    e = cell_embeddings(model, ids).numpy()
    return e - e.mean(0)


def lattice_r2(directions: np.ndarray, emb: np.ndarray, grid_n: int) -> dict[str, np.ndarray]:
    """directions ``[d, k]`` (unit columns), emb ``[n*n, d]`` centred over the cells (row = cell
    r*n+c) -> ``{"row": [k], "col": [k]}``: the ANOVA R^2 of each projection by row and by column
    (NaN where the projection is constant)."""
    p = emb @ directions  # [cells, k], mean 0 over the cells since emb is centred
    total = (p * p).sum(0)  # [k]
    out = {}
    for factor, labels in zip(("row", "col"), np.divmod(np.arange(grid_n * grid_n), grid_n)):
        onehot = np.eye(grid_n)[labels]  # [cells, n]
        means = onehot.T @ p / onehot.sum(0)[:, None]  # [n, k]: group means (grand mean 0)
        between = onehot.sum(0) @ (means * means)  # [k]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[factor] = np.where(total > 1e-12 * max(1.0, float(total.max())), between / total, np.nan)
    return out


def score_matrix(m: np.ndarray, kind: str, emb: np.ndarray, grid_n: int, k: int) -> dict:
    """The lattice alignment of m's top-k directions on each of its residual sides, and the
    matrix's score (max over sides, directions and row/column)."""
    s, dirs = top_directions(m, k)
    sides = {side: lattice_r2(dirs[where], emb, grid_n) for side, where in SIDES[kind].items()}
    best = np.nanmax([np.fmax(r["row"], r["col"]).max() for r in sides.values()])
    return {"score": _num(best), "singular_values": [_num(v) for v in s[:k]],
            "sides": {side: {f: [_num(v) for v in r[f]] for f in ("row", "col")} for side, r in sides.items()}}


def svd_section(models: dict[str, GPT], vocab: Vocab, grid_n: int, coord: str, top_k: int, seed: int,
                top_heads: list[tuple[int, int]] | None) -> dict:
    """details.json's ``svd``: every matrix scored in the three roles; per kind the mean and best
    over matrices; ``top_heads``: per role the mean score over the top lattice heads' OV and QK
    (None without them). One Generator (``seed``) draws the spectrum-matched matrices in order."""
    ids = cell_token_ids(vocab, grid_n, coord)
    emb = {role: centred_cells(model, ids) for role, model in models.items()}  # [cells, d]
    rng = np.random.default_rng(seed)
    matrices = []
    for m, c in zip(residual_matrices(models["trained"]), residual_matrices(models["random"])):
        matrices.append({**{key: m[key] for key in ("name", "layer", "head", "kind")},
                         "trained": score_matrix(m["matrix"], m["kind"], emb["trained"], grid_n, top_k),
                         "random_init": score_matrix(c["matrix"], c["kind"], emb["random"], grid_n, top_k),
                         "spectrum_matched": score_matrix(spectrum_matched(m["matrix"], rng), m["kind"],
                                                          emb["trained"], grid_n, top_k)})

    def scores(pick) -> dict[str, list[float]]:
        return {role: [e[role]["score"] for e in matrices if pick(e)] for role in ROLES}

    summary = {}
    for kind in KINDS:
        got = scores(lambda e: e["kind"] == kind)
        summary[kind] = {"mean": {r: _num(np.mean(v)) for r, v in got.items()},
                         "best": {r: _num(np.max(v)) for r, v in got.items()}}
    top = None
    if top_heads:
        got = scores(lambda e: (e["layer"], e["head"]) in set(top_heads) and e["kind"] in ("ov", "qk"))
        top = {r: _num(np.mean(v)) for r, v in got.items()}
    return {"top_k": top_k, "seed": seed, "chance_isotropic": _num(1 / (grid_n + 1)),
            "top_heads": top, "summary": summary, "matrices": matrices}


def headline(svd: dict) -> dict:
    """metrics.json's ``svd``: the top lattice heads' mean alignment per role (None without them)."""
    return dict(svd["top_heads"] or dict.fromkeys(ROLES))


def score_grid(svd: dict, role: str, n_layers: int, n_heads: int) -> np.ndarray:
    """One role's scores as ``float [n_layers, 2 n_heads + 2]``: per layer H0 OV, H0 QK, ...,
    MLP in, MLP out (the picture's layout; NaN where a score is undefined)."""
    grid = np.full((n_layers, 2 * n_heads + 2), np.nan)
    for e in svd["matrices"]:
        col = 2 * e["head"] + (e["kind"] == "qk") if e["head"] is not None else 2 * n_heads + (e["kind"] == "mlp_out")
        grid[e["layer"], col] = np.nan if e[role]["score"] is None else e[role]["score"]
    return grid
