"""Teacher-forced moves along the stored path: where the model must name the next cell, which of
those are forks, and what lies behind each option.

The model reads the true sequence (prompt + stored path). At the token of path cell k (k < len-1)
it predicts cell k+1: one **move position**. Its current cell is ``c = path[k]``, the walked
prefix ``path[0..k-1]``. Per move (docs/interp.md):

* ``legal``: open neighbours of c not on the walked prefix (the baseline walker's options,
  mazesearch.evaluation.baseline); chance for a blind walker = 1 / (number of legal cells).
* ``correct``: open neighbours one BFS step closer to the target (docs/metrics.md's step rule;
  on a tree exactly ``path[k+1]``).
* ``is_fork``: a decision point of ``metrics.decision_points`` (the origin with degree >= 2, an
  interior cell with degree >= 3); every other move is a corridor.
* ``dead_end``: the cells inside dead-end branches: remove c from the maze graph; a component
  that touches c but holds neither the target nor a walked cell is a dead-end branch (on a tree:
  the subtrees behind c's off-path, not-walked neighbours). Never holds a correct cell.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Iterator

import numpy as np
import torch

from mazesearch.data.maze import MazeBatch, neighbour_table
from mazesearch.data.solve import bfs_distances
from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.evaluation.metrics import decision_points
from mazesearch.interp.activations import build_index


@dataclasses.dataclass(frozen=True)
class Moves:
    """One row per move position (maze order, then path order). Shapes in the comments."""

    grid_n: int
    maze_row: np.ndarray  # int64 [P]: row in the mazes / tokens file
    step: np.ndarray  # int64 [P]: k; the current cell is path[k], the true next cell path[k+1]
    token_pos: np.ndarray  # int64 [P]: sequence position of path cell k's token
    current: np.ndarray  # int64 [P]
    next_cell: np.ndarray  # int64 [P]: path[k+1]
    previous: np.ndarray  # int64 [P]: path[k-1]; -1 at the origin
    is_fork: np.ndarray  # bool [P]
    degree: np.ndarray  # int64 [P]: open neighbours of the current cell
    legal: np.ndarray  # bool [P, n_cells]
    correct: np.ndarray  # bool [P, n_cells]
    dead_end: np.ndarray  # bool [P, n_cells]

    def __len__(self) -> int:
        return len(self.maze_row)

    @property
    def n_legal(self) -> np.ndarray:  # int64 [P]
        return self.legal.sum(axis=1)

    @property
    def wrong(self) -> np.ndarray:  # bool [P, n_cells]: legal options that are not correct
        return self.legal & ~self.correct

    def take(self, rows: np.ndarray) -> "Moves":
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Moves(**{k: v if k == "grid_n" else v[rows] for k, v in fields.items()})


def cell_tokens(vocab: Vocab, grid_n: int) -> np.ndarray:
    """Unary token id of every cell ``r*n + c`` of an n x n grid: ``int64 [n*n]``."""
    if grid_n > vocab.max_grid_n:
        raise ValueError(f"a {grid_n}x{grid_n} grid is larger than the vocabulary's max_grid_n={vocab.max_grid_n}")
    return vocab.unary_id[:grid_n, :grid_n].reshape(-1).astype(np.int64)


def open_neighbours(nbr: np.ndarray, via: np.ndarray, open_row: np.ndarray, cell: int) -> list[int]:
    """Cells joined to ``cell`` by an open edge (neighbour_table's N, E, S, W order)."""
    return [int(b) for b, e in zip(nbr[cell], via[cell]) if b >= 0 and open_row[e]]


def dead_end_cells(grid_n: int, open_row: np.ndarray, current: int, walked, target: int) -> np.ndarray:
    """Cells inside dead-end branches at ``current`` (module doc): ``bool [n*n]``.

    ``open_row``: uint8 [E] of one maze; ``walked``: the cells already emitted before ``current``.
    """
    nbr, via = neighbour_table(grid_n)
    out = np.zeros(grid_n * grid_n, dtype=bool)
    seen = {current}
    behind = set(int(c) for c in walked) | {int(target)}
    for start in open_neighbours(nbr, via, open_row, current):
        if start in seen:
            continue
        component, queue = [start], deque([start])
        seen.add(start)
        while queue:  # BFS in the maze without `current`
            for b in open_neighbours(nbr, via, open_row, queue.popleft()):
                if b not in seen:
                    seen.add(b)
                    component.append(b)
                    queue.append(b)
        if behind.isdisjoint(component):
            out[component] = True
    return out


def move_positions(mazes: MazeBatch, tokens: TokenBatch, vocab: Vocab) -> Moves:
    """Every move position of every maze in ``tokens`` (aligned row by row with ``mazes``).

    Unary coordinates only (with pair coordinates a cell is two tokens and the next cell is not
    one prediction); ValueError otherwise, or when the tokens' paths are not the mazes' paths.
    """
    if len(tokens) != len(mazes) or not np.array_equal(tokens.maze_id, mazes.maze_id):
        raise ValueError("the token sequences are not those of these mazes (maze_id differs)")
    n = mazes.grid_n
    index = build_index(tokens, vocab, n, positions=["path"])
    maze_row = index["maze_row"].to_numpy().astype(np.int64)
    pos = index["token_pos"].to_numpy().astype(np.int64)
    if len(pos) and vocab.coord_row[tokens.flat[tokens.offsets[maze_row] + pos]].min() < 0:
        raise ValueError("the tokens use pair coordinates; the logit lens and DLA need unary ones "
                         "(tokenizer.coord: unary)")
    step = index["path_step"].to_numpy().astype(np.int64) - 1
    path_len = np.diff(mazes.path_offsets)[maze_row]
    stored = mazes.path_flat[mazes.path_offsets[maze_row] + np.minimum(step, path_len - 1)]
    if np.any(step >= path_len) or not np.array_equal(index["current_cell"].to_numpy(), stored):
        raise ValueError("the path in the token sequences is not the mazes' stored path")
    keep = step < path_len - 1  # the target's token predicts <PATH_END>, not a move
    maze_row, pos, step = maze_row[keep], pos[keep], step[keep]

    start = mazes.path_offsets[maze_row]
    current = mazes.path_flat[start + step].astype(np.int64)
    next_cell = mazes.path_flat[start + step + 1].astype(np.int64)
    previous = np.where(step > 0, mazes.path_flat[start + np.maximum(step - 1, 0)], -1).astype(np.int64)
    fork_k, fork_off = decision_points(mazes)
    forks = {(m, int(k)) for m in range(len(mazes)) for k in fork_k[fork_off[m] : fork_off[m + 1]]}
    is_fork = np.array([(m, k) in forks for m, k in zip(maze_row.tolist(), step.tolist())], dtype=bool)

    dist = bfs_distances(n, mazes.open, mazes.target)  # int32 [B, n_cells]
    nbr, via = neighbour_table(n)
    P, n_cells = len(maze_row), n * n
    degree = np.zeros(P, dtype=np.int64)
    legal, correct, dead = (np.zeros((P, n_cells), dtype=bool) for _ in range(3))
    for p, (m, k, c) in enumerate(zip(maze_row.tolist(), step.tolist(), current.tolist())):
        walked = mazes.path(m)[:k]
        options = open_neighbours(nbr, via, mazes.open[m], c)
        degree[p] = len(options)
        for b in options:
            legal[p, b] = b not in walked
            correct[p, b] = dist[m, b] == dist[m, c] - 1
        dead[p] = dead_end_cells(n, mazes.open[m], c, walked, int(mazes.target[m]))
    return Moves(grid_n=n, maze_row=maze_row, step=step, token_pos=pos, current=current,
                 next_cell=next_cell, previous=previous, is_fork=is_fork, degree=degree,
                 legal=legal, correct=correct, dead_end=dead)


def batches(tokens: TokenBatch, moves: Moves, batch_size: int, pad_id: int,
            device: torch.device | str = "cpu") -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor,
                                                                  torch.Tensor]]:
    """Mazes in chunks of ``batch_size``: ``(rows, ids, bi, pi)`` per chunk, where ``rows``
    (int64 [R]) are the chunk's move rows, ``ids`` long ``[b, T]`` the right-padded sequences cut
    after the last move position (causal: later tokens never change earlier positions), and
    ``bi``, ``pi`` (long [R]) each row's sequence and position in ``ids``."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for first in range(0, len(tokens), batch_size):
        last = min(first + batch_size, len(tokens))
        rows = np.flatnonzero((moves.maze_row >= first) & (moves.maze_row < last))
        if not len(rows):
            continue
        length = int(moves.token_pos[rows].max()) + 1
        chunk = tokens.take(np.arange(first, last)).padded(pad_id, dtype=np.int64)[:, :length]
        yield (rows, torch.from_numpy(chunk).to(device),
               torch.from_numpy(moves.maze_row[rows] - first).to(device),
               torch.from_numpy(moves.token_pos[rows]).to(device))
