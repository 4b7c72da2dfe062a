"""Seeded maze-connectivity generators, compiled with numba.

``generate_open(kind, n, seeds, ...)`` returns the ``open`` edges (``uint8 [B, E]``, canonical
edge order of :mod:`mazesearch.data.maze`) of B mazes. Maze i depends on ``seeds[i]`` alone: each
maze runs its own splitmix64 stream inside the kernel, so the output does not depend on the
batch it is in, on the thread count or on any global RNG. One numba call builds the whole
batch, in parallel over chunks of mazes.

Kinds (``params.GENERATORS``):

* ``dfs`` -- randomized depth-first search (recursive backtracker) from a uniform random start
  cell: a spanning tree. Options: ``forkless`` (the carve never branches: a self-avoiding walk
  from the start; when it gets stuck it resumes once from the start's other side, as
  maze-dataset's ``do_forks=False`` does, so the carved cells form one simple path),
  ``max_cells`` / ``max_cells_frac`` (stop once that many cells are carved) and ``max_depth``
  (no carved cell lies more than ``max_depth`` moves from the start along the tree: the DFS
  backtracks instead of going deeper). Cells never reached keep all their edges closed.
* ``wilson`` -- uniform spanning tree by loop-erased random walks.
* ``kruskal`` -- randomized Kruskal: union-find over the edges in random order.
* ``recursive_division`` -- start fully open, split rectangles by walls with one gap each.
* ``percolation`` (p) -- every edge open independently with probability p.
* ``dfs_percolation`` (p) -- a dfs spanning tree plus every other edge opened with probability p.
* ``open_field`` -- every edge open; ``n_obstacles`` blocks of ``obstacle_size`` x
  ``obstacle_size`` cells (centred on uniform random cells, clipped to the grid, may overlap)
  have all their edges closed.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import prange

from mazesearch.data.jit import njit
from mazesearch.data.maze import edge_endpoints, n_edges, neighbour_table
from mazesearch.data.rng import GOLDEN, mix64, rand_below, rand_unit

KINDS = ("dfs", "wilson", "kruskal", "recursive_division", "percolation", "dfs_percolation",
         "open_field")
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}
_DFS, _WILSON, _KRUSKAL, _DIVISION, _PERCOLATION, _DFS_PERCOLATION, _OPEN_FIELD = range(7)
_CHUNK = 512  # mazes per parallel work item; scratch arrays are allocated once per chunk

# ---------------------------------------------------------------------------- seeds


@njit
def _seeds_kernel(seed, start, count):
    base = mix64(seed)
    out = np.empty(count, dtype=np.uint64)
    for i in range(count):
        out[i] = mix64(base + GOLDEN * (start + np.uint64(i) + np.uint64(1)))
    return out


def maze_seeds(seed: int, count: int, start: int = 0) -> np.ndarray:
    """Per-maze seeds ``uint64 [count]`` for mazes ``start .. start+count-1`` of a dataset seeded
    by ``seed``: the splitmix64 stream of ``seed``, so any slice can be made on its own."""
    seed, count, start = (_as_int(v, name) for v, name in
                          ((seed, "seed"), (count, "count"), (start, "start")))
    if seed < 0 or seed >= 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    return _seeds_kernel(np.uint64(seed), np.uint64(start), count)


# ---------------------------------------------------------------------------- one maze per kind
# Each writes maze i's edges into `row` (uint8 [E], zeroed beforehand) and returns the PRNG state.


@njit
def _dfs_one(n, nbr, via, state, forkless, max_cells, max_depth, visited, stack, cand, row):
    """Recursive backtracker. Returns (state, start cell). ``stack[d]`` is the cell at depth d."""
    n_cells = n * n
    visited[:] = 0
    state, start = rand_below(state, n_cells)
    visited[start] = 1
    carved = 1
    stack[0] = start
    top = 0  # depth of the cell being extended
    resumed = False  # forkless: the walk has already resumed from the start once
    while carved < max_cells and top >= 0:
        cell = stack[top]
        k = 0
        if top < max_depth:
            for d in range(4):
                m = nbr[cell, d]
                if m >= 0 and visited[m] == 0:
                    cand[k] = d
                    k += 1
        if k == 0:
            if forkless:
                # A hallway never branches: it may only grow again at its other end, the start.
                if resumed or top == 0:
                    break
                resumed = True
                top = 0
            else:
                top -= 1
            continue
        d = cand[0]
        if k > 1:
            state, j = rand_below(state, k)
            d = cand[j]
        m = nbr[cell, d]
        row[via[cell, d]] = 1
        visited[m] = 1
        carved += 1
        top += 1
        stack[top] = m
    return state, start


@njit
def _wilson_one(n, nbr_c, via_c, deg, state, in_tree, step, row):
    """Wilson's algorithm: the loop-erased walk from each cell not yet in the tree is kept as the
    last exit direction ``step[cell]`` from every visited cell (loops erase themselves)."""
    n_cells = n * n
    in_tree[:] = 0
    state, root = rand_below(state, n_cells)
    in_tree[root] = 1
    for s in range(n_cells):
        u = s
        while in_tree[u] == 0:
            state, j = rand_below(state, deg[u])
            step[u] = j
            u = nbr_c[u, j]
        u = s
        while in_tree[u] == 0:
            in_tree[u] = 1
            row[via_c[u, step[u]]] = 1
            u = nbr_c[u, step[u]]
    return state


@njit
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]  # path halving
        a = parent[a]
    return a


@njit
def _kruskal_one(n, ends, state, order, parent, row):
    """Edges in a random order (Fisher-Yates, drawn lazily so we can stop at n*n-1 edges)."""
    n_cells = n * n
    n_e = ends.shape[0]
    for e in range(n_e):
        order[e] = e
    for c in range(n_cells):
        parent[c] = c
    opened = 0
    for i in range(n_e):
        state, j = rand_below(state, n_e - i)
        j += i
        e = order[j]
        order[j] = order[i]
        order[i] = e
        ra = _find(parent, ends[e, 0])
        rb = _find(parent, ends[e, 1])
        if ra != rb:
            parent[ra] = rb
            row[e] = 1
            opened += 1
            if opened == n_cells - 1:
                break
    return state


@njit
def _push(regions, top, r0, c0, h, w):
    regions[top, 0], regions[top, 1], regions[top, 2], regions[top, 3] = r0, c0, h, w


@njit
def _division_one(n, state, regions, row):
    """Recursive division with an explicit stack of rectangles (r0, c0, height, width).
    Each wall has one gap, so every split joins two trees by one edge: a spanning tree."""
    row[:] = 1
    down_base = n * (n - 1)  # index of the first vertical-move edge (r,c)-(r+1,c)
    _push(regions, 0, 0, 0, n, n)
    top = 1
    while top > 0:
        top -= 1
        r0, c0, h, w = regions[top, 0], regions[top, 1], regions[top, 2], regions[top, 3]
        if h < 2 or w < 2:
            continue  # a 1-wide corridor is already a path
        cut_rows = h > w
        if h == w:
            state, bit = rand_below(state, 2)
            cut_rows = bit == 1
        if cut_rows:  # wall between rows r0+k and r0+k+1, gap at column c0+gap
            state, k = rand_below(state, h - 1)
            state, gap = rand_below(state, w)
            for c in range(w):
                if c != gap:
                    row[down_base + (r0 + k) * n + c0 + c] = 0
            _push(regions, top, r0, c0, k + 1, w)
            _push(regions, top + 1, r0 + k + 1, c0, h - k - 1, w)
        else:  # wall between columns c0+k and c0+k+1, gap at row r0+gap
            state, k = rand_below(state, w - 1)
            state, gap = rand_below(state, h)
            for r in range(h):
                if r != gap:
                    row[(r0 + r) * (n - 1) + c0 + k] = 0
            _push(regions, top, r0, c0, h, k + 1)
            _push(regions, top + 1, r0, c0 + k + 1, h, w - k - 1)
        top += 2
    return state


@njit
def _percolate(state, p, row):
    """Open every closed edge independently with probability p."""
    for e in range(row.shape[0]):
        state, u = rand_unit(state)
        if row[e] == 0 and u < p:
            row[e] = 1
    return state


@njit
def _open_field_one(n, ends, state, n_obstacles, obstacle_size, blocked, row):
    n_cells = n * n
    blocked[:] = 0
    half = (obstacle_size - 1) // 2
    for _ in range(n_obstacles):
        state, centre = rand_below(state, n_cells)
        r_lo = max(centre // n - half, 0)
        c_lo = max(centre % n - half, 0)
        r_hi = min(centre // n - half + obstacle_size, n)
        c_hi = min(centre % n - half + obstacle_size, n)
        for r in range(r_lo, r_hi):
            for c in range(c_lo, c_hi):
                blocked[r * n + c] = 1
    for e in range(ends.shape[0]):
        row[e] = 0 if blocked[ends[e, 0]] or blocked[ends[e, 1]] else 1
    return state


# ---------------------------------------------------------------------------- the batch kernel


@njit(parallel=True)
def _generate_kernel(kind, n, seeds, nbr, via, nbr_c, via_c, deg, ends, forkless, max_cells,
                     max_depth, p, n_obstacles, obstacle_size, out, start):
    """Fill ``out`` (uint8 [B, E], zeros) and ``start`` (int32 [B]: dfs start cell, else -1)."""
    n_cells = n * n
    n_mazes = seeds.shape[0]
    n_chunks = (n_mazes + _CHUNK - 1) // _CHUNK
    for chunk in prange(n_chunks):
        visited = np.empty(n_cells, dtype=np.uint8)
        stack = np.empty(n_cells, dtype=np.int32)
        cand = np.empty(4, dtype=np.int32)
        order = np.empty(ends.shape[0], dtype=np.int32)
        regions = np.empty((n_cells + 2, 4), dtype=np.int32)
        for i in range(chunk * _CHUNK, min((chunk + 1) * _CHUNK, n_mazes)):
            state = mix64(seeds[i])  # decorrelate streams of nearby seeds
            row = out[i]
            start[i] = -1
            if kind == _DFS or kind == _DFS_PERCOLATION:
                state, first = _dfs_one(n, nbr, via, state, forkless, max_cells, max_depth,
                                        visited, stack, cand, row)
                start[i] = first
                if kind == _DFS_PERCOLATION:
                    state = _percolate(state, p, row)
            elif kind == _WILSON:
                state = _wilson_one(n, nbr_c, via_c, deg, state, visited, stack, row)
            elif kind == _KRUSKAL:
                state = _kruskal_one(n, ends, state, order, stack, row)
            elif kind == _DIVISION:
                state = _division_one(n, state, regions, row)
            elif kind == _PERCOLATION:
                state = _percolate(state, p, row)
            else:
                state = _open_field_one(n, ends, state, n_obstacles, obstacle_size, visited, row)


# ---------------------------------------------------------------------------- public API


def _as_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _as_fraction(value, name: str, low_open: bool) -> float:
    """A number in [0, 1] ((0, 1] when low_open)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not ok or not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return float(value)


def _as_seeds(seeds) -> np.ndarray:
    if not isinstance(seeds, np.ndarray):  # a list of Python ints: numpy may make it float64
        values = [_as_int(v, "each seed") for v in np.ravel(np.asarray(seeds, dtype=object))]
        if any(not 0 <= v < 2**64 for v in values):
            raise ValueError("seeds must be non-negative (uint64)")
        seeds = np.array(values, dtype=np.uint64).reshape(np.shape(seeds))
    if seeds.ndim != 1:
        raise ValueError(f"seeds must be a 1-D array of uint64, got shape {seeds.shape}")
    if seeds.size and seeds.dtype.kind not in "iu":
        raise ValueError(f"seeds must be integers (uint64), got dtype {seeds.dtype}")
    if seeds.dtype.kind == "i" and seeds.size and seeds.min() < 0:
        raise ValueError("seeds must be non-negative (uint64)")
    return np.ascontiguousarray(seeds, dtype=np.uint64)


@functools.lru_cache(maxsize=16)
def _lattice_tables(n: int):
    """Neighbour tables for the kernels (read only there): direction-indexed, -1 off the grid
    (nbr, via: int32 [N, 4]), the same with valid directions first (nbr_c, via_c), deg [N] and
    edge ends [E, 2]."""
    nbr, via = neighbour_table(n)
    deg = (nbr >= 0).sum(axis=1).astype(np.int32)
    order = np.argsort(nbr < 0, axis=1, kind="stable")
    nbr_c = np.ascontiguousarray(np.take_along_axis(nbr, order, axis=1))
    via_c = np.ascontiguousarray(np.take_along_axis(via, order, axis=1))
    return nbr, via, nbr_c, via_c, deg, edge_endpoints(n)


def _check_options(kind, n, forkless, max_cells, max_cells_frac, max_depth, p, n_obstacles,
                   obstacle_size):
    """Validate the options against the kind; returns (max_cells, max_depth, p) for the kernel."""
    if not isinstance(kind, str) or kind not in _KIND_CODE:
        raise ValueError(f"unknown generator kind {kind!r}; expected one of {', '.join(KINDS)}")
    if _as_int(n, "n") < 2:
        raise ValueError(f"n (grid side) must be >= 2, got {n}")
    if not isinstance(forkless, (bool, np.bool_)):
        raise ValueError(f"forkless must be a bool, got {forkless!r}")
    dfs_only = {"forkless": forkless or None, "max_cells": max_cells,
                "max_cells_frac": max_cells_frac, "max_depth": max_depth}
    for key, value in dfs_only.items():
        if value is not None and kind != "dfs":
            raise ValueError(f"option {key} applies only to generator dfs (got generator {kind})")
    if kind in ("percolation", "dfs_percolation"):
        if p is None:
            raise ValueError(f"generator {kind} needs p (probability an edge is open)")
        p = _as_fraction(p, "p", low_open=False)
    elif p is not None:
        raise ValueError(f"option p applies only to percolation and dfs_percolation (got {kind})")
    if kind != "open_field" and (n_obstacles != 0 or obstacle_size != 1):
        raise ValueError(f"options n_obstacles/obstacle_size apply only to open_field (got {kind})")
    if _as_int(n_obstacles, "n_obstacles") < 0:
        raise ValueError(f"n_obstacles must be >= 0, got {n_obstacles}")
    if _as_int(obstacle_size, "obstacle_size") < 1:
        raise ValueError(f"obstacle_size must be >= 1, got {obstacle_size}")
    if n_obstacles and n_obstacles * obstacle_size**2 > n * n - 2:
        # Overlapping blocks may leave more, but only this bound guarantees 2 free cells.
        raise ValueError(
            f"n_obstacles={n_obstacles} blocks of obstacle_size={obstacle_size} could leave fewer "
            f"than 2 of the {n * n} cells free (need n_obstacles * obstacle_size**2 <= {n * n - 2})")

    if max_cells is not None and max_cells_frac is not None:
        raise ValueError("give max_cells or max_cells_frac, not both")
    cells = n * n
    if max_cells is not None:
        cells = _as_int(max_cells, "max_cells")
        if not 2 <= cells <= n * n:
            raise ValueError(f"max_cells must be in [2, {n * n}] on a {n}x{n} grid, got {cells}")
    if max_cells_frac is not None:
        frac = _as_fraction(max_cells_frac, "max_cells_frac", low_open=True)
        cells = math.floor(frac * n * n + 1e-9)  # tolerance: 0.29 * 100 is 28.999...
        if cells < 2:
            raise ValueError(f"max_cells_frac={max_cells_frac} leaves {cells} cell(s) of a {n}x{n} "
                             "grid; need at least 2")
    depth = n * n  # no limit: a tree on n*n cells is never deeper than n*n - 1
    if max_depth is not None and _as_int(max_depth, "max_depth") < 1:
        raise ValueError(f"max_depth must be >= 1, got {max_depth}")
    if max_depth is not None:
        depth = int(max_depth)
    return cells, depth, (0.0 if p is None else p)


def _generate(kind, n, seeds, *, forkless=False, max_cells=None, max_cells_frac=None,
              max_depth=None, p=None, n_obstacles=0, obstacle_size=1):
    """``generate_open`` plus the dfs start cells: (uint8 [B, E], int32 [B]; -1 if not dfs)."""
    cells, depth, p = _check_options(kind, n, forkless, max_cells, max_cells_frac, max_depth, p,
                                     n_obstacles, obstacle_size)
    seeds = _as_seeds(seeds)
    n = int(n)
    out = np.zeros((seeds.shape[0], n_edges(n)), dtype=np.uint8)
    start = np.empty(seeds.shape[0], dtype=np.int32)
    _generate_kernel(_KIND_CODE[kind], n, seeds, *_lattice_tables(n), bool(forkless), cells,
                     depth, p, int(n_obstacles), int(obstacle_size), out, start)
    return out, start


def generate_open(kind: str, n: int, seeds: np.ndarray, *, forkless: bool = False,
                  max_cells: int | None = None, max_cells_frac: float | None = None,
                  max_depth: int | None = None, p: float | None = None, n_obstacles: int = 0,
                  obstacle_size: int = 1) -> np.ndarray:
    """Connectivity of ``len(seeds)`` mazes of one kind on an n x n grid.

    Returns ``uint8 [B, E]``, E = 2n(n-1), canonical edge order; row i depends only on
    ``seeds[i]`` (uint64). Options that do not apply to ``kind`` raise ValueError.
    """
    out, _ = _generate(kind, n, seeds, forkless=forkless, max_cells=max_cells,
                       max_cells_frac=max_cells_frac, max_depth=max_depth, p=p,
                       n_obstacles=n_obstacles, obstacle_size=obstacle_size)
    return out
