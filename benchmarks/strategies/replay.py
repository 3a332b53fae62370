"""Replay: real Optuna samplers and pruners run against the recorded table, in simulated time.

A simulated study has ``workers`` workers. Each asks a trial of an in-memory Optuna study (the
platform's sampler and pruner, ``make_sampler``/``make_pruner``, and its own ``suggest``), looks
its configuration up in the table and "trains" it: its epochs end at the simulated times their
recorded costs say. One event queue holds the next epoch end (or the end of the test evaluation)
of every running trial; events are applied in time order, so when a trial reports at time t, or a
worker asks for a trial at time t, the study holds exactly the reports made up to t, none from
the future. A trial is pruned when the pruner says so after a report; otherwise it completes after
its last recorded epoch (16, or fewer when early stopping ended the run) with the value the
platform gives it: the best validation exact match of its epochs. The incumbent is the completed
trial with the best value (ties: the first), and what the curve shows is its held-out test figure.
"""

from __future__ import annotations

import heapq
import multiprocessing as mp
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState
from strategies.grid import AXES, axis_values, grid_points

from search.spec.space import suggest
from search.spec.study_file import StudyConfig
from search.study.samplers import make_pruner, make_sampler


@dataclass(frozen=True)
class Strategy:
    """A sampler and a pruner, as a study file names them (``[study] sampler``, ``[study.pruner] type``)."""

    name: str
    sampler: str
    pruner: str

    def study_config(self, grid: StudyConfig, seed: int) -> StudyConfig:
        """The grid's study file with this sampler, pruner type and seed (other pruner settings kept)."""
        pruner = {**grid.study.pruner.model_dump(mode="json"), "type": self.pruner}
        return grid.with_overrides(sampler=self.sampler, pruner=pruner, seed=seed)


DEFAULT = Strategy("TPE + successive halving", "tpe", "successive_halving")
STRATEGIES = (
    Strategy("random", "random", "none"),
    Strategy("random + successive halving", "random", "successive_halving"),
    Strategy("TPE", "tpe", "none"),
    Strategy("TPE + median", "tpe", "median"),
    DEFAULT,
    Strategy("TPE + hyperband", "tpe", "hyperband"),
    Strategy("GP + successive halving", "gp", "successive_halving"),
)


@dataclass(frozen=True)
class Run:
    """One recorded run: validation exact match per epoch and what each epoch cost, in seconds."""

    values: tuple[float, ...]
    costs: tuple[float, ...]  # per epoch
    setup: float  # before the first epoch
    tail: float  # best checkpoint's test evaluation, after the last epoch
    test: float  # held-out test exact match of the best checkpoint


class RunTable:
    """The table's runs by configuration (the tuple of ``AXES`` values); a few have several seeds."""

    def __init__(self, table: pd.DataFrame, clock: str = "cpu") -> None:
        self.runs: dict[tuple[Any, ...], list[Run]] = {}
        for key, rows in table.sort_values(["seed", "epoch"]).groupby(["seed", *AXES], sort=True):
            first = rows.iloc[0]
            run = Run(
                values=tuple(rows["val_exact_match"].astype(float)),
                costs=tuple(rows[f"epoch_{clock}"].astype(float)),
                setup=float(first[f"setup_{clock}"]),
                tail=float(first[f"tail_{clock}"]),
                test=float(first["test_exact_match"]),
            )
            self.runs.setdefault(_key(dict(zip(AXES, key[1:], strict=True))), []).append(run)

    def best_test(self) -> float:
        """The best mean held-out test exact match of a configuration: the target of the search."""
        return max(float(np.mean([r.test for r in runs])) for runs in self.runs.values())

    def lookup(self, cfg: StudyConfig, params: dict[str, Any], rng: random.Random) -> tuple[Any, Run]:
        """The configuration of a trial's params (snapped to the grid) and one of its runs."""
        point = {name: _snap(axis_values(cfg, name), params[name]) for name in AXES}
        key = _key(point)
        runs = self.runs.get(key)
        if not runs:
            raise KeyError(f"no recorded run of {point}")
        return key, runs[rng.randrange(len(runs))] if len(runs) > 1 else runs[0]


def _key(point: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(round(float(point[name]), 9) for name in AXES)


def _snap(values: list[Any], value: Any) -> Any:
    return min(values, key=lambda v: abs(v - value))


@dataclass
class Running:
    """A trial in flight: its run and the epoch it reaches next."""

    trial: optuna.Trial
    key: tuple[Any, ...]
    run: Run
    started: float
    epoch: int = 0  # epochs reported so far


@dataclass
class Simulation:
    """One simulated study: ``workers`` workers, until ``horizon`` simulated seconds.

    ``overhead``: seconds each trial costs besides training (the platform's MLflow run, the
    artifacts, the Optuna calls). ``now`` is the simulated clock; ``report_times`` maps (trial
    number, epoch) to the simulated time of that report, for the tests to check causality.
    """

    study: optuna.Study
    cfg: StudyConfig
    table: RunTable
    workers: int
    horizon: float
    overhead: float = 0.0
    seed: int = 0
    now: float = 0.0
    report_times: dict[tuple[int, int], float] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    on_ask: Callable[[Simulation, optuna.Trial], None] | None = None

    def run(self) -> Simulation:
        """Run to the horizon; ``curve`` then holds each change of incumbent, ``trials`` each trial."""
        self._rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, Running, bool]] = []
        self._seq = 0
        self._best: float | None = None
        for _ in range(self.workers):
            self._start()
        while self._queue and self._queue[0][0] <= self.horizon:
            self.now, _, running, done = heapq.heappop(self._queue)
            if done:
                self._complete(running)
                self._start()
            elif self._report(running):
                self._start()
        return self

    def _push(self, at: float, running: Running, done: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, running, done))

    def _start(self) -> None:
        """A free worker asks for a trial now; its first epoch ends after the set-up and that epoch."""
        trial = self.study.ask()
        if self.on_ask is not None:
            self.on_ask(self, trial)
        key, run = self.table.lookup(self.cfg, suggest(trial, self.cfg.search), self._rng)
        running = Running(trial, key, run, self.now)
        self._push(self.now + self.overhead + run.setup + run.costs[0], running)

    def _report(self, r: Running) -> bool:
        """Apply one epoch's report; True when the trial ended (pruned) and its worker is free."""
        r.epoch += 1
        step = r.epoch
        r.trial.report(r.run.values[step - 1], step)
        self.report_times[(r.trial.number, step)] = self.now
        if r.trial.should_prune():
            self.study.tell(r.trial, state=TrialState.PRUNED)
            self._record(r, "PRUNED")
            return True
        if step == len(r.run.values):
            self._push(self.now + r.run.tail, r, done=True)
        else:
            self._push(self.now + r.run.costs[step], r)
        return False

    def _complete(self, r: Running) -> None:
        value = max(r.run.values)
        self.study.tell(r.trial, value)
        self._record(r, "COMPLETE")
        if self._best is None or value > self._best:
            self._best = value
            self.curve.append(
                {"time": self.now, "trial": r.trial.number, "val": value, "test": r.run.test, "config": r.key}
            )

    def _record(self, r: Running, state: str) -> None:
        self.trials.append(
            {"trial": r.trial.number, "config": r.key, "state": state, "start": r.started, "end": self.now}
        )


def new_study(cfg: StudyConfig) -> optuna.Study:
    """An in-memory study with the platform's sampler and pruner for ``cfg``."""
    direction = cfg.study.direction or "maximize"
    return optuna.create_study(
        storage=None, sampler=make_sampler(cfg), pruner=make_pruner(cfg), direction=direction
    )


def replay_one(
    strategy: Strategy,
    grid: StudyConfig,
    table: RunTable,
    workers: int,
    seed: int,
    horizon: float,
    overhead: float = 0.0,
) -> Simulation:
    """One replay of ``strategy`` with ``workers`` workers and seed ``seed`` (sampler and replicates)."""
    cfg = strategy.study_config(grid, seed)
    sim = Simulation(new_study(cfg), cfg, table, workers, horizon, overhead, seed)
    return sim.run()


def replay_block(
    args: tuple[Strategy, int, StudyConfig, pd.DataFrame, Sequence[int], float, float, str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every seed of one strategy and worker count: the incumbent curves and one summary row per replay.

    Each replay's curve starts with a row at time 0 with no trial (-1, test 0): no incumbent yet.
    """
    strategy, workers, grid, frame, seeds, horizon, overhead, clock = args
    if strategy.sampler == "gp":
        import torch  # GPSampler's fits: one thread is ~10x less CPU per ask than two on 2 cores

        torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    table = RunTable(frame, clock)
    ids = {_key(p): i for i, p in enumerate(grid_points(grid))}
    curves, summary = [], []
    for seed in seeds:
        started = time.process_time()
        sim = replay_one(strategy, grid, table, workers, seed, horizon, overhead)
        head = {"strategy": strategy.name, "workers": workers, "seed": seed}
        curves.append({**head, "time": 0.0, "trial": -1, "val": 0.0, "test": 0.0, "config": -1})
        curves += [{**head, **c, "config": ids[c["config"]]} for c in sim.curve]
        states = [t["state"] for t in sim.trials]
        summary.append(
            {
                **head,
                "trials": len(sim.trials),
                "complete": states.count("COMPLETE"),
                "pruned": states.count("PRUNED"),
                "distinct_configs": len({t["config"] for t in sim.trials}),
                "replay_cpu_seconds": time.process_time() - started,
            }
        )
    return curves, summary


def replay_all(
    grid: StudyConfig,
    frame: pd.DataFrame,
    strategies: Sequence[Strategy] = STRATEGIES,
    workers_list: Sequence[int] = (1, 2, 8),
    seeds: Sequence[int] = range(20),
    horizon: float = 900.0,
    overhead: float = 0.5,
    clock: str = "cpu",
    processes: int = 1,
    log: Callable[[str], None] = print,
    chunk: int = 5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every strategy x worker count x seed, on ``processes`` processes, ``chunk`` seeds per task:
    (curves, summary)."""
    seeds = list(seeds)
    chunks = [seeds[i : i + chunk] for i in range(0, len(seeds), chunk)]
    # GP first and the most workers first: the longest blocks (GPSampler's fits grow with the
    # trials, ~1,000 per 8-worker replay) start early, so the processes end together.
    order = sorted(
        ((s, w) for s in strategies for w in workers_list), key=lambda sw: (sw[0].sampler != "gp", -sw[1])
    )
    blocks = [(s, w, grid, frame, c, horizon, overhead, clock) for s, w in order for c in chunks]
    curves: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    started = time.perf_counter()
    with mp.get_context("spawn").Pool(processes) as pool:
        for c, s in pool.imap_unordered(replay_block, blocks):
            curves += c
            summary += s
            cpu = sum(row["replay_cpu_seconds"] for row in s)
            log(
                f"{s[0]['strategy']}, {s[0]['workers']} workers, seeds {s[0]['seed']}-{s[-1]['seed']}: "
                f"{len(s)} replays, "
                f"{np.mean([row['trials'] for row in s]):.0f} trials each, {cpu:.0f} CPU s "
                f"({time.perf_counter() - started:.0f} s so far)"
            )
    return pd.DataFrame(curves), pd.DataFrame(summary)
