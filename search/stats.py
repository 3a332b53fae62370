"""How sure a figure is: the 95 % Wilson interval of an accuracy measured on n inputs, and the
spread of a figure over training seeds.

An exact match of 97.47 % on 10,000 held-out inputs is really 97.14–97.76 %; on a 2,000-input
validation set 92 % is ±1.2 points. Every accuracy the platform shows carries its interval so a
reader can tell a real difference from a coin flip. The Wilson score interval is the standard for
a binomial proportion (well-behaved at 0/n and n/n, where the normal approximation collapses).
It is written out here (a few lines of the stdlib's NormalDist) because importing scipy.stats
costs seconds, and ``status`` must answer in about one; the tests check it against scipy.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Interval", "SeedSpread", "beats", "mcnemar", "overlap", "seed_spread", "wilson"]

CONFIDENCE = 0.95  # every interval the platform shows


@dataclass(frozen=True)
class Interval:
    """An accuracy with its interval: ``estimate`` in [low, high], measured on ``n`` inputs."""

    estimate: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        """``97.47 % (97.14–97.76, n=10,000)``."""
        return f"{self.estimate:.2%} ({100 * self.low:.2f}–{100 * self.high:.2f}, n={self.n:,})".replace(
            "%", " %"
        )

    def short(self) -> str:
        """``97.47 ±0.31``: the estimate in percent and the larger half-width (for table cells)."""
        half = max(self.estimate - self.low, self.high - self.estimate)
        return f"{100 * self.estimate:.2f} ±{100 * half:.2f}"

    def as_dict(self) -> dict[str, float | int]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "n": self.n}


def wilson(rate: float, n: int, confidence: float = CONFIDENCE) -> Interval:
    """The Wilson score interval of a proportion ``rate`` = successes / ``n``."""
    if n <= 0:
        raise ValueError(f"an interval needs n >= 1 inputs, got {n}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a proportion lies in [0, 1], got {rate}")
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    z2n = z * z / n
    centre = (rate + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(rate * (1 - rate) / n + z2n / (4 * n)) / (1 + z2n)
    # exactly 0 at 0/n and 1 at n/n (the formula gives them up to rounding)
    low = 0.0 if rate == 0.0 else max(0.0, centre - half)
    high = 1.0 if rate == 1.0 else min(1.0, centre + half)
    return Interval(rate, low, high, n)


def overlap(a: Interval, b: Interval) -> bool:
    """Whether two intervals overlap: then the data cannot tell the two figures apart."""
    return a.low <= b.high and b.low <= a.high


def beats(new: Interval, old: Interval) -> bool:
    """Whether ``new`` is better than ``old`` beyond ``old``'s interval (its estimate above
    ``old.high``): the bar a model must clear to replace the registry's champion."""
    return new.estimate > old.high


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided p-value of the exact McNemar test: two models answered the same inputs, ``only_a``
    right only by the first, ``only_b`` only by the second. Paired, so sharper than comparing two
    intervals; p >= 0.05: the data cannot tell them apart. Exact binomial tail, stdlib only."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts of inputs cannot be negative, got {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class SeedSpread:
    """A figure over training seeds: mean, standard deviation, range, and the interval of the mean."""

    values: tuple[float, ...]
    mean: float
    std: float
    low: float  # the 95 % t-interval of the mean (equal to mean when there is one seed)
    high: float

    def __str__(self) -> str:
        """``96.31 ±0.42 % over 5 seeds (95.9–96.7; range 95.8–96.9)``."""
        n = len(self.values)
        if n == 1:
            return f"{100 * self.mean:.2f} % (1 seed)"
        return (
            f"{100 * self.mean:.2f} ±{100 * self.std:.2f} % over {n} seeds "
            f"(mean in {100 * self.low:.2f}–{100 * self.high:.2f}; range "
            f"{100 * min(self.values):.2f}–{100 * max(self.values):.2f})"
        )


def seed_spread(
    values: Sequence[float], confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None
) -> SeedSpread:
    """Mean, sample standard deviation and the Student-t interval of the mean of ``values``
    (clipped to ``bounds``: (0, 1) for a proportion, whose mean cannot pass 100 %)."""
    if not values:
        raise ValueError("a seed spread needs at least one value")
    mean = statistics.fmean(values)
    if len(values) == 1:
        return SeedSpread(tuple(values), mean, 0.0, mean, mean)
    from scipy.stats import t  # only reports and benchmarks get here, not `status`

    std = statistics.stdev(values)
    half = float(t.ppf(0.5 + confidence / 2, len(values) - 1)) * std / math.sqrt(len(values))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return SeedSpread(tuple(values), mean, std, low, high)
