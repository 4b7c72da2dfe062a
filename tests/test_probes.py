"""Probes (mazesearch.interp.probes): splits by maze, planted signal, controls, scikit-learn oracles."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

from mazesearch.interp.labels import Label, build_labels
from mazesearch.data.maze import n_edges
from mazesearch.interp.probe_report import by_layer_csv, headline
from mazesearch.interp.probe_scores import binary_scores, multiclass_scores
from mazesearch.interp.probes import (
    FIT, TEST, VAL, fit_and_score, fit_and_score_sets, fit_logistic_multilabel, fit_logistic_multinomial,
    fit_ridge, permute_across_mazes, run_probes, split_by_maze, split_sides, standardize,
)
from mazesearch.params import ProbesSpec
from probe_fixtures import FakeStore, planted_stores, store_index, tree_mazes


# ---------------------------------------------------------------------------- split


def test_split_is_by_maze_and_seeded():
    rng = np.random.default_rng(0)
    maze_id = rng.integers(0, 40, size=500).astype(np.uint64)
    test = split_by_maze(maze_id, 0.25, seed=3)
    assert not set(maze_id[test].tolist()) & set(maze_id[~test].tolist())
    assert len(set(maze_id[test].tolist())) == round(0.25 * len(np.unique(maze_id)))
    assert np.array_equal(test, split_by_maze(maze_id, 0.25, seed=3))
    assert not np.array_equal(test, split_by_maze(maze_id, 0.25, seed=4))
    with pytest.raises(ValueError, match="at least 2 distinct mazes"):
        split_by_maze(np.zeros(5, np.uint64), 0.25, 0)
    with pytest.raises(ValueError, match="test_frac"):
        split_by_maze(maze_id, 1.0, 0)


def test_split_sides_fit_val_test_by_maze():
    rng = np.random.default_rng(1)
    maze_id = rng.integers(0, 60, size=900).astype(np.uint64)
    side = split_sides(maze_id, 0.25, 0.2, seed=3)
    assert np.array_equal(side == TEST, split_by_maze(maze_id, 0.25, seed=3))  # the test set as before
    ids = {c: set(maze_id[side == c].tolist()) for c in (FIT, VAL, TEST)}
    assert not (ids[FIT] & ids[VAL] or ids[FIT] & ids[TEST] or ids[VAL] & ids[TEST])
    assert len(ids[VAL]) == round(0.2 * (len(ids[FIT]) + len(ids[VAL])))
    assert np.array_equal(side, split_sides(maze_id, 0.25, 0.2, seed=3))
    with pytest.raises(ValueError, match="non-test mazes"):
        split_sides(np.repeat(np.arange(2, dtype=np.uint64), 3), 0.5, 0.2, seed=0)


def test_best_layer_is_chosen_on_val_not_on_test():
    """Layer `val_best` carries the signal on fit and val mazes but is noise on test mazes;
    layer `test_best` carries a weaker signal everywhere. Test scores favour `test_best`, val
    scores `val_best`: best_layer must follow val, and the headline reports the test score there."""
    batch = tree_mazes(4, 120, seed=5)
    index = store_index(batch)
    cfg = ProbesSpec()
    side = split_sides(index["maze_id"].to_numpy().astype(np.uint64), cfg.test_frac, cfg.val_frac, cfg.seed)
    signal = 2.0 * build_labels(batch, index, ["future_path"])["future_path"].values - 1.0
    rng = np.random.default_rng(0)
    noise = lambda: rng.normal(size=signal.shape)  # noqa: E731
    val_best = np.where((side == TEST)[:, None], noise(), signal + 0.3 * noise())
    test_best = signal + 2.0 * noise()
    trained = FakeStore(index, {"val_best": val_best, "test_best": test_best})
    random_init = FakeStore(index, {"val_best": noise(), "test_best": noise()})
    metrics, _ = run_probes(batch, trained, random_init, cfg, names=["future_path"], progress=False)
    m = metrics["future_path"]
    score = lambda split, layer: m["layers"][layer][split]["trained"]["balanced_accuracy"]  # noqa: E731
    assert score("test", "test_best") > score("test", "val_best") + 0.05  # test would pick test_best
    assert score("val", "val_best") > score("val", "test_best") + 0.05
    assert m["best_layer"] == "val_best"
    assert headline(metrics)["future_path"]["test_score"] == score("test", "val_best")
    # mutating the test mazes' activations of every layer never moves best_layer
    for arrays in (trained._arrays,):
        for layer in arrays:
            arrays[layer][side == TEST] = rng.normal(size=((side == TEST).sum(), signal.shape[1]))
    again, _ = run_probes(batch, trained, random_init, cfg, names=["future_path"], progress=False)
    assert again["future_path"]["best_layer"] == "val_best"
    assert again["future_path"]["layers"]["val_best"]["val"] == m["layers"]["val_best"]["val"]


def test_one_fit_scored_on_several_sets():
    rng = np.random.default_rng(3)
    X, Z = _planted(rng, 3000, 8, 3)
    Y = Z > 0
    label = Label("x", "multilabel", Y, np.ones(len(Y), bool), 3)
    cfg = ProbesSpec()
    fits = fit_and_score_sets(label, X[:2000], Y[:2000], {"a": (X[2000:2500], Y[2000:2500]),
                                                           "b": (X[2500:], Y[2500:]), "empty": (X[:0], Y[:0])}, cfg)
    assert fits["a"].scores == fit_and_score(label, X[:2000], Y[:2000], X[2000:2500], Y[2000:2500], cfg).scores
    assert fits["b"].scores == fit_and_score(label, X[:2000], Y[:2000], X[2500:], Y[2500:], cfg).scores
    assert math.isnan(fits["empty"].scores["balanced_accuracy"]) and fits["empty"].scores["n_outputs_defined"] == 0


def test_run_probes_does_not_leak_maze_identity():
    """Activations = a random code per maze; label = random per maze (the target cell).

    A row-level split lets the probe memorize maze codes; the by-maze split must not."""
    batch = tree_mazes(3, 60, seed=1)
    index = store_index(batch)
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(len(batch), 64))[index["maze_row"]]
    codes = codes + 0.1 * rng.normal(size=(len(index), 64))
    store = FakeStore(index, {"embed": codes})
    cfg = ProbesSpec(max_iter=300, C=10.0)
    metrics, _ = run_probes(batch, store, store, cfg, names=["target"], progress=False)
    by_maze = metrics["target"]["layers"]["embed"]["test"]["trained"]["balanced_accuracy"]
    label = build_labels(batch, index, ["target"])["target"]
    rows = np.flatnonzero(label.defined)
    row_test = np.random.default_rng(1).random(len(rows)) < 0.25
    X, y = codes[rows], label.values[rows]
    by_row = fit_and_score(label, X[~row_test], y[~row_test], X[row_test], y[row_test], cfg).scores
    assert by_row["balanced_accuracy"] > 0.9  # the leak a row split would have
    assert by_maze < 0.4  # chance is 1/9
    assert metrics["target"]["n_test_rows"] > 0


# ---------------------------------------------------------------------------- planted signal


def _planted(rng, n, d, K):
    X = rng.normal(size=(n, d))
    A = rng.normal(size=(d, K))
    return X, X @ A


@pytest.mark.parametrize("signal", [True, False])
def test_planted_signal_multilabel(signal):
    rng = np.random.default_rng(0)
    X, Z = _planted(rng, 16000, 20, 5)
    Y = Z > 0 if signal else rng.random((16000, 5)) < 0.5
    label = Label("x", "multilabel", Y, np.ones(len(Y), bool), 5)
    fit = fit_and_score(label, X[:12000], Y[:12000], X[12000:], Y[12000:], ProbesSpec())
    if signal:
        assert fit.scores["balanced_accuracy"] > 0.95 and fit.scores["auroc"] > 0.99
    else:
        assert abs(fit.scores["balanced_accuracy"] - 0.5) < 0.05
        assert abs(fit.scores["auroc"] - 0.5) < 0.05
    assert fit.per_output_f1.shape == (5,) and fit.scores["n_outputs_defined"] == 5


@pytest.mark.parametrize("signal", [True, False])
def test_planted_signal_multiclass_and_regression(signal):
    rng = np.random.default_rng(1)
    X, Z = _planted(rng, 8000, 16, 4)
    y = Z.argmax(axis=1) if signal else rng.integers(0, 4, size=8000)
    label = Label("x", "multiclass", y, np.ones(len(y), bool), 4)
    s = fit_and_score(label, X[:6000], y[:6000], X[6000:], y[6000:], ProbesSpec()).scores
    assert (s["balanced_accuracy"] > 0.9) if signal else (abs(s["balanced_accuracy"] - 0.25) < 0.05)
    v = Z[:, 0] + 0.1 * rng.normal(size=8000) if signal else rng.normal(size=8000)
    label = Label("v", "regression", v, np.ones(len(v), bool), 1)
    s = fit_and_score(label, X[:6000], v[:6000], X[6000:], v[6000:], ProbesSpec()).scores
    assert (s["r2"] > 0.95) if signal else (abs(s["r2"]) < 0.02)
    assert s["mean_baseline_r2"] <= 0.0


def test_run_probes_end_to_end_with_controls():
    batch = tree_mazes(4, 100, seed=2)
    trained, random_init = planted_stores(batch)
    metrics, f1 = run_probes(batch, trained, random_init, ProbesSpec(max_iter=100), progress=False)
    assert set(metrics) == {
        "future_path", "on_solution", "walls", "target", "next_move", "dist_to_target"}
    for name in ("future_path", "walls", "target"):
        m = metrics[name]
        assert m["best_layer"] == "blocks.0.hook_resid_post", name
        good = m["layers"]["blocks.0.hook_resid_post"]
        test, val = good["test"], good["val"]
        # (0.9 before the val split took a fifth of the fit mazes)
        assert test["trained"]["balanced_accuracy"] > 0.85 and val["trained"]["balanced_accuracy"] > 0.85, name
        assert abs(test["random_init"]["balanced_accuracy"] - test["trained"]["balanced_accuracy"]
                   + good["selectivity"]["vs_random_init"]) < 2e-6  # rounded to 6 places
        assert good["selectivity"]["vs_random_init"] > 0.3, name
        assert good["selectivity"]["vs_permuted"] > 0.2, name
        assert test["trained"]["balanced_accuracy"] > test["trained"]["majority"] - 0.5
        assert m["void_controls"] == {}
        assert min(m["n_fit_rows"], m["n_val_rows"], m["n_test_rows"]) > 0
    # random-init and noise layers sit near chance for binary multilabel probes
    assert abs(metrics["future_path"]["layers"]["embed"]["test"]["trained"]["balanced_accuracy"] - 0.5) < 0.1
    assert {run: f.shape for run, f in f1["walls"]["blocks.0.hook_resid_post"].items()} == dict.fromkeys(
        ("trained", "random_init", "permuted"), (n_edges(4),))
    assert metrics["dist_to_target"]["main_score"] == "r2"
    # remaining distance is a function of (path length, step): the same-shape control is void,
    # so its selectivity is null (never a fake 0.0), and the headline and plot leave it out
    dist = metrics["dist_to_target"]
    assert dist["permuted_label_agreement"] == 1.0 and list(dist["void_controls"]) == ["permuted"]
    for layer in dist["layers"].values():
        assert layer["selectivity"]["vs_permuted"] is None
        assert layer["selectivity"]["vs_random_init"] is not None
    head = headline(metrics)
    assert head["dist_to_target"]["selectivity_vs_permuted"] is None
    assert head["dist_to_target"]["selectivity_vs_random_init"] is not None
    assert pd.read_csv(__import__("io").StringIO(by_layer_csv(dist)))["permuted"].isna().all()
    assert metrics["future_path"]["permuted_label_agreement"] < 0.95
    assert metrics["walls"]["permuted_unmoved_mazes"] == 0
    json.dumps(metrics, allow_nan=False)  # NaN became null
    again, _ = run_probes(batch, trained, random_init, ProbesSpec(max_iter=100), progress=False)
    assert json.dumps(again, sort_keys=True) == json.dumps(metrics, sort_keys=True)


def test_positions_missing_from_the_cache_leave_probes_undefined():
    batch = tree_mazes(3, 30, seed=4)
    trained, random_init = planted_stores(batch)
    for store in (trained, random_init):  # a cache of path tokens only: no <PATH_START> rows
        keep = (store.index["kind"] == "path").to_numpy()
        store.index = store.index[keep].reset_index(drop=True)
        store._arrays = {k: v[keep] for k, v in store._arrays.items()}
    metrics, f1 = run_probes(batch, trained, random_init, ProbesSpec(max_iter=30), progress=False)
    for name in ("walls", "on_solution"):
        assert metrics[name]["best_layer"] is None and metrics[name]["n_fit_rows"] == 0
        assert metrics[name]["layers"]["embed"]["test"]["trained"]["balanced_accuracy"] is None
        # an undefined control is null selectivity, never 0.0
        assert metrics[name]["layers"]["embed"]["selectivity"] == {"vs_random_init": None, "vs_permuted": None}
        assert all(np.isnan(f).all() for f in f1[name]["embed"].values())
        assert headline(metrics)[name] == dict.fromkeys(
            ("best_layer", "test_score", "selectivity_vs_random_init", "selectivity_vs_permuted"))
    assert metrics["future_path"]["n_fit_rows"] > 0
    json.dumps(metrics, allow_nan=False)


def test_mismatched_stores_are_rejected():
    batch = tree_mazes(3, 10, seed=3)
    a, b = planted_stores(batch)
    b.layers = b.layers[:1]
    with pytest.raises(ValueError, match="layer lists differ"):
        run_probes(batch, a, b, ProbesSpec(), progress=False)
    a, b = planted_stores(batch)
    b.index = b.index.iloc[::-1].reset_index(drop=True)
    with pytest.raises(ValueError, match="indexes differ"):
        run_probes(batch, a, b, ProbesSpec(), progress=False)


# ---------------------------------------------------------------------------- permuted control


def test_permutation_moves_whole_mazes_to_same_shape_mazes():
    rng = np.random.default_rng(5)
    lengths = rng.integers(2, 5, size=30)  # rows per maze = its shape
    maze_id = np.repeat(np.arange(100, 130, dtype=np.uint64), lengths)
    slot = np.concatenate([np.arange(k) for k in lengths]).astype(np.int64)
    group = (maze_id % 2).astype(np.int64)
    shuffle = rng.permutation(len(maze_id))  # row order must not matter
    maze_id, slot, group = maze_id[shuffle], slot[shuffle], group[shuffle]
    src, unmoved = permute_across_mazes(maze_id, slot, group, seed=0)
    assert sorted(src.tolist()) == list(range(len(src)))  # a permutation of rows
    assert np.array_equal(slot[src], slot)  # slot by slot
    assert np.array_equal(group[src], group)  # never across the split
    donors = {}
    for m in np.unique(maze_id):
        from_ = set(maze_id[src[maze_id == m]].tolist())
        assert len(from_) == 1, "a maze's labels must come from exactly one other maze"
        donors[int(m)] = from_.pop()
    classes = {}
    for m in np.unique(maze_id):
        classes.setdefault((int(m % 2), int((maze_id == m).sum())), []).append(int(m))
    assert unmoved == sum(len(c) == 1 for c in classes.values())
    for members in classes.values():
        if len(members) > 1:
            assert all(donors[m] != m and donors[m] in members for m in members)
    assert np.array_equal(src, permute_across_mazes(maze_id, slot, group, seed=0)[0])
    assert not np.array_equal(src, permute_across_mazes(maze_id, slot, group, seed=1)[0])
    with pytest.raises(ValueError, match="different groups"):
        permute_across_mazes(maze_id, slot, np.arange(len(maze_id)), seed=0)


# ---------------------------------------------------------------------------- against scikit-learn


def test_batched_logistic_matches_sklearn():
    rng = np.random.default_rng(2)
    X, Z = _planted(rng, 400, 6, 3)
    Y = (Z + rng.normal(size=Z.shape)) > 0
    Xs, _ = standardize(X, X)
    W, b = fit_logistic_multilabel(Xs, Y, C=0.5, max_iter=500, tol=1e-9)
    for k in range(3):
        ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(Xs, Y[:, k])
        # both optimisers stop at gtol ~1e-9 on standardised features: coefficients of order 1 agree
        # to far better than 1e-4 (the bound is the optimisers' tolerance, not float rounding)
        np.testing.assert_allclose(W[:, k], ref.coef_[0], atol=1e-4)
        np.testing.assert_allclose(b[k], ref.intercept_[0], atol=1e-4)
    y = Z.argmax(axis=1)
    W, b = fit_logistic_multinomial(Xs, y, 3, C=0.5, max_iter=500, tol=1e-9)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit(Xs, y)
    from scipy.special import softmax
    np.testing.assert_allclose(softmax(Xs @ W + b, axis=1), ref.predict_proba(Xs), atol=1e-4)
    v = Z[:, 0] + rng.normal(size=400)
    w, c = fit_ridge(X, v, alpha=3.0)
    ref = Ridge(alpha=3.0).fit(X, v)
    np.testing.assert_allclose(w, ref.coef_, atol=1e-8)
    assert abs(c - ref.intercept_) < 1e-8


def test_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    Y = rng.random((300, 4)) < [0.1, 0.5, 0.7, 0.3]
    P = np.clip(Y * 0.3 + rng.random((300, 4)) * 0.7, 0, 1).round(1)  # ties on purpose
    s = binary_scores(Y, P, np.array([False, True, True, False]))
    for k in range(4):
        pred = P[:, k] >= 0.5
        assert math.isclose(s["accuracy"][k], accuracy_score(Y[:, k], pred))
        assert math.isclose(s["balanced_accuracy"][k], balanced_accuracy_score(Y[:, k], pred))
        assert math.isclose(s["macro_f1"][k], f1_score(Y[:, k], pred))
        assert math.isclose(s["auroc"][k], roc_auc_score(Y[:, k], P[:, k]))
    assert math.isclose(s["majority"][1], (Y[:, 1]).mean())
    y = rng.integers(0, 5, size=300)
    logits = rng.normal(size=(300, 5)) + 1.5 * np.eye(5)[y]
    P = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = multiclass_scores(y, P, majority=2)
    pred = P.argmax(axis=1)
    assert math.isclose(m["accuracy"], accuracy_score(y, pred))
    assert math.isclose(m["balanced_accuracy"], balanced_accuracy_score(y, pred))
    assert math.isclose(m["macro_f1"], f1_score(y, pred, average="macro"))
    assert math.isclose(m["auroc"], roc_auc_score(y, P, multi_class="ovr", average="macro"))
    assert math.isclose(m["majority"], (y == 2).mean())


# ---------------------------------------------------------------------------- undefined labels


def test_constant_columns_and_classes_are_undefined_not_crashes():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(200, 5))
    Y = np.zeros((200, 3), bool)
    Y[:, 1] = X[:, 0] > 0
    Y[150:, 2] = X[150:, 1] > 0  # varies in train only... constant (False) in the test split
    Y[:150, 2] = False
    Y[:150, 2][::7] = True
    label = Label("x", "multilabel", Y, np.ones(200, bool), 3)
    Y_test = Y[150:] & np.array([True, True, False])
    fit = fit_and_score(label, X[:150], Y[:150], X[150:], Y_test, ProbesSpec())
    assert np.isnan(fit.per_output_f1[[0, 2]]).all() and np.isfinite(fit.per_output_f1[1])
    assert fit.scores["n_outputs_defined"] == 1
    none = fit_and_score(label, X[:150], Y[:150] & False, X[150:], Y[150:], ProbesSpec())
    assert none.scores["n_outputs_defined"] == 0 and math.isnan(none.scores["balanced_accuracy"])
    one_class = Label("c", "multiclass", np.full(200, 3), np.ones(200, bool), 9)
    y = one_class.values
    s = fit_and_score(one_class, X[:150], y[:150], X[150:], y[150:], ProbesSpec()).scores
    assert math.isnan(s["balanced_accuracy"])
    const = Label("r", "regression", np.ones(200), np.ones(200, bool), 1)
    v = const.values
    s = fit_and_score(const, X[:150], v[:150], X[150:], v[150:], ProbesSpec()).scores
    assert math.isnan(s["r2"])
