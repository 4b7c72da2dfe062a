"""mazesearch.evaluation.pictures: suite pictures drawn from the predictions file alone."""

import numpy as np
import pyarrow as pa
import pytest

from mazesearch.data.dataset import build_mazes
from mazesearch.evaluation.pictures import draw_suite, picture_rows, shown_paths
from mazesearch.io import InputError


@pytest.fixture(scope="module")
def batch():
    return build_mazes(generator="dfs", grid_n=3, n_mazes=6, seed=3)[0]


def _table(batch, exact, fed=True):
    B = len(batch)
    true = [batch.path(i).tolist() for i in range(B)]
    wrong = [p[:1] + [-1] for p in true]
    paths = [t if e else w for t, e, w in zip(true, exact, wrong)]
    return pa.table({
        "maze_id": pa.array(batch.maze_id),
        "predicted_path": pa.array(paths if fed else [None] * B, pa.list_(pa.int16())),
        "exact_path": pa.array(list(exact) if fed else [None] * B, pa.bool_()),
        "baseline_path": pa.array(true, pa.list_(pa.int16())),
        "baseline_exact_path": pa.array([True] * B),
    })


def test_model_paths_failures_first(batch):
    exact = [True, False, True, True, False, True]
    paths, failed, fed = shown_paths(_table(batch, exact), batch)
    assert fed and failed.tolist() == [not e for e in exact]
    assert paths[1] == [int(batch.path(1)[0]), -1] and paths[0] == batch.path(0).tolist()
    assert picture_rows(failed, 4).tolist() == [1, 4, 0, 2]
    assert picture_rows(failed, 0).tolist() == []


def test_unfed_suite_shows_the_baseline(batch):
    paths, failed, fed = shown_paths(_table(batch, [True] * 6, fed=False), batch)
    assert not fed and not failed.any()
    assert paths == [batch.path(i).tolist() for i in range(len(batch))]


def test_predictions_of_other_mazes_are_refused(batch, tmp_path):
    table = _table(batch, [True] * 6)
    with pytest.raises(InputError, match="not for these 5 mazes"):
        shown_paths(table, batch.take(np.arange(5)), tmp_path / "p.parquet")
    swapped = table.set_column(0, "maze_id", pa.array(batch.maze_id[::-1].copy()))
    with pytest.raises(InputError, match="maze_id differs"):
        shown_paths(swapped, batch)
    with pytest.raises(InputError, match="lacks columns"):
        shown_paths(table.drop(["baseline_path"]), batch)


def test_draw_suite_writes_a_png_or_nothing(batch, tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(_table(batch, [False, True, True, True, True, True]), tmp_path / "s.parquet")
    assert draw_suite(batch, tmp_path / "s.parquet", 3, tmp_path / "s.png") == 3
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert draw_suite(batch, tmp_path / "s.parquet", 0, tmp_path / "none.png") == 0
    assert not (tmp_path / "none.png").exists()


def test_panels_name_the_maze_and_show_its_noncell_entries(batch, tmp_path, saved_figures):
    import pyarrow.parquet as pq
    from matplotlib.patches import FancyArrowPatch

    table = _table(batch, [False, True, True, True, True, True])  # row 0: [origin, -1]
    pq.write_table(table, tmp_path / "s.parquet")
    assert draw_suite(batch, tmp_path / "s.parquet", 3, tmp_path / "s.png") == 3
    (fig,) = saved_figures
    panels = fig.axes  # rows 0 (failed), 1, 2: failures first
    paths = table["predicted_path"].to_pylist()
    for ax, row in zip(panels, [0, 1, 2]):
        title = ax.get_title()
        assert title.startswith(f"maze_id {batch.maze_id[row]}\n") and f"{batch.forks_on_path[row]} forks" in title
        assert ("FAIL" in title) == (row == 0) and ("1 non-cell entry" in title) == (row == 0)
        arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_gid() == "predicted-step"]
        pairs = [(a, b) for a, b in zip(paths[row], paths[row][1:]) if a >= 0 and b >= 0]
        assert len(arrows) == len(pairs) == (0 if row == 0 else len(paths[row]) - 1)
    assert [t.get_text() for t in panels[0].texts if t.get_gid() == "predicted-noncell"] == ["?"]
