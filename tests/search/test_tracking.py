"""Study → MLflow, end to end: a launched study and its MLflow experiment agree trial by trial."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from optuna.trial import TrialState

from search.tracking import names

# Fixtures (tests/search/conftest.py): ``tiny_study`` is studies/tiny.toml launched once, a
# ``FinishedStudy``; ``hpo`` holds the helpers (run_cli, Store, study_toml, ...).
FinishedStudy = Any

STATUS_OF_STATE = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
SAMPLED = ("base", "d_model", "nhead", "num_layers", "lr")


def _trials(done: FinishedStudy) -> list:
    return done.store.study(done.name).get_trials(deepcopy=False)


def test_launch_exits_0_and_runs_every_trial(tiny_study: FinishedStudy) -> None:
    trials = _trials(tiny_study)
    counted = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(counted) == tiny_study.cfg.study.n_trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert not [t for t in trials if t.state == TrialState.FAIL], tiny_study.proc.stdout
    assert any(t.state == TrialState.COMPLETE for t in trials)
    assert f"study '{tiny_study.name}'" in tiny_study.proc.stdout


def test_one_experiment_named_after_the_study(tiny_study: FinishedStudy) -> None:
    client = tiny_study.store.client()
    names = [e.name for e in client.search_experiments()]
    assert names.count(tiny_study.name) == 1
    assert set(names) <= {tiny_study.name, "Default"}


def test_one_parent_run_and_one_child_run_per_trial(tiny_study: FinishedStudy) -> None:
    store, name = tiny_study.store, tiny_study.name
    parents = store.parent_runs(name)
    assert len(parents) == 1
    parent_id = parents[0].info.run_id
    assert store.study(name).user_attrs["mlflow_parent_run_id"] == parent_id
    children = store.child_runs(name)
    trials = _trials(tiny_study)
    assert len(children) == len(trials)
    assert sorted(r.info.run_name for r in children) == sorted(f"trial-{t.number}" for t in trials)
    for run in children:
        assert run.data.tags.get("mlflow.parentRunId") == parent_id, run.info.run_name


def test_child_run_tags_name_and_id(tiny_study: FinishedStudy) -> None:
    store = tiny_study.store
    for t in _trials(tiny_study):
        run = store.run_of(t)
        assert run.info.run_name == f"trial-{t.number}"
        tags = run.data.tags
        assert tags["optuna.study_name"] == tiny_study.name
        assert tags["optuna.trial_number"] == str(t.number)
        assert tags["optuna.trial_state"] == t.state.name
        assert t.user_attrs["mlflow_run_id"] == run.info.run_id


def test_params_are_the_sampled_values(tiny_study: FinishedStudy) -> None:
    store = tiny_study.store
    for t in _trials(tiny_study):
        params = store.run_of(t).data.params
        sampled = t.user_attrs["params"]
        for name in SAMPLED:
            assert name in params, (t.number, name)
            expected = sampled[name]
            got = float(params[name]) if isinstance(expected, float) else int(params[name])
            assert got == expected, (t.number, name, params[name], expected)
        # what Optuna sampled under its own names is what the trial used
        for key, value in t.params.items():
            real = "nhead" if key.startswith("nhead") else key
            assert sampled[real] == value, (t.number, key)


def test_nhead_always_divides_d_model(tiny_study: FinishedStudy) -> None:
    space = tiny_study.cfg.search
    offered = list(space.nhead.values)
    for t in _trials(tiny_study):
        params = tiny_study.store.run_of(t).data.params
        d_model, nhead = int(params["d_model"]), int(params["nhead"])
        assert d_model % nhead == 0, (t.number, d_model, nhead)
        assert nhead in offered
        assert t.user_attrs["params"]["nhead"] == nhead


def test_per_epoch_metrics_follow_the_intermediate_values(tiny_study: FinishedStudy, hpo: Any) -> None:
    client, metric = tiny_study.store.client(), tiny_study.cfg.study.metric
    epochs = tiny_study.cfg.training.epochs
    for t in _trials(tiny_study):
        run_id = t.user_attrs["mlflow_run_id"]
        n = len(t.intermediate_values)
        assert n >= 1, t.number
        if t.state == TrialState.COMPLETE:
            assert n == epochs, t.number
        assert sorted(t.intermediate_values) == list(range(1, n + 1))
        for name in (*hpo.PER_EPOCH, metric):
            history = client.get_metric_history(run_id, name)
            steps = sorted(m.step for m in history)
            assert steps == list(range(1, n + 1)), (t.number, name, steps)
        values = {m.step: m.value for m in client.get_metric_history(run_id, metric)}
        assert values == dict(t.intermediate_values), t.number


def test_complete_trials_have_test_metrics_and_artifacts(tiny_study: FinishedStudy) -> None:
    client = tiny_study.store.client()
    complete = [t for t in _trials(tiny_study) if t.state == TrialState.COMPLETE]
    assert complete
    for t in complete:
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        metrics = run.data.metrics
        assert metrics["test_exact_match"] == pytest.approx(t.user_attrs["test_exact_match"])
        assert 0.0 <= metrics["test_exact_match"] <= 1.0
        assert "test_exact_match_k1_kp1" in metrics
        per_class = [k for k in metrics if re.fullmatch(r"test_exact_match_k\d+_kp\d+", k)]
        assert len(per_class) >= 2, sorted(metrics)
        top = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "test_predictions.csv", "checkpoints"} <= top, top
        ckpts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
        assert {"checkpoints/best.pt", "checkpoints/last.pt"} <= ckpts, ckpts


def test_run_status_follows_trial_state(tiny_study: FinishedStudy) -> None:
    store = tiny_study.store
    for t in _trials(tiny_study):
        assert store.run_of(t).info.status == STATUS_OF_STATE[t.state.name], t.number
    assert not [r.info.run_name for r in store.runs(tiny_study.name) if r.info.status == "RUNNING"]


def test_parent_run_holds_trials_table_and_best(tiny_study: FinishedStudy, tmp_path: Path) -> None:
    store, name = tiny_study.store, tiny_study.name
    study = store.study(name)
    parent = store.parent_runs(name)[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["best_trial"] == str(study.best_trial.number)
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value, rel=1e-12)
    summary = names.ParentSummary.of(parent)  # the reader of what update_parent wrote
    assert summary.best_trial == study.best_trial.number and names.best_value(parent) == study.best_value
    assert summary.best_run_id == study.best_trial.user_attrs["mlflow_run_id"]
    assert summary.counts["complete"] == sum(t.state == TrialState.COMPLETE for t in study.trials)
    client = store.client()
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}
    local = client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path))
    frame = pd.read_csv(local)
    assert len(frame) == len(study.trials)
    assert sorted(frame["trial"]) == [t.number for t in study.trials]


def test_parent_run_holds_the_best_figures_with_their_intervals(tiny_study: FinishedStudy) -> None:
    """tiny's objective is token accuracy (no interval); its held-out exact match has one, on the
    study's 64 test inputs."""
    from search.stats import wilson

    study = tiny_study.store.study(tiny_study.name)
    parent = tiny_study.store.parent_runs(tiny_study.name)[0]
    figures = names.BestFigures.of(parent)  # the reader of what update_parent wrote
    expected = wilson(study.best_trial.user_attrs["test_exact_match"], 64)
    assert figures.value is None
    assert figures.test is not None and figures.test.n == 64
    assert (figures.test.low, figures.test.high) == (
        pytest.approx(expected.low),
        pytest.approx(expected.high),
    )
    assert parent.data.metrics["best_test_exact_match_high"] == pytest.approx(expected.high)
    assert parent.data.tags["best_figures"] == f"held-out exact match {expected}"


def test_a_checkpoint_fetch_prints_no_progress_bar(
    tiny_study: FinishedStudy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """MLflow draws a tqdm bar for each artifact download unless told not to: in `launch` its frames
    would land among the progress lines (a final run fetches its starting checkpoint)."""
    from search.spec.runconfig import RunConfig
    from search.tracking.runs import checkpoint_uri, fetch_init

    var = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    monkeypatch.setenv(var, "unset below")  # restored (unset) after the test
    monkeypatch.delenv(var)
    done = [t for t in _trials(tiny_study) if t.state == TrialState.COMPLETE]
    cfg = RunConfig().replace(init_from=checkpoint_uri(done[0].user_attrs["mlflow_run_id"]))
    capfd.readouterr()
    fetched = fetch_init(cfg, tiny_study.store.mlflow_url, tmp_path / "ours")
    assert Path(fetched.init_from).is_file()
    out, err = capfd.readouterr()
    assert "Downloading artifacts" not in out + err and "it/s" not in out + err, err
    monkeypatch.setenv(var, "true")  # a user who wants the bar gets it: the check above can see one
    fetch_init(cfg, tiny_study.store.mlflow_url, tmp_path / "theirs")
    assert "Downloading artifacts" in capfd.readouterr().err


# --- pruning -----------------------------------------------------------------------------------


def test_pruned_trial_shows_as_killed(tmp_path: Path, hpo: Any) -> None:
    # 8 trials of 4 epochs, median pruner from the 2nd trial on, a wide lr range: with seed 0
    # several trials are pruned (deterministic: same seed, one worker, one torch thread).
    text = hpo.study_toml(
        "pruning", n_trials=8, epochs=4, seed=0, lr="{ low = 1e-5, high = 1e-2, log = true }"
    )
    hpo.write_study(tmp_path, text, "pruning.toml")
    proc = hpo.check(hpo.run_cli(["launch", "pruning.toml"], tmp_path))
    store = hpo.Store(tmp_path)
    trials = store.study("pruning").trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, proc.stdout
    for t in pruned:
        run = store.run_of(t)
        assert run.info.status == "KILLED", t.number
        assert run.data.tags["optuna.trial_state"] == "PRUNED"
        # the run logged as many epochs as the trial reported before it was stopped
        history = store.client().get_metric_history(run.info.run_id, "val_loss")
        assert len(history) == len(t.intermediate_values)
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) == 8
    assert not [r for r in store.runs("pruning") if r.info.status == "RUNNING"]
