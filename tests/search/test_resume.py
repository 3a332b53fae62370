"""Resumable trials: a running trial uploads its checkpoint at the study file's interval, and a
retried trial (interrupted, or its worker killed) goes on from it: its steps continued, its model,
optimizer and schedule state those of the checkpoint, the pruner's values carried over, its MLflow
curves whole with no step twice, its cost counted once; a checkpoint that cannot be read falls
back to the next one, or to the start, with a line saying so."""

from __future__ import annotations

import copy
import os
import signal
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dist_helpers  # tests/, on the path through its conftest
import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from core import Trainer, load_checkpoint
from search import keys
from search.locations import Locations
from search.spec.sections import CheckpointEvery
from search.spec.study_file import parse_study
from search.study.opening import OpenStudy, open_study
from search.study.workers import Worker
from search.trial import checkpoints
from search.trial.callback import ReportingCallback
from search.trial.checkpoints import CheckpointUploads

# the fixtures of the PostgreSQL test: a fresh database, one `mlflow server` for the module
pg_url = dist_helpers.pg_url
mlflow_server = dist_helpers.mlflow_server
EPOCHS = 6


pytestmark = pytest.mark.usefixtures("signals_restored")


def _study(hpo: Any, name: str = "res", every: str = "{ epochs = 2 }", extra: str = "") -> str:
    """One tiny trial of fixed params, a per-epoch schedule, checkpoints uploaded ``every``."""
    text = hpo.study_toml(
        name,
        n_trials=1,
        epochs=EPOCHS,
        pruner='type = "median"\nn_startup_trials = 5',  # records the values, prunes nothing here
        base="16",
        d_model="16",
        nhead="2",
        num_layers="1",
        lr="3e-3",
        study_extra=extra,
    )
    return text.replace("threads = 1\n", f'threads = 1\nscheduler = "cosine"\ncheckpoint_every = {every}\n')


def _open(tmp_path: Path, text: str) -> OpenStudy:
    cfg = parse_study(tomllib.loads(text))
    locations = Locations(f"sqlite:///{tmp_path}/optuna.db", f"sqlite:///{tmp_path}/mlflow.db", None, None)
    return open_study(cfg, locations, 0, log=lambda _m: None)


def _run(opened: OpenStudy) -> list[str]:
    """Run a worker on the study to its end; its lines."""
    lines: list[str] = []
    Worker(opened, log=lines.append).run()
    return lines


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Ctrl-C right after ``epoch`` (its metrics logged, its checkpoint written), once."""
    real = CheckpointUploads.on_epoch_end

    def on_epoch_end(self: CheckpointUploads, trainer: Trainer, e: int, metrics: dict[str, float]) -> None:
        real(self, trainer, e, metrics)
        if e == epoch:
            monkeypatch.setattr(CheckpointUploads, "on_epoch_end", real)
            raise KeyboardInterrupt

    monkeypatch.setattr(CheckpointUploads, "on_epoch_end", on_epoch_end)


@dataclass
class Interrupted:
    """A study whose trial 0 was interrupted after epoch 3 (checkpoints uploaded at 2, and at 3
    when the interrupt was recorded)."""

    opened: OpenStudy
    first: optuna.trial.FrozenTrial

    @property
    def client(self) -> Any:
        return self.opened.tracker.client

    def store_file(self, name: str) -> Path:
        """The file of trial 0's uploaded checkpoint ``name`` in the embedded store."""
        uri = self.client.get_run(keys.run_id(self.first)).info.artifact_uri
        return Path(uri.removeprefix("file://"), "checkpoints", name)


def _interrupted(tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch) -> Interrupted:
    opened = _open(tmp_path, _study(hpo))
    _interrupt_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        _run(opened)
    (first,) = opened.study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL and keys.fail_reason(first) == "interrupted"
    return Interrupted(opened, first)


def _history(client: Any, run_id: str, key: str = "val_loss") -> list[tuple[int, int, float]]:
    """(step, timestamp, value) of a metric of a run, by step."""
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


# --- upload at the interval ----------------------------------------------------------------------


def test_checkpoint_is_uploaded_every_n_epochs(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _open(tmp_path, _study(hpo))
    seen: list[tuple[int, list[str], int]] = []
    real = CheckpointUploads.upload

    def upload(self: CheckpointUploads) -> None:
        real(self)
        stored = [a.path for a in opened.tracker.client.list_artifacts(self.run_id, "checkpoints")]
        at = keys.checkpoint(opened.storage.get_trial(self.trial._trial_id))
        seen.append((self.latest.epoch, stored, at.epoch if at else -1))

    monkeypatch.setattr(CheckpointUploads, "upload", upload)
    _run(opened)
    # every 2 epochs, not after the last (the trial's record uploads its checkpoints then)
    assert [epoch for epoch, _, _ in seen] == [2, 4]
    for epoch, stored, recorded in seen:
        assert "checkpoints/last.pt" in stored and recorded == epoch
    (trial,) = opened.study.get_trials(deepcopy=False)
    assert trial.state == TrialState.COMPLETE
    at = keys.checkpoint(trial)
    assert at is not None and at.run_id == keys.run_id(trial) and at.upload_seconds > 0


def _uploads(every: CheckpointEvery) -> CheckpointUploads:
    env = SimpleNamespace(cfg=SimpleNamespace(training=SimpleNamespace(checkpoint_every=every)))
    return CheckpointUploads(SimpleNamespace(number=0), env, "run", Path("."), 10, lambda t, e: e)  # type: ignore[arg-type]


def test_the_interval_in_minutes_and_by_upload_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(checkpoints, "time", SimpleNamespace(monotonic=lambda: now[0]))
    minutes = _uploads(CheckpointEvery(minutes=1.5))
    now[0] += 89.9
    assert not minutes.due(1)
    now[0] += 0.1
    assert minutes.due(2)
    # the default: after an upload of 0.1 s, the next waits 4.9 s, so uploads take 2 % of the time
    auto = _uploads(CheckpointEvery())
    assert auto.due(1)  # nothing measured yet: the first epoch's checkpoint goes up
    auto.last_cost, auto.since = 0.1, now[0]
    now[0] += 4.85
    assert not auto.due(2)
    now[0] += 0.1
    assert auto.due(3)
    assert auto.last_cost / (auto.last_cost + 4.9) == pytest.approx(0.02)


# --- the retry resumes ---------------------------------------------------------------------------


def test_interrupted_trial_is_retried_from_its_checkpoint(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _interrupted(tmp_path, hpo, monkeypatch)
    first, client = done.first, done.client
    saved = load_checkpoint(done.store_file("last.pt"))
    assert saved["epoch"] == 3 and keys.checkpoint(first).epoch == 3
    resumed_state: dict[str, Any] = {}
    real_start = ReportingCallback.on_train_start

    def on_train_start(self: ReportingCallback, trainer: Trainer) -> None:
        real_start(self, trainer)
        resumed_state.update(
            epoch=trainer.epoch,
            step=trainer.global_step,
            optimizer=copy.deepcopy(trainer.optimizer.state_dict()),
            scheduler=copy.deepcopy(trainer.lr_scheduler.state_dict()),
            weights=copy.deepcopy(trainer.model.state_dict()),
        )

    monkeypatch.setattr(ReportingCallback, "on_train_start", on_train_start)
    lines = _run(done.opened)

    trials = done.opened.study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == first.params
    assert "trial 1 retries trial 0 with the same params" in lines
    assert any(line.startswith("trial 1 resumes trial 0 after epoch 3 (last.pt") for line in lines), lines
    # the model, optimizer and schedule state it went on from are the checkpoint's
    assert resumed_state["epoch"] == 3 and resumed_state["step"] == saved["global_step"]
    _assert_same_state(resumed_state["optimizer"], saved["optimizer_state"])
    assert resumed_state["scheduler"] == saved["scheduler_state"]
    for name, tensor in saved["model_state"].items():
        assert torch.equal(resumed_state["weights"][name], tensor), name
    # the pruner's values: the first attempt's up to the checkpoint, then the retry's own
    assert list(retry.intermediate_values) == list(range(1, EPOCHS + 1))
    assert {s: retry.intermediate_values[s] for s in (1, 2, 3)} == first.intermediate_values
    # its run: the first run's points up to epoch 3 (same timestamps), then its own, no step twice
    old, new = _history(client, keys.run_id(first)), _history(client, keys.run_id(retry))
    assert [step for step, _, _ in new] == list(range(1, EPOCHS + 1))
    assert new[:3] == old[:3]
    run = client.get_run(keys.run_id(retry))
    assert run.data.tags["retry_of"] == "0" and run.data.tags["resumed_at_epoch"] == "3"
    assert run.data.tags["resumed_from_run"] == keys.run_id(first)
    assert client.get_run(keys.run_id(first)).info.status == "FAILED"
    # cost: each attempt counts what it computed; the retry names what it took over
    resumed = keys.resumed(retry)
    assert resumed is not None and (resumed.trial, resumed.epoch) == (0, 3)
    assert resumed.train_steps == saved["global_step"]
    assert 0 < keys.train_steps(retry) < keys.train_steps(retry) + resumed.train_steps
    assert keys.compute_seconds(first) > 0 and keys.compute_seconds(retry) > 0


def _assert_same_state(got: dict[str, Any], saved: dict[str, Any]) -> None:
    assert got["param_groups"] == saved["param_groups"]
    assert got["state"].keys() == saved["state"].keys()
    for index, state in saved["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                assert torch.equal(got["state"][index][name], value), (index, name)
            else:
                assert got["state"][index][name] == value, (index, name)


def test_resumed_trial_trains_as_if_never_stopped(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same seed, same batches (seeded per epoch), same state: epochs 4.. as without the stop."""
    done = _interrupted(tmp_path, hpo, monkeypatch)
    _run(done.opened)
    retry = done.opened.study.get_trials(deepcopy=False)[1]
    whole = _open(tmp_path, _study(hpo, name="whole"))  # trial 0 of another study: same seed
    _run(whole)
    (straight,) = whole.study.get_trials(deepcopy=False)
    assert straight.params == retry.params
    assert retry.intermediate_values == pytest.approx(straight.intermediate_values, rel=1e-6)


def test_corrupt_last_checkpoint_falls_back_to_best_with_a_line(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _interrupted(tmp_path, hpo, monkeypatch)
    best_epoch = load_checkpoint(done.store_file("best.pt"))["epoch"]
    last = done.store_file("last.pt")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 3])
    lines = _run(done.opened)
    assert any(
        "cannot read checkpoint" in line and "last.pt" in line and "not used" in line for line in lines
    )
    assert any(
        line.startswith(f"trial 1 resumes trial 0 after epoch {best_epoch} (best.pt") for line in lines
    ), lines
    retry = done.opened.study.get_trials(deepcopy=False)[1]
    assert retry.state == TrialState.COMPLETE
    steps = [step for step, _, _ in _history(done.client, keys.run_id(retry))]
    assert steps == list(range(1, EPOCHS + 1))  # the epochs after best.pt's are logged once


def test_no_readable_checkpoint_trains_from_the_start_with_a_line(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = _interrupted(tmp_path, hpo, monkeypatch)
    for name in ("last.pt", "best.pt"):
        done.store_file(name).write_bytes(b"not a checkpoint")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lines = _run(done.opened)
    assert "trial 1: no readable checkpoint of trial 0: training from the start" in lines
    assert not [w for w in caught if "already reported" in str(w.message)]  # the repeats are quiet
    retry = done.opened.study.get_trials(deepcopy=False)[1]
    assert retry.state == TrialState.COMPLETE and keys.resumed(retry) is None
    steps = [step for step, _, _ in _history(done.client, keys.run_id(retry))]
    assert steps == list(range(1, EPOCHS + 1))
    # the values of epochs 1-3 stay the first attempt's (Optuna keeps a step's first value)
    assert {s: retry.intermediate_values[s] for s in (1, 2, 3)} == done.first.intermediate_values


def test_retry_without_an_uploaded_checkpoint_starts_over(
    tmp_path: Path, hpo: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _open(tmp_path, _study(hpo, every="{ minutes = 60 }"))
    monkeypatch.setattr(
        "search.trial.lifecycle.TrialRun.close", lambda self, out: out
    )  # as if killed: nothing uploaded at the end either
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(opened)
    monkeypatch.undo()
    (first,) = opened.study.get_trials(deepcopy=False)
    assert keys.checkpoint(first) is None
    lines = _run(opened)
    assert "trial 1: trial 0 uploaded no checkpoint: training from the start" in lines
    retry = opened.study.get_trials(deepcopy=False)[1]
    assert retry.state == TrialState.COMPLETE and retry.intermediate_values.keys() == set(
        range(1, EPOCHS + 1)
    )


# --- a SIGKILLed worker on PostgreSQL and an mlflow server ----------------------------------------


def test_killed_worker_trial_resumes_on_postgresql_and_mlflow_server(
    pg_url: str, mlflow_server: str, tmp_path: Path, hpo: Any
) -> None:
    text = _study(
        hpo, name="killres", every="{ epochs = 1 }", extra="heartbeat_interval = 2\ngrace_period = 20"
    )
    text = text.replace("n_trials = 1", "n_trials = 2").replace(f"epochs = {EPOCHS}", "epochs = 10", 1)
    text = text.replace("train_size = 300", "train_size = 1500")
    logs, procs = dist_helpers.start_workers(tmp_path, text, pg_url, mlflow_server, 2)
    try:
        dist_helpers.wait_for(logs[1], "epoch 4/", 240, procs[1])
        os.killpg(procs[1].pid, signal.SIGKILL)
        procs[1].wait(timeout=30)
        assert procs[0].wait(timeout=400) == 0, logs[0].read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    study = optuna.load_study(study_name="killres", storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    assert states.count(TrialState.COMPLETE) == 2 and TrialState.WAITING not in states, states
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert killed.user_attrs["worker"]["pid"] == procs[1].pid and keys.fail_reason(killed) is None
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    at, resumed = keys.checkpoint(killed), keys.resumed(retry)
    assert at is not None and at.epoch >= 3, killed.user_attrs  # uploaded every epoch until the kill
    assert resumed is not None and (resumed.trial, resumed.run_id) == (killed.number, at.run_id)
    # from the latest checkpoint in the store: the one recorded, or one whose upload the kill cut off
    # before it was recorded; never one after the last step reported
    assert at.epoch <= resumed.epoch <= max(killed.intermediate_values)
    assert (
        f"trial {retry.number} resumes trial {killed.number} after epoch {resumed.epoch}"
        in logs[0].read_text()
    )
    carried = killed.intermediate_values  # the pruner's values, all of them
    assert {s: retry.intermediate_values[s] for s in carried} == carried
    assert sorted(retry.intermediate_values) == list(range(1, 11))
    client = MlflowClient(tracking_uri=mlflow_server)
    steps = [step for step, _, _ in _history(client, keys.run_id(retry))]
    assert steps == list(range(1, 11))
    tags = client.get_run(keys.run_id(retry)).data.tags
    assert tags["resumed_from_run"] == keys.run_id(killed) and tags["resumed_at_epoch"] == str(resumed.epoch)
