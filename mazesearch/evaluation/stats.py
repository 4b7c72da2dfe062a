"""Confidence intervals for the rates in the evaluation reports.

Every headline rate of a suite (the model's and the baseline's exact-path rate) is a proportion
k/n over the suite's mazes; its uncertainty is the Wilson score interval (docs/metrics.md):
unlike the normal-approximation interval it never leaves [0, 1] and stays sensible at k = 0 or
k = n, where a 1,000-maze suite often sits.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k/n: ``(low, high)``; NaN, NaN when n = 0.

    With z the two-sided normal quantile and p = k/n:
    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``
    (the same as ``scipy.stats.binomtest(k, n).proportion_ci(confidence, method="wilson")``).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high
