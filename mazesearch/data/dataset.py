"""Assemble a dataset of solved mazes: generate -> endpoints -> solve -> stats -> validate.

Maze j of a dataset (j = 0, 1, 2, ... in generation order) depends only on ``seed`` and j:
its walls come from the generator seeded with ``maze_seeds(k_walls, ...)[j]`` and its
endpoints from ``maze_seeds(k_ends, ...)[j]``, where ``k_walls, k_ends`` are the first two
words of ``np.random.SeedSequence(seed)``. With ``sizes`` (coverage data, data/placement.py) its
side and offset in the ``grid_n`` lattice come from ``maze_seeds(k_place, ...)[j]``, ``k_place``
the third word (the first two do not change, so an unplaced dataset is what it always was) and
its walls from the generator at that side. Mazes without valid endpoints and mazes whose id is
in ``exclude_ids`` are skipped; the dataset is the first ``n_mazes`` survivors. Work happens in
chunks for speed and memory, but the result (arrays and info) does not depend on the chunking.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from mazesearch.data.generate import generate_open, maze_seeds
from mazesearch.data.maze import MazeBatch, maze_ids, n_edges
from mazesearch.data.placement import check_placement, embed, placements
from mazesearch.data.solve import choose_endpoints, path_stats, solve
from mazesearch.data.validate import MazeValidationError, validate

GENERATOR_OPTIONS = ("forkless", "max_cells", "max_cells_frac", "max_depth", "p", "n_obstacles",
                     "obstacle_size")
ENDPOINT_OPTIONS = ("origin_at_dead_end", "target_at_dead_end", "min_manhattan", "min_path_len")

_CHUNK_CELLS = 2**22  # cells per chunk: bounds the [chunk, E] arrays on large grids
_MAX_CHUNK = 65536
_PROBE = 4096  # give up if this many mazes yield nothing
_PATIENCE = 100  # ... or after generating this many times n_mazes (plus the probe)
_PROGRESS_MIN = 65536  # show a progress bar only for datasets at least this large


def is_spanning_tree(generator: str, options: dict) -> bool:
    """Whether the generator with these options always yields a spanning tree of the grid."""
    if generator in ("wilson", "kruskal", "recursive_division"):
        return True
    return generator == "dfs" and not options.get("forkless") and all(
        options.get(k) is None for k in ("max_cells", "max_cells_frac", "max_depth"))


def _split_options(options: dict) -> tuple[dict, dict]:
    unknown = sorted(set(options) - set(GENERATOR_OPTIONS) - set(ENDPOINT_OPTIONS))
    if unknown:
        raise ValueError(f"unknown maze option(s) {unknown}; generator options are "
                         f"{list(GENERATOR_OPTIONS)}, endpoint options {list(ENDPOINT_OPTIONS)}")
    gen = {k: v for k, v in options.items() if k in GENERATOR_OPTIONS}
    ends = {k: v for k, v in options.items() if k in ENDPOINT_OPTIONS}
    return gen, ends


def _sorted_ids(exclude_ids) -> np.ndarray:
    if exclude_ids is None:
        return np.zeros(0, np.uint64)
    arr = np.asarray(exclude_ids)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise ValueError(f"exclude_ids must be a 1-D array of uint64 maze ids, got {arr.dtype} {arr.shape}")
    return np.sort(arr.astype(np.uint64))  # sorted (repeats are harmless) for searchsorted


def _isin_sorted(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """``np.isin(ids, sorted_ids)`` against a pre-sorted array (no re-sort per chunk)."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[pos] == ids


def _n_repeats(ids: np.ndarray) -> int:
    """Rows whose id already occurred earlier (sort-based: numpy's hash unique is slower)."""
    s = np.sort(ids)
    return int((s[1:] == s[:-1]).sum())


def build_mazes(
    *,
    generator: str,
    grid_n: int,
    n_mazes: int,
    seed: int,
    exclude_ids: np.ndarray | None = None,  # uint64 [K]
    sizes: list[int] | None = None,
    placement: str = "random",
    progress: bool = False,
    chunk_size: int | None = None,
    **options,
) -> tuple[MazeBatch, dict]:
    """Exactly ``n_mazes`` solved, validated mazes and a dict of dataset statistics.

    ``options`` are the generator options (forkless, max_cells, max_cells_frac, max_depth, p,
    n_obstacles, obstacle_size; see :func:`mazesearch.data.generate.generate_open`) and endpoint
    options (origin_at_dead_end, target_at_dead_end, min_manhattan, min_path_len; see
    :func:`mazesearch.data.solve.choose_endpoints`). ``sizes``: carve each maze as a ``k x k``
    sub-square of the ``grid_n`` lattice, ``k`` uniform over ``sizes``, at a uniform random offset
    (``placement="random"``) or at (0, 0) (``"origin"``); None: the maze fills the grid.
    ``chunk_size`` only changes speed and memory.
    ``info`` counts over the generated mazes up to the last one kept: ``n_generated``,
    ``n_dropped_no_endpoints``, ``n_dropped_overlap`` (id in exclude_ids), and describes the
    result: ``n_mazes``, ``n_duplicates`` (rows repeating an earlier row's id), means of
    path_len, forks_on_path, n_dead_ends, and the fraction with more than one shortest path.
    ValueError if the options leave (almost) no valid maze.
    """
    for name, value in (("grid_n", grid_n), ("n_mazes", n_mazes), ("seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if grid_n < 2 or n_mazes < 1 or seed < 0:
        raise ValueError(f"need grid_n >= 2, n_mazes >= 1, seed >= 0; got {grid_n}, {n_mazes}, {seed}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                   or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    n = int(grid_n)
    gen_opts, end_opts = _split_options(options)
    exclude = _sorted_ids(exclude_ids)
    if sizes is not None:
        check_placement(sizes, n, placement)
    # a placed maze does not span its lattice: validate it as a general maze
    spanning = is_spanning_tree(generator, gen_opts) and sizes is None
    max_chunk = chunk_size or max(256, min(_MAX_CHUNK, _CHUNK_CELLS // (n * n)))
    # generate_state(3)[:2] == generate_state(2): adding k_place changed no existing dataset
    k_walls, k_ends, k_place = (int(k) for k in np.random.SeedSequence(seed).generate_state(3, np.uint64))

    parts: list[MazeBatch] = []
    kept = generated = no_ends = overlap = 0
    bar = None
    if progress and n_mazes >= _PROGRESS_MIN:
        from tqdm import tqdm

        bar = tqdm(total=n_mazes, file=sys.stderr, unit="maze", desc=f"{generator} {n}x{n}", disable=None)  # a terminal only
    while kept < n_mazes:
        remaining = n_mazes - kept
        rate = (kept + 1) / (generated + 1)  # smoothed yield so far: sizes the next chunk
        size = int(min(max_chunk, max(64, math.ceil(1.1 * remaining / rate) + 16)))
        open_ = _walls(generator, n, maze_seeds(k_walls, size, generated), gen_opts, sizes, placement,
                       maze_seeds(k_place, size, generated))
        origin, target, ok = choose_endpoints(n, open_, maze_seeds(k_ends, size, generated), **end_opts)
        ids = maze_ids(n, open_, origin, target)
        excluded = ok & _isin_sorted(ids, exclude)
        keep = np.flatnonzero(ok & ~excluded)
        # consume generated mazes only up to the last one kept, so counts ignore chunking
        cut = int(keep[remaining - 1]) + 1 if len(keep) >= remaining else size
        keep = keep[:remaining]
        no_ends += int((~ok[:cut]).sum())
        overlap += int(excluded[:cut].sum())
        generated += cut
        if len(keep):
            parts.append(_solve_chunk(n, generator, open_[keep], origin[keep], target[keep],
                                      ids[keep], spanning, offset=kept))
            kept += len(keep)
            if bar is not None:
                bar.update(len(keep))
        if kept < n_mazes and ((generated >= _PROBE and kept == 0)
                               or generated >= _PATIENCE * n_mazes + _PROBE):
            if bar is not None:
                bar.close()
            raise ValueError(
                f"{generator} {n}x{n} with options {options}: only {kept} of {n_mazes} mazes after "
                f"generating {generated} ({no_ends} had no endpoints satisfying "
                f"{end_opts or 'the defaults'}, {overlap} were in exclude_ids); "
                "relax the options or enlarge the grid")
    if bar is not None:
        bar.close()

    batch = MazeBatch.concat(parts)
    info = {
        "n_mazes": len(batch),
        "n_generated": generated,
        "n_dropped_no_endpoints": no_ends,
        "n_dropped_overlap": overlap,
        "n_duplicates": _n_repeats(batch.maze_id),
        "spanning_tree": spanning,
        "sizes": None if sizes is None else sorted(int(k) for k in set(sizes)),
        "placement": None if sizes is None else placement,
        "mean_path_len": float(batch.path_len.mean()),
        "mean_forks_on_path": float(batch.forks_on_path.mean()),
        "mean_dead_ends": float(batch.n_dead_ends.mean()),
        "frac_multiple_shortest_paths": float((batch.n_shortest_paths > 1).mean()),
    }
    return batch, info


def _walls(generator, n, wall_seeds, gen_opts, sizes, placement, place_seeds) -> np.ndarray:
    """``uint8 [B, E]``: each maze's open edges on the ``n`` lattice (carved at its size and offset)."""
    if sizes is None:
        return generate_open(generator, n, wall_seeds, **gen_opts)
    place = placements(place_seeds, sizes, n, placement)  # [B, 3]: k, row, col
    open_ = np.zeros((len(wall_seeds), n_edges(n)), np.uint8)
    for k in np.unique(place[:, 0]):
        idx = np.flatnonzero(place[:, 0] == k)
        sub = generate_open(generator, int(k), wall_seeds[idx], **gen_opts)
        open_[idx] = embed(sub, int(k), n, place[idx, 1], place[idx, 2])
    return open_


def _solve_chunk(n, generator, open_, origin, target, ids, spanning, offset) -> MazeBatch:
    path_flat, offsets, n_paths = solve(n, open_, origin, target)
    forks, dead_ends = path_stats(n, open_, path_flat, offsets)
    batch = MazeBatch(grid_n=n, generator=generator, open=open_, origin=origin, target=target,
                      path_flat=path_flat, path_offsets=offsets, n_shortest_paths=n_paths,
                      forks_on_path=forks, n_dead_ends=dead_ends, maze_id=ids)
    try:
        validate(batch, spanning_tree=spanning)
    except MazeValidationError as exc:  # a bug upstream, never bad params: say which maze
        raise MazeValidationError(offset + exc.index, f"{exc.reason} (generator {generator}, "
                                  f"{n}x{n}; this is a bug in generate/solve)") from exc
    return batch
