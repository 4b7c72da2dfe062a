"""Coverage data (mazesearch.data.placement + build_mazes(sizes=...)): k x k mazes carved at an
offset in a larger lattice. networkx is the oracle for structure and shortest paths."""

import networkx as nx
import numpy as np
import pytest

from mazesearch.data.dataset import build_mazes
from mazesearch.data.maze import edge_endpoints, maze_ids
from mazesearch.data.placement import embed, lattice_edges, placements
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode
from mazesearch.params import ParamsError, parse_params

LATTICE, SIZES = 7, [3, 4, 5]


@pytest.fixture(scope="module")
def coverage():
    return build_mazes(generator="wilson", grid_n=LATTICE, n_mazes=600, seed=5, sizes=SIZES)


def _graph(n, open_row):
    g = nx.Graph()
    g.add_edges_from(map(tuple, edge_endpoints(n)[open_row.astype(bool)]))
    return g


def test_each_maze_is_a_spanning_tree_of_a_k_square_and_its_path_is_shortest(coverage):
    batch, info = coverage
    assert info["sizes"] == SIZES and info["placement"] == "random" and info["n_mazes"] == 600
    seen_sizes, seen_offsets = set(), set()
    for i in range(len(batch)):
        g = _graph(LATTICE, batch.open[i])
        rows, cols = np.divmod(np.array(sorted(g.nodes)), LATTICE)
        k = rows.max() - rows.min() + 1
        assert cols.max() - cols.min() + 1 == k and k in SIZES
        assert g.number_of_nodes() == k * k  # every cell of the square, none outside
        assert nx.is_tree(g)  # Wilson: a uniform spanning tree of the square
        path = batch.path(i).tolist()
        assert path[0] == batch.origin[i] and path[-1] == batch.target[i]
        assert all(g.has_edge(a, b) for a, b in zip(path, path[1:]))
        assert len(path) - 1 == nx.shortest_path_length(g, int(batch.origin[i]), int(batch.target[i]))
        seen_sizes.add(int(k))
        seen_offsets.add((int(rows.min()), int(cols.min())))
    assert seen_sizes == set(SIZES)
    assert {(r, c) for r in range(LATTICE - 2) for c in range(LATTICE - 2)} <= seen_offsets  # 3x3 goes anywhere


def test_every_coordinate_token_of_the_lattice_occurs(coverage):
    batch, _ = coverage
    vocab = Vocab.build(LATTICE)
    tokens = encode(batch, vocab, TokenizerOptions())
    used = set(np.unique(tokens.flat).tolist())
    assert set(vocab.unary_id.ravel().tolist()) <= used
    # the largest maze is 5x5, yet no maze at the origin alone would use row 6
    at_origin, _ = build_mazes(generator="wilson", grid_n=LATTICE, n_mazes=200, seed=5, sizes=SIZES,
                               placement="origin")
    assert vocab.unary_id[6, 6] not in set(np.unique(encode(at_origin, vocab, TokenizerOptions()).flat).tolist())


def test_one_size_filling_the_grid_is_the_plain_dataset():
    plain, _ = build_mazes(generator="dfs", grid_n=5, n_mazes=50, seed=2)
    placed, _ = build_mazes(generator="dfs", grid_n=5, n_mazes=50, seed=2, sizes=[5])
    assert np.array_equal(plain.open, placed.open) and np.array_equal(plain.maze_id, placed.maze_id)


def test_maze_id_covers_the_offset_and_exclusion_works_across_sizes(coverage):
    batch, _ = coverage
    # the same 3x3 maze at two offsets: two ids
    sub, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=1, seed=0)
    a = embed(sub.open, 3, LATTICE, np.array([0]), np.array([0]))
    b = embed(sub.open, 3, LATTICE, np.array([2]), np.array([1]))
    shift = 2 * LATTICE + 1
    o, t = np.array([0]), np.array([8 // 3 * LATTICE + 8 % 3])  # cells (0,0), (2,2) of the square
    assert maze_ids(LATTICE, a, o, t)[0] != maze_ids(LATTICE, b, o + shift, t + shift)[0]
    # a test set drawn with the same seed excludes every training maze, whatever its size
    test, info = build_mazes(generator="wilson", grid_n=LATTICE, n_mazes=300, seed=5, sizes=SIZES,
                             exclude_ids=batch.maze_id)
    assert info["n_dropped_overlap"] >= 300 and not np.isin(test.maze_id, batch.maze_id).any()


def test_placement_is_per_maze_and_independent_of_chunking():
    whole, _ = build_mazes(generator="dfs", grid_n=6, n_mazes=300, seed=9, sizes=[2, 4])
    chunked, _ = build_mazes(generator="dfs", grid_n=6, n_mazes=300, seed=9, sizes=[2, 4], chunk_size=37)
    assert np.array_equal(whole.open, chunked.open) and np.array_equal(whole.path_flat, chunked.path_flat)
    seeds = np.arange(1000, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    place = placements(seeds, [2, 4], 6)
    assert set(place[:, 0].tolist()) == {2, 4}
    assert all(0 <= r <= 6 - k and 0 <= c <= 6 - k for k, r, c in place.tolist())
    assert not placements(seeds, [2, 4], 6, "origin")[:, 1:].any()


def test_lattice_edges_hand_checked():
    # a 2x2 square at (1, 1) of a 3x3 lattice: its edges (4,5), (7,8) horizontal, (4,7), (5,8) vertical
    ends = edge_endpoints(3)
    got = lattice_edges(2, 3, np.array([1]), np.array([1]))[0]
    assert [tuple(ends[e]) for e in got] == [(4, 5), (7, 8), (4, 7), (5, 8)]


@pytest.mark.parametrize("sizes,says", [([], "non-empty"), ([1], "2..grid_n"), ([8], "2..grid_n")])
def test_bad_sizes_are_refused(sizes, says):
    with pytest.raises(ValueError, match=says):
        build_mazes(generator="dfs", grid_n=7, n_mazes=5, seed=0, sizes=sizes)
    raw = {"datasets": {"train": dict(generator="dfs", grid_n=7, n_mazes=5, seed=0, sizes=sizes)}}
    with pytest.raises(ParamsError, match="sizes"):
        parse_params(raw)
