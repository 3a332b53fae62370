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
_ONE = np.uint64(1)
_BLOCK = 1 << 16  # elements per block: the block's uint64 temporaries stay in a 1 MiB L2 cache


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


def _trailing_zeros_u64(x: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
    """Trailing zero count of uint64 ``x`` into uint8 ``out`` (64 for zero), branch-free.

    popcount((x & -x) - 1); ``scratch`` is a uint64 buffer of the same size.
    """
    np.negative(x, out=scratch)
    np.bitwise_and(scratch, x, out=scratch)
    np.subtract(scratch, _ONE, out=scratch)
    np.bitwise_count(scratch, out=out)


def _as_u64(values: np.ndarray) -> np.ndarray:
    """An integer array of positive values as uint64 (oddness is checked block by block)."""
    if values.dtype.kind not in "iu":
        raise TypeError(f"expected an array of odd positive integers, got dtype {values.dtype}")
    if values.size and values.dtype.kind == "i" and values.min() <= 0:
        raise ValueError(f"expected odd positive integers, got {int(values.min())}")
    return values.astype(np.uint64, copy=False)


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
    return _long_steps_u64(_as_u64(arr))


def _long_steps_u64(n: np.ndarray) -> LongSteps:
    """κ, k, k′ of positive uint64 values, in cache-sized blocks with reused buffers.

    An even value (k = 0, since then n + 1 is odd) raises ValueError naming the first one.

    Elements where 3^k · m does not fit 64 bits (k > 40, or m too large for its k, or
    n = 2^64 − 1 whose n + 1 wraps) are collected and recomputed exactly afterwards.
    """
    size = n.shape[0]
    steps = LongSteps(
        np.empty(size, dtype=np.uint64), np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
    )
    rows = min(size, _BLOCK)
    buffers = (
        *(np.empty(rows, dtype=np.uint64) for _ in range(3)),
        *(np.empty(rows, dtype=np.uint8) for _ in range(2)),
    )
    unfit = []
    for lo in range(0, size, _BLOCK):
        block = slice(lo, lo + _BLOCK)
        bad = _block_u64(n[block], steps.kappa[block], steps.k[block], steps.k_prime[block], buffers)
        if bad is not None:
            unfit.append(bad + lo)
    return _recomputed(n, steps, np.concatenate(unfit)) if unfit else steps


def _block_u64(
    x: np.ndarray, a: np.ndarray, k: np.ndarray, kp: np.ndarray, buffers: tuple[np.ndarray, ...]
) -> np.ndarray | None:
    """κ, k, k′ of one block ``x`` into ``a``, ``k``, ``kp``; the indices (in the block) whose
    3^k · m overflows 64 bits, or None. ``buffers``: three uint64 and two uint8 scratch arrays.

    ``a`` (the block of κ) holds a = 3^k · m − 1, built in place, then shifted into κ.
    """
    r = x.shape[0]
    b_n1, b_m, b_s, b_k, b_kp = (b[:r] for b in buffers)
    np.add(x, _ONE, out=b_n1)
    _trailing_zeros_u64(b_n1, b_s, b_k)
    if int(b_k.min()) == 0:
        first_even = int(x[np.flatnonzero(b_k == 0)[0]])
        raise ValueError(f"expected odd positive integers, got {first_even}")
    np.right_shift(b_n1, b_k, out=b_m)
    unfit = None
    # 3^k · m = (n + 1) · 1.5^k: when even the block's largest bound is far below 2^64,
    # every element fits and the per-element check is skipped.
    kmax = int(b_k.max())
    if kmax > _MAX_K_U64 or (float(x.max()) + 1.0) * 1.5**kmax >= 2.0**63:
        fits = (b_k <= _MAX_K_U64) & (b_m <= _M_LIMIT_U64.take(b_k, mode="clip"))
        if not fits.all():
            unfit = np.flatnonzero(~fits)
    np.multiply(_POW3_U64.take(b_k, mode="clip"), b_m, out=a)  # wraps where unfit
    np.subtract(a, _ONE, out=a)
    _trailing_zeros_u64(a, b_s, b_kp)
    np.right_shift(a, b_kp, out=a)
    k[:] = b_k
    kp[:] = b_kp
    return unfit


def _recomputed(n: np.ndarray, steps: LongSteps, idx: np.ndarray) -> LongSteps:
    """``steps`` with the overflowing elements ``idx`` recomputed exactly, κ widened to Python
    ints if one of them needs it."""
    exact = _exact([int(v) for v in n[idx].tolist()])
    steps.k_prime[idx] = exact.k_prime
    if exact.kappa.dtype == np.uint64:  # the intermediate overflowed, κ itself fits
        steps.kappa[idx] = exact.kappa
        return steps
    kappa_obj = steps.kappa.astype(object)
    kappa_obj[idx] = exact.kappa.astype(object)
    return LongSteps(kappa_obj, steps.k, steps.k_prime)
