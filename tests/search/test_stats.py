"""Intervals against known values and against scipy's own implementation."""

from __future__ import annotations

import pytest

from search.stats import overlap, seed_spread, wilson


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (9747, 10_000), (1840, 2000), (1, 3), (500, 1000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    got = wilson(k / n, n)
    assert got.low == pytest.approx(float(ci.low), abs=1e-12)
    assert got.high == pytest.approx(float(ci.high), abs=1e-12)


def test_wilson_known_values() -> None:
    # 0/n and n/n: the interval is one-sided, never the degenerate [0, 0] of the normal approximation
    none = wilson(0.0, 10)
    assert none.low == 0.0 and none.high == pytest.approx(0.2775, abs=1e-4)
    all_ = wilson(1.0, 10)
    assert all_.high == 1.0 and all_.low == pytest.approx(0.7225, abs=1e-4)
    held_out = wilson(0.9747, 10_000)
    assert (round(held_out.low, 4), round(held_out.high, 4)) == (0.9714, 0.9776)
    assert str(held_out) == "97.47 % (97.14–97.76, n=10,000)"
    assert held_out.short() == "97.47 ±0.33"


def test_wilson_refuses_what_is_not_a_proportion() -> None:
    with pytest.raises(ValueError, match="n >= 1"):
        wilson(0.5, 0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        wilson(1.5, 10)


def test_overlap_tells_indistinguishable_from_different() -> None:
    # the example: 92.0 % vs 90.25 % on 2,000 validation inputs overlap
    assert overlap(wilson(0.92, 2000), wilson(0.9025, 2000))
    assert not overlap(wilson(0.97, 10_000), wilson(0.95, 10_000))


def test_seed_spread() -> None:
    from scipy.stats import t

    values = [0.95, 0.96, 0.97, 0.96, 0.955]
    s = seed_spread(values)
    assert s.mean == pytest.approx(0.959)
    assert s.std == pytest.approx(0.00742, abs=1e-5)
    half = t.ppf(0.975, 4) * s.std / 5**0.5
    assert (s.low, s.high) == (pytest.approx(s.mean - half), pytest.approx(s.mean + half))
    assert "over 5 seeds" in str(s)
    one = seed_spread([0.9])
    assert (one.mean, one.std, one.low, one.high) == (0.9, 0.0, 0.9, 0.9)
    with pytest.raises(ValueError):
        seed_spread([])


def test_mcnemar_matches_scipy_binomtest() -> None:
    from scipy.stats import binomtest

    from search.stats import mcnemar

    for only_a, only_b in [(0, 0), (3, 0), (10, 2), (40, 60), (7, 7), (1, 30)]:
        n = only_a + only_b
        expected = binomtest(only_a, n, 0.5).pvalue if n else 1.0
        assert mcnemar(only_a, only_b) == pytest.approx(expected, rel=1e-9), (only_a, only_b)
    assert mcnemar(200, 100) < 1e-6  # 300 discordant inputs, 2:1: clearly different
    with pytest.raises(ValueError):
        mcnemar(-1, 3)


def test_beats_needs_more_than_the_old_interval() -> None:
    from search.stats import beats

    champion = wilson(0.9731, 10_000)  # 96.98–97.61
    assert not beats(wilson(0.9750, 10_000), champion)  # inside the champion's interval
    assert beats(wilson(0.9800, 10_000), champion)
    assert not beats(wilson(0.64, 2000), champion)


def test_seed_spread_of_a_proportion_stays_within_bounds() -> None:
    s = seed_spread([0.93, 0.95], bounds=(0.0, 1.0))
    assert s.high == 1.0 and s.low < s.mean
    assert seed_spread([0.93, 0.95]).high > 1.0  # the t-interval alone knows no bounds
