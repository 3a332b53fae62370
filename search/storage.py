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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Locations", "mask", "resolve_locations", "study_lock"]

STORE_DIR = "mlruns"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key)=([^&\s]+)")


def mask(text: str) -> str:
    """Replace passwords in any URL inside ``text`` (user:pass@host, ?password=...) by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}=***", text)


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
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
                try:
                    yield
                finally:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        finally:
            if own:
                engine.dispose()
        return
    yield
