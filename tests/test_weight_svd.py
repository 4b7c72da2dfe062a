"""mazesearch.interp.weight_svd: a planted model whose OV, QK and MLP matrices read and write known
lattice directions scores ~1 on the right sides while its spectrum-matched and random-init
controls sit near chance; the folded matrices against the blocks' own modules; the SVD against
scikit-learn's; the ANOVA R^2 against a regression on the row / column indicators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from sklearn.decomposition import TruncatedSVD
from sklearn.linear_model import LinearRegression

from helpers import rel_err
from mazesearch.data.tokens import Vocab
from mazesearch.interp.geometry import cell_token_ids
from mazesearch.interp.weight_svd import (
    SIDES, haar_columns, lattice_r2, residual_matrices, score_grid, score_matrix, spectrum_matched, svd_section,
    top_directions,
)
from mazesearch.model.gpt import GPT, LN_EPS, ModelConfig

N = 6  # 36 cells: chance R^2 per factor (n-1)/(cells-1) = 1/7
VOCAB6 = Vocab.build(N)
D, DH = 32, 8


def planted() -> GPT:
    """No normalization. Cell embeddings: noise orthogonal to u_row and u_col, plus the row along
    u_row, the column along u_col and a large offset along a shared by every cell (only centring
    removes it). Head 0's OV reads u_row and writes w (no lattice information); head 1's QK has
    queries reading u_col and keys reading u_row; the MLP writes u_col. Other weights stay at
    their random init, ~100x smaller."""
    cfg = ModelConfig(d_model=D, n_layers=1, n_heads=2, d_head=DH, d_mlp=16, n_ctx=16, d_vocab=len(VOCAB6),
                      normalization="none", positional="rotary")
    gpt = GPT(cfg, seed=0)
    u_row, u_col, a, w = haar_columns(D, 4, np.random.default_rng(7)).T  # orthonormal [d] each
    ids = cell_token_ids(VOCAB6, N)[:, 0]
    r, c = np.divmod(np.arange(N * N), N)
    e = gpt.embed.weight.detach().double().numpy()[ids]  # [cells, d], N(0, 0.14^2) per entry
    e = e - np.outer(e @ u_row, u_row) - np.outer(e @ u_col, u_col)
    e = e + 0.1 * np.outer(r - 2.5, u_row) + 0.1 * np.outer(c - 2.5, u_col) + 10.0 * a
    t = lambda v: torch.from_numpy(10.0 * v).float()  # noqa: E731
    with torch.no_grad():
        gpt.embed.weight[torch.from_numpy(ids)] = torch.from_numpy(e).float()
        attn = gpt.blocks[0].attn
        attn.v.weight[0], attn.o.weight[:, 0] = t(u_row), t(w)  # head 0: OV = 100 u_row w^T + noise
        attn.q.weight[DH], attn.k.weight[DH] = t(u_col), t(u_row)  # head 1: QK = 100 u_col u_row^T + noise
        gpt.blocks[0].mlp.out.weight[:, 0] = t(u_col)  # W_out row 0 = 10 u_col
    return gpt


def test_planted_directions_score_one_on_their_side_and_the_controls_sit_near_chance():
    gpt = planted()
    svd = svd_section({"trained": gpt, "random": GPT(gpt.cfg, seed=1)}, VOCAB6, N, "unary", 3, 0, [(0, 0), (0, 1)])
    got = {e["name"]: e for e in svd["matrices"]}
    assert list(got) == ["L0H0.ov", "L0H0.qk", "L0H1.ov", "L0H1.qk", "L0.mlp_in", "L0.mlp_out"]
    ov, qk, out = (got[k]["trained"] for k in ("L0H0.ov", "L0H1.qk", "L0.mlp_out"))
    # the top direction carries its coordinate on the side it was planted, not on the other
    assert ov["sides"]["read"]["row"][0] > 0.999 and ov["score"] > 0.999
    assert max(ov["sides"]["write"]["row"][0], ov["sides"]["write"]["col"][0]) < 0.4  # w: noise only
    assert qk["sides"]["query"]["col"][0] > 0.999 and qk["sides"]["query"]["row"][0] < 0.1
    assert qk["sides"]["key"]["row"][0] > 0.999 and qk["sides"]["key"]["col"][0] < 0.1
    assert out["sides"]["write"]["col"][0] > 0.999 and out["score"] > 0.999
    assert ov["singular_values"][0] == pytest.approx(100.0, rel=0.05)
    for name in ("L0H0.ov", "L0H1.qk", "L0.mlp_out"):
        for control in ("spectrum_matched", "random_init"):
            assert got[name][control]["score"] < 0.5, (name, control)
    # every control direction: mean R^2 near chance (1/7 per factor for random directions)
    values = [v for e in svd["matrices"] for role in ("spectrum_matched", "random_init")
              for side in e[role]["sides"].values() for f in ("row", "col") for v in side[f]]
    assert abs(np.mean(values) - 1 / 7) < 0.05
    # the headline: the top heads' OV and QK, averaged per role
    want = np.mean([got[k]["trained"]["score"] for k in ("L0H0.ov", "L0H0.qk", "L0H1.ov", "L0H1.qk")])
    assert svd["top_heads"]["trained"] == pytest.approx(want, abs=2e-6)
    grid = score_grid(svd, "trained", 1, 2)
    assert grid.shape == (1, 6)  # H0 OV, H0 QK, H1 OV, H1 QK, MLP in, MLP out
    assert grid[0, 0] == ov["score"] and grid[0, 3] == qk["score"] and grid[0, 5] == out["score"]
    # deterministic: the spectrum-matched draws come from the seeded Generator alone
    assert svd_section({"trained": gpt, "random": GPT(gpt.cfg, seed=1)}, VOCAB6, N, "unary", 3, 0,
                       [(0, 0), (0, 1)]) == svd


def test_a_shuffled_lattice_loses_the_alignment():
    gpt = planted()
    ids = cell_token_ids(VOCAB6, N)
    e = gpt.embed.weight.detach().double().numpy()[ids[:, 0]]
    e = e - e.mean(0)
    m = next(x for x in residual_matrices(gpt) if x["name"] == "L0H0.ov")["matrix"]
    assert score_matrix(m, "ov", e, N, 1)["score"] > 0.999
    assert score_matrix(m, "ov", e[np.random.default_rng(3).permutation(N * N)], N, 1)["score"] < 0.5


def test_folded_matrices_equal_the_blocks_own_modules():
    """An LN model with non-trivial LN weights, in float64. For inputs x with mean 0 and variance 1,
    LN(x) - LN(0) = x * w / sqrt(1 + eps): the folded matrices must reproduce each module's output
    on x, and read nothing along the all-ones direction (LN removes it)."""
    cfg = ModelConfig(d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24, n_ctx=8, d_vocab=len(VOCAB6))
    gpt = GPT(cfg, seed=4).double()
    with torch.no_grad():
        for i, ln in enumerate(m for m in gpt.modules() if isinstance(m, torch.nn.LayerNorm)):
            ln.weight.normal_(1.0, 0.4, generator=torch.Generator().manual_seed(i))
            ln.bias.normal_(0.0, 0.4, generator=torch.Generator().manual_seed(100 + i))
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 16)))
    x = (x - x.mean(1, keepdim=True)) / x.std(1, unbiased=False, keepdim=True)  # [40, d]
    scale = np.sqrt(1 + LN_EPS)
    zero = torch.zeros(1, 16, dtype=torch.float64)
    got = {m["name"]: m["matrix"] for m in residual_matrices(gpt)}
    with torch.no_grad():
        for layer, block in enumerate(gpt.blocks):
            def lin(f, ln):  # the module's response to x, its bias and LN's bias removed: [40, out]
                return (f(ln(x)) - f(ln(zero))).numpy() * scale
            q, k, v = (lin(getattr(block.attn, p), block.ln1) for p in "qkv")
            for h in range(2):
                sl = slice(4 * h, 4 * (h + 1))
                ov = v[:, sl] @ block.attn.o.weight[:, sl].T.numpy()
                assert rel_err(x.numpy() @ got[f"L{layer}H{h}.ov"], ov) < 1e-10
                assert rel_err(x.numpy() @ got[f"L{layer}H{h}.qk"] @ x.numpy().T, q[:, sl] @ k[:, sl].T) < 1e-10
                for name in ("ov", "qk"):
                    assert np.abs(got[f"L{layer}H{h}.{name}"].sum(0)).max() < 1e-12  # ones @ M = 0
            assert rel_err(x.numpy() @ got[f"L{layer}.mlp_in"], lin(getattr(block.mlp, "in"), block.ln2)) < 1e-10
            hidden = torch.from_numpy(np.random.default_rng(1).normal(size=(40, 24)))
            assert rel_err(hidden.numpy() @ got[f"L{layer}.mlp_out"],
                           (block.mlp.out(hidden) - block.mlp.out.bias).numpy()) < 1e-10


def test_svd_and_anova_against_sklearn():
    rng = np.random.default_rng(5)
    m = rng.normal(size=(12, 20)) * np.linspace(3, 0.1, 20)  # distinct singular values
    s, dirs = top_directions(m, 3)
    np.testing.assert_allclose(s, scipy.linalg.svdvals(m), rtol=1e-10)
    right = TruncatedSVD(3, algorithm="arpack", random_state=0).fit(m).components_  # [3, 20]
    left = TruncatedSVD(3, algorithm="arpack", random_state=0).fit(m.T).components_  # [3, 12]
    np.testing.assert_allclose(np.abs(np.sum(dirs["right"] * right.T, 0)), 1.0, rtol=1e-8)
    np.testing.assert_allclose(np.abs(np.sum(dirs["left"] * left.T, 0)), 1.0, rtol=1e-8)
    # the spectrum-matched matrix: same shape and singular values, other directions
    sm = spectrum_matched(m, np.random.default_rng(0))
    assert sm.shape == m.shape
    np.testing.assert_allclose(scipy.linalg.svdvals(sm), scipy.linalg.svdvals(m), rtol=1e-10)
    assert np.abs(top_directions(sm, 1)[1]["right"][:, 0] @ dirs["right"][:, 0]) < 0.9
    # Haar frames: orthonormal, and no sign preference (numpy's QR alone makes R's diagonal carry
    # a fixed sign, so its first coordinate would lean one way)
    frames = np.stack([haar_columns(4, 2, rng) for _ in range(400)])  # [400, 4, 2]
    np.testing.assert_allclose(frames[0].T @ frames[0], np.eye(2), atol=1e-12)
    assert np.abs(frames[:, 0, :].mean(0)).max() < 0.1
    # ANOVA R^2 = R^2 of a least-squares fit on the group indicators
    emb = rng.normal(size=(N * N, 10)) + np.arange(N * N)[:, None] % N * rng.normal(size=10) * 0.3
    emb = emb - emb.mean(0)
    u = np.linalg.qr(rng.normal(size=(10, 4)))[0]  # [10, 4] unit columns
    got = lattice_r2(u, emb, N)
    r, c = np.divmod(np.arange(N * N), N)
    for factor, labels in (("row", r), ("col", c)):
        onehot = np.eye(N)[labels]
        want = [LinearRegression().fit(onehot, emb @ u[:, j]).score(onehot, emb @ u[:, j]) for j in range(4)]
        np.testing.assert_allclose(got[factor], want, rtol=1e-9)
    # a matrix's score: the max over its sides, top-k directions, row and column, by brute force
    sq = rng.normal(size=(10, 10))
    score = score_matrix(sq, "qk", emb, N, 2)
    _, d2 = top_directions(sq, 2)
    brute = max(LinearRegression().fit(np.eye(N)[lab], emb @ d2[side][:, j]).score(np.eye(N)[lab], emb @ d2[side][:, j])
                for side in SIDES["qk"].values() for j in range(2) for lab in (r, c))
    assert score["score"] == pytest.approx(brute, abs=1e-6)
