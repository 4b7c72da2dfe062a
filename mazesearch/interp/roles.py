"""What each token position of a maze sequence is: which cell, which listed edge, which path step.

:func:`token_roles` follows the grammar of docs/tokens.md token by token, for every option
combination (unary or pair coordinates, adjacency list or walls, any edge order); the form is
read from the tokens themselves, so no tokenizer options are needed::

    <ADJLIST_START>                              adjlist_start   (walls: walls_start)
    (0,0) <--> (0,1) ;                           edge_from connector edge_to edge_sep   (edge 0)
    ...                                          (edge 1, 2, ...)
    <ADJLIST_END>                                adjlist_end     (walls: walls_end)
    <ORIGIN_START> (0,1) <ORIGIN_END>            origin_start origin origin_end
    <TARGET_START> (1,1) <TARGET_END>            target_start target target_end
    <PATH_START> (0,1) (0,0) ... <PATH_END>      path_start path path ... path_end
    <PADDING> ...                                padding

The prompt (everything up to ``<PATH_START>``) is parsed strictly: a token out of place raises
``ValueError`` naming its position. The path is read leniently, as a model may have written it:
a token that names no cell on the grid is a ``path`` entry with cell -1. A sequence cut short
(a prompt, a prefix) gives the roles of the tokens it has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mazesearch.data.maze import edge_index
from mazesearch.data.vocab import (
    ADJLIST_END, ADJLIST_START, CONNECTOR, ORIGIN_END, ORIGIN_START, PAD, PATH_END, PATH_START,
    SEPARATOR, TARGET_END, TARGET_START, WALL_CONNECTOR, WALLS_END, WALLS_START, Vocab,
)

# Every role, in sequence order ("after_end": a non-padding token after <PATH_END>).
ROLES = ("adjlist_start", "walls_start", "edge_from", "connector", "edge_to", "edge_sep",
         "adjlist_end", "walls_end", "origin_start", "origin", "origin_end", "target_start",
         "target", "target_end", "path_start", "path", "path_end", "padding", "after_end")
COLUMNS = ("position", "token", "role", "coord_part", "cell", "row", "col", "edge", "lattice_edge",
           "path_index")
_INT_COLUMNS = COLUMNS[4:]


class _End(Exception):
    """The sequence stopped before the grammar did (a prompt or a prefix): not an error."""


class _Parser:
    """A cursor filling one row per token; ``expect`` and ``coord`` advance it."""

    def __init__(self, ids: np.ndarray, vocab: Vocab, grid_n: int):
        self.ids, self.vocab, self.n, self.p = ids, vocab, grid_n, 0
        self.tokens = [vocab.id_to_token[i] for i in ids.tolist()]
        T = len(ids)
        self.role, self.part = [""] * T, [""] * T
        self.ints = {name: np.full(T, -1, dtype=np.int64) for name in _INT_COLUMNS}

    def peek(self) -> str:
        if self.p >= len(self.tokens):
            raise _End
        return self.tokens[self.p]

    def fail(self, wanted: str) -> ValueError:
        return ValueError(f"position {self.p}: expected {wanted}, got {self.tokens[self.p]!r}")

    def expect(self, token: str, role: str) -> None:
        if self.peek() != token:
            raise self.fail(token)
        self.role[self.p] = role
        self.p += 1

    def coord(self, role: str, strict: bool = True) -> int:
        """Read one coordinate (1 or 2 tokens) as ``role``; its cell, or -1 (lenient, off-grid)."""
        self.peek()
        v, i, start = self.vocab, int(self.ids[self.p]), self.p
        if v.coord_row[i] >= 0:
            r, c, parts = int(v.coord_row[i]), int(v.coord_col[i]), ("cell",)
        elif v.pair_row[i] >= 0 and self.p + 1 < len(self.ids) and v.pair_col[self.ids[self.p + 1]] >= 0:
            r, c, parts = int(v.pair_row[i]), int(v.pair_col[self.ids[self.p + 1]]), ("row", "col")
        elif v.pair_row[i] >= 0 and self.p + 1 == len(self.ids):  # cut inside a pair: half a cell
            r, c, parts = -1, -1, ("row",)
        elif strict:
            raise self.fail("a coordinate")
        else:  # a model's stray token in the path: an entry naming no cell
            r, c, parts = -1, -1, ("",)
        on_grid = 0 <= r < self.n and 0 <= c < self.n
        if strict and r >= 0 and not on_grid:
            raise ValueError(f"position {start}: {self.tokens[start]!r} is off the {self.n}x{self.n} grid")
        cell = r * self.n + c if on_grid else -1
        for k, part in enumerate(parts):
            self.role[start + k], self.part[start + k] = role, part
            if on_grid:
                self.ints["cell"][start + k], self.ints["row"][start + k], self.ints["col"][start + k] = cell, r, c
        self.p += len(parts)
        return cell

    def parse(self) -> None:
        first = self.peek()
        if first not in (ADJLIST_START, WALLS_START):
            raise self.fail(f"{ADJLIST_START} or {WALLS_START}")
        walls = first == WALLS_START
        end, connector = (WALLS_END, WALL_CONNECTOR) if walls else (ADJLIST_END, CONNECTOR)
        self.expect(first, "walls_start" if walls else "adjlist_start")
        k = 0
        while self.peek() != end:
            start = self.p
            a = self.coord("edge_from")
            self.expect(connector, "connector")
            b = self.coord("edge_to")
            self.expect(SEPARATOR, "edge_sep")
            self.ints["edge"][start : self.p] = k
            try:
                self.ints["lattice_edge"][start : self.p] = edge_index(self.n, a, b)
            except ValueError:
                raise ValueError(f"position {start}: edge {k} joins cells {a} and {b}, which are not "
                                 "lattice neighbours") from None
            k += 1
        self.expect(end, "walls_end" if walls else "adjlist_end")
        for opener, role, closer in ((ORIGIN_START, "origin", ORIGIN_END), (TARGET_START, "target", TARGET_END)):
            self.expect(opener, f"{role}_start")
            self.coord(role)
            self.expect(closer, f"{role}_end")
        self.expect(PATH_START, "path_start")
        step = 0
        while self.peek() not in (PATH_END, PAD):
            start = self.p
            self.coord("path", strict=False)
            self.ints["path_index"][start : self.p] = step
            step += 1
        if self.peek() == PATH_END:
            self.expect(PATH_END, "path_end")
        while True:  # padding (or whatever a model wrote past its end)
            self.role[self.p] = "padding" if self.peek() == PAD else "after_end"
            self.p += 1


def token_roles(ids, vocab: Vocab, grid_n: int) -> pd.DataFrame:
    """One row per token of ``ids`` (a maze sequence, any options; a prefix of one is fine).

    Columns: ``position``; ``token`` (its text); ``role`` (one of :data:`ROLES`); ``coord_part``
    (``cell`` for a unary coordinate, ``row`` / ``col`` for the ``(r,`` / ``,c)`` halves of a pair
    coordinate, empty otherwise); ``cell`` (r*grid_n + c), ``row``, ``col`` of a coordinate token
    (both halves of a pair carry the cell); ``edge`` (k for every token of the k-th listed edge,
    0-based, ``;`` included); ``lattice_edge`` (that edge's canonical index in maze.py's order,
    as in ``MazeBatch.open``); ``path_index`` (k on path entry k, 0 = the origin; docs/activations.md's
    ``path_step`` is k+1 at the same token). Integer columns are -1 where they do not apply.
    """
    ids = np.asarray(ids).ravel().astype(np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= len(vocab)):
        bad = int(np.flatnonzero((ids < 0) | (ids >= len(vocab)))[0])
        raise ValueError(f"position {bad}: id {ids[bad]} is outside the vocabulary (0..{len(vocab) - 1})")
    parser = _Parser(ids, vocab, int(grid_n))
    try:
        parser.parse()
    except _End:
        pass
    frame = pd.DataFrame({"position": np.arange(len(ids), dtype=np.int64), "token": parser.tokens,
                          "role": parser.role, "coord_part": parser.part, **parser.ints})
    return frame[list(COLUMNS)]


def cell_mass(weights: np.ndarray, roles: pd.DataFrame, n_cells: int,
              only: tuple[str, ...] | None = None) -> np.ndarray:
    """Sum ``weights`` (float [T'], one per position, T' <= len(roles)) over each cell's tokens:
    ``float64 [n_cells]``. Both halves of a pair coordinate count; ``only`` keeps those roles."""
    weights = np.asarray(weights, dtype=np.float64).ravel()
    head = roles.iloc[: len(weights)]
    keep = head["cell"].to_numpy() >= 0
    if only is not None:
        unknown = set(only) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")
        keep &= head["role"].isin(only).to_numpy()
    return np.bincount(head["cell"].to_numpy()[keep], weights=weights[keep], minlength=n_cells)
