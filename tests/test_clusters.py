"""Stage clusters: the row labels against independent rules, leave-one-maze-out kNN purity
against a brute-force oracle (ties included), planted residuals whose one layer encodes the
distance to the target (purity near 1 there, both controls at chance), and the stage's files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mazesearch.data.maze import write_mazes
from mazesearch.evaluation.metrics import decision_points
from mazesearch.interp import clusters
from mazesearch.interp.labels import emit_step
from mazesearch.params import ClustersSpec
from probe_fixtures import FakeStore, store_index, tree_mazes

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
PLANTED = "blocks.0.hook_resid_post"  # the one layer that encodes dist_to_target


@pytest.fixture(scope="module")
def batch():
    return tree_mazes(4, 200, seed=5)


def oracle_purity(Z, maze, y, k):
    """Row by row in plain Python: distances to every other-maze row, sorted; the rows closer
    than the k-th count whole, the rows tied with it share what is left of k."""
    scores = []
    for i in range(len(Z)):
        others = [j for j in range(len(Z)) if maze[j] != maze[i]]
        dist = {j: float(np.sqrt(((Z[j] - Z[i]) ** 2).sum())) for j in others}
        kth = sorted(dist.values())[k - 1]
        closer = [j for j in others if dist[j] < kth - 1e-9]
        tied = [j for j in others if abs(dist[j] - kth) <= 1e-9]
        share = (k - len(closer)) / len(tied)
        scores.append((sum(y[j] == y[i] for j in closer) + share * sum(y[j] == y[i] for j in tied)) / k)
    return float(np.mean(scores))


def test_row_labels_follow_their_rules(batch):
    index = store_index(batch)
    labels, cell = clusters.row_labels(batch, index)
    path = (index["kind"] == "path").to_numpy()
    m, s = index["maze_row"].to_numpy(), index["path_step"].to_numpy()
    L = np.diff(batch.path_offsets)[m]
    assert (labels["dist_to_target"][~path] == -1).all() and (labels["fork"][~path] == -1).all()
    assert np.array_equal(labels["dist_to_target"][path], (L - s)[path])  # moves left on a shortest path
    k, off = decision_points(batch)  # evaluation's own (numba) rule for a decision
    fork = np.full(len(index), -1)
    for i in np.flatnonzero(path & (s < L)):
        fork[i] = int(s[i] - 1 in set(k[off[m[i]]:off[m[i] + 1]].tolist()))
    assert np.array_equal(labels["fork"], fork)
    assert 0.1 < (labels["fork"] == 1).sum() / (labels["fork"] >= 0).sum() < 0.9
    c = cell["cell"][0] * 4 + cell["cell"][1]
    ahead = emit_step(batch)[m, c] >= s  # still to be emitted
    assert np.array_equal(labels["on_future_path"][path], ahead[path].astype(int))
    rates = [(emit_step(batch)[m[path], x] >= s[path]).mean() for x in range(16)]
    assert abs(rates[c] - 0.5) == min(abs(r - 0.5) for r in rates)  # the most undecided cell


def test_purity_matches_a_brute_force_oracle():
    rng = np.random.default_rng(0)
    maze = np.repeat(np.arange(12), rng.integers(1, 6, 12))
    Z = rng.normal(size=(len(maze), 5))
    y = rng.integers(0, 3, len(maze))
    for k in (1, 4, 7):
        assert clusters.knn_purity(Z, maze, [y], k)[0] == pytest.approx(oracle_purity(Z, maze, y, k), abs=1e-12)
    # ties: three distinct vectors only (as at the embeddings, one per token)
    Zt = np.eye(3)[rng.integers(0, 3, len(maze))] + 0.0
    for k in (2, 5):
        assert clusters.knn_purity(Zt, maze, [y], k)[0] == pytest.approx(oracle_purity(Zt, maze, y, k), abs=1e-12)
    assert clusters.chance(np.array([0, 0, 0, 1])) == pytest.approx(0.75**2 + 0.25**2)


def test_own_maze_neighbours_do_not_count():
    """Rows of one maze sit together and share their label: that is maze identity, and must
    score chance, not 1 (a version that lets a row's own maze in fails here)."""
    rng = np.random.default_rng(1)
    maze = np.repeat(np.arange(300), 5)
    Z = np.repeat(rng.normal(size=(300, 8)), 5, axis=0) + 0.01 * rng.normal(size=(1500, 8))
    y = np.repeat(rng.integers(0, 2, 300), 5)
    assert abs(clusters.knn_purity(Z, maze, [y], 4)[0] - clusters.chance(y)) < 0.04


def planted(batch, seed=0):
    """Trained: at PLANTED the distance to the target one-hot (x3) in 16 of 24 dimensions, plus
    noise (0.3; z-scoring gives every dimension unit variance, so the code must outweigh the 8
    noise-only ones); noise elsewhere. Random-init: noise at every layer."""
    rng = np.random.default_rng(seed)
    index = store_index(batch)
    labels, _ = clusters.row_labels(batch, index)
    code = 3.0 * np.eye(16)[np.maximum(labels["dist_to_target"], 0)]  # [rows, 16]
    noise = lambda: rng.normal(size=(len(index), 24))  # noqa: E731
    trained = {layer: noise() for layer in LAYERS}
    trained[PLANTED] = np.c_[code, np.zeros((len(index), 8))] + 0.3 * noise()
    return FakeStore(index, trained), FakeStore(index, {layer: noise() for layer in LAYERS})


def test_planted_distance_clusters_and_controls_stay_at_chance(batch):
    trained, random_init = planted(batch)
    details, maps = clusters.run_clusters(batch, trained, random_init, ClustersSpec(tsne_rows=60, max_rows=900))
    d = details["labels"]["dist_to_target"]
    assert details["n_rows"] <= 900 and d["n_rows"] == details["n_rows"]
    assert d["best_layer"] == PLANTED
    top = d["layers"][PLANTED]
    assert top["purity"]["trained"] > 0.97 and top["trained"] > 0.8
    for layer in LAYERS:  # every score beside both controls: at chance where nothing is planted
        s = d["layers"][layer]
        assert abs(s["random_init"]) < 0.03 and abs(s["permuted"]) < 0.03, (layer, s)
        if layer != PLANTED:
            assert abs(s["trained"]) < 0.03, (layer, s)
        assert s["purity"]["permuted"] == pytest.approx(s["permuted"] + d["chance"], abs=2e-6)
    assert clusters.headline(details) == {"dist_to_target": {r: top[r] for r in clusters.RUNS}}
    assert [len(maps["points"][r]) for r in ("trained", "random_init")] == [3, 3]
    assert maps["points"]["trained"][0].shape == (details["n_map_rows"], 2) == (len(maps["colour"]), 2)


def test_stage_writes_reports_deterministically(batch, tmp_path, monkeypatch, saved_figures):
    import yaml

    import stages.clusters as stage

    trained, random_init = planted(batch)
    stores = {"trained": trained, "random": random_init}
    monkeypatch.setattr(stage, "open_store", lambda path: stores[Path(path).name])
    raw = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    raw["clusters"].update(tsne_rows=60, max_rows=600)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_mazes(batch, tmp_path / "mazes" / f"{raw['activations']['dataset']}.parquet")
    outs = []
    for run in ("a", "b"):
        stage.main(["--params", str(tmp_path / "params.yaml"), "--mazes-dir", str(tmp_path / "mazes"),
                    "--activations-dir", str(tmp_path / "acts"), "--out-dir", str(tmp_path / run)])
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / run).iterdir())})
    assert sorted(outs[0]) == ["by_layer.csv", "details.json", "maps.png", "metrics.json"]
    assert outs[0] == outs[1]  # byte-identical reruns
    metrics = json.loads(outs[0]["metrics.json"])
    assert list(metrics) == ["dist_to_target"] and list(metrics["dist_to_target"]) == list(clusters.RUNS)
    assert metrics["dist_to_target"]["trained"] > 0.8  # 3 numbers, the planted layer's
    table = pd.read_csv(tmp_path / "a" / "by_layer.csv")
    assert table["layer"].tolist() == LAYERS and table["layer_idx"].tolist() == [0, 1, 2]
    assert table.columns.tolist()[2:5] == ["dist_to_target", "dist_to_target_random_init", "dist_to_target_permuted"]
    assert table["dist_to_target"].idxmax() == 1
    assert outs[0]["maps.png"][:8] == b"\x89PNG\r\n\x1a\n"
    axes = [ax for ax in saved_figures[0].axes if ax.get_label() != "<colorbar>"]
    assert len(axes) == 2 * len(LAYERS)  # trained above random-init, one map per layer
    assert [ax.get_ylabel() for ax in axes[:: len(LAYERS)]] == ["trained", "random-init"]


def test_a_cache_without_path_rows_is_one_clear_error(batch):
    from mazesearch.io import StageError

    index = store_index(batch)
    keep = (index["kind"] != "path").to_numpy()
    store = FakeStore(index[keep].reset_index(drop=True), {"embed": np.zeros((keep.sum(), 4))})
    with pytest.raises(StageError, match="no path rows"):
        clusters.run_clusters(batch, store, store, ClustersSpec())
