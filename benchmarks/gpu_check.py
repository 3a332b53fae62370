"""GPU check of the paper-scale model (run by benchmarks/gpu_check.sh; prepared for one H100/H200).

1. bf16 matmul rate of this GPU (the ceiling the model is measured against);
2. training throughput of the paper model (d_model 512, 8 heads, 4 encoder + 1 decoder layers,
   base 24, odd n < 10^12, batch 512, bf16 autocast): samples/s, FLOP/s and its share of (1);
3. whether the data pipeline keeps the GPU busy: time to produce a batch on the CPU against the
   time of a training step on the GPU;
4. a ``--seconds`` training run of that model with the recipe of studies/paper.toml, printing its
   held-out test exact match.

Run: .venv/bin/python benchmarks/gpu_check.py [--seconds 300] [--quick] [--device cuda]
(``--quick --device cpu`` is a smoke run of the script itself on a CPU.)
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from core import BatchIterator, CollatzTransformer, make_splits
from search.spec.runconfig import RunConfig
from search.trial.training import execute

PAPER = {"d_model": 512, "nhead": 8, "num_layers": 4, "num_decoder_layers": 1, "base": 24}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_tflops(device: torch.device, size: int, dtype: torch.dtype) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    sync(device)
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - t) / 1e12


def throughput(device: torch.device, batch: int, steps: int, train_size: int) -> tuple[float, float, float]:
    """(samples/s, achieved TFLOP/s, seconds per batch spent producing it on the CPU)."""
    train, _ = make_splits((1, 10**12), [train_size, 1], PAPER["base"], seed=0)
    torch.manual_seed(0)
    model = CollatzTransformer(
        train.vocab_size,
        d_model=PAPER["d_model"],
        nhead=PAPER["nhead"],
        num_layers=PAPER["num_layers"],
        num_decoder_layers=PAPER["num_decoder_layers"],
        dropout=0.0,
        max_seq_length=train.max_length,
    ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=0)
    it = BatchIterator(train, batch, seed=0)

    def step(src: torch.Tensor, tgt: torch.Tensor) -> None:
        src, tgt = src.to(device, non_blocking=True), tgt.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(src, CollatzTransformer.shift_right(tgt))
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    t = time.perf_counter()
    batches = [b for _, b in zip(range(steps + 5), it, strict=False)]
    produce = (time.perf_counter() - t) / len(batches)
    with FlopCounterMode(display=False) as counter:
        step(*batches[0])
    flops = counter.get_total_flops()
    for b in batches[1:5]:
        step(*b)
    sync(device)
    t = time.perf_counter()
    for b in batches[5:]:
        step(*b)
    sync(device)
    elapsed = time.perf_counter() - t
    return steps * batch / elapsed, flops * steps / elapsed / 1e12, produce


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="budget of the training run")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script, not the GPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}", flush=True)

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_tflops(device, 512 if args.quick else 8192, dtype)
    print(f"[matmul] {str(dtype).split('.')[-1]} {peak:.1f} TFLOP/s", flush=True)

    batch, steps = (32, 5) if args.quick else (512, 60)
    rate, achieved, produce = throughput(device, batch, steps, 20_000 if args.quick else 2_000_000)
    step_time = batch / rate
    print(
        f"[train] paper model, batch {batch}, bf16 autocast: {rate:,.0f} samples/s, {achieved:.1f} TFLOP/s "
        f"= {achieved / peak:.1%} of the matmul rate",
        flush=True,
    )
    print(
        f"[data] a batch takes {produce * 1e3:.2f} ms on the CPU vs {step_time * 1e3:.2f} ms per GPU step: "
        f"the pipeline {'keeps up' if produce < step_time else 'starves the GPU'} "
        f"(GPU idle at most {produce / (produce + step_time):.0%} without overlap)",
        flush=True,
    )

    cfg = RunConfig(
        **PAPER,
        data_range=(1, 10**12),
        train_size=20_000 if args.quick else 20_000_000,
        val_size=500 if args.quick else 2_000,
        test_size=500 if args.quick else 10_000,
        lr=6e-4,
        batch_size=batch,
        eval_batch_size=batch * 4,
        epochs=10_000,
        samples_per_epoch=2_000 if args.quick else 1_000_000,
        scheduler="warmup_cosine",
        warmup=0.05,
        time_budget=args.seconds,
        device=args.device,
        precision="bf16",
    )
    start = time.perf_counter()
    result = execute(cfg, checkpoint_dir=None, log=None)
    print(
        f"[learn] {args.seconds:.0f}s of training ({result.samples_seen:,} samples, "
        f"{result.samples_seen / result.train_seconds:,.0f} samples/s incl. validation): held-out test "
        f"exact match {result.test['exact_match']:.4f} on {result.test['num_samples']:,} inputs "
        f"({time.perf_counter() - start:.0f}s with data building and evaluation)",
        flush=True,
    )


if __name__ == "__main__":
    main()
