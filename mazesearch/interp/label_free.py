"""A goal found without labels (reference text 003): cluster, then name each cluster by steering.

At the target token, at the input of block l, the residuals of the fit mazes (one row per maze)
are clustered with k-means (``k`` = the number of cells), *without* the target labels. Each
cluster is then **named by what the model does when pushed into it**: a few fit mazes from
other clusters are steered by ``centroid[j] - centroid[own cluster]`` at their target token, and
the cell where the rollout ends most often is cluster j's name (its ``agreement``: the fraction
of those rollouts ending there). A counterfactual pair ``old -> new`` is then retargeted with
``centroid[dest] - centroid[own]``: ``own`` the clean prompt's nearest centroid, ``dest`` the
cluster named ``new`` with the highest agreement (none named ``new``: a zero vector, a failure).

The labels are used only afterwards, to say how pure the clusters are (``purity``: the share of
fit mazes whose cluster's majority target is their own) and whether the names agree with them
(``name_accuracy``).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Clusters:
    centroids: np.ndarray  # float32 [k, d]
    assign: np.ndarray  # int64 [mazes]: each fit maze's cluster

    def nearest(self, X: np.ndarray) -> np.ndarray:  # X [rows, d] -> int64 [rows]
        d2 = ((X[:, None, :].astype(np.float64) - self.centroids[None].astype(np.float64)) ** 2).sum(-1)
        return d2.argmin(1).astype(np.int64)


def find_clusters(X: np.ndarray, k: int, seed: int) -> Clusters:
    """k-means on X ``[mazes, d]`` (scikit-learn, fixed seed: deterministic); k is capped at the
    number of distinct rows."""
    from sklearn.cluster import KMeans

    k = int(min(k, len(np.unique(X.round(6), axis=0))))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(X.astype(np.float64))
    return Clusters(centroids=km.cluster_centers_.astype(np.float32), assign=km.labels_.astype(np.int64))


def naming_batch(clusters: Clusters, per_cluster: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which fit mazes steer toward which cluster to name it: ``(maze int64 [R], cluster int64 [R],
    vectors float32 [R, d])``; per cluster the first ``per_cluster`` mazes of other clusters."""
    mazes, dest = [], []
    for j in range(len(clusters.centroids)):
        others = np.flatnonzero(clusters.assign != j)[:per_cluster]
        mazes.append(others)
        dest.append(np.full(len(others), j))
    maze, cluster = np.concatenate(mazes).astype(np.int64), np.concatenate(dest).astype(np.int64)
    vectors = clusters.centroids[cluster] - clusters.centroids[clusters.assign[maze]]
    return maze, cluster, vectors.astype(np.float32)


def names_from_endings(cluster: np.ndarray, end_cell: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster, the most common end cell of its steered rollouts (-1 = none ended on a cell;
    ties: the lowest cell) and the fraction that ended there: ``(int64 [k], float64 [k])``."""
    names, agreement = np.full(k, -1, np.int64), np.zeros(k)
    for j in range(k):
        ends = end_cell[(cluster == j) & (end_cell >= 0)]
        n = int(np.sum(cluster == j))
        if len(ends) and n:
            cells, counts = np.unique(ends, return_counts=True)
            names[j], agreement[j] = cells[np.argmax(counts)], counts.max() / n
    return names, agreement


def retarget_vectors(clusters: Clusters, names: np.ndarray, agreement: np.ndarray, X_clean: np.ndarray,
                     new_target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, ``centroid[dest] - centroid[own]`` (module doc): ``(float32 [P, d], ok bool [P])``."""
    own = clusters.nearest(X_clean)
    v, ok = np.zeros((len(new_target), clusters.centroids.shape[1]), np.float32), np.zeros(len(new_target), bool)
    for i, t in enumerate(new_target):
        named = np.flatnonzero(names == t)
        if len(named):
            dest = named[np.argmax(agreement[named])]
            v[i], ok[i] = clusters.centroids[dest] - clusters.centroids[own[i]], True
    return v, ok


def label_checks(clusters: Clusters, names: np.ndarray, target: np.ndarray) -> dict:
    """After the fact, with the labels: cluster purity and how often a cluster's name is its
    members' majority target."""
    k = len(clusters.centroids)
    majority = np.full(k, -1, np.int64)
    pure = 0
    for j in range(k):
        members = target[clusters.assign == j]
        if len(members):
            cells, counts = np.unique(members, return_counts=True)
            majority[j], pure = cells[np.argmax(counts)], pure + int(counts.max())
    named = names >= 0
    return {"k": k, "purity": round(pure / max(len(target), 1), 4),
            "named": int(named.sum()), "distinct_names": int(len(np.unique(names[named]))),
            "name_accuracy": round(float(np.mean(names[named] == majority[named])), 4) if named.any() else None}
