"""Integers ↔ token sequences: PAD=0, BOS=1, EOS=2, digit d → 3+d, most significant first."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core import BOS, EOS, PAD, DecodeError, MultiBaseEncoder, SequenceTooLongError, encoding

ALL_BASES = list(range(2, 65))


def digits_of(n: int, base: int) -> list[int]:
    """Most significant digit first; [0] for zero."""
    out = []
    while True:
        n, d = divmod(n, base)
        out.append(d)
        if n == 0:
            return out[::-1]


def test_special_tokens() -> None:
    assert (PAD, BOS, EOS) == (0, 1, 2)


@pytest.mark.parametrize("base", ALL_BASES)
def test_vocab_size(base: int) -> None:
    assert MultiBaseEncoder(base).vocab_size == base + 3


@pytest.mark.parametrize(
    ("n", "base", "tokens"),
    [
        (0, 10, [3, EOS]),
        (7, 10, [10, EOS]),
        (105, 10, [4, 3, 8, EOS]),
        (100, 10, [4, 3, 3, EOS]),
        (27, 24, [4, 6, EOS]),  # 27 = 1·24 + 3
        (31, 24, [4, 10, EOS]),
        (5, 2, [4, 3, 4, EOS]),
        (63, 64, [66, EOS]),
        (64, 64, [4, 3, EOS]),
    ],
)
def test_token_layout(n: int, base: int, tokens: list[int]) -> None:
    enc = MultiBaseEncoder(base)
    assert enc.encode(n) == tokens
    assert enc.decode(tokens) == n
    assert enc.sequence_length(n) == len(tokens)


@settings(max_examples=300)
@given(st.sampled_from(ALL_BASES), st.one_of(st.integers(0, 2**64 + 10), st.integers(0, 2**200)))
@example(2, 0)
@example(64, 0)
@example(2, 2**64)
@example(64, 2**64 - 1)
@example(3, 2**130 + 7)
def test_round_trip(base: int, n: int) -> None:
    enc = MultiBaseEncoder(base)
    tokens = enc.encode(n)
    assert tokens[-1] == EOS
    assert tokens[:-1] == [3 + d for d in digits_of(n, base)]
    assert all(3 <= t < base + 3 for t in tokens[:-1])
    assert enc.decode(tokens) == n
    assert enc.decode([BOS, *tokens]) == n
    assert enc.decode(torch.tensor(tokens)) == n


@pytest.mark.parametrize("base", ALL_BASES)
def test_round_trip_every_base(base: int) -> None:
    enc = MultiBaseEncoder(base)
    values = [0, 1, base - 1, base, base + 1, base**2 - 1, base**2, 2**64 - 1, 2**64, 3**100]
    for n in values:
        assert enc.decode(enc.encode(n)) == n


def boundary_values(base: int) -> list[int]:
    """Values around every power of the base below 2^64, plus the extremes."""
    out = {0, 1, 2**64 - 1, 2**64 - 2, 2**63, 2**63 - 1}
    p = 1
    while p < 2**64:
        out.update(v for v in (p - 1, p, p + 1) if 0 <= v < 2**64)
        p *= base
    return sorted(out)


def assert_batch_matches(enc: MultiBaseEncoder, values: list[int], batch: torch.Tensor) -> None:
    expected = [enc.encode(v) for v in values]
    assert batch.shape == (len(values), max(len(e) for e in expected))
    for row, tokens in zip(batch.tolist(), expected, strict=True):
        assert row == tokens + [PAD] * (len(row) - len(tokens))


@pytest.mark.parametrize("base", ALL_BASES)
def test_encode_batch_uint64_equals_encode(base: int) -> None:
    enc = MultiBaseEncoder(base)
    rng = np.random.default_rng(base)
    values = boundary_values(base) + rng.integers(0, 2**64 - 1, size=200, dtype=np.uint64).tolist()
    values += rng.integers(0, 1000, size=50, dtype=np.uint64).tolist()
    batch = enc.encode_batch(np.array(values, dtype=np.uint64))
    assert_batch_matches(enc, values, batch)


@pytest.mark.parametrize("base", ALL_BASES)
def test_encode_batch_object_big_ints_equals_encode(base: int) -> None:
    enc = MultiBaseEncoder(base)
    values = [0, 1, 2**64 - 1, 2**64, 2**64 + 1, 3**80, 10**30 + 7, base**20]
    batch = enc.encode_batch(np.array(values, dtype=object))
    assert_batch_matches(enc, values, batch)


@settings(max_examples=50)
@given(st.sampled_from(ALL_BASES), st.lists(st.integers(0, 2**62), min_size=1, max_size=40))
def test_encode_batch_int64_and_lists_equal_encode(base: int, values: list[int]) -> None:
    enc = MultiBaseEncoder(base)
    assert_batch_matches(enc, values, enc.encode_batch(np.array(values, dtype=np.int64)))
    assert_batch_matches(enc, values, enc.encode_batch(values))


def test_encode_batch_pads_to_max_length() -> None:
    enc = MultiBaseEncoder(10, max_length=6)
    batch = enc.encode_batch(np.array([5, 1234], dtype=np.uint64))
    assert batch.shape == (2, 6)
    assert batch.tolist() == [[8, EOS, 0, 0, 0, 0], [4, 5, 6, 7, EOS, 0]]
    assert enc.decode_batch(batch) == [5, 1234]


def test_encode_batch_explicit_max_length_overrides_encoder_on_both_paths() -> None:
    enc = MultiBaseEncoder(10, max_length=5)
    small = enc.encode_batch(np.array([12345], dtype=np.uint64), max_length=40)
    big = enc.encode_batch(np.array([10**30], dtype=object), max_length=40)
    assert small.shape == big.shape == (1, 40)
    assert enc.decode(big[0]) == 10**30
    assert enc.decode(small[0]) == 12345


def test_decode_stops_at_eos_and_skips_leading_bos() -> None:
    enc = MultiBaseEncoder(10)
    assert enc.decode([4, 5, EOS, 7, 7, 1, 0]) == 12
    assert enc.decode([BOS, 4, 5, EOS, PAD, PAD]) == 12
    assert enc.decode(np.array([3, EOS, 9])) == 0
    assert enc.decode(torch.tensor([BOS, 9, EOS])) == 6


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        [4, 5],  # no EOS
        [4, 5, PAD, PAD],  # no EOS, padded
        [EOS],  # EOS first
        [EOS, 4, EOS],
        [BOS, EOS],  # EOS first after BOS
        [BOS],
        [4, PAD, 5, EOS],  # PAD inside the digits
        [PAD, 4, EOS],
        [4, BOS, 5, EOS],  # BOS inside the digits
        [BOS, BOS, 4, EOS],
        [4, 13, EOS],  # digit 10 in base 10
        [4, 200, EOS],
        [3, 4, EOS],  # leading zero
        [3, 3, EOS],
    ],
)
def test_malformed_sequences_raise_decode_error(tokens: list[int]) -> None:
    enc = MultiBaseEncoder(10)
    with pytest.raises(DecodeError):
        enc.decode(tokens)
    assert enc.try_decode(tokens) is None
    assert issubclass(DecodeError, ValueError)


def test_decode_batch_gives_none_for_malformed_rows() -> None:
    enc = MultiBaseEncoder(10)
    rows = torch.tensor([[4, 3, 8, EOS], [4, 0, 8, EOS], [3, 4, EOS, 0], [9, 9, 9, 9]])
    assert enc.decode_batch(rows) == [105, None, None, None]


def test_sequence_too_long_is_an_error_never_truncation() -> None:
    enc = MultiBaseEncoder(10, max_length=3)
    assert enc.encode(99) == [12, 12, EOS]
    with pytest.raises(SequenceTooLongError, match="100"):
        enc.encode(100)
    with pytest.raises(SequenceTooLongError, match="100"):
        enc.encode_batch(np.array([5, 100, 7], dtype=np.uint64))
    with pytest.raises(SequenceTooLongError, match="1000"):
        enc.encode_batch(np.array([5, 1000], dtype=np.int64))
    with pytest.raises(SequenceTooLongError):
        enc.encode_batch(np.array([5, 10**30], dtype=object))
    unbounded = MultiBaseEncoder(10)
    with pytest.raises(SequenceTooLongError, match="max_length is 4"):
        unbounded.encode_batch(np.array([12345], dtype=np.uint64), max_length=4)
    with pytest.raises(SequenceTooLongError):
        unbounded.encode_batch(np.array([2**70], dtype=object), max_length=4)
    assert issubclass(SequenceTooLongError, ValueError)


@pytest.mark.parametrize(
    ("base", "error"), [(1, ValueError), (0, ValueError), (65, ValueError), (-10, ValueError)]
)
def test_bad_base_value(base: int, error: type[Exception]) -> None:
    with pytest.raises(error, match=str(base)):
        MultiBaseEncoder(base)


@pytest.mark.parametrize("base", [True, "24", 24.0, None])
def test_bad_base_type(base: object) -> None:
    with pytest.raises(TypeError):
        MultiBaseEncoder(base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error"), [(-1, ValueError), (True, TypeError), (1.0, TypeError), ("3", TypeError)]
)
def test_encode_rejects_non_naturals(bad: object, error: type[Exception]) -> None:
    enc = MultiBaseEncoder(10)
    with pytest.raises(error, match=str(bad)):
        enc.encode(bad)  # type: ignore[arg-type]


def test_encode_batch_rejects_bad_arrays() -> None:
    enc = MultiBaseEncoder(10)
    with pytest.raises(ValueError, match="-4"):
        enc.encode_batch(np.array([3, -4], dtype=np.int64))
    with pytest.raises(TypeError):
        enc.encode_batch(np.array([3.0, 4.0]))
    with pytest.raises(TypeError):
        enc.encode_batch(np.array([3, True], dtype=object))


def test_encode_odd_rejects_even() -> None:
    enc = MultiBaseEncoder(10)
    assert enc.encode_odd(27) == enc.encode(27)
    with pytest.raises(ValueError, match="28"):
        enc.encode_odd(28)


mixed_u64 = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 63)).map(lambda t: t[0] >> t[1])


@settings(max_examples=80)
@given(
    st.sampled_from(ALL_BASES),
    st.lists(mixed_u64, min_size=1, max_size=60),
    st.integers(1, 9),
    st.integers(0, 3),
)
def test_encode_batch_mixed_lengths_across_blocks_equal_encode(
    base: int, values: list[int], block: int, extra_width: int
) -> None:
    # Values of every magnitude in one batch, in blocks of a few rows: rows shorter than the
    # common length (scaled up), longer ones (filled per length) and block edges all meet.
    enc = MultiBaseEncoder(base)
    width = max(len(enc.encode(v)) for v in values) + extra_width
    with mock.patch.object(encoding, "_BLOCK", block):
        batch = enc.encode_batch(np.array(values, dtype=np.uint64), max_length=width)
    expected = [enc.encode(v) for v in values]
    assert batch.shape == (len(values), width)
    for row, tokens in zip(batch.tolist(), expected, strict=True):
        assert row == tokens + [PAD] * (width - len(tokens))


@pytest.mark.parametrize("base", [2, 3, 24, 64])
def test_encode_batch_large_array_equals_per_item_encoding(base: int) -> None:
    # More rows than one block, lengths spread over the whole uint64 range; the expected
    # rows come from the per-item (Python int) path.
    rng = np.random.default_rng(base)
    values = rng.integers(0, 2**64 - 1, size=150_000, dtype=np.uint64, endpoint=True)
    values >>= rng.integers(0, 64, size=values.size).astype(np.uint64)
    enc = MultiBaseEncoder(base)
    batch = enc.encode_batch(values)
    expected = enc._encode_batch_exact(values.tolist(), batch.shape[1])
    assert batch.dtype == expected.dtype == torch.uint8
    assert torch.equal(batch, expected)
