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


def markdown(rows: dict[str, dict]) -> str:
    head = ["suite", "generator", "grid_n", "n", "feedable", "leakage"]
    head += [f"model {t}" for t, _ in TABLE_METRICS[:1]] + ["baseline exact"]
    head += [f"model {t}" for t, _ in TABLE_METRICS[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for suite, r in rows.items():
        cells = [suite, r["generator"], r["grid_n"], r["n_mazes"], r["feedable"], r["leakage"],
                 _with_interval(r, "model"), _with_interval(r, "baseline")]
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
    return text


def plot_csv(rows: dict[str, dict]) -> str:
    out = ["suite,model_exact,baseline_exact"]
    for suite, r in rows.items():
        model = "" if r["model_exact_path"] is None else f"{r['model_exact_path']:.6g}"
        out.append(f"{suite},{model},{r['baseline_exact_path']:.6g}")
    return "\n".join(out) + "\n"


def nan_if_none(x):
    return float("nan") if x is None else float(x)
