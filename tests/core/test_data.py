"""Datasets of distinct odd inputs, splits disjoint by value, and the batch iterator."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from core import (
    EOS,
    PAD,
    BatchIterator,
    CollatzDataset,
    MultiBaseEncoder,
    count_odd,
    long_step,
    long_steps,
    loop_lengths,
    make_splits,
    sample_odd,
    split_values,
)
from core import data as data_module
from core.data import max_sequence_length


@pytest.fixture(scope="module")
def small() -> CollatzDataset:
    return CollatzDataset(start_range=(1, 10_000), num_samples=600, base=24, max_length=None, seed=3)


def test_values_distinct_odd_in_range(small: CollatzDataset) -> None:
    values = small.values.tolist()
    assert len(small) == len(values) == 600
    assert len(set(values)) == 600
    assert all(v % 2 == 1 and 1 <= v < 10_000 for v in values)


@pytest.mark.parametrize("start_range", [(1, 100), (2, 10), (11, 20), (10, 1000), (1, 2), (4, 5)])
def test_count_odd(start_range: tuple[int, int]) -> None:
    lo, hi = start_range
    assert count_odd(start_range) == len(range(lo | 1, hi, 2))


def test_seeds() -> None:
    a = CollatzDataset((1, 10**6), 300, 24, seed=7).values
    b = CollatzDataset((1, 10**6), 300, 24, seed=7).values
    c = CollatzDataset((1, 10**6), 300, 24, seed=8).values
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(a.tolist()) != set(c.tolist())


@pytest.mark.parametrize("hi", [10**12, 2**61])
def test_huge_range_is_not_materialised(hi: int) -> None:
    start = time.perf_counter()
    ds = CollatzDataset((1, hi), 100_000, 24, seed=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0, f"100k samples from [1, {hi}) took {elapsed:.1f}s"
    values = ds.values
    assert len(ds) == 100_000
    assert np.unique(values).size == 100_000
    assert int(values.min()) >= 1 and int(values.max()) < hi
    assert bool(np.all(values & np.uint64(1)))
    # spread over the range, not clustered at its start
    assert int(values.max()) > hi // 2
    # spot-check encoded inputs and targets against the exact scalar step
    for i in (0, 1, 12_345, 99_999):
        n = int(values[i])
        src, tgt = ds[i]
        assert ds.encoder.decode(src) == n
        assert ds.encoder.decode(tgt) == long_step(n)


@pytest.mark.parametrize(("start_range", "holds"), [((1, 100), 50), ((2, 10), 4), ((11, 20), 5)])
def test_asking_more_than_the_range_holds(start_range: tuple[int, int], holds: int) -> None:
    with pytest.raises(ValueError, match=rf"\b{holds}\b"):
        CollatzDataset(start_range, holds + 1, 10)
    with pytest.raises(ValueError, match=rf"\b{holds}\b"):
        sample_odd(start_range, holds + 1, seed=0)
    assert len(sample_odd(start_range, holds, seed=0)) == holds


@pytest.mark.parametrize("start_range", [(1, 100), (10, 1000), (11, 2000), (1, 2)])
def test_dense_case_returns_each_odd_once(start_range: tuple[int, int]) -> None:
    lo, hi = start_range
    every = list(range(lo | 1, hi, 2))
    values = sample_odd(start_range, len(every), seed=1)
    assert sorted(values.tolist()) == every
    ds = CollatzDataset(start_range, len(every), 10, seed=1)
    assert sorted(ds.values.tolist()) == every


def test_sparse_and_dense_draws_are_distinct() -> None:
    for n in (10, 100, 2400, 2500):  # both sides of the dense/sparse switch of [1, 20000)
        values = sample_odd((1, 20_000), n, seed=n).tolist()
        assert len(set(values)) == n
        assert all(v % 2 == 1 and v < 20_000 for v in values)


@pytest.mark.parametrize("bad", [(0, 10), (10, 10), (10, 5), (1, 2**63)])
def test_bad_ranges(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        CollatzDataset(bad, 1, 10)


def test_items_decode_to_n_and_kappa(small: CollatzDataset) -> None:
    enc = MultiBaseEncoder(24)
    for i in range(len(small)):
        src, tgt = small[i]
        assert src.dtype == tgt.dtype == torch.long
        assert src.shape == tgt.shape == (small.max_length,)
        n = int(small.values[i])
        assert enc.decode(src) == n
        assert enc.decode(tgt) == long_step(n)
        assert (int(small.k[i]), int(small.k_prime[i])) == loop_lengths(n)


def test_vocab_size() -> None:
    for base in (2, 10, 24, 64):
        assert CollatzDataset((1, 1000), 10, base).vocab_size == base + 3


@pytest.mark.parametrize("base", [2, 3, 7, 11, 24, 32, 64])
@pytest.mark.parametrize("hi", [2, 3, 100, 2**10, 2**14 + 1, 3**9])
def test_derived_max_length_fits_every_kappa_of_the_range(base: int, hi: int) -> None:
    every = np.arange(1, hi, 2, dtype=np.uint64)
    kappa = long_steps(every).kappa
    needed = max(MultiBaseEncoder(base).sequence_length(int(v)) for v in (*kappa.tolist(), hi - 1))
    assert max_sequence_length((1, hi), base) >= needed
    # the dense dataset of the whole range builds with the derived length, all targets decode
    ds = CollatzDataset((1, hi), len(every), base, max_length=None, seed=0)
    assert ds.max_length == max_sequence_length((1, hi), base)
    assert ds.encoder.decode_batch(ds.target_ids) == [long_step(int(n)) for n in ds.values]
    assert ds.encoder.decode_batch(ds.input_ids) == ds.values.tolist()


def test_derived_max_length_fits_worst_cases_of_a_big_range() -> None:
    hi = 2**40
    worst = [2**j - 1 for j in range(1, 41)] + [3**25 | 1]  # 2^40 − 1 = hi − 1 is the last
    for base in (2, 24, 64):
        ds = CollatzDataset.from_values(worst, (1, hi), base)
        assert ds.encoder.decode_batch(ds.target_ids) == [long_step(n) for n in worst]


def test_explicit_max_length_too_small_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_length"):
        CollatzDataset((1, 10**6), 100, 10, max_length=3, seed=0)


def test_make_splits() -> None:
    train, val, test = make_splits((1, 10**6), [300, 100, 50], base=24, seed=5)
    assert (len(train), len(val), len(test)) == (300, 100, 50)
    a, b, c = (set(ds.values.tolist()) for ds in (train, val, test))
    assert not (a & b) and not (a & c) and not (b & c)
    assert train.max_length == val.max_length == test.max_length == max_sequence_length((1, 10**6), 24)
    assert train.input_ids.shape[1] == test.target_ids.shape[1] == train.max_length
    for ds in (train, val, test):
        assert all(v % 2 == 1 for v in ds.values.tolist())
        assert ds.encoder.decode_batch(ds.target_ids) == [long_step(int(n)) for n in ds.values]
    again = make_splits((1, 10**6), [300, 100, 50], base=24, seed=5)
    assert all(np.array_equal(x.values, y.values) for x, y in zip((train, val, test), again, strict=True))


def test_make_splits_dense_and_too_many() -> None:
    splits = make_splits((1, 200), [60, 20, 20], base=10, seed=0)
    assert sorted(v for ds in splits for v in ds.values.tolist()) == list(range(1, 200, 2))
    with pytest.raises(ValueError, match=r"\b100\b"):
        make_splits((1, 200), [60, 20, 21], base=10)


def epoch_values(it: BatchIterator, epoch: int) -> list[int]:
    it.set_epoch(epoch)
    out: list[int] = []
    for src, _ in it:
        out.extend(it.dataset.encoder.decode_batch(src))
    return out


def test_batch_iterator_covers_each_sample_once_per_epoch(small: CollatzDataset) -> None:
    it = BatchIterator(small, batch_size=64, seed=1)
    assert len(it) == 10  # ceil(600 / 64)
    for epoch in (1, 2, 3):
        seen = epoch_values(it, epoch)
        assert len(seen) == len(small)
        assert sorted(seen) == sorted(small.values.tolist())


def test_batch_iterator_batches_pair_inputs_with_their_targets(small: CollatzDataset) -> None:
    it = BatchIterator(small, batch_size=50, seed=2)
    for src, tgt in it:
        assert src.dtype == tgt.dtype == torch.long
        ns = small.encoder.decode_batch(src)
        assert small.encoder.decode_batch(tgt) == [long_step(n) for n in ns]


def test_batch_iterator_order_is_a_function_of_seed_and_epoch(small: CollatzDataset) -> None:
    a = BatchIterator(small, batch_size=64, seed=1)
    b = BatchIterator(small, batch_size=64, seed=1)
    c = BatchIterator(small, batch_size=64, seed=2)
    assert epoch_values(a, 4) == epoch_values(b, 4)
    assert epoch_values(a, 4) != epoch_values(a, 5)
    assert epoch_values(a, 4) != epoch_values(c, 4)
    # same batches, tensor for tensor
    a.set_epoch(3)
    b.set_epoch(3)
    for (s1, t1), (s2, t2) in zip(a, b, strict=True):
        assert torch.equal(s1, s2) and torch.equal(t1, t2)


def test_batch_iterator_without_shuffle_keeps_dataset_order(small: CollatzDataset) -> None:
    it = BatchIterator(small, batch_size=128, shuffle=False)
    assert epoch_values(it, 1) == small.values.tolist()
    assert len(BatchIterator(small, batch_size=128, drop_last=True)) == 4
    rows = sum(src.shape[0] for src, _ in BatchIterator(small, batch_size=128, drop_last=True))
    assert rows == 512


def test_batch_iterator_trims_all_pad_columns() -> None:
    ds = CollatzDataset((1, 10**6), 300, 10, max_length=40, seed=0)
    assert ds.input_ids.shape[1] == 40
    for src, tgt in BatchIterator(ds, batch_size=32, seed=0):
        for t in (src, tgt):
            assert t.shape[1] < 40
            assert bool((t[:, -1] != PAD).any())  # the last column is needed by some row
            assert bool(((t == EOS).sum(1) == 1).all())  # no row lost its EOS


def test_batch_iterator_does_no_per_sample_python(
    small: CollatzDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    def forbidden(self: CollatzDataset, index: int) -> None:
        raise AssertionError("BatchIterator must not index the dataset sample by sample")

    monkeypatch.setattr(CollatzDataset, "__getitem__", forbidden)
    seen = epoch_values(BatchIterator(small, batch_size=100, seed=0), 1)
    assert sorted(seen) == sorted(small.values.tolist())


def test_torch_dataloader_over_the_dataset(small: CollatzDataset) -> None:
    loader = DataLoader(small, batch_size=64, shuffle=True, num_workers=0)
    rows = []
    for src, tgt in loader:
        assert src.dtype == torch.long and src.shape[1:] == (small.max_length,)
        assert tgt.shape == src.shape
        ns = small.encoder.decode_batch(src)
        assert small.encoder.decode_batch(tgt) == [long_step(n) for n in ns]
        rows.extend(ns)
    assert sorted(rows) == sorted(small.values.tolist())


def test_from_values_rejects_values_outside_the_range() -> None:
    with pytest.raises(ValueError, match="outside"):
        CollatzDataset.from_values([3, 5, 10_001], (1, 10_000), 10)
    with pytest.raises(ValueError):
        CollatzDataset.from_values([3, 6], (1, 10_000), 10)


def test_from_values_rejects_repeated_values() -> None:
    with pytest.raises(ValueError, match="distinct"):
        CollatzDataset.from_values([3, 5, 3], (1, 100), 24)


def test_split_values_are_the_inputs_of_make_splits() -> None:
    sizes = [500, 40, 60]
    splits = make_splits((1, 10**9), sizes, base=7, seed=3)
    pieces = split_values((1, 10**9), sizes, seed=3)
    assert [len(p) for p in pieces] == sizes
    for dataset, values in zip(splits, pieces, strict=True):
        assert np.array_equal(dataset.values, values)
    with pytest.raises(ValueError, match="split sizes must be >= 0"):
        split_values((1, 100), [3, -1], seed=0)


def reference_first_occurrences(a: np.ndarray) -> np.ndarray:
    return a[np.sort(np.unique(a, return_index=True)[1])]


@settings(max_examples=60)
@given(st.lists(st.integers(0, 30), max_size=80))
def test_first_occurrences_keeps_draw_order_without_repeats(values: list[int]) -> None:
    a = np.array(values, dtype=np.int64)
    assert np.array_equal(data_module._first_occurrences(a), reference_first_occurrences(a))


@pytest.mark.parametrize(
    ("start_range", "n", "seed"),
    [
        ((1, 10**12), 200_000, 0),
        ((1, 10**12), 200_000, 7),
        ((1, 1_700_001), 200_000, 1),
        ((101, 8_000_000), 900_000, 3),
    ],
)
def test_sample_odd_is_the_seeded_sample_of_the_reference_algorithm(
    start_range: tuple[int, int], n: int, seed: int
) -> None:
    # Keeps every seeded sample (and so every study's splits) as before: draw with replacement,
    # keep first occurrences in draw order, top up. The narrow ranges force many repeats and
    # several rounds.
    available = count_odd(start_range)
    assert n * 4 < available  # the sparse path
    rng = np.random.default_rng(seed)
    idx = np.empty(0, dtype=np.int64)
    while idx.size < n:
        need = n - idx.size
        draw = rng.integers(0, available, size=need + need // 8 + 16, dtype=np.int64)
        idx = reference_first_occurrences(np.concatenate([idx, draw]))[:n]
    expected = np.uint64(start_range[0] | 1) + np.uint64(2) * idx.astype(np.uint64)
    got = sample_odd(start_range, n, seed)
    assert got.dtype == np.uint64
    assert np.array_equal(got, expected)
