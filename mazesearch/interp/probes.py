"""Linear probes on cached activations, with the controls that make them mean something.

A probe is a linear read-out (logistic regression, or ridge for a number) of one label
(``mazesearch.interp.labels``) from the residual stream at one layer. Probes find correlation, not
use, so every probe is scored three times (docs/probes.md):

* ``trained``      the trained model's activations, real labels;
* ``random_init``  a random-init model of the same architecture, real labels (what the
                   architecture + token embeddings give for free);
* ``permuted``     the trained activations, labels of *another maze of the same shape* (control
                   task: keeps the label marginals per position, breaks the link to this maze);

and ``selectivity`` = trained score - control score, for both controls (None when the control
is void or undefined: never a fake 0).

The mazes are split three ways by maze (by ``maze_id``), never by row: rows of one maze are
strongly correlated and would leak. ``test`` (``test_frac``) scores the probes; the rest splits
into ``fit`` (the probe's training rows) and ``val`` (``val_frac`` of it), and ``best_layer`` is
chosen on the val score, so the reported test score at that layer is not selected on itself.
All K binary outputs of a multilabel target are fitted at once with one L-BFGS run on the
summed (separable) loss: the optimum is per-column identical to K scikit-learn
``LogisticRegression`` fits (tests/test_probes.py checks). The settings are the params schema's
``ProbesSpec`` (``probes.*`` in params.yaml; its defaults live there only).
"""

from __future__ import annotations

import dataclasses
import math
import zlib

import numpy as np
import scipy.optimize
import scipy.special
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mazesearch.interp.labels import TARGET_KINDS, Label, build_labels
from mazesearch.interp.probe_scores import CLASS_SCORES, binary_scores, multiclass_scores, nanmean, regression_scores
from mazesearch.params import ProbesSpec

MAIN_SCORE = {"multilabel": "balanced_accuracy", "multiclass": "balanced_accuracy", "regression": "r2"}
CONTROLS = ("random_init", "permuted")
FIT, VAL, TEST = 0, 1, 2  # the three sides of the by-maze split
SIDES = ("fit", "val", "test")
# a control whose labels agree with the real ones at least this often is the real task again
VOID_AGREEMENT = 1.0


# ---------------------------------------------------------------------------- rows


def split_by_maze(maze_id: np.ndarray, test_frac: float, seed: int | list[int]) -> np.ndarray:
    """``bool [rows]``: row belongs to a test maze. Whole mazes (by id) go to one side.
    ``seed`` is anything ``np.random.default_rng`` takes."""
    if not 0.0 < test_frac < 1.0:
        raise ValueError(f"test_frac must lie in (0, 1), got {test_frac}")
    ids = np.unique(maze_id)
    if len(ids) < 2:
        raise ValueError(f"need at least 2 distinct mazes to split train/test, got {len(ids)}")
    n_test = min(max(round(test_frac * len(ids)), 1), len(ids) - 1)
    test_ids = np.random.default_rng(seed).permutation(ids)[:n_test]
    return np.isin(maze_id, test_ids)


def split_sides(maze_id: np.ndarray, test_frac: float, val_frac: float, seed: int) -> np.ndarray:
    """``int8 [rows]``: FIT, VAL or TEST per row, whole mazes to one side.

    ``test_frac`` of the mazes go to TEST (exactly ``split_by_maze(maze_id, test_frac, seed)``);
    ``val_frac`` of the others to VAL, with a seed of its own; the rest is FIT.
    """
    is_test = split_by_maze(maze_id, test_frac, seed)
    side = np.full(len(maze_id), FIT, dtype=np.int8)
    side[is_test] = TEST
    rest = ~is_test
    if len(np.unique(maze_id[rest])) < 2:
        raise ValueError("need at least 2 distinct non-test mazes to split fit/val "
                         f"(test_frac={test_frac} leaves {len(np.unique(maze_id[rest]))})")
    is_val = split_by_maze(maze_id[rest], val_frac, [seed, 1])
    side[np.flatnonzero(rest)[is_val]] = VAL
    return side


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


@dataclasses.dataclass
class Fit:
    scores: dict[str, float]  # aggregate scores; NaN where undefined
    per_output_f1: np.ndarray | None = None  # multilabel: F1 per cell/edge [K], NaN undefined


def _undefined(label: Label, n_defined: int = 0) -> Fit:
    if label.task == "regression":
        return Fit(dict.fromkeys(("r2", "mae", "mean_baseline_r2"), math.nan))
    f1 = np.full(label.n_outputs, np.nan) if label.task == "multilabel" else None
    return Fit(dict.fromkeys(CLASS_SCORES, math.nan) | {"n_outputs_defined": n_defined}, f1)


def fit_and_score_sets(label: Label, X_fit, Y_fit, sets: dict[str, tuple[np.ndarray, np.ndarray]],
                       cfg: ProbesSpec) -> dict[str, Fit]:
    """Standardize on the fit rows, fit one probe, score it on every ``sets[name] = (X, Y)``.

    Undefined cases (no fit rows, an empty set, a column or class that does not vary) give NaN
    scores. A multilabel column is scored on a set only where both classes occur in the fit
    rows and in that set."""
    if len(X_fit) == 0:  # e.g. a position kind that was not cached
        return {name: _undefined(label) for name in sets}
    X_fit = X_fit.astype(np.float64)
    mean, std = X_fit.mean(axis=0), X_fit.std(axis=0)
    std[std < 1e-8] = 1.0
    z = lambda X: (np.asarray(X, dtype=np.float64) - mean) / std  # noqa: E731
    out = {}
    if label.task == "multilabel":
        both = lambda Y: Y.any(axis=0) & ~Y.all(axis=0)  # noqa: E731
        ok_fit = both(Y_fit)
        if ok_fit.any():
            W, b = fit_logistic_multilabel(z(X_fit), Y_fit[:, ok_fit], cfg.C, cfg.max_iter)
        for name, (X, Y) in sets.items():
            ok = ok_fit & both(Y) if len(X) else np.zeros_like(ok_fit)
            per = {k: np.full(label.n_outputs, np.nan) for k in CLASS_SCORES}
            if ok.any():
                cols = ok[ok_fit]  # the columns of W that are scored on this set
                P = scipy.special.expit(z(X) @ W[:, cols] + b[cols])
                major = Y_fit[:, ok].mean(axis=0) > 0.5
                for key, value in binary_scores(Y[:, ok], P, major).items():
                    per[key][ok] = value
            scores = {key: nanmean(v) for key, v in per.items()}
            out[name] = Fit(scores | {"n_outputs_defined": int(ok.sum())}, per["macro_f1"])
        return out
    if label.task == "multiclass":
        classes = np.unique(Y_fit)
        if len(classes) < 2:
            return {name: _undefined(label, int(len(classes))) for name in sets}
        y_fit = np.searchsorted(classes, Y_fit)  # fit only the classes seen in the fit rows
        W, b = fit_logistic_multinomial(z(X_fit), y_fit, len(classes), cfg.C, cfg.max_iter)
        majority = int(np.bincount(Y_fit).argmax())
        for name, (X, Y) in sets.items():
            if len(X) == 0:
                out[name] = _undefined(label, int(len(classes)))
                continue
            P = np.zeros((len(X), label.n_outputs))
            P[:, classes] = scipy.special.softmax(z(X) @ W + b, axis=1)  # unseen classes get 0
            out[name] = Fit(multiclass_scores(Y, P, majority) | {"n_outputs_defined": int(len(classes))})
        return out
    w, b = fit_ridge(z(X_fit), Y_fit, cfg.ridge_alpha)
    for name, (X, Y) in sets.items():
        out[name] = Fit(regression_scores(Y, z(X) @ w + b, float(Y_fit.mean()))) if len(X) else _undefined(label)
    return out


def fit_and_score(label: Label, X_train, Y_train, X_test, Y_test, cfg: ProbesSpec) -> Fit:
    """One fit, one scored set (``fit_and_score_sets`` with a single set)."""
    return fit_and_score_sets(label, X_train, Y_train, {"test": (X_test, Y_test)}, cfg)["test"]


# ---------------------------------------------------------------------------- the whole run


@dataclasses.dataclass
class _Plan:
    rows: np.ndarray  # int64 [m]: index rows used by this probe
    side: np.ndarray  # int8 [m]: FIT, VAL or TEST
    src: np.ndarray  # int64 [m]: permuted-label source (positions in rows)
    unmoved: int  # mazes alone in their shape class (they keep their own labels)
    agreement: float  # fraction of label entries the permutation leaves unchanged


def _plan(label: Label, index, side: np.ndarray, cfg: ProbesSpec) -> _Plan:
    maze_id = index["maze_id"].to_numpy().astype(np.uint64)
    seed = [cfg.seed, zlib.crc32(label.name.encode())]
    # subsample each side separately so every side keeps its share of the rows
    keep = np.zeros_like(label.defined)
    for code in (FIT, VAL, TEST):
        side_rows = label.defined & (side == code)
        budget = max(int(cfg.max_rows * side_rows.sum() / max(label.defined.sum(), 1)), 1)
        keep |= subsample_by_maze(maze_id, side_rows, budget, seed + [int(code)])
    rows = np.flatnonzero(keep)
    kind = index["kind"].to_numpy()[rows].astype(str)
    kind_code = np.searchsorted(np.array(["path", "path_start", "target_end"]), kind).astype(np.int64)
    slot = kind_code * (1 << 32) + index["path_step"].to_numpy()[rows].astype(np.int64)
    # the permutation never crosses sides
    src, unmoved = permute_across_mazes(maze_id[rows], slot, side[rows].astype(np.int64), seed + [3])
    # 1.0 when the label is a function of the shape alone (dist_to_target): the control is void
    values = label.values[rows]
    agreement = float((values[src] == values).mean()) if len(rows) else math.nan
    return _Plan(rows, side[rows], src, unmoved, agreement)


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
    """NaN -> None (JSON null); floats rounded so last-bit BLAS noise never shows in reports."""
    if isinstance(x, float):
        return round(x, 6) if math.isfinite(x) else None
    return x


def run_probes(mazes, trained, random_init, cfg: ProbesSpec, names: list[str] | None = None,
               progress: bool = True) -> tuple[dict, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """Fit every probe at every layer on both stores plus the permuted-label control.

    ``trained`` / ``random_init`` are activation stores (``index``, ``layers``, ``load(layer)``);
    ``cfg`` is ``params.probes`` (a ``ProbesSpec``). Each fit uses the FIT rows and is scored on
    VAL and TEST. Returns ``(results, per_output_f1)``: results is JSON-ready (NaN -> None),
    probe -> {info, void_controls, best_layer (by val), layers: layer -> {test, val: run ->
    scores, selectivity (test)}} (docs/probes.md); per_output_f1[probe][layer][run] is the test
    F1 per cell/edge ``[K]`` of that run's probe (trained, random_init, permuted; multilabel only).
    """
    _check_stores(trained, random_init)
    index = trained.index
    labels = build_labels(mazes, index, names)
    maze_id = index["maze_id"].to_numpy().astype(np.uint64)
    side = split_sides(maze_id, cfg.test_frac, cfg.val_frac, cfg.seed)
    plans = {name: _plan(label, index, side, cfg) for name, label in labels.items()}
    layers = list(trained.layers)
    results = {name: {layer: {} for layer in layers} for name in labels}
    per_output_f1: dict[str, dict[str, dict[str, np.ndarray]]] = {
        name: {layer: {} for layer in layers} for name, label in labels.items() if label.task == "multilabel"
    }
    bar = tqdm(total=3 * len(layers) * len(labels), desc="probe fits", disable=None if progress else True)  # a terminal only
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
                        fit_rows = plan.side == FIT
                        sets = {s: (X[plan.side == c], Y_run[plan.side == c]) for s, c in (("val", VAL), ("test", TEST))}
                        fits = fit_and_score_sets(label, X[fit_rows], Y_run[fit_rows], sets, cfg)
                        results[name][layer][run] = {s: f.scores for s, f in fits.items()}
                        if fits["test"].per_output_f1 is not None:
                            per_output_f1[name][layer][run] = fits["test"].per_output_f1
                        bar.update(1)
    bar.close()
    return _assemble(labels, plans, results, layers), per_output_f1


def _void_controls(plan: _Plan) -> dict[str, str]:
    """Controls that are the real task again, with the reason: their selectivity is None."""
    if math.isfinite(plan.agreement) and plan.agreement >= VOID_AGREEMENT:
        return {"permuted": "the permuted labels equal the real ones (permuted_label_agreement 1.0)"}
    return {}


def _selectivity(trained: float, control: float, void: bool) -> float | None:
    """trained - control main score; None when the control is void or either is undefined."""
    if void or not (math.isfinite(trained) and math.isfinite(control)):
        return None
    return _json_float(float(trained - control))


def _assemble(labels: dict[str, Label], plans: dict[str, _Plan], results: dict,
              layers: list[str]) -> dict:
    out = {}
    for name, label in labels.items():
        plan, main = plans[name], MAIN_SCORE[label.task]
        void = _void_controls(plan)
        per_layer = {}
        for layer in layers:
            r = results[name][layer]
            per_layer[layer] = {
                split: {run: {k: _json_float(v) for k, v in r[run][split].items()} for run in ("trained",) + CONTROLS}
                for split in ("test", "val")
            }
            per_layer[layer]["selectivity"] = {
                f"vs_{c}": _selectivity(r["trained"]["test"][main], r[c]["test"][main], c in void) for c in CONTROLS
            }
        val_main = np.array([results[name][l]["trained"]["val"][main] for l in layers], dtype=np.float64)
        best = layers[int(np.nanargmax(val_main))] if np.isfinite(val_main).any() else None
        out[name] = {
            "task": label.task,
            "main_score": main,
            "positions": list(TARGET_KINDS[name]),
            "n_outputs": label.n_outputs,
            **{f"n_{s}_rows": int((plan.side == c).sum()) for s, c in zip(SIDES, (FIT, VAL, TEST))},
            "permuted_unmoved_mazes": int(plan.unmoved),
            "permuted_label_agreement": _json_float(plan.agreement),
            "void_controls": void,
            "best_layer": best,
            "layers": per_layer,
        }
    return out
