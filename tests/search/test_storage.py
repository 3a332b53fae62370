"""Where a study lives: embedded defaults, flag > environment > default, and masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.locations import mask, resolve_locations


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTUNA_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_defaults_live_under_cwd_mlruns(tmp_path: Path) -> None:
    loc = resolve_locations(cwd=tmp_path)
    store = tmp_path.resolve() / "mlruns"
    assert loc.storage == f"sqlite:///{store / 'optuna.db'}"
    assert loc.tracking_uri == f"sqlite:///{store / 'mlflow.db'}"
    assert loc.store_dir == store
    assert loc.artifact_root is not None
    assert Path(loc.artifact_root).is_relative_to(store)
    assert not store.exists()  # resolving creates nothing


def test_defaults_follow_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    loc = resolve_locations()
    assert loc.storage == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'optuna.db'}"
    assert loc.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"


def test_environment_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTUNA_STORAGE", "sqlite:////data/env-optuna.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    loc = resolve_locations(cwd=tmp_path)
    assert loc.storage == "sqlite:////data/env-optuna.db"
    assert loc.tracking_uri == "http://mlflow.example:5000"
    assert loc.artifact_root is None  # a tracking server keeps its own artifacts


def test_each_environment_variable_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTUNA_STORAGE", "postgresql://u@db/optuna")
    loc = resolve_locations(cwd=tmp_path)
    assert loc.storage == "postgresql://u@db/optuna"
    assert loc.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'mlflow.db'}"
    monkeypatch.delenv("OPTUNA_STORAGE")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    loc = resolve_locations(cwd=tmp_path)
    assert loc.storage == f"sqlite:///{tmp_path.resolve() / 'mlruns' / 'optuna.db'}"
    assert loc.tracking_uri == "http://mlflow.example:5000"


def test_flags_beat_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTUNA_STORAGE", "sqlite:////data/env-optuna.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env.example:5000")
    loc = resolve_locations("sqlite:////data/flag-optuna.db", "sqlite:////data/flag-mlflow.db", cwd=tmp_path)
    assert loc.storage == "sqlite:////data/flag-optuna.db"
    assert loc.tracking_uri == "sqlite:////data/flag-mlflow.db"
    assert loc.artifact_root == str(Path("/data/artifacts").resolve())


@pytest.mark.parametrize("bad", ["not-a-url", "mlruns/optuna.db"])
def test_a_path_is_not_a_url(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not a URL"):
        resolve_locations(bad, cwd=tmp_path)
    with pytest.raises(ValueError, match="not a URL"):
        resolve_locations(None, bad, cwd=tmp_path)


def test_not_a_url_error_does_not_echo_a_password(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        resolve_locations("postgresql:/alice:s3cr3t@db/x", cwd=tmp_path)
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("postgresql+psycopg2://user:secret@host:5432/db", "postgresql+psycopg2://user:***@host:5432/db"),
        ("mysql://root:pa%40ss@127.0.0.1/optuna", "mysql://root:***@127.0.0.1/optuna"),
        (
            "postgresql://host/db?user=u&password=secret&sslmode=require",
            "postgresql://host/db?user=u&password=***&sslmode=require",
        ),
        ("postgresql://host/db?password=secret", "postgresql://host/db?password=***"),
        (
            "could not connect to postgresql://bob:hunter2@db:5432/x (timeout)",
            "could not connect to postgresql://bob:***@db:5432/x (timeout)",
        ),
        ("sqlite:////tmp/mlruns/optuna.db", "sqlite:////tmp/mlruns/optuna.db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_mask_hides_passwords_and_keeps_the_rest(text: str, expected: str) -> None:
    assert mask(text) == expected


def test_mask_hides_every_secret_in_a_text() -> None:
    text = "a postgresql://u:one@h/db and b mysql://v:two@h/db?password=three"
    masked = mask(text)
    for secret in ("one", "two", "three"):
        assert f":{secret}@" not in masked and f"={secret}" not in masked
    assert masked.count("***") == 3


def test_locations_masked(tmp_path: Path) -> None:
    loc = resolve_locations("postgresql://u:secret@db/optuna", "http://u:token@mlflow:5000", cwd=tmp_path)
    shown = loc.masked()
    assert shown == {"storage": "postgresql://u:***@db/optuna", "tracking_uri": "http://u:***@mlflow:5000"}
    assert "secret" not in repr(shown) and "token" not in repr(shown)


def test_server_command_binds_localhost_masks_the_password_and_adds_security_flags() -> None:
    import os
    import subprocess
    import sys

    JOBS = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"  # noqa: N806

    def run(*extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "search.cli",
                "server",
                "--backend-store-uri",
                "postgresql://hpo:t0p-secret@db.example/mlflow",
                "--print-only",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env={**{k: v for k, v in os.environ.items() if k != JOBS}, **(env or {})},
        )

    plain = run()
    assert plain.returncode == 0, plain.stderr
    assert "t0p-secret" not in plain.stdout and "postgresql://hpo:***@db.example/mlflow" in plain.stdout
    assert "--host 127.0.0.1" in plain.stdout and "--serve-artifacts" in plain.stdout
    assert plain.stdout.startswith(f"{JOBS}=false ")  # lean like `ui`: no job runner
    assert run(env={JOBS: "true"}).stdout.startswith(f"{JOBS}=true ")  # unless asked for
    exposed = run("--host", "0.0.0.0", "--allowed-hosts", "mlflow.example:5000", "--basic-auth")
    assert "--allowed-hosts mlflow.example:5000" in exposed.stdout
    assert "--app-name basic-auth" in exposed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "search.cli", "server", "--backend-store-uri", "nonsense", "--print-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
