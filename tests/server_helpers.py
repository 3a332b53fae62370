"""Helpers for tests that start a real HTTP server in a subprocess (MLflow tracking or scoring)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ok(url: str, proc: subprocess.Popen, timeout: float, log: Path, what: str) -> None:
    """Poll ``url`` until it answers 200; fail with the log's tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url}:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)


def stop_session(proc: subprocess.Popen) -> None:
    """End a server started in its own session, with the workers it spawned: SIGTERM, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real `mlflow server` (sqlite backend, served artifacts) for the module that binds it
    (``mlflow_server = server_helpers.mlflow_server``); yields its URL."""
    work = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    from search.servers import LEAN_UI_ENV, server_command

    # the platform's own command line, lean (no job runner: a study submits no GenAI jobs)
    cmd = server_command(f"sqlite:///{work / 'mlflow.db'}", str(work / "artifacts"), port=port)
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **LEAN_UI_ENV},
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
