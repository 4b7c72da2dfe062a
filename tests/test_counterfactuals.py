"""mazesearch.interp.counterfactuals: every pair checked against networkx (trees / one cycle,
exactly the promised edge edit, unique shortest paths equal to the stored ones, the shared prefix
and the differing next cell, a real decision), the tokens against the strict decoder and the
alignment promises, plus determinism, counts, the file round trip and bad input."""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np
import pyarrow.parquet as pq
import pytest

from mazesearch.data.dataset import build_mazes
from mazesearch.data.decode import decode
from mazesearch.data.maze import edge_endpoints
from mazesearch.data.tokens import TokenizerOptions, Vocab, encode
from mazesearch.interp.counterfactuals import KINDS, Pairs, make_pairs, read_pairs, summary, write_pairs

VOCAB = Vocab.build(5)
N_PER_KIND = 24


def _source(n, coord="unary", n_mazes=200, seed=11):
    mazes, _ = build_mazes(generator="wilson", grid_n=n, n_mazes=n_mazes, seed=seed)
    return mazes, encode(mazes, VOCAB, TokenizerOptions(coord=coord))


@pytest.fixture(scope="module", params=[(4, "unary"), (5, "unary"), (4, "pair")], ids=lambda p: f"{p[0]}x{p[0]}-{p[1]}")
def made(request):
    n, coord = request.param
    mazes, tokens = _source(n, coord)
    return mazes, tokens, make_pairs(mazes, tokens, VOCAB, n_per_kind=N_PER_KIND, seed=3, coord=coord)


def _graph(n, open_row):
    g = nx.Graph()
    g.add_nodes_from(range(n * n))
    g.add_edges_from(map(tuple, edge_endpoints(n)[open_row.astype(bool)].tolist()))
    return g


def _edges(n, open_row):
    return {tuple(e) for e in edge_endpoints(n)[open_row.astype(bool)].tolist()}


def _only_path(g, o, t):
    paths = list(nx.all_shortest_paths(g, int(o), int(t)))
    assert len(paths) == 1, f"{len(paths)} shortest paths"
    return paths[0]


def test_every_kind_gets_its_pairs(made):
    _, _, pairs = made
    s = summary(pairs)
    assert list(s) == list(KINDS)
    for kind in KINDS:
        assert (pairs.kind == kind).sum() == N_PER_KIND == s[kind]["n_pairs"]
        assert s[kind]["n_tried"] >= N_PER_KIND
        assert len(set(pairs.maze_row[pairs.kind == kind].tolist())) == N_PER_KIND  # one per source maze


def test_pairs_against_networkx(made):
    mazes, _, pairs = made
    n = mazes.grid_n
    ends = edge_endpoints(n)
    for i in range(len(pairs)):
        kind, k, row = str(pairs.kind[i]), int(pairs.decision_step[i]), int(pairs.maze_row[i])
        gc, gx = _graph(n, pairs.clean.open[i]), _graph(n, pairs.corrupt.open[i])
        # the source maze is the tree side, untouched
        tree_side = pairs.corrupt if kind == "edge_remove" else pairs.clean
        assert np.array_equal(tree_side.open[i], mazes.open[row]) and tree_side.target[i] == mazes.target[row]
        for g, is_tree in ((gc, kind != "edge_remove"), (gx, kind != "edge_add")):
            if is_tree:
                assert nx.is_tree(g), kind
            else:
                assert nx.is_connected(g) and len(nx.cycle_basis(g)) == 1, kind
        # exactly the promised edit
        removed = _edges(n, pairs.clean.open[i]) - _edges(n, pairs.corrupt.open[i])
        added = _edges(n, pairs.corrupt.open[i]) - _edges(n, pairs.clean.open[i])
        want = {"target_move": (0, 0), "wall_move": (1, 1), "edge_add": (0, 1), "edge_remove": (1, 0)}[kind]
        assert (len(removed), len(added)) == want, kind
        assert removed == ({tuple(ends[pairs.removed_edge[i]])} if pairs.removed_edge[i] >= 0 else set())
        assert added == ({tuple(ends[pairs.added_edge[i]])} if pairs.added_edge[i] >= 0 else set())
        assert pairs.clean.origin[i] == pairs.corrupt.origin[i]
        assert (pairs.clean.target[i] != pairs.corrupt.target[i]) == (kind == "target_move")
        # unique shortest paths, equal to the stored ones
        pc = _only_path(gc, pairs.clean.origin[i], pairs.clean.target[i])
        px = _only_path(gx, pairs.corrupt.origin[i], pairs.corrupt.target[i])
        assert pc == pairs.clean.path(i).tolist() and px == pairs.corrupt.path(i).tolist()
        assert pairs.clean.n_shortest_paths[i] == pairs.corrupt.n_shortest_paths[i] == 1
        # shared prefix up to k, then different next cells
        assert pc[:k + 1] == px[:k + 1] and k + 1 < min(len(pc), len(px))
        assert (pairs.clean_next[i], pairs.corrupt_next[i]) == (pc[k + 1], px[k + 1]) and pc[k + 1] != px[k + 1]
        # a real decision: >= 2 onward options at path[k] (in the cyclic maze for edge_add)
        g = gx if kind == "edge_add" else gc
        onward = set(g.neighbors(pc[k])) - ({pc[k - 1]} if k else set())
        assert len(onward) >= 2, kind
        if kind in ("target_move", "edge_add", "edge_remove"):
            assert {pc[k + 1], px[k + 1]} <= onward
        if kind == "wall_move":
            assert removed == {tuple(sorted((pc[k], pc[k + 1])))}


def test_tokens_decode_and_align(made):
    mazes, tokens, pairs = made
    n, w = mazes.grid_n, 2 if pairs.coord == "pair" else 1
    cell_ids = (VOCAB.unary_id[np.divmod(np.arange(n * n), n)][:, None] if w == 1 else
                np.stack([VOCAB.pair_row_id[np.arange(n * n) // n], VOCAB.pair_col_id[np.arange(n * n) % n]], 1))
    for i in range(len(pairs)):
        kind, k, row = str(pairs.kind[i]), int(pairs.decision_step[i]), int(pairs.maze_row[i])
        for batch, tb in ((pairs.clean, pairs.clean_tokens), (pairs.corrupt, pairs.corrupt_tokens)):
            d = decode(tb.tokens(i), VOCAB, n)
            assert np.array_equal(d.open, batch.open[i]) and d.path == batch.path(i).tolist()
            assert (d.origin, d.target) == (batch.origin[i], batch.target[i])
            assert tb.maze_id[i] == batch.maze_id[i]
        tree_tokens = pairs.corrupt_tokens if kind == "edge_remove" else pairs.clean_tokens
        assert np.array_equal(tree_tokens.tokens(i), tokens.tokens(row))  # what the model saw
        c, x = pairs.clean_tokens, pairs.corrupt_tokens
        cp, xp, pos = c.prompt(i).astype(int), x.prompt(i).astype(int), pairs.edited_pos[i]
        if kind in ("target_move", "wall_move"):
            assert len(cp) == len(xp) and pairs.decision_pos[i] == pairs.decision_pos_clean[i]
            assert np.array_equal(np.flatnonzero(cp != xp), pos) and len(pos) >= 1
            if kind == "target_move":  # only the target coordinate
                assert set(pos.tolist()) <= set(range(len(cp) - 2 - w, len(cp) - 2))
            else:  # only the coordinates of one adjacency entry, now the added edge, lower cell first
                slot = {(p - 1) // (2 * w + 2) for p in pos}
                assert len(slot) == 1 and pos.max() < len(cp) - 3 - 2 * (w + 2)
                start = 1 + slot.pop() * (2 * w + 2)
                assert [_cell(cell_ids, xp[start:start + w]), _cell(cell_ids, xp[start + w + 1:start + 2 * w + 1])] \
                    == edge_endpoints(n)[pairs.added_edge[i]].tolist()
        else:
            longer, shorter = (xp, cp) if kind == "edge_add" else (cp, xp)
            assert len(longer) == len(shorter) + 2 * w + 2 and len(pos) == 2 * w
            start = pos[0]
            assert (start - 1) % (2 * w + 2) == 0  # an entry boundary
            assert np.array_equal(pos, np.r_[start:start + w, start + w + 1:start + 2 * w + 1])
            assert np.array_equal(np.delete(longer, np.arange(start, start + 2 * w + 2)), shorter)
            entry = [_cell(cell_ids, longer[pos[:w]]), _cell(cell_ids, longer[pos[w:]])]  # lower cell first
            assert entry == edge_endpoints(n)[max(pairs.added_edge[i], pairs.removed_edge[i])].tolist()
        for tb, p, path in ((x, pairs.decision_pos[i], pairs.corrupt.path(i)),
                            (c, pairs.decision_pos_clean[i], pairs.clean.path(i))):
            seq = tb.tokens(i)
            assert p == tb.prompt_len[i] + k * w + w - 1
            assert np.array_equal(seq[p - w + 1:p + 1], cell_ids[path[k]])
            assert np.array_equal(seq[p + 1:p + 1 + w], cell_ids[path[k + 1]])  # what it must predict next


def _cell(cell_ids, toks) -> int:
    """The cell whose coordinate tokens are ``toks`` (cell_ids: [N, w])."""
    return int(np.flatnonzero((cell_ids == np.asarray(toks)).all(1))[0])


def _equal(a: Pairs, b: Pairs) -> bool:
    for f in dataclasses.fields(Pairs):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if f.name == "edited_pos":
            ok = len(x) == len(y) and all(np.array_equal(p, q) and p.dtype == q.dtype for p, q in zip(x, y))
        elif dataclasses.is_dataclass(x):
            ok = all(np.array_equal(getattr(x, g.name), getattr(y, g.name))
                     and np.asarray(getattr(x, g.name)).dtype == np.asarray(getattr(y, g.name)).dtype
                     for g in dataclasses.fields(x))
        elif isinstance(x, np.ndarray):
            ok = np.array_equal(x, y) and x.dtype == y.dtype
        else:
            ok = x == y
        if not ok:
            return False
    return True


def test_deterministic_seeded_and_kinds_are_independent_streams():
    mazes, tokens = _source(4, n_mazes=120, seed=2)
    a = make_pairs(mazes, tokens, VOCAB, n_per_kind=10, seed=5)
    assert _equal(a, make_pairs(mazes, tokens, VOCAB, n_per_kind=10, seed=5))
    other = make_pairs(mazes, tokens, VOCAB, n_per_kind=10, seed=6)
    for kind in KINDS:
        assert not np.array_equal(a.maze_row[a.kind == kind], other.maze_row[other.kind == kind])
    only = make_pairs(mazes, tokens, VOCAB, kinds=("wall_move",), n_per_kind=10, seed=5)
    want = dataclasses.replace(a.take(np.flatnonzero(a.kind == "wall_move")), tried={"wall_move": a.tried["wall_move"]})
    assert _equal(only, want)  # one kind alone: the same pairs as among all kinds


def test_running_out_of_mazes_and_small_counts():
    mazes, tokens = _source(4, n_mazes=25, seed=4)
    pairs = make_pairs(mazes, tokens, VOCAB, n_per_kind=1000, seed=0)
    s = summary(pairs)
    for kind in KINDS:
        rows = pairs.maze_row[pairs.kind == kind]
        assert s[kind]["n_tried"] == 25 and 0 < s[kind]["n_pairs"] == len(rows) == len(set(rows.tolist())) <= 25
    assert len(make_pairs(mazes, tokens, VOCAB, n_per_kind=0, seed=0)) == 0
    assert summary(make_pairs(mazes, tokens, VOCAB, n_per_kind=3, seed=0))["edge_add"]["n_pairs"] == 3


def test_round_trip_and_bad_files(made, tmp_path):
    _, _, pairs = made
    path = tmp_path / "pairs.parquet"
    write_pairs(pairs, path)
    assert _equal(read_pairs(path), pairs)
    some = pairs.take(np.array([3, 0, len(pairs) - 1]))
    write_pairs(some, tmp_path / "some.parquet")
    assert _equal(read_pairs(tmp_path / "some.parquet"), some)

    (tmp_path / "junk.parquet").write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match="junk.parquet"):
        read_pairs(tmp_path / "junk.parquet")
    table = pq.read_table(path)
    bad = table.set_column(table.column_names.index("decision_step"), "decision_step",
                           [table["decision_step"].to_numpy() + 1])
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(ValueError, match="decision_step"):
        read_pairs(tmp_path / "bad.parquet")
    pq.write_table(table.drop_columns(["corrupt_path"]), tmp_path / "lacks.parquet")
    with pytest.raises(ValueError, match="lacks.parquet"):
        read_pairs(tmp_path / "lacks.parquet")
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "nometa.parquet")
    with pytest.raises(ValueError, match="not a pairs file"):
        read_pairs(tmp_path / "nometa.parquet")


def test_bad_input_is_refused():
    mazes, tokens = _source(4, n_mazes=30, seed=1)
    with pytest.raises(ValueError, match="aligned"):
        make_pairs(mazes, tokens.take(np.arange(30)[::-1]), VOCAB, n_per_kind=3, seed=0)
    with pytest.raises(ValueError, match="aligned"):
        make_pairs(mazes, tokens.take(np.arange(29)), VOCAB, n_per_kind=3, seed=0)
    with pytest.raises(ValueError, match="coord='pair'"):
        make_pairs(mazes, tokens, VOCAB, n_per_kind=3, seed=0, coord="pair")
    with pytest.raises(ValueError, match="kinds"):
        make_pairs(mazes, tokens, VOCAB, kinds=("target_move", "nope"), n_per_kind=3, seed=0)
    with pytest.raises(ValueError, match="spanning trees"):
        cyclic, _ = build_mazes(generator="dfs", grid_n=4, n_mazes=30, seed=1, max_cells=10)
        make_pairs(cyclic, encode(cyclic, VOCAB), VOCAB, n_per_kind=3, seed=0)


def _has_valid_edit(kind, n, open_row, origin, target) -> bool:
    """Brute force with networkx: does maze (a tree) admit any edit of ``kind`` (module doc)?"""
    g = _graph(n, open_row)
    o, t = int(origin), int(target)
    p = nx.shortest_path(g, o, t)
    walls = [tuple(e) for e in edge_endpoints(n)[open_row == 0].tolist()]

    def diverges(h, t2, k=None):
        paths = list(nx.all_shortest_paths(h, o, t2))
        if len(paths) != 1:
            return False
        q = paths[0]
        m = next((j for j, (a, b) in enumerate(zip(p, q)) if a != b), min(len(p), len(q)))
        return m < min(len(p), len(q)) and (k is None or m == k + 1)

    if kind == "target_move":
        return any(diverges(g, t2) for t2 in range(n * n) if t2 not in (o, t))
    if kind == "wall_move":
        for k in range(len(p) - 1):
            if len(set(g.neighbors(p[k])) - ({p[k - 1]} if k else set())) < 2:
                continue
            for wall in walls:
                h = g.copy()
                h.remove_edge(p[k], p[k + 1])
                h.add_edge(*wall)
                if nx.is_connected(h) and diverges(h, t, k):
                    return True
        return False
    return any(diverges(nx.Graph(list(g.edges) + [wall]), t) for wall in walls)


def test_a_source_maze_is_skipped_exactly_when_it_has_no_valid_edit():
    mazes, tokens = _source(4, n_mazes=40, seed=9)
    pairs = make_pairs(mazes, tokens, VOCAB, n_per_kind=10_000, seed=1)
    skipped = 0
    for kind in KINDS:
        got = set(pairs.maze_row[pairs.kind == kind].tolist())
        want = {i for i in range(len(mazes))
                if _has_valid_edit(kind, 4, mazes.open[i], mazes.origin[i], mazes.target[i])}
        assert got == want and len(want) > 0, kind
        skipped += len(mazes) - len(want)
    assert skipped > 0  # the skipping was exercised
