"""Stage parallel: the three cell categories (alternatives, true path ahead, discarded) on a
hand-built maze and against networkx shortest-path distances, planted residuals that encode the
alternatives at one layer (high there, chance elsewhere and for both controls, the explore-then-
discard shape), and the stage's files, byte-identical on rerun."""

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from helpers import batch_from_paths
from mazesearch.data.maze import edge_endpoints, edge_index, n_edges, write_mazes
from mazesearch.interp import parallel
from mazesearch.interp.labels import emit_step
from mazesearch.io import StageError
from mazesearch.params import ParallelSpec, ParamsError, parse_params
from probe_fixtures import FakeStore, store_index, tree_mazes

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
PLANTED = "blocks.0.hook_resid_post"  # the one layer that encodes the alternatives


@pytest.fixture(scope="module")
def batch():
    return tree_mazes(4, 200, seed=7)


def labels_at(batch, index, k):
    dist, free, kind = parallel.categories(batch, index)
    return parallel.version_labels(dist, free, kind, k)


def cells(row):
    return set(np.flatnonzero(row).tolist())


def test_hand_built_maze():
    """3x3, cells row-major; path 0-1-2-5-8, a branch 1-4 with 4-3-6 and 4-7 hanging off it:

        0 - 1 - 2
            |   |
        3 - 4   5
        |   |   |
        6   7   8
    """
    open_ = np.zeros((1, n_edges(3)), dtype=np.uint8)
    for a, b in [(0, 1), (1, 2), (2, 5), (5, 8), (1, 4), (4, 3), (3, 6), (4, 7)]:
        open_[0, edge_index(3, a, b)] = 1
    batch = batch_from_paths(3, open_, [[0, 1, 2, 5, 8]])
    index = store_index(batch)  # path_start (s=0), then s = 1 .. 5
    assert index["path_step"].tolist() == [0, 1, 2, 3, 4, 5]
    want = {  # s -> (alternatives, ahead, discarded) at k = 2
        0: ({4}, {1, 2}, set()),  # at <PATH_START> the current cell is the origin, nothing passed
        1: ({4}, {1, 2}, set()),
        2: ({4, 3, 7}, {2, 5}, set()),  # at the fork 1: the whole branch within 2 moves
        3: (set(), {5, 8}, {4}),  # at 2: the branch at 1 is behind, only reached back through 1
        4: (set(), {8}, set()),  # at 5: 4 is 3 moves away
        5: (set(), set(), set()),  # at the target
    }
    got = labels_at(batch, index, 2)
    for s, (alt, ahead, gone) in want.items():
        got_s = (cells(got["alternatives"][s]), cells(got["ahead"][s]), cells(got["discarded"][s]))
        assert got_s == (alt, ahead, gone), s
    one = labels_at(batch, index, 1)
    assert cells(one["alternatives"][2]) == {4} and cells(one["ahead"][2]) == {2} and not one["discarded"].any()
    three = labels_at(batch, index, 3)
    assert cells(three["discarded"][4]) == {4} and cells(three["alternatives"][2]) == {3, 4, 6, 7}


def _oracle(batch, index, k):
    """Row by row with networkx: the maze graph, and the graph without the cells the path has left."""
    ends = edge_endpoints(batch.grid_n)
    out = {v: np.zeros((len(index), batch.grid_n**2), dtype=bool) for v in parallel.VERSIONS}
    for i, (m, s) in enumerate(zip(index["maze_row"], index["path_step"])):
        G = nx.Graph()
        G.add_nodes_from(range(batch.grid_n**2))
        G.add_edges_from(ends[batch.open[m].astype(bool)].tolist())
        path = batch.path(m).tolist()
        c = path[max(s, 1) - 1]
        free = G.subgraph([x for x in G if x not in path[: max(s - 1, 0)]])
        d = nx.single_source_shortest_path_length(G, c)
        d_free = nx.single_source_shortest_path_length(free, c)
        for x in G:
            if x == c:
                continue
            if x in path[s:] and d.get(x, 99) <= k:
                out["ahead"][i, x] = True
            if x not in path and d_free.get(x, 99) <= k:
                out["alternatives"][i, x] = True
            elif x not in path and d.get(x, 99) <= k:
                out["discarded"][i, x] = True
    return out


def test_categories_match_networkx_on_trees_and_cyclic_mazes(batch):
    small = tree_mazes(4, 25, seed=3)
    rng = np.random.default_rng(0)
    cyclic = small.open.copy()
    cyclic[rng.random(cyclic.shape) < 0.15] = 1  # extra open edges: loops, the stored path kept
    loopy = batch_from_paths(4, cyclic, [small.path(m).tolist() for m in range(len(small))])
    for b in (small, loopy):
        index = store_index(b)
        for k in (1, 2, 4):
            got, want = labels_at(b, index, k), _oracle(b, index, k)
            for v in parallel.VERSIONS:
                assert np.array_equal(got[v], want[v]), (k, v)


def test_on_trees_an_alternative_hangs_off_the_current_cell_or_a_cell_ahead(batch):
    """The tree reading of the definition: an off-path cell is an alternative (any k large enough)
    iff the path cell it hangs off has index >= s - 1, else discarded; ahead is path[s..]."""
    index = store_index(batch)
    got = labels_at(batch, index, 16)
    order = emit_step(batch)
    ends = edge_endpoints(4)
    for i in range(0, len(index), 7):
        m, s = int(index["maze_row"][i]), int(index["path_step"][i])
        G = nx.Graph(ends[batch.open[m].astype(bool)].tolist())
        path = batch.path(m).tolist()
        for x in range(16):
            if order[m, x] >= 0:
                assert not got["alternatives"][i, x] and not got["discarded"][i, x]
                assert got["ahead"][i, x] == (order[m, x] >= max(s, 1))
                continue
            attach = min(path, key=lambda p: nx.shortest_path_length(G, p, x))
            assert got["alternatives"][i, x] == (path.index(attach) >= s - 1), (i, x)
            assert got["discarded"][i, x] == (path.index(attach) < s - 1), (i, x)


def planted(batch, seed=0):
    """Trained: at PLANTED the alternatives (k=2) per cell, +-1.5 in 16 of 24 dimensions, plus normal
    noise of sd 0.5; unit noise elsewhere. Random-init: unit noise at every layer."""
    rng = np.random.default_rng(seed)
    index = store_index(batch)
    alt = labels_at(batch, index, 2)["alternatives"]
    noise = lambda: rng.normal(size=(len(index), 24))  # noqa: E731
    trained = {layer: noise() for layer in LAYERS}
    trained[PLANTED] = np.c_[3.0 * alt - 1.5, np.zeros((len(index), 8))] + 0.5 * noise()
    return FakeStore(index, trained), FakeStore(index, {layer: noise() for layer in LAYERS})


def test_planted_alternatives_score_at_their_layer_only(batch):
    trained, random_init = planted(batch)
    d = parallel.run_parallel(batch, trained, random_init, ParallelSpec(max_rows=1500))
    assert d["best_layer"] == PLANTED and d["method"]["ks"] == [1, 2]
    assert d["n_fit_rows"] + d["n_test_rows"] <= 1500
    alt = d["versions"]["alternatives"]
    top = alt["layers"][PLANTED]["2"]
    assert top["trained"] > 0.9 and top["near"]["trained"] > 0.9
    for layer in LAYERS:
        s = alt["layers"][layer]["2"]
        for run in ("random_init", "permuted"):
            assert abs(s[run] - 0.5) < 0.06, (layer, run, s)
        if layer != PLANTED:
            assert abs(s["trained"] - 0.5) < 0.06, (layer, s)
        assert s["stronger_control"] == max(s["random_init"], s["permuted"])
    shape = alt["shape"]
    assert shape["peak_layer"] == PLANTED and shape["explore_then_discard"] and shape["drop_after_peak"] > 0.3
    m = parallel.headline(d)
    assert m == {"alternatives": {"trained": top["trained"], "stronger_control": top["stronger_control"],
                                  "ahead": d["versions"]["ahead"]["layers"][PLANTED]["2"]["trained"]}}


def test_stage_writes_reports_deterministically(batch, tmp_path, monkeypatch, saved_figures):
    import yaml

    import stages.parallel as stage

    trained, random_init = planted(batch)
    stores = {"trained": trained, "random": random_init}
    monkeypatch.setattr(stage, "open_store", lambda path: stores[Path(path).name])
    raw = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    raw["parallel"].update(max_rows=900)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_mazes(batch, tmp_path / "mazes" / f"{raw['activations']['dataset']}.parquet")
    outs = []
    for run in ("a", "b"):
        stage.main(["--params", str(tmp_path / "params.yaml"), "--mazes-dir", str(tmp_path / "mazes"),
                    "--activations-dir", str(tmp_path / "acts"), "--out-dir", str(tmp_path / run)])
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / run).iterdir())})
    assert sorted(outs[0]) == ["by_layer.csv", "details.json", "metrics.json", "parallel.png"]
    assert outs[0] == outs[1]  # byte-identical reruns
    metrics = json.loads(outs[0]["metrics.json"])
    assert list(metrics) == ["alternatives"]
    assert list(metrics["alternatives"]) == ["trained", "stronger_control", "ahead"]
    assert metrics["alternatives"]["trained"] > 0.85  # 3 numbers, the planted layer's
    table = pd.read_csv(tmp_path / "a" / "by_layer.csv")
    assert table["layer"].tolist() == LAYERS and table["layer_idx"].tolist() == [0, 1, 2]
    assert table.columns.tolist()[2:] == parallel.CSV_COLUMNS
    assert table["alternatives"].idxmax() == 1
    assert outs[0]["parallel.png"][:8] == b"\x89PNG\r\n\x1a\n"
    axes = saved_figures[0].axes
    assert len(axes) == 4  # one panel per version, then the gaps
    assert "alternatives" in axes[0].get_title() and "explore, then discard" in axes[0].get_title()


def test_a_cache_without_path_rows_and_a_bad_k_are_clear_errors(batch):
    index = store_index(batch)
    keep = (index["kind"] == "target_end").to_numpy()  # none: store_index writes no target_end rows
    store = FakeStore(index[keep].reset_index(drop=True), {"embed": np.zeros((keep.sum(), 4))})
    with pytest.raises(StageError, match="no path"):
        parallel.run_parallel(batch, store, store, ParallelSpec())
    with pytest.raises(ParamsError, match="parallel"):
        raw = __import__("yaml").safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
        raw["parallel"].update(k=3, max_k=2)
        parse_params(raw)
