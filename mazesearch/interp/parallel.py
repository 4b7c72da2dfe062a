"""Parallel paths per layer: does the residual stream hold the candidate branches the path could
still take ("alternatives") apart from the true path ahead and from branches already left behind?
(docs/interp.md, "Parallel paths").

Rows: ``<PATH_START>`` (s = 0, the current cell is the origin: nothing emitted yet) and every path
position (s >= 1, the current cell ``c = path[s-1]``, the model about to name ``path[s]``). Per
row, per cell x != c and per k = 1 .. K, with ``d`` the maze (BFS) distance from c and ``d'`` the
distance from c in the maze with the cells the path has *left* (``path[0 .. s-2]``) removed:

* ``ahead``        x is on the stored path still to be emitted (``path[s..]``) and d(c, x) <= k;
* ``alternatives`` x is off the stored path and d'(c, x) <= k: within k moves without stepping
                   back onto the path already walked, so a branch not yet ruled out (a dead end
                   or another route, open at c or at a cell ahead);
* ``discarded``    x is off the stored path, d(c, x) <= k but d'(c, x) > k (or unreachable): it
                   can be reached in k moves only back through the path already walked, i.e. a
                   branch the path has passed ("discarded dead end").

On a tree (every default dataset) an off-path cell hangs off one path cell, its attachment: it is
an alternative while its attachment is the current cell or ahead, and discarded once the path has
left the attachment. The three are disjoint; none holds the current cell or an emitted one.

Each version is a multilabel target (one column per cell and k), read by per-cell L2 logistic
probes fitted as in stage probes (``mazesearch.interp.probes``: z-scored on the fit rows, one L-BFGS
run over all columns, whose optimum is per column scikit-learn's LogisticRegression's), on a
train/test split by maze (``parallel.test_frac``, ``seed``), rows subsampled by whole mazes to
``parallel.max_rows``. Score: test balanced accuracy per cell (cells whose label varies in the
fit and the test rows), averaged over cells. Controls, as in stage probes: ``random_init`` (the
random-init model's store, same rows) and ``permuted`` (each maze takes the labels of another maze
with the same rows: labels shuffled across mazes, seeded). ``near``: the alternatives probe scored
only where x is within k moves of c (alternatives against the ahead and discarded cells).

Explore then discard: per version, ``gap`` = trained - the stronger control at k = parallel.k per
layer; its peak layer, the rise from the first layer to the peak and the drop from the peak to the
last layer; ``explore_then_discard`` when the peak is an inner layer and both the rise and the drop
are >= parallel.min_change.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.special
from threadpoolctl import threadpool_limits

from mazesearch.data import solve
from mazesearch.data.maze import MazeBatch, edge_endpoints
from mazesearch.interp.labels import Label, _rows, emit_step
from mazesearch.interp.probe_scores import binary_scores, nanmean, varies
from mazesearch.interp.probes import (CONTROLS, FIT, TEST, _check_stores, _json_float, _plan, _void_controls,
                                      fit_logistic_multilabel, split_by_maze)
from mazesearch.io import StageError
from mazesearch.params import ParallelSpec, ProbesSpec

VERSIONS = ("alternatives", "ahead", "discarded")
RUNS = ("trained",) + CONTROLS
KINDS = ("path_start", "path")


def categories(mazes: MazeBatch, index: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dist, free_dist, kind)`` over every index row: ``dist int32 [rows, cells]`` maze moves
    from the current cell (-1 unreachable), ``free_dist`` the same with the cells the path has left
    removed, and ``kind int8 [rows, cells]``: 0 none (current or emitted cell, or not a row of
    KINDS), 1 ahead (on the path still to come), 2 off the stored path. Rows outside KINDS are -1."""
    rows = _rows(mazes, index)  # checks the index against the mazes
    n_cells = mazes.grid_n**2
    defined = np.isin(rows.kind, KINDS)
    order = emit_step(mazes)[rows.maze]  # [rows, cells]: position on the path, -1 off it
    s = rows.step
    current = mazes.path_flat[mazes.path_offsets[rows.maze] + np.maximum(s, 1) - 1].astype(np.int32)  # origin at s=0
    left = (order >= 0) & (order < s[:, None] - 1)  # emitted before the current cell
    ends = edge_endpoints(mazes.grid_n)
    open_rows = mazes.open[rows.maze].astype(np.uint8)
    free_open = open_rows & ~(left[:, ends[:, 0]] | left[:, ends[:, 1]])
    dist = np.full((len(s), n_cells), -1, dtype=np.int32)
    free = np.full((len(s), n_cells), -1, dtype=np.int32)
    if defined.any():
        dist[defined] = solve.bfs_distances(mazes.grid_n, open_rows[defined], current[defined])
        free[defined] = solve.bfs_distances(mazes.grid_n, free_open[defined], current[defined])
    kind = np.zeros((len(s), n_cells), dtype=np.int8)
    kind[(order >= s[:, None]) & (order >= 0)] = 1
    kind[order < 0] = 2
    kind[np.arange(len(s)), current] = 0
    kind[~defined] = -1
    return dist, free, kind


def version_labels(dist: np.ndarray, free: np.ndarray, kind: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """``bool [rows, cells]`` per version at one k (see the module docstring)."""
    near = (dist > 0) & (dist <= k)
    alt = (kind == 2) & (free > 0) & (free <= k)
    return {"alternatives": alt, "ahead": (kind == 1) & near, "discarded": (kind == 2) & near & ~alt}


def masked_balanced_accuracy(Y: np.ndarray, P: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per column ``[K]`` the balanced accuracy of ``P >= 0.5`` against ``Y`` over the entries where
    ``mask``; NaN where the masked entries hold one class only."""
    pred, Y = P >= 0.5, Y.astype(bool)
    pos, neg = (Y & mask).sum(axis=0), (~Y & mask).sum(axis=0)
    tp, tn = (pred & Y & mask).sum(axis=0), (~pred & ~Y & mask).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((pos > 0) & (neg > 0), (tp / pos + tn / neg) / 2, np.nan)


def column_scores(X_fit, Y_fit, X_test, Y_test, near_test, C: float, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Test balanced accuracy per column ``[K]`` of one multilabel logistic fit, z-scored on the fit
    rows (NaN where a column does not vary in the fit or the test rows); and the same restricted to
    the test entries of ``near_test`` ``bool [n_test, K]``."""
    out, near = np.full(Y_fit.shape[1], np.nan), np.full(Y_fit.shape[1], np.nan)
    ok_fit = varies(Y_fit)
    if not ok_fit.any() or len(X_test) == 0:
        return out, near
    X_fit = X_fit.astype(np.float64)
    mean, std = X_fit.mean(axis=0), X_fit.std(axis=0)
    std[std < 1e-8] = 1.0
    W, b = fit_logistic_multilabel((X_fit - mean) / std, Y_fit[:, ok_fit], C, max_iter)
    P = scipy.special.expit(((X_test.astype(np.float64) - mean) / std) @ W + b)  # [n_test, ok_fit]
    ok = varies(Y_test[:, ok_fit])
    cols = np.flatnonzero(ok_fit)
    out[cols[ok]] = binary_scores(Y_test[:, cols[ok]], P[:, ok], Y_fit[:, cols[ok]].mean(axis=0) > 0.5)[
        "balanced_accuracy"]
    near[cols] = masked_balanced_accuracy(Y_test[:, cols], P, near_test[:, cols])
    return out, near


def shape_of(gaps: list, layers: list[str], min_change: float) -> dict:
    """The explore-then-discard statistic of one per-layer gap curve (None entries: undefined)."""
    g = np.array([math.nan if v is None else v for v in gaps], dtype=np.float64)
    if not np.isfinite(g).any():
        return {"peak_layer": None, "peak_gap": None, "rise_to_peak": None, "drop_after_peak": None,
                "last_below_peak": None, "explore_then_discard": None}
    peak = int(np.nanargmax(g))
    rise, drop = g[peak] - g[0], g[peak] - g[-1]
    inner = 0 < peak < len(g) - 1
    return {"peak_layer": layers[peak], "peak_gap": _json_float(float(g[peak])),
            "rise_to_peak": _json_float(float(rise)), "drop_after_peak": _json_float(float(drop)),
            "last_below_peak": bool(drop > 0),
            "explore_then_discard": bool(inner and rise >= min_change and drop >= min_change)}


def run_parallel(mazes: MazeBatch, trained, random_init, spec: ParallelSpec) -> dict:
    """Every version x layer x k x run; JSON-ready details (see stages/parallel.py)."""
    _check_stores(trained, random_init)
    index = trained.index
    if not np.isin(index["kind"].to_numpy(), KINDS).any():
        raise StageError("the activation cache has no path or <PATH_START> rows: add `path` to activations.positions")
    dist, free, kind = categories(mazes, index)
    defined = kind[:, 0] >= 0
    largest = int(dist[defined].max()) if defined.any() else 0
    ks = list(range(1, min(spec.max_k, max(largest, 1)) + 1))
    if spec.k not in ks:
        raise StageError(f"parallel.k={spec.k} exceeds the largest maze distance in the cache ({largest}): lower it")
    n_cells = mazes.grid_n**2
    blocks = {(v, k): lab for k in ks for v, lab in version_labels(dist, free, kind, k).items()}
    keys = [(v, k) for v in VERSIONS for k in ks]  # column block order
    Y_all = np.concatenate([blocks[key] for key in keys], axis=1)  # [rows, versions * ks * cells]
    near_all = np.concatenate([(kind > 0) & (dist > 0) & (dist <= k) for v in VERSIONS for k in ks], axis=1)
    label = Label("parallel", "multilabel", Y_all & defined[:, None], defined, Y_all.shape[1])
    maze_id = index["maze_id"].to_numpy().astype(np.uint64)
    side = np.where(split_by_maze(maze_id, spec.test_frac, spec.seed), TEST, FIT).astype(np.int8)
    cfg = ProbesSpec(test_frac=spec.test_frac, C=spec.C, max_iter=spec.max_iter, max_rows=spec.max_rows, seed=spec.seed)
    plan = _plan(label, index, side, cfg)
    fit, test = plan.side == FIT, plan.side == TEST
    if not fit.any() or not test.any():
        raise StageError("too few mazes in the activation cache to split them into fit and test mazes")
    Y = label.values[plan.rows]
    near_test = near_all[plan.rows][test]
    void = _void_controls(plan)
    layers = list(trained.layers)
    scores: dict = {}
    with threadpool_limits(limits=1):  # BLAS and OpenMP on one thread: the same bits on any machine size
        for layer in layers:
            for run, store in (("trained", trained), ("random_init", random_init), ("permuted", trained)):
                X = np.asarray(store.load(layer)[plan.rows], dtype=np.float64)
                Y_run = Y[plan.src] if run == "permuted" else Y
                col, near = column_scores(X[fit], Y_run[fit], X[test], Y_run[test], near_test, spec.C, spec.max_iter)
                for j, key in enumerate(keys):
                    part = slice(j * n_cells, (j + 1) * n_cells)
                    scores[layer, run, key] = (nanmean(col[part]), nanmean(near[part]))
    return _assemble(scores, layers, ks, keys, plan, void, blocks, int(len(np.unique(maze_id[plan.rows]))), spec)


def _assemble(scores, layers, ks, keys, plan, void, blocks, n_mazes, spec) -> dict:
    rows = plan.rows
    counts = {f"{v}@{k}": _json_float(float(blocks[v, k][rows].sum(axis=1).mean())) for v, k in keys}
    versions = {}
    for v in VERSIONS:
        per_layer = {}
        for layer in layers:
            by_k = {}
            for k in ks:
                s = {run: _json_float(scores[layer, run, (v, k)][0]) for run in RUNS}
                controls = [s[c] for c in CONTROLS if c not in void and s[c] is not None]
                stronger = max(controls) if controls else None
                gap = None if stronger is None or s["trained"] is None else _json_float(s["trained"] - stronger)
                entry = {**s, "stronger_control": stronger, "gap": gap}
                if v == "alternatives":
                    entry["near"] = {run: _json_float(scores[layer, run, (v, k)][1]) for run in RUNS}
                by_k[str(k)] = entry
            per_layer[layer] = by_k
        gaps = [per_layer[layer][str(spec.k)]["gap"] for layer in layers]
        versions[v] = {"shape": shape_of(gaps, layers, spec.min_change), "layers": per_layer}
    best = versions["alternatives"]["shape"]["peak_layer"]
    return {"method": {"score": "test balanced accuracy, mean over cells", "probe": "L2 logistic per cell",
                       "split": "by maze", "positions": list(KINDS), "k": spec.k, "ks": ks,
                       "min_change": spec.min_change},
            "layers": layers, "best_layer": best,
            "n_fit_rows": int((plan.side == FIT).sum()), "n_test_rows": int((plan.side == TEST).sum()),
            "n_mazes": n_mazes,
            "mean_cells_per_row": counts, "permuted_label_agreement": _json_float(plan.agreement),
            "permuted_unmoved_mazes": int(plan.unmoved),
            "void_controls": void, "versions": versions}


def headline(details: dict) -> dict:
    """metrics.json, 3 numbers: at the alternatives' best layer (largest gap over the stronger
    control at parallel.k; the layer is in details.json), the alternatives' trained score, the
    stronger control's, and the true-path-ahead probe's trained score."""
    k, layer = str(details["method"]["k"]), details["best_layer"]
    if layer is None:
        return {"alternatives": {"trained": None, "stronger_control": None, "ahead": None}}
    alt = details["versions"]["alternatives"]["layers"][layer][k]
    ahead = details["versions"]["ahead"]["layers"][layer][k]
    return {"alternatives": {"trained": alt["trained"], "stronger_control": alt["stronger_control"],
                             "ahead": ahead["trained"]}}


CSV_COLUMNS = [f"{v}{suffix}" for v in VERSIONS for suffix in ("", "_random_init", "_permuted")] + [
    "alternatives_near", "alternatives_near_random_init", "alternatives_near_permuted"]


def csv_table(details: dict) -> str:
    """by_layer.csv at k = parallel.k: layer_idx, layer, per version its trained, random-init and
    permuted score, then the alternatives' near score for each run (a DVC plot)."""
    k = str(details["method"]["k"])
    lines = [",".join(["layer_idx", "layer"] + CSV_COLUMNS)]
    for i, layer in enumerate(details["layers"]):
        vals = [details["versions"][v]["layers"][layer][k][run] for v in VERSIONS for run in RUNS]
        vals += [details["versions"]["alternatives"]["layers"][layer][k]["near"][run] for run in RUNS]
        lines.append(",".join([str(i), layer] + ["" if x is None else repr(x) for x in vals]))
    return "\n".join(lines) + "\n"
