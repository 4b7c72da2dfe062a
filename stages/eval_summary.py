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

from mazesearch.evaluation.summary import markdown, nan_if_none, plot_csv, summarize
from mazesearch.io import read_json, stage_main, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--reports-dir", default="reports/eval/suites", help="where the suite JSONs are")
    ap.add_argument("--out-dir", default="reports/eval", help="where the summary goes")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    require_section(params, "evaluate", "eval_summary")
    reports_dir = Path(args.reports_dir)
    reports = {}
    for suite in params.evaluate.suites:
        path = reports_dir / f"{suite}.json"
        reports[suite] = read_json(path, "suite report", f"run `dvc repro evaluate@{suite}`")
    rows = summarize(reports)
    out = Path(args.out_dir) if args.out_dir else reports_dir
    write_text_atomic(out / "summary.json", json.dumps(rows, indent=2) + "\n")
    write_text_atomic(out / "summary.md", markdown(rows))
    write_text_atomic(out / "summary_plot.csv", plot_csv(rows))
    from mazesearch.viz.render import render_bar_chart

    suites = list(rows)
    render_bar_chart(
        suites,
        {"model": [nan_if_none(rows[s]["model_exact_path"]) for s in suites],
         "baseline (random at forks)": [nan_if_none(rows[s]["baseline_exact_path"]) for s in suites]},
        out / "summary.png", title="exact-path rate per suite", ylabel="exact path",
    )
    print(f"eval_summary: {len(rows)} suites -> {out / 'summary.md'}")


if __name__ == "__main__":
    stage_main(main)
