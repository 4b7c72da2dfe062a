"""mazesearch.evaluation.summary: the table across suites and the size-generalization curve."""

import numpy as np

from mazesearch.evaluation.summary import markdown, size_csv, size_rows
from mazesearch.viz.charts import render_interval_lines


def _row(model, base, k):
    lo = lambda v: None if v is None else v - 0.05  # noqa: E731
    hi = lambda v: None if v is None else v + 0.05  # noqa: E731
    return {"dataset": "d", "generator": "wilson", "grid_n": 7, "n_mazes": 500, "feedable": model is not None,
            "reason": None if model is not None else "too long", "leakage": 0,
            "model_exact_path": model, "baseline_exact_path": base, "model_exact_path_lo": lo(model),
            "model_exact_path_hi": hi(model), "baseline_exact_path_lo": lo(base), "baseline_exact_path_hi": hi(base),
            **{f"{who}_{m}": 0.5 for who in ("model", "baseline") for m in (
                "valid_path", "target_reached", "first_fork_correct", "frac_forks_correct", "correct_streak_frac",
                "node_overlap", "invalid_token_rate")}}


def test_size_rows_sorted_by_size_then_placement_with_gain():
    rows = {"s7": _row(0.10, 0.20, 7), "s5p": _row(0.50, 0.30, 5), "s5": _row(0.60, 0.30, 5), "s6": _row(None, 0.25, 6)}
    sizes = {"s7": (7, "fills grid"), "s5p": (5, "random"), "s5": (5, "origin"), "s6": (6, "origin")}
    entries = size_rows(rows, ["s7", "s5p", "s5", "s6"], sizes)
    assert [e["suite"] for e in entries] == ["s5", "s5p", "s6", "s7"]
    csv = size_csv(entries).splitlines()
    assert csv[0] == "size,suite,placement,series,exact,lo,hi"  # long format: one row per curve point
    assert csv[1:3] == ["5,s5,origin,model (origin),0.6,0.55,0.65", "5,s5,origin,baseline (origin),0.3,0.25,0.35"]
    assert csv[3] == "5,s5p,random,model (placed),0.5,0.45,0.55"
    assert [r for r in csv if ",s6," in r] == ["6,s6,origin,baseline (origin),0.25,0.2,0.3"]  # not fed: no model row
    md = markdown(rows, entries)
    assert "| s5 | wilson | 7 | 500 | yes | 0 | 0.600 [0.550, 0.650] | 0.300 [0.250, 0.350] | +0.300 |" in md
    assert "| 7 | s7 | fills grid | 0.100 [0.050, 0.150] | 0.200 [0.150, 0.250] | -0.100 |" in md
    assert "| 6 | s6 | origin | – |" in md


def test_interval_chart_draws_or_says_there_is_nothing(tmp_path):
    render_interval_lines({"model": ([5, 6], [0.5, np.nan], [0.4, np.nan], [0.6, np.nan]),
                           "baseline": ([5], [0.3], [0.25], [0.35])}, tmp_path / "a.png")
    render_interval_lines({"model": ([], [], [], [])}, tmp_path / "b.png")
    for name in ("a.png", "b.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
