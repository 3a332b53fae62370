"""Validation of the replay: one real study of the default strategy on the grid, through the platform.

``launch`` runs benchmarks/strategies_grid.toml (TPE + successive halving) in a fresh temporary
store with ``workers`` processes for ``seconds``; its best-so-far curve (the incumbent by
validation value, its held-out test exact match, against wall seconds since its first trial
started) is then drawn on the replay's band. Each trial's wall duration less its compute seconds
measures the platform's per-trial overhead, the replay's ``--overhead``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import optuna
import pandas as pd
from bench_time_to_accuracy import study_curve
from optuna.trial import TrialState
from strategies.grid import GRID_FILE, grid_config

from search import keys
from search.locations import resolve_locations
from search.study.launch import launch


def trials_frame(study: optuna.Study, started: float) -> pd.DataFrame:
    """Every trial of the real study: params, state, times since ``started``, compute, test figure."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.datetime_start is None:
            continue
        end = t.datetime_complete.timestamp() - started if t.datetime_complete else None
        begin = t.datetime_start.timestamp() - started
        rows.append(
            {
                "trial": t.number,
                **keys.trial_params(t),
                "state": t.state.name,
                "epochs": len(t.intermediate_values),
                "value": t.value,
                "test": keys.test_exact_match(t),
                "start": begin,
                "end": end,
                "compute_seconds": keys.compute_seconds(t),
                "overhead": None if end is None else end - begin - keys.compute_seconds(t),
            }
        )
    return pd.DataFrame(rows)


def validate(
    seconds: float, workers: int, store: Path | None = None, study_file: Path = GRID_FILE
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the real study; (its incumbent curve: time, test, trial; its trials)."""
    cfg = grid_config(study_file).with_overrides(timeout=seconds)
    with tempfile.TemporaryDirectory(prefix="bench-strategies-validate-") as tmp:
        loc = resolve_locations(cwd=store or tmp)
        launch(cfg, loc, workers=workers, log=print)
        study = optuna.load_study(study_name=cfg.study.name, storage=loc.storage)
        started = min(
            t.datetime_start.timestamp() for t in study.get_trials(deepcopy=False) if t.datetime_start
        )
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        curve = pd.DataFrame(
            study_curve(study, started) if done else [],
            columns=["seconds", "trial", "final", "test_exact_match"],
        )
        trials = trials_frame(study, started)
    curve = curve.rename(columns={"seconds": "time", "test_exact_match": "test"})[["time", "test", "trial"]]
    return curve, trials
