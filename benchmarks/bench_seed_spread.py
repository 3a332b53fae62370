"""Seed spread (not part of the test suite): how much of a held-out figure is the training seed?

The default config and the configuration the cpu_hour study found (both read from
benchmarks/results/time_to_accuracy.json, where bench_time_to_accuracy.py recorded them), each
trained with SEEDS training seeds on one thread, two runs at a time (one of each config), same data
split, for one budget: ``--samples`` (training samples: the same work whatever else runs on the
machine; the found config's schedule is planned over it) or ``--seconds`` (wall clock: needs the
machine to itself). Prints and writes, per config:
mean, standard deviation, min–max and the 95 % t-interval of the mean of held-out exact match, each
run's Wilson interval on the test set, and whether the difference of the means exceeds both the
seed spread and the test-set intervals.

Run: .venv/bin/python benchmarks/bench_seed_spread.py [--samples 500000 | --seconds 300] [--seeds 5]
        [--out benchmarks/results/seed_spread.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

from search.spec.runconfig import RunConfig
from search.stats import overlap, seed_spread, wilson

RESULTS = Path(__file__).parent / "results"
LABELS = ("default config", "found config")


def configs(source: Path) -> dict[str, RunConfig]:
    """The two RunConfigs that bench_time_to_accuracy.py trained for 15 minutes."""
    runs = json.loads(source.read_text())["runs"]
    found = {}
    for run in runs:
        for label in LABELS:
            if run["label"].startswith(label):
                found[label] = RunConfig.from_dict(run["config"])
    missing = [label for label in LABELS if label not in found]
    if missing:
        raise SystemExit(f"{source}: no run labelled {missing}")
    return found


def epoch_samples(cfg: RunConfig) -> int:
    """Training samples in one of ``cfg``'s epochs (no ``samples_per_epoch``: a full pass)."""
    return cfg.samples_per_epoch or cfg.train_size


def budgeted(cfg: RunConfig, samples: int | None, seconds: float | None) -> RunConfig:
    """``cfg`` trained for ``samples`` training samples (whole epochs) or ``seconds`` of training."""
    if samples is None:
        return cfg.replace(time_budget=seconds)
    return cfg.replace(time_budget=None, epochs=max(1, round(samples / epoch_samples(cfg))))


def train_one(job: tuple[str, dict[str, Any], int]) -> dict[str, Any]:
    """One run: ``config`` with training seed ``seed`` on one thread."""
    import tempfile

    from search.trial.training import execute

    label, config, seed = job
    cfg = RunConfig.from_dict(config).replace(seed=seed, threads=1, init_from=None)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seed-spread-") as tmp:
        result = execute(cfg, checkpoint_dir=tmp, log=None)
    return {
        "label": label,
        "seed": seed,
        "test_exact_match": result.test["exact_match"],
        "test_size": int(result.test["num_samples"]),
        "samples_seen": result.samples_seen,
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_at_start": round(load, 2),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per config: the seed spread and each run's test interval; then the comparison."""
    out: dict[str, Any] = {}
    for label in LABELS:
        mine = [r for r in runs if r["label"] == label]
        spread = seed_spread([r["test_exact_match"] for r in mine])
        out[label] = {
            "mean": spread.mean,
            "std": spread.std,
            "min": min(spread.values),
            "max": max(spread.values),
            "mean_interval": [spread.low, spread.high],
            "text": str(spread),
            "runs": [
                {**r, "interval": wilson(r["test_exact_match"], r["test_size"]).as_dict()} for r in mine
            ],
        }
    a, b = (out[label] for label in LABELS)
    worst_test = max(
        (wilson(r["test_exact_match"], r["test_size"]) for r in a["runs"] + b["runs"]),
        key=lambda i: i.high - i.low,
    )
    seeds_apart = (
        a["mean_interval"][1] < b["mean_interval"][0] or b["mean_interval"][1] < a["mean_interval"][0]
    )
    out["difference"] = {
        "found_minus_default": b["mean"] - a["mean"],
        "exceeds_seed_spread": seeds_apart,
        "exceeds_test_interval": not overlap(
            wilson(a["mean"], worst_test.n), wilson(b["mean"], worst_test.n)
        ),
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--samples", type=int, default=500_000, help="training samples of each run")
    budget.add_argument("--seconds", type=float, help="wall-clock training budget of each run instead")
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per config")
    parser.add_argument("--source", type=Path, default=RESULTS / "time_to_accuracy.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "seed_spread.json")
    args = parser.parse_args()
    cfgs = configs(args.source)
    samples = None if args.seconds is not None else args.samples
    jobs = [
        (label, budgeted(cfgs[label], samples, args.seconds).to_dict(), seed)
        for seed in range(args.seeds)
        for label in LABELS
    ]
    started = time.time()
    with mp.get_context("spawn").Pool(2) as pool:
        runs = []
        for run in pool.imap(train_one, jobs):
            runs.append(run)
            print(
                f"{run['label']} seed {run['seed']}: {run['test_exact_match']:.2%} held-out "
                f"({run['samples_seen']:,} samples, load {run['load_at_start']})",
                flush=True,
            )
    result = {
        "budget": f"{args.seconds:g} s" if samples is None else f"{samples:,} samples",
        "seeds": args.seeds,
        "wall_seconds": round(time.time() - started),
        "command": "benchmarks/bench_seed_spread.py "
        + (f"--seconds {args.seconds:g}" if samples is None else f"--samples {samples}")
        + f" --seeds {args.seeds}",
        **summarize(runs),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for label in LABELS:
        print(f"{label}: {result[label]['text']}")
    diff = result["difference"]
    print(
        f"found − default: {100 * diff['found_minus_default']:+.2f} points; beyond the seed spread: "
        f"{diff['exceeds_seed_spread']}; beyond the test-set interval: {diff['exceeds_test_interval']}"
    )
    print(f"written {args.out} ({result['wall_seconds']} s)")


if __name__ == "__main__":
    main()
