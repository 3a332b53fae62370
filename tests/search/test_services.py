"""Fail fast: a storage or tracking server that does not answer stops a command within seconds,
with one line naming the (masked) URL and the cause, exit code 2, and nothing written."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_one_line_error, run_main
from server_helpers import free_port

from search.locations import resolve_locations
from search.study.services import ServiceUnreachable, check_services

SECRET = "pw-never-shown"


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections and never says a word (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


def _fails_fast(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hpo: Any, args: list[str], *needles: str
) -> str:
    """Run ``args`` on a valid study file: one error line naming ``needles``, exit 2, well before
    MLflow's or the storage's own retries would give up (minutes), and nothing written."""
    hpo.write_study(tmp_path, hpo.study_toml("ff"), "ff.toml")
    start = time.monotonic()
    code, out, err = run_main([*args[:1], "ff.toml", *args[1:]], tmp_path, capsys)
    assert time.monotonic() - start < 30
    assert code == 2
    assert_one_line_error(code, err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ff.toml"]  # no mlruns/, no lock files
    return out + err


@pytest.mark.parametrize("command", ["launch", "worker"])
def test_unreachable_tracking_server_stops_at_once_and_writes_nothing(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str], hpo: Any
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    _fails_fast(tmp_path, capsys, hpo, [command, "--tracking-uri", uri], uri, "Connection refused")


def test_unreachable_storage_names_the_masked_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hpo: Any
) -> None:
    url = f"postgresql://alice:{SECRET}@127.0.0.1:{free_port()}/optuna"
    shown = _fails_fast(tmp_path, capsys, hpo, ["launch", "--storage", url], "alice:***@127.0.0.1", "Optuna")
    assert SECRET not in shown


def test_a_server_that_never_answers_times_out_as_configured(
    tmp_path: Path, silent_port: int, capsys: pytest.CaptureFixture[str], hpo: Any
) -> None:
    uri = f"http://127.0.0.1:{silent_port}"
    args = ["launch", "--tracking-uri", uri, "--connect-timeout", "1"]
    _fails_fast(tmp_path, capsys, hpo, args, uri, "did not answer within 1s")


@pytest.mark.parametrize("command", ["export", "report"])
def test_export_and_report_check_the_tracking_server_first(
    tiny_study: Any, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    before = sorted(p.name for p in tiny_study.root.iterdir())
    code, _, err = run_main(
        [command, tiny_study.name, "--tracking-uri", uri, "--storage", tiny_study.store.optuna_url],
        tiny_study.root,
        capsys,
    )
    assert code == 2
    assert_one_line_error(code, err, uri)
    assert sorted(p.name for p in tiny_study.root.iterdir()) == before  # no exports/ or reports/


def test_status_reads_the_storage_without_the_tracking_server(
    tiny_study: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    code, out, _ = run_main(["status", tiny_study.name, "--tracking-uri", uri], tiny_study.root, capsys)
    assert code == 0
    assert "complete" in out


def test_the_embedded_store_is_not_probed_and_nothing_is_made(tmp_path: Path) -> None:
    """Local sqlite files need no server; the check must not create them either. (A live
    PostgreSQL and `mlflow server` pass the check in test_distributed, whose workers run it.)"""
    check_services(resolve_locations(cwd=tmp_path), timeout=2)
    assert list(tmp_path.iterdir()) == []


def test_the_error_is_a_study_error_with_one_line(tmp_path: Path) -> None:
    loc = resolve_locations(f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/x", cwd=tmp_path)
    with pytest.raises(ServiceUnreachable) as info:
        check_services(loc, timeout=2)
    assert len(str(info.value).splitlines()) == 1
    assert SECRET not in str(info.value)
