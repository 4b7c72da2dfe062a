"""The random no-turning-back walker: legal moves only, and on trees an exact-path rate equal to
the product over decision points of 1 / (number of onward options)."""

import networkx as nx
import numpy as np
import pytest

from helpers import batch_from_paths
from mazesearch.evaluation.baseline import baseline_fork_choices, baseline_walks
from mazesearch.data.maze import edge_endpoints, edge_index, n_edges
from mazesearch.evaluation.metrics import compute_metrics, decision_points

# 3x3 trees (cells r*3+c).  T1: forks at 1, 4, 7 with two onward options each.
T1 = [(0, 1), (1, 2), (1, 4), (3, 4), (4, 7), (6, 7), (7, 8), (2, 5)]
# T2: the centre 4 joins 1, 3, 5, 7; plus 0-1, 1-2, 6-7, 7-8.
T2 = [(1, 4), (3, 4), (4, 5), (4, 7), (0, 1), (1, 2), (6, 7), (7, 8)]


def make_batch(n, edges_per_maze, origins, targets):
    open_ = np.zeros((len(edges_per_maze), n_edges(n)), dtype=np.uint8)
    paths = []
    for i, edges in enumerate(edges_per_maze):
        for a, b in edges:
            open_[i, edge_index(n, a, b)] = 1
        paths.append(nx.shortest_path(nx.Graph(list(edges)), origins[i], targets[i]))
    return batch_from_paths(n, open_, paths, generator="hand")


def analytic_exact_rate(edges, path):
    """prod over decision points of 1 / onward options (origin: degree, interior: degree - 1)."""
    g = nx.Graph(edges)
    p = 1.0
    for j, c in enumerate(path[:-1]):
        p /= g.degree(c) if j == 0 else g.degree(c) - 1
    return p


@pytest.mark.parametrize(
    "edges, origin, target, expected",
    [(T1, 0, 8, 1 / 8), (T2, 0, 8, 1 / 12), (T2, 1, 8, 1 / 18), (T2, 4, 8, 1 / 8), (T1, 3, 4, 1.0)],
)
def test_exact_rate_matches_product_over_decision_points(edges, origin, target, expected):
    copies = 6000
    batch = make_batch(3, [edges] * copies, [origin] * copies, [target] * copies)
    assert analytic_exact_rate(edges, batch.path(0).tolist()) == pytest.approx(expected)
    rates = []
    for seed in (0, 1):
        m = compute_metrics(batch, baseline_walks(batch, seed))
        assert m["valid_path"].all() and m["starts_at_origin"].all()
        rates.append(m["exact_path"].mean())
    sd = np.sqrt(expected * (1 - expected) / copies)
    for rate in rates:
        assert abs(rate - expected) <= 4.5 * sd + 1e-12, (rates, expected)
    assert rates[0] != rates[1] or expected == 1.0  # seeds give different draws


def test_walks_are_legal_and_never_revisit_on_random_mazes():
    rng = np.random.default_rng(5)
    n, B = 5, 400
    ends = edge_endpoints(n)
    edges, origins, targets = [], [], []
    for i in range(B):
        # trees (random MST) for half the mazes, percolation-like cyclic mazes for the rest
        g = nx.Graph()
        g.add_nodes_from(range(n * n))
        for a, b in ends:
            g.add_edge(int(a), int(b), weight=rng.random())
        e = {tuple(sorted(x)) for x in nx.minimum_spanning_tree(g).edges()}
        if i % 2:
            e |= {tuple(map(int, ends[k])) for k in rng.choice(len(ends), size=8, replace=False)}
        edges.append(sorted(e))
        o, t = rng.choice(n * n, size=2, replace=False)
        origins.append(int(o)), targets.append(int(t))
    batch = make_batch(n, edges, origins, targets)
    walks = baseline_walks(batch, seed=3)
    m = compute_metrics(batch, walks)
    assert m["valid_path"].all() and m["starts_at_origin"].all()
    assert (m["n_revisits"] == 0).all() and (m["n_backtracks"] == 0).all()
    assert (m["n_walled_jumps"] == 0).all() and (m["n_nonadjacent_jumps"] == 0).all()
    for i in range(B):
        w = walks.walk(i).tolist()
        g = nx.Graph(edges[i])
        if w[-1] != targets[i]:  # stopped early: only when every open neighbour was visited
            assert set(g.neighbors(w[-1])) <= set(w)
    # exact iff the walk is a shortest path; target_reached iff it ends at the target
    assert (m["target_reached"] == np.array([walks.walk(i)[-1] == targets[i] for i in range(B)])).all()
    assert 0 < m["exact_path"].mean() < 1


def test_deterministic_per_seed():
    batch = make_batch(3, [T1] * 50, [0] * 50, [8] * 50)
    a, b = baseline_walks(batch, 9), baseline_walks(batch, 9)
    assert np.array_equal(a.cells_flat, b.cells_flat) and np.array_equal(a.offsets, b.offsets)
    c = baseline_walks(batch, 10)
    assert not np.array_equal(a.cells_flat, c.cells_flat)
    # a row's walk depends only on (seed, row): a prefix of the batch walks the same
    head = baseline_walks(batch.take(np.arange(20)), 9)
    assert np.array_equal(head.cells_flat, a.cells_flat[: a.offsets[20]])


def test_fork_choices_are_onward_options_uniformly():
    copies = 4000
    batch = make_batch(3, [T2] * copies, [1] * copies, [8] * copies)  # forks at 1 (3 options), 4 (3), 7 (2)
    choices = baseline_fork_choices(batch, seed=0)
    k, off = decision_points(batch)
    assert k[off[0] : off[1]].tolist() == [0, 1, 2]
    per_fork = choices.reshape(copies, 3)
    allowed = [{0, 2, 4}, {3, 5, 7}, {6, 8}]
    for j in range(3):
        values, counts = np.unique(per_fork[:, j], return_counts=True)
        assert set(values.tolist()) == allowed[j]
        assert np.all(np.abs(counts / copies - 1 / len(allowed[j])) < 0.04)
    m = compute_metrics(batch, baseline_walks(batch, 0), choices)
    assert m["frac_forks_correct"].mean() == pytest.approx((1 / 3 + 1 / 3 + 1 / 2) / 3, abs=0.02)


def test_bad_seed():
    batch = make_batch(3, [T1], [0], [8])
    with pytest.raises(ValueError, match="seed"):
        baseline_walks(batch, -1)
