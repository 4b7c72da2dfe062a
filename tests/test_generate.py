"""Maze generators: structure of every kind (networkx as the oracle), options, determinism and
distribution sanity."""

import math
from collections import Counter, defaultdict

import networkx as nx
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mazesearch.data.generate import KINDS, _generate, generate_open, maze_seeds
from mazesearch.data.maze import edge_endpoints, n_edges, neighbour_table
from mazesearch.params import GENERATORS

TREE_KINDS = ("dfs", "wilson", "kruskal", "recursive_division")
KIND_OPTIONS = {  # one valid option set per kind
    "dfs": {}, "wilson": {}, "kruskal": {}, "recursive_division": {},
    "percolation": {"p": 0.5}, "dfs_percolation": {"p": 0.2}, "open_field": {"n_obstacles": 2},
}


def graph(n: int, row: np.ndarray) -> nx.Graph:
    """All n*n cells as nodes, the open edges as edges."""
    g = nx.Graph()
    g.add_nodes_from(range(n * n))
    g.add_edges_from(map(tuple, edge_endpoints(n)[row.astype(bool)].tolist()))
    return g


def carved(g: nx.Graph) -> nx.Graph:
    """The subgraph of non-isolated cells."""
    return g.subgraph([v for v in g if g.degree(v) > 0])


def assert_spanning_tree(n: int, row: np.ndarray) -> None:
    assert int(row.sum()) == n * n - 1
    assert nx.is_tree(graph(n, row))  # connected and acyclic on all n*n cells


# ---------------------------------------------------------------------------- shapes and kinds


def test_kinds_match_params_schema():
    assert set(KINDS) == set(GENERATORS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_shape_and_dtype(kind, n):
    out = generate_open(kind, n, maze_seeds(n, 7), **KIND_OPTIONS[kind])
    assert out.shape == (7, n_edges(n)) and out.dtype == np.uint8 and out.flags.c_contiguous
    assert set(np.unique(out).tolist()) <= {0, 1}


def test_empty_batch():
    out = generate_open("dfs", 4, np.zeros(0, dtype=np.uint64))
    assert out.shape == (0, 24)


@pytest.mark.parametrize("kind", TREE_KINDS)
@pytest.mark.parametrize("n", [2, 3, 4, 7, 12])
def test_tree_kinds_give_spanning_trees(kind, n):
    for row in generate_open(kind, n, maze_seeds(100 + n, 25)):
        assert_spanning_tree(n, row)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(TREE_KINDS), n=st.integers(2, 11),
       seed=st.integers(0, 2**64 - 1))
def test_tree_kinds_property(kind, n, seed):
    row = generate_open(kind, n, np.array([seed], dtype=np.uint64))[0]
    assert_spanning_tree(n, row)


def test_recursive_division_on_non_square_splits():
    # A 2x2 grid has exactly 4 spanning trees; division makes one cut with one gap, so all four
    # (wall between the rows or the columns, gap on either side) must appear.
    rows = generate_open("recursive_division", 2, maze_seeds(5, 400))
    assert len(np.unique(rows, axis=0)) == 4


# ---------------------------------------------------------------------------- dfs options


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_forkless_is_a_simple_path(n):
    out, start = _generate("dfs", n, maze_seeds(7, 60), forkless=True)
    start_degrees = []
    for row, s in zip(out, start):
        g = graph(n, row)
        assert max(d for _, d in g.degree()) <= 2
        path = carved(g)
        assert nx.is_connected(path) and nx.is_tree(path)  # one component, no cycle: a path
        assert s in path
        start_degrees.append(g.degree(int(s)))
    if n >= 3:  # the walk sometimes resumes from the start's other side (start mid-hallway)
        assert 2 in start_degrees and 1 in start_degrees


def test_plain_dfs_branches_and_hallways_are_long():
    # A plain dfs tree has forks (some degree >= 3); forkless hallways are still long.
    plain = generate_open("dfs", 5, maze_seeds(1, 50))
    degrees = [max(d for _, d in graph(5, r).degree()) for r in plain]
    assert max(degrees) >= 3
    hall = generate_open("dfs", 5, maze_seeds(1, 50), forkless=True)
    assert hall.sum(axis=1).mean() > 8  # mean hallway longer than 8 moves


@pytest.mark.parametrize("n,max_cells", [(2, 2), (3, 5), (6, 18), (6, 36), (9, 40)])
def test_max_cells_carves_exactly_that_many(n, max_cells):
    for row in generate_open("dfs", n, maze_seeds(3, 30), max_cells=max_cells):
        tree = carved(graph(n, row))
        assert tree.number_of_nodes() == max_cells
        assert nx.is_tree(tree)


def test_max_cells_frac_equals_floor_of_fraction():
    seeds = maze_seeds(4, 20)
    assert np.array_equal(generate_open("dfs", 6, seeds, max_cells_frac=0.5),
                          generate_open("dfs", 6, seeds, max_cells=18))
    # 0.29 * 100 = 28.999... in floating point: still 29 cells
    assert np.array_equal(generate_open("dfs", 10, seeds, max_cells_frac=0.29),
                          generate_open("dfs", 10, seeds, max_cells=29))
    assert np.array_equal(generate_open("dfs", 6, seeds, max_cells_frac=1.0),
                          generate_open("dfs", 6, seeds))


def test_forkless_with_max_cells_stops_early():
    for row in generate_open("dfs", 6, maze_seeds(8, 30), forkless=True, max_cells=6):
        path = carved(graph(6, row))
        assert 2 <= path.number_of_nodes() <= 6 and nx.is_tree(path)


@pytest.mark.parametrize("n,max_depth", [(3, 1), (5, 2), (6, 4), (8, 7)])
def test_max_depth_bounds_tree_depth_from_start(n, max_depth):
    out, start = _generate("dfs", n, maze_seeds(11, 40), max_depth=max_depth)
    deepest = []
    for row, s in zip(out, start):
        tree = carved(graph(n, row))
        assert nx.is_tree(tree) and s in tree
        depth = max(nx.single_source_shortest_path_length(tree, int(s)).values())
        assert depth <= max_depth
        deepest.append(depth)
    assert max(deepest) == max_depth  # the limit binds, it is not just never reached


def test_max_depth_limits_only_when_binding():
    seeds = maze_seeds(12, 20)
    assert np.array_equal(generate_open("dfs", 5, seeds, max_depth=24), generate_open("dfs", 5, seeds))
    assert not np.array_equal(generate_open("dfs", 5, seeds, max_depth=3),
                              generate_open("dfs", 5, seeds))


def test_forkless_with_max_depth():
    out, start = _generate("dfs", 6, maze_seeds(13, 30), forkless=True, max_depth=3)
    for row, s in zip(out, start):
        path = carved(graph(6, row))
        assert nx.is_tree(path) and max(d for _, d in path.degree()) <= 2
        assert max(nx.single_source_shortest_path_length(path, int(s)).values()) <= 3
        assert path.number_of_nodes() <= 7  # two arms of at most 3 moves around the start


def test_dfs_start_cells_are_uniform():
    _, start = _generate("dfs", 3, maze_seeds(14, 9000))
    counts = np.bincount(start, minlength=9)
    assert np.all(np.abs(counts / 9000 - 1 / 9) < 0.02)


# ---------------------------------------------------------------------------- percolation


@pytest.mark.parametrize("p", [0.1, 0.5, 0.85])
def test_percolation_density_near_p(p):
    out = generate_open("percolation", 6, maze_seeds(20, 3000), p=p)
    assert abs(out.mean() - p) < 0.01  # std of the mean ~0.0012
    assert np.all(np.abs(out.mean(axis=0) - p) < 0.05)  # every edge alike, std ~0.009


def test_percolation_extremes():
    seeds = maze_seeds(21, 10)
    assert not generate_open("percolation", 5, seeds, p=0.0).any()
    assert generate_open("percolation", 5, seeds, p=1.0).all()


def test_percolation_makes_cycles_and_disconnected_mazes():
    out = generate_open("percolation", 5, maze_seeds(22, 50), p=0.5)
    graphs = [graph(5, r) for r in out]
    assert any(not nx.is_connected(g) for g in graphs)
    assert any(nx.cycle_basis(g) for g in graphs)


@pytest.mark.parametrize("n", [2, 4, 7])
def test_dfs_percolation_is_connected_superset_of_dfs(n):
    seeds = maze_seeds(23, 40)
    tree = generate_open("dfs", n, seeds)
    out = generate_open("dfs_percolation", n, seeds, p=0.3)
    assert np.all(out >= tree)  # the dfs tree (same stream) plus extra edges
    for row in out:
        assert nx.is_connected(graph(n, row))
    assert np.array_equal(generate_open("dfs_percolation", n, seeds, p=0.0), tree)


def test_dfs_percolation_extra_edge_density():
    n, p = 6, 0.25
    out = generate_open("dfs_percolation", n, maze_seeds(24, 3000), p=p)
    extra = out.sum(axis=1) - (n * n - 1)
    frac = extra.mean() / (n_edges(n) - (n * n - 1))
    assert abs(frac - p) < 0.01
    assert any(nx.cycle_basis(graph(n, r)) for r in out[:20])


# ---------------------------------------------------------------------------- open field


def test_open_field_without_obstacles_is_all_open():
    assert generate_open("open_field", 5, maze_seeds(30, 10)).all()


@pytest.mark.parametrize("n,size", [(4, 1), (5, 2), (7, 3), (6, 4)])
def test_single_obstacle_is_a_clipped_square(n, size):
    sides = set()
    for row in generate_open("open_field", n, maze_seeds(31, 60), n_obstacles=1, obstacle_size=size):
        g = graph(n, row)
        blocked = [v for v in g if g.degree(v) == 0]
        rows = sorted({v // n for v in blocked})
        cols = sorted({v % n for v in blocked})
        # a full rectangle of contiguous rows x contiguous columns, clipped from size x size
        assert len(blocked) == len(rows) * len(cols)
        assert rows == list(range(rows[0], rows[-1] + 1)) and cols == list(range(cols[0], cols[-1] + 1))
        assert 1 <= len(rows) <= size and 1 <= len(cols) <= size
        sides.update((len(rows), len(cols)))
        free = g.subgraph([v for v in g if g.degree(v) > 0])
        assert free.number_of_edges() == sum(1 for a, b in edge_endpoints(n)
                                             if a not in blocked and b not in blocked)
    assert size in sides  # unclipped blocks occur


def test_obstacles_only_close_edges_at_blocked_cells():
    n = 6
    for row in generate_open("open_field", n, maze_seeds(32, 50), n_obstacles=4, obstacle_size=2):
        g = graph(n, row)
        isolated = {v for v in g if g.degree(v) == 0}
        assert isolated  # every block covers at least its centre
        for (a, b), is_open in zip(edge_endpoints(n).tolist(), row):
            assert is_open == (a not in isolated and b not in isolated)


def degrees(n: int, out: np.ndarray) -> np.ndarray:
    """Open-edge degree of every cell: int [B, n*n]."""
    incidence = np.zeros((n_edges(n), n * n), dtype=np.int64)
    ends = edge_endpoints(n)
    incidence[np.arange(len(ends)), ends[:, 0]] = 1
    incidence[np.arange(len(ends)), ends[:, 1]] = 1
    return out.astype(np.int64) @ incidence


def test_single_obstacle_position_is_uniform():
    out = generate_open("open_field", 3, maze_seeds(33, 9000), n_obstacles=1)
    deg = degrees(3, out)
    assert np.all((deg == 0).sum(axis=1) == 1)  # one blocked cell, never a free one cut off
    counts = np.bincount(deg.argmin(axis=1), minlength=9)
    assert np.all(np.abs(counts / 9000 - 1 / 9) < 0.02)  # std ~0.0033


# ---------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_and_independent_of_batch(kind):
    seeds = maze_seeds(40, 1300)  # several parallel chunks
    out = generate_open(kind, 5, seeds, **KIND_OPTIONS[kind])
    assert np.array_equal(out, generate_open(kind, 5, seeds.copy(), **KIND_OPTIONS[kind]))
    for i in (0, 517, 1299):
        assert np.array_equal(out[i], generate_open(kind, 5, seeds[i:i + 1], **KIND_OPTIONS[kind])[0])
    rev = generate_open(kind, 5, seeds[::-1], **KIND_OPTIONS[kind])
    assert np.array_equal(rev[::-1], out)
    assert len(np.unique(out, axis=0)) > 1


def test_independent_of_thread_count():
    seeds = maze_seeds(41, 2000)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = generate_open("dfs_percolation", 6, seeds, p=0.3)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one, generate_open("dfs_percolation", 6, seeds, p=0.3))


def test_seeds_accept_plain_ints():
    seeds = [0, 1, 2**63 + 5]
    assert np.array_equal(generate_open("wilson", 4, seeds),
                          generate_open("wilson", 4, np.array(seeds, dtype=np.uint64)))


def test_maze_seeds_slices_and_streams():
    full = maze_seeds(7, 100)
    assert full.dtype == np.uint64 and len(np.unique(full)) == 100
    assert np.array_equal(full[30:45], maze_seeds(7, 15, start=30))
    assert np.array_equal(full, maze_seeds(7, 100))
    assert not np.any(full == maze_seeds(8, 100))


# ---------------------------------------------------------------------------- distributions


def dfs_tree_distribution(n: int) -> dict[frozenset, float]:
    """Exact law of the recursive-backtracker tree (uniform start, uniform unvisited neighbour),
    by enumerating every choice: {frozenset of open edge indices: probability}."""
    nbr, via = neighbour_table(n)
    law: dict[frozenset, float] = defaultdict(float)

    def extend(stack, visited, edges, prob):
        while stack:
            cell = stack[-1]
            moves = [d for d in range(4) if nbr[cell, d] >= 0 and nbr[cell, d] not in visited]
            if moves:
                for d in moves:
                    m = int(nbr[cell, d])
                    extend(stack + [m], visited | {m}, edges | {int(via[cell, d])}, prob / len(moves))
                return
            stack = stack[:-1]
        law[frozenset(edges)] += prob

    for s in range(n * n):
        extend([s], {s}, frozenset(), 1.0 / (n * n))
    return law


def test_dfs_3x3_matches_exact_backtracker_law():
    law = dfs_tree_distribution(3)  # 88 distinct trees (of the grid's 192 spanning trees)
    draws = 12000
    rows = generate_open("dfs", 3, maze_seeds(50, draws))
    seen = Counter(frozenset(np.flatnonzero(r).tolist()) for r in rows)
    assert set(seen) == set(law)
    chi2 = sum((seen[t] - draws * q) ** 2 / (draws * q) for t, q in law.items())
    dof = len(law) - 1
    assert chi2 < dof + 6 * math.sqrt(2 * dof)


def test_wilson_2x2_is_uniform_over_its_four_trees():
    rows = generate_open("wilson", 2, maze_seeds(51, 8000))
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(distinct) == 4
    assert np.all(np.abs(counts / 8000 - 0.25) < 0.02)  # std ~0.005


def test_wilson_3x3_is_uniform_over_its_192_trees():
    draws = 192 * 100
    rows = generate_open("wilson", 3, maze_seeds(52, draws))
    _, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(counts) == 192
    chi2 = float(((counts - 100.0) ** 2 / 100.0).sum())
    assert chi2 < 191 + 6 * math.sqrt(2 * 191)  # 191 degrees of freedom


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,kwargs,match", [
    (("prim", 5), {}, "unknown generator kind 'prim'"),
    (("dfs", 1), {}, "n \\(grid side\\) must be >= 2"),
    (("percolation", 5), {}, "percolation needs p"),
    (("dfs", 5), {"p": 0.3}, "option p applies only"),
    (("percolation", 5), {"p": "0.5"}, "p must be a number"),
    (("percolation", 5), {"p": 1.5}, "p must be a number in \\[0, 1\\]"),
    (("wilson", 5), {"forkless": True}, "option forkless applies only to generator dfs"),
    (("kruskal", 5), {"max_cells": 4}, "option max_cells applies only"),
    (("open_field", 5), {"max_depth": 3}, "option max_depth applies only"),
    (("dfs", 5), {"max_cells": 4, "max_cells_frac": 0.5}, "not both"),
    (("dfs", 5), {"max_cells": 26}, "max_cells must be in \\[2, 25\\]"),
    (("dfs", 5), {"max_cells": 1}, "max_cells must be in"),
    (("dfs", 5), {"max_cells_frac": 0.05}, "leaves 1 cell"),
    (("dfs", 5), {"max_cells_frac": 1.5}, "max_cells_frac must be a number in"),
    (("dfs", 5), {"max_depth": 0}, "max_depth must be >= 1"),
    (("dfs", 5), {"forkless": 1}, "forkless must be a bool"),
    (("dfs", 5), {"n_obstacles": 2}, "apply only to open_field"),
    (("open_field", 3), {"n_obstacles": 8}, "n_obstacles=8"),
    (("open_field", 4), {"n_obstacles": 1, "obstacle_size": 4}, "obstacle_size=4"),
    (("open_field", 4), {"obstacle_size": 0}, "obstacle_size must be >= 1"),
])
def test_bad_options_raise(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate_open(*args, np.arange(3, dtype=np.uint64), **kwargs)


@pytest.mark.parametrize("seeds,match", [
    (np.zeros((2, 2), dtype=np.uint64), "1-D"),
    (np.array([1.5, 2.0]), "integers"),
    (np.array([3, -1]), "non-negative"),
])
def test_bad_seeds_raise(seeds, match):
    with pytest.raises(ValueError, match=match):
        generate_open("dfs", 4, seeds)


def test_open_field_obstacle_bound_is_inclusive():
    out = generate_open("open_field", 3, maze_seeds(60, 20), n_obstacles=7)  # 9 - 2 cells
    assert out.shape == (20, 12)
