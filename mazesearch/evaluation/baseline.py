"""The seed's baseline solver: a random walker that obeys the maze and never turns back.

It starts at the origin and, at every cell, moves to a uniformly random open neighbour it has
not visited yet (in a tree that is "never step back to the cell just left"; in a cyclic maze it
also never closes a loop). It stops at the target, or when no such neighbour is left (a dead
end). It never makes an invalid move, so on a tree its chance of walking the exact shortest path
is the product over the path's decision points of 1 / (number of onward options); the suite mean
of its exact-path rate is the suite's complexity measure (docs/metrics.md).

Randomness: every maze row gets its own splitmix64 stream seeded from (seed, row index, salt),
so results do not depend on batch composition beyond the row's position and no global RNG is
touched.
"""

from __future__ import annotations

import numpy as np

from mazesearch.data.jit import njit
from mazesearch.data.maze import MazeBatch, neighbour_table
from mazesearch.data.rng import rand_below, row_state
from mazesearch.evaluation.metrics import Walks, decision_points

WALK_SALT = 1
FORK_SALT = 2


@njit
def _walks(nbr, via, open_, origin, target, seed, max_cells):
    B = open_.shape[0]
    n_cells = nbr.shape[0]
    out = np.full((B, max_cells), -1, dtype=np.int32)
    lengths = np.zeros(B, dtype=np.int64)
    visited = np.zeros(n_cells, dtype=np.int64)  # stamp row+1 = visited in this row's walk
    options = np.empty(4, dtype=np.int32)
    for i in range(B):
        state = row_state(seed, i, WALK_SALT)
        cur = origin[i]
        out[i, 0] = cur
        visited[cur] = i + 1
        m = 1
        while cur != target[i] and m < max_cells:
            k_opts = 0
            for k in range(4):
                b = nbr[cur, k]
                if b >= 0 and open_[i, via[cur, k]] and visited[b] != i + 1:
                    options[k_opts] = b
                    k_opts += 1
            if k_opts == 0:
                break  # stuck in a dead end
            state, r = rand_below(state, k_opts)
            cur = options[r]
            visited[cur] = i + 1
            out[i, m] = cur
            m += 1
        lengths[i] = m
    return out, lengths


def baseline_walks(batch: MazeBatch, seed: int) -> Walks:
    """One random no-turning-back walk per maze (see module doc); always ends (``ended=True``)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    n = batch.grid_n
    nbr, via = neighbour_table(n)
    grid, lengths = _walks(nbr, via, np.ascontiguousarray(batch.open, dtype=np.uint8),
                           np.ascontiguousarray(batch.origin, dtype=np.int32),
                           np.ascontiguousarray(batch.target, dtype=np.int32), np.uint64(seed), n * n)
    offsets = np.zeros(len(batch) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    keep = np.arange(grid.shape[1])[None, :] < lengths[:, None]
    return Walks(cells_flat=grid[keep].astype(np.int32), offsets=offsets, ended=np.ones(len(batch), dtype=bool))


@njit
def _fork_choices(nbr, via, open_, path_flat, path_off, fork_k, fork_off, seed):
    out = np.empty(fork_k.shape[0], dtype=np.int32)
    options = np.empty(4, dtype=np.int32)
    for i in range(open_.shape[0]):
        state = row_state(seed, i, FORK_SALT)
        p0 = path_off[i]
        for f in range(fork_off[i], fork_off[i + 1]):
            k_path = fork_k[f]
            a = path_flat[p0 + k_path]
            k_opts = 0
            for k in range(4):
                b = nbr[a, k]
                if b < 0 or not open_[i, via[a, k]]:
                    continue
                on_prefix = False  # the walker's rule: never onto a cell already walked
                for j in range(k_path):
                    if path_flat[p0 + j] == b:
                        on_prefix = True
                if not on_prefix:
                    options[k_opts] = b
                    k_opts += 1
            if k_opts == 0:
                out[f] = -1
            else:
                state, r = rand_below(state, k_opts)
                out[f] = options[r]
    return out


def baseline_fork_choices(batch: MazeBatch, seed: int) -> np.ndarray:
    """The walker's teacher-forced choice at every decision point of the stored path.

    Having walked the stored path up to the decision cell, it picks uniformly among the open
    neighbours not on that walked prefix. ``int32 [F]``, aligned with ``metrics.decision_points``.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    nbr, via = neighbour_table(batch.grid_n)
    fork_k, fork_off = decision_points(batch)
    return _fork_choices(nbr, via, np.ascontiguousarray(batch.open, dtype=np.uint8),
                         np.ascontiguousarray(batch.path_flat, dtype=np.int32),
                         np.ascontiguousarray(batch.path_offsets, dtype=np.int64),
                         fork_k, fork_off, np.uint64(seed))
