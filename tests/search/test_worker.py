"""An interrupt is recorded once, wherever it hits a worker's trial: inside the trial's body (which
makes it the outcome) or in the worker's own steps around it (its guard): FAIL "interrupted", the
MLflow run FAILED, the line printed, and the worker stops with KeyboardInterrupt."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

from search import keys
from search.locations import Locations
from search.spec.study_file import parse_study
from search.study.opening import OpenStudy, open_study
from search.study.workers import Worker
from search.trial.body import TrialEnv, TrialOutcome, interrupted_outcome

pytestmark = pytest.mark.usefixtures("signals_restored")


def _opened(tmp_path: Path, hpo: Any) -> OpenStudy:
    cfg = parse_study(tomllib.loads(hpo.study_toml("w", n_trials=1)))
    locations = Locations(f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db", None, None)
    return open_study(cfg, locations, 0, log=lambda _m: None)


def _started(trial: Any, env: TrialEnv) -> None:
    """What a body does first: its MLflow run, recorded on the trial."""
    run_id = env.tracker.start_trial_run(trial.number, None, {"x": 1}, {"x": 1})
    keys.set_run_id(trial, run_id)


def _seen_by_the_body(trial: Any, env: TrialEnv, tags: Mapping[str, str]) -> TrialOutcome:
    _started(trial, env)
    env.tracker.end_trial_run(keys.run_id(trial), "FAIL", "interrupted")  # as run_trial's record does
    return interrupted_outcome()


def _around_the_body(trial: Any, env: TrialEnv, tags: Mapping[str, str]) -> TrialOutcome:
    _started(trial, env)
    raise KeyboardInterrupt  # as if it hit the worker before the body could see it


@pytest.mark.parametrize("body", [_seen_by_the_body, _around_the_body])
def test_an_interrupted_trial_is_recorded_once_and_stops_the_worker(
    tmp_path: Path, hpo: Any, body: Any
) -> None:
    opened = _opened(tmp_path, hpo)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        Worker(opened, log=lines.append, trial_body=body).run()
    (trial,) = opened.study.get_trials(deepcopy=False)
    assert trial.state == TrialState.FAIL
    assert keys.fail_reason(trial) == "interrupted"
    assert opened.tracker.status(keys.run_id(trial)) == "FAILED"
    ends = [line for line in lines if line.startswith("trial 0 FAIL")]
    assert len(ends) == 1 and ends[0].startswith("trial 0 FAIL (interrupted)"), lines
