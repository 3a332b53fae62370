"""Helpers for tests of studies on the machine's real PostgreSQL and a real `mlflow server`.

Each test gets a throwaway database (``pg_url``), dropped afterwards; without a reachable
PostgreSQL the tests skip with the reason, and fail under CI (which has one). A test module uses
the fixtures by binding them at module level: ``pg_url = dist_helpers.pg_url``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient
from server_helpers import free_port, wait_until_ok

PG_ADMIN = os.environ.get("COLLATZ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "S3cretPassw0rd-xyz"


def pg_reachable() -> str | None:
    try:
        engine = sqlalchemy.create_engine(PG_ADMIN, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # no server, no driver, no permission
        return f"PostgreSQL not reachable at {PG_ADMIN}: {str(exc).splitlines()[0]}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh database on the real server, dropped after the test."""
    reason = pg_reachable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}")
        pytest.skip(reason)
    name = f"collatz_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(
        PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        # trust auth ignores the password: it is there to prove it never leaks
        yield f"postgresql://postgres:{SECRET}@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real `mlflow server` (sqlite backend, served artifacts) for the module."""
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(exe),
            "server",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--artifacts-destination",
            str(work / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ok(f"{url}/health", proc, 90, work / "server.log", "mlflow server")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # a server that never started is gone already
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


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
