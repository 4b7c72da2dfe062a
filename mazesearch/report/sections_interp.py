"""The report's two interpretability sections (mazesearch.report.sections): "interp" (stages heads,
geometry, logit_lens, dla, reach, clusters, parallel, dynamics) and "causal" (counterfactuals, patching, steering,
faithfulness). Each stage is one sub-block: its headline numbers (``reports/<stage>/metrics.json``,
plus a CSV or details.json where the headline lacks a control or an interval) beside their
controls, then its picture(s). docs/interp.md defines every number."""

from __future__ import annotations

import re

from mazesearch.report.sections_html import (Ctx, Num, as_dict, caption, heading, interval, metric, num, rate, signed,
                                             table)


def _optional(ctx: Ctx, rel: str) -> dict:
    """A file read only for extra columns (details, a headline count): {} when absent, and those
    cells then show –; unreadable, it fails its block like any other file."""
    return ctx.read_json(rel) if (ctx.reports / rel).is_file() else {}


def _floats(row: dict, *keys: str) -> list:
    """The ``keys`` of a CSV row as floats (None where blank); KeyError when a column is absent."""
    return [float(row[k]) if row[k].strip() else None for k in keys]


# ------------------------------------------------------------------------------------ interp

def _heads(ctx: Ctx) -> str:
    header, rows = ctx.read_rows("heads/scores.csv")
    best: dict[str, dict] = {}
    ctrl_best: dict[str, float] = {}
    for r in (dict(zip(header, r)) for r in rows):
        hyp = r["hypothesis"]
        score, control = _floats(r, "score", "control_score")
        if score is not None and (hyp not in best or score > float(best[hyp]["score"])):
            best[hyp] = r
        if control is not None:
            ctrl_best[hyp] = max(ctrl_best.get(hyp, control), control)
    out = []
    for hyp, r in best.items():
        score, lo, hi, chance, ratio, control = _floats(r, "score", "ci_low", "ci_high", "chance", "ratio", "control_score")
        out.append([hyp, f"L{r['layer']}H{r['head']}", Num(interval(score, lo, hi)), Num(rate(chance)), Num(num(ratio, 2)),
                    Num(rate(control)), Num(rate(ctrl_best.get(hyp)))])
    metrics = _optional(ctx, "heads/metrics.json")
    figures = [ctx.figure(f"heads/{h}.png", "heads", f"top head for {h}: attention on one maze, trained beside "
                          "random-init") for h in best if re.fullmatch(r"[A-Za-z0-9_-]+", h)]
    neck = ""
    if "bottleneck" in metrics:  # older runs have no bottleneck attention
        m = as_dict(metrics["bottleneck"] or {}, "bottleneck")
        d = _optional(ctx, "heads/bottleneck.json")
        t, c = (as_dict(d.get(k) or {}, k) for k in ("trained", "random"))

        def head(x: dict) -> str:
            return f"L{x['layer']}H{x['head']}" if "layer" in x else "–"

        neck = table(f"Bottleneck attention (reports/heads/metrics.json bottleneck, bottleneck.csv; "
                     f"{num(d.get('n_pairs'))} cell pairs)", ["measure", Num("trained"), Num("random-init"), Num("uniform")],
                     [["bottleneck / matched attention, best head", Num(rate(m.get("ratio"), 2)),
                       Num(rate(m.get("control_ratio"), 2)), Num("1.00")],
                      ["best head (95% interval)", f"{head(t)} [{num(t.get('ci_low'))}, {num(t.get('ci_high'))}]",
                       f"{head(c)} [{num(c.get('ci_low'))}, {num(c.get('ci_high'))}]", "–"]]) + caption(
            "Attention from path tokens on the adjacency-list tokens of each maze's top-betweenness cells, over "
            "that on matched non-bottleneck cells (same degree and path status, nearest list position); 1 for a "
            "uniform head. Compare the trained best head with the random-init model's best head. docs/interp.md.")
        figures.append(ctx.figure("heads/bottleneck.png", "heads", "bottleneck / matched attention per head, "
                                  "trained beside random-init, and one maze's cells"))
    return _heads_table(out, metrics.get("n_mazes")) + neck + ctx.gallery(figures)


def _heads_table(rows: list, n_mazes) -> str:
    return table(f"Top head per hypothesis ({num(n_mazes)} mazes; reports/heads/scores.csv): mean attention on the "
                 "hypothesis' keys with its 95% bootstrap interval", ["hypothesis", "top head", Num("score"),
                 Num("chance"), Num("× chance"), Num("control, same head"), Num("control, best head")], rows) + caption(
        "Chance: a uniform causal head on the same queries. Compare the top head (a best of all heads) with "
        "the random-init model's best head. reports/heads/top_heads.md lists three heads per hypothesis.")


def _geometry(ctx: Ctx) -> str:
    m = ctx.read_json("geometry/metrics.json")
    details = _optional(ctx, "geometry/details.json")  # per circuit the chance and best head, the cell count
    best = as_dict((details.get("circuits") or {}).get("summary") or {}, "circuits.summary")
    sp = as_dict(m["spearman"], "spearman")
    eu = as_dict((details.get("embedding") or {}).get("euclidean") or {}, "embedding.euclidean")  # the p-values
    p = {run: as_dict(eu.get(run) or {}, run).get("p_value") for run in ("trained", "random")}
    rows = [["Spearman ρ, embedding vs lattice distance (p)", Num(f"{num(sp.get('trained'))} ({num(p['trained'])})"),
             Num(f"{num(sp.get('control'))} ({num(p['random'])})"), Num("0")]]
    for circuit, label in (("qk", "QK"), ("ov_embed", "OV → embedding"), ("ov_unembed", "OV → logits")):
        c = as_dict(m[circuit], circuit)
        b = as_dict(best.get(circuit) or {}, circuit)
        chance = Num(rate(b.get("chance", c.get("chance"))))  # older runs kept it in metrics.json
        rows.append([f"{label}: neighbour top-1, top lattice heads", Num(rate(c.get("top_heads"))),
                     Num(rate(c.get("top_heads_control"))), chance])
        rows.append([f"{label}: neighbour top-1, best head", Num(rate(b.get("best"))), Num(rate(b.get("best_control"))),
                     chance])
    out = [table(f"Cell-embedding geometry ({num(details.get('n_cells'))} cells; reports/geometry/metrics.json, "
                 "details.json)", ["measure", Num("trained"), Num("random-init"), Num("chance")], rows)]
    if "svd" in m:
        svd = as_dict(m["svd"] or {}, "svd")
        k = (details.get("svd") or {}).get("top_k") or "k"
        out.append(table("SVD of the weights: lattice alignment of the top lattice heads' OV and QK (reports/geometry/"
                         "metrics.json svd; every matrix in details.json)",
                         ["measure", Num("trained"), Num("random-init"), Num("spectrum-matched")],
                         [[f"max R² by row or column of the top-{k} singular directions, top lattice heads (mean of OV, QK)",
                           *(Num(rate(svd.get(role))) for role in ("trained", "random_init", "spectrum_matched"))]])
                   + caption("R²: the fraction of the centred cell embeddings' variance along the direction that "
                             "the cell's row (or column) explains; spectrum-matched: the same singular values with "
                             "random singular vectors, on the trained embeddings."))
    return "\n".join(out) + ctx.gallery([
        ctx.figure("geometry/embedding_pca.png", "geometry", "cell embeddings on two principal components"),
        ctx.figure("geometry/residual_pca.png", "geometry", "last-layer residual stream at path positions"),
        ctx.figure("geometry/svd.png", "geometry", "SVD of the weights: lattice alignment of every matrix's top "
                   "singular directions, trained, random-init, spectrum-matched")])


def _lens(ctx: Ctx) -> str:
    m = ctx.read_json("logit_lens/metrics.json")
    rows = [["accuracy at forks, last layer", Num(rate(m.get("acc_forks"))), Num(rate(m.get("control_acc_forks"))),
             Num(rate(m.get("chance_forks")))],
            ["accuracy at corridors, last layer", Num(rate(m.get("acc_corridors"))), Num("–"), Num("1.000")],
            ["mean decision layer at forks / corridors",
             Num(f"{num(m.get('decision_layer_forks'))} / {num(m.get('decision_layer_corridors'))}"), Num("–"), Num("–")],
            ["dead-end share of the mass at forks, last layer", Num(rate(m.get("dead_end_share_final"))),
             Num(rate(m.get("control_dead_end_share_final"))), Num("–")]]
    out = [table("Logit lens headline (reports/logit_lens/metrics.json)",
                 ["measure", Num("trained"), Num("random-init"), Num("chance")], rows)]
    if ctx.exists("logit_lens/lens.csv", "logit_lens"):
        header, csv_rows = ctx.read_rows("logit_lens/lens.csv")
        cols = ("forks", "corridors", "control_forks", "control_corridors", "chance_forks")
        out.append(table("Next-cell accuracy per layer, each layer decoded as if it were the last "
                         "(reports/logit_lens/lens.csv)", ["layer"] + [Num(c.replace("_", " ")) for c in cols],
                         [[d["layer"]] + [Num(rate(v)) for v in _floats(d, *cols)]
                          for d in (dict(zip(header, r)) for r in csv_rows)]))
    return "\n".join(out) + ctx.gallery([ctx.figure("logit_lens/lens.png", "logit_lens", "logit lens per layer")])


def _dla(ctx: Ctx) -> str:
    m = ctx.read_json("dla/metrics.json")
    frac = (_optional(ctx, "dla/details.json").get("trained") or {}).get("total", {}).get("frac_prefers_correct")
    lines = [metric("mean logit difference correct − best wrong neighbour at forks",
                    f"{num(m.get('total_logit_diff'))} (random-init {num(m.get('control_total_logit_diff'))})"
                    + (f"; the answer wins at {rate(frac)} of forks" if frac is not None else ""))]
    for k in (1, 2, 3):
        if m.get(f"top{k}_component") is not None:
            lines.append(metric(f"top {k} component", f"{m[f'top{k}_component']}: {num(m.get(f'top{k}_mean'))}"))
    lines.append(caption(f"The top component writes {rate(m.get('top1_frac_of_total'))} of the total "
                         "(reports/dla/metrics.json; all components in reports/dla/components.csv)."))
    return "\n".join(lines) + ctx.gallery([ctx.figure("dla/top_components.png", "dla", "largest components, trained "
                                                      "beside random-init")])


def _reach(ctx: Ctx) -> str:
    m = dict(as_dict(ctx.read_json("reach/metrics.json"), "reach metrics"))
    mlp_max = as_dict(m.pop("mlp_largest", None) or {}, "mlp_largest")  # the MLP's headline: largest k over layers
    anchors = list(dict.fromkeys(list(m) + list(mlp_max)))
    layers = list(dict.fromkeys(layer for a in m for layer in as_dict(m[a], a)))
    details = _optional(ctx, "reach/details.json")
    th = as_dict(details.get("thresholds") or {}, "thresholds")
    versions = as_dict(details.get("versions") or {}, "versions")

    def mlp_k(anchor: str, layer: str):  # per layer from details.json (– when absent)
        per = as_dict(as_dict(as_dict(versions.get(anchor) or {}, anchor).get("mlp") or {}, "mlp").get("layers")
                      or {}, "layers")
        return as_dict(per.get(layer) or {}, layer).get("reach")

    rule = (f" (largest k with balanced accuracy ≥ {num(th.get('min_balanced_accuracy'))} and ≥ "
            f"{num(th.get('min_selectivity'))} above the stronger control; the MLP's lead is its gap over its "
            "own random-init and permuted-label fits, never its raw score)" if th else "")
    rows = [["linear", layer] + [Num(num(as_dict(m[a], a).get(layer) if a in m else None)) for a in anchors]
            for layer in layers]
    rows += [["MLP", layer] + [Num(num(mlp_k(a, layer))) for a in anchors] for layer in layers]
    rows.append(["MLP", "largest over layers"] + [Num(num(mlp_max.get(a))) for a in anchors])
    return table(f"Reach per layer: maze moves around each anchor decodable above control, by a linear probe "
                 f"and by a small MLP{rule}; reports/reach/metrics.json, details.json", ["probe", "layer"]
                 + [Num(a) for a in anchors], rows) + ctx.gallery(
        [ctx.figure("reach/reach.png", "reach", "linear probe: balanced accuracy per layer and k, trained beside "
                    "both controls"),
         ctx.figure("reach/reach_mlp.png", "reach", "MLP probe: the same, beside its own controls")])


def _clusters(ctx: Ctx) -> str:
    m = ctx.read_json("clusters/metrics.json")  # {headline label: {trained, random_init, permuted}}
    details = _optional(ctx, "clusters/details.json")
    labels = as_dict(details.get("labels") or {}, "labels")
    rows = []
    for name in list(m) + [n for n in labels if n not in m]:  # the headline first, then the rest of details
        d = as_dict(labels.get(name) or {}, name)
        layer = d.get("best_layer")
        per_layer = as_dict(d.get("layers") or {}, name)
        s = as_dict(m[name] if name in m else per_layer.get(layer) or {}, name)
        rows.append([name + (" (headline)" if name in m else ""), layer if isinstance(layer, str) else "–",
                     Num(rate(d.get("chance")))] + [Num(signed(s.get(r))) for r in ("trained", "random_init", "permuted")])
    method = as_dict(details.get("method") or {}, "method")
    return table(f"Clustering of path-position residuals by a row label: {num(method.get('k'))}-NN purity (neighbours "
                 "from other mazes only) minus chance, at each label's best layer (largest lead over the stronger "
                 "control); reports/clusters/metrics.json, details.json",
                 ["label", "best layer", Num("chance (purity)"), Num("trained"), Num("random-init"),
                  Num("permuted labels")], rows) + caption(
        "0 = chance. Permuted labels are shuffled across mazes: they measure chance with the same neighbours. "
        "Every layer and the raw purities: reports/clusters/details.json and by_layer.csv.") + ctx.gallery(
        [ctx.figure("clusters/maps.png", "clusters", "t-SNE per layer coloured by the headline label, trained above "
                    "random-init")])


def _parallel(ctx: Ctx) -> str:
    m = as_dict(ctx.read_json("parallel/metrics.json").get("alternatives") or {}, "alternatives")
    details = _optional(ctx, "parallel/details.json")
    method = as_dict(details.get("method") or {}, "method")
    k, best = str(method.get("k", "")), details.get("best_layer")
    versions = as_dict(details.get("versions") or {}, "versions")
    headline = {"alternatives": {"trained": m.get("trained"), "stronger_control": m.get("stronger_control")},
                "ahead": {"trained": m.get("ahead")}}
    rows = []
    for name, what in (("alternatives", "alternatives (off the path, not yet passed)"), ("ahead", "true path ahead"),
                       ("discarded", "branches already passed")):
        d = as_dict(versions.get(name) or {}, name)
        layer = as_dict(as_dict(d.get("layers") or {}, name).get(best) or {}, name)
        at = {**as_dict(layer.get(k) or {}, name), **headline.get(name, {})}
        shape = as_dict(d.get("shape") or {}, name)
        rows.append([what + (" (headline)" if name == "alternatives" else "")]
                    + [Num(rate(at.get(r))) for r in ("trained", "random_init", "permuted", "stronger_control")]
                    + [shape.get("peak_layer") if isinstance(shape.get("peak_layer"), str) else "–",
                       Num(signed(shape.get("peak_gap"))), Num(signed(shape.get("drop_after_peak"))),
                       Num(num(shape["explore_then_discard"]) if "explore_then_discard" in shape else "–")])
    at_best = " at the alternatives' best layer" + (f" ({best})" if isinstance(best, str) else "")
    return table(f"Parallel paths: per-cell probes of the cells within {k or 'k'} moves of the current cell, test "
                 f"balanced accuracy (mean over cells, 0.5 = chance){at_best}, beside both controls; then each "
                 "version's gap over the stronger control at its peak layer and its drop to the last layer; "
                 "reports/parallel/metrics.json, details.json",
                 ["cells", Num("trained"), Num("random-init"), Num("permuted labels"), Num("stronger control"),
                  "peak layer (gap)", Num("gap at peak"), Num("drop to last layer"), Num("explore, then discard")],
                 rows) + caption(
        "Explore, then discard: the gap over the stronger control peaks at an inner layer and falls by the last "
        "(both by >= parallel.min_change). Every layer and k: reports/parallel/details.json and by_layer.csv."
    ) + ctx.gallery([ctx.figure("parallel/parallel.png", "parallel", "per layer: alternatives, true path ahead and "
                                "passed branches beside both controls; the gaps, peaks starred")])


def _dynamics(ctx: Ctx) -> str:
    m = ctx.read_json("dynamics/metrics.json")
    names = [k.removeprefix("jump_step_") for k in m if k.startswith("jump_step_")]
    rows = [[n, Num("none" if m.get(f"jump_step_{n}") is None else num(m[f"jump_step_{n}"])),
             Num("–" if n == "exact_path" else num(m.get(f"lead_steps_{n}")))] for n in names]
    out = [table("Jump step of each curve (half its rise; none when it rises < 0.05) and the probe's lead over the "
                 "exact-path rate (positive: the representation comes first); reports/dynamics/metrics.json",
                 ["curve", Num("jump step"), Num("lead, steps")], rows)]
    if ctx.exists("dynamics/curve.csv", "dynamics"):
        header, csv_rows = ctx.read_rows("dynamics/curve.csv")
        out.append(table("Per snapshot: exact-path rate and probe scores (reports/dynamics/curve.csv)",
                         [Num(h) for h in header], [[Num(num(r[0]))] + [Num(rate(v)) for v in r[1:]] for r in csv_rows]))
    return "\n".join(out) + ctx.gallery([ctx.figure("dynamics/dynamics.png", "dynamics", "training dynamics")])


def interp_parts(ctx: Ctx) -> list[str]:
    parts = [("heads", "Attention heads", ["heads/scores.csv"], _heads),
             ("geometry", "Embedding geometry and OV/QK circuits", ["geometry/metrics.json"], _geometry),
             ("logit_lens", "Logit lens", ["logit_lens/metrics.json"], _lens),
             ("dla", "Direct logit attribution at forks", ["dla/metrics.json"], _dla),
             ("reach", "Reach per layer", ["reach/metrics.json"], _reach),
             ("clusters", "Clustering per layer", ["clusters/metrics.json"], _clusters),
             ("parallel", "Parallel paths", ["parallel/metrics.json"], _parallel),
             ("dynamics", "Training dynamics", ["dynamics/metrics.json"], _dynamics)]
    return [heading(f"interp-{stage}", title) + "\n" + ctx.block(rels, stage, lambda f=f: f(ctx))
            for stage, title, rels, f in parts]


# ------------------------------------------------------------------------------------ causal

def _counterfactuals(ctx: Ctx) -> str:
    m = ctx.read_json("counterfactuals/metrics.json")
    det = _optional(ctx, "counterfactuals/details.json")
    rows = []
    for kind, n in m.items():
        d = det.get(kind) or {}
        rows.append([kind, Num(num(n)), Num(num(d.get("n_tried"))), Num(num(d.get("mean_decision_step"))),
                     Num(f"{num(d.get('mean_path_len_clean'))} / {num(d.get('mean_path_len_corrupt'))}")])
    return table("Minimally edited twin mazes per kind (reports/counterfactuals/metrics.json, details.json)",
                 ["kind", Num("pairs"), Num("source mazes tried"), Num("mean decision step"),
                  Num("path length clean / edited")], rows)


def _patching(ctx: Ctx) -> str:
    m = ctx.read_json("patching/metrics.json")
    det = _optional(ctx, "patching/details.json")
    kinds = as_dict(det.get("kinds") or {}, "kinds")  # the layer and head names live in details.json
    rows = []
    for kind, d in m.items():
        d = {**as_dict(d, kind), **as_dict(kinds.get(kind) or {}, kind)}
        rows.append([kind, Num(num(d.get("n_pairs"))), Num(f"{num(d.get('ld_clean'))} / {num(d.get('ld_corrupt'))}"),
                     Num(num(d.get("control_gap"))), d.get("edit_carries_until") or "–", d.get("decision_from") or "–",
                     f"{d.get('top_head')} ({rate(d.get('top_head_noise_damage'))})"])
    paths = []
    for p in det.get("paths") or []:
        p = as_dict(p, "paths")
        by, rnd = as_dict(p.get("by_input") or {}, "by_input"), as_dict(p.get("random") or {}, "random")
        paths.append([p.get("kind"), p.get("path"), Num(rate(p.get("fraction"))),
                      Num(" / ".join(rate(by.get(c)) for c in ("q", "k", "v"))),
                      Num(f"{rate(rnd.get('mean'))} ± {rate(rnd.get('sd'))} (n={rnd.get('n')})"), Num(rate(rnd.get("above")))])
    path_table = table("Path patching: the sender clean only as read by the receivers' q, k and v "
                       "(reports/patching/details.json)",
                       ["kind", "path", Num("restored"), Num("via q / k / v alone"), Num("random paths: mean ± sd"),
                        Num("random paths restoring as much")], paths) + caption(
        "Restored fraction of the clean–corrupt logit difference (1 = clean). Sender 'edit': the residual "
        "stream at the edited tokens entering the receivers' block. The control: random paths of the same shape "
        "(patching.path_random, patching.path_seed).") if paths else ""
    return table("Activation patching on pairs the model gets right both ways (reports/patching/metrics.json, details.json)",
                 ["kind", Num("pairs"), Num("logit diff clean / corrupt"), Num("random-init gap"),
                  "edited tokens carry it until", "decision position from", "most necessary head (noising damage)"],
                 rows) + caption(
        "Restoring ≥ 0.5 of the normalised logit difference counts as carrying the decision; the random-init "
        "control's logit-difference gap shows what an untrained model separates.") + path_table + ctx.gallery([
        ctx.figure("patching/resid.png", "patching", "residual-stream patching per layer and position group"),
        ctx.figure("patching/heads.png", "patching", "per-head patching"),
        ctx.figure("patching/paths.png", "patching", "path patching beside random paths")])


def _steering(ctx: Ctx) -> str:
    m = ctx.read_json("steering/metrics.json")
    details = _optional(ctx, "steering/details.json")
    kinds = as_dict(details.get("kinds") or {}, "kinds")
    # metrics.json holds the headlines; details.json's summary every per-kind number
    summary = as_dict(details.get("summary") or {}, "summary")
    m = {k: {**as_dict(v, k), **as_dict(summary.get(k) or {}, k)} if isinstance(v, dict) else v for k, v in m.items()}
    rows = []
    for kind, d in m.items():
        if kind == "sae":
            continue
        d = as_dict(d, kind)
        probe = rate(d.get("probe_success"))
        at = ((kinds.get(kind) or {}).get("rates") or {}).get("probe") or {}
        s = at.get(str(d.get("best_strength"))) or at.get(num(d.get("best_strength"))) or {}
        if s.get("success"):
            probe = interval(s["success"].get("rate"), s["success"].get("lo"), s["success"].get("hi"))
        rows.append([kind, Num(num(d.get("n_pairs"))), Num(num(d.get("best_strength"))), Num(probe)]
                    + [Num(rate(d.get(f"{w}_success"))) for w in ("random", "permuted", "sae", "unsteered")]
                    + [Num(f"{rate(d.get('probe_broken'))} / {rate(d.get('unsteered_broken'))}")])
    out = [table("Steering success: the rollout is exactly the edited maze's shortest path; probe direction at its "
                 "best strength beside the controls at the same norm (reports/steering/metrics.json)",
                 ["kind", Num("pairs"), Num("strength"), Num("probe [95%]"), Num("random"), Num("permuted-label probe"),
                  Num("SAE feature"), Num("unsteered"), Num("broken: probe / unsteered")], rows)]
    retarget = as_dict(details.get("retarget") or {}, "retarget")
    rows = []
    for kind, d in m.items():
        if kind == "sae" or not isinstance(d, dict) or "mean_diff_success" not in d:
            continue
        md = as_dict((retarget.get(kind) or {}).get("mean_diff") or {}, kind)
        where = f"{md.get('site', '?')} @ block {md.get('layer', '?')} input, x{num(md.get('best_strength'))}"
        rows.append([kind, where, Num(rate(d.get("mean_diff_success"))), Num(rate(d.get("mean_diff_random_success"))),
                     Num(rate(d.get("mean_diff_permuted_success"))), Num(rate(d.get("label_free_success"))),
                     Num(rate(d.get("ceiling"))), Num(rate(d.get("mean_diff_of_ceiling"))),
                     Num(rate(d.get("mean_diff_broken")))])
    if rows:
        out.append(table("Retargeting with mean-difference directions (the cheese vector's recipe) at the best site "
                         "and layer input, beside same-norm random and permuted-label directions, the label-free "
                         "goal (k-means clusters named by steering), and the ceiling: the model's own exact rate "
                         "given the edited prompt (reports/steering/metrics.json)",
                         ["kind", "site, layer, strength (x ||v||)", Num("mean-diff"), Num("random"),
                          Num("permuted"), Num("label-free"), Num("ceiling"), Num("of ceiling"), Num("broken")], rows))
    sae = m.get("sae")
    if isinstance(sae, dict):
        out.append(metric("SAE", f"FVU {num(sae.get('fvu'))}, L0 {num(sae.get('l0'))}, dead {rate(sae.get('dead_frac'))}, "
                                 f"matched-feature AUROC edges {rate(sae.get('edge_auroc'))} / targets "
                                 f"{rate(sae.get('target_auroc'))}, exact path spliced {rate(sae.get('spliced_exact'))} "
                                 f"vs model {rate(sae.get('model_exact'))}"))
    figures = [ctx.figure("steering/success.png", "steering", "success vs strength")]
    figures += [ctx.figure(f"steering/{name}.png", "steering", caption) for name, caption in
                (("retarget", "retargeting success vs strength (x ||v||), with the ceiling"),
                 ("breaks", "break rate vs strength, every method"))]
    return "\n".join(out) + ctx.gallery(figures)


def _faithfulness(ctx: Ctx) -> str:
    m = ctx.read_json("faithfulness/metrics.json")
    n = m.get("n_heads")
    level = m.get("level")
    rows = [[label, Num(f"{num(m.get(key))} of {num(n)}")] for key, label in (
        ("k_ranked", "patching order"), ("k_random", "random order (control)"),
        ("k_ablation", "single-ablation order (reference)"))]
    return "\n".join([
        metric("exact-path rate, full model / every head mean-ablated",
               f"{rate(m.get('full_exact'))} / {rate(m.get('all_ablated_exact'))}"),
        table(f"Fewest heads kept (the rest mean-ablated) that keep ≥ {num(level)} of the full exact-path rate "
              "(reports/faithfulness/metrics.json)", ["head order", Num("heads kept")], rows),
        caption("Most mazes that the full model fails and an ablated model solves, over every k: "
                f"{num(m.get('max_helped'))}."),
        ctx.gallery([ctx.figure("faithfulness/curve.png", "faithfulness", "exact path vs heads kept")])])


def causal_parts(ctx: Ctx) -> list[str]:
    parts = [("counterfactuals", "Counterfactual pairs", _counterfactuals),
             ("patching", "Activation patching", _patching),
             ("steering", "Steering", _steering),
             ("faithfulness", "Faithfulness: how few heads", _faithfulness)]
    return [heading(f"causal-{stage}", title) + "\n" + ctx.block([f"{stage}/metrics.json"], stage, lambda f=f: f(ctx))
            for stage, title, f in parts]
