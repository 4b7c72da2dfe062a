"""The report's Findings (mazesearch.report.findings): the stated rule, applied to hand-made stage
outputs whose verdicts are worked out here by hand, and the section that shows them first."""

from __future__ import annotations

import json
import re

import pytest

from mazesearch.report.findings import (
    CONTRADICTED, MARGIN, OPEN, RULE, SUPPORTED, collect, rate_interval, train_side, verdict)
from mazesearch.report.sections import build_sections
from mazesearch.report.sections_html import esc
from test_report_sections import FILES, write_tree


@pytest.mark.parametrize("args, want", [
    # both have intervals: supported only when they do not overlap
    ((0.61, 0.30, 0.58, 0.64, 0.28, 0.32), SUPPORTED),
    ((0.35, 0.30, 0.29, 0.41, 0.25, 0.36), OPEN),
    # the control does at least as well: contradicted, whatever the intervals
    ((0.63, 0.78), CONTRADICTED), ((0.5, 0.5), CONTRADICTED), ((0.2, 0.3, 0.1, 0.3, 0.2, 0.4), CONTRADICTED),
    # point values: the margin decides
    ((0.30 + MARGIN + 1e-9, 0.30), SUPPORTED), ((0.30 + MARGIN / 2, 0.30), OPEN),
    # the score's interval alone: ahead by the margin and the interval above the control
    ((0.40, 0.30, 0.35, 0.45, None, None), SUPPORTED), ((0.40, 0.30, 0.29, 0.51, None, None), OPEN),
    # a number missing
    ((None, 0.3), OPEN), ((0.3, float("nan")), OPEN), (("x", 0.3), OPEN),
])
def test_the_rule(args, want):
    assert verdict(*args) == want


def test_rate_intervals_are_wilson():
    lo, hi = rate_interval(0.5, 100)  # 50/100: (0.4038, 0.5962) by the Wilson formula
    assert lo == pytest.approx(0.40383, abs=1e-4) and hi == pytest.approx(0.59617, abs=1e-4)
    assert rate_interval(0.0, 128)[0] == 0.0 and rate_interval(None, 10) == (None, None)


def by_hypothesis(found):
    return {f.hypothesis: f for f in found}


def test_each_stage_gives_its_finding(tmp_path):
    reports = write_tree(tmp_path / "reports")
    assert train_side(reports) == 4  # data/details/train.json: sizes [3, 4]
    found = collect(reports, train_side(reports))
    got = {f.source.split("/")[0] + ":" + f.hypothesis.split(" (")[0][:40]: f for f in found}
    verdicts = [(f.source, f.verdict) for f in found]
    assert verdicts == [
        ("eval/summary.json", SUPPORTED),  # 0.612 [0.581, 0.642] vs 0.304 [0.284, 0.325]
        ("eval/size_plot.csv", CONTRADICTED),  # size 5 = 4 + 1: 0.076 vs baseline 0.198
        ("probes/metrics/walls.json", CONTRADICTED),  # 0.626 vs random-init 0.780
        ("heads/metrics.json, heads/scores.csv", SUPPORTED),  # 0.724 [0.704, 0.743] vs best control head 0.018
        ("faithfulness/metrics.json", CONTRADICTED),  # 16 heads ranked vs 15 random: no fewer
        ("reach/metrics.json", OPEN), ("reach/metrics.json", SUPPORTED),  # target reaches 1, current 2
        ("steering/metrics.json", SUPPORTED),  # mean-diff 0.664 of 128 vs random 0.0
        ("heads/bottleneck.json", OPEN),  # 1.19 [1.03, 1.38] vs 1.10 [1.03, 1.18]: intervals overlap
        ("geometry/metrics.json", SUPPORTED),  # SVD 0.82 vs the stronger control 0.55 (spectrum-matched)
        ("clusters/metrics.json", SUPPORTED),  # 0.288 vs 0.022 / 0.004
        ("parallel/metrics.json", SUPPORTED),  # 0.64 vs 0.53
        ("parallel/details.json", CONTRADICTED),  # the alternatives' gap peaks at the last layer
        ("patching/metrics.json", SUPPORTED),  # L0H1 -> L2H1 restores 0.41 vs random paths 0.03
    ], got
    walls = next(f for f in found if "walls" in f.source)
    assert walls.evidence.startswith("balanced accuracy 0.63 vs random-init 0.78")  # the example
    assert "L3H2" in next(f for f in found if f.source.startswith("heads")).hypothesis
    assert "[0.70, 0.74]" in next(f for f in found if f.source.startswith("heads")).evidence
    steer = next(f for f in found if f.source.startswith("steering"))
    assert steer.hypothesis.startswith("the target is carried at its token")
    assert re.match(r"mean-difference retargeting 0\.66 \[0\.\d\d, 0\.\d\d\] of ceiling 0\.76 vs same-norm random "
                    r"0\.00 \[0\.00, 0\.03\]", steer.evidence), steer.evidence
    assert "14" not in found[4].evidence and found[4].evidence == "16 of 16 heads vs 15 in random order"


def test_verdicts_move_with_the_numbers(tmp_path):
    """Change the inputs across a rule's edge and the verdict follows."""
    files = json.loads(json.dumps({k: v for k, v in FILES.items() if isinstance(v, dict)}))
    files["faithfulness/metrics.json"].update(k_ranked=9, k_random=15)  # 6 fewer heads
    files["probes/metrics/walls.json"].update(selectivity_vs_random_init=0.2, selectivity_vs_permuted=0.3)
    files["steering/metrics.json"]["target_move"].update(mean_diff_success=0.02)  # 0.02 vs 0.0 of 128: overlap
    files["reach/metrics.json"] = {"target": {"embed": 0, "blocks.0.hook_resid_post": 0}}
    reports = write_tree(tmp_path / "reports", files)
    found = {f.source: f.verdict for f in collect(reports, None)}  # no training side: no size finding
    assert found["faithfulness/metrics.json"] == SUPPORTED
    assert found["probes/metrics/walls.json"] == SUPPORTED  # 0.63 vs random-init 0.43, permuted 0.33
    assert found["steering/metrics.json"] == OPEN
    assert found["reach/metrics.json"] == CONTRADICTED
    assert "eval/size_plot.csv" not in found


@pytest.mark.parametrize("linear, mlp, want", [
    (0, 0, CONTRADICTED), (0, 1, OPEN), (0, 2, SUPPORTED), (2, 0, SUPPORTED), (1, None, OPEN), (0, None, CONTRADICTED)])
def test_reach_finding_counts_the_mlp_probe(tmp_path, linear, mlp, want):
    """The reach finding takes the larger of the linear probe's per-layer k and the MLP probe's
    headline (``mlp_largest``: already its gap over its controls); older reports lack the MLP."""
    files = json.loads(json.dumps({k: v for k, v in FILES.items() if isinstance(v, dict)}))
    files["reach/metrics.json"] = {"target": {"embed": 0, "blocks.0.hook_resid_post": linear}}
    if mlp is not None:
        files["reach/metrics.json"]["mlp_largest"] = {"target": mlp}
    reports = write_tree(tmp_path / "reports", files)
    (found,) = [f for f in collect(reports, None) if f.source == "reach/metrics.json"]
    assert found.verdict == want
    assert ("MLP probe" in found.evidence) == (mlp is not None) and f"linear probe {linear} move" in found.evidence
    if mlp is not None:
        assert f"MLP probe {mlp} move" in found.evidence


def test_findings_come_first_on_the_page_with_their_rule(tmp_path):
    reports = write_tree(tmp_path / "reports")
    sections, _ = build_sections(reports, {"train": ("wilson", 7)})
    assert sections[0].id == "findings" and sections[0].present
    html = sections[0].html
    assert "14 hypotheses" in html and "8 supported, 4 contradicted, 2 open" in html
    assert esc("The rule: " + RULE) in html  # the rule is said on the page
    assert html.count('<tr class="contradicted">') == 4
    # the Data table reads the generator of a dataset no suite evaluates from data/mazes
    data = sections[1].html
    assert re.search(r"<tr><td>train</td><td>wilson</td><td class=\"num\">7</td>", data)


def test_plan_instruments_compare_with_their_stronger_control(tmp_path):
    """Issue 29's instruments: the stronger control decides, and patching reads its headline path."""
    files = dict(FILES)
    files["geometry/metrics.json"] = {**FILES["geometry/metrics.json"],
                                      "svd": {"trained": 0.50, "random_init": 0.20, "spectrum_matched": 0.55}}
    files["clusters/metrics.json"] = {"fork": {"trained": 0.10, "random_init": 0.12, "permuted": 0.0}}
    files["parallel/metrics.json"] = {"alternatives": {"trained": 0.60, "stronger_control": 0.58, "ahead": 0.7}}
    files["parallel/details.json"] = {"versions": {"alternatives": {"shape": {
        "peak_layer": "blocks.1.hook_resid_post", "drop_after_peak": 0.04, "explore_then_discard": True}}}}
    files["patching/details.json"] = {**FILES.get("patching/details.json", {}), "paths": [
        {"kind": "wall_move", "path": "L0H1 -> L2H1"}, {"kind": "wall_move", "path": "edit -> L0H1"}]}
    found = {f.source: f for f in collect(write_tree(tmp_path / "reports", files))}
    assert found["geometry/metrics.json"].verdict == CONTRADICTED  # 0.50 < spectrum-matched 0.55
    assert found["clusters/metrics.json"].verdict == CONTRADICTED  # 0.10 < random-init 0.12
    assert "by fork" in found["clusters/metrics.json"].hypothesis
    assert found["parallel/metrics.json"].verdict == OPEN  # ahead by 0.02 < the margin
    assert found["parallel/details.json"].verdict == SUPPORTED
    assert "(L0H1 -> L2H1)" in found["patching/metrics.json"].hypothesis  # the kind's first path
