"""The long Collatz step κ(n), exact for any odd positive int and vectorized for arrays.

For odd n write n + 1 = 2^k · m with m odd; k applications of x → (3x+1)/2 give
a = 3^k · m − 1 (even). With k′ = v₂(a), the long step is κ(n) = a / 2^k′.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral

import numpy as np

__all__ = ["LongSteps", "check_odd_positive", "long_step", "long_steps", "loop_lengths"]

# 3^40 < 2^64 < 3^41: beyond k = 40 the uint64 product 3^k · m always overflows.
_MAX_K_U64 = 40
_POW3_U64 = np.array([3**k for k in range(_MAX_K_U64 + 1)], dtype=np.uint64)
# Largest m with 3^k · m < 2^64, per k; larger m must take the exact (Python int) path.
_M_LIMIT_U64 = np.array([(2**64 - 1) // 3**k for k in range(_MAX_K_U64 + 1)], dtype=np.uint64)


def check_odd_positive(n: object) -> int:
    """Return ``n`` as a Python int, or raise naming the value: bools and floats are not integers."""
    if isinstance(n, bool | np.bool_) or not isinstance(n, Integral):
        raise TypeError(f"expected an odd positive integer, got {n!r} ({type(n).__name__})")
    value = int(n)
    if value <= 0 or value % 2 == 0:
        raise ValueError(f"expected an odd positive integer, got {value}")
    return value


def _v2(x: int) -> int:
    """Number of factors 2 in a positive int."""
    return (x & -x).bit_length() - 1


def loop_lengths(n: int) -> tuple[int, int]:
    """(k, k′): the number of (3x+1)/2 steps and then the number of halvings in κ(n)."""
    n = check_odd_positive(n)
    k = _v2(n + 1)
    a = 3**k * ((n + 1) >> k) - 1
    return k, _v2(a)


def long_step(n: int) -> int:
    """κ(n), exact for any odd positive int (also far beyond 64 bits)."""
    n = check_odd_positive(n)
    k = _v2(n + 1)
    a = 3**k * ((n + 1) >> k) - 1
    return a >> _v2(a)


@dataclass(frozen=True)
class LongSteps:
    """κ, k and k′ for every element of an input array.

    ``kappa`` is uint64 when every κ fits in 64 bits, else an object array of exact Python ints.
    """

    kappa: np.ndarray
    k: np.ndarray
    k_prime: np.ndarray


def _trailing_zeros_u64(x: np.ndarray) -> np.ndarray:
    """Trailing zero count of non-zero uint64 values (branch-free, vectorized)."""
    lowest = x & (~x + np.uint64(1))
    return np.bitwise_count(lowest - np.uint64(1)).astype(np.int64)


def _as_u64_or_none(values: np.ndarray) -> np.ndarray | None:
    """Validate an integer array and return it as uint64, or None when it needs exact ints."""
    if values.dtype == object:
        return None
    if values.dtype.kind not in "iu":
        raise TypeError(f"expected an array of odd positive integers, got dtype {values.dtype}")
    if values.size and values.dtype.kind == "i":
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            raise ValueError(f"expected odd positive integers, got {int(values[bad[0]])}")
    as_u64 = values.astype(np.uint64, copy=False)
    bad = np.flatnonzero((as_u64 & np.uint64(1)) == 0)
    if bad.size:
        raise ValueError(f"expected odd positive integers, got {int(as_u64[bad[0]])}")
    # n + 1 must not wrap: 2^64 − 1 is the one odd uint64 that needs the exact path.
    if as_u64.size and as_u64.max() == np.uint64(2**64 - 1):
        return None
    return as_u64


def _exact(values: list[int]) -> LongSteps:
    ks, kps, kappas = [], [], []
    for v in values:
        k, kp = loop_lengths(v)
        ks.append(k)
        kps.append(kp)
        kappas.append(long_step(v))
    kappa = np.array(kappas, dtype=object)
    if all(x < 2**64 for x in kappas):
        kappa = kappa.astype(np.uint64)
    return LongSteps(kappa, np.array(ks, dtype=np.int64), np.array(kps, dtype=np.int64))


def long_steps(values: np.ndarray | list[int]) -> LongSteps:
    """κ, k and k′ for a 1-D array of odd positive ints, vectorized in uint64.

    Elements whose 3^k · m would overflow 64 bits are detected and recomputed exactly with
    Python ints (the result then holds an object array) instead of silently wrapping.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype == object or arr.dtype.kind not in "iu":
        if arr.dtype.kind in "fcbUS":
            raise TypeError(f"expected an array of odd positive integers, got dtype {arr.dtype}")
        ints = [check_odd_positive(v) for v in arr.tolist()]
        if ints and max(ints) < 2**64 - 1:
            arr = np.array(ints, dtype=np.uint64)
        else:
            return _exact(ints)
    n = _as_u64_or_none(arr)
    if n is None:
        return _exact([int(v) for v in arr.tolist()])

    n1 = n + np.uint64(1)
    k = _trailing_zeros_u64(n1)
    m = n1 >> k.astype(np.uint64)
    k_clip = np.minimum(k, _MAX_K_U64)
    fits = (k <= _MAX_K_U64) & (m <= _M_LIMIT_U64[k_clip])
    a = _POW3_U64[k_clip] * m - np.uint64(1)  # wrapped where not `fits`; fixed below
    kp = _trailing_zeros_u64(np.where(fits, a, np.uint64(2)))
    kappa = a >> kp.astype(np.uint64)
    if fits.all():
        return LongSteps(kappa, k, kp)

    # Overflowing elements: recompute exactly and widen κ to Python ints.
    idx = np.flatnonzero(~fits)
    exact = _exact([int(v) for v in n[idx].tolist()])
    kp[idx] = exact.k_prime
    if exact.kappa.dtype == np.uint64:  # the intermediate overflowed, κ itself fits
        kappa[idx] = exact.kappa
        return LongSteps(kappa, k, kp)
    kappa_obj = kappa.astype(object)
    kappa_obj[idx] = exact.kappa.astype(object)
    return LongSteps(kappa_obj, k, kp)
