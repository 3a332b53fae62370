"""Integers ↔ token sequences in any base from 2 to 64.

Tokens: PAD = 0, BOS = 1, EOS = 2, digit d → 3 + d, most significant digit first. A sequence
is the digits followed by EOS; the decoder's input is that sequence shifted right behind BOS.
PAD never doubles as a digit, so zeros are learned and predictions read back as integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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
_BLOCK = 1 << 14  # rows per block of digit extraction (fits in L2 with its temporaries)


class DecodeError(ValueError):
    """A token sequence that is not a well-formed integer (no EOS, stray special token, ...)."""


class SequenceTooLongError(ValueError):
    """A value whose encoding (digits + EOS) does not fit ``max_length``."""


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
        self._powers = np.array(powers, dtype=np.uint64)
        self._scales = np.array([1, *powers], dtype=np.uint64)  # base^0, base^1, ... below 2^64

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
        # Digit count from one sorted search over the powers of the base.
        lengths = np.searchsorted(self._powers, values, side="right").astype(np.int64) + 1
        ndig = int(lengths.max(initial=1))
        if max_length is not None and n and ndig + 1 > max_length:
            i = int(np.argmax(lengths))
            self._check_fits(int(values[i]), int(lengths[i]) + 1, max_length)
        width = max_length if max_length is not None else ndig + 1
        out = np.zeros((n, width), dtype=np.uint8)
        if n == 0:
            return out
        counts = np.bincount(lengths, minlength=ndig + 1)
        common = int(counts.argmax())
        # Left-align without a per-row gather: a value shorter than the most common length C is
        # scaled by base^(C - L), which gives its digits followed by zeros, C digits in all
        # (below 2^64 as long as base^C is). Then one bulk copy places every row of length <= C.
        short = np.flatnonzero(lengths < common)
        scalable = common <= len(self._powers)  # base^C < 2^64
        scaled = values
        if short.size and scalable:
            scaled = values.copy()
            scaled[short] *= self._scales[common - lengths[short]]
        digits = np.empty((n, ndig), dtype=np.uint8)  # big-endian, right-aligned
        for lo in range(0, n, _BLOCK):  # blocks keep every pass in the CPU cache
            self._digits_block(scaled[lo : lo + _BLOCK], digits[lo : lo + _BLOCK])
        out[:, :common] = digits[:, ndig - common :]
        out[:, common] = EOS
        if short.size and scalable:
            # Short rows: EOS at L, PAD over the scaled zeros up to and including column C.
            flat = out.reshape(-1)
            at = short * width + lengths[short]
            flat[at] = EOS
            gap = common - lengths[short]
            for j in range(1, int(gap.max()) + 1):
                flat[at[gap >= j] + j] = PAD
        others = lengths > common if scalable else lengths != common
        for length in np.unique(lengths[others]).tolist():
            rows = np.flatnonzero(lengths == length)
            block = np.zeros((rows.size, width), dtype=np.uint8)
            block[:, :length] = digits[rows, ndig - length :]
            block[:, length] = EOS
            out[rows] = block
        return out

    def _digits_block(self, values: np.ndarray, digits: np.ndarray) -> None:
        """Digit tokens of ``values`` into ``digits`` [rows, ndig], right-aligned.

        Floor division by a scalar uses libdivide (~10x faster than divmod); the remainder is a
        multiply-subtract; all in preallocated buffers.
        """
        base = np.uint64(self.base)
        x = values.copy()
        q, tmp = np.empty_like(x), np.empty_like(x)
        for col in range(digits.shape[1] - 1, -1, -1):
            np.floor_divide(x, base, out=q)
            np.multiply(q, base, out=tmp)
            np.subtract(x, tmp, out=x)
            digits[:, col] = x
            x, q = q, x
        digits += np.uint8(NUM_SPECIAL)

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
