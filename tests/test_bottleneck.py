"""mazesearch.interp.bottleneck: betweenness against networkx (and by hand on a corridor), the
matched set's rules, a planted pattern on the bottleneck tokens found (ratio >> 1) while uniform
attention gives exactly 1, and the same checks failing when the matched set ignores degree or the
sets come from the wrong maze."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch

from helpers import VOCAB, batch_from_paths, one_torch_thread
from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import edge_endpoints, edge_index, n_edges
from mazesearch.data.tokens import encode
from mazesearch.interp import bottleneck as bn
from mazesearch.interp.heads import key_mass, score_heads, sequence_roles
from mazesearch.model.gpt import GPT, ModelConfig


def nx_betweenness(open_row: np.ndarray, n: int) -> np.ndarray:
    G = nx.Graph()
    G.add_nodes_from(range(n * n))
    G.add_edges_from(map(tuple, edge_endpoints(n)[np.asarray(open_row).astype(bool)].tolist()))
    ref = nx.betweenness_centrality(G, normalized=False)
    return np.array([ref[c] for c in range(n * n)])


def open_row(n: int, cells: list[int]) -> np.ndarray:  # a corridor through ``cells``
    row = np.zeros(n_edges(n), np.uint8)
    for a, b in zip(cells, cells[1:]):
        row[edge_index(n, a, b)] = 1
    return row


SNAKE = [0, 1, 2, 5, 4, 3, 6, 7, 8]  # a 3x3 corridor


def test_betweenness_matches_networkx_and_the_hand_count():
    n = 3
    corridor = open_row(n, SNAKE)
    # on a path graph the k-th of 9 cells separates k cells from 8 - k
    by_hand = np.zeros(9)
    by_hand[SNAKE] = [k * (8 - k) for k in range(9)]
    assert np.array_equal(bn.betweenness(corridor, n), by_hand)
    lattice = np.ones(n_edges(n), np.uint8)  # loops: shortest paths tie, credit is shared
    np.testing.assert_allclose(bn.betweenness(lattice, n), nx_betweenness(lattice, n), rtol=1e-12)
    half = lattice.copy()
    half[::3] = 0  # some loops, one cell maybe cut off
    np.testing.assert_allclose(bn.betweenness(half, n), nx_betweenness(half, n), rtol=1e-12, atol=1e-12)
    for generator in ("dfs", "wilson"):
        mazes, _ = build_mazes(generator=generator, grid_n=5, n_mazes=4, seed=1)
        for m in range(len(mazes)):
            np.testing.assert_allclose(bn.betweenness(mazes.open[m], 5), nx_betweenness(mazes.open[m], 5),
                                       rtol=1e-12)


@pytest.fixture(scope="module")
def real():
    mazes, _ = build_mazes(generator="wilson", grid_n=4, n_mazes=40, seed=5)
    tokens = encode(mazes, VOCAB)
    roles = sequence_roles(tokens, VOCAB, 4)
    return mazes, tokens, roles, bn.maze_sets(mazes, roles, 3, seed=0)


def test_sets_follow_the_rules(real):
    mazes, _, roles, sets = real
    assert sum(len(b) for b, _ in sets) > 40
    for m, (bottle, matched) in enumerate(sets):
        btw = nx_betweenness(mazes.open[m], 4)
        degree = bn.adjacency(mazes.open[m], 4).sum(1)
        on_path = np.isin(np.arange(16), mazes.path(m))
        ends = {int(mazes.origin[m]), int(mazes.target[m])}
        assert len(bottle) == len(matched) <= 3 and not set(bottle) & set(matched)
        assert not (set(bottle) | set(matched)) & ends and len(set(matched)) == len(matched)
        assert np.array_equal(degree[bottle], degree[matched])
        assert np.array_equal(on_path[bottle], on_path[matched])
        eligible = [c for c in range(16) if c not in ends and btw[c] > 0]
        if len(bottle):  # every bottleneck cell beats every eligible cell left out of the top
            top = sorted(eligible, key=lambda c: -btw[c])[:3]
            assert btw[bottle].min() >= btw[top].min() - 1e-9
    again = bn.maze_sets(mazes, roles, 3, seed=0)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(sets, again))


def test_hand_built_corridor_sets():
    mazes = batch_from_paths(3, open_row(3, SNAKE)[None], [SNAKE])
    tokens = encode(mazes, VOCAB)
    roles = sequence_roles(tokens, VOCAB, 3)
    (bottle, matched), = bn.maze_sets(mazes, roles, 1, seed=0)
    # middle of the corridor (betweenness 16); every other interior cell is on the path, degree 2
    assert bottle.tolist() == [4]
    first = bn.first_listed(roles[0], 9)
    others = [c for c in SNAKE[1:-1] if c != 4]
    gaps = {c: abs(first[c] - first[4]) for c in others}
    assert gaps[int(matched[0])] == min(gaps.values())


def uniform(T: int) -> np.ndarray:  # [T, T] causal uniform rows
    return np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]


def masses(tokens, roles, sets, planted_on=None) -> bn.BottleneckMass:
    """Synthetic patterns through the scorer's key_mass, scored on ``sets``: layer 0 uniform;
    layer 1 puts half of each path query's attention evenly on the listed tokens of the
    bottleneck cells of ``planted_on`` (the true sets; default ``sets``)."""
    T = int(tokens.lengths.max())
    keys = np.stack([bn.set_keys(r, s, T) for r, s in zip(roles, sets)], axis=1)  # [2, b, T, T]
    on = np.stack([bn.set_keys(r, s, T)[0] for r, s in zip(roles, planted_on or sets)])  # [b, T, T]
    rows = np.broadcast_to(uniform(T), on.shape)
    focused = np.where(on.any(-1, keepdims=True), 0.5 * rows + 0.5 * on / np.maximum(on.sum(-1, keepdims=True), 1),
                       rows)
    pattern = torch.from_numpy(np.stack([rows, focused], axis=1)[:, :, None])  # [b, layer 2, head 1, T, T]
    return bn.bottleneck_mass(key_mass(pattern, torch.from_numpy(keys)).numpy(), sets, roles)


def test_planted_bottleneck_attention_is_found_and_uniform_is_one(real):
    _, tokens, roles, sets = real
    ratio = masses(tokens, roles, sets).ratio()
    assert ratio[0, 0] == pytest.approx(1.0, rel=1e-12)  # uniform: equal key counts, all visible
    assert ratio[1, 0] > 5.0


def test_the_checks_fail_without_degree_matching_or_with_another_mazes_sets(real):
    mazes, tokens, roles, sets = real
    # matched ignoring degree: uniform heads no longer sit at 1 (bottlenecks have more entries)
    careless = []
    for m in range(len(mazes)):
        first = bn.first_listed(roles[m], 16)
        on_path = np.isin(np.arange(16), mazes.path(m))
        exclude = np.isin(np.arange(16), [mazes.origin[m], mazes.target[m]])
        careless.append(bn.choose_sets(bn.betweenness(mazes.open[m], 4), np.zeros(16), first, on_path, exclude,
                                       3, np.random.default_rng([0, m])))
    assert abs(masses(tokens, roles, careless).ratio()[0, 0] - 1.0) > 0.1
    # the planted head scored against the next maze's cells: no longer found
    shifted = sets[1:] + sets[:1]
    assert masses(tokens, roles, shifted, planted_on=sets).ratio()[1, 0] < 2.0


def test_score_heads_extra_keys_give_one_for_a_uniform_model(real):
    """The stage's path: extra keys scored in the same forwards; an all-zero model attends
    uniformly, so every head's ratio is 1."""
    from mazesearch.interp.bridge import to_bridge

    _, tokens, roles, sets = real
    cfg = ModelConfig(d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=16, n_ctx=128, d_vocab=len(VOCAB),
                      positional="rotary")
    gpt = GPT(cfg, seed=0)
    with torch.no_grad():
        for p in gpt.parameters():
            p.zero_()
    with one_torch_thread():
        scores = score_heads(to_bridge(gpt.eval()), tokens, roles, VOCAB, 4, 16,
                             lambda row, T: bn.set_keys(roles[row], sets[row], T))
    ratio = bn.bottleneck_mass(scores.extra, sets, roles).ratio()
    np.testing.assert_allclose(ratio, 1.0, rtol=1e-5)
    frame = bn.table(bn.bottleneck_mass(scores.extra, sets, roles), bn.bottleneck_mass(scores.extra, sets, roles), 0)
    metrics, details = bn.headline(frame)
    assert set(metrics) == {"ratio", "control_ratio"} and metrics["ratio"] == pytest.approx(1.0, rel=1e-5)
    assert details["n_pairs"] == sum(len(b) for b, _ in sets)
