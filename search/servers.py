"""The MLflow servers collatz-hpo starts: the shared tracking server and the local UI.

Each function returns the command line (a list), so it can be shown (passwords masked) before
the CLI becomes that process.
"""

from __future__ import annotations

import os
import sys

from search.locations import Locations

__all__ = ["mlflow_executable", "server_command", "ui_command"]


def mlflow_executable() -> str:
    """The ``mlflow`` beside this Python (the venv's), else the one on PATH."""
    exe = os.path.join(os.path.dirname(sys.executable), "mlflow")
    return exe if os.path.exists(exe) else "mlflow"


def server_command(
    backend_store_uri: str,
    artifacts_destination: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
    allowed_hosts: str | None = None,
    basic_auth: bool = False,
) -> list[str]:
    """``mlflow server`` with served artifacts; security flags when it is exposed."""
    cmd = [
        mlflow_executable(),
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        artifacts_destination,
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if basic_auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def ui_command(locations: Locations, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
    """``mlflow ui`` on the study store's tracking URI (and its artifact folder when embedded)."""
    cmd = [
        mlflow_executable(),
        "ui",
        "--backend-store-uri",
        locations.tracking_uri,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if locations.artifact_root:
        cmd += ["--default-artifact-root", locations.artifact_root]
    return cmd
