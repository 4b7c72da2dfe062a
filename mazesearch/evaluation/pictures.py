"""Suite pictures from the stored predictions (stage ``pictures``), apart from the rollouts.

Stage evaluate writes ``data/predictions/<suite>.parquet``; everything a picture needs is there
(the predicted path of every maze, or nulls when the model cannot read the suite, and the
baseline's path and exact flag), so picture params (``evaluate.n_pictures``) rerun only this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from mazesearch.data.maze import MazeBatch, read_parquet
from mazesearch.io import InputError

PICTURE_COLUMNS = ["maze_id", "predicted_path", "exact_path", "baseline_path", "baseline_exact_path"]


def shown_paths(table: pa.Table, batch: MazeBatch, path: str | Path = "predictions") -> tuple[list[list[int]], np.ndarray, bool]:
    """``(paths, failed bool [B], feedable)``: the model's paths and not-exact flags, or the
    baseline's when the model could not read the suite (its columns are all null). ``table`` must
    hold one row per maze of ``batch``, in the same order (``InputError`` naming ``path`` if not)."""
    missing = [c for c in PICTURE_COLUMNS if c not in table.column_names]
    if missing:
        raise InputError(path, f"predictions file lacks columns {missing}")
    ids = table["maze_id"].to_numpy()
    if len(ids) != len(batch) or not np.array_equal(ids.astype(np.uint64), batch.maze_id):
        raise InputError(path, f"predictions ({len(ids)} rows) are not for these {len(batch)} mazes "
                               "(maze_id differs)", "rerun the evaluate stage")
    feedable = table.num_rows == 0 or table["predicted_path"].null_count < table.num_rows
    path_col, exact_col = ("predicted_path", "exact_path") if feedable else ("baseline_path", "baseline_exact_path")
    for col in (path_col, exact_col):
        if table[col].null_count:
            raise InputError(path, f"predictions file has null {col} rows")
    paths = table[path_col].to_pylist()
    failed = ~table[exact_col].to_numpy(zero_copy_only=False).astype(bool)
    return paths, failed, feedable


def picture_rows(failed: np.ndarray, n_pictures: int) -> np.ndarray:
    """Up to n_pictures row indices: failures first, then successes, each in file order."""
    order = np.concatenate([np.flatnonzero(failed), np.flatnonzero(~failed)])
    return order[:n_pictures]


def draw_suite(batch: MazeBatch, predictions_path: str | Path, n_pictures: int, out_png: str | Path) -> int:
    """Draw up to ``n_pictures`` mazes of a suite with their predicted paths, failures first;
    returns how many were drawn (0: nothing written)."""
    table = read_parquet(predictions_path, "predictions file", columns=PICTURE_COLUMNS)
    paths, failed, feedable = shown_paths(table, batch, predictions_path)
    if n_pictures <= 0 or not len(batch):
        return 0
    from mazesearch.viz.render import render_mazes

    idx = picture_rows(failed, n_pictures)
    who = "" if feedable else " (baseline)"
    titles = [f"maze_id {int(batch.maze_id[i])}\n{int(batch.forks_on_path[i])} forks{who}" for i in idx]
    render_mazes(batch, idx, out_png, predicted=[paths[i] for i in idx], failed=failed[idx], titles=titles)
    return len(idx)
