import numpy as np
import pytest

import mazesearch.data.dataset as dataset
from mazesearch.data.dataset import build_mazes, is_spanning_tree
from mazesearch.data.maze import MazeBatch, edge_endpoints, maze_ids, read_mazes, write_mazes
from mazesearch.params import GENERATORS
from mazesearch.data.validate import MazeValidationError, validate

FIELDS = ("open", "origin", "target", "path_flat", "path_offsets", "n_shortest_paths",
          "forks_on_path", "n_dead_ends", "maze_id")


def assert_same(a: MazeBatch, b: MazeBatch):
    assert (a.grid_n, a.generator, len(a)) == (b.grid_n, b.generator, len(b))
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), f


def test_deterministic_arrays_and_parquet_bytes(tmp_path):
    args = dict(generator="dfs", grid_n=5, n_mazes=700, seed=3, min_path_len=3)
    a, info_a = build_mazes(**args)
    b, info_b = build_mazes(**args)
    assert_same(a, b)
    assert info_a == info_b and len(a) == 700 == info_a["n_mazes"]
    write_mazes(a, tmp_path / "a.parquet")
    write_mazes(b, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    other, _ = build_mazes(**{**args, "seed": 4})
    assert not np.array_equal(a.maze_id, other.maze_id)


def test_result_does_not_depend_on_chunking_and_is_prefix_stable():
    args = dict(generator="percolation", grid_n=4, seed=11, p=0.4, min_path_len=2)
    whole, info = build_mazes(n_mazes=900, **args)
    chunked, info_chunked = build_mazes(n_mazes=900, chunk_size=97, **args)
    assert_same(whole, chunked)
    assert info == info_chunked
    assert info["n_dropped_no_endpoints"] > 0  # sparse percolation: some mazes have no pair
    prefix, _ = build_mazes(n_mazes=250, **args)  # maze j depends on (seed, j) only
    assert_same(prefix, whole.take(np.arange(250)))


def test_info_counts_and_means():
    batch, info = build_mazes(generator="percolation", grid_n=3, n_mazes=500, seed=0, p=0.3)
    assert info["n_generated"] == info["n_mazes"] + info["n_dropped_no_endpoints"] + info["n_dropped_overlap"]
    assert info["n_dropped_overlap"] == 0 and not info["spanning_tree"]
    assert info["mean_path_len"] == pytest.approx(batch.path_len.mean())
    assert info["mean_forks_on_path"] == pytest.approx(batch.forks_on_path.mean())
    assert info["mean_dead_ends"] == pytest.approx(batch.n_dead_ends.mean())
    assert info["frac_multiple_shortest_paths"] == pytest.approx((batch.n_shortest_paths > 1).mean())
    assert info["n_duplicates"] == len(batch) - len(np.unique(batch.maze_id)) > 0  # tiny grid
    assert all(type(v) in (int, float, bool, type(None)) for v in info.values())  # JSON-ready
    assert info["sizes"] is None and info["placement"] is None  # not a coverage dataset


def test_exclusion_drops_and_reports_overlap():
    # 2x2 dfs: 4 spanning trees x 12 (origin, target) pairs = 48 distinct mazes
    first, _ = build_mazes(generator="dfs", grid_n=2, n_mazes=40, seed=0)
    excluded = np.unique(first.maze_id)
    second, info = build_mazes(generator="dfs", grid_n=2, n_mazes=60, seed=1, exclude_ids=first.maze_id)
    assert not np.isin(second.maze_id, excluded).any()
    assert info["n_dropped_overlap"] > 0
    assert info["n_generated"] == 60 + info["n_dropped_overlap"] + info["n_dropped_no_endpoints"]
    # oracle: the same build without exclusion, filtered, in order
    plain, _ = build_mazes(generator="dfs", grid_n=2, n_mazes=info["n_generated"], seed=1)
    keep = np.flatnonzero(~np.isin(plain.maze_id, excluded))
    assert len(keep) == 60
    assert_same(second, plain.take(keep))


def test_every_generator_builds_valid_batches():
    opts = {"percolation": dict(p=0.6), "dfs_percolation": dict(p=0.2),
            "open_field": dict(n_obstacles=2)}
    for gen in GENERATORS:
        batch, info = build_mazes(generator=gen, grid_n=6, n_mazes=300, seed=5, **opts.get(gen, {}))
        assert len(batch) == 300 and batch.generator == gen
        assert info["spanning_tree"] == (gen in ("dfs", "wilson", "kruskal", "recursive_division"))
        validate(batch, spanning_tree=info["spanning_tree"])
        assert np.array_equal(batch.maze_id, maze_ids(6, batch.open, batch.origin, batch.target))
        if info["spanning_tree"]:
            assert (batch.n_shortest_paths == 1).all()
    assert not is_spanning_tree("dfs", {"max_cells": 10})
    assert not is_spanning_tree("dfs", {"forkless": True})


def test_endpoint_options_reach_the_dataset():
    batch, _ = build_mazes(generator="dfs", grid_n=6, n_mazes=200, seed=2, origin_at_dead_end=True,
                           target_at_dead_end=True, min_manhattan=5, min_path_len=8)
    assert (batch.path_len >= 8).all()
    manhattan = np.abs(batch.origin // 6 - batch.target // 6) + np.abs(batch.origin % 6 - batch.target % 6)
    assert (manhattan >= 5).all()
    ends = edge_endpoints(6)
    for i in range(len(batch)):  # dead ends: the path's first and last cells have one open edge
        for cell in (batch.path(i)[0], batch.path(i)[-1]):
            assert batch.open[i][(ends == cell).any(axis=1)].sum() == 1


def test_parquet_round_trip(tmp_path):
    batch, _ = build_mazes(generator="wilson", grid_n=7, n_mazes=300, seed=9)
    write_mazes(batch, tmp_path / "m.parquet")
    back = read_mazes(tmp_path / "m.parquet")
    assert_same(batch, back)
    validate(back, spanning_tree=True)


def test_bad_arguments_and_impossible_options():
    with pytest.raises(ValueError, match=r"unknown maze option\(s\) \['colour'\]"):
        build_mazes(generator="dfs", grid_n=4, n_mazes=10, seed=0, colour="red")
    with pytest.raises(ValueError, match="unknown generator kind 'maze'"):
        build_mazes(generator="maze", grid_n=4, n_mazes=10, seed=0)
    with pytest.raises(ValueError, match="n_mazes >= 1"):
        build_mazes(generator="dfs", grid_n=4, n_mazes=0, seed=0)
    with pytest.raises(ValueError, match="exclude_ids must be a 1-D array"):
        build_mazes(generator="dfs", grid_n=4, n_mazes=10, seed=0, exclude_ids=np.zeros((2, 2)))
    # an open 3x3 field has no shortest path longer than 4 moves
    with pytest.raises(ValueError, match=r"only 0 of 10 mazes after generating \d+ \(\d+ had no endpoints"):
        build_mazes(generator="open_field", grid_n=3, n_mazes=10, seed=0, min_path_len=5)
    # every 2x2 dfs maze is excluded: the build must stop, not loop forever
    every, _ = build_mazes(generator="dfs", grid_n=2, n_mazes=2000, seed=0)
    with pytest.raises(ValueError, match=r"were in exclude_ids"):
        build_mazes(generator="dfs", grid_n=2, n_mazes=10, seed=1, exclude_ids=every.maze_id)


def test_generator_bugs_are_caught_by_validation(monkeypatch):
    real = dataset.generate_open

    def leaky(kind, n, seeds, **kw):  # a "dfs" that sometimes opens one edge too many
        out = real(kind, n, seeds, **kw)
        out[5, np.flatnonzero(out[5] == 0)[0]] = 1
        return out

    monkeypatch.setattr(dataset, "generate_open", leaky)
    with pytest.raises(MazeValidationError, match="maze 5: spanning-tree maze has 25 open edges.*bug"):
        build_mazes(generator="dfs", grid_n=5, n_mazes=50, seed=0)


def test_progress_bar_goes_to_stderr(monkeypatch, capsys):
    import io

    class Terminal(io.StringIO):  # bars are drawn on a terminal only (tests/test_progress.py)
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(dataset, "_PROGRESS_MIN", 10)
    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    build_mazes(generator="dfs", grid_n=4, n_mazes=50, seed=0, progress=True)
    assert "dfs 4x4" in err.getvalue() and capsys.readouterr().out == ""
    err.seek(0)
    err.truncate()
    build_mazes(generator="dfs", grid_n=4, n_mazes=5, seed=0, progress=True)
    assert err.getvalue() == ""


def test_data_benchmark_smoke(tmp_path):
    import json

    from mazesearch.bench.__main__ import available
    from mazesearch.bench.data import main

    assert "data" in available()
    out = tmp_path / "data.json"
    main(["--quick", "--no-reference", "--sizes", "4", "--generators", "dfs", "wilson", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert [(r["generator"], r["grid_n"]) for r in doc["build_mazes"]] == [("dfs", 4), ("wilson", 4)]
    assert all(r["ours"]["per_s"] > 0 and "reference" not in r for r in doc["build_mazes"])
    assert doc["tokenize"]["ours"]["n_mazes"] > 0 and doc["machine"]["cpu_count"] >= 1
    assert doc["target"]["measured_per_s"] is None  # no 6x6 dfs row in this run
