"""The geometry stage's numbers and files: each trained value beside the random-init control's,
its chance and (for the Spearman correlation) a permutation p-value. docs/interp.md."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import TokenBatch, Vocab
from mazesearch.interp.activations import build_index
from mazesearch.interp.geometry import (
    cell_embeddings, cell_token_ids, final_residuals, head_circuits, neighbour_chance, neighbour_scores, pca_2d,
    spearman_lattice,
)
from mazesearch.interp.labels import future_path
from mazesearch.interp.weight_svd import headline as svd_headline, score_grid
from mazesearch.io import InputError, write_json_atomic
from mazesearch.model.gpt import GPT
from mazesearch.viz.interp_pictures import render_embedding_pca, render_residual_pca
from mazesearch.viz.svd_charts import render_score_grids

CIRCUITS = ("ov_embed", "ov_unembed", "qk")
SCORES = ("neighbour_top1", "neighbour_auroc", "self_top1")
REFERENCE_SPEARMAN = 0.368  # jirpy maze-transformer (docs/interp.md)


def _num(x) -> float | None:
    return None if x is None or math.isnan(float(x)) else round(float(x), 6)


def read_top_heads(path: Path, k: int) -> list[tuple[int, int]]:
    """The k best trained heads for ``lattice_adjacency`` in the heads stage's scores.csv."""
    if not path.is_file():
        raise InputError(path, "does not exist", "run `dvc repro heads` first")
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"is not a readable CSV ({exc})", "re-run `dvc repro heads`") from None
    need = {"hypothesis", "layer", "head", "score"}
    if not need <= set(table.columns):
        raise InputError(path, f"lacks columns {sorted(need - set(table.columns))}", "re-run `dvc repro heads`")
    rows = table[(table["hypothesis"] == "lattice_adjacency") & table["score"].notna()]
    if rows.empty:
        raise InputError(path, "has no scored lattice_adjacency rows", "re-run `dvc repro heads`")
    rows = rows.sort_values(["score", "layer", "head"], ascending=[False, True, True], kind="stable").head(k)
    return [(int(r.layer), int(r.head)) for r in rows.itertuples()]


def embedding_section(models: dict[str, GPT], vocab: Vocab, grid_n: int, coord: str, n_permutations: int,
                      seed: int) -> tuple[dict, dict[str, np.ndarray]]:
    """Spearman (Euclidean and cosine) per model with permutation p-values, and each model's
    2-D PCA of the cell embeddings ``[n*n, 2]`` (for the picture). The same shuffles for every
    model (one generator per model, same seed)."""
    ids = cell_token_ids(vocab, grid_n, coord)
    doc: dict = {"reference_spearman_jirpy": REFERENCE_SPEARMAN}
    points = {}
    for metric in ("euclidean", "cosine"):
        doc[metric] = {}
        for role, model in models.items():
            x = cell_embeddings(model, ids).numpy()  # [cells, d_model]
            s = spearman_lattice(x, grid_n, metric, n_permutations, np.random.default_rng(seed))
            doc[metric][role] = {k: _num(v) if isinstance(v, float) else v for k, v in s.items()}
    pca = {}
    for role, model in models.items():
        points[role], explained = pca_2d(cell_embeddings(model, ids).numpy())
        pca[role] = [_num(v) for v in explained]
    doc["pca_explained_variance"] = pca
    return doc, points


def circuit_section(models: dict[str, GPT], vocab: Vocab, grid_n: int, coord: str,
                    top_heads: list[tuple[int, int]] | None) -> dict:
    """Per head and model the neighbour scores of the OV and QK circuits; the headline summaries
    (best over heads per model; mean over ``top_heads`` per model, None without them)."""
    ids = cell_token_ids(vocab, grid_n, coord)
    scored = {role: {name: neighbour_scores(m, grid_n) for name, m in head_circuits(model, ids).items()}
              for role, model in models.items()}  # role -> circuit -> score -> [layer, head]
    L, H = next(iter(scored.values()))["qk"]["neighbour_top1"].shape
    heads = [{"layer": l, "head": h, **{role: {c: {s: _num(scored[role][c][s][l, h]) for s in SCORES}
                                               for c in CIRCUITS} for role in models}}
             for l in range(L) for h in range(H)]
    summary = {}
    for c in CIRCUITS:
        top1 = {role: scored[role][c]["neighbour_top1"] for role in models}
        pick = (lambda a: float(np.mean([a[l, h] for l, h in top_heads]))) if top_heads else (lambda a: None)
        summary[c] = {"chance": _num(neighbour_chance(grid_n)),
                      "top_heads": _num(pick(top1["trained"])), "top_heads_control": _num(pick(top1["random"])),
                      "best": _num(top1["trained"].max()), "best_control": _num(top1["random"].max())}
    return {"chance": {"neighbour_top1": _num(neighbour_chance(grid_n)), "neighbour_auroc": 0.5,
                       "self_top1": _num(1 / grid_n**2)},
            "top_heads": None if top_heads is None else [{"layer": l, "head": h} for l, h in top_heads],
            "summary": summary, "heads": heads}


def residual_section(models: dict[str, GPT], tokens: TokenBatch, mazes: MazeBatch, vocab: Vocab,
                     batch_size: int) -> tuple[dict, dict]:
    """The last residual stream at every path position, projected to 2-D per model; labels:
    the current cell, and whether the cell most often undecided (ahead on the path at closest to
    half the positions) is still ahead."""
    index = build_index(tokens, vocab, mazes.grid_n, ["path"])
    ahead = future_path(mazes, index).values  # bool [rows, cells]
    rate = ahead.mean(0)
    cell = int(np.argmin(np.abs(rate - 0.5)))
    ids = tokens.padded(vocab.pad_id, dtype=np.int64)
    rows, pos = index["maze_row"].to_numpy(), index["token_pos"].to_numpy().astype(np.int64)
    points, explained = {}, {}
    for role, model in models.items():
        points[role], ev = pca_2d(final_residuals(model, ids, rows, pos, batch_size))
        explained[role] = [_num(v) for v in ev]
    doc = {"layer": f"blocks.{next(iter(models.values())).cfg.n_layers - 1}.hook_resid_post",
           "n_positions": len(index), "pca_explained_variance": explained,
           "ahead_cell": [cell // mazes.grid_n, cell % mazes.grid_n], "ahead_rate": _num(rate[cell])}
    labels = {"current_cell": index["current_cell"].to_numpy(), "ahead": ahead[:, cell], "ahead_cell": cell}
    return doc, {"points": points, **labels}


HEADLINE_CIRCUIT = ("top_heads", "top_heads_control")  # chance, best / best_control: details.json


def headline(details: dict) -> dict:
    """metrics.json: the embedding's Spearman beside the random-init model's, per circuit the top
    lattice heads' neighbour score beside the control's, and the top heads' SVD alignment (trained,
    random-init, spectrum-matched). The Spearman p-values, the neighbour chance (one number for the three circuits), the
    best single head per circuit and the cell count stay in details.json (``dvc metrics show``
    stays a screenful)."""
    eu = details["embedding"]["euclidean"]
    return {"spearman": {"trained": eu["trained"]["rho"], "control": eu["random"]["rho"]},  # p-values: details
            **{c: {k: s[k] for k in HEADLINE_CIRCUIT} for c, s in details["circuits"]["summary"].items()},
            "svd": svd_headline(details["svd"])}


def render_svd(svd: dict, top_heads: list[dict] | None, out_png: Path) -> None:
    """svd.png: every matrix's lattice alignment, trained beside random-init beside spectrum-matched,
    one row per layer; the top lattice heads outlined."""
    n_layers = 1 + max(m["layer"] for m in svd["matrices"])
    n_heads = 1 + max(m["head"] for m in svd["matrices"] if m["head"] is not None)
    cols = [f"H{h} {c}" for h in range(n_heads) for c in ("OV", "QK")] + ["MLP in", "MLP out"]
    marks = [(t["layer"], 2 * t["head"] + j) for t in top_heads or [] for j in (0, 1)]
    roles = (("trained", "trained"), ("random_init", "random-init"), ("spectrum_matched", "spectrum-matched"))
    render_score_grids({label: score_grid(svd, role, n_layers, n_heads) for role, label in roles},
                       [f"L{l}" for l in range(n_layers)], cols, out_png, marks=marks,
                       colorbar_label="max R² by row or column",
                       title=f"SVD of the weights: best lattice alignment of each matrix's top-{svd['top_k']} singular "
                             "directions (ANOVA R² of the centred cell embeddings projected on one, by row or column)"
                             + ("; red: the top lattice heads" if marks else ""))


def write_outputs(details: dict, emb_points: dict, resid: dict, grid_n: int, probe_grid_n: int, out: Path) -> dict:
    metrics = headline(details)
    write_json_atomic(out / "metrics.json", metrics)
    write_json_atomic(out / "details.json", details)
    eu = details["embedding"]["euclidean"]
    render_embedding_pca({f"trained (Spearman {eu['trained']['rho']:.3f})": emb_points["trained"],
                          f"random-init (Spearman {eu['random']['rho']:.3f})": emb_points["random"]},
                         grid_n, out / "embedding_pca.png",
                         title=f"cell token embeddings, 2-D PCA; grey = lattice neighbours; Spearman of "
                               f"embedding vs lattice distance, p = {eu['trained']['p_value']} (permutation)")
    r = details["residual"]
    render_residual_pca({"trained": resid["points"]["trained"], "random-init": resid["points"]["random"]},
                        resid["current_cell"], resid["ahead"], probe_grid_n, resid["ahead_cell"],
                        out / "residual_pca.png",
                        title=f"{r['layer']} at {r['n_positions']} path positions, 2-D PCA per model")
    render_svd(details["svd"], details["circuits"]["top_heads"], out / "svd.png")
    return metrics
