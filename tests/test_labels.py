import itertools

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from helpers import batch_from_paths
from mazesearch.interp.labels import build_labels, bfs_distances, emit_step, shortest_path_cells
from mazesearch.data.maze import MazeBatch, edge_endpoints, edge_index, n_edges

# 3x3 cells:  0 1 2 / 3 4 5 / 6 7 8
TREE_EDGES = [(0, 1), (1, 2), (2, 5), (4, 5), (3, 4), (3, 6), (4, 7), (7, 8)]
TREE_PATH = [0, 1, 2, 5, 4, 7, 8]  # the only path 0 -> 8
CYCLE_PATH = [0, 1, 4]  # all edges open: 0 -> 4 also via 3


def make_batch(n: int, edge_lists: list[list[tuple[int, int]]], paths: list[list[int]]) -> MazeBatch:
    open_ = np.zeros((len(paths), n_edges(n)), dtype=np.uint8)
    for i, edges in enumerate(edge_lists):
        for a, b in edges:
            open_[i, edge_index(n, a, b)] = 1
    return batch_from_paths(n, open_, paths)


def make_index(batch: MazeBatch) -> pd.DataFrame:
    """Rows in token order per maze: <TARGET_END>, <PATH_START>, then every path token."""
    rows = []
    for m in range(len(batch)):
        path = batch.path(m)
        rows.append((m, "target_end", 0, -1, 10))
        rows.append((m, "path_start", 0, -1, 11))
        rows += [(m, "path", k + 1, int(c), 12 + k) for k, c in enumerate(path)]
    df = pd.DataFrame(rows, columns=["maze_row", "kind", "path_step", "current_cell", "token_pos"])
    df.insert(0, "row", np.arange(len(df), dtype=np.int64))
    df["maze_id"] = batch.maze_id[df["maze_row"].to_numpy()]
    return df


@pytest.fixture
def hand():
    all_edges = [tuple(e) for e in edge_endpoints(3).tolist()]
    batch = make_batch(3, [TREE_EDGES, all_edges], [TREE_PATH, CYCLE_PATH])
    return batch, make_index(batch)


def test_hand_built_labels_exact(hand):
    batch, index = hand
    L = build_labels(batch, index)
    kinds = index["kind"].tolist()
    # maze 0 rows: 0 target_end, 1 path_start, 2..8 path s=1..7; maze 1: 9, 10, 11..13 s=1..3
    assert len(index) == 14 and kinds[9] == "target_end" and kinds[10] == "path_start"

    fp = L["future_path"]
    assert fp.defined.tolist() == [False] + [True] * 8 + [False] + [True] * 4
    expect = np.zeros((14, 9), dtype=bool)
    for r, s in zip(range(1, 9), range(8)):
        expect[r, TREE_PATH[s:]] = True  # s = 0 at <PATH_START>: whole path
    for r, s in zip(range(10, 14), range(4)):
        expect[r, CYCLE_PATH[s:]] = True
    assert np.array_equal(fp.values, expect)
    assert not fp.values[8].any()  # after the target is emitted nothing is left
    assert fp.values[4].nonzero()[0].tolist() == [4, 5, 7, 8]  # s=3: 0,1,2 emitted

    on = L["on_solution"]
    assert np.flatnonzero(on.defined).tolist() == [1, 10]
    assert np.flatnonzero(on.values[1]).tolist() == sorted(TREE_PATH)
    assert np.flatnonzero(on.values[10]).tolist() == [0, 1, 3, 4]  # both shortest paths 0->4
    assert not on.values[[0, 2, 9, 11]].any()

    w = L["walls"]
    assert np.flatnonzero(w.defined).tolist() == [1, 10]
    # canonical order: h (0,1) (1,2) (3,4) (4,5) (6,7) (7,8), v (0,3) (1,4) (2,5) (3,6) (4,7) (5,8)
    assert w.values[1].astype(int).tolist() == [1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0]
    assert w.values[10].all() and w.n_outputs == 12

    t = L["target"]
    assert t.values.tolist() == [-1] + [8] * 8 + [-1] + [4] * 4
    assert t.n_outputs == 9

    nm = L["next_move"]  # 0 N, 1 E, 2 S, 3 W
    assert nm.values.tolist() == [-1, -1, 1, 1, 2, 3, 2, 1, -1, -1, -1, 1, 2, -1]
    assert nm.defined.tolist() == [v >= 0 for v in nm.values.tolist()]

    d = L["dist_to_target"]
    got = np.where(d.defined, d.values, -9).tolist()
    assert got == [-9, 6, 6, 5, 4, 3, 2, 1, 0, -9, 2, 2, 1, 0]


def test_labels_ignore_row_order(hand):
    batch, index = hand
    shuffled = index.sample(frac=1.0, random_state=0)
    a, b = build_labels(batch, index), build_labels(batch, shuffled)
    pos = shuffled.index.to_numpy()
    for name in a:
        assert np.array_equal(a[name].values[pos], b[name].values, equal_nan=True), name


def _random_maze_graph(n, rng, p):
    ends = edge_endpoints(n)
    open_ = (rng.random(len(ends)) < p).astype(np.uint8)
    g = nx.Graph()
    g.add_nodes_from(range(n * n))
    g.add_edges_from(ends[open_ == 1].tolist())
    return open_, g


def test_on_solution_and_distances_match_networkx():
    rng = np.random.default_rng(3)
    n, edge_lists, paths, graphs = 4, [], [], []
    while len(paths) < 30:
        open_, g = _random_maze_graph(n, rng, 0.7)
        o, t = rng.choice(n * n, 2, replace=False).tolist()
        if not nx.has_path(g, o, t):
            continue
        ends = edge_endpoints(n)
        edge_lists.append([tuple(e) for e in ends[open_ == 1].tolist()])
        paths.append(nx.shortest_path(g, o, t))
        graphs.append(g)
    batch = make_batch(n, edge_lists, paths)
    on = shortest_path_cells(batch)
    dist = bfs_distances(batch, batch.origin)
    for i, g in enumerate(graphs):
        union = set(itertools.chain.from_iterable(nx.all_shortest_paths(g, paths[i][0], paths[i][-1])))
        assert set(np.flatnonzero(on[i]).tolist()) == union
        lengths = nx.single_source_shortest_path_length(g, paths[i][0])
        assert dist[i].tolist() == [lengths.get(c, -1) for c in range(n * n)]
    # dist_to_target equals the BFS distance from the current cell to the target
    index = make_index(batch)
    d = build_labels(batch, index, ["dist_to_target"])["dist_to_target"]
    path_rows = index["kind"].to_numpy() == "path"
    to_target = bfs_distances(batch, batch.target)
    m, cur = index["maze_row"].to_numpy()[path_rows], index["current_cell"].to_numpy()[path_rows]
    assert np.array_equal(d.values[path_rows], to_target[m, cur])
    assert np.array_equal(emit_step(batch)[0, paths[0]], np.arange(len(paths[0])))


def test_index_that_does_not_match_the_mazes_is_rejected(hand):
    batch, index = hand
    bad = index.copy()
    bad.loc[3, "current_cell"] = 7
    with pytest.raises(ValueError, match="current_cell"):
        build_labels(batch, bad)
    bad = index.copy()
    bad["maze_id"] = bad["maze_id"].to_numpy()[::-1]
    with pytest.raises(ValueError, match="maze_id"):
        build_labels(batch, bad)
    bad = index.copy()
    bad.loc[0, "maze_row"] = 5
    with pytest.raises(ValueError, match="maze_row out of range"):
        build_labels(batch, bad)
    bad = index.copy()
    bad.loc[2, "path_step"] = 0
    with pytest.raises(ValueError, match="path_step"):
        build_labels(batch, bad)
    bad = index.copy()
    bad.loc[0, "kind"] = "origin"
    with pytest.raises(ValueError, match="unknown values"):
        build_labels(batch, bad)
    with pytest.raises(ValueError, match="lacks columns"):
        build_labels(batch, index.drop(columns=["path_step"]))
    with pytest.raises(ValueError, match="unknown probe targets"):
        build_labels(batch, index, ["walls", "colour"])
