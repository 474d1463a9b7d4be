"""Statistics the benchmarks share: a median and its distribution-free confidence interval.

Why order statistics: timings on a shared machine are skewed and heavy-tailed, so a mean and a
normal interval mislead. The interval for the median comes from the binomial distribution of how
many samples fall below it (no assumption about the timings' distribution).
"""

from __future__ import annotations

import math
import statistics
from typing import Sequence


def median_ci(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): a ``confidence`` interval for the median (normal approximation of the
    binomial ranks, fine from about 20 samples)."""
    xs = sorted(samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    z = {0.9: 1.645, 0.95: 1.96, 0.99: 2.576}[confidence]
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    return statistics.median(xs), xs[lo], xs[hi]
