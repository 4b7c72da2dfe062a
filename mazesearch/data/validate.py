"""Validation of solved maze batches: every invariant a maze file promises, checked per maze.

:func:`validate` runs one numba kernel over the batch (blocks of ``_BLOCK`` mazes in parallel,
as in :mod:`mazesearch.data.solve`, whose BFS and path-statistics helpers it reuses) and raises
:class:`MazeValidationError` naming the first bad maze and the first check it fails. (The
kernel inlines solve.py's helpers; :mod:`mazesearch.data.jit` recompiles it when solve.py changes.)
"""

from __future__ import annotations

import numpy as np
from numba import prange

from mazesearch.data.jit import njit
from mazesearch.data.maze import MazeBatch, maze_ids
from mazesearch.data.solve import (
    _BLOCK, _bfs, _bfs_scratch, _check_open, _check_paths, _count_stats, _lattice, _open_masks,
)


class MazeValidationError(ValueError):
    """A batch breaks an invariant; ``index`` is the first bad maze, ``reason`` what failed."""

    def __init__(self, index: int, reason: str):
        super().__init__(f"maze {index}: {reason}")
        self.index = index
        self.reason = reason


# error codes of the validation kernel, in the order the checks run; "{d}" = the detail value
_ERRORS = {
    1: "spanning-tree maze has {d} open edges, a spanning tree of {n}x{n} has {t}",
    2: "spanning-tree maze is not connected (reaches {d} of {N} cells from the target)",
    3: "origin equals target",
    4: "path has {d} cells, it needs at least 2",
    5: "path starts at cell {d}, not at the origin",
    6: "path ends at cell {d}, not at the target",
    7: "path cell {d} is outside the grid",
    8: "path step {d} joins two cells that are not lattice neighbours",
    9: "path step {d} passes through a wall (closed edge)",
    10: "path visits cell {d} twice",
    11: "path has {d} moves but the shortest distance origin..target differs",
    12: "n_shortest_paths={d} is < 1",
    13: "n_shortest_paths={d} differs from the BFS count",
    14: "forks_on_path={d} differs from the recomputed value",
    15: "n_dead_ends={d} differs from the recomputed value",
}


@njit(inline="always")
def _check_maze(spanning_tree, N, o, t, path, n_paths, forks, dead_ends, mask, deg, nbr,
                dist, count, reached, seen):
    """(error code, detail) for one maze, given the BFS from its target (dist, count over
    ``reached`` cells); (0, 0) when every check passes."""
    if spanning_tree:
        n_open = 0
        for v in range(N):
            n_open += deg[v]
        n_open //= 2
        if n_open != N - 1:
            return 1, n_open
        if reached != N:  # n-1 edges and connected <=> acyclic spanning tree
            return 2, reached
    if o == t:
        return 3, 0
    L = path.shape[0]
    if L < 2:
        return 4, L
    if path[0] != o:
        return 5, path[0]
    if path[L - 1] != t:
        return 6, path[L - 1]
    for k in range(L):
        if path[k] < 0 or path[k] >= N:
            return 7, path[k]
    for k in range(1, L):
        u, v = path[k - 1], path[k]
        step = -1
        for d in range(4):
            if nbr[u, d] == v:
                step = d
        if step < 0:
            return 8, k
        if not (mask[u] >> step) & 1:
            return 9, k
    repeated = -1
    for k in range(L):
        if seen[path[k]] and repeated < 0:
            repeated = path[k]
        seen[path[k]] = True
    for k in range(L):
        seen[path[k]] = False
    if repeated >= 0:
        return 10, repeated
    if dist[o] != L - 1:
        return 11, L - 1
    if n_paths < 1:
        return 12, n_paths
    if n_paths != count[o]:
        return 13, n_paths
    n_forks, n_dead = _count_stats(path, deg)
    if forks != n_forks:
        return 14, forks
    if dead_ends != n_dead:
        return 15, dead_ends
    return 0, 0


@njit(parallel=True)
def _validate_kernel(open_, nbr, ends, spanning_tree, origin, target, path_flat, offsets,
                     n_paths, forks, dead_ends, code, detail):
    B = open_.shape[0]
    N = nbr.shape[0]
    for blk in prange((B + _BLOCK - 1) // _BLOCK):
        mask, deg, dist, count, queue = _bfs_scratch(N)
        seen = np.zeros(N, np.bool_)
        for i in range(blk * _BLOCK, min(B, (blk + 1) * _BLOCK)):
            _open_masks(i, open_, ends, mask, deg)
            # spanning trees need the whole component (connectivity); else stop at the origin
            tail = _bfs(target[i], -1 if spanning_tree else origin[i], mask, nbr, dist, count, queue)
            code[i], detail[i] = _check_maze(
                spanning_tree, N, origin[i], target[i], path_flat[offsets[i]:offsets[i + 1]],
                n_paths[i], forks[i], dead_ends[i], mask, deg, nbr, dist, count, tail, seen)
            for q in range(tail):
                dist[queue[q]] = -1


def validate(batch: MazeBatch, *, spanning_tree: bool) -> None:
    """Check every invariant of a solved batch; raise :class:`MazeValidationError` naming the
    first bad maze and what failed, or return None.

    Checks, per maze, in this order: with ``spanning_tree``, the maze has n²-1 open edges and is
    connected (hence acyclic); origin != target; the path starts at the origin, ends at the
    target, steps only between lattice neighbours through open edges, never repeats a cell, and
    its length equals the BFS distance; n_shortest_paths >= 1 and equals the BFS count;
    forks_on_path and n_dead_ends match :func:`mazesearch.data.solve.path_stats`; maze_id matches the content hash.
    Array shapes, value ranges and offsets are checked for the whole batch first.
    """
    n, B = batch.grid_n, len(batch)
    open_ = _check_open(n, batch.open)
    if open_.shape[0] != B:
        raise MazeValidationError(0, f"open has {open_.shape[0]} rows for {B} mazes")
    not_bit = np.flatnonzero((open_ > 1).any(axis=1))
    if len(not_bit):
        raise MazeValidationError(int(not_bit[0]), "open holds values other than 0 and 1")
    for name in ("origin", "target", "n_shortest_paths", "forks_on_path", "n_dead_ends", "maze_id"):
        if np.shape(getattr(batch, name)) != (B,):
            raise MazeValidationError(0, f"{name} has shape {np.shape(getattr(batch, name))}, expected ({B},)")
    for name in ("origin", "target"):
        cells = np.asarray(getattr(batch, name))
        outside = np.flatnonzero((cells < 0) | (cells >= n * n))
        if len(outside):
            i = int(outside[0])
            raise MazeValidationError(i, f"{name}={cells[i]} is not a cell of a {n}x{n} grid")
    origin = np.ascontiguousarray(batch.origin, dtype=np.int32)
    target = np.ascontiguousarray(batch.target, dtype=np.int32)
    try:
        path_flat, offsets = _check_paths(B, batch.path_flat, batch.path_offsets)
    except ValueError as exc:
        raise MazeValidationError(0, str(exc)) from None

    nbr, ends = _lattice(n)
    code = np.empty(B, np.int32)
    detail = np.empty(B, np.int64)
    _validate_kernel(open_, nbr, ends, bool(spanning_tree), origin, target, path_flat, offsets,
                     np.asarray(batch.n_shortest_paths, np.int64), np.asarray(batch.forks_on_path, np.int64),
                     np.asarray(batch.n_dead_ends, np.int64), code, detail)
    bad_id = maze_ids(n, open_, origin, target) != np.asarray(batch.maze_id, np.uint64)
    bad = np.flatnonzero((code != 0) | bad_id)
    if len(bad):
        i = int(bad[0])
        if code[i] == 0:
            raise MazeValidationError(i, "maze_id does not match the content hash of walls + origin + target")
        reason = _ERRORS[int(code[i])].format(d=int(detail[i]), n=n, N=n * n, t=n * n - 1)
        raise MazeValidationError(i, reason)
