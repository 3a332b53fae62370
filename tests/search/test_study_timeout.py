"""A study's timeout: by default it only stops new trials (Optuna's meaning); with
``timeout_stops_trials`` a search trial still training then stops there, PRUNED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from optuna.trial import TrialState

TIMEOUT = 4  # seconds from the launch's start: the first trial starts well inside it (~0.2 s)
EPOCHS = 36  # of 1500 samples, 0.3-0.45 s each on one thread: a trial of 11-16 s
SLACK = 4  # past the timeout: one batch, a validation of 64 inputs, recording the trial and study


def _launch(tmp_path: Path, hpo: Any, stops: bool) -> Any:
    extra = f"timeout = {TIMEOUT}" + ("\ntimeout_stops_trials = true" if stops else "")
    text = hpo.study_toml(
        "cut", n_trials=2, epochs=EPOCHS, train_size=1500, base="24", d_model="32", nhead="4",
        num_layers="2", pruner='type = "none"', study_extra=extra,
    )  # fmt: skip
    hpo.write_study(tmp_path, text, "cut.toml")
    return hpo.check(hpo.run_cli(["launch", "cut.toml"], tmp_path))


@pytest.mark.parametrize("stops", [True, False], ids=["timeout_stops_trials", "default"])
def test_a_trial_straddling_the_timeout(tmp_path: Path, hpo: Any, stops: bool) -> None:
    proc = _launch(tmp_path, hpo, stops)
    store = hpo.Store(tmp_path)
    (trial,) = store.study("cut").trials  # the timeout ended the search: no second trial
    trial_seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    (parent,) = store.parent_runs("cut")
    launch_seconds = (parent.info.end_time - parent.info.start_time) / 1000  # from before the deadline
    reported = len(trial.intermediate_values)
    if not stops:  # Optuna's meaning: the trial trains to its end, past the timeout
        assert trial.state == TrialState.COMPLETE, proc.stdout
        assert reported == EPOCHS and trial_seconds > TIMEOUT
        return
    reason = f"stopped at the study's timeout ({TIMEOUT} s)"
    assert trial.state == TrialState.PRUNED, proc.stdout
    assert trial.user_attrs["stop_reason"] == reason and f"trial 0 PRUNED ({reason})" in proc.stdout
    assert launch_seconds < TIMEOUT + SLACK and trial_seconds < TIMEOUT + SLACK, proc.stdout
    assert 0 < reported < EPOCHS  # its reports before the timeout are kept
    # MLflow has them too, and the partial epoch the timeout cut (when it cut one: not reported)
    logged = store.client().get_metric_history(trial.user_attrs["mlflow_run_id"], "val_loss")
    assert len(logged) - reported in (0, 1)
    assert store.run_of(trial).info.status == "KILLED"
