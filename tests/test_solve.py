import math

import networkx as nx
import numpy as np
import pytest

from mazesearch.data.maze import MazeBatch, edge_endpoints, edge_index, n_edges
from mazesearch.data.solve import choose_endpoints, path_stats, solve
from mazesearch.data.validate import MazeValidationError, validate

# ---------------------------------------------------------------------------- helpers


def graph(n, row):
    g = nx.Graph()
    g.add_nodes_from(range(n * n))
    g.add_edges_from(map(tuple, edge_endpoints(n)[row.astype(bool)]))
    return g


def random_trees(rng, n, B):
    """Uniform-ish random spanning trees: minimum spanning trees under random weights."""
    ends = edge_endpoints(n)
    out = np.zeros((B, n_edges(n)), np.uint8)
    for i in range(B):
        g = nx.Graph()
        for e, (a, b) in enumerate(ends):
            g.add_edge(int(a), int(b), weight=rng.random(), e=e)
        for _, _, data in nx.minimum_spanning_tree(g).edges(data=True):
            out[i, data["e"]] = 1
    return out


def open_kinds(rng, n, B):
    """Every kind of open array: trees, percolation with cycles, open fields with holes,
    sparse and disconnected."""
    E = n_edges(n)
    fields = np.ones((B, E), np.uint8)
    ends = edge_endpoints(n)
    for i in range(B):  # knock out a couple of cells (close all their edges)
        for cell in rng.integers(0, n * n, size=2):
            fields[i, (ends == cell).any(axis=1)] = 0
    return {
        "tree": random_trees(rng, n, B),
        "percolation": (rng.random((B, E)) < 0.65).astype(np.uint8),
        "open_field": fields,
        "disconnected": (rng.random((B, E)) < 0.35).astype(np.uint8),
    }


def solved_batch(n, open_, seeds, **options):
    origin, target, ok = choose_endpoints(n, open_, seeds, **options)
    open_, origin, target = open_[ok], origin[ok], target[ok]
    path_flat, offsets, counts = solve(n, open_, origin, target)
    forks, dead = path_stats(n, open_, path_flat, offsets)
    return MazeBatch(n, "test", open_, origin, target, path_flat, offsets, counts, forks, dead)


# ---------------------------------------------------------------------------- solve


@pytest.mark.parametrize("n", [2, 5])
def test_solve_matches_networkx_on_every_kind(n):
    rng = np.random.default_rng(n)
    for kind, open_ in open_kinds(rng, n, 60).items():
        seeds = rng.integers(0, 2**63, size=len(open_), dtype=np.uint64)
        origin, target, ok = choose_endpoints(n, open_, seeds)
        for i in range(len(open_)):
            g = graph(n, open_[i])
            has_pair = any(d >= 1 for _, d in g.degree())
            assert ok[i] == has_pair, (kind, i)
        b = solved_batch(n, open_, seeds)
        assert len(b) == ok.sum()
        for i in range(len(b)):
            g = graph(n, b.open[i])
            o, t, path = int(b.origin[i]), int(b.target[i]), b.path(i).tolist()
            assert o != t and nx.has_path(g, o, t), (kind, i)
            assert path[0] == o and path[-1] == t
            assert nx.is_simple_path(g, path)
            assert b.path_len[i] == nx.shortest_path_length(g, o, t), (kind, i)
            assert b.n_shortest_paths[i] == len(list(nx.all_shortest_paths(g, o, t))), (kind, i)
            deg = dict(g.degree())
            assert b.n_dead_ends[i] == sum(d == 1 for d in deg.values())
            forks = (deg[path[0]] >= 2) + sum(deg[c] >= 3 for c in path[1:-1])
            assert b.forks_on_path[i] == forks
        validate(b, spanning_tree=(kind == "tree"))


def test_stored_path_prefers_north_east_south_west():
    # 2x2 open field: 0 1 / 2 3; from 0 to 3 both 0-1-3 and 0-2-3 are shortest; E beats S
    open_ = np.ones((1, 4), np.uint8)
    flat, off, count = solve(2, open_, np.array([0]), np.array([3]))
    assert flat.tolist() == [0, 1, 3] and off.tolist() == [0, 3] and count.tolist() == [2]
    flat, _, _ = solve(2, open_, np.array([3]), np.array([0]))
    assert flat.tolist() == [3, 1, 0]  # from 3: N (cell 1) beats W (cell 2)


def test_path_counts_on_open_fields_and_saturation():
    for n in (3, 6, 10):
        open_ = np.ones((1, n_edges(n)), np.uint8)
        _, _, count = solve(n, open_, np.array([0]), np.array([n * n - 1]))
        assert count[0] == math.comb(2 * n - 2, n - 1)
    n = 64  # C(126, 63) ~ 6e36 shortest corner-to-corner paths: saturates, no overflow
    flat, off, count = solve(n, np.ones((1, n_edges(n)), np.uint8), np.array([0]), np.array([n * n - 1]))
    assert count[0] == 2**62 and off[-1] == 2 * n - 1


def test_solve_rejects_bad_input():
    n = 3
    open_ = np.zeros((2, n_edges(n)), np.uint8)
    open_[:, edge_index(n, 0, 1)] = 1
    with pytest.raises(ValueError, match=r"maze 1: target 8 is not reachable from origin 0"):
        solve(n, open_, np.array([0, 0]), np.array([1, 8]))
    with pytest.raises(ValueError, match=r"open_ must have shape \[B, 12\]"):
        solve(n, open_[:, :5], np.array([0, 0]), np.array([1, 1]))
    with pytest.raises(ValueError, match=r"maze 0: origin=9 is not a cell"):
        solve(n, open_, np.array([9, 0]), np.array([1, 1]))
    with pytest.raises(ValueError, match=r"target must have shape \[2\]"):
        solve(n, open_, np.array([0, 0]), np.array([1]))


# ---------------------------------------------------------------------------- endpoints


def test_endpoint_options_are_honoured():
    n = 6
    rng = np.random.default_rng(1)
    option_sets = (
        dict(origin_at_dead_end=True),
        dict(target_at_dead_end=True, min_manhattan=4),
        dict(origin_at_dead_end=True, target_at_dead_end=True, min_path_len=6),
        dict(min_manhattan=2 * n - 2),  # opposite corners only
    )
    for kind, open_ in open_kinds(rng, n, 60).items():
        seeds = np.arange(len(open_), dtype=np.uint64) * 7919
        # max_attempts = n*n makes the search exhaustive: ok=False means no pair exists
        results = [choose_endpoints(n, open_, seeds, max_attempts=n * n, **opts) for opts in option_sets]
        for i in range(len(open_)):
            g = graph(n, open_[i])
            deg = dict(g.degree())
            dist = dict(nx.all_pairs_shortest_path_length(g))

            def fits(o, t, opts):
                return (o != t and t in dist[o]
                        and (not opts.get("origin_at_dead_end") or deg[o] == 1)
                        and (not opts.get("target_at_dead_end") or deg[t] == 1)
                        and abs(o // n - t // n) + abs(o % n - t % n) >= opts.get("min_manhattan", 0)
                        and dist[o][t] >= opts.get("min_path_len", 1))

            for opts, (origin, target, ok) in zip(option_sets, results):
                if ok[i]:
                    assert fits(int(origin[i]), int(target[i]), opts), (kind, opts, i)
                else:
                    assert origin[i] == target[i] == -1
                    assert not any(fits(o, t, opts) for o in dist for t in dist[o]), (kind, opts, i)
        if kind == "tree":
            assert all(ok.sum() > 0 for _, _, ok in results)


def test_endpoints_deterministic_and_cover_all_pairs():
    n = 3
    open_ = np.ones((3000, n_edges(n)), np.uint8)
    seeds = np.arange(3000, dtype=np.uint64)
    a = choose_endpoints(n, open_, seeds)
    b = choose_endpoints(n, open_, seeds)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    origin, target, ok = a
    assert ok.all() and (origin != target).all()
    pairs = np.bincount(origin * 9 + target, minlength=81).reshape(9, 9)
    assert (pairs[~np.eye(9, dtype=bool)] > 0).all()  # every ordered pair of distinct cells
    # uniform over the 72 pairs: expected 41.7 each, generous bounds
    assert pairs[~np.eye(9, dtype=bool)].min() > 15 and pairs.max() < 80
    other = choose_endpoints(n, open_, seeds + np.uint64(12345))
    assert not np.array_equal(origin, other[0])


def test_endpoints_without_any_pair():
    n = 3
    open_ = np.zeros((3, n_edges(n)), np.uint8)  # 0: no edges
    open_[1, edge_index(n, 4, 5)] = 1  # 1: one edge, a single pair at distance 1
    open_[2, edge_index(n, 4, 5)] = 1
    seeds = np.array([1, 2, 3], np.uint64)
    origin, target, ok = choose_endpoints(n, open_, seeds, min_path_len=2)
    assert ok.tolist() == [False, False, False] and origin.tolist() == [-1, -1, -1]
    origin, target, ok = choose_endpoints(n, open_, seeds)
    assert ok.tolist() == [False, True, True]
    assert {int(origin[1]), int(target[1])} == {4, 5}
    with pytest.raises(ValueError, match="min_path_len >= 1"):
        choose_endpoints(n, open_, seeds, min_path_len=0)
    with pytest.raises(ValueError, match=r"seeds must have shape \[3\]"):
        choose_endpoints(n, open_, seeds[:2])


# ---------------------------------------------------------------------------- path stats


def test_path_stats_hand_computed():
    # 3x3 maze:   0 - 1 - 2
    #                 |   |
    #             3 - 4   5
    #                 |   |
    #             6   7   8
    n = 3
    open_ = np.zeros((1, n_edges(n)), np.uint8)
    for a, b in [(0, 1), (1, 2), (1, 4), (3, 4), (4, 7), (2, 5), (5, 8)]:
        open_[0, edge_index(n, a, b)] = 1
    # degrees: 0:1 1:3 2:2 3:1 4:3 5:2 6:0 7:1 8:1 -> dead ends 0, 3, 7, 8
    flat, off, count = solve(n, open_, np.array([3]), np.array([8]))
    assert flat.tolist() == [3, 4, 1, 2, 5, 8] and count.tolist() == [1]
    forks, dead = path_stats(n, open_, flat, off)
    # origin 3 has degree 1 (no choice); 4 and 1 have degree 3 (forks); 2, 5 degree 2
    assert forks.tolist() == [2] and dead.tolist() == [4]
    forks, _ = path_stats(n, open_, np.array([4, 1, 2], np.int32), np.array([0, 3]))
    assert forks.tolist() == [2]  # origin 4 (degree 3 >= 2) and 1


# ---------------------------------------------------------------------------- validation


def _tree_batch():
    rng = np.random.default_rng(7)
    n = 5
    open_ = random_trees(rng, n, 20)
    return solved_batch(n, open_, np.arange(20, dtype=np.uint64), min_path_len=4)


def _corrupt(b, i, path=None, **fields):
    """Copy of batch b with maze i's path replaced and/or whole fields replaced."""
    paths = [b.path(j).tolist() for j in range(len(b))]
    if path is not None:
        paths[i] = path
    offsets = np.zeros(len(b) + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in paths])
    kw = dict(grid_n=b.grid_n, generator=b.generator, open=b.open.copy(), origin=b.origin.copy(),
              target=b.target.copy(), path_flat=np.concatenate(paths).astype(np.int32),
              path_offsets=offsets, n_shortest_paths=b.n_shortest_paths.copy(),
              forks_on_path=b.forks_on_path.copy(), n_dead_ends=b.n_dead_ends.copy(),
              maze_id=b.maze_id.copy())
    kw.update(fields)
    return MazeBatch(**kw)


def test_validate_accepts_good_and_catches_each_corruption():
    b = _tree_batch()
    validate(b, spanning_tree=True)
    n, i = b.grid_n, 3
    path = b.path(i).tolist()
    g = graph(n, b.open[i])

    def fails(batch, match, spanning_tree=True, index=i):
        with pytest.raises(MazeValidationError, match=match) as info:
            validate(batch, spanning_tree=spanning_tree)
        assert info.value.index == index

    # wrong step: jump two cells along a row/column (not lattice neighbours)
    far = next(c for c in range(n * n) if c != path[1] and abs(c // n - path[0] // n) + abs(c % n - path[0] % n) == 2)
    fails(_corrupt(b, i, [path[0], far] + path[2:]), "not lattice neighbours")
    # wall jump: step to a lattice neighbour through a closed edge (0 -> neighbour off the tree)
    o = path[0]
    walled = next(c for c in range(n * n) if abs(c // n - o // n) + abs(c % n - o % n) == 1 and not g.has_edge(o, c))
    fails(_corrupt(b, i, [o, walled] + path[1:]), "step 1 passes through a wall")
    # repeated cell: walk back and forth at the end
    fails(_corrupt(b, i, path + [path[-2], path[-1]]), "visits cell")
    fails(_corrupt(b, i, path[:-1]), "not at the target")
    fails(_corrupt(b, i, path[1:]), "not at the origin")
    # extra edge in a tree: the path may still be shortest, but the maze is no tree any more
    extra = b.open.copy()
    extra[i, np.flatnonzero(extra[i] == 0)[0]] = 1
    fails(_corrupt(b, i, open=extra), f"has {n * n} open edges")
    # cut a tree edge and close a cycle inside one half: n^2-1 edges, yet disconnected
    ends = edge_endpoints(n)
    cut = np.flatnonzero(b.open[i])[0]
    cut_tree = graph(n, b.open[i])
    cut_tree.remove_edge(*map(int, ends[cut]))
    half = nx.node_connected_component(cut_tree, int(ends[cut][0]))
    other = nx.node_connected_component(cut_tree, int(ends[cut][1]))
    big = half if len(half) >= len(other) else other
    cycle_edge = next(e for e in range(n_edges(n))
                      if not b.open[i, e] and e != cut and set(ends[e].tolist()) <= big)
    swapped = b.open.copy()
    swapped[i, cut], swapped[i, cycle_edge] = 0, 1
    fails(_corrupt(b, i, open=swapped), "not connected")
    counts = b.n_shortest_paths.copy()
    counts[i] = 0
    fails(_corrupt(b, i, n_shortest_paths=counts), "n_shortest_paths=0 is < 1")
    counts[i] = 2
    fails(_corrupt(b, i, n_shortest_paths=counts), "differs from the BFS count")
    forks = b.forks_on_path.copy()
    forks[i] += 1
    fails(_corrupt(b, i, forks_on_path=forks), "forks_on_path")
    ids = b.maze_id.copy()
    ids[i] ^= np.uint64(1)
    fails(_corrupt(b, i, maze_id=ids), "maze_id does not match")
    same = b.target.copy()
    same[i] = b.origin[i]
    fails(_corrupt(b, i, [int(b.origin[i]), int(b.origin[i])], target=same, maze_id=None), "origin equals target")


def test_validate_wrong_length_on_maze_with_cycles():
    # 2x3 open field: 0 1 2 / 3 4 5; from 0 to 2 the path 0-3-4-5-2 is valid but not shortest
    n = 3
    open_ = np.zeros((1, n_edges(n)), np.uint8)
    for a, b in [(0, 1), (1, 2), (0, 3), (3, 4), (4, 5), (2, 5)]:
        open_[0, edge_index(n, a, b)] = 1
    good = solved_batch(n, open_, np.zeros(1, np.uint64))
    validate(good, spanning_tree=False)
    long_path = np.array([0, 3, 4, 5, 2], np.int32)
    bad = MazeBatch(n, "test", open_, np.array([0], np.int32), np.array([2], np.int32), long_path,
                    np.array([0, 5]), np.array([1]), np.array([1], np.int16), np.array([2], np.int16))
    with pytest.raises(MazeValidationError, match="maze 0: path has 4 moves but the shortest"):
        validate(bad, spanning_tree=False)
    with pytest.raises(MazeValidationError, match="has 6 open edges, a spanning tree of 3x3 has 8"):
        validate(bad, spanning_tree=True)
