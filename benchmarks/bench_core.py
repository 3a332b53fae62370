"""Core throughput benchmark (not part of the test suite).

Prints:
  1. vectorized κ + encoding throughput for odd n < 2^40 on one core, and its ratio to a
     per-item Python pipeline (long_step + encode per integer);
  2. training throughput (samples/s) of a d_model=128, 2-encoder/1-decoder model at batch 256;
  3. model FLOP utilisation: FLOPs of a training step (counted by torch's FlopCounterMode)
     times steps/s, against a plain fp32 matmul on the same machine and thread count.

Run: .venv/bin/python benchmarks/bench_core.py [--threads 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from core import BatchIterator, CollatzTransformer, MultiBaseEncoder, long_step, long_steps, make_splits


def best_of(fn, repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _literal_long_step(n: int) -> int:
    """κ(n) as the definition reads: (3x+1)/2 while odd, then halve while even."""
    x = n
    while x % 2:
        x = (3 * x + 1) // 2
    while x % 2 == 0:
        x //= 2
    return x


def _lean_per_item(values: list[int], base: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The leanest per-item pipeline we could write: no validation, inline κ and digits."""
    src = np.zeros((len(values), width), dtype=np.uint8)
    tgt = np.zeros((len(values), width), dtype=np.uint8)
    for i, v in enumerate(values):
        x = v
        while x & 1:
            x = (3 * x + 1) >> 1
        while not x & 1:
            x >>= 1
        for out, y in ((src, v), (tgt, x)):
            tokens = []
            while True:
                y, d = divmod(y, base)
                tokens.append(d + 3)
                if not y:
                    break
            tokens.reverse()
            tokens.append(2)  # EOS
            out[i, : len(tokens)] = tokens
    return src, tgt


def bench_data(n: int, base: int = 24) -> None:
    """κ + encoding into padded token arrays: vectorized vs per item (same output)."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**39, size=n, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    enc = MultiBaseEncoder(base)

    def vectorized() -> None:
        steps = long_steps(values)
        enc.encode_batch(values)
        enc.encode_batch(steps.kappa)

    small = values[:20_000].tolist()
    width = 16

    def per_item(step: object) -> None:
        src = np.zeros((len(small), width), dtype=np.uint8)
        tgt = np.zeros((len(small), width), dtype=np.uint8)
        for i, v in enumerate(small):
            a, b = enc.encode(v), enc.encode(step(v))
            src[i, : len(a)] = a
            tgt[i, : len(b)] = b

    # Same output both ways, checked on the per-item subset before anything is timed.
    src, tgt = _lean_per_item(small, base, width)
    head = values[: len(small)]
    assert np.array_equal(enc.encode_batch(head, max_length=width).numpy(), src)
    assert np.array_equal(enc.encode_batch(long_steps(head).kappa, max_length=width).numpy(), tgt)

    t_vec = best_of(vectorized, 5)
    t_lib = best_of(lambda: per_item(long_step), 2)
    t_lit = best_of(lambda: per_item(_literal_long_step), 2)
    t_lean = best_of(lambda: _lean_per_item(small, base, width), 2)
    rate_vec, rate_lib, rate_lit = n / t_vec, len(small) / t_lib, len(small) / t_lit
    rate_lean = len(small) / t_lean
    print(
        f"[data] vectorized κ + encoding, odd n < 2^40, base {base}, 1 core: {rate_vec / 1e6:.2f} M samples/s"
    )
    print(
        f"[data] per item, core.long_step + encode into padded rows: {rate_lib / 1e6:.3f} M samples/s "
        f"-> vectorized is {rate_vec / rate_lib:.0f}x faster"
    )
    print(
        f"[data] per item, κ by the literal loop + encode into rows:  {rate_lit / 1e6:.3f} M samples/s "
        f"-> vectorized is {rate_vec / rate_lit:.0f}x faster"
    )
    print(
        f"[data] per item, lean inline loop, no validation:           {rate_lean / 1e6:.3f} M samples/s "
        f"-> vectorized is {rate_vec / rate_lean:.0f}x faster"
    )


def matmul_gflops(threads: int, size: int = 1024) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    t = best_of(lambda: torch.mm(a, b), 10)
    return 2 * size**3 / t / 1e9


def bench_training(threads: int, steps: int, batch: int = 256) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    train, _, _ = make_splits((1, 2**20), [batch * steps, 1, 1], 24, seed=0)
    model = CollatzTransformer(
        train.vocab_size,
        d_model=128,
        nhead=4,
        num_layers=2,
        num_decoder_layers=1,
        dim_feedforward=512,
        dropout=0.0,
        max_seq_length=train.max_length,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)
    batches = list(BatchIterator(train, batch, seed=0))

    def step(src: torch.Tensor, tgt: torch.Tensor) -> None:
        logits = model(src, CollatzTransformer.shift_right(tgt))
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    model.train()
    with FlopCounterMode(display=False) as counter:
        step(*batches[0])
    flops_per_step = counter.get_total_flops()
    for src, tgt in batches[:5]:  # warm-up
        step(src, tgt)
    t = time.perf_counter()
    for src, tgt in batches[5:]:
        step(src, tgt)
    elapsed = time.perf_counter() - t
    n_steps = len(batches) - 5
    rate = n_steps * batch / elapsed
    achieved = flops_per_step * n_steps / elapsed / 1e9
    peak = matmul_gflops(threads)
    print(
        f"[train] d_model=128, 2 enc + 1 dec, batch {batch}, {threads} thread(s): {rate:,.0f} samples/s; "
        f"{flops_per_step / batch / 1e6:.1f} MFLOP/sample; {achieved:.1f} GFLOP/s vs fp32 matmul "
        f"{peak:.1f} GFLOP/s -> MFU {achieved / peak:.1%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    bench_data(200_000 if args.quick else 4_000_000)
    for threads in args.threads:
        bench_training(threads, steps=15 if args.quick else 80)


if __name__ == "__main__":
    main()
