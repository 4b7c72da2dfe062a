"""Where a predicted path goes wrong: its first wrong decision (docs/notebook.md, "Failures").

A step is correct by docs/metrics.md's one rule: it crosses an open connection to a cell one BFS
step closer to the target (in a tree: the stored path's next cell; in a cyclic maze: a cell of
any shortest path). A prediction is exact (``exact_path``) exactly when its first entry is the
origin, every step is correct and ``<PATH_END>`` follows the target, so the first place where
that fails is *the* first error, and a path has none exactly when it is exact.

:func:`first_wrong_step` is plain numpy on cells (checked on hand-built mazes and against
networkx, tests/test_notebook_failures.py); :class:`mazesearch.notebook.Run` adds the token positions.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mazesearch.data.maze import MazeBatch, neighbour_table

# What the wrong entry is (the value of FirstError.kind):
KINDS = {
    "start": "the first entry is not the origin",
    "wrong_turn": "an open neighbour no closer to the target (a dead end, back, off every shortest path)",
    "wall": "a lattice neighbour behind a wall",
    "jump": "a cell that is not a lattice neighbour (or the same cell)",
    "not_a_cell": "a token that names no cell of this grid",
    "early_end": "the path stops before the target (<PATH_END>, <PADDING> or the length cap)",
    "overshoot": "at the target, anything but <PATH_END>",
}
# The per-maze metrics of data/predictions/<suite>.parquet that Run.failures() keeps beside the first error.
KEPT_METRICS = ("valid_path", "target_reached", "ended", "n_pred_cells", "optimal_moves", "correct_streak",
                "n_forks", "first_fork_correct")


@dataclasses.dataclass(frozen=True)
class FirstError:
    """The decision where a predicted path first left every shortest path.

    ``step`` k: the path entry that is wrong (0 = the first cell; k = the number of entries when
    the path stopped or lacked ``<PATH_END>``: then that slot is wrong). ``at``: the cell it was
    at, entry k-1 (-1 at step 0: at ``<PATH_START>``). ``chose``: the cell it wrote as entry k
    (-1: no cell, see ``written``). ``correct``: the right cells there (open neighbours of ``at``
    one step closer; in a tree one cell, the stored path's next; at step 0 the origin; empty at
    the target, where ``<PATH_END>`` is right). ``position``: the token of the model's own
    sequence (``run.ids(i, own=True)``) whose next-token logits made the choice, so
    ``run.lens(i, own=True)[:, position]`` is every layer's view of it. ``written``: the tokens
    written in that slot ("" if the output ran out).
    """

    step: int
    kind: str  # a key of KINDS
    at: int
    chose: int
    correct: tuple[int, ...]
    position: int = -1  # -1: not known (first_wrong_step alone; Run.first_error fills it)
    written: str = ""

    def describe(self, n: int) -> str:
        """One line, cells as ``(r,c)`` on an n x n grid."""
        def cell(c: int) -> str:
            return f"({c // n},{c % n})" if c >= 0 else "-"
        right = " or ".join(cell(c) for c in self.correct) or "<PATH_END>"
        at = cell(self.at) if self.at >= 0 else "<PATH_START>"
        wrote = cell(self.chose) if self.chose >= 0 else (self.written or "nothing")
        return f"step {self.step} at {at} (position {self.position}): wrote {wrote} [{self.kind}], correct {right}"


def first_wrong_step(n: int, open_row: np.ndarray, origin: int, target: int, cells, ended: bool,
                     dist: np.ndarray) -> FirstError | None:
    """The first wrong entry of a predicted path, or None when the path is exact.

    ``open_row`` uint8 ``[E]`` (canonical edges); ``cells``: the decoded entries (-1 = names no
    cell; ``tokens.decode_path``); ``ended``: ``<PATH_END>`` followed them; ``dist`` int
    ``[n*n]``: BFS distance of every cell to ``target`` (``bfs_distances``). Positions unknown.
    """
    nbr, via = neighbour_table(n)
    cells = [int(c) for c in cells]
    if not cells or cells[0] != int(origin):
        return FirstError(0, "start", -1, cells[0] if cells else -1, (int(origin),))
    for k in range(1, len(cells) + 1):
        at = cells[k - 1]  # every earlier step was correct: a cell, dist[at] = D - (k - 1)
        if at == target:
            if k == len(cells) and ended:
                return None
            return FirstError(k, "overshoot", at, cells[k] if k < len(cells) else -1, ())
        right = tuple(int(b) for b, e in zip(nbr[at], via[at])
                      if b >= 0 and open_row[e] and dist[b] == dist[at] - 1)
        if k == len(cells):
            return FirstError(k, "early_end", at, -1, right)
        chose = cells[k]
        if chose in right:
            continue
        if chose < 0:
            kind = "not_a_cell"
        elif chose in nbr[at]:
            kind = "wrong_turn" if open_row[via[at][list(nbr[at]).index(chose)]] else "wall"
        else:
            kind = "jump"
        return FirstError(k, kind, at, chose, right)
    raise AssertionError("unreachable")


def failure_table(predictions: pd.DataFrame, mazes: MazeBatch, dist: np.ndarray) -> pd.DataFrame:
    """One row per maze whose ``exact_path`` is false, indexed by its row ``i`` in ``mazes``: its
    maze_id, the first wrong step (``step``, ``kind``, ``at``, ``chose``, ``correct``) and
    :data:`KEPT_METRICS` as the predictions file has them. ``predictions`` holds ``mazes`` in
    order (stage evaluate writes it so; a dataset may hold one maze twice, so rows are matched by
    position, not by maze_id). ``dist`` int ``[B, n*n]``."""
    if not np.array_equal(predictions["maze_id"].to_numpy(np.uint64), mazes.maze_id):
        raise ValueError("the predictions do not hold the dataset's mazes in order")
    records = []
    for i in np.flatnonzero(~predictions["exact_path"].to_numpy(bool)):
        rec = predictions.iloc[i]
        err = first_wrong_step(mazes.grid_n, mazes.open[i], int(mazes.origin[i]), int(mazes.target[i]),
                               rec["predicted_path"], bool(rec["ended"]), dist[i])
        if err is None:
            raise ValueError(f"maze {i} (maze_id {rec['maze_id']}): exact_path is false but its path is exact")
        records.append({"i": int(i), "maze_id": int(rec["maze_id"]), "step": err.step, "kind": err.kind, "at": err.at,
                        "chose": err.chose, "correct": err.correct, **{m: rec[m] for m in KEPT_METRICS}})
    columns = ["i", "maze_id", "step", "kind", "at", "chose", "correct", *KEPT_METRICS]
    return pd.DataFrame.from_records(records, columns=columns).set_index("i").sort_index()
