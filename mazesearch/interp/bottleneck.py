"""Bottleneck attention: do heads attend more to the maze's bottleneck cells than to matched cells?

**Bottleneck cells** of a maze are its ``top`` cells by (unnormalised) betweenness centrality in
the maze graph (cells are nodes, open edges are edges): the number of cell pairs whose shortest
paths run through the cell, shared equally among tied shortest paths, each unordered pair once
(networkx's ``betweenness_centrality(normalized=False)``). Origin and target are left out of
both sets (the target is attended for reasons of its own), and so are cells with betweenness 0
(leaves are no bottleneck). Why not cut vertices between origin and target: in a spanning-tree
maze those are exactly the interior cells of the path, so "bottleneck" would just mean "on the
path"; betweenness is a property of the maze alone.

**Matched cells**: for each bottleneck cell (by rank), an unused non-bottleneck cell (not origin
or target) with the same degree (= its number of adjacency-list entries, so a uniform head gives
both sets the same mass) and the same on-path status (path queries attend to path cells anyway),
whose first adjacency-list token is nearest in position (recency); ties broken by a Generator
seeded with ``(seed, maze row)``. A bottleneck cell with no candidate is dropped with its pair.

**Keys and queries**: from every complete path token (as heads.py's path hypotheses), the
adjacency-list tokens of the set's cells. A head's **ratio** is its attention mass on the
bottleneck cells' tokens over that on the matched cells' tokens, each summed over all queries of
all mazes; 1 for a uniform causal head (equal key counts, all visible from path queries).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from mazesearch.data.maze import MazeBatch, edge_endpoints

N_BOOT = 1000  # bootstrap resamples of the mazes (interval of the ratio)
CSV_COLUMNS = ("model", "layer", "head", "bottleneck_mass", "matched_mass", "ratio", "ci_low", "ci_high",
               "n_pairs", "n_queries")


def adjacency(open_row: np.ndarray, n: int) -> np.ndarray:
    """open_row ``uint8 [E]`` -> ``float64 [n*n, n*n]`` 0/1 adjacency of the maze graph."""
    ends = edge_endpoints(n)[np.asarray(open_row).astype(bool)]  # [open, 2]
    A = np.zeros((n * n, n * n))
    A[ends[:, 0], ends[:, 1]] = A[ends[:, 1], ends[:, 0]] = 1.0
    return A


def betweenness(open_row: np.ndarray, n: int) -> np.ndarray:
    """Unnormalised betweenness of every cell, each unordered pair once: ``float64 [n*n]``.

    Breadth-first from every cell at once: ``sigma[s, t]`` (number of shortest s-t paths) grows
    one frontier per step, so counts stay exact. Then v lies on a shortest s-t path iff
    ``d(s,v) + d(v,t) = d(s,t)``, carrying ``sigma(s,v) sigma(v,t) / sigma(s,t)`` of it.
    """
    A = adjacency(open_row, n)
    N = len(A)
    dist = np.where(np.eye(N, dtype=bool), 0.0, np.inf)  # [s, t]
    sigma = np.eye(N)  # [s, t]
    frontier = np.eye(N)  # [s, t]: sigma on the cells at the current distance
    for d in range(1, N):
        frontier = (frontier @ A) * np.isinf(dist)
        new = frontier > 0
        if not new.any():
            break
        dist[new], sigma[new] = d, frontier[new]
    on = (dist[:, :, None] + dist[None, :, :] == dist[:, None, :]) & np.isfinite(dist)[:, None, :]  # [s, v, t]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(on, sigma[:, :, None] * sigma[None, :, :] / sigma[:, None, :], 0.0)  # [s, v, t]
    idx = np.arange(N)
    share[idx, idx, :] = 0.0  # v is neither endpoint
    share[:, idx, idx] = 0.0
    return share.sum(axis=(0, 2)) / 2.0  # ordered pairs counted twice


def first_listed(roles: pd.DataFrame, n_cells: int) -> np.ndarray:
    """Position of each cell's first adjacency-list token, ``int64 [n_cells]`` (-1: not listed)."""
    listed = adjlist_mask(roles)
    cells, pos = roles["cell"].to_numpy()[listed], roles["position"].to_numpy()[listed]
    first = np.full(n_cells, -1, dtype=np.int64)
    first[cells[::-1]] = pos[::-1]  # reversed: the earliest write wins
    return first


def adjlist_mask(roles: pd.DataFrame) -> np.ndarray:
    """``bool [T]``: coordinate tokens of the adjacency list (a walls list names no connections)."""
    role = roles["role"].to_numpy().astype(str)
    return np.isin(role, ("edge_from", "edge_to")) & ("adjlist_start" in role) & (roles["cell"].to_numpy() >= 0)


def choose_sets(btw: np.ndarray, degree: np.ndarray, first: np.ndarray, on_path: np.ndarray,
                exclude: np.ndarray, top: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(bottleneck cells ``int64 [k]``, their matched cells ``int64 [k]``), k <= top.

    All inputs are per cell ``[n_cells]``; ``exclude`` (bool) cells are in neither set and
    ``first`` < 0 marks cells not listed (not in the maze).
    """
    n_cells = len(btw)
    ok = ~exclude & (first >= 0)
    order = rng.permutation(n_cells)  # random tie order, then by betweenness (stable)
    order = order[np.argsort(-btw[order], kind="stable")]
    bottle = [c for c in order if ok[c] and btw[c] > 0][:top]
    free = ok.copy()
    free[bottle] = False
    kept, matched = [], []
    for b in bottle:
        cand = np.flatnonzero(free & (degree == degree[b]) & (on_path == on_path[b]))
        if not len(cand):
            continue
        gap = np.abs(first[cand] - first[b])
        pick = int(rng.choice(cand[gap == gap.min()]))
        free[pick] = False
        kept.append(b)
        matched.append(pick)
    return np.array(kept, dtype=np.int64), np.array(matched, dtype=np.int64)


def maze_sets(mazes: MazeBatch, roles: list[pd.DataFrame], top: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(bottleneck, matched) cells of every maze (:func:`choose_sets`); empty for a walls sequence."""
    n = mazes.grid_n
    out = []
    for m in range(len(mazes)):
        first = first_listed(roles[m], n * n)
        degree = adjacency(mazes.open[m], n).sum(1)  # [cells]
        on_path = np.zeros(n * n, dtype=bool)
        on_path[mazes.path(m)] = True
        exclude = np.zeros(n * n, dtype=bool)
        exclude[[mazes.origin[m], mazes.target[m]]] = True
        rng = np.random.default_rng([seed, m])
        out.append(choose_sets(betweenness(mazes.open[m], n), degree, first, on_path, exclude, top, rng))
    return out


def set_keys(roles: pd.DataFrame, sets: tuple[np.ndarray, np.ndarray], length: int) -> np.ndarray:
    """``bool [2, length, length]`` (bottleneck, matched): from every complete path token, the
    adjacency-list tokens of the set's cells (always earlier than the query)."""
    T = len(roles)
    cell = roles["cell"].to_numpy()
    part = roles["coord_part"].to_numpy().astype(str)
    query = (roles["role"].to_numpy() == "path") & (cell >= 0) & np.isin(part, ("cell", "col"))
    listed = adjlist_mask(roles)
    keys = np.zeros((2, length, length), dtype=bool)
    for i, cells in enumerate(sets):
        keys[i, :T, :T] = query[:, None] & (listed & np.isin(cell, cells))[None, :]
    return keys


@dataclasses.dataclass(frozen=True)
class BottleneckMass:
    mass: np.ndarray  # float64 [2 (bottleneck, matched), maze, layer, head]: summed over queries
    n_pairs: np.ndarray  # int64 [maze]: matched pairs
    n_queries: np.ndarray  # int64 [maze]: path queries of mazes with a pair

    def ratio(self) -> np.ndarray:  # float64 [layer, head]; NaN when nothing was matched
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.mass[0].sum(0) / self.mass[1].sum(0)

    def bootstrap(self, seed: int, n_boot: int = N_BOOT) -> np.ndarray:
        """95% percentile interval of :meth:`ratio`, resampling mazes (seeded): ``[2, layer, head]``."""
        n = self.mass.shape[1]
        rng = np.random.default_rng(seed)
        w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)]).astype(float)
        b, m = np.einsum("rm,mlh->rlh", w, self.mass[0]), np.einsum("rm,mlh->rlh", w, self.mass[1])
        if not (m > 0).any():
            return np.full((2, *self.mass.shape[2:]), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.nanpercentile(b / np.where(m > 0, m, np.nan), [2.5, 97.5], axis=0)


def bottleneck_mass(extra: np.ndarray, sets: list[tuple[np.ndarray, np.ndarray]],
                    roles: list[pd.DataFrame]) -> BottleneckMass:
    """From the scorer's extra masses ``[2, maze, layer, head]`` (keys of :func:`set_keys`)."""
    pairs = np.array([len(b) for b, _ in sets], dtype=np.int64)
    queries = np.array([int(((r["role"] == "path") & (r["cell"] >= 0) & r["coord_part"].isin(("cell", "col"))).sum())
                        for r in roles], dtype=np.int64)
    return BottleneckMass(mass=extra, n_pairs=pairs, n_queries=np.where(pairs > 0, queries, 0))


def table(trained: BottleneckMass, control: BottleneckMass, seed: int) -> pd.DataFrame:
    """One row per model x layer x head (:data:`CSV_COLUMNS`), trained first."""
    rows = []
    for model, bm in (("trained", trained), ("random", control)):
        ratio, (low, high) = bm.ratio(), bm.bootstrap(seed)
        b, m = bm.mass[0].sum(0), bm.mass[1].sum(0)
        for (layer, head), r in np.ndenumerate(ratio):
            rows.append((model, layer, head, b[layer, head], m[layer, head], r, low[layer, head],
                         high[layer, head], int(bm.n_pairs.sum()), int(bm.n_queries.sum())))
    out = pd.DataFrame(rows, columns=list(CSV_COLUMNS))
    floats = ["bottleneck_mass", "matched_mass", "ratio", "ci_low", "ci_high"]
    out[floats] = out[floats].astype(np.float64).round(6)
    return out


def best(frame: pd.DataFrame, model: str) -> pd.Series | None:
    """The model's highest-ratio head (ties: lower layer, then head); None if none was scored."""
    rows = frame[(frame["model"] == model) & frame["ratio"].notna()]
    if rows.empty:
        return None
    return rows.sort_values(["ratio", "layer", "head"], ascending=[False, True, True], kind="stable").iloc[0]


def headline(frame: pd.DataFrame) -> tuple[dict, dict]:
    """(metrics ``{"ratio", "control_ratio"}``: each model's best head's ratio, details: the
    heads, their intervals and the counts)."""
    top = {model: best(frame, model) for model in ("trained", "random")}
    metrics = {"ratio": None if top["trained"] is None else float(top["trained"]["ratio"]),
               "control_ratio": None if top["random"] is None else float(top["random"]["ratio"])}
    details = {"n_pairs": int(frame["n_pairs"].iloc[0]), "n_queries": int(frame["n_queries"].iloc[0])}
    for model, t in top.items():
        details[model] = None if t is None else {
            "layer": int(t["layer"]), "head": int(t["head"]), "ratio": float(t["ratio"]),
            "ci_low": None if pd.isna(t["ci_low"]) else float(t["ci_low"]),
            "ci_high": None if pd.isna(t["ci_high"]) else float(t["ci_high"])}
    return metrics, details


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def write_outputs(frame: pd.DataFrame, sets: list[tuple[np.ndarray, np.ndarray]], mazes: MazeBatch,
                  picture_maze: int, out) -> dict:
    """bottleneck.csv (every model x head), bottleneck.json (details) and bottleneck.png; returns
    the two headline numbers for metrics.json."""
    from mazesearch.io import write_json_atomic, write_text_atomic
    from mazesearch.viz.head_maps import render_ratio_maps

    metrics, details = headline(frame)
    write_text_atomic(out / "bottleneck.csv", frame.to_csv(index=False, lineterminator="\n", na_rep=""))
    write_json_atomic(out / "bottleneck.json", details)
    n = mazes.grid_n
    order = np.roll(np.arange(len(sets)), -picture_maze)
    most = max(len(b) for b, _ in sets)
    m = next(int(i) for i in order if len(sets[i][0]) == most)  # the first with the most pairs
    cells = np.zeros(n * n)
    cells[sets[m][1]], cells[sets[m][0]] = -1.0, 1.0
    maps = {}
    for model, label in (("trained", "trained"), ("random", "random-init")):
        rows = frame[frame["model"] == model]
        maps[label] = rows.pivot(index="layer", columns="head", values="ratio").to_numpy()
    best_t = details["trained"]
    where = "" if best_t is None else f" (best head L{best_t['layer']}H{best_t['head']})"
    title = (f"Attention from path tokens on bottleneck cells' adjacency-list tokens / on matched cells' "
             f"(same degree, path status, nearest list position): trained best {_fmt(metrics['ratio'])}{where}, "
             f"random-init best {_fmt(metrics['control_ratio'])}; {details['n_pairs']} pairs")
    render_ratio_maps(maps, n, mazes.open[m], cells, out / "bottleneck.png", origin=int(mazes.origin[m]),
                      target=int(mazes.target[m]), path=mazes.path(m), marks=sets[m][0],
                      maze_title=f"maze {m}: bottleneck (red, dashed)\nvs matched (blue)", title=title)
    return metrics
