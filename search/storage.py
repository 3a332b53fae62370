"""Where a study lives: Optuna storage and MLflow tracking URLs, their defaults and secrets.

Embedded default (no server): ``sqlite:///mlruns/optuna.db`` for Optuna and
``sqlite:///mlruns/mlflow.db`` for MLflow with artifacts under ``mlruns/``, relative to the
directory the command runs in. Flags win over ``OPTUNA_STORAGE`` / ``MLFLOW_TRACKING_URI``,
which win over the defaults. URLs may hold passwords: ``mask`` them before they are shown.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Locations", "first_line", "is_disconnect", "mask", "resolve_locations", "study_lock"]

STORE_DIR = "mlruns"
# scheme:, then any number of slashes (a mistyped "postgresql:/" too), then user:password@
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*:/*)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key)=([^&\s]+)")


def mask(text: str) -> str:
    """Replace passwords in any URL inside ``text`` (user:pass@host, ?password=...) by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}=***", text)


def first_line(exc: BaseException) -> str:
    """A one-line, password-masked description of an exception, for one-line user errors."""
    text = str(exc).strip().splitlines()
    return mask(text[0] if text else type(exc).__name__)


@dataclass(frozen=True)
class Locations:
    """Resolved storage URLs of one study (may hold secrets: never log them unmasked)."""

    storage: str
    tracking_uri: str
    artifact_root: str | None  # local artifact folder for an embedded MLflow store
    store_dir: Path | None  # the embedded store folder to create, if any

    def masked(self) -> dict[str, str]:
        return {"storage": mask(self.storage), "tracking_uri": mask(self.tracking_uri)}


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    return None


def resolve_locations(
    storage: str | None = None, tracking_uri: str | None = None, cwd: str | Path | None = None
) -> Locations:
    """Flags, then environment variables, then the embedded default under ``<cwd>/mlruns``."""
    base = Path(cwd or os.getcwd()).resolve()
    store = base / STORE_DIR
    storage = storage or os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{store / 'optuna.db'}"
    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store / 'mlflow.db'}"
    for name, url in (("storage", storage), ("tracking_uri", tracking_uri)):
        if "://" not in url:
            raise ValueError(f"--{name.replace('_', '-')}: {mask(url)!r} is not a URL (e.g. sqlite:///x.db)")
    artifact_root = None
    tracking_db = _sqlite_path(tracking_uri)
    if tracking_db is not None:
        artifact_root = str((tracking_db.parent / "artifacts").resolve())
    store_dir = None
    for db in (_sqlite_path(storage), tracking_db):
        if db is not None:
            store_dir = db.parent
    return Locations(storage, tracking_uri, artifact_root, store_dir)


def prepare(locations: Locations) -> None:
    """Create the folders an embedded store needs (only after the config was validated)."""
    for url in (locations.storage, locations.tracking_uri):
        db = _sqlite_path(url)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def study_lock(storage: str, study_name: str, engine: Any = None) -> Iterator[None]:
    """Serialise "count trials, then ask for a new one" (and creation) across workers of one study.

    sqlite: an flock on a file beside the database (all workers share the machine);
    PostgreSQL: a session advisory lock keyed by the study's name (through ``engine``, or a
    short-lived connection). Other databases run unlocked (a worker may then start one
    trial more than asked).
    """
    db = _sqlite_path(storage)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        lock_path = db.with_name(f"{db.name}.{study_name}.lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    if storage.startswith("postgresql"):
        import sqlalchemy as sa

        digest = hashlib.blake2b(study_name.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "big", signed=True)
        own = engine is None
        if own:
            engine = sa.create_engine(storage, poolclass=sa.pool.NullPool)
        try:
            conn = _locked_connection(engine, key)
            try:
                yield
            finally:
                # A connection that died meanwhile took its session's lock with it.
                with contextlib.suppress(Exception):
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                with contextlib.suppress(Exception):
                    conn.close()
        finally:
            if own:
                engine.dispose()
        return
    yield


def _locked_connection(engine: Any, key: int, attempts: int = 8) -> Any:
    """A connection holding the advisory lock ``key``; retried across dropped connections."""
    import sqlalchemy as sa

    for attempt in range(attempts):
        conn = None
        try:
            conn = engine.connect()
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            return conn
        except Exception as exc:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            if attempt == attempts - 1 or not is_disconnect(exc):
                raise
            time.sleep(min(0.25 * 2**attempt, 8.0))
    raise AssertionError("unreachable")


_DISCONNECT_WORDS = (
    "server closed the connection",
    "terminating connection",
    "connection refused",
    "could not connect",
    "connection is closed",
    "connection already closed",
    "ssl syscall",
    "broken pipe",
    "connection reset",
    "the database system is starting up",
    "the database system is shutting down",
)


def is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a lost database connection worth retrying."""
    import sqlalchemy.exc as sa_exc

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa_exc.DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(seen, sa_exc.OperationalError | sa_exc.InterfaceError):
            text = str(seen).lower()
            if any(word in text for word in _DISCONNECT_WORDS):
                return True
        seen = seen.__cause__ or seen.__context__
    return False
