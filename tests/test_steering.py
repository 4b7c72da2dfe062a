"""Steering and faithfulness library (mazesearch.interp.steering, faithfulness): a planted probe
direction recovered from activations and its permuted-label control not; edit vectors by hand;
outcomes on hand-written walks; residuals against the bridge; keep masks, smallest k and
"ablation helps" on hand-built curves."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from helpers import batch_from_paths, one_torch_thread, rel_err
from mazesearch.data.maze import edge_index, n_edges
from mazesearch.data.tokens import Vocab, encode
from mazesearch.evaluation.predict import walks_of
from mazesearch.interp import faithfulness as faith
from mazesearch.interp import steering

VOCAB = Vocab.build(4)


def cos(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fit_probe_recovers_a_planted_direction_and_the_permuted_control_does_not():
    rng = np.random.default_rng(0)
    n_mazes, per_maze, d = 200, 5, 24
    maze_id = np.repeat(np.arange(n_mazes, dtype=np.uint64), per_maze)
    slot = np.tile(np.arange(per_maze), n_mazes)
    label = np.repeat(rng.random(n_mazes) < 0.5, per_maze)  # a per-maze property (like an open edge)
    w = rng.standard_normal(d)
    scale = rng.uniform(0.5, 5.0, d)  # unequal feature scales: the raw-space direction must undo them
    X = rng.standard_normal((len(label), d)) * scale + np.outer(label, w)
    fit = steering.fit_probe(X, label[:, None], "multilabel", 1, maze_id, slot, C=1.0, max_iter=200, seed=0)
    assert fit.trained.shape == (1, d)
    # the Bayes direction for Gaussian classes with diagonal covariance is w / scale^2
    assert cos(fit.trained[0], w / scale**2) > 0.9
    assert abs(cos(fit.permuted[0], w / scale**2)) < 0.5
    y = np.repeat(rng.integers(0, 3, n_mazes), per_maze)
    centres = rng.standard_normal((3, d)) * 0.3  # overlapping classes: weights follow the means
    X = rng.standard_normal((len(y), d)) + centres[y]
    fit = steering.fit_probe(X, y, "multiclass", 3, maze_id, slot, C=1.0, max_iter=300, seed=0)
    assert fit.trained.shape == (3, d)
    # class 2 minus class 0 points from centre 0 to centre 2
    assert cos(fit.trained[2] - fit.trained[0], centres[2] - centres[0]) > 0.9


def test_edit_vectors_by_hand():
    edge_dirs = np.eye(4, 6)  # 4 edges in 6 dims
    cell_dirs = np.eye(6)[::-1].copy()  # 6 cells
    kind = np.array(["edge_add", "edge_remove", "wall_move", "target_move"])
    v = steering.edit_vectors(kind, added=np.array([1, -1, 2, -1]), removed=np.array([-1, 3, 0, -1]),
                              old_target=np.array([0, 0, 0, 1]), new_target=np.array([0, 0, 0, 4]),
                              edge_dirs=edge_dirs, cell_dirs=cell_dirs)
    r = 1 / np.sqrt(2)
    want = np.array([[0, 1, 0, 0, 0, 0], [0, 0, 0, -1, 0, 0], [-r, 0, r, 0, 0, 0], [0, r, 0, 0, -r, 0]])  # cell 4 -> e1, cell 1 -> e4
    assert np.allclose(v, want, atol=1e-6)
    rnd = steering.random_vectors(5, 6, 3, seed=1)
    assert rnd.shape == (3, 5, 6) and np.allclose(np.linalg.norm(rnd, axis=2), 1.0, atol=1e-5)
    assert np.array_equal(rnd, steering.random_vectors(5, 6, 3, seed=1))


def test_outcomes_on_hand_walks():
    """A 2x2 tree and its twin with one more edge: the twin's shortest path is one move."""
    n = 2
    tree = np.zeros((1, n_edges(n)), np.uint8)
    for a, b in [(0, 1), (1, 3), (3, 2)]:
        tree[0, edge_index(n, a, b)] = 1
    clean = batch_from_paths(n, tree, [[0, 1, 3, 2]])
    twin = tree.copy()
    twin[0, edge_index(n, 0, 2)] = 1
    corrupt = batch_from_paths(n, twin, [[0, 2]])
    end = VOCAB.token_to_id["<PATH_END>"]
    u = VOCAB.unary_id
    walks = {"success": [u[0, 0], u[1, 0], end], "unchanged": [u[0, 0], u[0, 1], u[1, 1], u[1, 0], end],
             "broken": [u[0, 0], u[1, 1], end]}  # a diagonal jump
    got = steering.outcomes(walks_of([np.array(w) for w in walks.values()], VOCAB, n),
                            clean.take(np.zeros(3, np.int64)), corrupt.take(np.zeros(3, np.int64)))
    assert got["success"].tolist() == [True, False, False]
    assert got["unchanged"].tolist() == [False, True, False]
    assert got["broken"].tolist() == [False, False, True]
    r = steering.rate(np.array([True, False, True, True]))
    assert r["rate"] == 0.75 and r["lo"] < 0.75 < r["hi"] and r["n"] == 4


def test_residuals_at_equal_the_bridge():
    from mazesearch.interp.bridge import to_bridge
    from mazesearch.model.gpt import GPT, ModelConfig
    from probe_fixtures import tree_mazes

    mazes = tree_mazes(3, 7, seed=2)
    tokens = encode(mazes, VOCAB)
    cfg = ModelConfig(d_vocab=len(VOCAB), d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=32, n_ctx=64)
    model = GPT(cfg, seed=1).eval()
    rows = np.array([0, 0, 3, 6, 6]), np.array([5, 20, 11, 0, 17])
    with one_torch_thread():
        got = steering.residuals_at(model, tokens, *rows, layers=[0, 1], pad_id=VOCAB.pad_id, batch_size=3)
        bridge = to_bridge(model)
        ids = torch.as_tensor(tokens.padded(VOCAB.pad_id).astype(np.int64))
        with torch.no_grad():
            _, cache = bridge.run_with_cache(ids)
    for layer in (0, 1):
        want = cache[f"blocks.{layer}.hook_resid_post"][torch.as_tensor(rows[0]), torch.as_tensor(rows[1])].numpy()
        assert rel_err(got[layer], want) < 1e-4


def test_keep_mask_smallest_k_and_helped():
    ranking = [(1, 0), (0, 1), (0, 0), (1, 1)]
    assert faith.keep_mask(ranking, 2, 2, 2).tolist() == [[False, True], [True, False]]
    assert not faith.keep_mask(ranking, 0, 2, 2).any() and faith.keep_mask(ranking, 4, 2, 2).all()
    with pytest.raises(ValueError, match="each of the 2 x 2 heads once"):
        faith.keep_mask(ranking[:3] + [(1, 0)], 1, 2, 2)
    assert sorted(faith.random_ranking(2, 3, seed=0)) == [(l, h) for l in range(2) for h in range(3)]
    rates = np.array([0.1, 0.5, 0.76, 0.9, 0.8])
    assert faith.smallest_k(rates, full=0.8) == 2  # 0.76 >= 0.95 * 0.8
    assert faith.smallest_k(rates, full=1.0) is None
    exact = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool)  # full model: row 3
    assert faith.helped(exact).tolist() == [1, 0, 1, 0]
