"""Metrics on hand-built mazes with hand-computed expectations, plus a networkx oracle on random ones.

Maze A (3x3 tree), cells r*3+c:      Maze B (3x3, every edge open: 6 shortest paths 0->8):
    0 - 1 - 2                             0 - 1 - 2
        |   |                             |   |   |
    3 - 4   5                             3 - 4 - 5
        |                                 |   |   |
    6 - 7 - 8                             6 - 7 - 8
A: origin 0, target 8, path 0 1 4 7 8; decision points at cells 1, 4, 7 (two onward options each).
B: origin 0, target 8, stored path 0 1 2 5 8; decision points at cells 0, 1, 5.
"""

import math

import networkx as nx
import numpy as np
import pytest

from mazesearch.data.maze import MazeBatch, edge_endpoints, edge_index, n_edges
from mazesearch.evaluation.metrics import METRICS, Walks, aggregate, compute_metrics, decision_points, distances_to_target

A_EDGES = [(0, 1), (1, 2), (1, 4), (3, 4), (4, 7), (6, 7), (7, 8), (2, 5)]
B_EDGES = [tuple(e) for e in edge_endpoints(3).tolist()]


def make_batch(n, edges_per_maze, origins, targets, paths=None):
    """A MazeBatch from edge lists; stored paths default to networkx's shortest path."""
    B = len(edges_per_maze)
    open_ = np.zeros((B, n_edges(n)), dtype=np.uint8)
    all_paths, n_sp = [], []
    for i, edges in enumerate(edges_per_maze):
        for a, b in edges:
            open_[i, edge_index(n, a, b)] = 1
        g = nx.Graph(list(edges))
        g.add_nodes_from(range(n * n))
        path = paths[i] if paths else nx.shortest_path(g, origins[i], targets[i])
        all_paths.append(path)
        n_sp.append(len(list(nx.all_shortest_paths(g, origins[i], targets[i]))))
    lengths = np.array([len(p) for p in all_paths])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return MazeBatch(
        grid_n=n, generator="hand", open=open_,
        origin=np.array(origins, dtype=np.int32), target=np.array(targets, dtype=np.int32),
        path_flat=np.concatenate([np.array(p, dtype=np.int32) for p in all_paths]),
        path_offsets=offsets, n_shortest_paths=np.array(n_sp, dtype=np.int64),
        forks_on_path=np.zeros(B, dtype=np.int16), n_dead_ends=np.zeros(B, dtype=np.int16),
    )


def score(edges, origin, target, pred, ended, path=None):
    batch = make_batch(3, [edges], [origin], [target], [path] if path else None)
    walks = Walks.from_lists([pred], [ended])
    m = compute_metrics(batch, walks)
    return {k: v[0] for k, v in m.items()}


def check(m, **expected):
    for key, want in expected.items():
        got = m[key]
        if isinstance(want, float) and math.isnan(want):
            assert math.isnan(got), f"{key}: expected NaN, got {got}"
        else:
            assert got == pytest.approx(want), f"{key}: expected {want}, got {got}"


def test_exact_path_in_a_tree():
    m = score(A_EDGES, 0, 8, [0, 1, 4, 7, 8], True)
    check(m, exact_path=True, valid_path=True, starts_at_origin=True, target_reached=True, correct_end=True,
          n_pred_cells=5, optimal_moves=4, n_valid_steps=4, n_walled_jumps=0, n_nonadjacent_jumps=0,
          n_backtracks=0, n_revisits=0, node_overlap=1.0, correct_streak=4, correct_streak_frac=1.0,
          length_ratio=1.0, frac_valid_steps=1.0, invalid_token_rate=0.0)


def test_missing_path_end_is_not_exact():
    m = score(A_EDGES, 0, 8, [0, 1, 4, 7, 8], False)
    check(m, exact_path=False, correct_end=False, target_reached=True, valid_path=True, ended=False,
          correct_streak=4)


def test_early_path_end():
    m = score(A_EDGES, 0, 8, [0, 1, 4], True)
    check(m, exact_path=False, valid_path=True, target_reached=False, correct_end=False,
          correct_streak=2, correct_streak_frac=0.5, node_overlap=3 / 5, length_ratio=0.5)


def test_overshooting_the_target():
    m = score(A_EDGES, 0, 8, [0, 1, 4, 7, 8, 7], False)
    check(m, target_reached=True, correct_end=False, exact_path=False, valid_path=True,
          n_backtracks=1, n_revisits=1, length_ratio=5 / 4)


def test_wall_jump():
    # 0 -> 3 are lattice neighbours with a wall between them
    m = score(A_EDGES, 0, 8, [0, 3, 4, 7, 8], True)
    check(m, exact_path=False, valid_path=False, target_reached=False, correct_end=False,
          n_valid_steps=3, n_walled_jumps=1, n_nonadjacent_jumps=0, frac_valid_steps=0.75,
          correct_streak=0, node_overlap=4 / 6, length_ratio=1.0)


def test_nonadjacent_jump_and_staying_put():
    m = score(A_EDGES, 0, 8, [0, 1, 4, 8], True)  # 4 -> 8 is a diagonal
    check(m, valid_path=False, target_reached=False, n_valid_steps=2, n_nonadjacent_jumps=1,
          n_walled_jumps=0, correct_streak=2, node_overlap=0.8, length_ratio=0.75)
    m = score(A_EDGES, 0, 8, [0, 0, 1, 4, 7, 8], True)  # standing still is a non-adjacent jump
    check(m, valid_path=False, n_nonadjacent_jumps=1, n_valid_steps=4, n_revisits=1, n_backtracks=0,
          correct_streak=0, target_reached=False)


def test_backtrack_counts_as_revisit():
    m = score(A_EDGES, 0, 8, [0, 1, 2, 1, 4, 7, 8], True)
    check(m, valid_path=True, target_reached=True, correct_end=True, exact_path=False,
          n_backtracks=1, n_revisits=1, correct_streak=1, node_overlap=5 / 6, length_ratio=1.5)


def test_garbage_tokens():
    m = score(A_EDGES, 0, 8, [-1, -1], False)
    check(m, exact_path=False, valid_path=False, starts_at_origin=False, target_reached=False,
          n_invalid_steps=1, n_valid_steps=0, frac_valid_steps=0.0, node_overlap=0.0,
          invalid_token_rate=1.0, n_invalid=2, length_ratio=0.25, n_revisits=0)
    m = score(A_EDGES, 0, 8, [0, 1, -1, 7, 8], True)
    check(m, valid_path=False, target_reached=False, n_invalid_steps=2, n_valid_steps=2,
          correct_streak=1, node_overlap=0.8, invalid_token_rate=0.2, frac_valid_steps=0.5)


def test_empty_prediction():
    m = score(A_EDGES, 0, 8, [], True)
    check(m, n_pred_cells=0, exact_path=False, valid_path=False, starts_at_origin=False,
          target_reached=False, correct_end=False, frac_valid_steps=float("nan"),
          length_ratio=float("nan"), invalid_token_rate=float("nan"), node_overlap=0.0, correct_streak=0)


def test_not_starting_at_origin():
    m = score(A_EDGES, 0, 8, [1, 4, 7, 8], True)
    check(m, starts_at_origin=False, valid_path=True, target_reached=False, exact_path=False, correct_streak=0)


def test_cyclic_maze_any_shortest_path_is_exact():
    m = score(B_EDGES, 0, 8, [0, 3, 6, 7, 8], True, path=[0, 1, 2, 5, 8])
    # node overlap is against the stored path, so a different shortest path scores low
    check(m, exact_path=True, correct_end=True, correct_streak=4, node_overlap=2 / 8, length_ratio=1.0)
    m = score(B_EDGES, 0, 8, [0, 1, 4, 3, 6, 7, 8], True, path=[0, 1, 2, 5, 8])
    check(m, exact_path=False, valid_path=True, target_reached=True, correct_end=True, correct_streak=2,
          n_revisits=0, length_ratio=1.5)
    m = score(B_EDGES, 0, 8, [0, 1, 4, 3, 0, 1, 2, 5, 8], True, path=[0, 1, 2, 5, 8])
    check(m, valid_path=True, n_revisits=2, n_backtracks=0, correct_streak=2, exact_path=False)


def test_decision_points_hand_built():
    batch = make_batch(3, [A_EDGES, B_EDGES], [0, 0], [8, 8], [[0, 1, 4, 7, 8], [0, 1, 2, 5, 8]])
    k, off = decision_points(batch)
    assert off.tolist() == [0, 3, 6]
    assert k.tolist() == [1, 2, 3, 0, 1, 3]


def test_fork_metrics():
    batch = make_batch(3, [A_EDGES, A_EDGES, B_EDGES], [0, 0, 0], [8, 8, 8],
                       [[0, 1, 4, 7, 8], [0, 1, 4, 7, 8], [0, 1, 2, 5, 8]])
    walks = Walks.from_lists([[0], [0], [0]], [True] * 3)
    # A forks at cells 1, 4, 7; B forks at cells 0, 1, 5
    fork_pred = np.array([4, 3, 8,   2, 7, -1,   3, 4, 4], dtype=np.int32)
    m = compute_metrics(batch, walks, fork_pred)
    assert m["n_forks"].tolist() == [3, 3, 3]
    assert m["first_fork_correct"].tolist() == [1.0, 0.0, 1.0]
    assert m["frac_forks_correct"] == pytest.approx([2 / 3, 1 / 3, 2 / 3])
    assert np.isnan(compute_metrics(batch, walks)["first_fork_correct"]).all()


def test_no_forks_gives_nan():
    # a corridor 0-1-2-5-8: no decision points
    batch = make_batch(3, [[(0, 1), (1, 2), (2, 5), (5, 8)]], [0], [8])
    m = compute_metrics(batch, Walks.from_lists([[0, 1, 2, 5, 8]], [True]), np.zeros(0, np.int32))
    assert m["n_forks"][0] == 0 and np.isnan(m["first_fork_correct"][0]) and m["exact_path"][0]


def test_bad_input_is_rejected():
    batch = make_batch(3, [A_EDGES], [0], [8])
    with pytest.raises(ValueError, match="walk cells"):
        compute_metrics(batch, Walks.from_lists([[0, 9]], [True]))
    with pytest.raises(ValueError, match="walks has 2 mazes"):
        compute_metrics(batch, Walks.from_lists([[0], [0]], [True, True]))
    with pytest.raises(ValueError, match="fork_pred"):
        compute_metrics(batch, Walks.from_lists([[0]], [True]), np.zeros(5, np.int32))


def test_aggregate_skips_nan():
    agg = aggregate({"a": np.array([True, False, True, True]), "b": np.array([np.nan, 1.0, 0.0, np.nan]),
                     "c": np.array([np.nan, np.nan])})
    assert agg == {"a": 0.75, "b": 0.5, "c": None}


# ---------------------------------------------------------------------------- networkx oracle


def _random_maze(rng, n):
    """Random spanning tree (random-weight MST) plus a few extra open edges."""
    ends = edge_endpoints(n)
    g = nx.Graph()
    g.add_nodes_from(range(n * n))
    for e, (a, b) in enumerate(ends):
        g.add_edge(int(a), int(b), weight=rng.random())
    tree = nx.minimum_spanning_tree(g)
    edges = [tuple(sorted(e)) for e in tree.edges()]
    extra = [tuple(map(int, ends[e])) for e in rng.choice(len(ends), size=rng.integers(0, 4), replace=False)]
    return sorted(set(edges) | set(extra))


def _oracle(edges, n, origin, target, path, pred, ended):
    g = nx.Graph(edges)
    g.add_nodes_from(range(n * n))
    dist = nx.single_source_shortest_path_length(g, target)
    opt = dist[origin]

    def kind(a, b):
        if a < 0 or b < 0:
            return "invalid"
        if g.has_edge(a, b):
            return "valid"
        (ra, ca), (rb, cb) = divmod(a, n), divmod(b, n)
        return "walled" if abs(ra - rb) + abs(ca - cb) == 1 else "nonadj"

    kinds = [kind(pred[s - 1], pred[s]) for s in range(1, len(pred))]
    valid = len(pred) >= 1 and -1 not in pred and all(k == "valid" for k in kinds)
    starts = len(pred) >= 1 and pred[0] == origin
    reached = False
    if starts:
        for s, c in enumerate(pred):
            if s > 0 and kinds[s - 1] != "valid":
                break
            if c == target:
                reached = True
                break
    streak = 0
    if starts:
        for s in range(1, len(pred)):
            if kinds[s - 1] != "valid" or dist[pred[s]] != dist[pred[s - 1]] - 1:
                break
            streak += 1
    seen, revisits = set(), 0
    for c in pred:
        if c >= 0:
            revisits += c in seen
            seen.add(c)
    backtracks = sum(1 for s in range(2, len(pred)) if pred[s] >= 0 and pred[s - 1] >= 0
                     and pred[s] == pred[s - 2] != pred[s - 1])
    exact = valid and starts and ended and pred[-1] == target and len(pred) - 1 == opt
    if exact:
        assert nx.is_simple_path(g, pred) and len(pred) - 1 == nx.shortest_path_length(g, origin, target)
    true = set(path)
    return dict(
        exact_path=exact, valid_path=valid, starts_at_origin=starts, target_reached=reached,
        n_valid_steps=kinds.count("valid"), n_walled_jumps=kinds.count("walled"),
        n_nonadjacent_jumps=kinds.count("nonadj"), n_invalid_steps=kinds.count("invalid"),
        n_backtracks=backtracks, n_revisits=revisits, correct_streak=streak, optimal_moves=opt,
        node_overlap=len(seen & true) / len(seen | true),
    )


def test_against_networkx_oracle_on_random_mazes():
    rng = np.random.default_rng(7)
    n, B = 4, 300
    edges, origins, targets, preds, ended = [], [], [], [], []
    for _ in range(B):
        e = _random_maze(rng, n)
        o, t = (int(x) for x in rng.choice(n * n, size=2, replace=False))
        g = nx.Graph(e)
        true = nx.shortest_path(g, o, t)
        # predictions: the true path, mutated (random cells / garbage / truncation / detours)
        pred = list(true)
        for _ in range(rng.integers(0, 3)):
            op = rng.integers(0, 4)
            if op == 0 and pred:
                pred[rng.integers(0, len(pred))] = int(rng.integers(-1, n * n))
            elif op == 1 and pred:
                pred = pred[: rng.integers(0, len(pred) + 1)]
            elif op == 2 and pred:
                j = int(rng.integers(0, len(pred)))
                nb = sorted(g.neighbors(pred[j])) if pred[j] >= 0 else []
                if nb:
                    pred = pred[: j + 1] + [int(rng.choice(nb)), pred[j]] + pred[j + 1 :]
            else:
                pred = pred + [int(rng.integers(0, n * n))]
        edges.append(e), origins.append(o), targets.append(t), preds.append(pred)
        ended.append(bool(rng.random() < 0.8))
    batch = make_batch(n, edges, origins, targets)
    got = compute_metrics(batch, Walks.from_lists(preds, ended))
    n_exact = 0
    for i in range(B):
        want = _oracle(edges[i], n, origins[i], targets[i], batch.path(i).tolist(), preds[i], ended[i])
        n_exact += want["exact_path"]
        for key, value in want.items():
            assert got[key][i] == pytest.approx(value), (i, key, preds[i])
    assert 0 < n_exact < B  # the mutations produce both outcomes
    assert list(got) == list(METRICS)


def test_distances_match_networkx():
    rng = np.random.default_rng(3)
    edges = [_random_maze(rng, 5) for _ in range(20)]
    targets = [int(t) for t in rng.integers(0, 25, size=20)]
    batch = make_batch(5, edges, [0 if t else 1 for t in targets], targets)
    dist = distances_to_target(batch)
    for i in range(20):
        g = nx.Graph(edges[i])
        want = nx.single_source_shortest_path_length(g, targets[i])
        assert dist[i].tolist() == [want.get(c, -1) for c in range(25)]


def test_decision_points_match_definition_on_random_mazes():
    rng = np.random.default_rng(11)
    edges = [_random_maze(rng, 4) for _ in range(100)]
    batch = make_batch(4, edges, [0] * 100, [15] * 100)
    k, off = decision_points(batch)
    for i in range(100):
        g = nx.Graph(edges[i])
        path = batch.path(i).tolist()
        want = [j for j, c in enumerate(path[:-1]) if g.degree(c) >= (2 if j == 0 else 3)]
        assert k[off[i] : off[i + 1]].tolist() == want


def test_invalid_counts_with_empty_rows():
    batch = make_batch(3, [A_EDGES] * 4, [0] * 4, [8] * 4)
    m = compute_metrics(batch, Walks.from_lists([[0, -1], [], [-1, -1, 4], []], [True] * 4))
    assert m["n_invalid"].tolist() == [1, 0, 2, 0]
    assert m["invalid_token_rate"][[0, 2]].tolist() == pytest.approx([0.5, 2 / 3])
    assert np.isnan(m["invalid_token_rate"][[1, 3]]).all()


def test_decision_point_counts_agree_with_solve_path_stats():
    from mazesearch.data.solve import path_stats

    rng = np.random.default_rng(12)
    edges = [_random_maze(rng, 5) for _ in range(200)]
    batch = make_batch(5, edges, [0] * 200, [24] * 200)
    forks, _ = path_stats(5, batch.open, batch.path_flat, batch.path_offsets)
    _, off = decision_points(batch)
    assert np.array_equal(np.diff(off), forks.astype(np.int64))
