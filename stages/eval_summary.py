"""Stage eval_summary: every reports/eval/<suite>.json -> one table across suites.

    reports/eval/summary.json       {suite: {generator, grid_n, model and baseline means, ...}}
    reports/eval/summary.md         the same as a Markdown table
    reports/eval/summary_plot.csv   suite,model_exact,baseline_exact (a DVC bar plot)
    reports/eval/summary.png        the same as a grouped bar chart

Suites are listed in params order. The baseline's exact-path rate is the suite's complexity
measure: the chance that a random walker that never turns back finds the shortest path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mazesearch.logger import write_text_atomic
from mazesearch.params import load_params_or_exit

# (column title, metric): what the table shows for each suite
TABLE_METRICS = (
    ("exact", "exact_path"),
    ("valid", "valid_path"),
    ("reached", "target_reached"),
    ("first fork", "first_fork_correct"),
    ("forks", "frac_forks_correct"),
    ("streak", "correct_streak_frac"),
    ("overlap", "node_overlap"),
    ("invalid tok", "invalid_token_rate"),
)


def summarize(reports: dict[str, dict]) -> dict[str, dict]:
    """One row per suite: identity, feedability, then model_<metric> and baseline_<metric>."""
    rows = {}
    for suite, r in reports.items():
        row = {k: r[k] for k in ("dataset", "generator", "grid_n", "n_mazes", "feedable", "reason", "leakage")}
        for _, key in TABLE_METRICS:
            row[f"model_{key}"] = r["model"][key] if r["model"] else None
            row[f"baseline_{key}"] = r["baseline"][key]
        rows[suite] = row
    return rows


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown(rows: dict[str, dict]) -> str:
    head = ["suite", "generator", "grid_n", "n", "feedable", "leakage"]
    head += [f"model {t}" for t, _ in TABLE_METRICS[:1]] + ["baseline exact"]
    head += [f"model {t}" for t, _ in TABLE_METRICS[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for suite, r in rows.items():
        cells = [suite, r["generator"], r["grid_n"], r["n_mazes"], r["feedable"], r["leakage"],
                 r["model_exact_path"], r["baseline_exact_path"]]
        cells += [r[f"model_{key}"] for _, key in TABLE_METRICS[1:]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
        if not r["feedable"]:
            notes.append(f"- {suite}: not fed to the model: {r['reason']}")
    text = "# Evaluation summary\n\n" + "\n".join(lines) + "\n"
    text += ("\nbaseline exact = chance that a random walker that never turns back walks the shortest "
             "path (the suite's complexity). Definitions: docs/metrics.md.\n")
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    return text


def plot_csv(rows: dict[str, dict]) -> str:
    out = ["suite,model_exact,baseline_exact"]
    for suite, r in rows.items():
        model = "" if r["model_exact_path"] is None else f"{r['model_exact_path']:.6g}"
        out.append(f"{suite},{model},{r['baseline_exact_path']:.6g}")
    return "\n".join(out) + "\n"


def _nan_if_none(x):
    return float("nan") if x is None else float(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--reports-dir", default="reports/eval/suites", help="where the suite JSONs are")
    ap.add_argument("--out-dir", default="reports/eval", help="where the summary goes")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    if params.evaluate is None:
        raise SystemExit(f"error: {args.params} has no `evaluate` section (needed by stage eval_summary)")
    reports_dir = Path(args.reports_dir)
    reports = {}
    for suite in params.evaluate.suites:
        path = reports_dir / f"{suite}.json"
        if not path.exists():
            raise SystemExit(f"error: {path} is missing (run `dvc repro evaluate@{suite}`)")
        reports[suite] = json.loads(path.read_text())
    rows = summarize(reports)
    out = Path(args.out_dir) if args.out_dir else reports_dir
    write_text_atomic(out / "summary.json", json.dumps(rows, indent=2) + "\n")
    write_text_atomic(out / "summary.md", markdown(rows))
    write_text_atomic(out / "summary_plot.csv", plot_csv(rows))
    from mazesearch.render import render_bar_chart

    suites = list(rows)
    render_bar_chart(
        suites,
        {"model": [_nan_if_none(rows[s]["model_exact_path"]) for s in suites],
         "baseline (random at forks)": [_nan_if_none(rows[s]["baseline_exact_path"]) for s in suites]},
        out / "summary.png", title="exact-path rate per suite", ylabel="exact path",
    )
    print(f"eval_summary: {len(rows)} suites -> {out / 'summary.md'}")


if __name__ == "__main__":
    main()
