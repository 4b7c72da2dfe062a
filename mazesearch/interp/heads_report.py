"""The heads stage's files: the score table, the headline, the top-heads table, the pictures.

Every score stands beside its chance rate (a uniform causal head on the same queries) and the
same head of the random-init control; ``control_best`` is the control's best head for that
hypothesis, the fair comparison for a trained head picked as the best of all heads.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd

import torch

from mazesearch.data.maze import MazeBatch
from mazesearch.data.tokens import TokenBatch
from mazesearch.interp.heads import HYPOTHESES, HeadScores, attention_patterns, hypothesis_keys, picture_query
from mazesearch.interp.roles import cell_mass
from mazesearch.io import write_json_atomic, write_text_atomic
from mazesearch.viz.interp_pictures import render_maze_maps

CSV_COLUMNS = ("hypothesis", "layer", "head", "score", "ci_low", "ci_high", "chance", "ratio",
               "control_score", "control_ratio", "n_queries")


def _num(x) -> float | None:
    """Rounded float for the reports; None for NaN (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def score_table(trained: HeadScores, control: HeadScores, seed: int) -> pd.DataFrame:
    """One row per hypothesis x layer x head (:data:`CSV_COLUMNS`), hypotheses in their order."""
    score, ctrl, chance = trained.score(), control.score(), trained.chance_rate()
    low, high = trained.bootstrap(seed)
    n_q = trained.count.sum(1)
    rows = []
    for h, name in enumerate(HYPOTHESES):
        for layer in range(score.shape[1]):
            for head in range(score.shape[2]):
                s, c, ch = score[h, layer, head], ctrl[h, layer, head], chance[h]
                with np.errstate(invalid="ignore", divide="ignore"):
                    rows.append((name, layer, head, s, low[h, layer, head], high[h, layer, head], ch,
                                 s / ch, c, c / ch, int(n_q[h])))
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


def best_heads(table: pd.DataFrame, k: int) -> dict[str, pd.DataFrame]:
    """The k highest-scoring trained heads per hypothesis (ties: lower layer, then head)."""
    out = {}
    for name in HYPOTHESES:
        rows = table[(table["hypothesis"] == name) & table["score"].notna()]
        out[name] = rows.sort_values(["score", "layer", "head"], ascending=[False, True, True],
                                     kind="stable").head(k)
    return out


def headline(table: pd.DataFrame, n_mazes: int) -> dict:
    """metrics.json: per hypothesis the top head, its score and the control's best head's score
    (its chance and the same control head's score are in scores.csv)."""
    doc: dict = {"n_mazes": n_mazes}
    for name, top in best_heads(table, 1).items():
        rows = table[table["hypothesis"] == name]
        if top.empty:
            doc[name] = {"layer": None, "head": None, "score": None, "control_best": None}
            continue
        t = top.iloc[0]
        doc[name] = {"layer": int(t["layer"]), "head": int(t["head"]), "score": _num(t["score"]),
                     "control_best": _num(rows["control_score"].max())}
    return doc


def scores_csv(table: pd.DataFrame) -> str:
    out = table.copy()
    floats = [c for c in CSV_COLUMNS if c not in ("hypothesis", "layer", "head", "n_queries")]
    out[floats] = out[floats].astype(np.float64).round(6)
    buf = io.StringIO()
    out.to_csv(buf, index=False, lineterminator="\n", na_rep="")
    return buf.getvalue()


def top_heads_md(table: pd.DataFrame, n_mazes: int, k: int = 3) -> str:
    lines = [f"# Top attention heads per hypothesis ({n_mazes} mazes)", "",
             "score = mean attention mass on the hypothesis' keys (95% bootstrap interval over mazes); "
             "chance = a uniform causal head on the same queries; control = the same head of the "
             "random-init model, control best = its best head. docs/interp.md.", ""]
    for name, top in best_heads(table, k).items():
        rows = table[table["hypothesis"] == name]
        lines += [f"## {name}", "", HYPOTHESES[name], ""]
        if top.empty:
            lines += ["no scored queries (e.g. a walls-format sequence has no adjacency list)", ""]
            continue
        lines += ["| head | score | 95% interval | chance | score/chance | control (same head) | control best |",
                  "|---|---|---|---|---|---|---|"]
        best_ctrl = rows["control_score"].max()
        for _, t in top.iterrows():
            lines.append(f"| L{t['layer']}H{t['head']} | {t['score']:.3f} | {t['ci_low']:.3f}–{t['ci_high']:.3f} | "
                         f"{t['chance']:.3f} | {t['ratio']:.1f} | {t['control_score']:.3f} | {best_ctrl:.3f} |")
        lines.append("")
    return "\n".join(lines)


def write_reports(table: pd.DataFrame, n_mazes: int, out: Path, extra: dict | None = None) -> dict:
    """metrics.json (the headline, then ``extra``'s keys), scores.csv, top_heads.md."""
    metrics = {**headline(table, n_mazes), **(extra or {})}
    write_json_atomic(out / "metrics.json", metrics)
    write_text_atomic(out / "scores.csv", scores_csv(table))
    write_text_atomic(out / "top_heads.md", top_heads_md(table, n_mazes))
    return metrics


def draw_pictures(table: pd.DataFrame, metrics: dict, bridges: dict, tokens: TokenBatch,
                  roles: list[pd.DataFrame], mazes: MazeBatch, picture_maze: int, out: Path) -> None:
    """``<hypothesis>.png`` for every hypothesis: its top head's attention from one query (the
    middle scored one of maze ``picture_maze``, else of the first maze that has one), per cell on
    the maze, beside the same head of the control. ``bridges``: {"trained": .., "random": ..}."""
    n, patterns = mazes.grid_n, {}
    # from picture_maze on (wrapping), mazes whose path has >= 5 cells first: a few steps to show
    order = np.roll(np.arange(len(roles)), -picture_maze)
    order = order[np.argsort(mazes.path_len[order] < min(4, mazes.path_len.max()), kind="stable")]  # moves
    for h, name in enumerate(HYPOTHESES):
        found = None
        if metrics[name]["layer"] is not None:
            for m in order.tolist():
                keys = hypothesis_keys(roles[m], n)[h]  # [T, T]
                query = picture_query(keys, roles[m], name)
                if query is not None:
                    found = (m, query, keys)
                    break
        if found is None:
            why = "no scored query: hypothesis undefined for these sequences"
            render_maze_maps({"trained": why, "random-init": why}, n, np.ones(2 * n * (n - 1)),
                             out / f"{name}.png", title=f"{name}: no head scored")
            continue
        m, query, keys = found
        if m not in patterns:  # {model: float [layer, head, T, T]} of maze m
            ids = torch.from_numpy(tokens.tokens(m).astype(np.int64))[None]
            patterns[m] = {role: attention_patterns(b, ids.to(next(b.parameters()).device))[0].cpu().numpy()
                           for role, b in bridges.items()}
        layer, head = metrics[name]["layer"], metrics[name]["head"]
        panels, mass = {}, {}
        for role, label in (("trained", "trained"), ("random", "random-init")):
            weights = patterns[m][role][layer, head, query, : query + 1]  # [query + 1]
            panels[f"{label} L{layer}H{head}"] = cell_mass(weights, roles[m], n * n)
            mass[role] = float(weights[keys[query, : query + 1]].sum())
        row = roles[m].iloc[query]
        if row["role"] == "edge_sep":
            edge_tokens = roles[m][(roles[m]["edge"] == row["edge"]) & (roles[m]["cell"] >= 0)]
            marks, where = sorted(set(edge_tokens["cell"].tolist())), f"';' of listed edge {int(row['edge'])}"
        else:
            marks, where = [int(row["cell"])], f"path step {int(row['path_index'])} {row['token']}"
        t = table[(table["hypothesis"] == name) & (table["layer"] == layer) & (table["head"] == head)].iloc[0]
        title = (f"{name}: head L{layer}H{head}, maze {m}, query = {where} (dashed). Mass on the hypothesis' "
                 f"keys at this query: trained {mass['trained']:.2f}, random-init {mass['random']:.2f}; "
                 f"over all mazes {t['score']:.3f} vs chance {t['chance']:.3f}, control {t['control_score']:.3f}")
        vmax = max(1e-6, max(float(np.nanmax(v)) for v in panels.values()))
        render_maze_maps(panels, n, mazes.open[m], out / f"{name}.png", origin=int(mazes.origin[m]),
                         target=int(mazes.target[m]), path=mazes.path(m), marks=marks, title=title,
                         vmin=0.0, vmax=vmax, colorbar_label="attention on the cell's tokens")
