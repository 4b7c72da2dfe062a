"""Endpoints, shortest paths, BFS distances and path statistics for batches of mazes.

Every function works on a whole batch at once (``open_``: ``uint8 [B, E]`` in the canonical
edge order of :mod:`mazesearch.data.maze`) with numba kernels that split the batch into blocks of
``_BLOCK`` mazes; each block owns its scratch arrays, so the kernels run in parallel without
allocating per maze. Randomness (endpoint choice) comes from a splitmix64 state seeded per maze
from ``seeds[i]``: the result for maze i depends only on its walls and its seed.

:mod:`mazesearch.data.validate` checks solved batches with the BFS helpers defined here.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from mazesearch.data.jit import njit
from mazesearch.data.maze import edge_endpoints, n_edges, neighbour_table
from mazesearch.data.rng import below, splitmix64

_BLOCK = 256  # mazes per parallel work item
_SATURATE = 2**62  # shortest-path counts stop growing here instead of overflowing int64
_PAD_CELLS = 2**22  # solve() handles at most this many maze cells per kernel call

# ---------------------------------------------------------------------------- numba helpers


@functools.lru_cache(maxsize=16)
def _lattice(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(nbr int32 [N, 4], ends int32 [E, 2])`` for the kernels, built once per grid size."""
    nbr, ends = neighbour_table(n)[0], edge_endpoints(n)
    nbr.flags.writeable = ends.flags.writeable = False
    return nbr, ends


@njit(inline="always")
def _open_masks(i, open_, ends, mask, deg):
    """Per cell of maze i: bit k of mask[v] set when direction k (N, E, S, W) is open;
    deg[v] = number of open edges. One pass over the edges, no neighbour lookups."""
    mask[:] = 0
    deg[:] = 0
    n_horizontal = open_.shape[1] // 2  # canonical order: horizontal edges first
    for e in range(open_.shape[1]):
        x = open_[i, e]
        a, b = ends[e, 0], ends[e, 1]
        if e < n_horizontal:  # b is east of a
            mask[a] |= x << 1
            mask[b] |= x << 3
        else:  # b is south of a
            mask[a] |= x << 2
            mask[b] |= x
        deg[a] += x
        deg[b] += x


@njit(inline="always")
def _bfs_scratch(N):
    """Per-block work arrays for :func:`_open_masks` + :func:`_bfs` on N cells: (mask, deg,
    dist, count, queue), with dist all -1 as _bfs expects."""
    return (np.empty(N, np.uint8), np.empty(N, np.int32), np.full(N, -1, np.int32),
            np.zeros(N, np.int64), np.empty(N, np.int32))


@njit(inline="always")
def _bfs(source, stop, mask, nbr, dist, count, queue):
    """BFS from ``source`` over the open edges given by ``mask``, counting shortest paths.

    Fills ``dist`` (moves from source) and ``count`` (number of shortest paths, saturating) for
    the visited cells, which are ``queue[:tail]`` in BFS order; returns ``tail``. Stops once
    ``stop`` is dequeued (its count is final then: every cell one step closer is done), or
    explores the whole component when ``stop`` < 0. Callers reset ``dist[queue[:tail]] = -1``.
    """
    dist[source] = 0
    count[source] = 1
    queue[0] = source
    head, tail = 0, 1
    while head < tail:
        u = queue[head]
        head += 1
        if u == stop:
            break
        du = dist[u]
        m = mask[u]
        for k in range(4):
            if not (m >> k) & 1:
                continue
            w = nbr[u, k]
            if dist[w] < 0:
                dist[w] = du + 1
                count[w] = count[u]
                queue[tail] = w
                tail += 1
            elif dist[w] == du + 1:
                if count[w] >= _SATURATE - count[u]:
                    count[w] = _SATURATE
                else:
                    count[w] += count[u]
    return tail


@njit(inline="always")
def _count_stats(path, deg):
    """(decision points on path, cells of degree 1): see :func:`path_stats`."""
    forks = 0
    for k in range(path.shape[0] - 1):  # the target is never a decision
        if deg[path[k]] >= (2 if k == 0 else 3):  # the origin has no cell it came from
            forks += 1
    dead = 0
    for v in range(deg.shape[0]):
        dead += deg[v] == 1
    return forks, dead


@njit(inline="always")
def _walk_down(origin, mask, nbr, dist_to_target, out, start):
    """Write the path origin..target into out[start:], stepping each time to the first
    neighbour (order N, E, S, W) one move closer to the target. Returns cells written."""
    v = origin
    out[start] = v
    m = 1
    while dist_to_target[v] > 0:
        for k in range(4):
            w = nbr[v, k]
            if (mask[v] >> k) & 1 and dist_to_target[w] == dist_to_target[v] - 1:
                v = w
                break
        out[start + m] = v
        m += 1
    return m


# ---------------------------------------------------------------------------- endpoints


@njit(parallel=True)
def _endpoints_kernel(open_, nbr, ends, row, col, seeds, origin_at_dead_end, target_at_dead_end,
                      min_manhattan, min_path_len, max_attempts, origin, target, ok):
    B = open_.shape[0]
    N = nbr.shape[0]
    for blk in prange((B + _BLOCK - 1) // _BLOCK):
        mask, deg, dist, count, queue = _bfs_scratch(N)
        cand = np.empty(N, np.int32)
        valid = np.empty(N, np.int32)
        for i in range(blk * _BLOCK, min(B, (blk + 1) * _BLOCK)):
            state = seeds[i]
            _open_masks(i, open_, ends, mask, deg)
            # a cell lies in a component of >= 2 cells exactly when it has an open edge
            n_cand = 0
            for v in range(N):
                if deg[v] >= 1 and (not origin_at_dead_end or deg[v] == 1):
                    cand[n_cand] = v
                    n_cand += 1
            origin[i], target[i], ok[i] = -1, -1, False
            for a in range(min(n_cand, max_attempts)):
                # draw origins without replacement (partial Fisher-Yates over the candidates)
                state, bits = splitmix64(state)
                j = a + below(bits, n_cand - a)
                cand[a], cand[j] = cand[j], cand[a]
                o = cand[a]
                tail = _bfs(o, -1, mask, nbr, dist, count, queue)
                n_valid = 0
                for q in range(1, tail):  # queue[0] is the origin itself
                    v = queue[q]
                    if (dist[v] >= min_path_len
                            and (min_manhattan == 0
                                 or abs(row[v] - row[o]) + abs(col[v] - col[o]) >= min_manhattan)
                            and (not target_at_dead_end or deg[v] == 1)):
                        valid[n_valid] = v
                        n_valid += 1
                if n_valid > 0:
                    state, bits = splitmix64(state)
                    origin[i], target[i], ok[i] = o, valid[below(bits, n_valid)], True
                for q in range(tail):
                    dist[queue[q]] = -1
                if ok[i]:
                    break


def _check_open(n: int, open_: np.ndarray) -> np.ndarray:
    if not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"grid size n must be an int >= 2, got {n!r}")
    open_ = np.asarray(open_)
    if open_.ndim != 2 or open_.shape[1] != n_edges(n):
        raise ValueError(f"open_ must have shape [B, {n_edges(n)}] for a {n}x{n} grid, got {open_.shape}")
    return np.ascontiguousarray(open_, dtype=np.uint8)


def choose_endpoints(
    n: int,
    open_: np.ndarray,  # uint8 [B, E]
    seeds: np.ndarray,  # uint64 [B]
    *,
    origin_at_dead_end: bool = False,
    target_at_dead_end: bool = False,
    min_manhattan: int = 0,
    min_path_len: int = 1,
    max_attempts: int = 32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick a random (origin, target) pair per maze: ``(int32 [B], int32 [B], bool [B])``.

    Origin and target differ and lie in the same connected component; the origin is drawn
    uniformly from the cells with an open edge (degree 1 cells if ``origin_at_dead_end``), the
    target uniformly from the cells of its component that satisfy the options: degree 1 if
    ``target_at_dead_end``, Manhattan distance >= ``min_manhattan``, and shortest-path length
    (moves) >= ``min_path_len``. If an origin admits no target, another origin is drawn, up to
    ``max_attempts`` distinct origins; ``ok[i]`` is False (endpoints -1) when none works. The
    search is exhaustive, so ok=False is exact, for mazes with <= max_attempts candidate origins.
    """
    open_ = _check_open(n, open_)
    seeds = np.asarray(seeds)
    if seeds.shape != (open_.shape[0],):
        raise ValueError(f"seeds must have shape [{open_.shape[0]}], got {seeds.shape}")
    if min_manhattan < 0 or min_path_len < 1 or max_attempts < 1:
        raise ValueError(
            f"need min_manhattan >= 0, min_path_len >= 1, max_attempts >= 1; got "
            f"{min_manhattan}, {min_path_len}, {max_attempts}"
        )
    nbr, ends = _lattice(n)
    B = open_.shape[0]
    origin = np.empty(B, np.int32)
    target = np.empty(B, np.int32)
    ok = np.empty(B, np.bool_)
    row, col = np.divmod(np.arange(n * n, dtype=np.int32), n)
    _endpoints_kernel(open_, nbr, ends, row, col, seeds.astype(np.uint64), bool(origin_at_dead_end),
                      bool(target_at_dead_end), int(min_manhattan), int(min_path_len),
                      int(max_attempts), origin, target, ok)
    return origin, target, ok


# ---------------------------------------------------------------------------- shortest paths


@njit(parallel=True)
def _solve_kernel(open_, nbr, ends, origin, target, pad, n_cells, n_paths):
    """BFS from each target (stopping at the origin), then walk down from the origin into
    ``pad[i]`` (int32 [B, N]); n_cells[i] = 0 when the target is unreachable."""
    B = open_.shape[0]
    N = nbr.shape[0]
    for blk in prange((B + _BLOCK - 1) // _BLOCK):
        mask, deg, dist, count, queue = _bfs_scratch(N)
        for i in range(blk * _BLOCK, min(B, (blk + 1) * _BLOCK)):
            _open_masks(i, open_, ends, mask, deg)
            o = origin[i]
            tail = _bfs(target[i], o, mask, nbr, dist, count, queue)
            if dist[o] >= 0:
                n_cells[i] = _walk_down(o, mask, nbr, dist, pad[i], 0)
                n_paths[i] = count[o]
            else:
                n_cells[i] = 0
                n_paths[i] = 0
            for q in range(tail):
                dist[queue[q]] = -1


@njit
def _compact(pad, n_cells, offsets, path_flat):
    for i in range(pad.shape[0]):
        path_flat[offsets[i]:offsets[i + 1]] = pad[i, :n_cells[i]]


def _check_cells(n: int, B: int, name: str, cells) -> np.ndarray:
    """One cell per maze: ``int32 [B]`` in [0, n*n), else ValueError naming ``name``."""
    cells = np.ascontiguousarray(cells, dtype=np.int32)
    if cells.shape != (B,):
        raise ValueError(f"{name} must have shape [{B}], got {cells.shape}")
    bad = np.flatnonzero((cells < 0) | (cells >= n * n))
    if len(bad):
        raise ValueError(f"maze {bad[0]}: {name}={cells[bad[0]]} is not a cell of a {n}x{n} grid")
    return cells


def solve(
    n: int,
    open_: np.ndarray,  # uint8 [B, E]
    origin: np.ndarray,  # int32 [B]
    target: np.ndarray,  # int32 [B]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One shortest path per maze and the number of distinct shortest paths.

    Returns ``(path_flat int32 [sum cells], path_offsets int64 [B+1], n_shortest_paths int64
    [B])``; maze i's path is ``path_flat[off[i]:off[i+1]]``, origin first, target last. The
    stored path is deterministic: from each cell it steps to the first neighbour in N, E, S, W
    order that is one move closer to the target. Counts saturate at 2**62. ValueError if some
    target is unreachable from its origin.
    """
    open_ = _check_open(n, open_)
    B = open_.shape[0]
    origin, target = _check_cells(n, B, "origin", origin), _check_cells(n, B, "target", target)
    nbr, ends = _lattice(n)
    n_cells = np.empty(B, np.int64)
    n_paths = np.empty(B, np.int64)
    flats = []
    rows = max(1, _PAD_CELLS // (n * n))  # bounds the padded path buffer on large grids
    for lo in range(0, B, rows):
        hi = min(B, lo + rows)
        pad = np.empty((hi - lo, n * n), np.int32)  # [rows, N]: path cells, then garbage
        _solve_kernel(open_[lo:hi], nbr, ends, origin[lo:hi], target[lo:hi], pad,
                      n_cells[lo:hi], n_paths[lo:hi])
        sub_offsets = np.zeros(hi - lo + 1, np.int64)
        np.cumsum(n_cells[lo:hi], out=sub_offsets[1:])
        flat = np.empty(sub_offsets[-1], np.int32)
        _compact(pad, n_cells[lo:hi], sub_offsets, flat)
        flats.append(flat)
    unreachable = np.flatnonzero(n_cells == 0)
    if len(unreachable):
        i = unreachable[0]
        raise ValueError(f"maze {i}: target {target[i]} is not reachable from origin {origin[i]} "
                         f"({len(unreachable)} such mazes)")
    offsets = np.zeros(B + 1, np.int64)
    np.cumsum(n_cells, out=offsets[1:])
    return np.concatenate(flats or [np.zeros(0, np.int32)]), offsets, n_paths


# ---------------------------------------------------------------------------- BFS distances


@njit(parallel=True)
def _distances_kernel(open_, nbr, ends, source, dist):
    """Fill row i of ``dist`` (int32 [B, N], all -1 on entry) with the BFS from source[i]."""
    B = open_.shape[0]
    N = nbr.shape[0]
    for blk in prange((B + _BLOCK - 1) // _BLOCK):
        mask, deg, _, count, queue = _bfs_scratch(N)
        for i in range(blk * _BLOCK, min(B, (blk + 1) * _BLOCK)):
            _open_masks(i, open_, ends, mask, deg)
            _bfs(source[i], -1, mask, nbr, dist[i], count, queue)


def bfs_distances(
    n: int,
    open_: np.ndarray,  # uint8 [B, E]
    source: np.ndarray,  # int32 [B]
) -> np.ndarray:
    """Moves from ``source[i]`` to every cell of maze i through open edges: ``int32 [B, n*n]``,
    -1 where a cell is not reachable."""
    open_ = _check_open(n, open_)
    B = open_.shape[0]
    source = _check_cells(n, B, "source", source)
    nbr, ends = _lattice(n)
    dist = np.full((B, n * n), -1, np.int32)
    _distances_kernel(open_, nbr, ends, source, dist)
    return dist


# ---------------------------------------------------------------------------- path statistics


@njit(parallel=True)
def _stats_kernel(open_, nbr, ends, path_flat, offsets, forks, dead_ends):
    B = open_.shape[0]
    N = nbr.shape[0]
    for blk in prange((B + _BLOCK - 1) // _BLOCK):
        mask = np.empty(N, np.uint8)
        deg = np.empty(N, np.int32)
        for i in range(blk * _BLOCK, min(B, (blk + 1) * _BLOCK)):
            _open_masks(i, open_, ends, mask, deg)
            forks[i], dead_ends[i] = _count_stats(path_flat[offsets[i]:offsets[i + 1]], deg)


def _check_paths(B: int, path_flat, path_offsets) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.ascontiguousarray(path_offsets, dtype=np.int64)
    path_flat = np.ascontiguousarray(path_flat, dtype=np.int32)
    if (offsets.shape != (B + 1,) or offsets[0] != 0 or offsets[-1] != len(path_flat)
            or np.any(offsets[1:] < offsets[:-1])):
        raise ValueError(f"path_offsets must be non-decreasing, [{B + 1}] entries from 0 to "
                         f"len(path_flat)={len(path_flat)}")
    return path_flat, offsets


def path_stats(
    n: int,
    open_: np.ndarray,  # uint8 [B, E]
    path_flat: np.ndarray,  # int32 [sum cells]
    path_offsets: np.ndarray,  # int64 [B+1]
) -> tuple[np.ndarray, np.ndarray]:
    """Cheap structural stats per maze: ``(forks_on_path int16 [B], n_dead_ends int16 [B])``.

    A *decision point* is a cell on the path, other than the target, where a walker following
    the path has more than one onward option: the origin if its degree is >= 2, an interior
    path cell if its degree is >= 3 (one of its open edges leads back where the walker came
    from). ``forks_on_path`` counts decision points; ``n_dead_ends`` counts cells of degree 1
    in the whole maze. Degree = number of open edges at a cell.
    """
    open_ = _check_open(n, open_)
    B = open_.shape[0]
    path_flat, offsets = _check_paths(B, path_flat, path_offsets)
    if len(path_flat) and (path_flat.min() < 0 or path_flat.max() >= n * n):
        raise ValueError(f"path_flat holds cells outside the {n}x{n} grid")
    nbr, ends = _lattice(n)
    forks = np.empty(B, np.int16)
    dead_ends = np.empty(B, np.int16)
    _stats_kernel(open_, nbr, ends, path_flat, offsets, forks, dead_ends)
    return forks, dead_ends
