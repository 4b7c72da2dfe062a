"""Reach per layer: how many maze moves around the target (or the current cell) a layer encodes.

For every layer of the activation cache and every k = 1 .. K a linear probe reads, per cell,
"the cell is within maze (BFS) distance k of the anchor" (docs/interp.md, "Reach"):

* ``target``   anchor = the target cell, read at ``<PATH_START>`` (one row per maze: the model has
               read the whole maze and emitted nothing; the question is how far out from the
               target it has already worked);
* ``current``  anchor = the current cell ``path[s-1]``, read at every path position.

The fits are those of stage probes (``mazesearch.interp.probes``): the same by-maze split
(``probes.test_frac``, ``val_frac``, ``seed``), subsampling by maze, z-scoring on the fit rows,
L2 logistic regression per cell (``probes.C``, ``max_iter``), scored on the test mazes as the
mean over cells of balanced accuracy, beside the same two controls (random-init activations;
trained activations with another same-shape maze's labels). All K x n_cells columns of one
version are fitted in one L-BFGS run: the loss is a sum of independent per-column losses, so
each column's optimum is the one a fit of that column alone would reach.

A layer's reach is the largest k whose trained score is >= ``min_balanced_accuracy`` and beats
the stronger control by >= ``min_selectivity`` (0: no k does). ``anchor_only`` is a third,
reported-only baseline: P(cell within k | anchor cell, cell) looked up from the fit mazes, i.e.
what knowing the anchor but not the walls gives.

Beside the linear probe, a small MLP reads the same labels (:mod:`mazesearch.interp.reach_mlp`);
its reach is decided the same way, on its gap over the same two controls.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import scipy.special
from threadpoolctl import threadpool_limits

from mazesearch.data import solve
from mazesearch.data.maze import MazeBatch
from mazesearch.interp.labels import Label, _rows
from mazesearch.interp.probe_scores import binary_scores, column_balanced_accuracy, nanmean, varies
from mazesearch.interp.probes import (CONTROLS, FIT, TEST, _check_stores, _json_float, _plan,
                                      _void_controls, fit_logistic_multilabel, split_sides)
from mazesearch.interp.reach_mlp import ALPHA, mlp_scores
from mazesearch.params import ProbesSpec, ReachSpec

VERSIONS = {"target": "path_start", "current": "path"}  # anchor -> the position kind read
RUNS = ("trained",) + CONTROLS
PROBES = {"linear": "selectivity", "mlp": "gap"}  # probe -> the by_k key of its lead over the controls


def anchor_distances(mazes: MazeBatch, index: pd.DataFrame, version: str) -> tuple[np.ndarray, np.ndarray]:
    """``(dist int32 [rows, n_cells], defined bool [rows])``: BFS moves from the row's anchor to
    every cell of its maze (-1 unreachable); rows of other position kinds are all -1."""
    rows = _rows(mazes, index)  # checks the index against the mazes
    defined = rows.kind == VERSIONS[version]
    if version == "target":
        anchor = mazes.target[rows.maze[defined]]
    else:
        anchor = index["current_cell"].to_numpy()[defined]
    dist = np.full((len(rows.maze), mazes.grid_n**2), -1, dtype=np.int32)
    if defined.any():
        dist[defined] = solve.bfs_distances(mazes.grid_n, mazes.open[rows.maze[defined]],
                                            np.asarray(anchor, dtype=np.int32))
    return dist, defined


def within(dist: np.ndarray, ks: list[int]) -> np.ndarray:
    """``bool [rows, len(ks) * n_cells]``: column block j is "reachable in <= ks[j] moves"."""
    return np.concatenate([(dist >= 0) & (dist <= k) for k in ks], axis=1)


def column_scores(X_fit, Y_fit, X_test, Y_test, C: float, max_iter: int) -> np.ndarray:
    """Test balanced accuracy per column ``[K]`` of one multilabel logistic fit (as in stage
    probes: z-scored on the fit rows; NaN where a column does not vary in the fit or test rows)."""
    def logistic(Z_fit, Y, Z_test, cols):
        W, b = fit_logistic_multilabel(Z_fit, Y, C, max_iter)
        return scipy.special.expit(Z_test @ W[:, cols] + b[cols])

    return column_balanced_accuracy(X_fit, Y_fit, X_test, Y_test, logistic)


def anchor_only_scores(anchor_fit, Y_fit, anchor_test, Y_test, n_cells: int) -> np.ndarray:
    """Balanced accuracy per column of the lookup P(label | anchor cell) from the fit rows
    (unseen anchors: the column's fit mean); same column rule as :func:`column_scores`."""
    out = np.full(Y_fit.shape[1], np.nan)
    ok = varies(Y_fit) & varies(Y_test) if len(Y_test) else np.zeros(Y_fit.shape[1], bool)
    if not ok.any():
        return out
    counts = np.bincount(anchor_fit, minlength=n_cells).astype(np.float64)
    table = np.tile(Y_fit.mean(axis=0), (n_cells, 1))
    sums = np.zeros_like(table)
    np.add.at(sums, anchor_fit, Y_fit.astype(np.float64))
    seen = counts > 0
    table[seen] = sums[seen] / counts[seen, None]
    P = table[anchor_test][:, ok]
    out[ok] = binary_scores(Y_test[:, ok], P, Y_fit[:, ok].mean(axis=0) > 0.5)["balanced_accuracy"]
    return out


def _per_k(scores: np.ndarray, n_ks: int) -> list[float]:
    """Column scores ``[n_ks * n_cells]`` -> mean over the defined cells of each k."""
    return [nanmean(block) for block in np.split(scores, n_ks)]


def reach_of(trained: list, selectivity: list, spec: ReachSpec, ks: list[int]) -> int:
    """Largest k with trained >= min_balanced_accuracy and selectivity >= min_selectivity; 0 if none."""
    passing = [k for k, t, s in zip(ks, trained, selectivity)
               if t is not None and s is not None and t >= spec.min_balanced_accuracy and s >= spec.min_selectivity]
    return max(passing, default=0)


def run_reach(mazes: MazeBatch, trained, random_init, probes: ProbesSpec, spec: ReachSpec) -> dict:
    """Every version x layer x k x run; JSON-ready details (see stages/reach.py)."""
    _check_stores(trained, random_init)
    index = trained.index
    maze_id = index["maze_id"].to_numpy().astype(np.uint64)
    side = split_sides(maze_id, probes.test_frac, probes.val_frac, probes.seed)
    cfg = probes.model_copy(update={"max_rows": spec.max_rows})
    layers, n_cells = list(trained.layers), mazes.grid_n**2
    out = {"thresholds": {"min_balanced_accuracy": spec.min_balanced_accuracy,
                          "min_selectivity": spec.min_selectivity},
           "mlp": {"hidden": spec.mlp_hidden, "max_iter": spec.mlp_max_iter, "max_rows": spec.mlp_max_rows,
                   "solver": "lbfgs", "alpha": ALPHA, "random_state": probes.seed},
           "layers": layers, "versions": {}}
    with threadpool_limits(limits=1, user_api="blas"):  # same bits whatever the core count
        for version, kind in VERSIONS.items():
            dist, defined = anchor_distances(mazes, index, version)
            largest = int(dist[defined].max()) if defined.any() else 0
            ks = list(range(1, min(spec.max_k, largest) + 1))
            label = Label(f"reach_{version}", "multilabel", within(dist, ks), defined, len(ks) * n_cells)
            plan = _plan(label, index, side, cfg)
            fit, test = plan.side == FIT, plan.side == TEST
            Y = label.values[plan.rows]
            anchor = (mazes.target[index["maze_row"].to_numpy()[plan.rows]] if version == "target"
                      else index["current_cell"].to_numpy()[plan.rows]).astype(np.int64)
            void = _void_controls(plan)
            scores = {}
            for layer in layers:
                for run, store in (("trained", trained), ("random_init", random_init), ("permuted", trained)):
                    X = np.asarray(store.load(layer)[plan.rows], dtype=np.float64)
                    Y_run = Y[plan.src] if run == "permuted" else Y
                    scores[layer, run] = _per_k(column_scores(X[fit], Y_run[fit], X[test], Y_run[test],
                                                              probes.C, probes.max_iter), len(ks))
            base = _per_k(anchor_only_scores(anchor[fit], Y[fit], anchor[test], Y[test], n_cells), len(ks))
            out["versions"][version] = _assemble(version, kind, ks, largest, plan, void, scores, base,
                                                 layers, spec)
            # the MLP: its own, smaller whole-maze subsample of the same rows (same seed and split)
            mplan = _plan(label, index, side, probes.model_copy(update={"max_rows": spec.mlp_max_rows}))
            mscores = mlp_scores(mplan, label.values, {"trained": trained, "random_init": random_init}, layers,
                                 spec.mlp_hidden, spec.mlp_max_iter, probes.seed, mplan.side == FIT,
                                 mplan.side == TEST)
            mvoid = _void_controls(mplan)
            out["versions"][version]["mlp"] = {
                **_sizes(mplan, mvoid),
                "layers": _per_layer({key: _per_k(v, len(ks)) for key, v in mscores.items()}, mvoid, layers,
                                     ks, spec, PROBES["mlp"])}
    return out


def _sizes(plan, void) -> dict:
    return {"n_fit_rows": int((plan.side == FIT).sum()), "n_test_rows": int((plan.side == TEST).sum()),
            "permuted_label_agreement": _json_float(plan.agreement), "void_controls": void}


def _per_layer(scores, void, layers, ks, spec, lead: str) -> dict:
    """layer -> {reach, by_k: k -> {trained, random_init, permuted, <lead>: {vs_random_init,
    vs_permuted, vs_stronger}}}: the reach is read off the lead over the stronger control."""
    per_layer = {}
    for layer in layers:
        by_k = {}
        for j, k in enumerate(ks):
            s = {run: _json_float(scores[layer, run][j]) for run in RUNS}
            controls = [s[c] for c in CONTROLS if c not in void and s[c] is not None]
            sel = {f"vs_{c}": (None if c in void or s[c] is None or s["trained"] is None
                               else _json_float(s["trained"] - s[c])) for c in CONTROLS}
            stronger = (None if s["trained"] is None or not controls
                        else _json_float(s["trained"] - max(controls)))
            by_k[str(k)] = {**s, lead: {**sel, "vs_stronger": stronger}}
        trained = [by_k[str(k)]["trained"] for k in ks]
        sel = [by_k[str(k)][lead]["vs_stronger"] for k in ks]
        per_layer[layer] = {"reach": reach_of(trained, sel, spec, ks), "by_k": by_k}
    return per_layer


def _assemble(version, kind, ks, largest, plan, void, scores, base, layers, spec) -> dict:
    return {"anchor": version, "positions": [kind], "ks": ks, "largest_distance": largest, **_sizes(plan, void),
            "anchor_only": {str(k): _json_float(v) for k, v in zip(ks, base)},
            "layers": _per_layer(scores, void, layers, ks, spec, PROBES["linear"])}


def _layers(details: dict, version: str, probe: str) -> dict:
    d = details["versions"][version]
    return d["layers"] if probe == "linear" else d["mlp"]["layers"]


def headline(details: dict) -> dict:
    """metrics.json (2 x (layers + 1) numbers): per anchor, per layer, the linear reach; and per
    anchor the MLP's largest reach over the layers (``mlp_largest``)."""
    out = {version: {layer: d["layers"][layer]["reach"] for layer in details["layers"]}
           for version, d in details["versions"].items()}
    out["mlp_largest"] = {version: max((l["reach"] for l in _layers(details, version, "mlp").values()), default=0)
                          for version in details["versions"]}
    return out


def csv_table(details: dict) -> str:
    """reach.csv: layer_idx, layer, reach_{target,current} (linear), reach_{target,current}_mlp (a DVC plot)."""
    lines = ["layer_idx,layer,reach_target,reach_current,reach_target_mlp,reach_current_mlp"]
    for i, layer in enumerate(details["layers"]):
        ks = [_layers(details, v, p)[layer]["reach"] for p in PROBES for v in ("target", "current")]
        lines.append(f"{i},{layer}," + ",".join(map(str, ks)))
    return "\n".join(lines) + "\n"


def score_grid(details: dict, version: str, run: str, probe: str = "linear") -> np.ndarray:
    """``float [layers, ks]`` balanced accuracy of one run of one probe (NaN undefined)."""
    ks, per = details["versions"][version]["ks"], _layers(details, version, probe)
    return np.array([[math.nan if per[l]["by_k"][str(k)][run] is None else per[l]["by_k"][str(k)][run]
                      for k in ks] for l in details["layers"]], dtype=np.float64)
