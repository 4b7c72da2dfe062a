"""mazesearch.interp.dynamics: jump steps and leads (hand-computed curves), the reports."""

import math

import pytest

from mazesearch.interp.dynamics import curve_csv, jump_step, lead_steps, rises, summarize


def test_jump_step_interpolates_half_the_rise():
    assert jump_step([0, 10, 20, 30], [0.0, 0.2, 0.8, 1.0]) == pytest.approx(15.0)  # 0.5 between 0.2 and 0.8
    assert jump_step([0, 10, 20], [0.4, 0.9, 0.6]) == pytest.approx(5.0)  # rise is to the max, not the end
    assert jump_step([100, 200], [0.3, 0.3]) is None  # flat
    assert jump_step([100, 200], [0.30, 0.33]) is None  # a wobble, not a jump (MIN_RISE)
    assert jump_step([100, 200], [0.5, 0.1]) is None  # falling
    assert jump_step([0, 10, 20], [math.nan, 0.0, 1.0]) == pytest.approx(15.0)  # undefined points skipped
    assert jump_step([0], [1.0]) is None


def test_lead_is_positive_when_the_probe_jumps_first():
    steps = [0, 100, 200, 300]
    accuracy = [0.0, 0.0, 0.5, 1.0]  # jump 200
    probe = [0.5, 1.0, 1.0, 1.0]  # jump 50
    assert lead_steps(steps, accuracy, probe) == pytest.approx(150.0)
    assert lead_steps(steps, probe, accuracy) == pytest.approx(-150.0)
    assert lead_steps(steps, accuracy, [0.7] * 4) is None


def test_summary_and_curve():
    rows = [{"exact_path": 0.0, "walls": 0.5, "target": None}, {"exact_path": 1.0, "walls": 0.9, "target": None}]
    m = summarize([10, 20], rows, ["walls", "target"])
    assert m == {"jump_step_exact_path": 15.0, "jump_step_walls": 15.0, "lead_steps_walls": 0.0,
                 "jump_step_target": None, "lead_steps_target": None}
    assert rises(rows, ["exact_path", "walls", "target"]) == {"exact_path": 1.0, "walls": 0.4, "target": None}
    assert curve_csv([10, 20], rows, ["walls", "target"]).splitlines() == [
        "step,exact_path,walls,target", "10,0,0.5,", "20,1,0.9,"]
