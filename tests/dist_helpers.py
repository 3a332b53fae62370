"""Helpers for tests of studies run by worker processes on the machine's real PostgreSQL and a
real `mlflow server` (``pg_helpers.pg_url``, ``server_helpers.mlflow_server``, re-bound here so a
test module binds both from one place: ``pg_url = dist_helpers.pg_url``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pg_helpers
import pytest
import server_helpers
from mlflow.tracking import MlflowClient

# the fixtures live with their kind: a fresh database per test, one `mlflow server` per module
pg_url = pg_helpers.pg_url
mlflow_server = server_helpers.mlflow_server


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPTUNA_STORAGE", "MLFLOW_TRACKING_URI")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def worker(cwd: Path, study: Path, storage: str, tracking: str, index: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "search.cli",
        "worker",
        str(study),
        "--storage",
        storage,
        "--tracking-uri",
        tracking,
        "--worker-index",
        str(index),
    ]
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=worker_env(),
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_workers(
    tmp_path: Path, study_text: str, storage: str, tracking: str, count: int
) -> tuple[list[Path], list[subprocess.Popen]]:
    """Write the study file and start ``count`` workers on it; their logs are w<i>.log."""
    study_file = tmp_path / "dist.toml"
    study_file.write_text(study_text)
    logs = [tmp_path / f"w{i}.log" for i in range(count)]
    return logs, [worker(tmp_path, study_file, storage, tracking, i, logs[i]) for i in range(count)]


def wait_for(path: Path, text: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            pytest.fail(f"worker exited early:\n{path.read_text()[-3000:]}")
        time.sleep(0.2)
    pytest.fail(f"{text!r} not seen in {path} within {timeout}s:\n{path.read_text()[-3000:]}")


def tracked_runs(tracking: str, name: str) -> list:
    client = MlflowClient(tracking_uri=tracking)
    exp = client.get_experiment_by_name(name)
    assert exp is not None, f"no MLflow experiment {name}"
    return client.search_runs([exp.experiment_id], max_results=1000)
