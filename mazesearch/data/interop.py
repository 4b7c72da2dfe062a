"""maze-dataset interop: its AOTP_UT token strings and connection lists <-> our maze form.

maze-dataset (1.4.x) serialises a solved maze with ``MazeTokenizer(tokenization_mode=
TokenizationMode.AOTP_UT_uniform)`` (``AOTP_UT_rasterized`` gives the same strings) as a list of
token strings; joined with single spaces that is exactly our default token text::

    <ADJLIST_START> (1,2) <--> (1,1) ; ... ; <ADJLIST_END> <ORIGIN_START> (0,0) <ORIGIN_END>
    <TARGET_START> (2,2) <TARGET_END> <PATH_START> (0,0) (0,1) ... (2,2) <PATH_END>

Coordinates are ``(row,col)``. Its ``connection_list`` is ``bool [2, n, n]``: ``[0, r, c]`` is
the edge (r,c)-(r+1,c) (down), ``[1, r, c]`` the edge (r,c)-(r,c+1) (right).

This module never imports maze_dataset: it works on strings and arrays, so the pipeline does not
depend on it (tests/test_interop.py checks both directions against maze-dataset when installed).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Iterable, Literal

import numpy as np

from mazesearch.data.decode import TokenDecodeError, decode
from mazesearch.data.maze import MazeBatch, maze_ids, n_edges
from mazesearch.data.tokens import (
    MAX_VOCAB_GRID_N, PAD, SPECIAL_TOKENS, WALL_CONNECTOR, WALLS_END, WALLS_START,
    TokenizerOptions, Vocab, encode_arrays, from_text, to_text,
)

# maze-dataset's AOTP_UT special tokens: ours without the walls form.
AOTP_SPECIALS = frozenset(SPECIAL_TOKENS) - {WALLS_START, WALLS_END, WALL_CONNECTOR}
_COORD = re.compile(r"\((\d+),(\d+)\)")


@dataclasses.dataclass
class AotpMaze:
    """One solved maze read from an AOTP_UT string."""

    grid_n: int
    open: np.ndarray  # uint8 [E]: 1 = connection, canonical edge order
    origin: int  # cell index r*n+c
    target: int
    path: list[int]  # cells origin..target as written


@functools.lru_cache(maxsize=8)
def _vocab(n: int) -> Vocab:
    return Vocab.build(n)


def parse_aotp_ut(text: str | Iterable[str], grid_n: int | None = None) -> AotpMaze:
    """Read maze-dataset's AOTP_UT tokens (a space-joined string or its list of tokens).

    ``grid_n`` defaults to the largest coordinate + 1, as maze-dataset's own ``from_tokens``
    infers it; give it when the last rows or columns may be isolated. ``<PADDING>`` at either
    end is ignored. Raises ValueError (:class:`TokenDecodeError` with the token position for a
    malformed sequence).
    """
    tokens = text.split() if isinstance(text, str) else list(text)
    lead = 0
    while lead < len(tokens) and tokens[lead] == PAD:
        lead += 1
    tokens = tokens[lead:]
    while tokens and tokens[-1] == PAD:
        tokens.pop()
    largest = -1
    for pos, tok in enumerate(tokens):
        if not isinstance(tok, str):
            raise ValueError(f"token {pos + lead}: expected a string, got {type(tok).__name__}")
        if m := _COORD.fullmatch(tok):
            largest = max(largest, int(m[1]), int(m[2]))
        elif tok not in AOTP_SPECIALS or tok == PAD:
            raise TokenDecodeError(pos + lead, f"{tok!r} is not an AOTP_UT token")
    if largest < 0:
        raise ValueError("the token sequence holds no coordinate")
    n = largest + 1 if grid_n is None else int(grid_n)
    if largest >= n:
        raise ValueError(f"coordinate {largest} does not fit grid_n={n}")
    if n > MAX_VOCAB_GRID_N:
        raise ValueError(f"grid_n={n} exceeds the largest supported grid ({MAX_VOCAB_GRID_N})")
    vocab = _vocab(n)
    try:
        maze = decode(from_text(" ".join(tokens), vocab), vocab, n)
    except TokenDecodeError as exc:
        raise TokenDecodeError(exc.position + lead, exc.reason) from None
    return AotpMaze(grid_n=n, open=maze.open, origin=maze.origin, target=maze.target, path=maze.path)


def to_aotp_ut(grid_n: int, open_: np.ndarray, origin: int, target: int, path: Iterable[int], *,
               edge_order: Literal["sorted", "shuffled"] = "sorted", seed: int = 0) -> str:
    """One maze as maze-dataset's AOTP_UT string (``SolvedMaze.from_tokens(s.split(), ...)`` reads it).

    The shuffled order is the one :func:`mazesearch.data.tokens.encode` gives the same maze.
    """
    open_ = np.asarray(open_, dtype=np.uint8).reshape(1, -1)
    path = np.asarray(list(path), dtype=np.int32)
    origin_, target_ = np.array([origin], np.int32), np.array([target], np.int32)
    ids = maze_ids(grid_n, open_, origin_, target_)
    opts = TokenizerOptions(coord="unary", edges="adjlist", edge_order=edge_order, seed=seed)
    tb = encode_arrays(grid_n, open_, origin_, target_, path, np.array([0, len(path)]), ids, _vocab(grid_n), opts)
    return to_text(tb.tokens(0), _vocab(grid_n))


def batch_to_aotp_ut(batch: MazeBatch, *, edge_order: Literal["sorted", "shuffled"] = "shuffled",
                     seed: int = 0) -> list[str]:
    """Every maze of a batch as an AOTP_UT string: the default-option token text."""
    vocab = _vocab(batch.grid_n)
    opts = TokenizerOptions(coord="unary", edges="adjlist", edge_order=edge_order, seed=seed)
    tb = encode_arrays(batch.grid_n, batch.open, batch.origin, batch.target, batch.path_flat,
                       batch.path_offsets, batch.maze_id, vocab, opts)
    words = np.array(vocab.id_to_token, dtype=object)
    return [" ".join(words[tb.tokens(i)]) for i in range(len(tb))]


def open_from_connection_list(connection_list: np.ndarray) -> np.ndarray:
    """maze-dataset's ``bool [2, n, n]`` connection list -> our ``uint8 [E]`` open edges."""
    conn = np.asarray(connection_list, dtype=bool)
    if conn.ndim != 3 or conn.shape[0] != 2 or conn.shape[1] != conn.shape[2]:
        raise ValueError(f"connection_list must have shape [2, n, n], got {conn.shape}")
    if conn[0, -1, :].any() or conn[1, :, -1].any():
        raise ValueError("connection_list opens an edge off the grid (last row down / last column right)")
    down, right = conn[0, :-1, :], conn[1, :, :-1]
    return np.concatenate([right.ravel(), down.ravel()]).astype(np.uint8)  # horizontal first


def connection_list_from_open(grid_n: int, open_: np.ndarray) -> np.ndarray:
    """Our ``uint8 [E]`` open edges -> maze-dataset's ``bool [2, n, n]`` connection list."""
    n = int(grid_n)
    open_ = np.asarray(open_)
    if open_.shape != (n_edges(n),):
        raise ValueError(f"open must have shape [{n_edges(n)}] for grid_n={n}, got {open_.shape}")
    conn = np.zeros((2, n, n), dtype=bool)
    h = n * (n - 1)
    conn[1, :, :-1] = open_[:h].reshape(n, n - 1) != 0
    conn[0, :-1, :] = open_[h:].reshape(n - 1, n) != 0
    return conn
