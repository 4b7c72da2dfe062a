"""Tokenizer, token files and decoders (mazesearch.data.tokens, mazesearch.data.decode); vocabulary: test_vocab.py."""

import dataclasses
import itertools
import re

import networkx as nx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import batch_from_paths
from mazesearch.data.decode import TokenDecodeError, decode, decode_path
from mazesearch.data.maze import MazeBatch, edge_endpoints, edge_index, n_edges
from mazesearch.io import InputError
from mazesearch.data.tokens import (
    SPECIAL_TOKENS, TokenBatch, TokenizerOptions, Vocab, encode, from_text, max_sequence_length,
    read_tokens, to_text, write_tokens,
)

ALL_OPTIONS = [
    TokenizerOptions(coord=c, edges=e, edge_order=o, seed=s)
    for c, e, o, s in itertools.product(("unary", "pair"), ("adjlist", "walls"), ("shuffled", "sorted"), (0, 7))
]


def make_batch(n: int, open_: np.ndarray, origin, target) -> MazeBatch:
    """A MazeBatch whose paths are networkx shortest paths (an independent oracle)."""
    open_ = np.asarray(open_, dtype=np.uint8)
    paths = []
    for row, o, t in zip(open_, origin, target):
        g = nx.Graph()
        g.add_nodes_from(range(n * n))
        g.add_edges_from(map(tuple, edge_endpoints(n)[row == 1].tolist()))
        paths.append(nx.shortest_path(g, int(o), int(t)))
    return batch_from_paths(n, open_, paths)


def random_batch(n: int, B: int, seed: int, p: float = 0.6) -> MazeBatch:
    """Percolation mazes; the target is drawn from the origin's component."""
    rng = np.random.default_rng(seed)
    open_ = (rng.random((B, n_edges(n))) < p).astype(np.uint8)
    origin, target = [], []
    for row in open_:
        g = nx.Graph()
        g.add_nodes_from(range(n * n))
        g.add_edges_from(map(tuple, edge_endpoints(n)[row == 1].tolist()))
        o = int(rng.integers(n * n))
        comp = sorted(nx.node_connected_component(g, o) - {o}) or [o]
        origin.append(o)
        target.append(int(rng.choice(comp)))
    return make_batch(n, open_, origin, target)


# 2x2: edges 0 (0,0)-(0,1), 1 (1,0)-(1,1), 2 (0,0)-(1,0), 3 (0,1)-(1,1); edge 3 is a wall.
TINY = make_batch(2, [[1, 1, 1, 0]], [0], [1])


def listed_edges(tokens: np.ndarray, vocab: Vocab, n: int, coord: str) -> list[tuple[int, int]]:
    """(first cell, second cell) of every listed edge, in sequence order."""
    text = to_text(tokens, vocab).split()
    body = text[1 : text.index("<ADJLIST_END>" if text[0] == "<ADJLIST_START>" else "<WALLS_END>")]
    step = 4 if coord == "unary" else 6
    out = []
    for k in range(0, len(body), step):
        item = body[k : k + step]
        coords = [item[0], item[2]] if coord == "unary" else [item[0] + item[1][1:], item[3] + item[4][1:]]
        cells = [int(s[1:-1].split(",")[0]) * n + int(s[1:-1].split(",")[1]) for s in coords]
        out.append((cells[0], cells[1]))
    return out


# ---------------------------------------------------------------------------- encoding


def test_default_text_of_hand_built_maze():
    v = Vocab.build(4)
    sorted_text = ("<ADJLIST_START> (0,0) <--> (0,1) ; (1,0) <--> (1,1) ; (0,0) <--> (1,0) ; <ADJLIST_END> "
                   "<ORIGIN_START> (0,0) <ORIGIN_END> <TARGET_START> (0,1) <TARGET_END> "
                   "<PATH_START> (0,0) (0,1) <PATH_END>")
    assert to_text(encode(TINY, v, TokenizerOptions(edge_order="sorted")).tokens(0), v) == sorted_text
    # The default (seed 0 shuffle) is pinned: changing it silently changes every dataset.
    default = to_text(encode(TINY, v).tokens(0), v)
    assert default == ("<ADJLIST_START> (1,0) <--> (0,0) ; (0,1) <--> (0,0) ; (1,0) <--> (1,1) ; <ADJLIST_END> "
                       "<ORIGIN_START> (0,0) <ORIGIN_END> <TARGET_START> (0,1) <TARGET_END> "
                       "<PATH_START> (0,0) (0,1) <PATH_END>")
    walls_pair = to_text(encode(TINY, v, TokenizerOptions(coord="pair", edges="walls", edge_order="sorted")).tokens(0), v)
    assert walls_pair == ("<WALLS_START> (0, ,1) <-X-> (1, ,1) ; <WALLS_END> "
                          "<ORIGIN_START> (0, ,0) <ORIGIN_END> <TARGET_START> (0, ,1) <TARGET_END> "
                          "<PATH_START> (0, ,0) (0, ,1) <PATH_END>")
    tb = encode(TINY, v)
    assert to_text(tb.prompt(0), v).endswith("<TARGET_END> <PATH_START>")
    assert tb.prompt_len[0] == 1 + 3 * 4 + 1 + 3 + 3 + 1


@pytest.mark.parametrize("opts", ALL_OPTIONS, ids=str)
def test_encode_decode_round_trip(opts):
    v = Vocab.build(7)
    for n, p, seed in [(2, 0.5, 1), (3, 0.7, 2), (5, 0.5, 3), (5, 1.0, 4), (7, 0.0, 5)]:
        batch = random_batch(n, 12, seed, p)
        tb = encode(batch, v, opts)
        assert len(tb) == len(batch) and np.array_equal(tb.maze_id, batch.maze_id)
        assert tb.flat.dtype == np.uint16 and tb.flat.max() < len(v)
        for i in range(len(batch)):
            seq = tb.tokens(i)
            maze = decode(seq, v, n)
            assert np.array_equal(maze.open, batch.open[i])
            assert (maze.origin, maze.target) == (batch.origin[i], batch.target[i])
            assert maze.path == batch.path(i).tolist()
            assert seq[tb.prompt_len[i] - 1] == v.id("<PATH_START>")
            assert decode_path(seq[tb.prompt_len[i]:], v, n, opts.coord) == (batch.path(i).tolist(), 0, True)
            assert len(seq) <= max_sequence_length(n, opts)
            # trailing padding is allowed and ignored
            assert decode(np.concatenate([seq, [v.pad_id] * 3]), v, n).path == maze.path


def test_max_sequence_length_is_reached_by_a_full_maze():
    n = 4
    snake = [r * n + (c if r % 2 == 0 else n - 1 - c) for r in range(n) for c in range(n)]
    batch = make_batch(n, np.ones((1, n_edges(n))), [snake[0]], [snake[-1]])
    batch.path_flat = np.array(snake, np.int32)  # a longest walk, not the BFS path
    batch.path_offsets = np.array([0, n * n])
    for opts in ALL_OPTIONS:
        if opts.edges == "adjlist":
            assert len(encode(batch, Vocab.build(n), opts).tokens(0)) == max_sequence_length(n, opts)


@pytest.mark.parametrize("coord", ["unary", "pair"])
@pytest.mark.parametrize("edges", ["adjlist", "walls"])
def test_sorted_order_is_canonical(coord, edges):
    n = 5
    v = Vocab.build(n)
    batch = random_batch(n, 10, 11)
    tb = encode(batch, v, TokenizerOptions(coord=coord, edges=edges, edge_order="sorted"))
    for i in range(len(batch)):
        pairs = listed_edges(tb.tokens(i), v, n, coord)
        assert all(a < b for a, b in pairs)  # lower cell first
        idx = [edge_index(n, a, b) for a, b in pairs]
        wanted = np.flatnonzero(batch.open[i] == (1 if edges == "adjlist" else 0)).tolist()
        assert idx == wanted  # canonical edge order, exactly the listed kind


def _py_splitmix(state: int) -> tuple[int, int]:
    mask = 2**64 - 1
    state = (state + 0x9E3779B97F4A7C15) & mask
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return state, z ^ (z >> 31)


def test_shuffle_matches_reference_implementation():
    """A pure-Python rewrite of the documented shuffle gives the kernel's exact edge order."""
    n = 5
    v = Vocab.build(n)
    batch = random_batch(n, 8, 12)
    ends = edge_endpoints(n)
    for seed in (0, 3, 2**64 - 1):
        tb = encode(batch, v, TokenizerOptions(seed=seed))
        _, key = _py_splitmix(seed)
        for i in range(len(batch)):
            listed = np.flatnonzero(batch.open[i]).tolist()
            state = key ^ int(batch.maze_id[i])
            for k in range(len(listed) - 1, 0, -1):
                state, bits = _py_splitmix(state)
                j = bits % (k + 1)
                listed[k], listed[j] = listed[j], listed[k]
            expected = []
            for e in listed:
                state, bits = _py_splitmix(state)
                a, b = ends[e].tolist()
                expected.append((b, a) if bits >> 63 else (a, b))
            assert listed_edges(tb.tokens(i), v, n, "unary") == expected


@pytest.mark.parametrize("opts", [TokenizerOptions(), TokenizerOptions(coord="pair", edges="walls", seed=5)], ids=str)
def test_shuffle_depends_only_on_seed_and_maze_id(opts):
    v = Vocab.build(6)
    batch = random_batch(6, 30, 13)
    tb = encode(batch, v, opts)
    again = encode(batch, v, opts)
    assert np.array_equal(tb.flat, again.flat)  # deterministic
    perm = np.random.default_rng(0).permutation(len(batch))
    sub = np.concatenate([perm[:7], perm[:3]])  # reordered, partial, with repeats
    moved = encode(batch.take(sub), v, opts)
    for k, i in enumerate(sub):
        assert np.array_equal(moved.tokens(k), tb.tokens(i))
    assert np.array_equal(encode(batch, v, opts).take(sub).flat, moved.flat)


def test_different_seeds_give_different_orders():
    n = 6
    v = Vocab.build(n)
    batch = random_batch(n, 40, 14, p=0.7)
    by_seed = [encode(batch, v, TokenizerOptions(seed=s)) for s in (0, 1)]
    sorted_tb = encode(batch, v, TokenizerOptions(edge_order="sorted"))
    same_seed = sum(np.array_equal(by_seed[0].tokens(i), by_seed[1].tokens(i)) for i in range(len(batch)))
    assert same_seed == 0
    assert not any(np.array_equal(by_seed[0].tokens(i), sorted_tb.tokens(i)) for i in range(len(batch)))
    flipped = total = 0
    for i in range(len(batch)):
        a = listed_edges(by_seed[0].tokens(i), v, n, "unary")
        b = listed_edges(by_seed[1].tokens(i), v, n, "unary")
        assert sorted(map(sorted, a)) == sorted(map(sorted, b))  # the same edges, reordered
        flipped += sum(x > y for x, y in a)
        total += len(a)
    assert 0.4 < flipped / total < 0.6  # orientation is a fair coin per edge


def test_same_vocab_serves_every_option():
    v = Vocab.build(5)
    batch = random_batch(4, 5, 15)
    for opts in ALL_OPTIONS:  # one vocabulary, every option: nothing outside it is emitted
        tb = encode(batch, v, opts)
        assert from_text(to_text(tb.flat, v), v).tolist() == tb.flat.tolist()


def test_encode_rejects_bad_input():
    batch = random_batch(5, 3, 16)
    with pytest.raises(ValueError, match="grid_n=5 exceeds the vocabulary's max_grid_n=4"):
        encode(batch, Vocab.build(4))
    bad = batch.take(np.arange(3))
    bad.origin = bad.origin.copy()
    bad.origin[1] = 25
    with pytest.raises(ValueError, match="origin holds cells outside 0..24"):
        encode(bad, Vocab.build(5))
    for kwargs, key in [({"coord": "binary"}, "coord"), ({"edges": "both"}, "edges"),
                        ({"edge_order": "random"}, "edge_order"), ({"seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=key):
            TokenizerOptions(**kwargs)


# ---------------------------------------------------------------------------- decoding


def _ids(text: str, v: Vocab) -> np.ndarray:
    return from_text(text, v)


GOOD = ("<ADJLIST_START> (0,0) <--> (0,1) ; <ADJLIST_END> <ORIGIN_START> (0,0) <ORIGIN_END> "
        "<TARGET_START> (0,1) <TARGET_END> <PATH_START> (0,0) (0,1) <PATH_END>")


@pytest.mark.parametrize("text, position, message", [
    (GOOD.replace(" <PATH_END>", ""), 15, "expected a coordinate, got end of sequence"),
    (GOOD.replace("<-->", "<-X->"), 2, "expected <-->"),
    (GOOD.replace("(0,0) <--> (0,1)", "(0,0) <--> (1,1)"), 1, "not lattice neighbours"),
    (GOOD.replace("(0,1) ;", "(0,1) ; (0,1) <--> (0,0) ;"), 5, "listed twice"),
    (GOOD.replace("<TARGET_START> (0,1)", "<TARGET_START> (2,1)"), 10, "outside the 2x2 grid"),
    (GOOD.replace("<TARGET_START> (0,1)", "<TARGET_START> (0, ,1)"), 10, "pair coordinate in a sequence of unary"),
    (GOOD.replace("(0,0) <ORIGIN_END>", "(0, <ORIGIN_END>"), 8, "expected a ',c)' token"),
    (GOOD + " (0,0)", 16, "unexpected '(0,0)' after <PATH_END>"),
    (GOOD.replace("<ORIGIN_START>", "<TARGET_START>"), 6, "expected <ORIGIN_START>"),
    ("<PATH_START> " + GOOD, 0, "expected <ADJLIST_START> or <WALLS_START>"),
])
def test_decode_errors_name_the_position(text, position, message):
    v = Vocab.build(3)
    with pytest.raises(TokenDecodeError, match=re.escape(message)) as err:
        decode(_ids(text, v), v, 2)
    assert err.value.position == position and isinstance(err.value, ValueError)
    assert str(err.value).startswith(f"token {position}:")


def test_decode_rejects_bad_arrays():
    v = Vocab.build(3)
    ids = _ids(GOOD, v).astype(np.int64)
    ids[4] = len(v)
    with pytest.raises(TokenDecodeError, match="outside the vocabulary"):
        decode(ids, v, 2)
    with pytest.raises(ValueError, match="1-D integer"):
        decode(_ids(GOOD, v).reshape(1, -1), v, 2)
    with pytest.raises(ValueError, match="max_grid_n=3"):
        decode(_ids(GOOD, v), v, 4)
    assert decode(_ids(GOOD.replace("<ADJLIST_START>", "<WALLS_START>").replace("<ADJLIST_END>", "<WALLS_END>")
                       .replace("<-->", "<-X->"), v), v, 2).open.tolist() == [0, 1, 1, 1]


def test_decode_path_handles_garbage():
    v = Vocab.build(4)
    T = lambda s: _ids(s, v)  # noqa: E731
    assert decode_path(T("(0,0) (0,1) <PATH_END> (3,3)"), v, 3) == ([0, 1], 0, True)
    # non-coordinate tokens and off-grid coordinates read as -1; no <PATH_END>: ended False
    assert decode_path(T("(0,0) <ADJLIST_START> (3,0) (1,1) ; (0, ,1)"), v, 3) == ([0, -1, -1, 4, -1, -1, -1], 5, False)
    assert decode_path(T("(2,2) <PADDING> <PATH_END>"), v, 3) == ([8], 0, False)  # padding: nothing generated
    assert decode_path(np.array([], np.int64), v, 3) == ([], 0, False)
    assert decode_path(np.array([65535, -4, v.id("(1,0)")]), v, 3) == ([-1, -1, 3], 2, False)
    # pair coordinates: a lone "(r," or ",c)" is one invalid token; off-grid pairs are one invalid cell
    pairs = T("(1, ,2) (0, (2, ,0) ,1) (3, ,0) (1,1) (2, <PATH_END>")
    assert decode_path(pairs, v, 3, "pair") == ([5, -1, 6, -1, -1, -1, -1], 5, True)
    with pytest.raises(ValueError, match="coord must be"):
        decode_path(pairs, v, 3, "binary")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, 80), max_size=40), st.sampled_from(["unary", "pair"]), st.integers(1, 5))
def test_decode_path_never_raises(ids, coord, n):
    v = Vocab.build(5)
    cells, n_invalid, ended = decode_path(np.array(ids, dtype=np.int64), v, n, coord)
    assert n_invalid == sum(c < 0 for c in cells)
    assert all(-1 <= c < n * n for c in cells) and len(cells) <= len(ids)
    assert ended == (v.id("<PATH_END>") in ids and
                     (v.pad_id not in ids or ids.index(v.id("<PATH_END>")) < ids.index(v.pad_id)))


# ---------------------------------------------------------------------------- batches and files


def test_padded_and_take():
    v = Vocab.build(5)
    tb = encode(random_batch(5, 9, 17), v)
    lengths = tb.lengths
    out = tb.padded(v.pad_id)
    assert out.shape == (9, lengths.max()) and out.dtype == np.uint16
    for i in range(9):
        assert np.array_equal(out[i, : lengths[i]], tb.tokens(i))
        assert (out[i, lengths[i]:] == v.pad_id).all()
    wide = tb.padded(v.pad_id, length=lengths.max() + 5, dtype=np.int64)
    assert wide.shape == (9, lengths.max() + 5) and wide.dtype == np.int64
    assert np.array_equal(wide[:, : lengths.max()], out)
    with pytest.raises(ValueError, match="shorter than the longest sequence"):
        tb.padded(v.pad_id, length=lengths.max() - 1)
    sub = tb.take([4, 0, 4])
    assert [sub.tokens(k).tolist() for k in range(3)] == [tb.tokens(i).tolist() for i in (4, 0, 4)]
    assert sub.prompt_len.tolist() == tb.prompt_len[[4, 0, 4]].tolist()


def test_parquet_round_trip(tmp_path):
    v = Vocab.build(6)
    tb = encode(random_batch(6, 50, 18), v, TokenizerOptions(coord="pair"))
    write_tokens(tb, tmp_path / "t.parquet")
    write_tokens(tb, tmp_path / "u.parquet")
    assert (tmp_path / "t.parquet").read_bytes() == (tmp_path / "u.parquet").read_bytes()
    assert not (tmp_path / "t.parquet.tmp").exists()
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert schema.field("maze_id").type == pa.uint64() and schema.field("prompt_len").type == pa.int32()
    assert schema.field("tokens").type == pa.list_(pa.uint16())
    back = read_tokens(tmp_path / "t.parquet")
    for name in ("maze_id", "flat", "offsets", "prompt_len"):
        assert np.array_equal(getattr(back, name), getattr(tb, name)) and getattr(back, name).dtype == getattr(tb, name).dtype
    # several chunks (row groups) read back as one batch
    table = tb.to_arrow()
    chunked = pa.concat_tables([table.slice(0, 17), table.slice(17, 20), table.slice(37)])
    assert np.array_equal(TokenBatch.from_arrow(chunked).flat, tb.flat)
    assert len(TokenBatch.from_arrow(table.slice(0, 0))) == 0

    with pytest.raises(InputError, match="missing.parquet: token file does not exist"):
        read_tokens(tmp_path / "missing.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="junk.parquet: token file is not readable Parquet"):
        read_tokens(tmp_path / "junk.parquet")
    with pytest.raises(ValueError, match="lacks columns"):
        TokenBatch.from_arrow(table.drop(["prompt_len"]))
    # checked against a vocabulary: ids inside it, prompts end in <PATH_START>, prompt_len inside
    assert np.array_equal(read_tokens(tmp_path / "t.parquet", vocab=v).flat, tb.flat)
    with pytest.raises(InputError, match=r"t.parquet: token file row \d+ holds id \d+, outside a vocabulary of 22 tokens"):
        read_tokens(tmp_path / "t.parquet", vocab=Vocab.build(2))
    for prompt_len, msg in [(tb.lengths, "prompt_len outside 1..len"),
                            (tb.prompt_len - 1, "row 0: prompt does not end in <PATH_START>")]:
        write_tokens(dataclasses.replace(tb, prompt_len=np.asarray(prompt_len, np.int32)), tmp_path / "bad.parquet")
        with pytest.raises(InputError, match=msg):
            read_tokens(tmp_path / "bad.parquet", vocab=v)


def test_text_round_trip_and_errors():
    v = Vocab.build(3)
    ids = encode(TINY, v).tokens(0)
    assert np.array_equal(from_text(to_text(ids, v), v), ids)
    with pytest.raises(ValueError, match=r"position 1: token '\(5,5\)' is not in the vocabulary"):
        from_text("<ADJLIST_START> (5,5)", v)
    with pytest.raises(ValueError, match="position 2: id 999"):
        to_text([0, 1, 999], v)


def test_docs_examples_are_what_the_encoder_writes():
    """docs/tokens.md shows real output: its 2x2 example maze under each option."""
    from pathlib import Path

    doc = " ".join((Path(__file__).parent.parent / "docs" / "tokens.md").read_text().split())
    maze = make_batch(2, [[1, 1, 1, 0]], [1], [3])  # walls (0,1)|(1,1); origin (0,1), target (1,1)
    v = Vocab.build(2)
    full = {TokenizerOptions(), TokenizerOptions(coord="pair", edge_order="sorted")}
    for opts in [*full, TokenizerOptions(seed=1), TokenizerOptions(edge_order="sorted"),
                 TokenizerOptions(edges="walls", edge_order="sorted")]:
        text = to_text(encode(maze, v, opts).tokens(0), v)
        shown = text if opts in full else text[: text.index("_END>") + len("_END>")]  # up to the list's end
        assert shown in doc, opts
    table = doc.replace("`", "")
    assert f"| 0–10 | {' '.join(SPECIAL_TOKENS[:11])} " in table and f"| 11–13 | {' '.join(SPECIAL_TOKENS[11:])} |" in table
