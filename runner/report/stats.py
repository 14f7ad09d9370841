"""Summaries of repeated runs: the median, and a 95% confidence interval from Student's t.

The point shown is the median (one diverged seed does not drag it); the interval is the
t interval of the MEAN, mean ± t(0.975, n-1) · s/√n, which is exact for normal noise and
stays meaningful at the 3-5 repeats studies can afford (a bootstrap of 3 values only ever
returns their range). A framework gap is "within the seed-to-seed noise" when Welch's t test
does not tell the two means apart at the 5% level: |Δmean| <= t(0.975, ν) · √(s₁²/n₁ + s₂²/n₂),
ν from the Welch–Satterthwaite formula.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

CI_METHOD = "95% CI: Student-t interval of the mean; point: median"

# Two-sided 95% quantiles of Student's t, t(0.975, df), for df = 1..30.
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788,
         2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639,
         2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
_Z975 = 1.959963984540054


def t975(df: float) -> float:
    """t(0.975, df); fractional df (Welch) interpolated, df > 30 by the Cornish-Fisher expansion."""
    if not df >= 1:
        df = 1.0
    if df <= 30:
        lo = int(math.floor(df))
        if lo == df or lo >= 30:
            return _T975[lo - 1]
        frac = df - lo
        return _T975[lo - 1] * (1 - frac) + _T975[lo] * frac
    z = _Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Stat:
    """n values summarized; ci_* are None below two values (no spread to measure)."""

    n: int
    median: float
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        xs = sorted(float(v) for v in values if v is not None and math.isfinite(v))
        n = len(xs)
        if not n:
            return None
        mean = math.fsum(xs) / n
        if n < 2:
            return cls(1, xs[0], mean, None, None, None)
        median = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
        std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))  # statistics.stdev, without Fractions
        half = t975(n - 1) * std / math.sqrt(n)
        return cls(n, median, mean, std, mean - half, mean + half)


def within_noise(a: Stat | None, b: Stat | None) -> bool | None:
    """Welch's test at 5%: True when the two means cannot be told apart; None without two repeats each."""
    if a is None or b is None or a.std is None or b.std is None:
        return None
    va, vb = a.std**2 / a.n, b.std**2 / b.n
    se2 = va + vb
    if se2 == 0:
        return a.mean == b.mean
    df = se2**2 / ((va**2 / (a.n - 1) if va else 0.0) + (vb**2 / (b.n - 1) if vb else 0.0))
    return abs(a.mean - b.mean) <= t975(df) * math.sqrt(se2)
