"""Shared helpers for the end-to-end tests of studies: the CLI as a subprocess, study files, stores.

Every launch runs ``python -m search.cli`` in a temporary directory with no ``OPTUNA_*`` or
``MLFLOW_*`` variables, so the embedded default store lands in ``<tmp>/mlruns``. Results are read
back with Optuna and ``MlflowClient``, never through the code under test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "studies" / "tiny.toml"
CLI = [sys.executable, "-m", "search.cli"]
PER_EPOCH = ("val_exact_match", "val_loss", "train_loss", "lr", "samples_per_sec")


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: no storage settings, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTUNA_", "MLFLOW_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"  # a hung process dumps every thread's stack on SIGABRT (``wait``)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``collatz-hpo ARGS`` to its end in ``cwd``."""
    return subprocess.run(
        [*CLI, *map(str, args)],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check(proc: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    """Assert the exit code, showing the output when it is not the expected one."""
    assert proc.returncode == code, (
        f"exit {proc.returncode}, expected {code}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


class Background:
    """``collatz-hpo ARGS`` in its own session (process group); its output is collected by a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [*CLI, *map(str, args)],
            cwd=cwd,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, predicate: Any, timeout: float = 120) -> None:
        """Wait until ``predicate(lines)`` holds; fail (and kill the group) if it never does."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate(list(self.lines)):
                return
            if self.proc.poll() is not None:
                self._reader.join(timeout=5)
                if predicate(list(self.lines)):
                    return
                pytest.fail(f"process exited ({self.proc.returncode}) before expected output:\n{self.output}")
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"expected output did not appear within {timeout}s:\n{self.output}")

    def signal_group(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)

    def wait(self, timeout: float = 120) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._dump_stacks()
            self.kill()
            pytest.fail(f"process did not exit within {timeout}s:\n{self.output}")
        self._reader.join(timeout=5)
        return code

    def _dump_stacks(self) -> None:
        """SIGABRT to the group: faulthandler prints where each thread of each process hangs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGABRT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@dataclass
class Store:
    """The embedded store a launch in ``root`` writes: ``root/mlruns/{optuna,mlflow}.db``."""

    root: Path

    @property
    def dir(self) -> Path:
        return self.root / "mlruns"

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.dir / 'optuna.db'}"

    @property
    def mlflow_url(self) -> str:
        return f"sqlite:///{self.dir / 'mlflow.db'}"

    def study(self, name: str) -> Any:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # sqlite's 5 s default lock wait is too short while orphaned workers record their trials
        storage = optuna.storages.RDBStorage(self.optuna_url, engine_kwargs={"connect_args": {"timeout": 60}})
        return optuna.load_study(study_name=name, storage=storage)

    def client(self) -> Any:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.mlflow_url)

    def runs(self, name: str) -> list[Any]:
        """Every run (active or deleted) of the experiment named ``name``."""
        from mlflow.entities import ViewType

        client = self.client()
        exp = client.get_experiment_by_name(name)
        assert exp is not None, f"no MLflow experiment named {name!r}"
        return client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=10_000)

    def parent_runs(self, name: str) -> list[Any]:
        return [r for r in self.runs(name) if r.data.tags.get("collatz_hpo.role") == "study"]

    def child_runs(self, name: str) -> list[Any]:
        return [r for r in self.runs(name) if r.data.tags.get("collatz_hpo.role") != "study"]

    def run_of(self, trial: Any) -> Any:
        return self.client().get_run(trial.user_attrs["mlflow_run_id"])


def study_toml(
    name: str = "t",
    *,
    n_trials: int = 4,
    epochs: int = 3,
    seed: int = 0,
    sampler: str = "tpe",
    metric: str = "val_accuracy",
    pruner: str = 'type = "median"\nn_startup_trials = 1\nn_warmup_steps = 0',
    data_range: tuple[int, int] = (1, 4096),
    train_size: int = 300,
    val_size: int = 64,
    test_size: int = 64,
    base: str = "{ choices = [16, 24, 32] }",
    d_model: str = "{ choices = [16, 32] }",
    nhead: str = "{ choices = [2, 4, 3] }",
    num_layers: str = "{ low = 1, high = 2 }",
    lr: str = "{ low = 1e-4, high = 1e-2, log = true }",
    study_extra: str = "",
) -> str:
    """A complete tiny study file (the shape of studies/tiny.toml), every part replaceable.

    ``study_extra``: more ``[study]`` lines (heartbeat and retry settings, say).
    """
    return f"""\
[study]
name = "{name}"
metric = "{metric}"
n_trials = {n_trials}
sampler = "{sampler}"
seed = {seed}
{study_extra}

[study.pruner]
{pruner}

[data]
range = [{data_range[0]}, {data_range[1]}]
train_size = {train_size}
val_size = {val_size}
test_size = {test_size}
seed = 0

[training]
epochs = {epochs}
batch_size = 64
eval_batch_size = 256
threads = 1

[search]
base = {base}
d_model = {d_model}
nhead = {nhead}
num_layers = {num_layers}
lr = {lr}
"""


def write_study(directory: Path, text: str, name: str = "study.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


@dataclass
class FinishedStudy:
    """A study launched once to its end; read-only for the tests that share it."""

    root: Path
    file: Path  # relative to root
    cfg: Any  # search.spec.study_file.StudyConfig
    proc: subprocess.CompletedProcess[str]
    store: Store
    seconds: float

    @property
    def name(self) -> str:
        return self.cfg.study.name


def launch_copy_of_tiny(root: Path) -> FinishedStudy:
    """Copy studies/tiny.toml to ``root/studies/tiny.toml`` and launch it from ``root``."""
    from search.spec.study_file import load_study

    (root / "studies").mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY, root / "studies" / "tiny.toml")
    file = Path("studies") / "tiny.toml"
    cfg = load_study(root / file)
    start = time.monotonic()
    proc = run_cli(["launch", file], root)
    return FinishedStudy(root, file, cfg, proc, Store(root), time.monotonic() - start)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> FinishedStudy:
    """studies/tiny.toml launched once in a fresh directory (shared, do not write to it)."""
    done = launch_copy_of_tiny(tmp_path_factory.mktemp("tiny"))
    check(done.proc, 0)
    return done


@dataclass
class ExportedStudy:
    """A tiny study of its own, exported once (``exports/best``, registered as version 1)."""

    study: FinishedStudy
    export_dir: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def root(self) -> Path:
        return self.study.root

    @property
    def store(self) -> Store:
        return self.study.store


@pytest.fixture(scope="session")
def exported_tiny(tmp_path_factory: pytest.TempPathFactory) -> ExportedStudy:
    """studies/tiny.toml launched in its own store, then `collatz-hpo export tiny --out exports/best`.

    The export, predict and report tests share it: they may add exports, registry versions and
    report artifacts, unlike ``tiny_study``, whose runs other tests count.
    """
    done = launch_copy_of_tiny(tmp_path_factory.mktemp("exported"))
    check(done.proc, 0)
    proc = check(run_cli(["export", done.name, "--out", "exports/best"], done.root))
    return ExportedStudy(done, done.root / "exports" / "best", proc)


@pytest.fixture(scope="session")
def hpo() -> SimpleNamespace:
    """The helpers above, for test modules (which cannot import this conftest by name)."""
    return SimpleNamespace(
        CLI=CLI,
        TINY=TINY,
        PER_EPOCH=PER_EPOCH,
        Background=Background,
        Store=Store,
        check=check,
        cli_env=cli_env,
        launch_copy_of_tiny=launch_copy_of_tiny,
        run_cli=run_cli,
        study_toml=study_toml,
        write_study=write_study,
    )


@pytest.fixture
def signals_restored() -> Iterator[None]:
    """An interrupted worker ignores further signals: give pytest its own back after the test."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
