"""Distributed studies on the machine's real PostgreSQL and a real `mlflow server` over HTTP.

Each test run creates a throwaway database and drops it afterwards. Without a reachable
PostgreSQL the tests skip with the reason (CI here has one, so there they run).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sqlalchemy = pytest.importorskip("sqlalchemy")
optuna = pytest.importorskip("optuna")
import dist_helpers  # noqa: E402
from dist_helpers import start_workers, tracked_runs, wait_for, worker_env  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from pg_helpers import PG_ADMIN, SECRET  # noqa: E402

# the fixtures: a fresh PostgreSQL database per test, one `mlflow server` per module
pg_url = dist_helpers.pg_url
mlflow_server = dist_helpers.mlflow_server

# Heartbeats every 2 s; a trial silent for 20 s is a dead worker's. A loaded 2-core CI machine
# (three workers and another test process) keeps beating within that: only dead workers' trials
# are retried. (With a 4 s grace a live worker's trial was once failed and retried there.)
HEARTBEATS = "heartbeat_interval = 2\ngrace_period = 20\nmax_retries = 2"


def dist_study(hpo: Any, n_trials: int, epochs: int) -> str:
    """The study every test here runs: ``HEARTBEATS``, dead trials retried twice."""
    return hpo.study_toml(
        "dist",
        n_trials=n_trials,
        epochs=epochs,
        pruner='type = "none"',
        train_size=1500,
        base="{ choices = [16, 24] }",
        nhead="{ choices = [2, 4] }",
        num_layers="1",
        lr="{ low = 1e-3, high = 1e-2, log = true }",
        study_extra=HEARTBEATS,
    )


def test_killed_worker_trial_is_retried_and_study_reaches_exact_count(
    pg_url: str, tmp_path: Path, hpo: Any
) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logs, procs = start_workers(tmp_path, dist_study(hpo, n_trials=6, epochs=10), pg_url, tracking, 3)
    try:
        # kill worker 1 with SIGKILL in the middle of a trial (after it finished an epoch)
        wait_for(logs[1], "epoch 2/", 120, procs[1])
        os.killpg(procs[1].pid, signal.SIGKILL)
        procs[1].wait(timeout=30)
        for i in (0, 2):
            assert procs[i].wait(timeout=300) == 0, logs[i].read_text()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)

    output = "".join(log.read_text() for log in logs)
    study = optuna.load_study(study_name="dist", storage=pg_url)
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    counted = [
        t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(counted) == 6, states
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.WAITING not in states
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    # every FAIL is the killed worker's trial, failed for its stale heartbeat (no reason of its own):
    # no live worker's trial went stale and was retried
    reasons = {t.number: (t.user_attrs.get("fail_reason"), t.user_attrs["worker"]["pid"]) for t in failed}
    assert all(r == (None, procs[1].pid) for r in reasons.values()), (reasons, procs[1].pid)
    assert len(failed) == 1, states
    killed = failed[0]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1, "the killed trial was not retried"
    retry = retries[0]
    assert retry.params == killed.params  # same params
    assert retry.state == optuna.trial.TrialState.COMPLETE
    assert f"trial {retry.number} retries trial {killed.number}" in output
    assert "Traceback" not in output.replace(logs[1].read_text(), "")

    runs = {r.info.run_name: r for r in tracked_runs(tracking, "dist")}
    assert not [n for n, r in runs.items() if r.info.status == "RUNNING"]
    assert runs[f"trial-{killed.number}"].info.status == "FAILED"
    assert (
        runs[f"trial-{killed.number}"].data.tags["fail_reason"]
        == "worker died (no heartbeat or process gone)"
    )
    assert runs[f"trial-{retry.number}"].data.tags.get("retry_of") == str(killed.number)
    for t in counted:  # no completed trial lost: each has its finished run
        run = runs[f"trial-{t.number}"]
        assert run.info.status == "FINISHED"
        assert run.info.run_id == t.user_attrs["mlflow_run_id"]
    assert runs["study-dist"].info.status == "FINISHED"


def test_two_workers_against_a_real_mlflow_server(
    pg_url: str, mlflow_server: str, tmp_path: Path, hpo: Any
) -> None:
    logs, procs = start_workers(tmp_path, dist_study(hpo, n_trials=4, epochs=2), pg_url, mlflow_server, 2)
    for p, log in zip(procs, logs, strict=True):
        assert p.wait(timeout=300) == 0, log.read_text()[-3000:]
    study = optuna.load_study(study_name="dist", storage=pg_url)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 4
    assert {t.user_attrs["worker"]["pid"] for t in finished} >= {procs[0].pid, procs[1].pid} - {None}
    runs = {r.info.run_name: r for r in tracked_runs(mlflow_server, "dist")}
    parents = [r for r in runs.values() if r.data.tags.get("collatz_hpo.role") == "study"]
    assert len(parents) == 1, "exactly one parent run, also when two workers create the study"
    client = MlflowClient(tracking_uri=mlflow_server)
    for t in finished:
        run = runs[f"trial-{t.number}"]
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.json", "checkpoints", "test_predictions.csv"} <= names
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2]
    assert not (tmp_path / "mlruns").exists()  # nothing fell back to the embedded store


def test_password_in_storage_url_never_leaks(pg_url: str, tmp_path: Path, hpo: Any) -> None:
    study_file = tmp_path / "dist.toml"
    study_file.write_text(dist_study(hpo, n_trials=2, epochs=1))
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "search.cli",
            "launch",
            str(study_file),
            "--storage",
            pg_url,
            "--tracking-uri",
            tracking,
            "--workers",
            "2",
        ],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    assert "postgres:***@" in result.stdout  # the URL is shown, masked
    # a bad study name through the same storage: the error line is masked too
    status = subprocess.run(
        [sys.executable, "-m", "search.cli", "status", "nosuch", "--storage", pg_url],
        cwd=tmp_path,
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 2 and SECRET not in status.stdout + status.stderr
    for run in tracked_runs(tracking, "dist"):
        blob = repr(run.data.params) + repr(run.data.tags)
        assert SECRET not in blob
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == [], f"password written to {leaked}"
    study = optuna.load_study(study_name="dist", storage=pg_url)
    assert SECRET not in repr(study.user_attrs) + repr([t.user_attrs for t in study.trials])


def test_database_disconnects_are_retried_not_fatal(pg_url: str, tmp_path: Path, hpo: Any) -> None:
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logs, procs = start_workers(tmp_path, dist_study(hpo, n_trials=4, epochs=6), pg_url, tracking, 2)
    db = pg_url.rsplit("/", 1)[1]
    admin = sqlalchemy.create_engine(
        PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool
    )
    kills = 0
    try:
        wait_for(logs[0], "epoch 1/", 120, procs[0])
        deadline = time.time() + 20
        while time.time() < deadline and any(p.poll() is None for p in procs):
            with admin.connect() as conn:  # what a database restart or a network blip does
                kills += conn.execute(
                    sqlalchemy.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": db},
                ).scalar()
            time.sleep(0.5)
        for p, log in zip(procs, logs, strict=True):
            assert p.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        admin.dispose()
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert kills > 0, "the test never cut a connection"
    study = optuna.load_study(study_name="dist", storage=pg_url)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 4, states
    assert optuna.trial.TrialState.RUNNING not in states
