"""Scores of a fitted probe on held-out rows (docs/probes.md, "Scores").

Checked against ``sklearn.metrics`` in tests/test_probes.py; undefined cases are NaN.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.stats

CLASS_SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "majority")


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
        "auroc": nanmean(per_class["auroc"]),  # one-vs-rest, classes with both sides in test
        "majority": float((y == majority).mean()),
    }


def regression_scores(y: np.ndarray, yhat: np.ndarray, train_mean: float) -> dict[str, float]:
    sst = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - ((y - yhat) ** 2).sum() / sst if sst > 0 else math.nan
    base = 1.0 - ((y - train_mean) ** 2).sum() / sst if sst > 0 else math.nan
    return {"r2": float(r2), "mae": float(np.abs(y - yhat).mean()), "mean_baseline_r2": float(base)}


def nanmean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(a[np.isfinite(a)].mean()) if np.isfinite(a).any() else math.nan


def varies(Y: np.ndarray) -> np.ndarray:
    """``bool [K]``: the columns of ``Y bool [n, K]`` that hold both values."""
    return Y.any(axis=0) & ~Y.all(axis=0)


def column_balanced_accuracy(X_fit, Y_fit, X_test, Y_test, predict) -> np.ndarray:
    """Test balanced accuracy per column ``[K]`` of one multilabel probe, NaN where a column does
    not vary in the fit or the test rows. Features are z-scored on the fit rows; ``predict(Z_fit
    [n, d], Y_fit bool [n, K_fit], Z_test [m, d], cols bool [K_fit]) -> P [m, cols.sum()]`` fits
    on the columns that vary in the fit rows and returns P(label) for those that also vary in the
    test rows (the reach stage's linear and MLP probes share this rule)."""
    out = np.full(Y_fit.shape[1], np.nan)
    ok_fit = varies(Y_fit)
    ok = ok_fit & varies(Y_test) if len(X_test) else np.zeros_like(ok_fit)
    if not ok.any():
        return out
    X_fit = X_fit.astype(np.float64)
    mean, std = X_fit.mean(axis=0), X_fit.std(axis=0)
    std[std < 1e-8] = 1.0
    P = predict((X_fit - mean) / std, Y_fit[:, ok_fit], (X_test.astype(np.float64) - mean) / std, ok[ok_fit])
    out[ok] = binary_scores(Y_test[:, ok], P, Y_fit[:, ok].mean(axis=0) > 0.5)["balanced_accuracy"]
    return out
