"""Linear probes on cached activations, with the controls that make them mean something.

A probe is a linear read-out (logistic regression, or ridge for a number) of one label
(``mazesearch.interp.labels``) from the residual stream at one layer. Probes find correlation, not
use, so every probe is scored three times (docs/probes.md):

* ``trained``      the trained model's activations, real labels;
* ``random_init``  a random-init model of the same architecture, real labels (what the
                   architecture + token embeddings give for free);
* ``permuted``     the trained activations, labels of *another maze of the same shape* (control
                   task: keeps the label marginals per position, breaks the link to this maze);

and ``selectivity`` = trained score - control score, for both controls.

The train/test split is by maze (by ``maze_id``), never by row: rows of one maze are strongly
correlated and would leak. All K binary outputs of a multilabel target are fitted at once with
one L-BFGS run on the summed (separable) loss: the optimum is per-column identical to K
scikit-learn ``LogisticRegression`` fits (tests/test_probes.py checks).
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import scipy.optimize
import scipy.special
import scipy.stats
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mazesearch.interp.labels import TARGET_KINDS, Label, build_labels

MAIN_SCORE = {"multilabel": "balanced_accuracy", "multiclass": "balanced_accuracy", "regression": "r2"}
CLASS_SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "majority")
CONTROLS = ("random_init", "permuted")


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Mirrors ``probes.*`` in params.yaml (ProbesSpec)."""

    test_frac: float = 0.25
    C: float = 1.0  # inverse L2 strength, scikit-learn convention
    ridge_alpha: float = 1.0
    max_iter: int = 200
    max_rows: int = 20000  # rows per probe fit, subsampled by maze
    seed: int = 0


# ---------------------------------------------------------------------------- rows


def split_by_maze(maze_id: np.ndarray, test_frac: float, seed: int) -> np.ndarray:
    """``bool [rows]``: row belongs to a test maze. Whole mazes (by id) go to one side."""
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must lie in (0, 1), got {test_frac}")
    ids = np.unique(maze_id)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 distinct mazes to split train/test, got {len(ids)}")
    n_test = min(max(round(test_frac * len(ids)), 1), len(ids) - 1)
    test_ids = np.random.default_rng(seed).permutation(ids)[:n_test]
    return np.isin(maze_id, test_ids)


def subsample_by_maze(maze_id: np.ndarray, rows: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Keep whole mazes of the ``rows`` mask, in seeded random order, until ``max_rows`` rows."""
    if rows.sum() <= max_rows:
        return rows
    ids, counts = np.unique(maze_id[rows], return_counts=True)
    order = np.random.default_rng(seed).permutation(len(ids))
    keep = np.cumsum(counts[order]) <= max_rows
    return rows & np.isin(maze_id, ids[order][keep])


def permute_across_mazes(
    maze_id: np.ndarray, slot: np.ndarray, group: np.ndarray, seed: int
) -> tuple[np.ndarray, int]:
    """Source row for every row when each maze takes the labels of another maze of its shape.

    ``slot`` ``int64 [rows]`` names a row's position inside its maze (kind, path_step); a maze's
    *shape* is its sorted tuple of slots plus its ``group`` (e.g. train/test side). Within each
    shape class the mazes are shuffled and maze i takes the rows of maze i+1 (a cycle, so no
    maze keeps its own labels unless it is alone in its class), slot by slot.
    Returns ``(src int64 [rows], n_unmoved_mazes)``: permuted labels are ``values[src]``.
    """
    if len(maze_id) == 0:
        return np.zeros(0, dtype=np.int64), 0
    order = np.lexsort((slot, maze_id))
    ids_sorted = maze_id[order]
    starts = np.flatnonzero(np.r_[True, ids_sorted[1:] != ids_sorted[:-1]])
    bounds = np.r_[starts, len(order)]
    classes: dict[tuple, list[int]] = {}
    for m in range(len(starts)):
        rows_m = order[bounds[m] : bounds[m + 1]]
        if len(set(group[rows_m].tolist())) != 1:
            raise ValueError("a maze's rows fall in different groups (split must be by maze)")
        key = (group[rows_m[0]].item(), tuple(slot[rows_m].tolist()))
        classes.setdefault(key, []).append(m)
    rng = np.random.default_rng(seed)
    src = np.arange(len(maze_id), dtype=np.int64)
    unmoved = 0
    for key in sorted(classes):
        members = np.asarray(classes[key])[rng.permutation(len(classes[key]))]
        unmoved += len(members) == 1
        for i, m in enumerate(members):
            donor = members[(i + 1) % len(members)]
            src[order[bounds[m] : bounds[m + 1]]] = order[bounds[donor] : bounds[donor + 1]]
    return src, unmoved


# ---------------------------------------------------------------------------- fitting


def standardize(X_train: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score both with the train statistics (float64); constant features stay 0."""
    X_train = X_train.astype(np.float64)
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std < 1e-8] = 1.0
    return (X_train - mean) / std, (X_test.astype(np.float64) - mean) / std


def _lbfgs(fun, n_features: int, n_outputs: int, max_iter: int, tol: float):
    """Minimize ``fun`` over a flat ``[(d+1) * K]`` vector from 0; returns W ``[d, K]``, b ``[K]``."""
    x0 = np.zeros((n_features + 1) * n_outputs)
    # one BLAS thread: L-BFGS-B's many tiny vector ops are ~10x slower when OpenBLAS spins up
    # threads for each (measured on 2 busy cores); the matmuls here are small anyway
    with threadpool_limits(limits=1, user_api="blas"):
        res = scipy.optimize.minimize(
            fun, x0, jac=True, method="L-BFGS-B",
            options={"maxiter": max_iter, "maxls": 50, "gtol": tol, "ftol": 64 * np.finfo(float).eps},
        )
    Wb = res.x.reshape(n_features + 1, n_outputs)
    return Wb[:-1], Wb[-1]


def fit_logistic_multilabel(
    X: np.ndarray, Y: np.ndarray, C: float, max_iter: int, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """K independent L2 logistic regressions in one L-BFGS run.

    X ``[n, d]``, Y ``[n, K]`` 0/1. Minimizes per column ``C * sum_i logloss + ||w||^2 / 2``
    (intercept unpenalized), the scikit-learn objective, scaled by 1/n. Returns W ``[d, K]``, b ``[K]``.
    """
    n, d = X.shape
    K = Y.shape[1]
    Y = Y.astype(np.float64)
    reg = 1.0 / (C * n)

    def fun(x):
        W, b = x[:-K].reshape(d, K), x[-K:]
        Z = X @ W + b  # [n, K]
        loss = (np.logaddexp(0.0, Z) - Y * Z).sum() / n + 0.5 * reg * (W * W).sum()
        R = (scipy.special.expit(Z) - Y) / n  # [n, K]
        return loss, np.concatenate([(X.T @ R + reg * W).ravel(), R.sum(axis=0)])

    return _lbfgs(fun, d, K, max_iter, tol)


def fit_logistic_multinomial(
    X: np.ndarray, y: np.ndarray, n_classes: int, C: float, max_iter: int, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax regression, scikit-learn's multinomial objective. y ``int [n]`` in [0, n_classes).

    Returns W ``[d, n_classes]``, b ``[n_classes]``.
    """
    n, d = X.shape
    K = n_classes
    onehot = np.zeros((n, K))
    onehot[np.arange(n), y] = 1.0
    reg = 1.0 / (C * n)

    def fun(x):
        W, b = x[:-K].reshape(d, K), x[-K:]
        Z = X @ W + b  # [n, K]
        lse = scipy.special.logsumexp(Z, axis=1)
        loss = (lse - (Z * onehot).sum(axis=1)).sum() / n + 0.5 * reg * (W * W).sum()
        R = (np.exp(Z - lse[:, None]) - onehot) / n
        return loss, np.concatenate([(X.T @ R + reg * W).ravel(), R.sum(axis=0)])

    return _lbfgs(fun, d, K, max_iter, tol)


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Ridge with an unpenalized intercept (closed form): w ``[d]``, b."""
    x_mean, y_mean = X.mean(axis=0), y.mean()
    Xc = X - x_mean
    w = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - y_mean))
    return w, float(y_mean - x_mean @ w)


# ---------------------------------------------------------------------------- scores


def binary_scores(Y: np.ndarray, P: np.ndarray, majority: np.ndarray) -> dict[str, np.ndarray]:
    """Per-column scores of K binary outputs: Y ``bool [n, K]``, P ``float [n, K]`` = P(y=1),
    majority ``bool [K]`` = the train majority class. Returns arrays ``[K]``."""
    Y = Y.astype(bool)
    pred = P >= 0.5
    pos, neg = Y.sum(axis=0), (~Y).sum(axis=0)
    tp, tn = (pred & Y).sum(axis=0), (~pred & ~Y).sum(axis=0)
    fp, fn = (pred & ~Y).sum(axis=0), (~pred & Y).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ranks = scipy.stats.rankdata(P, axis=0)  # ties get their average rank
        auroc = ((ranks * Y).sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)
        return {
            "accuracy": (tp + tn) / len(Y),
            "balanced_accuracy": (tp / pos + tn / neg) / 2,
            "macro_f1": 2 * tp / (2 * tp + fp + fn),
            "auroc": auroc,
            "majority": (Y == majority).mean(axis=0),
        }


def multiclass_scores(y: np.ndarray, P: np.ndarray, majority: int) -> dict[str, float]:
    """y ``int [n]``, P ``float [n, K]`` class probabilities (rows sum to 1)."""
    K = P.shape[1]
    pred = P.argmax(axis=1)
    onehot = np.zeros((len(y), K), dtype=bool)
    onehot[np.arange(len(y)), y] = True
    per_class = binary_scores(onehot, P, np.zeros(K, dtype=bool))
    support = onehot.sum(axis=0)
    recall = np.bincount(y[pred == y], minlength=K) / np.maximum(support, 1)
    pred_count = np.bincount(pred, minlength=K)
    f1 = 2 * np.bincount(y[pred == y], minlength=K) / np.maximum(support + pred_count, 1)
    seen = (support > 0) | (pred_count > 0)  # scikit-learn's macro-F1 label set
    return {
        "accuracy": float((pred == y).mean()),
        "balanced_accuracy": float(recall[support > 0].mean()),
        "macro_f1": float(f1[seen].mean()),
        "auroc": _nanmean(per_class["auroc"]),  # one-vs-rest, classes with both sides in test
        "majority": float((y == majority).mean()),
    }


def regression_scores(y: np.ndarray, yhat: np.ndarray, train_mean: float) -> dict[str, float]:
    sst = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - ((y - yhat) ** 2).sum() / sst if sst > 0 else math.nan
    base = 1.0 - ((y - train_mean) ** 2).sum() / sst if sst > 0 else math.nan
    return {"r2": float(r2), "mae": float(np.abs(y - yhat).mean()), "mean_baseline_r2": float(base)}


def _nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else math.nan


@dataclasses.dataclass
class Fit:
    scores: dict[str, float]  # aggregate scores; NaN where undefined
    per_output_f1: np.ndarray | None = None  # multilabel: F1 per cell/edge [K], NaN undefined


def fit_and_score(label: Label, X_train, Y_train, X_test, Y_test, cfg: ProbeConfig) -> Fit:
    """Standardize on train, fit one probe, score it on test. Undefined cases give NaN scores."""
    if len(X_train) == 0 or len(X_test) == 0:  # e.g. a position kind that was not cached
        keys = ("r2", "mae", "mean_baseline_r2") if label.task == "regression" else CLASS_SCORES
        scores = dict.fromkeys(keys, math.nan)
        if label.task == "regression":
            return Fit(scores)
        empty_f1 = np.full(label.n_outputs, np.nan) if label.task == "multilabel" else None
        return Fit(scores | {"n_outputs_defined": 0}, empty_f1)
    Xtr, Xte = standardize(X_train, X_test)
    if label.task == "multilabel":
        K = label.n_outputs
        both = lambda Y: Y.any(axis=0) & ~Y.all(axis=0)  # noqa: E731
        ok = both(Y_train) & both(Y_test)
        per = {k: np.full(K, np.nan) for k in CLASS_SCORES}
        if ok.any():
            W, b = fit_logistic_multilabel(Xtr, Y_train[:, ok], cfg.C, cfg.max_iter)
            P = scipy.special.expit(Xte @ W + b)
            major = Y_train[:, ok].mean(axis=0) > 0.5
            for key, value in binary_scores(Y_test[:, ok], P, major).items():
                per[key][ok] = value
        scores = {key: _nanmean(v) for key, v in per.items()}
        scores["n_outputs_defined"] = int(ok.sum())
        return Fit(scores, per["macro_f1"])
    if label.task == "multiclass":
        classes = np.unique(Y_train)
        if len(classes) < 2:
            return Fit(dict.fromkeys(CLASS_SCORES, math.nan) | {"n_outputs_defined": int(len(classes))})
        y_fit = np.searchsorted(classes, Y_train)  # fit only the classes seen in train
        W, b = fit_logistic_multinomial(Xtr, y_fit, len(classes), cfg.C, cfg.max_iter)
        P = np.zeros((len(Xte), label.n_outputs))
        P[:, classes] = scipy.special.softmax(Xte @ W + b, axis=1)  # unseen classes get 0
        majority = int(np.bincount(Y_train).argmax())
        return Fit(multiclass_scores(Y_test, P, majority) | {"n_outputs_defined": int(len(classes))})
    w, b = fit_ridge(Xtr, Y_train, cfg.ridge_alpha)
    return Fit(regression_scores(Y_test, Xte @ w + b, float(Y_train.mean())))


# ---------------------------------------------------------------------------- the whole run


@dataclasses.dataclass
class _Plan:
    rows: np.ndarray  # int64 [m]: index rows used by this probe
    test: np.ndarray  # bool [m]
    src: np.ndarray  # int64 [m]: permuted-label source (positions in rows)
    unmoved: int  # mazes alone in their shape class (they keep their own labels)
    agreement: float  # fraction of label entries the permutation leaves unchanged


def _plan(label: Label, index, is_test: np.ndarray, cfg: ProbeConfig) -> _Plan:
    maze_id = index["maze_id"].to_numpy().astype(np.uint64)
    seed = [cfg.seed, zlib.crc32(label.name.encode())]
    # subsample each side separately so both keep their share of the rows
    keep = np.zeros_like(label.defined)
    for side in (False, True):
        side_rows = label.defined & (is_test == side)
        budget = max(int(cfg.max_rows * side_rows.sum() / max(label.defined.sum(), 1)), 1)
        keep |= subsample_by_maze(maze_id, side_rows, budget, seed + [int(side)])
    rows = np.flatnonzero(keep)
    kind = index["kind"].to_numpy()[rows].astype(str)
    kind_code = np.searchsorted(np.array(["path", "path_start", "target_end"]), kind).astype(np.int64)
    slot = kind_code * (1 << 32) + index["path_step"].to_numpy()[rows].astype(np.int64)
    src, unmoved = permute_across_mazes(maze_id[rows], slot, is_test[rows].astype(np.int64), seed + [2])
    # 1.0 when the label is a function of the shape alone (dist_to_target): the control is void
    values = label.values[rows]
    agreement = float((values[src] == values).mean()) if len(rows) else math.nan
    return _Plan(rows, is_test[rows], src, unmoved, agreement)


def _check_stores(trained, random_init) -> None:
    if list(trained.layers) != list(random_init.layers):
        raise ValueError(
            f"layer lists differ: trained {trained.layers} vs random_init {random_init.layers}"
        )
    cols = ["maze_row", "maze_id", "kind", "path_step"]
    a, b = trained.index[cols].reset_index(drop=True), random_init.index[cols].reset_index(drop=True)
    if len(a) != len(b) or not all(np.array_equal(a[c].to_numpy(), b[c].to_numpy()) for c in cols):
        raise ValueError(
            "trained and random_init activation indexes differ: cache both from the same mazes"
        )


def _json_float(x):
    """NaN -> None (JSON null); floats rounded so last-bit BLAS noise never shows in metrics."""
    if isinstance(x, float):
        return round(x, 6) if math.isfinite(x) else None
    return x


def run_probes(mazes, trained, random_init, cfg: ProbeConfig, names: list[str] | None = None,
               progress: bool = True) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """Fit every probe at every layer on both stores plus the permuted-label control.

    ``trained`` / ``random_init`` are activation stores (``index``, ``layers``, ``load(layer)``).
    Returns ``(metrics, per_output_f1)``: metrics is JSON-ready (NaN -> None), nested
    probe -> {info, best_layer, layers: layer -> {trained, random_init, permuted, selectivity}};
    per_output_f1[probe][layer] is the trained probe's F1 per cell/edge ``[K]`` (multilabel only).
    """
    _check_stores(trained, random_init)
    index = trained.index
    labels = build_labels(mazes, index, names)
    is_test = split_by_maze(index["maze_id"].to_numpy().astype(np.uint64), cfg.test_frac, cfg.seed)
    plans = {name: _plan(label, index, is_test, cfg) for name, label in labels.items()}
    layers = list(trained.layers)
    results = {name: {layer: {} for layer in layers} for name in labels}
    per_output_f1: dict[str, dict[str, np.ndarray]] = {
        name: {} for name, label in labels.items() if label.task == "multilabel"
    }
    bar = tqdm(total=3 * len(layers) * len(labels), desc="probe fits", disable=not progress)
    with threadpool_limits(limits=1, user_api="blas"):  # same bits whatever the core count
        for layer in layers:
            for model, store in (("trained", trained), ("random_init", random_init)):
                acts = store.load(layer)  # [rows, d_model] float16, memory-mapped
                for name, label in labels.items():
                    plan = plans[name]
                    X, Y = np.asarray(acts[plan.rows], dtype=np.float64), label.values[plan.rows]
                    runs = [(model, Y)] + ([("permuted", Y[plan.src])] if model == "trained" else [])
                    for run, Y_run in runs:
                        bar.set_postfix_str(f"{name} {layer} {run}", refresh=False)
                        tr, te = ~plan.test, plan.test
                        fit = fit_and_score(label, X[tr], Y_run[tr], X[te], Y_run[te], cfg)
                        results[name][layer][run] = fit.scores
                        if run == "trained" and fit.per_output_f1 is not None:
                            per_output_f1[name][layer] = fit.per_output_f1
                        bar.update(1)
    bar.close()
    return _assemble(labels, plans, results, layers), per_output_f1


def _assemble(labels: dict[str, Label], plans: dict[str, _Plan], results: dict,
              layers: list[str]) -> dict:
    metrics = {}
    for name, label in labels.items():
        plan, main = plans[name], MAIN_SCORE[label.task]
        per_layer = {}
        for layer in layers:
            r = results[name][layer]
            sel = {f"vs_{c}": r["trained"][main] - r[c][main] for c in CONTROLS}
            per_layer[layer] = {
                run: {k: _json_float(v) for k, v in r[run].items()} for run in ("trained",) + CONTROLS
            }
            per_layer[layer]["selectivity"] = {k: _json_float(float(v)) for k, v in sel.items()}
        main_by_layer = np.array([results[name][l]["trained"][main] for l in layers], dtype=np.float64)
        best = layers[int(np.nanargmax(main_by_layer))] if np.isfinite(main_by_layer).any() else None
        metrics[name] = {
            "task": label.task,
            "main_score": main,
            "positions": list(TARGET_KINDS[name]),
            "n_outputs": label.n_outputs,
            "n_train_rows": int((~plan.test).sum()),
            "n_test_rows": int(plan.test.sum()),
            "permuted_unmoved_mazes": int(plan.unmoved),
            "permuted_label_agreement": _json_float(plan.agreement),
            "best_layer": best,
            "layers": per_layer,
        }
    return metrics
