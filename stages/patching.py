"""Stage patching: activation patching on counterfactual pairs: where is the decision computed?

    models/ + data/counterfactuals/pairs.parquet + data/vocab.json -> reports/patching/
        metrics.json   headline (DVC metric) per aligned kind (target_move, wall_move): pairs used,
                       mean logit difference clean / corrupt (and the random-init control's gap),
                       the most necessary head's noising damage and denoising; path patching of
                       the kind's first path in patching.paths: the fraction it restores, the mean
                       over random paths of its shape, the share of those restoring as much
        details.json   every map: resid (layer x position group) and heads (layer x head), both
                       directions, per-pair logit differences; per kind the last layer whose edited
                       tokens still carry the difference, the first layer from which the decision
                       position holds it, the head whose noising hurts most; every path (through
                       q, k, v together and alone) beside each of its random paths
        heads.csv      kind, layer, head, denoise, noise (faithfulness ranks heads from it)
        resid.png      layer x position group maps, per kind and direction
        heads.png      layer x head maps, per kind and direction
        paths.png      each path's restored fraction beside its random paths

**Path patching** (mazesearch.interp.path_patching): a sender (a head, or the edited token
positions) is clean only as read by the path's receiver heads (their q, k and v inputs), every
other reader and component keeps the corrupt run; the control is ``patching.path_random`` random
paths of the same shape (``patching.path_seed``).

Only pairs the model gets right both ways are patched (logit difference > 0 on the clean run,
< 0 on the corrupt one): patching explains behaviour the model has. A model that gets none of a
kind right (an undertrained one) has all pairs of that kind patched, and details.json says so. Definitions:
mazesearch.interp.patching and docs/interp.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mazesearch.io import InputError, atomic_dir, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section
from mazesearch.model.run_loader import stage_device

ALIGNED = ("target_move", "wall_move")  # kinds whose prompts have the same length


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--model-dir", default="models")
    ap.add_argument("--pairs", default="data/counterfactuals/pairs.parquet")
    ap.add_argument("--vocab", default="data/vocab.json")
    ap.add_argument("--out-dir", default="reports/patching")
    args = ap.parse_args(argv)

    params = load_params_or_exit(args.params)
    spec = require_section(params, "patching", "patching")
    from mazesearch.data.tokens import Vocab
    from mazesearch.interp.counterfactuals import read_pairs

    t0 = time.perf_counter()
    vocab = Vocab.from_json(args.vocab)
    pairs = read_pairs(args.pairs)  # InputError naming the file, before the slow imports below

    import torch

    from mazesearch.interp import path_patching, patching
    from mazesearch.interp.bridge import to_bridge
    from mazesearch.interp.forks import cell_tokens
    from mazesearch.model.run_loader import control_model
    from mazesearch.model.gpt import load_gpt
    from mazesearch.viz.causal_charts import render_paths, render_patching

    device = stage_device(spec, "patching")
    trained = load_gpt(args.model_dir, device=device, vocab=vocab, vocab_path=args.vocab)
    with torch.no_grad():
        bridges = {"trained": to_bridge(trained.eval()), "control": to_bridge(control_model(trained, spec.control_seed))}
    ct = cell_tokens(vocab, pairs.clean.grid_n)
    try:  # every path must fit the model before any work
        paths = [(i, p.kind, path_patching.Path.parse(p.sender, p.receivers).check(trained.cfg.n_layers,
                                                                                   trained.cfg.n_heads))
                 for i, p in enumerate(spec.paths)]
    except ValueError as e:
        raise InputError(args.params, f"patching.paths: {e}", "name heads of this model") from None

    results, tried, control_gap, selection, path_results = {}, {}, {}, {}, []
    for kind in ALIGNED:
        rows = np.flatnonzero(pairs.kind == kind)
        if not len(rows):
            continue
        sub = pairs.take(rows)
        batch = patching.pair_batch(
            [sub.clean_tokens.tokens(i) for i in range(len(sub))], [sub.corrupt_tokens.tokens(i) for i in range(len(sub))],
            sub.clean_tokens.prompt_len, sub.decision_pos, sub.edited_pos, sub.clean_next, sub.corrupt_next, ct, vocab,
            device=device)
        metric = patching.logit_diff_fn(batch)
        with torch.no_grad():
            ld = {role: (metric(b(batch.clean)).double().cpu().numpy(), metric(b(batch.corrupt)).double().cpu().numpy())
                  for role, b in bridges.items()}
        right = np.flatnonzero((ld["trained"][0] > 0) & (ld["trained"][1] < 0))[: spec.n_pairs]
        selection[kind] = "right both ways"
        if not len(right):  # an undertrained model: patch what there is, and say so
            right, selection[kind] = np.arange(min(len(rows), spec.n_pairs)), "all (none right both ways)"
        tried[kind] = len(rows)
        control_gap[kind] = float(ld["control"][0].mean() - ld["control"][1].mean())
        keep = torch.as_tensor(right, device=device)
        chosen = patching.PairBatch(clean=batch.clean[keep], corrupt=batch.corrupt[keep],
                                    decision_pos=batch.decision_pos[keep], clean_token=batch.clean_token[keep],
                                    corrupt_token=batch.corrupt_token[keep],
                                    masks={g: m[keep] for g, m in batch.masks.items()})
        results[kind] = patching.patch_pairs(bridges["trained"], chosen)
        mine = [(i, p) for i, k, p in paths if k == kind]
        path_results += path_patching.run_paths(bridges["trained"], chosen, kind, [p for _, p in mine],
                                                spec.path_random, spec.path_seed, [i for i, _ in mine])
    if not results:
        raise InputError(args.pairs, f"it holds no {' or '.join(ALIGNED)} pair", "see counterfactuals.n_per_kind")
    metrics, details, csv = patching.summarize(results, tried, control_gap)
    for kind, how in selection.items():
        details["kinds"][kind]["pairs_patched"] = how
    path_metrics, details["paths"] = path_patching.summarize(path_results, spec.path_random)
    for kind, numbers in path_metrics.items():
        metrics[kind].update(numbers)
    n_layers = trained.cfg.n_layers
    with atomic_dir(args.out_dir) as out:
        write_json_atomic(out / "metrics.json", metrics)
        write_json_atomic(out / "details.json", details)
        write_text_atomic(out / "heads.csv", csv)
        maps = {f"{kind}, {d}": r.recovered("resid", d) for kind, r in results.items() for d in patching.DIRECTIONS}
        render_patching(maps, patching.resid_rows(n_layers), list(patching.GROUPS), out / "resid.png",
                        title="activation patching of the residual stream: normalised logit difference at the "
                              "decision (denoise: clean into corrupt run; noise: corrupt into clean run)",
                        xlabel="position group", ylabel="residual stream")
        maps = {f"{kind}, {d}": r.recovered("heads", d) for kind, r in results.items() for d in patching.DIRECTIONS}
        render_patching(maps, [f"L{l}" for l in range(n_layers)], [f"H{h}" for h in range(trained.cfg.n_heads)],
                        out / "heads.png", title="activation patching of each head's output at every position",
                        xlabel="head", ylabel="layer")
        render_paths({f"{r.kind}: {r.path}": (r.fraction, r.random_fractions) for r in path_results}, out / "paths.png",
                     title="path patching: the fraction of the logit difference a path restores (sender clean only "
                           "as read by the receivers' q, k, v) beside random paths of the same shape")
    print(f"patching: {', '.join(f'{k} {len(r.ld_clean)} pairs' for k, r in results.items())} in "
          f"{time.perf_counter() - t0:.1f}s; " + "; ".join(f"{k}: {v}" for k, v in metrics.items()))


if __name__ == "__main__":
    stage_main(main)
