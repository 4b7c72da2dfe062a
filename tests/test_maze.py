import numpy as np
import pyarrow.parquet as pq
import pytest

from mazesearch.io import InputError
from mazesearch.data.maze import (
    MazeBatch, edge_endpoints, edge_index, maze_ids, n_edges, neighbour_table, read_mazes,
    write_mazes,
)


def _batch(rng, B=5, n=3):
    E = n_edges(n)
    open_ = rng.integers(0, 2, size=(B, E), dtype=np.uint8)
    paths = [rng.integers(0, n * n, size=rng.integers(2, 6)).astype(np.int32) for _ in range(B)]
    offsets = np.zeros(B + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in paths])
    return MazeBatch(
        grid_n=n, generator="percolation", open=open_,
        origin=np.array([p[0] for p in paths], np.int32),
        target=np.array([p[-1] for p in paths], np.int32),
        path_flat=np.concatenate(paths), path_offsets=offsets,
        n_shortest_paths=rng.integers(1, 4, size=B).astype(np.int64),
        forks_on_path=rng.integers(0, 3, size=B).astype(np.int16),
        n_dead_ends=rng.integers(0, 3, size=B).astype(np.int16),
    )


def test_edge_geometry_small_grid():
    # 2x2: cells 0 1 / 2 3; horizontal edges (0,1) (2,3), then vertical (0,2) (1,3)
    assert edge_endpoints(2).tolist() == [[0, 1], [2, 3], [0, 2], [1, 3]]
    assert n_edges(2) == 4 and n_edges(5) == 40
    for n in (2, 3, 6):
        for e, (a, b) in enumerate(edge_endpoints(n)):
            assert edge_index(n, a, b) == e == edge_index(n, b, a)
    with pytest.raises(ValueError, match="not lattice-adjacent"):
        edge_index(3, 2, 3)  # (0,2) and (1,0) wrap around a row


def test_neighbour_table_directions():
    nbr, via = neighbour_table(3)
    # centre cell 4 = (1,1): N=1, E=5, S=7, W=3
    assert nbr[4].tolist() == [1, 5, 7, 3]
    assert nbr[0].tolist() == [-1, 1, 3, -1]
    ends = edge_endpoints(3)
    for cell in range(9):
        for d in range(4):
            if nbr[cell, d] >= 0:
                assert sorted(ends[via[cell, d]]) == sorted([cell, nbr[cell, d]])


def test_maze_id_is_content_hash():
    rng = np.random.default_rng(0)
    b = _batch(rng)
    again = maze_ids(b.grid_n, b.open.copy(), b.origin.copy(), b.target.copy())
    assert np.array_equal(b.maze_id, again)
    flipped = b.open.copy()
    flipped[0, 0] ^= 1
    assert maze_ids(3, flipped, b.origin, b.target)[0] != b.maze_id[0]
    assert maze_ids(3, b.open, b.target, b.origin)[0] != b.maze_id[0]


def test_parquet_round_trip_and_determinism(tmp_path):
    b = _batch(np.random.default_rng(1), B=50, n=4)
    write_mazes(b, tmp_path / "a.parquet")
    write_mazes(b, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert not list(tmp_path.glob("*.tmp"))
    back = read_mazes(tmp_path / "a.parquet", check=False)  # random walls and paths: not valid mazes
    for field in ("open", "origin", "target", "path_flat", "path_offsets", "n_shortest_paths",
                  "forks_on_path", "n_dead_ends", "maze_id"):
        assert np.array_equal(getattr(back, field), getattr(b, field)), field
    assert back.grid_n == 4 and back.generator == "percolation"
    table = pq.read_table(tmp_path / "a.parquet")
    assert table["path_len"].to_pylist() == (np.diff(b.path_offsets) - 1).tolist()


def test_take_and_concat():
    b = _batch(np.random.default_rng(2), B=6)
    sub = b.take(np.array([4, 1]))
    assert np.array_equal(sub.path(0), b.path(4)) and np.array_equal(sub.path(1), b.path(1))
    both = MazeBatch.concat([b.take(np.arange(3)), b.take(np.arange(3, 6))])
    assert np.array_equal(both.path_flat, b.path_flat) and np.array_equal(both.maze_id, b.maze_id)


def test_corrupt_file_gives_clear_error(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ValueError, match="not readable Parquet"):
        read_mazes(bad)
    with pytest.raises(InputError, match="does not exist.*dvc repro"):
        read_mazes(tmp_path / "missing.parquet")


def test_read_mazes_checks_layout_and_every_maze(tmp_path):
    import pyarrow as pa

    from helpers import batch_from_paths
    from mazesearch.data.dataset import build_mazes
    from mazesearch.data.maze import read_grid_n, read_maze_ids

    good, _ = build_mazes(generator="dfs", grid_n=3, n_mazes=6, seed=0)
    write_mazes(good, tmp_path / "good.parquet")
    assert np.array_equal(read_mazes(tmp_path / "good.parquet").maze_id, good.maze_id)
    # 2x2, every edge closed, the stored path 0 -> 1 walks through the wall between them
    through_wall = batch_from_paths(2, np.zeros((1, n_edges(2)), np.uint8), [[0, 1]])
    write_mazes(through_wall, tmp_path / "wall.parquet")
    with pytest.raises(InputError, match=r"wall.parquet: maze file row 0 \(maze_id \d+\) is not a valid maze: "
                                         r"path step 1 passes through a wall"):
        read_mazes(tmp_path / "wall.parquet")
    assert len(read_mazes(tmp_path / "wall.parquet", check=False)) == 1  # the layout is fine
    table = good.to_arrow()
    for edit, match in [
        (lambda t: t.drop(["origin"]), r"lacks columns \['origin'\]"),
        (lambda t: t.set_column(t.column_names.index("origin"), "origin", pa.array(["a"] * 6)), "'origin' must be integers"),
        (lambda t: t.set_column(t.column_names.index("edges"), "edges", pa.array([b"x"] * 6, pa.binary())), "fixed_size_binary"),
        (lambda t: t.set_column(t.column_names.index("target"), "target", pa.array([1, None, 1, 1, 1, 1], pa.int16())), "null values"),
        (lambda t: t.slice(0, 0), "no rows"),
    ]:
        pq.write_table(edit(table), tmp_path / "bad.parquet")
        with pytest.raises(InputError, match="bad.parquet: maze file does not hold valid mazes .*" + match):
            read_mazes(tmp_path / "bad.parquet")
    pq.write_table(table.drop(["maze_id"]), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match=r"bad.parquet: maze file lacks columns \['maze_id'\]"):
        read_maze_ids(tmp_path / "bad.parquet")
    pq.write_table(table.set_column(1, "grid_n", pa.array([3, 3, 4, 3, 3, 3], pa.uint8())), tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="mixes grid sizes"):
        read_grid_n(tmp_path / "bad.parquet")
