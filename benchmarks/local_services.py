"""The real services the reliability benchmarks run against, all on 127.0.0.1 of this machine.

- ``Postgres``: throwaway databases on the machine's PostgreSQL (trust auth), connection counts,
  and a restart of the whole server (``pg_ctlcluster``: stop, wait, start);
- ``MlflowServer``: an ``mlflow server`` (lean: no job execution) that can be stopped and
  started again on the same port, with the same backend and artifacts;
- ``mlflow_counts``: what the MLflow backend database holds (metric points and duplicates per
  run, runs per status), read with SQL, not through the code under test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from search.servers import server_command

ADMIN = os.environ.get("COLLATZ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Postgres:
    """Databases made here are dropped by ``drop_all``; the server itself is the machine's."""

    admin: str = ADMIN
    made: list[str] = field(default_factory=list)

    def _engine(self) -> Any:
        return sa.create_engine(self.admin, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)

    def create(self, prefix: str) -> str:
        """A fresh database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with self._engine().connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.made.append(name)
        return self.admin.rsplit("/", 1)[0] + f"/{name}"

    def connections(self) -> int:
        """Client connections to the databases made here, now."""
        if not self.made:
            return 0
        with self._engine().connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(:names)"),
                    {"names": self.made},
                ).scalar()
            )

    def drop_all(self) -> None:
        with self._engine().connect() as conn:
            for name in self.made:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.made.clear()

    @staticmethod
    def cluster() -> tuple[str, str]:
        """(version, name) of the machine's PostgreSQL cluster on port 5432."""
        out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            version, name, port, *_ = line.split()
            if port == "5432":
                return version, name
        raise RuntimeError("no PostgreSQL cluster on port 5432")

    def restart(self, down_seconds: float) -> None:
        """Stop the whole server, keep it down ``down_seconds``, start it (and wait until it answers)."""
        version, name = self.cluster()
        subprocess.run(["pg_ctlcluster", version, name, "stop", "-m", "fast"], check=True)
        time.sleep(down_seconds)
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            with contextlib.suppress(Exception):
                self.connections()
                return
            time.sleep(0.5)
        raise RuntimeError("PostgreSQL did not come back")


class MlflowServer:
    """``mlflow server`` on a fixed port; ``stop``/``start`` keep port, backend and artifacts."""

    def __init__(
        self, backend: str, work: Path, workers: int = 2, port: int | None = None, pool: int | None = None
    ) -> None:
        self.backend, self.work, self.workers = backend, work, workers
        # the server's database connections per uvicorn worker: pool + as many again when busy
        self.pool_env = (
            {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool), "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(pool)}
            if pool
            else {}
        )
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        cmd = server_command(self.backend, str(self.work / "artifacts"), port=self.port, workers=self.workers)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **self.pool_env}
        log = open(self.work / "mlflow-server.log", "a")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=self.work
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                if r.status == 200:
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.3)
        raise RuntimeError(f"mlflow server did not start; see {self.work / 'mlflow-server.log'}")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    @contextlib.contextmanager
    def running(self) -> Iterator[MlflowServer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


# the study's parent run (its best_value is logged by whichever worker finished a trial)
_PARENT = (
    "(SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid "
    "AND t.key = 'collatz_hpo.role' AND t.value = 'study')"
)


def mlflow_counts(backend: str, experiment: str) -> dict[str, Any]:
    """Trial runs by status (the parent run aside), metric points and duplicated points (same run,
    key, step) of ``experiment``."""
    engine = sa.create_engine(backend, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        exp = conn.execute(
            sa.text("SELECT experiment_id FROM experiments WHERE name = :n"), {"n": experiment}
        ).scalar()
        status = dict(
            conn.execute(
                sa.text(
                    "SELECT status, count(*) FROM runs r WHERE experiment_id = :e AND NOT EXISTS "
                    + _PARENT
                    + " GROUP BY status"
                ),
                {"e": exp},
            ).all()
        )
        points = conn.execute(
            sa.text(
                "SELECT m.run_uuid, m.key, m.step, count(*) FROM metrics m JOIN runs r "
                "ON r.run_uuid = m.run_uuid WHERE r.experiment_id = :e AND NOT EXISTS "
                + _PARENT
                + " GROUP BY m.run_uuid, m.key, m.step"
            ),
            {"e": exp},
        ).all()
    engine.dispose()
    per_run: dict[str, set[tuple[str, int]]] = {}
    duplicates, doubled = 0, set()
    for run, key, step, count in points:
        per_run.setdefault(run, set()).add((key, int(step)))
        duplicates += int(count) - 1
        if count > 1:
            doubled.add(key)
    return {"status": status, "points": per_run, "duplicates": duplicates, "doubled_keys": sorted(doubled)}
