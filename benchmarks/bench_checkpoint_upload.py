"""Checkpoint-upload benchmark (not part of the test suite): what uploading a trial's checkpoint costs.

A running trial uploads its ``last.pt`` (and ``best.pt`` when it changed) to its MLflow run every
``[training] checkpoint_every`` (``search/trial/checkpoints.py``), so that a retried trial resumes
from it. This times one upload, as a trial makes it (``Tracker.log_artifacts`` through the study's
resilient client), of a checkpoint as the Trainer writes it (model, AdamW state after a step,
history) for the largest model of three shipped studies, to the embedded store (sqlite + local
artifact folder) and to an ``mlflow server`` with served artifacts on this machine. The share of
trial time is (seconds per upload) / (seconds between uploads).

Run: .venv/bin/python benchmarks/bench_checkpoint_upload.py [--repeat 10] [--sizes quick cpu_hour paper]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_services import MlflowServer  # noqa: E402

from core import CollatzTransformer, ModelConfig, save_checkpoint  # noqa: E402
from search.tracking.runs import Tracker  # noqa: E402

# the largest model each study can sample ([search]), and its vocabulary (base + specials)
SIZES = {
    "quick": {"d_model": 64, "nhead": 4, "num_layers": 2, "num_decoder_layers": 1, "base": 32},
    "cpu_hour": {
        "d_model": 160,
        "nhead": 8,
        "num_layers": 3,
        "num_decoder_layers": 1,
        "dim_feedforward": 512,
        "base": 24,
    },
    "paper": {"d_model": 512, "nhead": 8, "num_layers": 4, "num_decoder_layers": 1, "base": 32},
}
INTERVALS = (30.0, 60.0, 120.0, 300.0)  # seconds between uploads to cost


def checkpoint(folder: Path, size: str) -> Path:
    """A ``last.pt`` of the study's largest model, as ``Trainer.save`` writes it after an epoch."""
    spec = dict(SIZES[size])
    base = spec.pop("base")
    model = CollatzTransformer.from_config(ModelConfig(vocab_size=base + 4, max_seq_length=64, **spec))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()  # its state: two moments per parameter
    payload = {
        "model_config": model.config.to_dict(),
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "scheduler_state": None,
        "epoch": 3,
        "global_step": 1000,
        "samples_seen": 100_000,
        "elapsed_seconds": 60.0,
        "best_value": 0.5,
        "best_epoch": 3,
        "history": {"train_loss": [1.0, 0.8, 0.6]},
        "rng_state": torch.get_rng_state(),
    }
    return save_checkpoint(folder / size / "last.pt", payload)


def per_upload(tracker: Tracker, path: Path, repeat: int) -> float:
    """Median seconds of one upload of ``path`` to a run's ``checkpoints/`` (overwriting it)."""
    run_id = tracker.start_run("bench", {})
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        tracker.log_artifacts(run_id, [path], "checkpoints")
        times.append(time.perf_counter() - start)
    tracker.end_run(run_id)
    return statistics.median(times)


def main() -> None:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=list(SIZES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        work = Path(tmp)
        files = {size: checkpoint(work / "ckpt", size) for size in args.sizes}
        embedded = Tracker(f"sqlite:///{work / 'mlflow.db'}", "bench", str(work / "artifacts"))
        server = MlflowServer(f"sqlite:///{work / 'server.db'}", work, workers=1)
        with server.running():
            served = Tracker(server.url, "bench")
            rows = [
                (
                    size,
                    path.stat().st_size,
                    per_upload(embedded, path, args.repeat),
                    per_upload(served, path, args.repeat),
                )
                for size, path in files.items()
            ]
    shown = ", ".join(f"every {s / 60:g} min" for s in INTERVALS)
    print(f"| study (largest model) | checkpoint | embedded store | mlflow server | share ({shown}) |")
    print("|---|---:|---:|---:|---|")
    for size, nbytes, local, remote in rows:
        shares = " / ".join(f"{remote / s * 100:.2f} %" for s in INTERVALS)
        print(
            f"| {size} | {nbytes / 2**20:.1f} MB | {local * 1e3:.0f} ms | {remote * 1e3:.0f} ms | {shares} |"
        )


if __name__ == "__main__":
    main()
