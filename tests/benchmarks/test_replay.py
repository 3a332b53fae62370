"""The strategy benchmark's replay (benchmarks/strategies/replay.py): causal, and it finds a clear winner.

Hand-made tables, no training: a replay must never show a sampler or pruner a report from its
future, and with enough budget it must find a configuration that dominates all others.
"""

from __future__ import annotations

from typing import Any

import optuna
import pandas as pd
import pytest
from strategies.grid import AXES, COLUMNS, grid_points
from strategies.replay import STRATEGIES, RunTable, Simulation, Strategy, replay_one

from search.spec.study_file import parse_study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_file(num_layers: Any, base: Any = 16, d_model: Any = 32, lr: Any = 1e-3) -> dict[str, Any]:
    return {
        "study": {"name": "t", "sampler": "random", "pruner": {"type": "median", "n_startup_trials": 0}},
        "data": {"range": [1, 1024], "train_size": 100, "val_size": 20, "test_size": 20},
        "training": {"epochs": 4},
        "search": {"base": base, "d_model": d_model, "nhead": 2, "num_layers": num_layers, "lr": lr},
    }


def run_rows(point: dict[str, Any], values: list[float], costs: list[float], test: float, seed: int = 0):
    """A run's rows in the table's long format (columns the replay does not read left empty)."""
    run = dict.fromkeys(COLUMNS)
    run.update(point, seed=seed, test_exact_match=test, setup_cpu=0.0, tail_cpu=0.0)
    return [
        {**run, "epoch": e, "val_exact_match": v, "epoch_cpu": c}
        for e, (v, c) in enumerate(zip(values, costs, strict=True), 1)
    ]


def table(rows: list[dict[str, Any]]) -> RunTable:
    return RunTable(pd.DataFrame(rows, columns=list(COLUMNS)))


def visible_reports(study: optuna.Study, sim: Simulation, own: int | None = None) -> int:
    """Check that every report ``study`` holds was made at or before ``sim.now``; count those of other
    trials than ``own``."""
    seen = 0
    for t in study.get_trials(deepcopy=False):
        for step in t.intermediate_values:
            assert sim.report_times[(t.number, step)] <= sim.now, (t.number, step, sim.now)
            seen += t.number != own
    return seen


class Spy(optuna.pruners.BasePruner):
    """A pruner that checks, at every decision, that no visible report lies in its future."""

    def __init__(self, inner: optuna.pruners.BasePruner | None = None) -> None:
        self.inner = inner or optuna.pruners.MedianPruner(n_startup_trials=0, n_warmup_steps=0)
        self.sim: Simulation | None = None
        self.decisions: list[tuple[float, int, int]] = []  # (time, trial, reports of other trials seen)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        assert self.sim is not None
        self.decisions.append((self.sim.now, trial.number, visible_reports(study, self.sim, trial.number)))
        return self.inner.prune(study, trial)


class SpySampler(optuna.samplers.RandomSampler):
    """A random sampler that checks, whenever a trial is asked, that it sees only the past."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.sim: Simulation | None = None
        self.asked: list[tuple[float, int]] = []  # (time, reports visible)

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        assert self.sim is not None
        self.asked.append((self.sim.now, visible_reports(study, self.sim)))
        super().before_trial(study, trial)


def test_two_interleaved_trials_see_only_past_reports() -> None:
    """Trial 0 (epochs end at 1, 4, 9, 16 s) and trial 1 (at 2, 3, 6, 10 s) interleave on 2 workers:
    at each report a pruner sees exactly the other trial's reports made so far, never a later one."""
    cfg = parse_study(study_file({"choices": [1, 2]}))
    # trial 0 is the better one at each step, so the median pruner (2 trials) prunes no one
    slow = run_rows({**cfg.search.fixed(), "num_layers": 1}, [0.5, 0.6, 0.7, 0.8], [1, 3, 5, 7], 0.8)
    fast = run_rows({**cfg.search.fixed(), "num_layers": 2}, [0.1, 0.2, 0.3, 0.4], [2, 1, 3, 4], 0.4)
    study = optuna.create_study(direction="maximize", sampler=(asks := SpySampler()), pruner=(spy := Spy()))
    for layers in (1, 2):
        study.enqueue_trial({"num_layers": layers})
    sim = Simulation(study, cfg, table(slow + fast), workers=2, horizon=10.5)
    spy.sim = asks.sim = sim
    sim.run()
    times = [(t, n) for t, n, _ in spy.decisions]
    assert times == [(1, 0), (2, 1), (3, 1), (4, 0), (6, 1), (9, 0), (10, 1)]
    # reports of the other trial visible at each decision: exactly those made before it
    expected_seen = {(1, 0): 0, (2, 1): 1, (3, 1): 1, (4, 0): 2, (6, 1): 2, (9, 0): 3, (10, 1): 3}
    assert {(t, n): s for t, n, s in spy.decisions} == expected_seen
    assert [sim.report_times[(0, e)] for e in range(1, 4)] == [1, 4, 9]
    # both start at 0 s seeing nothing; trial 1 ends at 10 s and its worker asks again, seeing the
    # 7 reports made by then (trial 0's fourth, at 16 s, is not made yet)
    assert asks.asked == [(0.0, 0), (0.0, 0), (10.0, 7)]
    assert [c["trial"] for c in sim.curve] == [1]  # trial 0 (16 s) is still running at the horizon
    assert [t["state"] for t in sim.trials] == ["COMPLETE"]


def test_reports_are_applied_in_time_order() -> None:
    """8 workers, many trials, successive halving: the clock never goes back and every ask and every
    pruning decision sees only reports made by then."""
    cfg = parse_study(study_file({"choices": [1, 2]}, base={"choices": [16, 24]}))
    rows = []
    for i, point in enumerate(grid_points(cfg)):
        point = {**cfg.search.fixed(), **point}
        rows += run_rows(point, [0.1 * i, 0.2, 0.3, 0.4], [1 + i, 2, 0.5, 3 - i / 2], 0.1 * i)
    halving = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    study = optuna.create_study(
        direction="maximize", sampler=(asks := SpySampler()), pruner=(spy := Spy(halving))
    )
    sim = Simulation(study, cfg, table(rows), workers=8, horizon=60.0)
    spy.sim = asks.sim = sim
    sim.run()
    clock = [now for now, _ in asks.asked] + [now for now, _, _ in spy.decisions]
    assert [now for now, _ in asks.asked] == sorted(now for now, _ in asks.asked)
    assert [now for now, _, _ in spy.decisions] == sorted(now for now, _, _ in spy.decisions)
    assert len(asks.asked) > 20 and max(clock) <= 60.0
    assert {t["state"] for t in sim.trials} == {"COMPLETE", "PRUNED"}


def dominated_grid(seed: int = 0) -> tuple[Any, RunTable, tuple[Any, ...]]:
    """16 configurations; one learns to 0.9 on validation and test, every other stays below 0.5."""
    cfg = parse_study(
        study_file(
            {"choices": [1, 2]},
            base={"choices": [16, 24]},
            d_model={"choices": [32, 64]},
            lr={"low": 1e-3, "high": 2e-3, "step": 1e-3},
        )
    )
    points = grid_points(cfg)
    star = points[11]
    rows = []
    for i, point in enumerate(points):
        full = {**cfg.search.fixed(), **point}
        if point == star:
            rows += run_rows(full, [0.3, 0.6, 0.8, 0.9], [2.0] * 4, 0.9)
        else:
            top = 0.2 + 0.02 * i
            rows += run_rows(full, [top / 4, top / 2, top, top], [2.0] * 4, top)
    return cfg, table(rows), tuple(round(float(star[a]), 9) for a in AXES)


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s.sampler != "gp"], ids=lambda s: s.name)
def test_replay_finds_the_dominating_configuration(strategy: Strategy) -> None:
    cfg, runs, star = dominated_grid()
    sim = replay_one(strategy, cfg, runs, workers=2, seed=3, horizon=600.0)
    assert sim.curve[-1]["config"] == star
    assert sim.curve[-1]["test"] == pytest.approx(0.9)
    assert runs.best_test() == pytest.approx(0.9)
