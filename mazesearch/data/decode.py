"""Token sequences back into mazes: a strict parser and a lenient path reader.

:func:`decode` reads a whole sequence written by :func:`mazesearch.data.tokens.encode` (any option
combination; the coordinate and edge forms are recognised from the tokens) and raises
:class:`TokenDecodeError` naming the position of the first thing that is wrong.

:func:`decode_path` reads what a *model* wrote after ``<PATH_START>``: it never raises on bad
tokens, it counts them. Evaluation uses it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Literal

import numpy as np

from mazesearch.data.maze import edge_index, n_edges

if TYPE_CHECKING:
    from mazesearch.data.tokens import Vocab

# The same strings as mazesearch.data.tokens (kept here so this module imports nothing heavy).
_LIST_TOKENS = {"<ADJLIST_START>": ("<ADJLIST_END>", "<-->"), "<WALLS_START>": ("<WALLS_END>", "<-X->")}
_PAD, _PATH_END = "<PADDING>", "<PATH_END>"


class TokenDecodeError(ValueError):
    """A token sequence is not a well-formed maze; ``position`` is the offending token index."""

    def __init__(self, position: int, message: str):
        super().__init__(f"token {position}: {message}")
        self.position, self.reason = position, message


@dataclasses.dataclass
class DecodedMaze:
    open: np.ndarray  # uint8 [E]: 1 = connection, canonical edge order
    origin: int  # cell index r*n+c
    target: int
    path: list[int]  # cells after <PATH_START>, as written (not checked to be a walk)


class _Reader:
    """A cursor over token strings that knows how coordinates are written."""

    def __init__(self, tokens: list[str], vocab: "Vocab", grid_n: int):
        self.tokens, self.vocab, self.n, self.pos = tokens, vocab, grid_n, 0
        self.coord_mode: str | None = None  # "unary" or "pair", fixed by the first coordinate

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def fail(self, message: str, at: int | None = None) -> TokenDecodeError:
        return TokenDecodeError(self.pos if at is None else at, message)

    def expect(self, token: str) -> None:
        got = self.peek()
        if got != token:
            raise self.fail(f"expected {token}, got {'end of sequence' if got is None else repr(got)}")
        self.pos += 1

    def coord(self) -> int:
        start, tok = self.pos, self.peek()
        i = self.vocab.token_to_id.get(tok, -1) if tok is not None else -1
        if i >= 0 and self.vocab.coord_row[i] >= 0:
            mode, r, c = "unary", int(self.vocab.coord_row[i]), int(self.vocab.coord_col[i])
            self.pos += 1
        elif i >= 0 and self.vocab.pair_row[i] >= 0:
            self.pos += 1
            nxt = self.peek()
            j = self.vocab.token_to_id.get(nxt, -1) if nxt is not None else -1
            if j < 0 or self.vocab.pair_col[j] < 0:
                raise self.fail(f"expected a ',c)' token after {tok!r}, got {nxt!r}")
            mode, r, c = "pair", int(self.vocab.pair_row[i]), int(self.vocab.pair_col[j])
            self.pos += 1
        else:
            raise self.fail(f"expected a coordinate, got {'end of sequence' if tok is None else repr(tok)}")
        if self.coord_mode is None:
            self.coord_mode = mode
        elif mode != self.coord_mode:
            raise self.fail(f"{mode} coordinate in a sequence of {self.coord_mode} coordinates", start)
        if r >= self.n or c >= self.n:
            raise self.fail(f"coordinate ({r},{c}) is outside the {self.n}x{self.n} grid", start)
        return r * self.n + c


def decode(tokens, vocab: "Vocab", grid_n: int) -> DecodedMaze:
    """Parse one full sequence (trailing ``<PADDING>`` allowed) of a ``grid_n`` maze."""
    if grid_n > vocab.max_grid_n or grid_n < 1:
        raise ValueError(f"grid_n={grid_n} must lie in 1..max_grid_n={vocab.max_grid_n}")
    ids = np.asarray(tokens)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"tokens must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
    bad = np.flatnonzero((ids < 0) | (ids >= len(vocab)))
    if len(bad):
        raise TokenDecodeError(int(bad[0]), f"id {ids[bad[0]]} is outside the vocabulary (0..{len(vocab) - 1})")
    strings = [vocab.id_to_token[i] for i in ids.tolist()]
    while strings and strings[-1] == _PAD:
        strings.pop()
    rd = _Reader(strings, vocab, grid_n)

    first = rd.peek()
    if first not in _LIST_TOKENS:
        raise rd.fail(f"expected <ADJLIST_START> or <WALLS_START>, got {first!r}")
    list_end, connector = _LIST_TOKENS[first]
    rd.pos += 1
    listed = np.zeros(n_edges(grid_n), dtype=np.uint8)
    while rd.peek() != list_end:
        start = rd.pos
        a = rd.coord()
        rd.expect(connector)
        b = rd.coord()
        rd.expect(";")
        try:
            e = edge_index(grid_n, a, b)
        except ValueError:
            raise rd.fail(f"cells {divmod(a, grid_n)} and {divmod(b, grid_n)} are not lattice neighbours", start) from None
        if listed[e]:
            raise rd.fail(f"edge {divmod(a, grid_n)}-{divmod(b, grid_n)} is listed twice", start)
        listed[e] = 1
    rd.pos += 1
    open_ = listed if first == "<ADJLIST_START>" else 1 - listed

    rd.expect("<ORIGIN_START>")
    origin = rd.coord()
    rd.expect("<ORIGIN_END>")
    rd.expect("<TARGET_START>")
    target = rd.coord()
    rd.expect("<TARGET_END>")
    rd.expect("<PATH_START>")
    path = []
    while rd.peek() != _PATH_END:
        path.append(rd.coord())
    rd.pos += 1
    if rd.pos != len(strings):
        raise rd.fail(f"unexpected {strings[rd.pos]!r} after <PATH_END>")
    return DecodedMaze(open=open_, origin=origin, target=target, path=path)


def decode_path(tokens, vocab: "Vocab", grid_n: int,
                coord: Literal["unary", "pair"] = "unary") -> tuple[list[int], int, bool]:
    """Read a model's path: the tokens it produced after ``<PATH_START>``.

    Reading stops at the first ``<PATH_END>`` (``ended=True``) or ``<PADDING>`` (nothing was
    generated there; ``ended=False``); with neither, all tokens are read and ``ended=False``.
    Returns ``(cells, n_invalid, ended)``: one entry per coordinate read, -1 for each token
    that is not a coordinate (or an incomplete pair) and for coordinates off the grid.
    """
    if coord not in ("unary", "pair"):
        raise ValueError(f"coord must be 'unary' or 'pair', got {coord!r}")
    n = int(grid_n)
    ids = np.asarray(tokens, dtype=np.int64).ravel()
    stops = np.flatnonzero((ids == vocab.token_to_id[_PATH_END]) | (ids == vocab.token_to_id[_PAD]))
    ended = bool(len(stops)) and bool(ids[stops[0]] == vocab.token_to_id[_PATH_END])
    ids = ids[: stops[0]] if len(stops) else ids
    known = (ids >= 0) & (ids < len(vocab))
    safe = np.where(known, ids, 0)
    if coord == "unary":
        r, c = vocab.coord_row[safe], vocab.coord_col[safe]
        ok = known & (r >= 0) & (r < n) & (c < n)
        cells = np.where(ok, r * n + c, -1).tolist()
    else:
        rows = np.where(known, vocab.pair_row[safe], -1).tolist()
        cols = np.where(known, vocab.pair_col[safe], -1).tolist()
        cells, k = [], 0
        while k < len(rows):
            if rows[k] >= 0 and k + 1 < len(rows) and cols[k + 1] >= 0:  # a complete "(r," ",c)"
                r, c = rows[k], cols[k + 1]
                cells.append(r * n + c if r < n and c < n else -1)
                k += 2
            else:
                cells.append(-1)
                k += 1
    return cells, sum(1 for x in cells if x < 0), ended
