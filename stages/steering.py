"""Stage steering: add probe and SAE directions to the residual stream; does the path follow?

    models/ + data/counterfactuals/pairs.parquet + data/{mazes,tokens}/<counterfactuals.dataset>
    + reports/probes/details.json (best layers) + data/vocab.json -> reports/steering/
        metrics.json   headline (DVC metric) per kind (edge_add, edge_remove, wall_move,
                       target_move): success of the probe direction at its best strength beside
                       random directions at that strength, the SAE direction's best success; the
                       mean-difference direction's beside random, its share of the ceiling (and
                       the label-free goal's for target_move); the SAE's FVU and the exact-path
                       rate with it spliced in (beside the model's)
        details.json   ``summary``: every per-kind number (pairs, strengths, break, permuted-label
                       and unsteered rates, ...); every (kind, direction, strength): success /
                       broken / unchanged rates with 95% intervals; probe and SAE fit facts;
                       matched SAE features; the retargeting sweeps
        steering.csv   strength, then success per kind and direction, the probe's break rate (a DVC plot)
        success.png    success (and break) rate against strength, per kind, every direction

Probes are refitted here on the dataset's mazes that no pair came from, at the layer where stage
probes found each probe best, on every <PATH_START> and path row (an edge's state and the target
are facts of the whole maze, and steering edits those positions); the SAE is trained on the same
rows at the walls probe's layer. Definitions: mazesearch.interp.steering.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from mazesearch.io import InputError, atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section
from mazesearch.model.run_loader import stage_device
from stages._run_args import model_run_parser

KINDS = ("edge_add", "edge_remove", "wall_move", "target_move")
METHODS = ("probe", "permuted", "random", "sae")


def best_block(details_path: str, probe: str) -> int:
    """The block whose output stage probes found best for ``probe`` (``blocks.{l}.hook_resid_post``);
    when that is the embeddings, block 0's output (the first place a vector can be added)."""
    try:
        name = json.loads(Path(details_path).read_text())[probe]["best_layer"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(details_path, f"no best layer for probe {probe} ({exc})", "re-run `dvc repro probes`") from None
    if name == "embed":
        return 0
    if not (isinstance(name, str) and name.startswith("blocks.") and name.endswith(".hook_resid_post")):
        raise InputError(details_path, f"the {probe} probe's best layer {name!r} is not a block output",
                         "re-run `dvc repro probes`")
    return int(name.split(".")[1])


HEADLINE = ("probe_success", "random_success", "sae_success", "ceiling", "mean_diff_success", "mean_diff_random_success",
            "label_free_success", "label_free_random_success")
SAE_HEADLINE = ("fvu", "model_exact", "spliced_exact")


def headline(summary: dict) -> dict:
    """metrics.json: per kind the success of each method beside its random control and the
    ceiling, and the SAE's fit; the rest (pairs, strengths, break and permuted-label rates, ...)
    stays in details.json's ``summary`` (``dvc metrics show`` stays a screenful)."""
    return {k: {m: v[m] for m in (SAE_HEADLINE if k == "sae" else HEADLINE) if m in v} for k, v in summary.items()}


def wide_csv(details: dict, strengths: list[float]) -> str:
    """strength, then <kind>_<method> success and <kind>_probe_broken columns (a DVC plot)."""
    cols = [(k, m, "success") for k in details for m in METHODS] + [(k, "probe", "broken") for k in details]
    head = "strength," + ",".join(f"{k}_{m}" + ("_broken" if o == "broken" else "") for k, m, o in cols)
    lines = [head] + [f"{s}," + ",".join(str(details[k]["rates"][m][str(s)][o]["rate"]) for k, m, o in cols)
                      for s in strengths]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = model_run_parser(__doc__, "reports/steering")
    ap.add_argument("--pairs", default="data/counterfactuals/pairs.parquet")
    ap.add_argument("--probes", default="reports/probes/details.json")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "steering", "steering")
    cf = require_section(params, "counterfactuals", "steering")
    probes_spec = require_section(params, "probes", "steering")
    walls_layer, target_layer = best_block(args.probes, "walls"), best_block(args.probes, "target")

    import torch

    from mazesearch.data.maze import read_mazes
    from mazesearch.data.tokens import Vocab, read_tokens
    from mazesearch.interp import steering
    from mazesearch.interp.activations import build_index
    from mazesearch.interp.counterfactuals import read_pairs
    from mazesearch.model.gpt import load_gpt
    from mazesearch.viz.causal_charts import render_curves

    t0 = time.perf_counter()
    vocab = Vocab.from_json(args.vocab)
    pairs = read_pairs(args.pairs)  # InputError naming the file
    mazes = read_mazes(Path(args.mazes_dir) / f"{cf.dataset}.parquet")
    tokens = read_tokens(Path(args.tokens_dir) / f"{cf.dataset}.parquet", vocab=vocab)
    device = stage_device(spec, "steering")
    model = load_gpt(args.model_dir, device=device, vocab=vocab, vocab_path=args.vocab).eval()
    n = mazes.grid_n

    # probe and SAE fit rows: mazes no pair came from
    fit_rows = np.setdiff1d(np.arange(len(mazes)), np.unique(pairs.maze_row))
    fit_mazes, fit_tokens = mazes.take(fit_rows), tokens.take(fit_rows)
    index = build_index(fit_tokens, vocab, n, positions=("path_start", "path"))
    layers = sorted({walls_layer, target_layer})
    X = steering.residuals_at(model, fit_tokens, index["maze_row"].to_numpy(), index["token_pos"].to_numpy(), layers,
                              vocab.pad_id, spec.batch_size)
    # An edge's state and the target are facts of the whole maze: both probes (and the SAE's
    # matching) use every row, as the steering edits every position from <PATH_START> on.
    row_maze = index["maze_row"].to_numpy()
    edges_open = fit_mazes.open[row_maze].astype(bool)  # [rows, E]
    target_cell = fit_mazes.target[row_maze].astype(np.int64)  # [rows]
    slot = (index["kind"].to_numpy() == "path") * (1 + index["path_step"].to_numpy().astype(np.int64))
    fit = dict(maze_id=index["maze_id"].to_numpy(), slot=slot, C=probes_spec.C, max_iter=probes_spec.max_iter,
               seed=spec.seed)
    probe = {"walls": steering.fit_probe(X[walls_layer], edges_open, "multilabel", edges_open.shape[1], **fit),
             "target": steering.fit_probe(X[target_layer], target_cell, "multiclass", n * n, **fit)}
    walls_w, target_w = probe["walls"], probe["target"]
    norm = {l: float(np.linalg.norm(X[l], axis=1).mean()) for l in layers}
    sae = steering.sae_directions(X[walls_layer], edges_open, target_cell, n * n, spec)

    # the SAE spliced in at its layer, on the mazes the pairs came from (held out from its training)
    from mazesearch.evaluation.metrics import compute_metrics
    from mazesearch.evaluation.predict import walks_of
    from mazesearch.interp.intervene import Intervention, rollout_under_cached

    max_new = n * n + n + 1
    held = np.unique(pairs.maze_row)
    held_prompts = [tokens.prompt(int(i)) for i in held]
    # spliced where the SAE was trained (from <PATH_START> on): the adjacency list is not its data
    held_start = torch.as_tensor(tokens.prompt_len[held].astype(np.int64) - 1)
    roll = dict(max_new_tokens=max_new, end_id=vocab.token_to_id["<PATH_END>"], pad_id=vocab.pad_id,
                batch_size=spec.batch_size)
    splice = {name: compute_metrics(mazes.take(held), walks_of(rollout_under_cached(model, held_prompts, iv, **roll),
                                                                         vocab, n))["exact_path"]
              for name, iv in (("model", Intervention()),
                               ("spliced", Intervention(replace={walls_layer: steering.sae_splice(sae.sae)},
                                                        from_pos=held_start)))}
    sae.metrics.update(model_exact=steering.rate(splice["model"])["rate"],
                       spliced_exact=steering.rate(splice["spliced"])["rate"])
    sae.details["splice"] = {k: steering.rate(v) for k, v in splice.items()}

    # steering, kind by kind
    details, metrics = {}, {}
    for kind in KINDS:
        idx = np.flatnonzero(pairs.kind == kind)[: spec.n_pairs]
        if not len(idx):
            continue
        sub = pairs.take(idx)
        prompts = [sub.clean_tokens.prompt(i) for i in range(len(sub))]
        layer = target_layer if kind == "target_move" else walls_layer
        edit = dict(kind=sub.kind, added=sub.added_edge, removed=sub.removed_edge, old_target=sub.clean.target,
                    new_target=sub.corrupt.target)
        vectors = {"probe": steering.edit_vectors(**edit, edge_dirs=walls_w.trained, cell_dirs=target_w.trained),
                   "permuted": steering.edit_vectors(**edit, edge_dirs=walls_w.permuted, cell_dirs=target_w.permuted),
                   "sae": steering.edit_vectors(**edit, edge_dirs=sae.edge_dirs, cell_dirs=sae.cell_dirs)}
        randoms = steering.random_vectors(len(sub), model.cfg.d_model, spec.n_random, spec.seed)
        start = sub.clean_tokens.prompt_len.astype(np.int64) - 1 if spec.positions == "path" else 0
        run = lambda vec, lay, scale: steering.steer(  # noqa: E731
            model, lay, prompts, vec, scale, sub.clean, sub.corrupt, vocab, from_pos=start, max_new_tokens=max_new,
            batch_size=spec.batch_size)
        base = run(np.zeros_like(vectors["probe"]), layer, 0.0)
        table = {"unsteered": {o: steering.rate(base[o]) for o in steering.OUTCOMES}}  # the baseline
        for method in METHODS:
            lay = walls_layer if method == "sae" else layer
            for s in spec.strengths:
                if method == "random":
                    outs = [run(r, lay, s * norm[lay]) for r in randoms]
                    got = {o: np.concatenate([x[o] for x in outs]) for o in steering.OUTCOMES}
                else:
                    got = run(vectors[method], lay, s * norm[lay])
                rates = {o: steering.rate(got[o]) for o in steering.OUTCOMES}
                table.setdefault(method, {})[str(s)] = rates
        best = max(spec.strengths, key=lambda s: table["probe"][str(s)]["success"]["rate"])
        sae_best = max(spec.strengths, key=lambda s: table["sae"][str(s)]["success"]["rate"])
        metrics[kind] = {
            "n_pairs": len(sub), "best_strength": best,
            "probe_success": table["probe"][str(best)]["success"]["rate"],
            "probe_broken": table["probe"][str(best)]["broken"]["rate"],
            "random_success": table["random"][str(best)]["success"]["rate"],
            "permuted_success": table["permuted"][str(best)]["success"]["rate"],
            "sae_success": table["sae"][str(sae_best)]["success"]["rate"],
            "unsteered_success": table["unsteered"]["success"]["rate"],
            "unsteered_broken": table["unsteered"]["broken"]["rate"],
        }
        details[kind] = {"layer": layer, "n_pairs": len(sub), "sae_best_strength": sae_best, "rates": table}
    metrics["sae"] = sae.metrics

    # retargeting: mean-difference and label-free directions at every layer input, the ceiling
    from mazesearch.interp import retarget as rt

    retarget = rt.run_kinds(model, vocab, pairs, KINDS, fit_mazes, fit_tokens, index, edges_open, target_cell, spec, max_new)
    for kind, r in retarget.items():
        metrics[kind].update(r["metrics"])
    summary, metrics = metrics, headline(metrics)  # every number in details.json; the headlines as metrics
    doc = {"dataset": cf.dataset, "walls_layer": walls_layer, "target_layer": target_layer,
           "n_fit_mazes": len(fit_rows), "n_fit_rows": len(index), "mean_resid_norm": {str(k): round(v, 4) for k, v in norm.items()},
           "strengths_are": "multiples of the mean residual norm at the steered layer",
           "summary": summary, "kinds": details, "sae": sae.details,
           "retarget": {k: r["details"] for k, r in retarget.items()},
           "retarget_strengths_are": "multiples of ||v||, the direction's own norm (1: the mean difference itself)"}
    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", doc)
        write_text_atomic(out / "steering.csv", wide_csv(details, spec.strengths))
        panels = {}
        for kind, d in details.items():
            series = {}
            for method in METHODS:
                xs = np.array(spec.strengths, dtype=float)
                series[method] = (xs, np.array([d["rates"][method][str(s)]["success"]["rate"] for s in spec.strengths]))
            series["unsteered"] = (xs, np.full(len(xs), d["rates"]["unsteered"]["success"]["rate"]))
            series["probe: broken"] = (xs, np.array([d["rates"]["probe"][str(s)]["broken"]["rate"] for s in spec.strengths]))
            panels[f"{kind} (layer {d['layer']}, {d['n_pairs']} pairs)"] = series
        write_text_atomic(out / "retarget.csv", rt.retarget_csv(retarget, spec.mean_diff_strengths))
        rt.draw(retarget, details, METHODS, spec, out / "retarget.png", out / "breaks.png")
        render_curves(panels, out / "success.png", title="steering: the rollout is exactly the edited maze's "
                      "shortest path, against strength (x mean residual norm)", xlabel="strength",
                      ylabel="rate", logx=True)
    print(f"steering: {time.perf_counter() - t0:.1f}s; " + "; ".join(f"{k}: {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
