"""Record the learning-curve table: every grid configuration trained once to its end, as a trial would.

Each run is built the platform's way (``run_config_for`` from the grid's study file, the
training seed set explicitly) and trained by ``execute``, the function every trial calls, with
its best checkpoint evaluated on the held-out test set. A callback records each epoch's
validation metrics and its wall and process CPU seconds. Runs go to worker processes (one torch
thread each); each finished run is appended to the table at once, so a stopped recording resumes
where it was (runs already in the table are skipped).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strategies.grid import AXES, TABLE, append_runs, grid_config, grid_points, read_table, replicated

from core import Callback, Trainer
from search.trial.lifecycle import run_config_for
from search.trial.training import build_data, execute

#: one configuration in this many gets the extra seeds (144 / 6 = 24 configurations)
REPLICATE_EVERY = 6
EXTRA_SEEDS = (1, 2)


@dataclass
class EpochClock(Callback):
    """Per epoch: the metrics the replay needs and the wall and CPU seconds since the last epoch."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    train_start: tuple[float, float] = (0.0, 0.0)  # wall, CPU
    _wall: float = 0.0
    _cpu: float = 0.0

    def on_train_start(self, trainer: Trainer) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        self.train_start = (self._wall, self._cpu)

    @property
    def last(self) -> tuple[float, float]:
        """Wall and CPU clocks at the end of the last epoch."""
        return self._wall, self._cpu

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.rows.append(
            {
                "epoch": epoch,
                "val_exact_match": metrics["val_exact_match"],
                "val_loss": metrics["val_loss"],
                "val_accuracy": metrics["val_accuracy"],
                "train_loss": metrics["train_loss"],
                "samples_seen": trainer.samples_seen,
                "epoch_wall": wall - self._wall,
                "epoch_cpu": cpu - self._cpu,
                "train_time": metrics.get("epoch_time", 0.0),
                "val_time": metrics.get("val_time", 0.0),
            }
        )
        self._wall, self._cpu = wall, cpu


def planned_runs(seeds_all: tuple[int, ...] = (0,)) -> list[tuple[int, int]]:
    """(config, seed) of every run: each configuration with the first seeds, then the replicates.

    Seed-0 runs come in a fixed shuffled order, so a partial table is an unbiased sample of the grid.
    """
    cfg = grid_config()
    points = grid_points(cfg)
    order = list(range(len(points)))
    random.Random(0).shuffle(order)
    runs = [(c, s) for s in seeds_all for c in order]
    lr_count = len({p["lr"] for p in points})
    extra = replicated(len(points), REPLICATE_EVERY, lr_count)
    runs += [(c, s) for s in EXTRA_SEEDS for c in extra]
    return runs


_DATA: dict[int, Any] = {}  # per worker process: the splits of each base, built once


def train_one(task: tuple[int, int]) -> list[dict[str, Any]]:
    """Train configuration ``config`` with training seed ``seed``; its rows of the table."""
    config, seed = task
    cfg = grid_config()
    point = grid_points(cfg)[config]
    params = {**cfg.search.fixed(), **point}
    run_cfg = run_config_for(cfg, params, 0).replace(seed=seed)
    if run_cfg.base not in _DATA:
        _DATA[run_cfg.base] = build_data(run_cfg)
    load1 = os.getloadavg()[0]
    clock = EpochClock()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="bench-strategies-") as tmp:
        result = execute(run_cfg, Path(tmp), callbacks=[clock], log=None, data=_DATA[run_cfg.base])
    wall1, cpu1 = time.perf_counter(), time.process_time()
    (start_wall, start_cpu), (last_wall, last_cpu) = clock.train_start, clock.last
    run = {
        "config": config,
        **{name: point[name] for name in AXES},
        "seed": seed,
        "epochs_run": len(clock.rows),
        "best_epoch": result.best_epoch,
        "test_exact_match": float(result.test["exact_match"]),
        "test_token_accuracy": float(result.test["token_accuracy"]),
        "setup_cpu": start_cpu - cpu0,
        "setup_wall": start_wall - wall0,
        "tail_cpu": cpu1 - last_cpu,
        "tail_wall": wall1 - last_wall,
        "num_parameters": result.num_parameters,
        "stop_reason": result.stop_reason or "",
        "load1": load1,
    }
    return [{**run, **row} for row in clock.rows]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.nice(0)  # inherits the recorder's niceness (run it under `nice`)


def record(processes: int = 2, limit: int | None = None, table: Path = TABLE) -> int:
    """Train every planned run not in ``table`` yet (at most ``limit``); returns how many ran."""
    done = read_table(table)
    have = set(zip(done["config"].astype(int), done["seed"].astype(int), strict=True)) if len(done) else set()
    todo = [run for run in planned_runs() if run not in have][:limit]
    print(f"{len(have)} runs in {table}; {len(todo)} to record on {processes} processes", flush=True)
    started = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes, initializer=_init_worker) as pool:
        for i, rows in enumerate(pool.imap_unordered(train_one, todo), 1):
            append_runs(rows, table)
            r = rows[0]
            cpu = sum(row["epoch_cpu"] for row in rows) + r["tail_cpu"] + r["setup_cpu"]
            print(
                f"[{i}/{len(todo)}] config {r['config']} seed {r['seed']}: {r['epochs_run']} epochs, "
                f"val {max(row['val_exact_match'] for row in rows):.3f}, test {r['test_exact_match']:.3f}, "
                f"{cpu:.1f} CPU s, load {r['load1']:.1f}; {time.perf_counter() - started:.0f} s so far",
                flush=True,
            )
    return len(todo)
