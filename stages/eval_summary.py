"""Stage eval_summary: every reports/eval/details/<suite>.json -> one table across suites.

    reports/eval/summary.json       {suite: {generator, grid_n, model and baseline means,
                                    exact-path intervals, ...}} (a plain output, not a DVC
                                    metric: the per-suite headlines are the metrics)
    reports/eval/summary.md         the same as a Markdown table
    reports/eval/summary_plot.csv   suite,series,exact,lo,hi: model and baseline per suite with
                                    95% intervals (a DVC plot, template interval_bars)
    reports/eval/summary.png        the same as a grouped bar chart
    reports/eval/size_plot.csv      size,suite,placement,series,exact,lo,hi: exact-path rate
                                    against maze size for evaluate.size_suites (template
                                    interval_lines)
    reports/eval/size.png           the same as a chart with interval bars

Suites are listed in params order. The baseline's exact-path rate is the suite's complexity
measure: the chance that a random walker that never turns back finds the shortest path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mazesearch.evaluation.summary import markdown, nan_if_none, plot_csv, size_csv, size_rows, summarize
from mazesearch.io import InputError, read_json, stage_main, write_json_atomic, write_text_atomic
from mazesearch.params import load_params_or_exit, require_section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--details-dir", default="reports/eval/details", help="where the suite details JSONs are")
    ap.add_argument("--out-dir", default="reports/eval", help="where the summary goes")
    args = ap.parse_args()

    params = load_params_or_exit(args.params)
    ev = require_section(params, "evaluate", "eval_summary")
    details_dir = Path(args.details_dir)
    rows = {}
    for suite in params.evaluate.suites:
        path = details_dir / f"{suite}.json"
        hint = f"run `dvc repro evaluate@{suite}`"
        doc = read_json(path, "suite report", hint)
        try:  # JSON that is not a suite report (not an object, keys missing): that file's error
            rows.update(summarize({suite: doc}))
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            raise InputError(path, f"is not a suite report ({type(exc).__name__}: {exc})", hint) from None
    out = Path(args.out_dir)
    maze_size = {}
    for suite in ev.size_suites:  # the side of a suite's mazes: its sizes, else its grid
        spec = params.datasets[ev.suites[suite].dataset]
        k = max(spec.sizes) if spec.sizes else spec.grid_n
        maze_size[suite] = (k, spec.placement if spec.sizes and k < spec.grid_n else "fills grid")
    sizes = size_rows(rows, ev.size_suites, maze_size)
    write_json_atomic(out / "summary.json", rows)
    write_text_atomic(out / "summary.md", markdown(rows, sizes))
    write_text_atomic(out / "size_plot.csv", size_csv(sizes))
    write_text_atomic(out / "summary_plot.csv", plot_csv(rows))
    from mazesearch.viz.render import render_bar_chart

    suites = list(rows)
    names = {"model": "model", "baseline": "baseline (random at forks)"}
    render_bar_chart(
        suites,
        {name: [nan_if_none(rows[s][f"{who}_exact_path"]) for s in suites] for who, name in names.items()},
        out / "summary.png", title="exact-path rate per suite (95% intervals)", ylabel="exact path",
        intervals={name: tuple([nan_if_none(rows[s][f"{who}_exact_path{end}"]) for s in suites] for end in ("_lo", "_hi"))
                   for who, name in names.items()},
    )
    from mazesearch.viz.charts import render_interval_lines

    series = {}
    for who in ("model", "baseline"):
        for where, places in (("at the origin", ("origin", "fills grid")), ("placed", ("random",))):
            pts = [e for e in sizes if e["placement"] in places]  # a maze filling its grid is at the origin
            if pts:
                series[f"{who}, {where}"] = tuple(
                    [nan_if_none(e[k]) for e in pts] for k in ("size", f"{who}_exact", f"{who}_lo", f"{who}_hi"))
    render_interval_lines(series, out / "size.png", title="exact path vs maze size (95% intervals)",
                          xlabel="maze side", ylabel="exact path")
    print(f"eval_summary: {len(rows)} suites -> {out / 'summary.md'}")


if __name__ == "__main__":
    stage_main(main)
