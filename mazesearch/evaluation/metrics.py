"""Per-maze behavioural metrics of a predicted path (definitions: docs/metrics.md).

A prediction is a ragged batch of cell walks (``Walks``): the cells decoded from the tokens
after ``<PATH_START>``, with -1 for every token that names no cell of the grid, plus whether
``<PATH_END>`` was emitted. One numba kernel scores all mazes at once against the maze's open
edges and its BFS distance-to-target map, so every definition holds for cyclic mazes too: a
step is "correct" when it moves through an open connection to a cell one step closer to the
target (in a tree that is exactly the next cell of the unique shortest path).

Teacher-forced fork metrics score a predicted next cell at every decision point of the stored
path (``decision_points``): a path cell other than the target with more than one onward option
(the origin with degree >= 2, an interior cell with degree >= 3).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mazesearch.data.jit import njit
from mazesearch.data.maze import MazeBatch, neighbour_table
from mazesearch.data.solve import bfs_distances

# Column order of the per-maze metric table (predictions parquet, aggregates, docs).
BOOL_METRICS = ("exact_path", "valid_path", "starts_at_origin", "target_reached", "correct_end", "ended")
COUNT_METRICS = (
    "n_pred_cells", "optimal_moves", "n_valid_steps", "n_walled_jumps", "n_nonadjacent_jumps",
    "n_invalid_steps", "n_backtracks", "n_revisits", "correct_streak", "n_forks", "n_invalid",
)
FRACTION_METRICS = (  # NaN where undefined (see docs/metrics.md)
    "frac_valid_steps", "node_overlap", "correct_streak_frac", "length_ratio",
    "invalid_token_rate", "first_fork_correct", "frac_forks_correct",
)
METRICS = BOOL_METRICS + COUNT_METRICS + FRACTION_METRICS


@dataclasses.dataclass
class Walks:
    """A ragged batch of predicted cell walks, one per maze (``tokens.decode_path``'s output)."""

    cells_flat: np.ndarray  # int32 [sum cells]: cell index r*n+c, or -1 (an entry naming no cell)
    offsets: np.ndarray  # int64 [B+1]: walk i is cells_flat[offsets[i]:offsets[i+1]]
    ended: np.ndarray  # bool [B]: <PATH_END> was emitted right after the last entry

    def __len__(self) -> int:
        return int(self.offsets.shape[0] - 1)

    def walk(self, i: int) -> np.ndarray:
        return self.cells_flat[self.offsets[i] : self.offsets[i + 1]]

    @staticmethod
    def from_lists(cells: list, ended) -> "Walks":
        """From one list of cells per maze and one ended flag per maze."""
        lengths = np.array([len(c) for c in cells], dtype=np.int64)
        offsets = np.zeros(len(cells) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = np.concatenate([np.asarray(c, dtype=np.int32) for c in cells]) if len(cells) else np.zeros(0, np.int32)
        return Walks(flat.astype(np.int32), offsets, np.asarray(ended, dtype=bool))


# ---------------------------------------------------------------------------- graph helpers


def distances_to_target(batch: MazeBatch) -> np.ndarray:
    """``int32 [B, n*n]``: open-edge BFS distance from every cell to the maze's target, -1 if cut off."""
    return bfs_distances(batch.grid_n, batch.open, batch.target)


@njit
def _decision_points(nbr, via, open_, path_flat, path_off):
    """Indices k (within each path) of the decision points; two passes: count, then fill."""
    B = open_.shape[0]
    counts = np.zeros(B, dtype=np.int64)
    is_fork = np.zeros(path_flat.shape[0], dtype=np.bool_)
    for i in range(B):
        start, end = path_off[i], path_off[i + 1]
        for j in range(start, end - 1):  # the target (last cell) is never a decision point
            a = path_flat[j]
            degree = 0
            for k in range(4):
                if nbr[a, k] >= 0 and open_[i, via[a, k]]:
                    degree += 1
            if (j == start and degree >= 2) or (j > start and degree >= 3):
                is_fork[j] = True
                counts[i] += 1
    offsets = np.zeros(B + 1, dtype=np.int64)
    for i in range(B):
        offsets[i + 1] = offsets[i] + counts[i]
    index = np.empty(offsets[B], dtype=np.int32)
    w = 0
    for i in range(B):
        for j in range(path_off[i], path_off[i + 1]):
            if is_fork[j]:
                index[w] = j - path_off[i]
                w += 1
    return index, offsets


def decision_points(batch: MazeBatch) -> tuple[np.ndarray, np.ndarray]:
    """Decision points of every stored path, ragged: ``(k int32 [F], offsets int64 [B+1])``.

    ``k`` is the position within the maze's path (0 = origin); the decision cell is
    ``batch.path(i)[k]`` and the true next cell ``batch.path(i)[k + 1]``.
    """
    nbr, via = neighbour_table(batch.grid_n)
    return _decision_points(nbr, via, np.ascontiguousarray(batch.open, dtype=np.uint8),
                            np.ascontiguousarray(batch.path_flat, dtype=np.int32),
                            np.ascontiguousarray(batch.path_offsets, dtype=np.int64))


@njit
def _open_step(nbr, via, open_row, a, b):
    """1 = a->b crosses an open edge, 2 = lattice-adjacent but walled, 0 = not adjacent."""
    for k in range(4):
        if nbr[a, k] == b:
            return 1 if open_row[via[a, k]] else 2
    return 0


# ---------------------------------------------------------------------------- the kernel


@njit
def _score(nbr, via, open_, origin, target, dist, path_flat, path_off, pred_flat, pred_off, ended,
           fork_k, fork_off, fork_pred, counts, flags, fracs):
    """Fill counts [B, 10], flags [B, 5] and fracs [B, 6] (column order: see compute_metrics)."""
    B = open_.shape[0]
    n_cells = nbr.shape[0]
    seen = np.zeros(n_cells, dtype=np.int64)  # stamp i+1 = visited by maze i's prediction
    on_true = np.zeros(n_cells, dtype=np.int64)  # stamp i+1 = on maze i's stored path
    nan = np.nan
    for i in range(B):
        stamp = i + 1
        d = dist[i]
        o, t = origin[i], target[i]
        opt = d[o]
        p0, m = pred_off[i], pred_off[i + 1] - pred_off[i]

        # -- steps: valid / walled / non-adjacent / touching an invalid token
        n_valid = n_walled = n_nonadj = n_invalid_steps = 0
        for s in range(1, m):
            a, b = pred_flat[p0 + s - 1], pred_flat[p0 + s]
            if a < 0 or b < 0:
                n_invalid_steps += 1
                continue
            kind = _open_step(nbr, via, open_[i], a, b)
            if kind == 1:
                n_valid += 1
            elif kind == 2:
                n_walled += 1
            else:
                n_nonadj += 1
        has_invalid_cell = False
        for s in range(m):
            if pred_flat[p0 + s] < 0:
                has_invalid_cell = True
        valid_path = m >= 1 and not has_invalid_cell and n_valid == m - 1
        starts = m >= 1 and pred_flat[p0] == o

        # -- target reached through valid moves from the origin; ended right there?
        reached = False
        first_t = -1
        if starts:
            for s in range(m):
                if s > 0:
                    a, b = pred_flat[p0 + s - 1], pred_flat[p0 + s]
                    if a < 0 or b < 0 or _open_step(nbr, via, open_[i], a, b) != 1:
                        break
                if pred_flat[p0 + s] == t:
                    reached = True
                    first_t = s
                    break
        correct_end = reached and first_t == m - 1 and ended[i]
        exact = valid_path and starts and ended[i] and pred_flat[p0 + m - 1] == t and m - 1 == opt

        # -- backtracks (A B A) and revisits (any return to a visited cell; includes backtracks)
        n_back = n_revisit = 0
        for s in range(m):
            c = pred_flat[p0 + s]
            if c < 0:
                continue
            if s >= 2 and pred_flat[p0 + s - 1] >= 0 and c == pred_flat[p0 + s - 2] and c != pred_flat[p0 + s - 1]:
                n_back += 1
            if seen[c] == stamp:
                n_revisit += 1
            seen[c] = stamp

        # -- Jaccard overlap of visited cells with the stored path
        n_true = path_off[i + 1] - path_off[i]
        for j in range(path_off[i], path_off[i + 1]):
            on_true[path_flat[j]] = stamp
        n_pred_distinct = n_both = 0
        for s in range(m):  # seen[] now marks the prediction's distinct cells; count each once
            c = pred_flat[p0 + s]
            if c >= 0 and seen[c] == stamp:
                seen[c] = -stamp
                n_pred_distinct += 1
                if on_true[c] == stamp:
                    n_both += 1
        overlap = n_both / (n_true + n_pred_distinct - n_both)

        # -- leading steps that each move one BFS step closer to the target
        streak = 0
        if starts:
            for s in range(1, m):
                a, b = pred_flat[p0 + s - 1], pred_flat[p0 + s]
                if a < 0 or b < 0 or _open_step(nbr, via, open_[i], a, b) != 1 or d[b] != d[a] - 1:
                    break
                streak += 1

        # -- teacher-forced forks: is the predicted next cell one step closer to the target?
        n_forks = fork_off[i + 1] - fork_off[i]
        n_fork_ok = 0
        first_ok = nan
        for f in range(fork_off[i], fork_off[i + 1]):
            a = path_flat[path_off[i] + fork_k[f]]
            b = fork_pred[f]
            ok = b >= 0 and _open_step(nbr, via, open_[i], a, b) == 1 and d[b] == d[a] - 1
            if ok:
                n_fork_ok += 1
            if f == fork_off[i]:
                first_ok = 1.0 if ok else 0.0

        counts[i, 0] = m
        counts[i, 1] = opt
        counts[i, 2] = n_valid
        counts[i, 3] = n_walled
        counts[i, 4] = n_nonadj
        counts[i, 5] = n_invalid_steps
        counts[i, 6] = n_back
        counts[i, 7] = n_revisit
        counts[i, 8] = streak
        counts[i, 9] = n_forks
        flags[i, 0] = exact
        flags[i, 1] = valid_path
        flags[i, 2] = starts
        flags[i, 3] = reached
        flags[i, 4] = correct_end
        fracs[i, 0] = n_valid / (m - 1) if m >= 2 else nan
        fracs[i, 1] = overlap
        fracs[i, 2] = streak / opt if opt > 0 else nan
        fracs[i, 3] = (m - 1) / opt if m >= 1 and opt > 0 else nan
        fracs[i, 4] = first_ok
        fracs[i, 5] = n_fork_ok / n_forks if n_forks > 0 else nan


def compute_metrics(batch: MazeBatch, walks: Walks, fork_pred: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every per-maze metric of ``walks`` on ``batch``: ``{name: array [B]}`` in ``METRICS`` order.

    ``fork_pred`` (int32 [F], -1 = no cell) is the predicted next cell at each decision point,
    aligned with :func:`decision_points`; without it the fork metrics are NaN.
    """
    B, n = len(batch), batch.grid_n
    if len(walks) != B:
        raise ValueError(f"walks has {len(walks)} mazes, the batch has {B}")
    cells = np.ascontiguousarray(walks.cells_flat, dtype=np.int32)
    offsets = np.ascontiguousarray(walks.offsets, dtype=np.int64)
    if offsets[0] != 0 or offsets[-1] != cells.shape[0] or np.any(np.diff(offsets) < 0):
        raise ValueError("walks.offsets must rise from 0 to len(cells_flat)")
    if cells.size and (cells.min() < -1 or cells.max() >= n * n):
        raise ValueError(f"walk cells must be -1 (no cell) or in [0, {n * n}) for grid_n={n}")
    if np.shape(walks.ended) != (B,):
        raise ValueError(f"walks.ended must have shape [{B}], got {list(np.shape(walks.ended))}")
    fork_k, fork_off = decision_points(batch)
    if fork_pred is None:
        fork_pred_arr = np.full(fork_k.shape[0], -1, dtype=np.int32)
    else:
        fork_pred_arr = np.ascontiguousarray(fork_pred, dtype=np.int32)
        if fork_pred_arr.shape != fork_k.shape:
            raise ValueError(f"fork_pred must have one cell per decision point ({fork_k.shape[0]}), "
                             f"got shape {list(fork_pred_arr.shape)}")
        if fork_pred_arr.size and (fork_pred_arr.min() < -1 or fork_pred_arr.max() >= n * n):
            raise ValueError(f"fork_pred cells must be -1 or in [0, {n * n})")

    nbr, via = neighbour_table(n)
    dist = distances_to_target(batch)
    counts = np.zeros((B, 10), dtype=np.int32)
    flags = np.zeros((B, 5), dtype=np.bool_)
    fracs = np.zeros((B, 6), dtype=np.float64)
    _score(nbr, via, np.ascontiguousarray(batch.open, dtype=np.uint8),
           np.ascontiguousarray(batch.origin, dtype=np.int32), np.ascontiguousarray(batch.target, dtype=np.int32),
           dist, np.ascontiguousarray(batch.path_flat, dtype=np.int32),
           np.ascontiguousarray(batch.path_offsets, dtype=np.int64), cells, offsets,
           np.ascontiguousarray(walks.ended, dtype=np.bool_), fork_k, fork_off, fork_pred_arr,
           counts, flags, fracs)
    lengths = np.diff(offsets)
    row_of_entry = np.repeat(np.arange(B), lengths)
    n_invalid = np.bincount(row_of_entry, weights=cells < 0, minlength=B).astype(np.int32)
    invalid_rate = np.where(lengths > 0, n_invalid / np.maximum(lengths, 1), np.nan)
    if fork_pred is None:
        fracs[:, 4:6] = np.nan
    out = {
        "exact_path": flags[:, 0], "valid_path": flags[:, 1], "starts_at_origin": flags[:, 2],
        "target_reached": flags[:, 3], "correct_end": flags[:, 4],
        "ended": np.asarray(walks.ended, dtype=bool).copy(),
    }
    for j, name in enumerate(COUNT_METRICS[:10]):
        out[name] = counts[:, j].copy()
    out["n_invalid"] = n_invalid
    out["frac_valid_steps"] = fracs[:, 0].copy()
    out["node_overlap"] = fracs[:, 1].copy()
    out["correct_streak_frac"] = fracs[:, 2].copy()
    out["length_ratio"] = fracs[:, 3].copy()
    out["invalid_token_rate"] = invalid_rate.astype(np.float64)
    out["first_fork_correct"] = fracs[:, 4].copy()
    out["frac_forks_correct"] = fracs[:, 5].copy()
    assert tuple(out) == METRICS
    return out


def aggregate(metrics: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Mean of every metric over the mazes where it is defined (NaN skipped); None if nowhere."""
    out: dict[str, float | None] = {}
    for name, values in metrics.items():
        values = np.asarray(values, dtype=np.float64)
        defined = values[~np.isnan(values)]
        out[name] = float(defined.mean()) if defined.size else None
    return out
