"""The servers collatz-hpo starts: the shared MLflow tracking server, the local MLflow UI and the
Optuna dashboard, and the links into them that the CLI prints.

Each ``*_command`` returns the command line (a list), so it can be shown (passwords masked)
before the CLI becomes that process.

The UI is started lean: MLflow 3.17's ``mlflow ui`` defaults to 4 uvicorn workers plus a job
runner with its huey consumers (GenAI jobs a study never submits); one worker and no job
execution serve the same pages from a fraction of the memory (``benchmarks/bench_ui.py``).
"""

from __future__ import annotations

import os
import shutil
import sys
from urllib.parse import quote, urlencode

from search.locations import Locations
from search.tracking import names

__all__ = [
    "LEAN_UI_ENV",
    "dashboard_command",
    "dashboard_installed",
    "dashboard_link",
    "mlflow_executable",
    "runs_link",
    "server_command",
    "study_links",
    "ui_command",
]

#: What ``collatz-hpo ui`` sets for ``mlflow ui``: no job runner (and no huey consumers).
LEAN_UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
#: The trial runs of a study: the parent run would otherwise fold them away.
TRIALS_FILTER = names.role_filter(names.TRIAL_ROLE)


def mlflow_executable() -> str:
    """The ``mlflow`` beside this Python (the venv's), else the one on PATH."""
    exe = os.path.join(os.path.dirname(sys.executable), "mlflow")
    return exe if os.path.exists(exe) else "mlflow"


def _listen(host: str, port: int, workers: int) -> list[str]:
    """Where an MLflow server listens and with how many uvicorn workers (``server`` and ``ui``)."""
    return ["--host", host, "--port", str(port), "--workers", str(workers)]


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
        *_listen(host, port, workers),
    ]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    if basic_auth:
        cmd += ["--app-name", "basic-auth"]
    return cmd


def ui_command(
    locations: Locations, host: str = "127.0.0.1", port: int = 5000, workers: int = 1
) -> list[str]:
    """``mlflow ui`` on the study store's tracking URI (and its artifact folder when embedded),
    with ``workers`` uvicorn workers; run it with ``LEAN_UI_ENV`` set."""
    cmd = [
        mlflow_executable(),
        "ui",
        "--backend-store-uri",
        locations.tracking_uri,
        *_listen(host, port, workers),
    ]
    if locations.artifact_root:
        cmd += ["--default-artifact-root", locations.artifact_root]
    return cmd


def runs_link(base_url: str, experiment_id: str, metric: str | None = None, ascending: bool = False) -> str:
    """The experiment's trial runs in the UI's training view ("Model training", not GenAI).

    MLflow 3.17's frontend opens ``#/experiments/<id>/runs`` in the view that ``workflowType``
    names (``machine_learning``: the runs table). ``searchFilter`` keeps the trial runs; sorted by
    anything but their start time (here: the study's ``metric``, best first) the filtered table
    lists them flat instead of folding them under the study's parent run.
    """
    query = {"workflowType": "machine_learning", "searchFilter": TRIALS_FILTER}
    if metric is not None:
        query |= {"orderByKey": f"metrics.`{metric}`", "orderByAsc": str(ascending).lower()}
    return f"{base_url}/#/experiments/{experiment_id}/runs?{urlencode(query, quote_via=quote)}"


def study_links(tracking_uri: str, base_url: str, study: str | None = None) -> dict[str, str]:
    """Study name → :func:`runs_link` of its trials, sorted by its metric, for every study (or
    only ``study``) in the tracking store; the metric is read from the study's parent run.
    A server that does not answer is waited for ``COMMAND_WINDOW`` seconds."""
    from search.tracking.client import COMMAND_WINDOW, ResilientClient

    client = ResilientClient(tracking_uri, COMMAND_WINDOW)
    if study is not None:
        found = [exp] if (exp := client.get_experiment_by_name(study)) is not None else []
    else:
        found = client.search_experiments(filter_string=names.STUDY_EXPERIMENTS_FILTER)
    links = {}
    for exp in found:
        parents = client.search_runs(
            [exp.experiment_id], filter_string=names.role_filter(names.STUDY_ROLE), max_results=1
        )
        metric, ascending = names.objective(parents[0]) if parents else (None, False)
        links[exp.name] = runs_link(base_url, exp.experiment_id, metric, ascending)
    return links


# --- the Optuna dashboard -------------------------------------------------------------------------


def dashboard_installed() -> bool:
    """Whether optuna-dashboard (the optional extra ``dashboard``) can be imported."""
    import importlib.util

    return importlib.util.find_spec("optuna_dashboard") is not None


def dashboard_command(storage: str, host: str = "127.0.0.1", port: int = 8080) -> list[str]:
    """``optuna-dashboard`` on the study's Optuna storage (request logs off)."""
    beside = os.path.join(os.path.dirname(sys.executable), "optuna-dashboard")
    exe = beside if os.path.exists(beside) else shutil.which("optuna-dashboard") or "optuna-dashboard"
    return [exe, storage, "--host", host, "--port", str(port), "--quiet"]


def dashboard_link(base_url: str, study_id: int) -> str:
    """The study's page of the dashboard: its history, intermediate values, importances, ..."""
    return f"{base_url}/dashboard/studies/{study_id}"
