"""`collatz-hpo ui` and `collatz-hpo dashboard` started for real and asked over HTTP."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from cli_helpers import assert_one_line_error, run_main
from outage_helpers import drop_first_call
from server_helpers import free_port, stop_session, wait_until_ok

# ``tiny_study`` (tests/search/conftest.py): studies/tiny.toml launched once; the servers only read it.
FinishedStudy = Any


@dataclass
class Served:
    """A `collatz-hpo ui` or `dashboard` process, its log and its base URL."""

    proc: subprocess.Popen
    log: Path
    base: str
    port: int


@pytest.fixture(scope="module")
def served(tiny_study: FinishedStudy, hpo: Any) -> Iterator[dict[str, Served]]:
    """`ui tiny` and `dashboard tiny` on free ports, started side by side, until each answers 200."""
    study_id = tiny_study.store.study("tiny")._study_id
    pages = {"ui": "/", "dashboard": f"/dashboard/studies/{study_id}"}
    started: dict[str, Served] = {}
    try:
        for command in pages:
            port = free_port()
            log = tiny_study.root / f"{command}-{port}.log"
            with open(log, "w") as out:
                proc = subprocess.Popen(
                    [*hpo.CLI, command, "tiny", "--port", str(port)],
                    cwd=tiny_study.root,
                    env=hpo.cli_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            started[command] = Served(proc, log, f"http://127.0.0.1:{port}", port)
        for command, s in started.items():
            wait_until_ok(s.base + pages[command], s.proc, 120, s.log, f"collatz-hpo {command}")
        yield started
    finally:
        for s in started.values():
            stop_session(s.proc)


def _get(url: str, host: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _other_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (None: there is none)."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


def _refused_elsewhere(port: int) -> None:
    """Nothing answers ``port`` on the machine's other interface: bound to 127.0.0.1 only."""
    address = _other_address()
    if address is None:
        return  # no other interface to try from
    with pytest.raises(ConnectionRefusedError), socket.create_connection((address, port), timeout=5):
        pass


def test_ui_is_lean_prints_the_trial_runs_link_and_serves_localhost_only(
    served: dict[str, Served], tiny_study: FinishedStudy
) -> None:
    ui = served["ui"]
    experiment = tiny_study.store.client().get_experiment_by_name("tiny").experiment_id
    status, body = _get(f"{ui.base}/ajax-api/2.0/mlflow/experiments/get-by-name?experiment_name=tiny")
    assert status == 200 and json.loads(body)["experiment"]["experiment_id"] == experiment
    link = next(
        line for line in ui.log.read_text().splitlines() if line.startswith("study 'tiny' trial runs: ")
    )
    assert link.split(": ", 1)[1] == (
        f"{ui.base}/#/experiments/{experiment}/runs?workflowType=machine_learning"
        "&searchFilter=tags.%60collatz_hpo.role%60%20%3D%20%27trial%27"
        "&orderByKey=metrics.%60val_accuracy%60&orderByAsc=false"  # the study's metric, best first
    )
    assert _get(f"{ui.base}/", host="attacker.example")[0] == 403  # DNS-rebinding protection
    _refused_elsewhere(ui.port)
    tree = [psutil.Process(ui.proc.pid), *psutil.Process(ui.proc.pid).children(recursive=True)]
    commands = [" ".join(p.cmdline()) for p in tree]
    assert sum("uvicorn" in c for c in commands) == 1, commands  # one server process
    assert all("--workers 1" in c for c in commands if "uvicorn" in c), commands
    assert not [c for c in commands if "huey" in c], commands  # no job runner consumers
    assert psutil.Process(ui.proc.pid).environ()["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_study_links_ride_out_a_dropped_connection(
    tiny_study: FinishedStudy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from search.servers import runs_link, study_links

    calls = drop_first_call(monkeypatch, MlflowClient, "search_runs")
    experiment = tiny_study.store.client().get_experiment_by_name("tiny").experiment_id
    links = study_links(tiny_study.store.mlflow_url, "http://ui")
    assert links == {"tiny": runs_link("http://ui", experiment, "val_accuracy", ascending=False)}
    assert len(calls) == 2


def test_ui_of_an_unknown_study_is_a_one_line_error(
    tiny_study: FinishedStudy, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["ui", "nope", "--port", str(free_port())], tiny_study.root, capsys)
    assert_one_line_error(code, err, "no MLflow experiment named 'nope'")
    assert code == 2 and out == ""


def test_dashboard_serves_the_study_from_its_storage_on_localhost_only(
    served: dict[str, Served], tiny_study: FinishedStudy
) -> None:
    dashboard = served["dashboard"]
    study = tiny_study.store.study("tiny")
    page = f"{dashboard.base}/dashboard/studies/{study._study_id}"
    assert f"study 'tiny': {page}" in dashboard.log.read_text().splitlines()
    status, body = _get(f"{dashboard.base}/api/studies/{study._study_id}")
    assert status == 200
    answer = json.loads(body)
    assert answer["name"] == "tiny"
    assert sorted(t["number"] for t in answer["trials"]) == [t.number for t in study.trials]
    _refused_elsewhere(dashboard.port)


def test_dashboard_without_optuna_dashboard_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if the extra were not installed
    code, out, err = run_main(["dashboard", "tiny"], tmp_path, capsys)
    assert_one_line_error(
        code, err, "optuna-dashboard is not installed", "pip install 'collatz-hpo[dashboard]'"
    )
    assert code == 1 and out == ""
    assert not (tmp_path / "mlruns").exists()  # nothing opened or created
