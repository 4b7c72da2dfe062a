"""mazesearch.bench.record: the experiment record's runs, arms and seed-spread verdicts."""

from mazesearch.bench.record import COVERAGE_OFF, SUITES, markdown, overrides, run_name, separated, summarize


def _row(positional, coverage, seed, exact):
    cell = {"model_exact": exact, "model_exact_lo": exact - 0.02, "model_exact_hi": exact + 0.02, "baseline_exact": 0.2}
    return {"name": run_name(positional, coverage, seed), "positional": positional, "coverage": coverage,
            "seed": seed, **{s: dict(cell) for s in SUITES}}


def test_twelve_distinct_runs_and_their_overrides():
    runs = {(p, c, s) for p in ("learned", "rotary") for c in ("on", "off") for s in (0, 1, 2)}
    names = {run_name(*r) for r in runs}
    assert len(names) == 12
    assert overrides("rotary", "on", 2) == ["model.positional=rotary", "model.seed=2", "train.seed=2"]
    off = overrides("learned", "off", 0)
    assert set(COVERAGE_OFF) <= set(off) and "datasets.train.placement=origin" in off and "datasets.val.grid_n=4" in off


def test_arms_average_seeds_and_verdicts_need_disjoint_ranges():
    rows = [_row("rotary", "on", s, e) for s, e in enumerate((0.50, 0.55, 0.60))]
    rows += [_row("learned", "on", s, e) for s, e in enumerate((0.30, 0.35, 0.52))]  # overlaps rotary's range
    rows += [_row("rotary", "off", s, e) for s, e in enumerate((0.40, 0.42, 0.44))]
    rows += [_row("learned", "off", s, e) for s, e in enumerate((0.10, 0.12, 0.14))]  # disjoint
    arms = summarize(rows)
    on = arms["rotary/cov-on"]["test"]
    assert abs(on["mean"] - 0.55) < 1e-12 and on["min"] == 0.50 and on["max"] == 0.60 and abs(on["baseline"] - 0.2) < 1e-12
    assert not separated(arms["rotary/cov-on"]["test"], arms["learned/cov-on"]["test"])
    assert separated(arms["rotary/cov-off"]["test"], arms["learned/cov-off"]["test"])
    md = markdown(arms)
    assert "- coverage on, test: rotary 0.550 vs learned 0.390: no" in md
    assert "- coverage off, test: rotary 0.420 vs learned 0.120: yes" in md
    assert "| rotary/cov-on | 3 | 0.550 [0.500, 0.600] (0.200) |" in md
