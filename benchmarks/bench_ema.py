"""The weight average, paired (not part of the test suite): does the EMA beat the weights it averages?

The average does not touch training, so one run gives both sides on the same trajectory: each
epoch validates the average (``val_exact_match``) and the trained weights
(``raw_val_exact_match``) on the same inputs, with no seed between them. Trains the found
configuration of a time-to-accuracy run (``--source``, its "found config") with ``--decay`` for
``--samples`` training samples, its schedule planned over them; prints both curves with their
Wilson intervals, the held-out figure of the average's best checkpoint, and writes the JSON.

Run: .venv/bin/python benchmarks/bench_ema.py [--samples 1000000] [--decay 0.999] [--threads 2]
         [--source benchmarks/results/cpu_hour_long/seed2/time_to_accuracy.json] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_seed_spread import RESULTS, budgeted, configs, epoch_samples

from core.callbacks import Callback
from search.stats import wilson
from search.trial.training import execute


class Curves(Callback):
    """Each epoch's validation of the average and of the trained weights (the latter is not kept
    in the trainer's history: it reaches the callbacks, as it reaches MLflow)."""

    def __init__(self) -> None:
        self.average: list[float] = []
        self.trained: list[float] = []

    def on_epoch_end(self, trainer: object, epoch: int, metrics: dict[str, float]) -> None:
        self.average.append(metrics["val_exact_match"])
        self.trained.append(metrics["raw_val_exact_match"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="training samples (whole epochs)")
    parser.add_argument("--decay", type=float, default=0.999)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--source", type=Path, default=RESULTS / "cpu_hour_long/seed2/time_to_accuracy.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "ema_warmup/paired.json")
    args = parser.parse_args()
    found = budgeted(configs(args.source)["found config"], args.samples, None)
    cfg = found.replace(ema_decay=args.decay, threads=args.threads, early_stopping_patience=None)
    per_epoch = epoch_samples(cfg)
    started = time.perf_counter()
    curves = Curves()
    result = execute(cfg, checkpoint_dir=None, callbacks=[curves], log=None)
    n = cfg.val_size
    print(f"{'samples':>9} | {'average (val)':>24} | {'trained weights (val)':>24}")
    for epoch, (avg, raw) in enumerate(zip(curves.average, curves.trained, strict=True), 1):
        print(f"{epoch * per_epoch:9,} | {wilson(avg, n)!s:>24} | {wilson(raw, n)!s:>24}")
    test = wilson(result.test["exact_match"], int(result.test["num_samples"]))
    print(f"held-out, the average's best checkpoint (epoch {result.best_epoch}): {test}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "config": cfg.to_dict(),
                "val_size": n,
                "average": curves.average,
                "trained": curves.trained,
                "test_exact_match": result.test["exact_match"],
                "best_epoch": result.best_epoch,
                "wall_seconds": round(time.perf_counter() - started),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
