"""The long Collatz step κ(n) and its loop lengths (k, k′): exact scalar and vectorized paths."""

from __future__ import annotations

import re
from unittest import mock

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core import LongSteps, collatz, long_step, long_steps, loop_lengths


def reference(n: int) -> tuple[int, int, int]:
    """The literal definition: (3x+1)/2 while odd (k steps), then halve while even (k′ steps)."""
    x, k, k_prime = n, 0, 0
    while x % 2 == 1:
        x = (3 * x + 1) // 2
        k += 1
    while x % 2 == 0:
        x //= 2
        k_prime += 1
    return x, k, k_prime


odd_ints = st.integers(0, 2**200).map(lambda x: 2 * x + 1)
odd_u64 = st.integers(0, 2**63 - 1).map(lambda x: 2 * x + 1)

# n, k, k′, κ(n): the table of DESIGN.md.
DESIGN_TABLE = [
    (1, 1, 1, 1),
    (3, 2, 3, 1),
    (7, 3, 1, 13),
    (9, 1, 1, 7),
    (27, 2, 1, 31),
    (97, 1, 1, 73),
    (2**61 - 1, 61, 1, (3**61 - 1) // 2),
]


@pytest.mark.parametrize(("n", "k", "k_prime", "kappa"), DESIGN_TABLE)
def test_design_reference_table(n: int, k: int, k_prime: int, kappa: int) -> None:
    assert long_step(n) == kappa
    assert loop_lengths(n) == (k, k_prime)
    assert reference(n) == (kappa, k, k_prime)


def test_design_reference_table_vectorized() -> None:
    ns = np.array([row[0] for row in DESIGN_TABLE], dtype=np.uint64)
    steps = long_steps(ns)
    assert isinstance(steps, LongSteps)
    assert [int(v) for v in steps.kappa] == [row[3] for row in DESIGN_TABLE]
    assert steps.k.tolist() == [row[1] for row in DESIGN_TABLE]
    assert steps.k_prime.tolist() == [row[2] for row in DESIGN_TABLE]


@given(odd_ints)
@example(1)
@example(2**64 - 1)
@example(2**64 + 1)
@example(2**127 - 1)
@example(2**200 + 1)
def test_scalar_matches_literal_loop(n: int) -> None:
    kappa, k, k_prime = reference(n)
    assert long_step(n) == kappa
    assert loop_lengths(n) == (k, k_prime)
    assert long_step(n) % 2 == 1


@given(odd_ints)
def test_class_is_a_residue_class(n: int) -> None:
    """A (k, k′) class is one residue class modulo 2^(k+k′+1) (DESIGN.md)."""
    k, k_prime = loop_lengths(n)
    period = 2 ** (k + k_prime + 1)
    assert loop_lengths(n + period) == (k, k_prime)
    assert loop_lengths(n % period) == (k, k_prime)


def test_class_shares() -> None:
    """Each (k, k′) class holds a share 2^-(k+k′) of the odd inputs."""
    n = np.arange(1, 2**16, 2, dtype=np.uint64)
    steps = long_steps(n)
    for k, k_prime in [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1)]:
        share = np.mean((steps.k == k) & (steps.k_prime == k_prime))
        assert share == 2.0 ** -(k + k_prime)


def test_kappa_is_not_the_next_odd_collatz_value() -> None:
    x = 3 * 27 + 1
    while x % 2 == 0:
        x //= 2
    assert x == 41  # the next odd number of the Collatz sequence of 27
    assert long_step(27) == 31
    assert int(long_steps(np.array([27], dtype=np.uint64)).kappa[0]) == 31


def assert_matches_scalar(values: list[int], steps: LongSteps) -> None:
    assert len(steps.kappa) == len(values)
    assert [int(v) for v in steps.kappa] == [long_step(v) for v in values]
    assert list(zip(steps.k.tolist(), steps.k_prime.tolist(), strict=True)) == [
        loop_lengths(v) for v in values
    ]


@settings(max_examples=60)
@given(st.lists(odd_u64, min_size=1, max_size=200))
def test_vectorized_uint64_matches_scalar(values: list[int]) -> None:
    steps = long_steps(np.array(values, dtype=np.uint64))
    assert_matches_scalar(values, steps)
    if steps.kappa.dtype == np.uint64:
        assert all(long_step(v) < 2**64 for v in values)


def test_vectorized_uint64_small_values_stay_uint64() -> None:
    values = list(range(1, 20_001, 2))
    steps = long_steps(np.array(values, dtype=np.uint64))
    assert steps.kappa.dtype == np.uint64
    assert_matches_scalar(values, steps)


def test_vectorized_kappa_beyond_64_bits_is_exact() -> None:
    values = [2**41 - 1, 2**63 + 1, 2**64 - 1, 27, 2**63 - 1, 2**64 - 3]
    assert 3**41 - 1 >= 2**64  # for 2^41 − 1 the intermediate a = 3^41 − 1 overflows uint64
    assert long_step(2**64 - 1) >= 2**64
    steps = long_steps(np.array(values, dtype=np.uint64))
    assert steps.kappa.dtype == object
    assert all(isinstance(v, int) for v in steps.kappa.tolist())
    assert_matches_scalar(values, steps)
    assert int(steps.kappa[0]) == (3**41 - 1) // 2
    assert int(steps.k[2]) == 64


def test_vectorized_overflowing_intermediate_with_64_bit_kappa_stays_uint64() -> None:
    # a = 3^41 − 1 overflows uint64, but κ(2^41 − 1) = (3^41 − 1) / 2 < 2^64 fits.
    steps = long_steps(np.array([2**41 - 1, 27], dtype=np.uint64))
    assert steps.kappa.dtype == np.uint64
    assert int(steps.kappa[0]) == (3**41 - 1) // 2
    assert int(steps.kappa[1]) == 31


@pytest.mark.parametrize("n", [2**41 - 1, 2**63 + 1, 2**64 - 1, 2**64 - 3])
def test_vectorized_single_edge_values(n: int) -> None:
    assert_matches_scalar([n], long_steps(np.array([n], dtype=np.uint64)))


@settings(max_examples=40)
@given(st.lists(odd_ints, min_size=1, max_size=50))
def test_vectorized_object_array_matches_scalar(values: list[int]) -> None:
    values = [*values, 2**100 + 1, 2**64 + 1, 3]
    steps = long_steps(np.array(values, dtype=object))
    assert_matches_scalar(values, steps)


@settings(max_examples=40)
@given(st.lists(st.integers(0, 2**62 - 1).map(lambda x: 2 * x + 1), min_size=1, max_size=200))
def test_vectorized_int64_matches_scalar(values: list[int]) -> None:
    arr = np.array(values, dtype=np.int64)
    assert_matches_scalar(values, long_steps(arr))


def test_vectorized_accepts_lists() -> None:
    assert_matches_scalar([1, 3, 7, 9, 27, 97], long_steps([1, 3, 7, 9, 27, 97]))


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (0, ValueError),
        (-3, ValueError),
        (4, ValueError),
        (True, TypeError),
        (3.0, TypeError),
        ("7", TypeError),
    ],
)
def test_scalar_bad_inputs(bad: object, error: type[Exception]) -> None:
    for fn in (long_step, loop_lengths):
        with pytest.raises(error) as info:
            fn(bad)  # type: ignore[arg-type]
        assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    ("bad", "error", "named"),
    [
        (np.array([3, 5, 4, 7], dtype=np.uint64), ValueError, "4"),
        (np.array([3, 5, 10, 7], dtype=np.int64), ValueError, "10"),
        (np.array([3, -5, 7], dtype=np.int64), ValueError, "-5"),
        (np.array([3, 0], dtype=np.int64), ValueError, "0"),
        (np.array([3, 2**80], dtype=object), ValueError, str(2**80)),
        (np.array([3, 5.0], dtype=object), TypeError, "5.0"),
        (np.array([3, True], dtype=object), TypeError, "True"),
        (np.array([3.0, 5.0]), TypeError, "float64"),
        (np.array([True]), TypeError, "bool"),
        ([3, 6], ValueError, "6"),
    ],
)
def test_vectorized_bad_inputs(bad: object, error: type[Exception], named: str) -> None:
    with pytest.raises(error) as info:
        long_steps(bad)  # type: ignore[arg-type]
    assert re.search(rf"(?<![\d.]){re.escape(named)}(?![\d.])", str(info.value)), str(info.value)


OVERFLOW_EDGES = [2**41 - 1, 2**64 - 1, 2**63 + 1, 1]


@settings(max_examples=40)
@given(
    st.lists(st.one_of(odd_u64, st.sampled_from(OVERFLOW_EDGES)), min_size=1, max_size=60),
    st.integers(1, 9),
)
def test_vectorized_blocks_match_scalar(values: list[int], block: int) -> None:
    # Small blocks: block boundaries, per-block overflow checks and the exact fallback of
    # elements from several blocks must give the same answer as one element at a time.
    with mock.patch.object(collatz, "_BLOCK", block):
        assert_matches_scalar(values, long_steps(np.array(values, dtype=np.uint64)))


def test_vectorized_even_value_in_a_later_block_is_named() -> None:
    values = np.arange(1, 41, 2, dtype=np.uint64)
    values[17] = 36
    with mock.patch.object(collatz, "_BLOCK", 4), pytest.raises(ValueError, match=r"\b36\b"):
        long_steps(values)
