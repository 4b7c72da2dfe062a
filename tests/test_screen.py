"""The lever screen's table (mazesearch.bench.screen): grouping by lever, mean over seeds, the
pooled Wilson interval over every seed's mazes, unknown levers refused."""

import json

import pytest

from mazesearch.bench import screen
from mazesearch.evaluation.stats import wilson_interval


def recipe_json(root, name, rates, tps=50_000.0):
    suites = {s: {"grid_n": 7, "n_mazes": n, "feedable": True, "model_exact": k / n, "model_ci95": [0, 1],
                  "baseline_exact": 0.2, "baseline_ci95": [0, 1]} for s, (k, n) in rates.items()}
    doc = {"name": name, "overrides": ["train.max_steps=10", "model.seed=0", "train.seed=0", "train.lr=0.001"],
           "minutes": {"train": 2.0}, "train_tokens_per_s": tps, "suites": suites}
    (root / f"recipe-{name}.json").write_text(json.dumps(doc))


def test_table_pools_seeds_per_lever(tmp_path, monkeypatch):
    bench = tmp_path / "reports" / "bench"
    bench.mkdir(parents=True)
    recipe_json(bench, "t1-base-seed0", {"test": (800, 2000), "size_5": (50, 500), "size_5_placed": (60, 500)})
    recipe_json(bench, "t1-base-seed1", {"test": (900, 2000), "size_5": (70, 500), "size_5_placed": (40, 500)})
    recipe_json(bench, "t1-lr1e-3-seed0", {"test": (1000, 2000), "size_5": (10, 500), "size_5_placed": (20, 500)},
                tps=40_000.0)
    recipe_json(bench, "t2-base-seed0", {"test": (1, 2000), "size_5": (1, 500), "size_5_placed": (1, 500)})
    monkeypatch.chdir(tmp_path)
    screen.main(["table", "--prefix", "t1"])
    doc = json.loads((bench / "screen-t1.json").read_text())
    assert set(doc["levers"]) == {"base", "lr1e-3"}  # t2 is another screen
    base = doc["levers"]["base"]
    assert base["seeds"] == [0, 1]
    assert base["suites"]["test"]["mean"] == pytest.approx(0.425)
    assert base["suites"]["test"]["per_seed"] == pytest.approx([0.4, 0.45])
    assert base["suites"]["test"]["pooled_ci95"] == pytest.approx(list(wilson_interval(1700, 4000)))
    assert doc["levers"]["lr1e-3"]["train_tokens_per_s"] == 40_000.0
    md = (bench / "screen-t1.md").read_text().splitlines()
    assert md[0].count("|") == md[1].count("|") == md[2].count("|")  # a well-formed markdown table
    assert md[2].startswith("| base |") and "`train.lr=0.001`" in md[3]


def test_run_refuses_an_unknown_lever(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="unknown lever"):
        screen.main(["run", "--only", "base,nope"])


def test_instrument_rows_put_each_score_beside_its_controls():
    from mazesearch.bench import instruments

    files = {
        "reports/eval/suites/test.json": {"model_exact": 0.9, "model_exact_lo": 0.88, "model_exact_hi": 0.92,
                                          "baseline_exact": 0.3},
        "reports/probes/metrics/walls.json": {"best_layer": "blocks.2.hook_resid_post", "test_score": 0.8,
                                              "selectivity_vs_random_init": 0.3, "selectivity_vs_permuted": None},
        "reports/reach/metrics.json": {"target": {"embed": 0, "blocks.0.hook_resid_post": 2},
                                       "current": {"embed": 1, "blocks.0.hook_resid_post": 3}},
    }
    rows = instruments.rows(files.get)
    assert rows["exact: test (baseline)"] == "0.900 [0.880, 0.920] (0.300)"
    assert rows["probe walls: trained / random-init / permuted"] == "0.800 / 0.500 / — at blocks.2"
    assert rows["reach (target): k per layer"] == "0 2" and rows["reach (current): k per layer"] == "1 3"
    assert rows["exact: size_5 (baseline)"] == "—" and rows["faithfulness: k heads for 95% (ranked / random / ablation order) of n"] == "—"
