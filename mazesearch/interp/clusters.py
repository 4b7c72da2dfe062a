"""Clustering of path-position residuals per layer (docs/interp.md, "Clustering").

At every path position (the current cell ``path[s-1]``, the model about to name ``path[s]`` or
``<PATH_END>``) a row gets three labels:

* ``dist_to_target``  integer classes: maze moves from the current cell to the target (``len(path) - s``).
* ``fork``            1 at a decision (the origin with >= 2 open neighbours, a later cell with >= 3:
                      the rule of evaluation.metrics.decision_points), 0 in a corridor; undefined at
                      ``s = len(path)``, where there is no move left.
* ``on_future_path``  1 while one fixed cell is still ahead (``path[s..]``); the cell is the one most
                      often undecided over the cache's path rows (ahead at closest to half of them,
                      as geometry_report.residual_section picks it): the most balanced such label.

The score of a (layer, run, label) is leave-one-maze-out kNN purity minus chance: per row, the
share of its k nearest rows *from other mazes* (cosine or euclidean on residuals z-scored per
dimension) that carry its label, averaged over rows, minus sum_c p_c^2 (the purity of labels
drawn independently of the residuals). Neighbours from the row's own maze are excluded because
rows of one maze share the prompt, so sit close together, and their labels are correlated (a
cell stays ahead until passed): they would score maze identity, not a shared code. Rows tied
with the k-th neighbour share the last places (see :func:`knn_purity`).
Runs: ``trained``; the controls ``random_init`` (the untrained model's residuals, same rows) and
``permuted`` (trained residuals, the labels shuffled across rows, so across mazes: empirical chance).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from mazesearch.data.maze import MazeBatch, edge_endpoints
from mazesearch.interp.labels import _rows, future_path
from mazesearch.interp.probes import _json_float, subsample_by_maze
from mazesearch.io import StageError
from mazesearch.params import ClustersSpec
from mazesearch.params.schema import CLUSTER_LABELS

RUNS = ("trained", "random_init", "permuted")
TSNE_ITER = 500  # enough for a stable 2-D layout of <= ~1000 rows; halves the stage time


def row_labels(mazes: MazeBatch, index: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict]:
    """Per label ``int64 [rows]`` over every index row (-1 = undefined: not a path row, or a
    fork label at s = len(path)); and the on-future-path cell with its ahead rate."""
    rows = _rows(mazes, index)  # checks the index against the mazes
    path = rows.kind == "path"
    n = mazes.grid_n
    ends = edge_endpoints(n)  # int [E, 2]
    incidence = np.zeros((len(ends), n * n), dtype=np.int64)  # [E, cells]
    incidence[np.arange(len(ends))[:, None], ends] = 1
    degree = mazes.open.astype(np.int64) @ incidence  # open neighbours per cell [B, cells]
    current = index["current_cell"].to_numpy().astype(np.int64)
    deg = np.where(path, degree[rows.maze, np.where(path, current, 0)], 0)  # [rows]
    is_fork = deg - (rows.step > 1) >= 2  # open ways on, not counting the cell just left
    ahead = future_path(mazes, index, rows).values  # bool [rows, cells]
    rate = ahead[path].mean(axis=0) if path.any() else np.zeros(n * n)  # [cells]
    cell = int(np.argmin(np.abs(rate - 0.5)))
    labels = {"dist_to_target": np.where(path, rows.path_len - rows.step, -1),
              "fork": np.where(path & (rows.step < rows.path_len), is_fork.astype(np.int64), -1),
              "on_future_path": np.where(path, ahead[:, cell].astype(np.int64), -1)}
    return labels, {"cell": [cell // n, cell % n], "ahead_rate": _json_float(float(rate[cell]))}


def standardize(X: np.ndarray, metric: str) -> np.ndarray:
    """``float64 [rows, d]`` z-scored per dimension; rows also L2-normalised for ``cosine``, so
    euclidean neighbours are the cosine neighbours."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    std[std < 1e-8] = 1.0  # a constant dimension carries nothing
    Z = (X - X.mean(axis=0)) / std
    if metric == "cosine":
        norm = np.linalg.norm(Z, axis=1, keepdims=True)
        Z = Z / np.where(norm < 1e-12, 1.0, norm)
    return Z


def knn_purity(Z: np.ndarray, maze: np.ndarray, ys: list[np.ndarray], k: int) -> list[float]:
    """Leave-one-maze-out kNN purity of each label vector in ``ys`` (``[rows]`` each) on the rows
    ``Z`` ``[rows, d]`` (euclidean): per row, the share of its k nearest rows from other mazes
    that carry its label, averaged over rows. Ties share the last places: rows exactly as far as
    the k-th neighbour split its remaining weight equally (the embeddings hold one vector per
    cell token, so hundreds of rows tie at distance 0; any tie-break order would pick a few at
    random)."""
    n = len(Z)
    own = np.unique(maze, return_counts=True)[1].max() if n else 0
    if n - own < k:
        raise StageError(f"need >= {k} rows outside every maze for the {k} nearest neighbours, have {n - own}")
    sq = (Z**2).sum(axis=1)  # [rows]
    hits = [np.zeros(n) for _ in ys]  # per label: matching weight per row
    step = max(1, 4_000_000 // max(n, 1))  # query rows per block: <= ~32 MB of distances
    for a in range(0, n, step):
        q = np.arange(a, min(a + step, n))
        D = np.maximum(sq[q, None] + sq[None, :] - 2.0 * Z[q] @ Z.T, 0.0)  # squared distances [q, rows]
        D[maze[q, None] == maze[None, :]] = np.inf  # the row itself and its maze
        dk = np.partition(D, k - 1, axis=1)[:, k - 1 : k]  # the k-th distance [q, 1]
        tol = 1e-9 * (1.0 + dk)  # equal vectors may differ in the last bits of a product
        closer, tied = D < dk - tol, np.abs(D - dk) <= tol  # [q, rows]
        W = closer + tied * ((k - closer.sum(axis=1)) / tied.sum(axis=1))[:, None]  # weights, rows sum to k
        for y, h in zip(ys, hits):
            h[q] = (W * (y[None, :] == y[q, None])).sum(axis=1) / k
    return [float(h.mean()) for h in hits]


def chance(y: np.ndarray) -> float:
    """sum_c p_c^2: the purity of labels independent of the residuals."""
    p = np.unique(y, return_counts=True)[1] / len(y)
    return float((p**2).sum())


def shuffled(y: np.ndarray, seed: int, label: str) -> np.ndarray:
    """The labels permuted across rows (so across mazes), seeded per label."""
    return y[np.random.default_rng([seed, zlib.crc32(label.encode())]).permutation(len(y))]


def _check(trained, random_init) -> None:
    if list(trained.layers) != list(random_init.layers):
        raise StageError(f"activation caches differ: layers {trained.layers} vs {random_init.layers}")
    cols = ["maze_id", "kind", "path_step"]
    if not trained.index[cols].reset_index(drop=True).equals(random_init.index[cols].reset_index(drop=True)):
        raise StageError("the trained and random-init activation caches hold other rows: cache both from the "
                         "same mazes (`dvc repro activations`)")
    if not (trained.index["kind"] == "path").any():
        raise StageError("the activation cache has no path rows: add `path` to activations.positions")


def run_clusters(mazes: MazeBatch, trained, random_init, spec: ClustersSpec) -> tuple[dict, dict]:
    """Every label x layer x run, JSON-ready (see stages/clusters.py); and the maps' inputs:
    ``{"points": run -> [float [m, 2] per layer], "colour": int [m], "n_mazes": int}``."""
    from sklearn.manifold import TSNE

    _check(trained, random_init)
    index = trained.index
    labels, cell = row_labels(mazes, index)
    maze_id = index["maze_id"].to_numpy().astype(np.uint64)
    maze = maze_id  # by id: a duplicate maze in the file is the same maze, never a neighbour
    keep = subsample_by_maze(maze_id, labels["dist_to_target"] >= 0, spec.max_rows, spec.seed)  # path rows
    layers, stores = list(trained.layers), {"trained": trained, "random_init": random_init}
    drawn = np.flatnonzero(subsample_by_maze(maze_id, keep & (labels[spec.headline] >= 0), spec.tsne_rows,
                                             [spec.seed, 1]))  # [m]
    if len(drawn) < 8:
        raise StageError(f"only {len(drawn)} path rows to draw: the activation cache is too small for maps.png")
    scores: dict = {name: {layer: {} for layer in layers} for name in CLUSTER_LABELS}
    points: dict = {"trained": [], "random_init": []}
    with threadpool_limits(limits=1):  # BLAS and OpenMP on one thread: the same bits on any machine size
        for layer in layers:
            for run, store in stores.items():
                acts = store.load(layer)  # float16 [rows, d_model], memory-mapped
                for name in CLUSTER_LABELS:
                    rows = np.flatnonzero(keep & (labels[name] >= 0))
                    y = labels[name][rows]
                    ys = [y] + ([shuffled(y, spec.seed, name)] if run == "trained" else [])
                    got = knn_purity(standardize(acts[rows], spec.metric), maze[rows], ys, spec.k)
                    scores[name][layer].update(zip((run, "permuted"), got))
                perplexity = min(30.0, (len(drawn) - 1) / 3)  # TSNE needs perplexity < rows
                points[run].append(TSNE(2, perplexity=perplexity, init="pca", random_state=spec.seed,
                                        max_iter=TSNE_ITER, metric="euclidean").fit_transform(
                    standardize(acts[drawn], spec.metric)))  # float32 [m, 2]
    details = {"method": {"score": "kNN purity - chance", "k": spec.k, "metric": spec.metric,
                          "neighbours": "other mazes only", "standardized": "z-score per dimension",
                          "maps": f"t-SNE (perplexity <= 30, {TSNE_ITER} iterations)"},
               "headline": spec.headline, "layers": layers,
               "n_rows": int(keep.sum()), "n_mazes": int(len(np.unique(maze[keep]))),
               "n_map_rows": int(len(drawn)), "on_future_path_cell": cell, "labels": {}}
    for name in CLUSTER_LABELS:
        y = labels[name][keep & (labels[name] >= 0)]
        details["labels"][name] = _assemble(y, scores[name], layers)
    return details, {"points": points, "colour": labels[spec.headline][drawn],
                     "n_mazes": int(len(np.unique(maze[drawn])))}


def _assemble(y: np.ndarray, scores: dict, layers: list[str]) -> dict:
    c = chance(y)
    per_layer, gaps = {}, []
    for layer in layers:
        s = {run: _json_float(scores[layer][run] - c) for run in RUNS}
        gap = _json_float(s["trained"] - max(s["random_init"], s["permuted"]))
        gaps.append(-math.inf if gap is None else gap)
        per_layer[layer] = {**s, "purity": {run: _json_float(scores[layer][run]) for run in RUNS},
                            "lead_over_stronger_control": gap}
    classes, counts = np.unique(y, return_counts=True)
    return {"n_rows": int(len(y)), "classes": {str(a): int(b) for a, b in zip(classes, counts)},
            "chance": _json_float(c), "best_layer": layers[int(np.argmax(gaps))], "layers": per_layer}


def headline(details: dict) -> dict:
    """metrics.json: the headline label's score at its best layer (largest lead over the stronger
    control; the layer is in details.json), trained beside both controls: 3 numbers."""
    name = details["headline"]
    d = details["labels"][name]
    return {name: {run: d["layers"][d["best_layer"]][run] for run in RUNS}}


def csv_table(details: dict) -> str:
    """by_layer.csv: layer_idx, layer, then per label its trained, random-init and permuted score."""
    cols = [f"{name}{suffix}" for name in CLUSTER_LABELS for suffix in ("", "_random_init", "_permuted")]
    lines = [",".join(["layer_idx", "layer"] + cols)]
    for i, layer in enumerate(details["layers"]):
        vals = [details["labels"][name]["layers"][layer][run] for name in CLUSTER_LABELS for run in RUNS]
        lines.append(",".join([str(i), layer] + ["" if v is None else repr(v) for v in vals]))
    return "\n".join(lines) + "\n"
