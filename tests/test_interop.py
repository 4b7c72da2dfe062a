"""maze-dataset interop (mazesearch.data.interop): hand-made strings, and maze-dataset itself when installed."""

import re
from collections import deque

import numpy as np
import pytest

from mazesearch.data.decode import TokenDecodeError
from mazesearch.data.interop import (
    batch_to_aotp_ut, connection_list_from_open, open_from_connection_list, parse_aotp_ut, to_aotp_ut,
)
from mazesearch.data.maze import MazeBatch, edge_endpoints, n_edges
from mazesearch.data.tokens import SPECIAL_TOKENS, TokenizerOptions, Vocab, encode, to_text

pytestmark = pytest.mark.filterwarnings("ignore::Warning:maze_dataset.*")  # maze-dataset's deprecation chatter


def solved(n: int, open_: np.ndarray, origin: int, target: int) -> list[int]:
    """A BFS shortest path (our own, independent of both libraries)."""
    nbrs = {c: [] for c in range(n * n)}
    for (a, b), is_open in zip(edge_endpoints(n).tolist(), open_):
        if is_open:
            nbrs[a].append(b)
            nbrs[b].append(a)
    parent, queue = {origin: None}, deque([origin])
    while queue:
        a = queue.popleft()
        for b in nbrs[a]:
            if b not in parent:
                parent[b] = a
                queue.append(b)
    path = [target]  # KeyError below: the target is unreachable
    while path[-1] != origin:
        path.append(parent[path[-1]])
    return path[::-1]


def percolation_batch(n: int, B: int, seed: int) -> MazeBatch:
    """Mazes whose origin and target share a component, with BFS paths."""
    rng = np.random.default_rng(seed)
    rows, origin, target, paths = [], [], [], []
    while len(rows) < B:
        open_ = (rng.random(n_edges(n)) < 0.6).astype(np.uint8)
        o, t = (int(x) for x in rng.choice(n * n, size=2, replace=False))
        try:
            paths.append(solved(n, open_, o, t))
        except KeyError:  # target not reachable
            continue
        rows.append(open_), origin.append(o), target.append(t)
    lengths = [len(p) for p in paths]
    return MazeBatch(grid_n=n, generator="test", open=np.array(rows), origin=np.array(origin, np.int32),
                     target=np.array(target, np.int32), path_flat=np.concatenate(paths).astype(np.int32),
                     path_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                     n_shortest_paths=np.ones(B, np.int64), forks_on_path=np.zeros(B, np.int16),
                     n_dead_ends=np.zeros(B, np.int16))

# 3x3, written the way maze-dataset writes it (its docs' example layout, shuffled edges):
#   (0,0)-(0,1)-(0,2)   (1,0)-(1,1)  (2,0)-(2,1)-(2,2)  and  (0,0)|(1,0)  (1,1)|(2,1)  (0,2)|(1,2)
HAND = ("<ADJLIST_START> (0,1) <--> (0,0) ; (1,0) <--> (1,1) ; (2,1) <--> (2,2) ; (0,0) <--> (1,0) ; "
        "(2,1) <--> (1,1) ; (0,2) <--> (0,1) ; (2,0) <--> (2,1) ; (1,2) <--> (0,2) ; <ADJLIST_END> "
        "<ORIGIN_START> (2,0) <ORIGIN_END> <TARGET_START> (1,2) <TARGET_END> "
        "<PATH_START> (2,0) (2,1) (1,1) (1,0) (0,0) (0,1) (0,2) (1,2) <PATH_END>")


def _open_of(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    ends = [tuple(e) for e in edge_endpoints(n).tolist()]
    out = np.zeros(n_edges(n), np.uint8)
    for a, b in pairs:
        out[ends.index((min(a, b), max(a, b)))] = 1
    return out


def test_parse_hand_made_string():
    m = parse_aotp_ut(HAND)
    assert m.grid_n == 3 and (m.origin, m.target) == (6, 5)
    assert m.path == [6, 7, 4, 3, 0, 1, 2, 5]
    assert np.array_equal(m.open, _open_of(3, [(0, 1), (1, 2), (3, 4), (6, 7), (7, 8), (0, 3), (4, 7), (2, 5)]))
    # a token list, left padding (maze-dataset pads on the left) and trailing padding all read the same
    padded = ["<PADDING>"] * 3 + HAND.split() + ["<PADDING>"]
    again = parse_aotp_ut(padded)
    assert np.array_equal(again.open, m.open) and again.path == m.path
    # grid_n given: a larger grid whose extra cells are isolated
    big = parse_aotp_ut(HAND, grid_n=5)
    assert big.grid_n == 5 and big.path == [10, 11, 6, 5, 0, 1, 2, 7]
    assert big.open.sum() == 8


@pytest.mark.parametrize("text, message", [
    (HAND.replace("(0,0) <--> (1,0)", "(0, ,0) <--> (1,0)"), "token 13: '(0,' is not an AOTP_UT token"),
    (HAND.replace("<ADJLIST_START>", "<WALLS_START>"), "token 0: '<WALLS_START>' is not an AOTP_UT token"),
    (HAND.replace("; (1,0) <--> (1,1)", "; <PADDING> (1,0) <--> (1,1)"), "token 5: '<PADDING>' is not an AOTP_UT token"),
    (HAND.replace("(2,1) <--> (2,2)", "(2,1) <--> (2, 2)"), "token 11: '(2,' is not an AOTP_UT token"),
    (HAND.replace("(1,0) <--> (1,1)", "(1,0) <--> (2,1)"), "token 5: cells (1, 0) and (2, 1) are not lattice neighbours"),
    (HAND.replace(" <PATH_END>", ""), "token 49: expected a coordinate, got end of sequence"),
])
def test_parse_errors_are_clear(text, message):
    with pytest.raises(TokenDecodeError, match=re.escape(message)):
        parse_aotp_ut(text)


def test_parse_rejects_other_bad_input():
    with pytest.raises(ValueError, match="holds no coordinate"):
        parse_aotp_ut("<ADJLIST_START> <ADJLIST_END>")
    with pytest.raises(ValueError, match="does not fit grid_n=2"):
        parse_aotp_ut(HAND, grid_n=2)
    with pytest.raises(TokenDecodeError, match=re.escape("token 3: '<PADDING>' is not an AOTP_UT token")):
        parse_aotp_ut(["<PADDING>", "<PADDING>"] + HAND.split()[:1] + ["<PADDING>"] + HAND.split()[1:])


def test_write_hand_made_string():
    m = parse_aotp_ut(HAND)
    sorted_text = to_aotp_ut(3, m.open, m.origin, m.target, m.path)
    assert sorted_text.startswith("<ADJLIST_START> (0,0) <--> (0,1) ; (0,1) <--> (0,2) ; (1,0) <--> (1,1) ; "
                                  "(2,0) <--> (2,1) ; (2,1) <--> (2,2) ; (0,0) <--> (1,0) ; (0,2) <--> (1,2) ; "
                                  "(1,1) <--> (2,1) ; <ADJLIST_END>")
    assert sorted_text.endswith(HAND[HAND.index("<ADJLIST_END>"):])
    shuffled = to_aotp_ut(3, m.open, m.origin, m.target, m.path, edge_order="shuffled", seed=4)
    assert shuffled != sorted_text
    again = parse_aotp_ut(shuffled)
    assert np.array_equal(again.open, m.open) and again.path == m.path


def test_batch_strings_are_the_default_token_text():
    batch = percolation_batch(5, 20, 21)
    texts = batch_to_aotp_ut(batch, seed=3)
    v = Vocab.build(8)  # a larger vocabulary gives the same text
    tb = encode(batch, v, TokenizerOptions(seed=3))
    assert texts == [to_text(tb.tokens(i), v) for i in range(len(batch))]
    for i, text in enumerate(texts):
        m = parse_aotp_ut(text, grid_n=5)
        assert np.array_equal(m.open, batch.open[i])
        assert (m.origin, m.target, m.path) == (batch.origin[i], batch.target[i], batch.path(i).tolist())


def test_connection_list_conversion():
    # 2x2: right (0,0)-(0,1) open, down (0,1)-(1,1) open
    conn = np.zeros((2, 2, 2), bool)
    conn[1, 0, 0] = True
    conn[0, 0, 1] = True
    assert open_from_connection_list(conn).tolist() == [1, 0, 0, 1]
    assert np.array_equal(connection_list_from_open(2, [1, 0, 0, 1]), conn)
    rng = np.random.default_rng(5)
    for n in (2, 3, 6):
        open_ = (rng.random(n_edges(n)) < 0.5).astype(np.uint8)
        assert np.array_equal(open_from_connection_list(connection_list_from_open(n, open_)), open_)
    off_grid = np.zeros((2, 3, 3), bool)
    off_grid[1, 0, 2] = True  # "right" of the last column
    with pytest.raises(ValueError, match="off the grid"):
        open_from_connection_list(off_grid)
    with pytest.raises(ValueError, match=re.escape("shape [2, n, n]")):
        open_from_connection_list(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=re.escape("shape [12]")):
        connection_list_from_open(3, np.zeros(11))


# ---------------------------------------------------------------------------- against maze-dataset


@pytest.fixture(scope="module")
def md():
    """maze-dataset's pieces (optional dependency: pip install -e '.[bench]')."""
    pytest.importorskip("maze_dataset", reason="maze-dataset not installed or not importable", exc_type=ImportError)
    from maze_dataset import LatticeMaze, LatticeMazeGenerators, SolvedMaze
    from maze_dataset.tokenization import MazeTokenizer, TokenizationMode

    def tokenizer(n: int):
        return MazeTokenizer(tokenization_mode=TokenizationMode.AOTP_UT_uniform, max_grid_size=n)

    return LatticeMaze, LatticeMazeGenerators, SolvedMaze, tokenizer


def spanning_tree(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random-DFS spanning tree: every cell has an edge, so maze-dataset infers grid n."""
    ends = edge_endpoints(n)
    open_ = np.zeros(len(ends), np.uint8)
    seen, stack = {0}, [0]
    while stack:
        cell = stack[-1]
        options = [(e, int(b if a == cell else a)) for e, (a, b) in enumerate(ends.tolist())
                   if cell in (a, b) and int(b if a == cell else a) not in seen]
        if not options:
            stack.pop()
            continue
        e, nxt = options[rng.integers(len(options))]
        open_[e] = 1
        seen.add(nxt)
        stack.append(nxt)
    return open_


def test_vocabulary_agrees_with_maze_dataset(md):
    *_, tokenizer = md
    tok = tokenizer(6)
    ours = Vocab.build(6)
    assert tuple(tok.token_arr[:11]) == SPECIAL_TOKENS[:11]  # same special tokens, same order
    theirs_coords = {t for t in tok.token_arr if re.fullmatch(r"\(\d+,\d+\)", t)}
    assert theirs_coords == {t for t in ours.id_to_token if re.fullmatch(r"\(\d+,\d+\)", t)}


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_read_maze_dataset_strings(md, n):
    """maze-dataset's own DFS mazes and solutions, tokenized by maze-dataset, read by us."""
    _, generators, SolvedMaze, tokenizer = md
    for _ in range(3):
        maze = generators.gen_dfs(np.array([n, n]))  # maze-dataset draws from its global RNG
        start, end = (0, n - 1), (n - 1, 0)  # cells n-1 and (n-1)*n
        solution = maze.find_shortest_path(start, end)
        text = " ".join(SolvedMaze.from_lattice_maze(maze, solution).as_tokens(tokenizer(n)))
        ours = parse_aotp_ut(text)
        assert ours.grid_n == n, text
        assert np.array_equal(ours.open, open_from_connection_list(maze.connection_list)), text
        assert (ours.origin, ours.target) == (n - 1, (n - 1) * n), text
        assert ours.path == [r * n + c for r, c in solution.tolist()], text
        # and our string for the same maze reads back in maze-dataset to the same maze
        back = SolvedMaze.from_tokens(to_aotp_ut(n, ours.open, ours.origin, ours.target, ours.path,
                                                 edge_order="shuffled").split(), tokenizer(n))
        assert np.array_equal(back.connection_list, maze.connection_list)
        assert np.array_equal(back.solution, solution)


def test_maze_dataset_reads_our_strings(md):
    """Our mazes, tokenized by us, parsed by maze-dataset; and maze-dataset's tokens of them read by us."""
    LatticeMaze, _, SolvedMaze, tokenizer = md
    rng = np.random.default_rng(22)
    for n in (2, 3, 5, 7):
        open_ = spanning_tree(n, rng)
        origin, target = (int(x) for x in rng.choice(n * n, size=2, replace=False))
        path = solved(n, open_, origin, target)
        for edge_order in ("sorted", "shuffled"):
            text = to_aotp_ut(n, open_, origin, target, path, edge_order=edge_order, seed=9)
            theirs = SolvedMaze.from_tokens(text.split(), tokenizer(n))
            assert np.array_equal(theirs.connection_list, connection_list_from_open(n, open_))
            assert [r * n + c for r, c in theirs.solution.tolist()] == path
            assert tuple(theirs.start_pos.tolist()) == divmod(origin, n)
            assert tuple(theirs.end_pos.tolist()) == divmod(target, n)
        # maze-dataset's own tokens of our maze parse back to it
        lattice = LatticeMaze(connection_list=connection_list_from_open(n, open_))
        theirs = SolvedMaze.from_lattice_maze(lattice, np.array([divmod(c, n) for c in path]))
        parsed = parse_aotp_ut(theirs.as_tokens(tokenizer(n)))
        assert np.array_equal(parsed.open, open_) and parsed.path == path
