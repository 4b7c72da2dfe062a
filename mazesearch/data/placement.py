"""Coverage mazes: small mazes carved at an offset inside a larger lattice.

One data model for every maze: a maze lives on its lattice (``grid_n`` = lattice side). A
placed maze carves only a ``k x k`` sub-square at offset ``(row, col)``; every cell outside it
is closed (no open edge), so tokens, solving, evaluation, the baseline and the probes need no
new case. A training set of 3x3..5x5 mazes at random offsets in a 7x7 lattice thus uses every
coordinate token of the lattice while no maze is larger than 5x5 (docs/data.md "Coverage").

Maze j's size and offset come from its own splitmix64 stream (``maze_seeds(k_place, ...)[j]``,
:mod:`mazesearch.data.dataset`): size uniform over ``sizes``, then row and column offsets
uniform in ``0..grid_n - k`` (or both 0 with placement ``origin``).
"""

from __future__ import annotations

import numpy as np

from mazesearch.data.jit import njit
from mazesearch.data.maze import n_edges, neighbour_table
from mazesearch.data.rng import rand_below

PLACEMENTS = ("random", "origin")


@njit
def _placements_kernel(seeds, sizes, lattice, at_random, out):
    for i in range(seeds.shape[0]):
        state = seeds[i]
        state, j = rand_below(state, sizes.shape[0])
        k = sizes[j]
        r = 0
        c = 0
        if at_random:
            state, r = rand_below(state, lattice - k + 1)
            state, c = rand_below(state, lattice - k + 1)
        out[i, 0] = k
        out[i, 1] = r
        out[i, 2] = c


def check_placement(sizes, lattice: int, placement: str) -> np.ndarray:
    """``sizes`` as ``int64 [K]`` if they fit the lattice and ``placement`` is known, else ValueError."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.ndim != 1 or not len(sizes) or sizes.min() < 2 or sizes.max() > lattice:
        raise ValueError(f"sizes must be a non-empty list of ints in 2..grid_n={lattice}, got {sizes.tolist()}")
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    return sizes


def placements(seeds: np.ndarray, sizes, lattice: int, placement: str = "random") -> np.ndarray:
    """Each maze's ``(k, row, col)``: ``int32 [B, 3]`` from its seed ``uint64 [B]``."""
    sizes = check_placement(sizes, lattice, placement)
    out = np.empty((len(seeds), 3), np.int32)
    _placements_kernel(np.ascontiguousarray(seeds, np.uint64), sizes, np.int64(lattice),
                       placement == "random", out)
    return out


def lattice_edges(k: int, lattice: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """For mazes of side ``k`` placed at ``(rows[i], cols[i])``: the lattice edge index of each
    of their ``k x k`` grid's edges, ``int64 [B, n_edges(k)]`` (canonical order of both grids)."""
    _, via_k = neighbour_table(k)
    _, via_n = neighbour_table(lattice)
    # the k-grid's edges in canonical order, each as (cell, direction E=1 or S=2) from its low end
    cell_dir = np.full((n_edges(k), 2), -1, np.int64)
    for direction in (1, 2):
        has = via_k[:, direction] >= 0
        cell_dir[via_k[has, direction]] = np.stack([np.flatnonzero(has), np.full(has.sum(), direction)], 1)
    r, c = np.divmod(cell_dir[:, 0], k)  # [E_k]
    cell = (r[None, :] + np.asarray(rows)[:, None]) * lattice + (c[None, :] + np.asarray(cols)[:, None])
    return via_n[cell, cell_dir[None, :, 1]].astype(np.int64)


def embed(open_k: np.ndarray, k: int, lattice: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``uint8 [B, n_edges(lattice)]``: the ``k x k`` mazes ``open_k [B, n_edges(k)]`` carved at
    their offsets in an otherwise closed lattice."""
    out = np.zeros((open_k.shape[0], n_edges(lattice)), np.uint8)
    np.put_along_axis(out, lattice_edges(k, lattice, rows, cols), open_k, axis=1)
    return out
