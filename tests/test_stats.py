import math

import pytest
import scipy.stats

from mazesearch.evaluation.stats import wilson_interval


def test_wilson_by_hand():
    # k = 0: low = 0, high = z² / (n + z²); z = 1.959964 for 95%
    z2 = 1.959963984540054**2
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2), abs=1e-12))
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2), abs=1e-12), 1.0)
    # k = 5, n = 10: centre 0.5, half = z·sqrt(0.025 + z²/400) / (1 + z²/10)
    half = math.sqrt(z2) * math.sqrt(0.25 / 10 + z2 / 400) / (1 + z2 / 10)
    assert wilson_interval(5, 10) == pytest.approx((0.5 - half, 0.5 + half), abs=1e-12)
    assert wilson_interval(5, 10) == pytest.approx((0.236593, 0.763407), abs=1e-6)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 3), (5, 500), (392, 1000), (910, 1000), (999, 1000), (7, 7)])
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_wilson_matches_scipy(k, n, confidence):
    ci = scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
    assert wilson_interval(k, n, confidence) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_edge_cases():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    lo, hi = wilson_interval(910, 1000)
    assert 0.0 <= lo < 0.91 < hi <= 1.0
    for bad in [(-1, 3), (4, 3)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, 1.0)
