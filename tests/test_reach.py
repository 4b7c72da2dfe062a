"""Stage reach: BFS distances against networkx, and planted stores whose layer j linearly encodes
"cell within k moves of the anchor" for k <= j and nothing beyond: the reach must come out j."""

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from mazesearch.data.maze import edge_index, neighbour_table, write_mazes
from mazesearch.interp import reach
from mazesearch.params import ProbesSpec, ReachSpec
from probe_fixtures import FakeStore, store_index, tree_mazes

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["embed", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
PLANTED = [0, 1, 2, 3]  # layer j encodes k = 1 .. PLANTED[j]
# strict enough that k+1, partly guessable from the k-ball's shape, does not pass (docs/interp.md)
CHEAP_MLP = dict(mlp_hidden=8, mlp_max_iter=20, mlp_max_rows=600)  # the MLP has its own tests (test_reach_mlp.py)
SPEC = ReachSpec(max_k=5, min_balanced_accuracy=0.975, min_selectivity=0.1, **CHEAP_MLP)


def nx_distances(batch, index: pd.DataFrame) -> np.ndarray:
    """Oracle: networkx BFS from each row's anchor (target at path_start, current cell at path
    rows), -1 for unreachable cells and for target_end rows."""
    n = batch.grid_n
    nbr, _ = neighbour_table(n)
    out = np.full((len(index), n * n), -1, dtype=np.int64)
    graphs = {}
    for i, (m, kind, cur) in enumerate(zip(index["maze_row"], index["kind"], index["current_cell"])):
        if m not in graphs:
            g = nx.Graph()
            g.add_nodes_from(range(n * n))
            g.add_edges_from((a, int(b)) for a in range(n * n) for b in nbr[a]
                             if b > a and batch.open[m, edge_index(n, a, int(b))])
            graphs[m] = g
        anchor = int(batch.target[m]) if kind == "path_start" else int(cur) if kind == "path" else None
        if anchor is not None:
            for cell, d in nx.single_source_shortest_path_length(graphs[m], anchor).items():
                out[i, cell] = d
    return out


def planted(batch, seed: int = 0):
    """Trained layer j: the within-k bits (both anchors, read at their own rows) for k <= PLANTED[j],
    plus the anchor cell one-hot, plus noise. Random-init: the anchor one-hot plus noise at every
    layer, as a real untrained model carries the token it reads: so the control holds exactly
    what the lattice alone gives, and only the planted bits are selective."""
    rng = np.random.default_rng(seed)
    index = store_index(batch)
    dist = nx_distances(batch, index)
    n_cells = batch.grid_n**2
    kind = index["kind"].to_numpy()
    anchor = np.where(kind == "path_start", batch.target[index["maze_row"]], index["current_cell"])
    onehot = np.eye(n_cells)[anchor]
    arrays_t, arrays_r = {}, {}
    for layer, K in zip(LAYERS, PLANTED):
        bits = [((dist >= 0) & (dist <= k)).astype(np.float64) for k in range(1, K + 1)]
        signal = np.concatenate([onehot] + bits, axis=1) * 2 - 1
        arrays_t[layer] = np.c_[signal + 0.1 * rng.normal(size=signal.shape), rng.normal(size=(len(index), 4))]
        arrays_r[layer] = onehot * 2 - 1 + 0.1 * rng.normal(size=onehot.shape)
    width = max(a.shape[1] for a in arrays_t.values())  # one width for every layer, as in a real cache
    pad = lambda a: np.c_[a, rng.normal(size=(len(index), width - a.shape[1]))]  # noqa: E731
    return (FakeStore(index, {k: pad(v) for k, v in arrays_t.items()}),
            FakeStore(index, {k: pad(v) for k, v in arrays_r.items()}))


@pytest.fixture(scope="module")
def batch():
    return tree_mazes(4, 300, seed=3)


def test_anchor_distances_match_networkx(batch):
    index = store_index(batch)
    oracle = nx_distances(batch, index)
    for version, kind in reach.VERSIONS.items():
        dist, defined = reach.anchor_distances(batch, index, version)
        assert np.array_equal(defined, index["kind"].to_numpy() == kind)
        assert np.array_equal(dist[defined], oracle[defined]), version
        assert (dist[~defined] == -1).all()
    labels = reach.within(oracle, [1, 3])
    assert labels.shape == (len(index), 32)
    assert np.array_equal(labels[:, 16:], (oracle >= 0) & (oracle <= 3))


def test_planted_reach_is_recovered_exactly(batch):
    trained, random_init = planted(batch)
    details = reach.run_reach(batch, trained, random_init, ProbesSpec(), SPEC)
    head = reach.headline(details)
    for version in ("target", "current"):
        assert list(head[version].values()) == PLANTED, (version, head[version])
        d = details["versions"][version]
        assert d["ks"] == list(range(1, 6))
        for layer, K in zip(LAYERS, PLANTED):
            by_k = d["layers"][layer]["by_k"]
            for k in range(1, K + 1):  # planted: near perfect, far above both controls
                assert by_k[str(k)]["trained"] > 0.985
                assert by_k[str(k)]["selectivity"]["vs_stronger"] > SPEC.min_selectivity
            for k in range(1, 6):  # every score beside its controls; permuted labels at chance
                assert abs(by_k[str(k)]["permuted"] - 0.5) < 0.1
                s = by_k[str(k)]
                assert s["selectivity"]["vs_stronger"] == pytest.approx(
                    s["trained"] - max(s["random_init"], s["permuted"]), abs=2e-6)


def test_reach_of_takes_the_largest_passing_k():
    spec = ReachSpec(min_balanced_accuracy=0.8, min_selectivity=0.1)
    assert reach.reach_of([0.9, 0.85, 0.7], [0.3, 0.2, 0.2], spec, [1, 2, 3]) == 2
    assert reach.reach_of([0.9, 0.85, 0.9], [0.3, 0.05, 0.2], spec, [1, 2, 3]) == 3  # not contiguous
    assert reach.reach_of([0.79, None], [0.3, None], spec, [1, 2]) == 0


def test_stage_writes_reports_deterministically(batch, tmp_path, monkeypatch, saved_figures):
    import yaml

    import stages.reach as stage

    trained, random_init = planted(batch)
    stores = {"trained": trained, "random": random_init}
    monkeypatch.setattr(stage, "open_store", lambda path: stores[Path(path).name])
    raw = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    raw["reach"].update(max_k=4, min_balanced_accuracy=0.975, min_selectivity=0.1, **CHEAP_MLP)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_mazes(batch, tmp_path / "mazes" / f"{raw['activations']['dataset']}.parquet")
    outs = []
    for run in ("a", "b"):
        stage.main(["--params", str(tmp_path / "params.yaml"), "--mazes-dir", str(tmp_path / "mazes"),
                    "--activations-dir", str(tmp_path / "acts"), "--out-dir", str(tmp_path / run)])
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / run).iterdir())})
    assert sorted(outs[0]) == ["details.json", "metrics.json", "reach.csv", "reach.png", "reach_mlp.png"]
    assert outs[0] == outs[1]  # byte-identical reruns
    metrics = json.loads(outs[0]["metrics.json"])
    mlp = metrics.pop("mlp_largest")
    assert metrics == {v: dict(zip(LAYERS, PLANTED)) for v in ("target", "current")}
    details = json.loads(outs[0]["details.json"])
    for v in ("target", "current"):  # the headline's MLP number is the largest of its per-layer reaches
        assert mlp[v] == max(details["versions"][v]["mlp"]["layers"][l]["reach"] for l in LAYERS)
    table = pd.read_csv(tmp_path / "a" / "reach.csv")
    assert table.columns.tolist() == ["layer_idx", "layer", "reach_target", "reach_current", "reach_target_mlp",
                                      "reach_current_mlp"]
    assert table["reach_target"].tolist() == PLANTED and table["layer"].tolist() == LAYERS
    assert table["reach_target_mlp"].max() == mlp["target"]
    assert outs[0]["reach.png"][:8] == outs[0]["reach_mlp.png"][:8] == b"\x89PNG\r\n\x1a\n"
    for fig, probe in zip(saved_figures[:2], ("linear probe", "MLP probe")):
        titles = [ax.get_title() for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert len(titles) == 6 and sum("control" in t for t in titles) == 4  # trained beside both controls
        assert all(t.startswith(probe) for t in titles)
