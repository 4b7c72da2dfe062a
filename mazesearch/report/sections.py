"""The static sections of the offline report (``reports/index.html``), built from what the other
stages already wrote under ``reports/``; page.py lays them out and copies the images.

Reads (the stage that writes each in dvc.yaml is named in the page when a file is missing):
    data/<dataset>.json, data/details/<dataset>.json          generate   -> section data
    train/metrics.json, train/plots/metrics/*/*.tsv, *.png     train      -> training
    eval/summary.json, summary.png, pictures/<suite>.png       eval_summary, pictures -> evaluation
    eval/size.png, eval/size_plot.csv                          eval_summary -> size
    probes/metrics/*.json, details.json, *_f1.png              probes     -> probes
    heads, geometry, logit_lens, dla, reach, clusters, parallel, dynamics (same-named stages) -> interp
    counterfactuals, patching, steering, faithfulness          (same-named stages) -> causal
    findings                                                   every one above -> findings (first)
Nothing else: no params.yaml, and of the data files only what the stage passes in (each
dataset's generator and lattice side, read from data/mazes), so the sections build without the
pipeline's inputs.
A missing file is named with its ``dvc repro`` stage; an unreadable one gives a "could not read"
note for its block only. Same files -> the same strings (docs/metrics.md, docs/probes.md and
docs/interp.md define the numbers)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from mazesearch.report.findings import RULE, collect, train_side
from mazesearch.report.sections_html import (
    READ_ERRORS, Ctx, Num, as_dict, caption, esc, heading, interval, metric, num, rate, signed, svg_chart, table)
from mazesearch.report.sections_interp import causal_parts, interp_parts


@dataclasses.dataclass(frozen=True)
class Section:
    id: str        # html anchor
    title: str
    html: str      # body fragment; images as src="assets/<name>"
    present: bool  # False when none of the section's stage outputs exist


def dataset_info(mazes_dir: Path) -> dict[str, tuple[str | None, int | None]]:
    """dataset -> (generator, lattice side) from data/mazes/<dataset>.parquet (two columns read);
    a file that cannot be read is left out (the Data table then shows –)."""
    import pyarrow.parquet as pq

    out = {}
    for path in sorted(Path(mazes_dir).glob("*.parquet")):
        try:
            t = pq.read_table(path, columns=["generator", "grid_n"])
        except (OSError, ValueError, KeyError):
            continue
        gens = sorted({str(g) for g in t["generator"].unique().to_pylist() if g is not None})
        grids = t["grid_n"].unique().to_pylist()
        out[path.stem] = (", ".join(gens) or None, int(grids[0]) if len(grids) == 1 else None)
    return out


def build_sections(reports: Path, datasets: dict[str, tuple] | None = None) -> tuple[list[Section], dict[str, Path]]:
    """Sections in page order + the images to copy: asset file name -> source path.
    ``datasets``: dataset -> (generator, lattice side) (:func:`dataset_info`), for the Data table
    and the findings' training maze size; without it they come from reports/eval/summary.json."""
    ctx = Ctx(Path(reports))
    ctx.datasets = dict(datasets or {})
    plan = [("findings", "Findings", _findings),
            ("data", "Data", _data), ("training", "Training", _training), ("evaluation", "Evaluation", _evaluation),
            ("size", "Size generalization", _size), ("probes", "Probes", _probes),
            ("interp", "Inside the model", interp_parts), ("causal", "Causal tests", causal_parts)]
    sections = []
    for sid, title, parts in plan:
        ctx.start_section()
        body = "\n".join(p for p in parts(ctx) if p)
        if ctx.found:
            sections.append(Section(sid, title, body, True))
        else:  # one note listing everything, rather than one per block
            sections.append(Section(sid, title, _nothing_yet(ctx.missing), False))
    return sections, dict(sorted(ctx.assets.items()))


def _nothing_yet(missing: list[tuple[str, str]]) -> str:
    by_stage: dict[str, list[str]] = {}
    for shown, stage in missing:
        if shown not in by_stage.setdefault(stage, []):
            by_stage[stage].append(shown)
    if not by_stage:  # a section that reads the others' files (findings)
        return '<p class="missing">Not built yet: none of the files it reads exist (see the sections below).</p>'
    items = "".join(f"<li><code>dvc repro {esc(stage)}</code> writes {esc(', '.join(paths))}</li>"
                    for stage, paths in by_stage.items())
    return f'<p class="missing">Not built yet: none of this section\'s files exist.</p>\n<ul class="missing">{items}</ul>'


# ------------------------------------------------------------------------------------ findings

def _findings(ctx: Ctx) -> list[str]:
    grid = (ctx.datasets.get("train") or (None, None))[1]
    found = collect(ctx.reports, train_side(ctx.reports, grid))
    if not found:
        return []
    ctx.found += 1
    rows = "\n".join(f'<tr class="{esc(f.verdict)}"><td>{esc(f.hypothesis)}</td><td>{esc(f.evidence)}</td>'
                     f'<td class="verdict">{esc(f.verdict)}</td><td class="source">{esc(f.source)}</td></tr>' for f in found)
    counts = {v: sum(f.verdict == v for f in found) for v in ("supported", "contradicted", "open")}
    return [f'<table class="findings"><caption>{esc(len(found))} hypotheses, each number beside its control: '
            f'{counts["supported"]} supported, {counts["contradicted"]} contradicted, {counts["open"]} open</caption>\n'
            f"<thead><tr><th>hypothesis</th><th>score vs control</th><th>verdict</th><th>from reports/</th></tr></thead>"
            f"\n<tbody>\n{rows}\n</tbody></table>", caption("The rule: " + RULE + " (mazesearch/report/findings.py)")]


# ------------------------------------------------------------------------------------ data

_FIRST = ("train", "val", "test")  # the training sets first, then the rest by name


def _eval_datasets(ctx: Ctx) -> dict[str, tuple]:
    """dataset -> (generator, grid_n), from the evaluation summary (the data JSONs carry neither).
    Read quietly: the evaluation section reports that file's problems."""
    try:
        rows = as_dict(json.loads((ctx.reports / "eval/summary.json").read_text(encoding="utf-8")), "summary")
        return {r["dataset"]: (r.get("generator"), r.get("grid_n")) for r in rows.values()
                if isinstance(r, dict) and "dataset" in r}
    except READ_ERRORS:
        return {}


def _data(ctx: Ctx) -> list[str]:
    folder = ctx.reports / "data"
    names = sorted((p.stem for p in folder.glob("*.json")),
                   key=lambda n: (_FIRST.index(n) if n in _FIRST else len(_FIRST), n)) if folder.is_dir() else []
    if not names:
        ctx.exists("data/<dataset>.json", "generate")
        return [ctx.missing_note(["data/<dataset>.json"], "generate")]
    known, rows, notes, no_details = _eval_datasets(ctx), [], [], []
    for name in names:
        ctx.exists(f"data/{name}.json", f"generate@{name}")
        if not (ctx.reports / f"data/details/{name}.json").is_file():
            no_details.append(f"data/details/{name}.json")
        gen, grid = known.get(name, (None, None))
        if name in ctx.datasets:  # read from data/mazes/<name>.parquet: every dataset, trained on or not
            gen, grid = ctx.datasets[name]
        row = [name, gen or "–", Num(num(grid)), "–"] + [Num("–")] * 7
        for rel, fill in ((f"data/{name}.json", _data_counts), (f"data/details/{name}.json", _data_means)):
            if (ctx.reports / rel).is_file():
                try:  # one bad file blanks its cells and adds a note; the other rows stay
                    fill(ctx.read_json(rel), row)
                except READ_ERRORS as exc:
                    notes.append(ctx.note(exc))
        rows.append(row)
    out = [table("Datasets: reports/data/<name>.json (duplicates) and reports/data/details/<name>.json (counts, means per maze)",
                 ["dataset", "generator", "grid", "maze sides", Num("mazes"), Num("dropped: in train"),
                  Num("duplicates"), Num("path moves"), Num("forks on path"), Num("dead ends"),
                  Num(">1 shortest path")], rows),
           caption("Generator and grid (lattice) side are read from data/mazes/<name>.parquet, since the "
                   "dataset stats files do not record them (else from reports/eval/summary.json; – when neither "
                   "has the dataset). 'dropped: in train' counts mazes removed because the training set holds them; "
                   "duplicates are repeats kept within the set; '>1 shortest path' is the fraction of mazes "
                   "with several shortest paths (cyclic generators). docs/data.md.")]
    if no_details:
        out.append(ctx.missing_note(no_details, "generate"))
    return out + notes


# ------------------------------------------------------------------------------------ training

_TRAIN_LABELS = {"val_exact_path": "validation exact-path rate", "val_loss": "validation loss",
                 "val_path_loss": "validation loss on path tokens", "step": "training steps"}


def _data_counts(head: dict, row: list) -> None:
    row[6] = Num(num(head.get("n_duplicates")))


def _data_means(det: dict, row: list) -> None:
    sides = det.get("sizes", "?")
    row[3] = "–" if sides == "?" else "whole grid" if sides is None else (
        ", ".join(str(s) for s in sorted(set(sides))) + f" ({det.get('placement')})")
    row[4:6] = [Num(num(det.get(k))) for k in ("n_mazes", "n_dropped_overlap")]  # the headline: duplicates only
    row[7:] = [Num(rate(det.get(k), 2)) for k in ("mean_path_len", "mean_forks_on_path", "mean_dead_ends")] + [
        Num(rate(det.get("frac_multiple_shortest_paths")))]


def _training(ctx: Ctx) -> list[str]:
    def headline():
        m = ctx.read_json("train/metrics.json")
        return "\n".join(metric(_TRAIN_LABELS.get(k, k), num(v)) for k, v in m.items()) + caption(
            "Final model, teacher-forced on every validation maze (reports/train/metrics.json).")

    out = [ctx.block(["train/metrics.json"], "train", headline)]
    pngs = sorted(p.relative_to(ctx.reports).as_posix() for p in (ctx.reports / "train").rglob("*.png")) \
        if (ctx.reports / "train").is_dir() else []
    out.append(ctx.gallery([ctx.figure(rel, "train", "training curves") for rel in pngs]))
    out.append(ctx.block(["train/plots/metrics"], "train", lambda: _curves(ctx)))
    return out


def _curves(ctx: Ctx) -> str:
    """The dvclive TSVs (``step<TAB>value``) drawn as two charts: losses, accuracies."""
    root = ctx.reports / "train/plots/metrics"
    loss, acc = [], []
    for tsv in sorted(root.glob("*/*.tsv")):
        rel = tsv.relative_to(ctx.reports).as_posix()
        name = f"{tsv.parent.name} {tsv.stem}"
        if "loss" in tsv.stem:
            loss.append((name, _tsv_points(ctx, rel)))
        elif "exact" in tsv.stem or "acc" in tsv.stem:
            acc.append((name, _tsv_points(ctx, rel)))
    charts = [svg_chart("loss vs step", loss, "step", "loss", log_y=True) if loss else "",
              svg_chart("accuracy vs step", acc, "step", "rate", y_range=(0.0, 1.0)) if acc else ""]
    return "\n".join(c for c in charts if c) + caption(
        "Drawn from reports/train/plots/metrics/<curve>/<value>.tsv (dvclive). The validation points are "
        "scored on a fixed subset of the validation mazes during training, so the last one can differ "
        "slightly from the final metrics above; exact path = every path token right (teacher-forced).")


def _tsv_points(ctx: Ctx, rel: str) -> list[tuple[float, float]]:
    _, rows = ctx.read_rows(rel, delimiter="\t")
    return [(float(r[0]), float(r[1])) for r in rows if len(r) >= 2]


# ------------------------------------------------------------------------------------ evaluation

def _evaluation(ctx: Ctx) -> list[str]:
    suites: list[str] = []

    def summary():
        s = ctx.read_json("eval/summary.json")
        rows = []
        for suite, r in s.items():
            r = as_dict(r, f"suite {suite}")
            suites.append(suite)
            model = (interval(r["model_exact_path"], r.get("model_exact_path_lo"), r.get("model_exact_path_hi"))
                     if r.get("feedable", True) else f"not fed: {r.get('reason') or 'unreadable'}")
            base = interval(r["baseline_exact_path"], r.get("baseline_exact_path_lo"), r.get("baseline_exact_path_hi"))
            gain = (r["model_exact_path"] - r["baseline_exact_path"]
                    if r.get("model_exact_path") is not None and r.get("baseline_exact_path") is not None else None)
            rows.append([suite, r.get("dataset", "–"), r.get("generator", "–"), Num(num(r.get("grid_n"))),
                         Num(num(r.get("n_mazes"))), Num(num(r.get("leakage"))), Num(model), Num(base),
                         Num(signed(gain)), Num(rate(r.get("model_valid_path"))),
                         Num(f"{rate(r.get('model_first_fork_correct'))} / {rate(r.get('baseline_first_fork_correct'))}")])
        return table("Exact-path rate per suite, model beside the random-at-forks baseline (95% Wilson intervals; "
                     "reports/eval/summary.json)",
                     ["suite", "dataset", "generator", "grid", Num("n"), Num("leakage"), Num("model exact"),
                      Num("baseline exact"), Num("model − baseline"), Num("model valid path"),
                      Num("first fork right: model / baseline")], rows) + caption(
            "Baseline: a walker that moves to a random unvisited open neighbour (the suite's difficulty). "
            "Exact = the predicted path is a shortest path and ends there; valid = every step through an open "
            "edge; first fork = teacher-forced choice at the first decision point. Leakage: test mazes found in "
            "the training set. docs/metrics.md.")

    out = [ctx.block(["eval/summary.json"], "eval_summary", summary),
           ctx.figure("eval/summary.png", "eval_summary", "exact-path rate per suite, model vs baseline")]
    if not ctx.exists("eval/pictures", "pictures"):
        return out + [ctx.missing_note(["eval/pictures"], "pictures")]
    have = sorted(p.stem for p in (ctx.reports / "eval/pictures").glob("*.png"))
    order = [s for s in suites if s in have] + [s for s in have if s not in suites]
    out.append(heading("evaluation-pictures", "Mazes per suite"))
    out.append(caption("Each picture shows up to evaluate.n_pictures mazes of the suite with the model's greedy "
                       "path: failures (not an exact path) first, then successes, each in file order "
                       "(mazesearch/evaluation/pictures.py), so a suite with that many failures shows only "
                       "failures; the baseline's path where the model cannot read the suite."))
    out.append(ctx.gallery([ctx.figure(f"eval/pictures/{s}.png", "pictures", f"suite {s}") for s in order]))
    return out


# ------------------------------------------------------------------------------------ size

def _size(ctx: Ctx) -> list[str]:
    def size_table():
        header, rows = ctx.read_rows("eval/size_plot.csv")
        if header[:3] != ["size", "suite", "placement"] or header[-3:] != ["exact", "lo", "hi"]:
            raise ValueError(f"unexpected columns {header}")
        entries: dict[tuple, dict] = {}
        for r in rows:
            if len(r) < len(header):
                raise ValueError(f"short row {r}")
            # series "model (placed)"; files written before that fix say "model, placed" unquoted,
            # which spills over two fields: take the fixed columns from both ends
            series = ",".join(r[3:-3]).strip()
            who = re.split(r"[,(]", series)[0].strip()
            entries.setdefault((int(r[0]), r[1], r[2]), {})[who] = tuple(float(x) for x in r[-3:])
        out = []
        for (side, suite, placement), e in entries.items():
            m, b = e.get("model"), e.get("baseline")
            out.append([Num(str(side)), suite, placement, Num(interval(*m) if m else "not fed"),
                        Num(interval(*b) if b else "–"), Num(signed(m[0] - b[0]) if m and b else "–")])
        return table("Exact-path rate vs maze side (reports/eval/size_plot.csv; 95% Wilson intervals)",
                     [Num("side"), "suite", "placement", Num("model exact"), Num("baseline exact"),
                      Num("model − baseline")], out) + caption(
            "Mazes larger than any training maze, at the lattice origin or at random offsets ('fills grid': "
            "the whole lattice). Where the model's interval lies below the baseline's, the random walker "
            "does better.")

    return [ctx.figure("eval/size.png", "eval_summary", "exact-path rate vs maze side"),
            ctx.block(["eval/size_plot.csv"], "eval_summary", size_table)]


# ------------------------------------------------------------------------------------ probes

def _probes(ctx: Ctx) -> list[str]:
    details: dict = {}

    def headline():
        names = sorted(p.stem for p in (ctx.reports / "probes/metrics").glob("*.json"))
        scored = {}  # probe -> its test score's metric (balanced_accuracy, r2, ...), from details.json
        try:  # read quietly: the per-layer block below reports that file's problems
            scored = {k: str(v.get("main_score")) for k, v in ctx.read_json("probes/details.json").items()
                      if isinstance(v, dict) and v.get("main_score")}
        except READ_ERRORS:
            pass
        rows = []
        for name in names:
            m = ctx.read_json(f"probes/metrics/{name}.json")
            rows.append([name, m.get("best_layer") or "–", (scored.get(name) or "–").replace("_", " "),
                         Num(rate(m.get("test_score"))),
                         Num(signed(m.get("selectivity_vs_random_init"))), Num(signed(m.get("selectivity_vs_permuted")))])
        return table("Probe headline: the layer chosen on validation mazes, its test score and selectivity "
                     "(trained − control) against each control (reports/probes/metrics/<probe>.json)",
                     ["probe", "best layer (val)", "test score is", Num("test score"), Num("vs random-init"),
                      Num("vs permuted labels")], rows) + caption(
            "One name per number: a multilabel probe's test score is its balanced accuracy, computed per cell "
            "(edge) and averaged over the cells (docs/probes.md); the F1 pictures below map the F1 of each cell, "
            "and their panels' 'mean F1' is the mean of those (the macro F1, a different number); the maze "
            "explorer's future-path caption gives its own lighter probe's F1 pooled over cells (explorer probe "
            "micro-F1), not this one either.")

    def by_layer():
        details.update(ctx.read_json("probes/details.json"))
        out = []
        for probe, d in details.items():
            d = as_dict(d, f"probe {probe}")
            main, best, rows, sel = d["main_score"], d.get("best_layer"), [], []
            void = as_dict(d.get("void_controls") or {}, "void_controls")
            for i, (layer, ld) in enumerate(as_dict(d["layers"], f"{probe} layers").items()):
                test, s = as_dict(as_dict(ld, layer)["test"], "test"), ld.get("selectivity") or {}
                # a void control is the real task again: its score says nothing (docs/probes.md)
                rows.append([layer] + [Num("void" if run in void else rate((test.get(run) or {}).get(main)))
                                       for run in ("trained", "random_init", "permuted")]
                            + [Num(signed(s.get("vs_random_init"))), Num(signed(s.get("vs_permuted")))])
                if layer == best:
                    sel.append(i)
            why = "; ".join(f"void control {k}: {v}" for k, v in sorted(void.items()))
            out.append(table(f"{probe} ({d.get('task')}): test {main} per layer, {num(d.get('n_test_rows'))} test rows; "
                             f"highlighted: best layer on val" + (f"; {why}" if why else ""),
                             ["layer", Num("trained"), Num("random-init model"), Num("permuted labels"),
                              Num("trained − random-init"), Num("trained − permuted")], rows, sel))
        return "\n".join(out) + caption(
            "Controls: the same probe on a never-trained model of the same architecture (what the input and "
            "architecture make decodable) and on the trained activations with another maze's labels. A probe "
            "is interesting when it beats both, and decodable does not mean used (docs/probes.md).")

    out = [ctx.block(["probes/metrics"], "probes", headline), ctx.block(["probes/details.json"], "probes", by_layer)]
    figs = [ctx.figure(f"probes/{p}_f1.png", "probes", f"{p}: per-{'edge' if p == 'walls' else 'cell'} test F1 at the "
                       "best layer, trained beside random-init and permuted-label probes (panel titles: mean of the "
                       f"per-{'edge' if p == 'walls' else 'cell'} F1, not the balanced accuracy above)")
            for p in ("walls", "on_solution", "future_path")]
    return out + [ctx.gallery(figs)]
