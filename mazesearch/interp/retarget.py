"""Retargeting sweeps for stage steering: mean-difference and label-free directions, their
controls, and the competence ceiling (docs/interp.md, "Retargeting").

Every rollout reads the **clean** prompt with a vector added at one site and layer input
(``mazesearch.interp.mean_diff``); success is the exact shortest path of the *edited* maze
(``steering.outcomes``). The **ceiling** is the model's own exact rate when simply given the
edited prompt: steering cannot be expected to beat the model reading the edit.

Sweep (per kind): every (site, layer) at strength 1 (the mean difference itself) picks the
best site and layer; there, every strength, beside the same-norm controls (the permuted-label
means, ``n_random`` random directions); and the best site at every layer and strength
(``by_layer``: how deep the handle works). The choice is made on the same pairs it is reported on:
with ~16 candidates the best is biased upward by a few points; the controls share the choice.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mazesearch.interp import label_free, mean_diff
from mazesearch.interp.steering import OUTCOMES, outcomes, rate, roll


@dataclasses.dataclass
class Rollouts:
    """What every sweep needs to roll out one kind's pairs."""

    model: object
    vocab: object
    sub: object  # counterfactuals.Pairs of one kind
    max_new_tokens: int
    batch_size: int
    cached: bool = True

    @property
    def prompts(self) -> list[np.ndarray]:
        return [self.sub.clean_tokens.prompt(i) for i in range(len(self.sub))]

    def walks(self, vectors: np.ndarray, layer: int, site: str, scale: float, prompts=None, window=None):
        """Walks with ``scale * vectors`` added at ``site`` of the input of block ``layer``."""
        sub = self.sub
        lo, hi = window if window is not None else mean_diff.window(site, sub.clean_tokens.prompt_len,
                                                                    sub.decision_pos_clean)
        return roll(self.model, layer, prompts if prompts is not None else self.prompts, vectors, scale, self.vocab,
                    sub.clean.grid_n, from_pos=lo, to_pos=hi, at="pre", max_new_tokens=self.max_new_tokens,
                    batch_size=self.batch_size, cached=self.cached)

    def run(self, vectors: np.ndarray, layer: int, site: str, scale: float) -> dict[str, np.ndarray]:
        return outcomes(self.walks(vectors, layer, site, scale), self.sub.clean, self.sub.corrupt)

    def ceiling(self) -> dict:
        """The model given the edited prompt: exact path of the edited maze."""
        sub = self.sub
        prompts = [sub.corrupt_tokens.prompt(i) for i in range(len(sub))]
        zero = np.zeros((len(sub), self.model.cfg.d_model), np.float32)
        walks = roll(self.model, 0, prompts, zero, 0.0, self.vocab, sub.corrupt.grid_n, at="pre",
                     max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, cached=self.cached)
        return rate(outcomes(walks, sub.corrupt, sub.corrupt)["success"])


def _rates(got: dict[str, np.ndarray]) -> dict:
    return {o: rate(got[o]) for o in OUTCOMES}


def _random_runs(r: Rollouts, like: np.ndarray, layer: int, site: str, scale: float, n_random: int, seed: int):
    from mazesearch.interp.steering import random_vectors

    draws = mean_diff.same_norm(random_vectors(len(like), like.shape[1], n_random, seed), like)  # [n, P, d]
    outs = [r.run(d, layer, site, scale) for d in draws]
    return {o: np.concatenate([x[o] for x in outs]) for o in OUTCOMES}


def sweep(r: Rollouts, vectors: dict[tuple[str, int], np.ndarray], permuted: dict[tuple[str, int], np.ndarray],
          strengths: list[float], n_random: int, seed: int) -> dict:
    """The two-step sweep (module doc) over ``vectors[(site, layer)]`` (raw, [P, d]) with
    ``permuted[(site, layer)]`` the permuted-label vectors; returns the details table."""
    at_one = {f"{site}@{layer}": _rates(r.run(v, layer, site, 1.0)) for (site, layer), v in vectors.items()}
    best_key = max(vectors, key=lambda k: at_one[f"{k[0]}@{k[1]}"]["success"]["rate"])
    site, layer = best_key
    v = vectors[best_key]
    perm = mean_diff.same_norm(permuted[best_key], v)
    curves = {"mean_diff": {}, "permuted": {}, "random": {}}
    for s in strengths:
        curves["mean_diff"][str(s)] = _rates(r.run(v, layer, site, s))
        curves["permuted"][str(s)] = _rates(r.run(perm, layer, site, s))
        curves["random"][str(s)] = _rates(_random_runs(r, v, layer, site, s, n_random, seed))
    best_s = max(strengths, key=lambda s: curves["mean_diff"][str(s)]["success"]["rate"])
    # the best site at every layer input and strength: where along the depth the handle works
    by_layer = {}
    for (st, l), u in vectors.items():
        if st == site:
            by_layer[str(l)] = {str(s): (curves["mean_diff"][str(s)] if l == layer else at_one[f"{st}@{l}"]
                                         if s == 1.0 else _rates(r.run(u, l, st, s))) for s in strengths}
    return {"site": site, "layer": layer, "best_strength": best_s, "at_strength_1": at_one, "curves": curves,
            "by_layer": by_layer, "norm": round(float(np.linalg.norm(v, axis=1).mean()), 4)}


def label_free_sweep(r: Rollouts, fit_prompts: list[np.ndarray], X_fit: dict[int, np.ndarray],
                     X_clean: dict[int, np.ndarray], fit_target: np.ndarray, n_cells: int, strengths: list[float],
                     per_cluster: int, n_random: int, seed: int) -> dict:
    """target_move pairs retargeted by label-free clusters (mazesearch.interp.label_free), per
    layer input ``l`` in ``X_fit`` (``[fit mazes, d]`` at the target token; ``X_clean`` the same
    for the pairs' clean prompts); best layer at strength 1, then every strength beside random."""
    per_layer, vecs = {}, {}
    for layer, X in X_fit.items():
        clusters = label_free.find_clusters(X, n_cells, seed)
        maze, cluster, push = label_free.naming_batch(clusters, per_cluster)
        P = np.array([len(fit_prompts[m]) for m in maze], dtype=np.int64)
        walks = r.walks(push, layer, "target", 1.0, prompts=[fit_prompts[m] for m in maze],
                        window=(P - mean_diff.TARGET_OFFSET, P - mean_diff.TARGET_OFFSET + 1))
        end = np.array([w[-1] if len(w := walks.walk(i)) else -1 for i in range(len(walks))], dtype=np.int64)
        names, agreement = label_free.names_from_endings(cluster, end, len(clusters.centroids))
        v, ok = label_free.retarget_vectors(clusters, names, agreement, X_clean[layer], r.sub.corrupt.target)
        vecs[layer] = v
        per_layer[str(layer)] = {**label_free.label_checks(clusters, names, fit_target),
                                 "mean_agreement": round(float(agreement.mean()), 4), "pairs_with_a_name": int(ok.sum()),
                                 "success_at_1": rate(r.run(v, layer, "target", 1.0)["success"])}
    layer = max(vecs, key=lambda l: per_layer[str(l)]["success_at_1"]["rate"])
    curves = {"label_free": {}, "random": {}}
    for s in strengths:
        curves["label_free"][str(s)] = _rates(r.run(vecs[layer], layer, "target", s))
        curves["random"][str(s)] = _rates(_random_runs(r, vecs[layer], layer, "target", s, n_random, seed))
    best_s = max(strengths, key=lambda s: curves["label_free"][str(s)]["success"]["rate"])
    return {"site": "target", "layer": layer, "best_strength": best_s, "per_layer": per_layer, "curves": curves}


# ---------------------------------------------------------------------------- stage steering's use


def run_kinds(model, vocab, pairs, kinds, fit_mazes, fit_tokens, index, edges_open: np.ndarray,
              target_cell: np.ndarray, spec, max_new: int) -> dict:
    """Stage steering's retargeting: per kind, the mean-difference sweep (every site, every layer
    input; for target_move also the label-free one) and the ceiling. Means are read on the fit
    mazes (``fit_mazes``/``fit_tokens``, no pair came from them; ``index`` their path_start and
    path rows, with ``edges_open`` [rows, E] and ``target_cell`` [rows]); ``spec`` is
    ``params.steering``. Returns ``{kind: {"metrics": {...}, "details": {...}}}``."""
    from mazesearch.interp.steering import residuals_at

    L, n = model.cfg.n_layers, fit_mazes.grid_n
    layers = list(range(L))
    P_fit = fit_tokens.prompt_len.astype(np.int64)
    n_fit = len(fit_mazes)
    read = lambda tb, rows, pos: residuals_at(model, tb, rows, pos, layers, vocab.pad_id, spec.batch_size, point="pre")  # noqa: E731
    X = {"target": read(fit_tokens, *mean_diff.fit_rows(index, P_fit, "target"))}
    X["path"] = read(fit_tokens, *mean_diff.fit_rows(index, P_fit, "path"))
    is_start = index["kind"].to_numpy() == "path_start"
    X["path_start"] = {l: x[is_start] for l, x in X["path"].items()}
    row_maze = index["maze_row"].to_numpy()
    src = mean_diff.permuted_labels(n_fit, spec.seed)  # maze i takes maze src[i]'s labels
    labels = {  # site -> (target [rows], edges open [rows, E]) for the trained and the permuted means
        "target": (fit_mazes.target.astype(np.int64), fit_mazes.open.astype(bool)),
        "path": (target_cell, edges_open),
        "path_start": (target_cell[is_start], edges_open[is_start])}
    maze_of = {"target": np.arange(n_fit), "path": row_maze, "path_start": row_maze[is_start]}

    def means(site: str, layer: int, permuted: bool):
        t, e = labels[site]
        if permuted:
            m = maze_of[site]
            t, e = fit_mazes.target.astype(np.int64)[src[m]], fit_mazes.open.astype(bool)[src[m]]
        cm, counts = mean_diff.group_means(X[site][layer], t, n * n)
        ed, eok = mean_diff.open_minus_closed(X[site][layer], e)
        return cm, counts > 0, ed, eok

    table = {(site, l, perm): means(site, l, perm) for site in ("target", "path", "path_start")
             for l in layers for perm in (False, True)}
    out = {}
    for kind in kinds:
        idx = np.flatnonzero(pairs.kind == kind)[: spec.n_pairs]
        if not len(idx):
            continue
        sub = pairs.take(idx)
        r = Rollouts(model, vocab, sub, max_new, spec.batch_size)
        edit = dict(kind=sub.kind, added=sub.added_edge, removed=sub.removed_edge, old_target=sub.clean.target,
                    new_target=sub.corrupt.target)
        sites = mean_diff.SITES if kind == "target_move" else mean_diff.EDGE_SITES
        vec = lambda site, l, perm: mean_diff.pair_vectors(**edit, **dict(zip(  # noqa: E731
            ("cell_means", "cell_ok", "edge_diff", "edge_ok"), table[("path" if site == "decision" else site, l, perm)])))[0]
        vectors = {(site, l): vec(site, l, False) for site in sites for l in layers}
        permuted = {(site, l): vec(site, l, True) for site in sites for l in layers}
        sw = sweep(r, vectors, permuted, spec.mean_diff_strengths, spec.n_random, spec.seed)
        ceiling = r.ceiling()
        best = str(sw["best_strength"])
        m = {"ceiling": ceiling["rate"],
             "mean_diff_success": sw["curves"]["mean_diff"][best]["success"]["rate"],
             "mean_diff_broken": sw["curves"]["mean_diff"][best]["broken"]["rate"],
             "mean_diff_random_success": sw["curves"]["random"][best]["success"]["rate"],
             "mean_diff_permuted_success": sw["curves"]["permuted"][best]["success"]["rate"]}
        m["mean_diff_of_ceiling"] = round(m["mean_diff_success"] / ceiling["rate"], 4) if ceiling["rate"] else None
        d = {"ceiling": ceiling, "mean_diff": sw}
        if kind == "target_move":
            P_sub = sub.clean_tokens.prompt_len.astype(np.int64)
            X_clean = read(sub.clean_tokens, np.arange(len(sub)), P_sub - mean_diff.TARGET_OFFSET)
            fit_prompts = [fit_tokens.prompt(i) for i in range(n_fit)]
            lf = label_free_sweep(r, fit_prompts, X["target"], X_clean, fit_mazes.target.astype(np.int64),
                                           n * n, spec.mean_diff_strengths, spec.label_free_per_cluster,
                                           spec.n_random, spec.seed)
            lb = str(lf["best_strength"])
            m["label_free_success"] = lf["curves"]["label_free"][lb]["success"]["rate"]
            m["label_free_random_success"] = lf["curves"]["random"][lb]["success"]["rate"]
            d["label_free"] = lf
        out[kind] = {"metrics": m, "details": d}
    return out


def _curves(r: dict) -> dict:
    """A kind's retargeting curves by method: mean_diff, permuted, random (and label_free)."""
    d = r["details"]
    return {**d["mean_diff"]["curves"], **({"label_free": d["label_free"]["curves"]["label_free"]} if "label_free" in d else {})}


def retarget_csv(retarget: dict, strengths: list[float]) -> str:
    """strength (x ||v||), then <kind>_<method> success and <kind>_ceiling (a DVC plot)."""
    cols = [(k, m) for k, r in retarget.items() for m in _curves(r)]
    head = "strength," + ",".join([f"{k}_{m}" for k, m in cols] + [f"{k}_ceiling" for k in retarget])
    rows = [[str(_curves(retarget[k])[m][str(s)]["success"]["rate"]) for k, m in cols]
            + [str(r["metrics"]["ceiling"]) for r in retarget.values()] for s in strengths]
    return "\n".join([head] + [f"{s}," + ",".join(row) for s, row in zip(strengths, rows)]) + "\n"


def draw(retarget: dict, details: dict, methods, spec, success_png, breaks_png) -> None:
    """Success (with the ceiling) and break rate against strength, per kind and method."""
    from mazesearch.viz.causal_charts import render_curves

    xs = np.array(spec.mean_diff_strengths, dtype=float)
    success, breaks = {}, {}
    for kind, r in retarget.items():
        d, curves = r["details"], _curves(r)
        ys = lambda c, o: np.array([c[str(s)][o]["rate"] for s in spec.mean_diff_strengths])  # noqa: E731
        where = f"{d['mean_diff']['site']} @ L{d['mean_diff']['layer']} in"
        success[f"{kind} ({where})"] = {**{m: (xs, ys(c, "success")) for m, c in curves.items()},
                                         "ceiling": (xs, np.full(len(xs), r["metrics"]["ceiling"]))}
        breaks[f"{kind}: x ||v||"] = {m: (xs, ys(c, "broken")) for m, c in curves.items()}
        if kind in details:
            rs = np.array(spec.strengths, dtype=float)
            rates = details[kind]["rates"]
            breaks[f"{kind}: x resid norm"] = {m: (rs, np.array([rates[m][str(s)]["broken"]["rate"] for s in spec.strengths]))
                                             for m in methods}
    render_curves(success, success_png, title="retargeting: exactly the edited maze's path, mean-difference and "
                  "label-free directions vs controls (strength x ||v||)", xlabel="strength (x ||v||)", ylabel="rate",
                  logx=True)
    render_curves(breaks, breaks_png, title="break rate (not a valid path in the edited maze) against strength, "
                  "every method", xlabel="strength", ylabel="broken", logx=True)
