"""Nonlinear reach: stage reach's labels read by a small MLP beside the linear probe.

The linear probe of :mod:`mazesearch.interp.reach` finds nothing at any layer; a frontier could
still be stored nonlinearly (a cell's "within k" bit as an XOR or a radius of features). So, per
anchor, layer and run (trained, random-init, permuted labels), one
:class:`sklearn.neural_network.MLPClassifier` (one ReLU hidden layer of ``reach.mlp_hidden``
units, L-BFGS for at most ``reach.mlp_max_iter`` iterations, ``random_state = probes.seed``)
reads all K x n_cells "cell within k of the anchor" columns at once (one logistic output per
column, sharing the hidden layer), on the same by-maze split and z-scoring, subsampled by whole
mazes to ``reach.mlp_max_rows`` rows (all sides; the fits are the stage's cost).

An MLP can memorise, and it can decode from an untrained network what lattice geometry and the
anchor's token give; so its raw score says little. What counts is its **gap** over the controls,
each fitted the same way: ``trained - random_init``, ``trained - permuted`` and the gap over the
stronger one. Its reach at a layer is the largest k with trained >= ``min_balanced_accuracy`` and
gap over the stronger control >= ``min_selectivity`` (the linear probe's thresholds).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from mazesearch.interp.probe_scores import column_balanced_accuracy

# Weight decay of the MLP (fixed, not a param): small enough that a planted XOR is learnt in
# ~100 L-BFGS steps, large enough that the weights stay bounded on columns it cannot fit.
ALPHA = 1e-3


def mlp_column_scores(X_fit, Y_fit, X_test, Y_test, hidden: int, max_iter: int, seed: int) -> np.ndarray:
    """Test balanced accuracy per column ``[K]`` of one multilabel MLP fit on ``X_fit [n, d]``,
    ``Y_fit bool [n, K]``, scored on ``X_test``, ``Y_test``; the column rule of the linear
    probe (NaN where a column does not vary in the fit or the test rows)."""
    def mlp(Z_fit, Y_bool, Z_test, cols):
        Y = Y_bool.astype(np.int8)
        single = Y.shape[1] == 1  # sklearn reads one column as a binary task: [n] in, [n, 2] out
        net = MLPClassifier((hidden,), solver="lbfgs", alpha=ALPHA, max_iter=max_iter, random_state=seed)
        with warnings.catch_warnings():  # few iterations on purpose: not converging is the plan
            warnings.simplefilter("ignore", ConvergenceWarning)
            net.fit(Z_fit, Y[:, 0] if single else Y)
        P = net.predict_proba(Z_test)  # [n_test, K_fit] (or [n_test, 2])
        return (P[:, 1:] if single else P)[:, cols]

    return column_balanced_accuracy(X_fit, Y_fit, X_test, Y_test, mlp)


def mlp_scores(plan, values: np.ndarray, stores: dict, layers: list[str], hidden: int, max_iter: int,
               seed: int, fit: np.ndarray, test: np.ndarray) -> dict:
    """``{(layer, run): column scores [K]}`` for run in trained, random_init, permuted, on the
    rows of ``plan`` (a ``probes._Plan``; ``values bool [index rows, K]`` the labels; ``fit`` /
    ``test`` bool masks over ``plan.rows``); ``stores`` maps trained / random_init to a store."""
    Y = values[plan.rows]  # bool [m, K]
    scores = {}
    for layer in layers:
        for run, store in (("trained", stores["trained"]), ("random_init", stores["random_init"]),
                           ("permuted", stores["trained"])):
            X = np.asarray(store.load(layer)[plan.rows], dtype=np.float64)  # [m, d_model]
            Y_run = Y[plan.src] if run == "permuted" else Y
            scores[layer, run] = mlp_column_scores(X[fit], Y_run[fit], X[test], Y_run[test], hidden, max_iter, seed)
    return scores
