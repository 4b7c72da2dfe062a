"""Mean-difference directions: the anchors' steering recipe (the cheese vector, Turner et al. 2023).

A direction is a **difference of mean activations** between two groups of mazes, read at one
*site* (token positions) and one *layer* (the input of block l, ``blocks.{l}.hook_resid_pre``,
l = 0..n_layers-1; l = 0 is the embeddings), and added back at that site and layer:

    target_move   mean over mazes whose target is the new cell - mean over mazes whose target is the old cell
    edge_add      open - closed    (mean over mazes where the added edge is open, minus where it is closed)
    edge_remove   closed - open    (of the removed edge)
    wall_move     (open - closed)[added] - (open - closed)[removed]

Sites (``SITES``; their token positions in a prompt of length P):

    target        the target cell's token, P - 3 (``<TARGET_START> t <TARGET_END> <PATH_START>``)
    path_start    the ``<PATH_START>`` token, P - 1
    path          ``<PATH_START>`` and every path token (the probe directions' convention)
    decision      the clean path's decision cell token (the pair's ``decision_pos_clean``); its
                  vector is the path site's (means over ``<PATH_START>`` and every path row)

The means are taken on mazes that no pair came from. An edge's own adjacency-list entry exists
only while the edge is open, so no mean difference is defined there: edges are steered at
``EDGE_SITES``. Strength is in units of ``||v||``: 1 adds the mean difference itself.
Controls at the same norm: the means over groups shuffled across mazes (``permuted_labels``),
and random directions.
"""

from __future__ import annotations

import numpy as np

SITES = ("target", "path_start", "path", "decision")
EDGE_SITES = ("path_start", "path", "decision")
TARGET_OFFSET = 3  # the target token sits 3 tokens before the end of the prompt


def fit_rows(index, prompt_len: np.ndarray, site: str) -> tuple[np.ndarray, np.ndarray]:
    """Where to read a site's residuals on the fit mazes: ``(maze_row, token_pos)``, int64 [rows].

    ``index``: ``activations.build_index(..., positions=("path_start", "path"))`` of the fit
    tokens; ``prompt_len`` int [mazes] of the same tokens.
    """
    if site == "target":
        rows = np.arange(len(prompt_len), dtype=np.int64)
        return rows, prompt_len.astype(np.int64) - TARGET_OFFSET
    kind = index["kind"].to_numpy()
    keep = kind == "path_start" if site == "path_start" else np.isin(kind, ("path_start", "path"))
    if site not in SITES:
        raise ValueError(f"unknown site {site!r}; expected one of {SITES}")
    return index["maze_row"].to_numpy()[keep].astype(np.int64), index["token_pos"].to_numpy()[keep].astype(np.int64)


def window(site: str, prompt_len: np.ndarray, decision_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Per pair, the steered positions ``from_pos <= p < to_pos`` (int64 [P]; to_pos None: no end)."""
    P = prompt_len.astype(np.int64)
    if site == "target":
        return P - TARGET_OFFSET, P - TARGET_OFFSET + 1
    if site == "path_start":
        return P - 1, P
    if site == "path":
        return P - 1, None
    if site == "decision":
        d = decision_pos.astype(np.int64)
        return d, d + 1
    raise ValueError(f"unknown site {site!r}; expected one of {SITES}")


def group_means(X: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of X ``[rows, d]`` per group (int [rows] in 0..n_groups-1): ``(float64 [G, d], counts int64 [G])``;
    an empty group's mean is 0 (``counts`` says so)."""
    group = np.asarray(group, dtype=np.int64)
    if len(group) and (group.min() < 0 or group.max() >= n_groups):
        raise ValueError(f"group labels must lie in 0..{n_groups - 1}")
    sums = np.zeros((n_groups, X.shape[1]), np.float64)
    np.add.at(sums, group, X.astype(np.float64))
    counts = np.bincount(group, minlength=n_groups).astype(np.int64)
    return sums / np.maximum(counts, 1)[:, None], counts


def open_minus_closed(X: np.ndarray, is_open: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per edge, mean of X ``[rows, d]`` over rows where it is open minus where it is closed
    (``is_open`` bool [rows, E]): ``(float64 [E, d], ok bool [E])``; ``ok`` False (and a zero
    vector) where one side has no rows."""
    Xd, o = X.astype(np.float64), is_open.astype(np.float64)  # [rows, d], [rows, E]
    n_open, n_closed = o.sum(0), (1 - o).sum(0)  # [E]
    mean_open = (o.T @ Xd) / np.maximum(n_open, 1)[:, None]
    mean_closed = ((1 - o).T @ Xd) / np.maximum(n_closed, 1)[:, None]
    ok = (n_open > 0) & (n_closed > 0)
    return np.where(ok[:, None], mean_open - mean_closed, 0.0), ok


def pair_vectors(kind: np.ndarray, added: np.ndarray, removed: np.ndarray, old_target: np.ndarray,
                 new_target: np.ndarray, cell_means: np.ndarray, cell_ok: np.ndarray, edge_diff: np.ndarray,
                 edge_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair, the raw mean-difference vector asking for its edit (module doc):
    ``(float32 [P, d], ok bool [P])``; a pair whose groups are empty gets a zero vector, ok False."""
    P, d = len(kind), cell_means.shape[1]
    v, ok = np.zeros((P, d), np.float64), np.ones(P, bool)
    for i in range(P):
        if kind[i] == "target_move":
            v[i] = cell_means[new_target[i]] - cell_means[old_target[i]]
            ok[i] = bool(cell_ok[new_target[i]] and cell_ok[old_target[i]])
            continue
        if added[i] >= 0:
            v[i] += edge_diff[added[i]]
            ok[i] &= bool(edge_ok[added[i]])
        if removed[i] >= 0:
            v[i] -= edge_diff[removed[i]]
            ok[i] &= bool(edge_ok[removed[i]])
    v[~ok] = 0.0
    return v.astype(np.float32), ok


def same_norm(u: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Rows of u ``[..., P, d]`` rescaled to the norms of the rows of like ``[P, d]`` (a zero row stays zero)."""
    n_u = np.linalg.norm(u, axis=-1, keepdims=True)
    n_like = np.linalg.norm(like, axis=-1, keepdims=True)
    return (u * (n_like / np.where(n_u > 0, n_u, 1.0))).astype(np.float32)


def permuted_labels(n_mazes: int, seed: int) -> np.ndarray:
    """Maze i takes the labels of maze ``src[i]``: a shuffled cycle, so no maze keeps its own
    (int64 [n_mazes]); means over the shuffled groups are the permuted-label control."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_mazes)
    src = np.empty(n_mazes, np.int64)
    src[order] = np.roll(order, -1)
    return src
