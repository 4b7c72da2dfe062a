"""The table across evaluation suites: one row per suite, model beside baseline.

Suites are listed in params order. The baseline's exact-path rate is the suite's complexity
measure: the chance that a random walker that never turns back finds the shortest path.
"""

from __future__ import annotations


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


def summarize(details: dict[str, dict]) -> dict[str, dict]:
    """One row per suite from its details report (reports/eval/details/<suite>.json): identity,
    feedability, then model_<metric> and baseline_<metric>, and the 95% interval of each
    exact-path rate (``*_exact_path_lo`` / ``*_exact_path_hi``)."""
    rows = {}
    for suite, r in details.items():
        row = {k: r[k] for k in ("dataset", "generator", "grid_n", "n_mazes", "feedable", "reason", "leakage")}
        for _, key in TABLE_METRICS:
            row[f"model_{key}"] = r["model"][key] if r["model"] else None
            row[f"baseline_{key}"] = r["baseline"][key]
        for who in ("model", "baseline"):
            ci = r["exact_path_ci95"][who]
            row[f"{who}_exact_path_lo"] = ci["low"] if ci else None
            row[f"{who}_exact_path_hi"] = ci["high"] if ci else None
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


def _with_interval(r: dict, who: str) -> str:
    value, lo, hi = (r[f"{who}_exact_path{s}"] for s in ("", "_lo", "_hi"))
    if value is None or lo is None or hi is None:
        return _fmt(value)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(rows: dict[str, dict], sizes: list[dict] | None = None) -> str:
    """The table across suites (model − baseline beside the two exact rates), then the size
    generalization table when ``sizes`` (:func:`size_rows`) is given."""
    head = ["suite", "generator", "grid_n", "n", "feedable", "leakage"]
    head += [f"model {t}" for t, _ in TABLE_METRICS[:1]] + ["baseline exact", "model − baseline"]
    head += [f"model {t}" for t, _ in TABLE_METRICS[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for suite, r in rows.items():
        gain = None if r["model_exact_path"] is None else f"{r['model_exact_path'] - r['baseline_exact_path']:+.3f}"
        cells = [suite, r["generator"], r["grid_n"], r["n_mazes"], r["feedable"], r["leakage"],
                 _with_interval(r, "model"), _with_interval(r, "baseline"), gain]
        cells += [r[f"model_{key}"] for _, key in TABLE_METRICS[1:]]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
        if not r["feedable"]:
            notes.append(f"- {suite}: not fed to the model: {r['reason']}")
    text = "# Evaluation summary\n\n" + "\n".join(lines) + "\n"
    text += ("\nbaseline exact = chance that a random walker that never turns back walks the shortest "
             "path (the suite's complexity). Exact-path rates are shown with their 95% Wilson "
             "interval [low, high]. Definitions: docs/metrics.md.\n")
    if notes:
        text += "\n" + "\n".join(notes) + "\n"
    if sizes:
        text += size_markdown(sizes)
    return text


def _num(value) -> str:
    return "" if value is None else f"{value:.6g}"


PLOT_COLUMNS = ("suite", "series", "exact", "lo", "hi")


def plot_csv(rows: dict[str, dict]) -> str:
    """``summary_plot.csv`` for ``dvc plots`` (template plots/interval_bars.json): one row per
    suite and series (model, baseline) with the exact-path rate and its 95% interval; a suite the
    model could not read has no model row."""
    out = [",".join(PLOT_COLUMNS)]
    for suite, r in rows.items():
        for who in ("model", "baseline"):
            if r[f"{who}_exact_path"] is None:
                continue
            out.append(",".join([suite, who] + [_num(r[f"{who}_exact_path{s}"]) for s in ("", "_lo", "_hi")]))
    return "\n".join(out) + "\n"


SIZE_COLUMNS = ("size", "suite", "placement", "series", "exact", "lo", "hi")


def size_rows(rows: dict[str, dict], size_suites: list[str], maze_size: dict[str, tuple[int, str]]) -> list[dict]:
    """The size-generalization curve: one entry per suite of ``size_suites``, sorted by maze size
    (``maze_size[suite] = (k, placement)``: the side of its mazes and where they sit), with the
    exact-path rates of model and baseline and their 95% intervals (model None: not fed)."""
    out = []
    for suite in size_suites:
        r = rows[suite]
        k, placement = maze_size[suite]
        entry = {"size": k, "suite": suite, "placement": placement}
        for who in ("model", "baseline"):
            entry[f"{who}_exact"] = r[f"{who}_exact_path"]
            entry[f"{who}_lo"], entry[f"{who}_hi"] = r[f"{who}_exact_path_lo"], r[f"{who}_exact_path_hi"]
        out.append(entry)
    return sorted(out, key=lambda e: (e["size"], e["placement"], e["suite"]))


def size_csv(entries: list[dict]) -> str:
    """``size_plot.csv`` for ``dvc plots`` (template plots/interval_lines.json): exact-path rate
    against maze size, one row per suite and series (model, baseline) with its 95% interval; the
    series name carries the placement (``model (placed)``) so each curve is one line. No comma in
    a field: rows are joined without quoting, and a comma shifted the columns for every reader."""
    lines = [",".join(SIZE_COLUMNS)]
    for e in entries:
        where = "placed" if e["placement"] == "random" else "origin"
        for who in ("model", "baseline"):
            if e[f"{who}_exact"] is None:
                continue
            lines.append(",".join([str(e["size"]), e["suite"], e["placement"], f"{who} ({where})"]
                                  + [_num(e[f"{who}_{k}"]) for k in ("exact", "lo", "hi")]))
    return "\n".join(lines) + "\n"


def size_markdown(entries: list[dict]) -> str:
    lines = ["| size | suite | placement | model exact [95%] | baseline exact [95%] | model − baseline |",
             "|---|---|---|---|---|---|"]
    for e in entries:
        cells = []
        for who in ("model", "baseline"):
            v, lo, hi = e[f"{who}_exact"], e[f"{who}_lo"], e[f"{who}_hi"]
            cells.append("–" if v is None else f"{v:.3f} [{lo:.3f}, {hi:.3f}]")
        gain = "–" if e["model_exact"] is None else f"{e['model_exact'] - e['baseline_exact']:+.3f}"
        lines.append(f"| {e['size']} | {e['suite']} | {e['placement']} | {cells[0]} | {cells[1]} | {gain} |")
    return ("\n## Size generalization (evaluate.size_suites)\n\n" + "\n".join(lines) + "\n"
            "\nMazes of these sides, larger than any training maze, at the lattice origin or at random "
            "offsets. Intervals that do not overlap the baseline's mean the model beats random-at-forks.\n")


def nan_if_none(x):
    return float("nan") if x is None else float(x)
