"""Probe labels: what a linear probe on a cached activation should be able to read out.

Every builder takes the mazes (``MazeBatch``) and the activation index (one row per cached
position; see ``mazesearch.interp.activations``) and returns a :class:`Label` aligned with the index
rows, with a ``defined`` mask for the rows where the label makes sense.

Position semantics (the index's ``path_step`` = s): at a path position the cells
``path[0..s-1]`` are already emitted, the current cell is ``path[s-1]`` and the model is
predicting ``path[s]`` (or ``<PATH_END>`` when ``s == len(path)``). At ``<PATH_START>`` s = 0.

Targets (docs/probes.md):

* ``future_path``  multilabel [rows, n_cells]: cell will still be emitted (``path[s..]``);
  at ``<PATH_START>`` all path cells. Rows: path_start, path.
* ``on_solution``  multilabel [rows, n_cells]: cell lies on *some* shortest origin->target path
  (equal to the stored path on trees; the union of all shortest paths on cyclic mazes).
  Rows: path_start.
* ``walls``        multilabel [rows, E]: lattice edge open (1 = connection), canonical order.
  Rows: path_start.
* ``target``       multiclass [rows] (n_cells classes): the target cell. Rows: path_start, path.
* ``next_move``    multiclass [rows] (4 classes N,E,S,W): direction path[s-1] -> path[s].
  Rows: path with 1 <= s < len(path).
* ``dist_to_target`` regression [rows]: moves left from the current cell to the target,
  ``len(path) - s`` at path positions (current cell path[s-1]) and the whole path length
  ``len(path) - 1`` at ``<PATH_START>`` (current cell = origin). Rows: path_start, path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mazesearch.data import solve
from mazesearch.data.maze import MazeBatch, n_edges

KINDS = ("path_start", "path", "target_end")
TASKS = ("multilabel", "multiclass", "regression")

# Which cached positions each target is defined at.
TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "future_path": ("path_start", "path"),
    "on_solution": ("path_start",),
    "walls": ("path_start",),
    "target": ("path_start", "path"),
    "next_move": ("path",),
    "dist_to_target": ("path_start", "path"),
}


@dataclasses.dataclass(frozen=True)
class Label:
    """One probe target, aligned with the activation index rows."""

    name: str
    task: str  # "multilabel" | "multiclass" | "regression"
    # multilabel bool [rows, K] | multiclass int64 [rows] (-1 = undefined) | regression float [rows]
    values: np.ndarray
    defined: np.ndarray  # bool [rows]
    n_outputs: int  # multilabel: K columns; multiclass: number of classes; regression: 1

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"label {self.name}: task must be one of {TASKS}, got {self.task!r}")
        if self.values.shape[0] != self.defined.shape[0]:
            raise ValueError(
                f"label {self.name}: {self.values.shape[0]} values for {self.defined.shape[0]} rows"
            )


# ---------------------------------------------------------------------------- index checks


@dataclasses.dataclass(frozen=True)
class _Rows:
    """Index columns as arrays, checked against the mazes once."""

    maze: np.ndarray  # int64 [rows]: row in the MazeBatch
    kind: np.ndarray  # object [rows]
    step: np.ndarray  # int64 [rows]: path_step
    path_len: np.ndarray  # int64 [rows]: cells on the maze's stored path


def _rows(mazes: MazeBatch, index: pd.DataFrame) -> _Rows:
    missing = {"maze_row", "maze_id", "kind", "path_step", "current_cell"} - set(index.columns)
    if missing:
        raise ValueError(f"activation index lacks columns {sorted(missing)}")
    maze = index["maze_row"].to_numpy().astype(np.int64)
    if len(maze) and (maze.min() < 0 or maze.max() >= len(mazes)):
        raise ValueError(
            f"index maze_row out of range [0, {len(mazes)}): the index belongs to another maze file"
        )
    if not np.array_equal(index["maze_id"].to_numpy().astype(np.uint64), mazes.maze_id[maze]):
        raise ValueError(
            "index maze_id disagrees with the mazes at maze_row: the index belongs to another maze file"
        )
    kind = index["kind"].to_numpy().astype(object)
    bad = sorted(set(kind.tolist()) - set(KINDS))
    if bad:
        raise ValueError(f"index kind has unknown values {bad}; expected {list(KINDS)}")
    step = index["path_step"].to_numpy().astype(np.int64)
    cells = np.diff(mazes.path_offsets)[maze]
    is_path = kind == "path"
    if np.any(step[~is_path] != 0):
        raise ValueError("index path_step must be 0 at path_start and target_end rows")
    if np.any((step[is_path] < 1) | (step[is_path] > cells[is_path])):
        raise ValueError("index path_step at path rows must lie in [1, len(path)]")
    current = index["current_cell"].to_numpy().astype(np.int64)
    emitted = mazes.path_flat[mazes.path_offsets[maze[is_path]] + step[is_path] - 1]
    if not np.array_equal(current[is_path], emitted):
        raise ValueError("index current_cell disagrees with path[path_step - 1] of the maze")
    return _Rows(maze=maze, kind=kind, step=step, path_len=cells)


def _defined_at(rows: _Rows, name: str) -> np.ndarray:
    return np.isin(rows.kind, TARGET_KINDS[name])


# ---------------------------------------------------------------------------- BFS


def bfs_distances(mazes: MazeBatch, source: np.ndarray) -> np.ndarray:
    """Shortest-path moves from ``source[b]`` to every cell: ``int32 [B, n_cells]``, -1 unreachable."""
    return solve.bfs_distances(mazes.grid_n, mazes.open, source)


def shortest_path_cells(mazes: MazeBatch) -> np.ndarray:
    """Cells on at least one shortest origin->target path: ``bool [B, n_cells]``.

    A cell c is on one iff d(origin, c) + d(c, target) == d(origin, target).
    """
    from_origin = bfs_distances(mazes, mazes.origin)
    from_target = bfs_distances(mazes, mazes.target)
    total = from_origin[np.arange(len(mazes)), mazes.target][:, None]
    return (from_origin >= 0) & (from_target >= 0) & (from_origin + from_target == total)


def emit_step(mazes: MazeBatch) -> np.ndarray:
    """Position of each cell on the stored path (0 = origin), -1 off the path: ``int64 [B, n_cells]``."""
    out = np.full((len(mazes), mazes.grid_n**2), -1, dtype=np.int64)
    lengths = np.diff(mazes.path_offsets)
    maze_of = np.repeat(np.arange(len(mazes)), lengths)
    pos = np.arange(len(mazes.path_flat)) - mazes.path_offsets[maze_of]
    out[maze_of, mazes.path_flat] = pos
    return out


# ---------------------------------------------------------------------------- targets


def future_path(mazes: MazeBatch, index: pd.DataFrame, rows: _Rows | None = None) -> Label:
    rows = rows or _rows(mazes, index)
    defined = _defined_at(rows, "future_path")
    order = emit_step(mazes)[rows.maze]  # [rows, n_cells]
    values = (order >= rows.step[:, None]) & defined[:, None]
    return Label("future_path", "multilabel", values, defined, mazes.grid_n**2)


def on_solution(mazes: MazeBatch, index: pd.DataFrame, rows: _Rows | None = None) -> Label:
    rows = rows or _rows(mazes, index)
    defined = _defined_at(rows, "on_solution")
    values = shortest_path_cells(mazes)[rows.maze] & defined[:, None]
    return Label("on_solution", "multilabel", values, defined, mazes.grid_n**2)


def walls(mazes: MazeBatch, index: pd.DataFrame, rows: _Rows | None = None) -> Label:
    rows = rows or _rows(mazes, index)
    defined = _defined_at(rows, "walls")
    values = mazes.open[rows.maze].astype(bool) & defined[:, None]
    return Label("walls", "multilabel", values, defined, n_edges(mazes.grid_n))


def target(mazes: MazeBatch, index: pd.DataFrame, rows: _Rows | None = None) -> Label:
    rows = rows or _rows(mazes, index)
    defined = _defined_at(rows, "target")
    values = np.where(defined, mazes.target[rows.maze].astype(np.int64), -1)
    return Label("target", "multiclass", values, defined, mazes.grid_n**2)


def next_move(mazes: MazeBatch, index: pd.DataFrame, rows: _Rows | None = None) -> Label:
    rows = rows or _rows(mazes, index)
    n = mazes.grid_n
    defined = _defined_at(rows, "next_move") & (rows.step < rows.path_len)
    start = mazes.path_offsets[rows.maze[defined]] + rows.step[defined]
    here = mazes.path_flat[start - 1].astype(np.int64)
    there = mazes.path_flat[start].astype(np.int64)
    # N, E, S, W as in maze.DIRECTIONS
    direction = np.select(
        [there - here == -n, there - here == 1, there - here == n, there - here == -1],
        [0, 1, 2, 3], default=-1,
    )
    if np.any(direction < 0):
        raise ValueError("stored path has consecutive cells that are not lattice neighbours")
    values = np.full(len(rows.maze), -1, dtype=np.int64)
    values[defined] = direction
    return Label("next_move", "multiclass", values, defined, 4)


def dist_to_target(mazes: MazeBatch, index: pd.DataFrame, rows: _Rows | None = None) -> Label:
    rows = rows or _rows(mazes, index)
    defined = _defined_at(rows, "dist_to_target")
    # current cell is path[max(s,1) - 1]; the rest of a shortest path is a shortest path
    moves = rows.path_len - np.maximum(rows.step, 1)
    values = np.where(defined, moves.astype(np.float64), np.nan)
    return Label("dist_to_target", "regression", values, defined, 1)


BUILDERS = {
    "future_path": future_path,
    "on_solution": on_solution,
    "walls": walls,
    "target": target,
    "next_move": next_move,
    "dist_to_target": dist_to_target,
}


def build_labels(mazes: MazeBatch, index: pd.DataFrame,
                 names: list[str] | None = None) -> dict[str, Label]:
    """All (or the named) probe targets for the index rows, index checked once."""
    names = list(BUILDERS) if names is None else names
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown probe targets {unknown}; known: {list(BUILDERS)}")
    rows = _rows(mazes, index)
    return {name: BUILDERS[name](mazes, index, rows) for name in names}
