"""Integers ↔ token sequences in any base from 2 to 64.

Tokens: PAD = 0, BOS = 1, EOS = 2, digit d → 3 + d, most significant digit first. A sequence
is the digits followed by EOS; the decoder's input is that sequence shifted right behind BOS.
PAD never doubles as a digit, so zeros are learned and predictions read back as integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.collatz import check_odd_positive

__all__ = [
    "BOS",
    "EOS",
    "NUM_SPECIAL",
    "PAD",
    "DecodeError",
    "MultiBaseEncoder",
    "SequenceTooLongError",
]

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3
MIN_BASE, MAX_BASE = 2, 64
_BLOCK = 1 << 16  # rows per block: a block's uint64 temporaries stay in a 1 MiB L2 cache


class DecodeError(ValueError):
    """A token sequence that is not a well-formed integer (no EOS, stray special token, ...)."""


class SequenceTooLongError(ValueError):
    """A value whose encoding (digits + EOS) does not fit ``max_length``."""


def _max_digits(base: int, limit: int) -> int:
    """Largest k with base^k <= limit: k digits of this base always fit below ``limit``."""
    k, p = 0, 1
    while p * base <= limit:
        p *= base
        k += 1
    return k


@dataclass
class _Columns:
    """Token columns of one block of rows; ``ends`` (3·L + 2 per row) marks rows shorter than others."""

    out: np.ndarray
    ends: np.ndarray | None = None
    shortest: int = 0

    def put(self, col: int, digit: np.ndarray | np.integer) -> None:
        """Column ``col`` gets digit + 3; in a row that ends at or before it, EOS at L and PAD after."""
        if self.ends is None or col < self.shortest:
            self.out[:, col] = digit + digit.dtype.type(NUM_SPECIAL)
            return
        token = self.ends - np.int16(3 * col)  # 3·(L − col) + 2, clipped: 3, EOS = 2 or PAD = 0
        np.clip(token, 0, NUM_SPECIAL, out=token)
        self.out[:, col] = token + digit


def _check_nonnegative(n: object) -> int:
    if isinstance(n, bool | np.bool_) or not isinstance(n, int | np.integer):
        raise TypeError(f"expected a non-negative integer, got {n!r} ({type(n).__name__})")
    if int(n) < 0:
        raise ValueError(f"expected a non-negative integer, got {int(n)}")
    return int(n)


class MultiBaseEncoder:
    """Encodes non-negative integers in ``base`` (2–64); ``vocab_size = base + 3``."""

    def __init__(self, base: int, max_length: int | None = None) -> None:
        if isinstance(base, bool) or not isinstance(base, int | np.integer):
            raise TypeError(f"base must be an int, got {base!r}")
        if not MIN_BASE <= base <= MAX_BASE:
            raise ValueError(f"base must be between {MIN_BASE} and {MAX_BASE}, got {base}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"max_length must be at least 2 (one digit + EOS), got {max_length}")
        self.base = int(base)
        self.max_length = max_length
        # base^1, base^2, ... below 2^64: a uint64 has as many digits as powers it reaches.
        powers, p = [], self.base
        while p < 2**64:
            powers.append(p)
            p *= self.base
        self._scales = np.array([1, *powers], dtype=np.uint64)  # base^0, base^1, ... below 2^64
        self._powers = self._scales[1:]
        # Most digits whose every value fits uint16 / uint32 (base^k <= 2^16 / 2^32).
        self._digits_u16 = _max_digits(self.base, 2**16)
        self._digits_u32 = _max_digits(self.base, 2**32)

    @property
    def vocab_size(self) -> int:
        return self.base + NUM_SPECIAL

    def __repr__(self) -> str:
        return f"MultiBaseEncoder(base={self.base}, max_length={self.max_length})"

    def num_digits(self, n: int) -> int:
        """Digits of ``n`` in this base (1 for zero)."""
        n = _check_nonnegative(n)
        count = 1
        while n >= self.base:
            n //= self.base
            count += 1
        return count

    def sequence_length(self, n: int) -> int:
        """Tokens needed for ``n``: its digits plus EOS."""
        return self.num_digits(n) + 1

    def _check_fits(self, n: int, length: int, max_length: int | None) -> None:
        if max_length is not None and length > max_length:
            raise SequenceTooLongError(
                f"{n} needs {length} tokens in base {self.base} (digits + EOS) but "
                f"max_length is {max_length}; raise max_length"
            )

    def encode(self, n: int) -> list[int]:
        """Digit tokens of ``n`` followed by EOS."""
        tokens = self._tokens(n)
        self._check_fits(n, len(tokens), self.max_length)
        return tokens

    def _tokens(self, n: int) -> list[int]:
        n = _check_nonnegative(n)
        digits = []
        x = n
        while True:
            x, d = divmod(x, self.base)
            digits.append(d + NUM_SPECIAL)
            if x == 0:
                break
        return digits[::-1] + [EOS]

    def decode(self, tokens: Sequence[int] | torch.Tensor | np.ndarray) -> int:
        """The integer a sequence spells, reading up to EOS (a leading BOS is skipped).

        Raises DecodeError for a sequence without EOS, without digits, with a leading zero
        digit or with a special token among the digits: such a prediction is never a number.
        """
        if isinstance(tokens, torch.Tensor | np.ndarray):
            tokens = tokens.tolist()
        seq = list(tokens)
        if seq and seq[0] == BOS:
            seq = seq[1:]
        value = 0
        for pos, tok in enumerate(seq):  # every token before EOS is a digit, so pos counts them
            if tok == EOS:
                if pos == 0:
                    raise DecodeError("sequence has EOS but no digits")
                return value
            digit = tok - NUM_SPECIAL
            if not 0 <= digit < self.base:
                raise DecodeError(f"token {tok} at position {pos} is not a digit of base {self.base}")
            if pos == 0 and digit == 0 and len(seq) > 1 and seq[1] != EOS:
                raise DecodeError("leading zero digit: not a canonical integer")
            value = value * self.base + digit
        raise DecodeError(f"no EOS token in sequence {seq[:16]}{'...' if len(seq) > 16 else ''}")

    def try_decode(self, tokens: Sequence[int] | torch.Tensor | np.ndarray) -> int | None:
        """``decode`` that returns None for a malformed sequence."""
        try:
            return self.decode(tokens)
        except DecodeError:
            return None

    def decode_batch(self, tokens: torch.Tensor | np.ndarray) -> list[int | None]:
        """Decode each row; malformed rows give None."""
        rows = tokens.tolist() if isinstance(tokens, torch.Tensor | np.ndarray) else tokens
        return [self.try_decode(row) for row in rows]

    def encode_batch(self, values: Iterable[int] | np.ndarray, max_length: int | None = None) -> torch.Tensor:
        """Encode many values into a PAD-padded uint8 tensor [N, L], vectorized for uint64.

        ``L`` is ``max_length`` (default: the encoder's) or else the longest sequence.
        """
        max_length = self.max_length if max_length is None else max_length
        arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
        arr = arr.reshape(-1)
        if arr.dtype == object or arr.dtype.kind not in "iu":
            if arr.dtype.kind in "fcbUS":
                raise TypeError(f"expected integers, got dtype {arr.dtype}")
            ints = [_check_nonnegative(v) for v in arr.tolist()]
            if ints and max(ints) >= 2**64:
                return self._encode_batch_exact(ints, max_length)
            arr = np.array(ints, dtype=np.uint64)
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise ValueError(f"expected non-negative integers, got {int(arr.min())}")
        return torch.from_numpy(self._encode_batch_u64(arr.astype(np.uint64), max_length))

    def _encode_batch_u64(self, values: np.ndarray, max_length: int | None) -> np.ndarray:
        n = values.shape[0]
        if n == 0:
            return np.zeros((0, 2 if max_length is None else max_length), dtype=np.uint8)
        lengths, histogram = self._digit_counts(values)
        ndig = len(histogram) - 1  # the largest value has this many digits
        if max_length is not None and ndig + 1 > max_length:
            i = int(np.argmax(lengths))
            self._check_fits(int(values[i]), int(lengths[i]) + 1, max_length)
        width = max_length if max_length is not None else ndig + 1
        out = np.zeros((n, width), dtype=np.uint8)  # calloc: the PAD tail costs no pass
        # Most rows share one length C; shorter rows are scaled up to C digits inside _fill
        # (base^C must stay below 2^64 for that), the few longer ones are filled per length.
        common = min(int(histogram.argmax()), len(self._powers))
        self._fill(values, lengths, common, out)
        if histogram[common + 1 :].any():
            longer = np.flatnonzero(lengths > common)
            longer_lengths = lengths[longer]
            for length in np.unique(longer_lengths).tolist():
                rows = longer[longer_lengths == length]
                block = np.zeros((rows.size, width), dtype=np.uint8)
                self._fill(values[rows], lengths[rows], length, block)
                out[rows] = block
        return out

    def _digit_counts(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Digits of every value (uint8) and how many values have each digit count.

        A value's digit count is 1 + the number of powers of the base ≤ it; only the powers
        between the smallest and the largest value need a comparison, and their tallies give
        the histogram without a bincount over the whole array.
        """
        n = values.shape[0]
        counts = np.empty(n, dtype=np.uint8)
        below = int(np.searchsorted(self._powers, values.min(), side="right"))
        upto = int(np.searchsorted(self._powers, values.max(), side="right"))
        thresholds = self._powers[below:upto]
        at_least = np.zeros(upto + 3, dtype=np.int64)  # at_least[d]: values with >= d digits
        at_least[: below + 2] = n
        ge = np.empty(min(n, _BLOCK), dtype=bool)
        for lo in range(0, n, _BLOCK):
            x, c = values[lo : lo + _BLOCK], counts[lo : lo + _BLOCK]
            g = ge[: x.shape[0]]
            c.fill(below + 1)
            for i, p in enumerate(thresholds, start=below + 2):
                np.greater_equal(x, p, out=g)
                np.add(c, g, out=c)
                at_least[i] += np.count_nonzero(g)
        return counts, at_least[:-1] - at_least[1:]

    def _fill(self, values: np.ndarray, lengths: np.ndarray, common: int, out: np.ndarray) -> None:
        """Tokens of every row with at most ``common`` digits into ``out`` (zeroed beforehand).

        A row of length L < C is scaled by base^(C − L): its digits followed by zeros, C in all,
        so one column pass serves every row. Each column's token is digit + 3 left of the row's
        end, EOS at it and PAD after it: clip(3·(L − col) + 2, 0, 3) + digit, where the digit is
        0 from the end on. Rows longer than ``common`` get garbage; the caller overwrites them.
        """
        for lo in range(0, values.shape[0], _BLOCK):
            x, lens, o = values[lo : lo + _BLOCK], lengths[lo : lo + _BLOCK], out[lo : lo + _BLOCK]
            shortest = int(lens.min())
            if shortest >= common:  # every row ends at column `common`
                self._put_digits(x, common, common, _Columns(o))
                o[:, common] = EOS
                continue
            x = x * self._scales.take(common - np.minimum(lens, common))
            columns = _Columns(o, ends=lens.astype(np.int16) * 3 + 2, shortest=shortest)
            self._put_digits(x, common, common, columns)
            columns.put(common, np.uint8(0))

    def _put_digits(self, v: np.ndarray, ndigits: int, end: int, columns: _Columns) -> None:
        """Write the ``ndigits`` digits of ``v`` into the columns before ``end``.

        Values are split into chunks that fit uint32 and then uint16, where numpy divides a
        vector by a scalar several times faster than in uint64.
        """
        if ndigits <= self._digits_u16 and v.dtype != np.uint16:
            v = v.astype(np.uint16)
        elif ndigits <= self._digits_u32 and v.dtype == np.uint64:
            v = v.astype(np.uint32)
        if v.dtype == np.uint16:
            base = np.uint16(self.base)
            for col in range(end - 1, end - ndigits, -1):
                q = v // base
                columns.put(col, v - q * base)
                v = q
            columns.put(end - ndigits, v)
            return
        chunk = self._digits_u16 if v.dtype == np.uint32 else self._digits_u32
        divisor = v.dtype.type(self.base**chunk)
        high = v // divisor
        self._put_digits(v - high * divisor, chunk, end, columns)
        self._put_digits(high, ndigits - chunk, end - chunk, columns)

    def _encode_batch_exact(self, values: list[int], max_length: int | None) -> torch.Tensor:
        seqs = []
        for v in values:
            tokens = self._tokens(v)  # the width check is against ``max_length``, not the encoder's
            self._check_fits(v, len(tokens), max_length)
            seqs.append(tokens)
        width = max_length if max_length is not None else max(len(s) for s in seqs)
        out = np.zeros((len(seqs), width), dtype=np.uint8)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s
        return torch.from_numpy(out)

    def encode_odd(self, n: int) -> list[int]:
        """``encode`` for a model input: rejects what is not an odd positive integer."""
        return self.encode(check_odd_positive(n))
