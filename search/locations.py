"""Where a study lives: Optuna storage and MLflow tracking URLs, their defaults and secrets.

Embedded default (no server): ``sqlite:///mlruns/optuna.db`` for Optuna and
``sqlite:///mlruns/mlflow.db`` for MLflow with artifacts under ``mlruns/``, relative to the
directory the command runs in. Flags win over ``OPTUNA_STORAGE`` / ``MLFLOW_TRACKING_URI``,
which win over the defaults. URLs may hold passwords: ``mask`` them before they are shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from search.errors import CollatzHpoError, one_line

__all__ = [
    "CONNECT_TIMEOUT",
    "LocationError",
    "Locations",
    "first_line",
    "mask",
    "prepare",
    "resolve_locations",
    "sqlite_path",
]

STORE_DIR = "mlruns"
CONNECT_TIMEOUT = 5.0  # seconds a storage or tracking server has to answer before a command gives up
# scheme:, then any number of slashes (a mistyped "postgresql:/" too), then user:password@
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*:/*)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_QUERY_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_key)=([^&\s]+)")


def mask(text: str) -> str:
    """Replace passwords in any URL inside ``text`` (user:pass@host, ?password=...) by ***."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m[1]}=***", text)


first_line = one_line  # the name tracking, study and models.export import: the same function


class LocationError(CollatzHpoError, ValueError):
    """A ``--storage`` or ``--tracking-uri`` that is not a URL (its password masked)."""


@dataclass(frozen=True)
class Locations:
    """Resolved storage URLs of one study (may hold secrets: never log them unmasked)."""

    storage: str
    tracking_uri: str
    artifact_root: str | None  # local artifact folder for an embedded MLflow store
    store_dir: Path | None  # the embedded store folder to create, if any

    def masked(self) -> dict[str, str]:
        return {"storage": mask(self.storage), "tracking_uri": mask(self.tracking_uri)}

    def describe(self) -> str:
        """``storage <url>; tracking <uri>``, passwords masked: for progress lines."""
        shown = self.masked()
        return f"storage {shown['storage']}; tracking {shown['tracking_uri']}"

    def missing_store(self, which: str = "storage") -> str | None:
        """The masked URL of ``which`` (storage or tracking_uri) when it is a sqlite file that
        does not exist: reading commands must not create an empty store. None otherwise."""
        url = self.storage if which == "storage" else self.tracking_uri
        db = sqlite_path(url)
        return mask(url) if db is not None and not db.exists() else None


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other URLs)."""
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
            raise LocationError(
                f"--{name.replace('_', '-')}: {mask(url)!r} is not a URL (e.g. sqlite:///x.db)"
            )
    artifact_root = None
    tracking_db = sqlite_path(tracking_uri)
    if tracking_db is not None:
        artifact_root = str((tracking_db.parent / "artifacts").resolve())
    store_dir = None
    for db in (sqlite_path(storage), tracking_db):
        if db is not None:
            store_dir = db.parent
    return Locations(storage, tracking_uri, artifact_root, store_dir)


def prepare(locations: Locations) -> None:
    """Create the folders an embedded store needs (only after the config was validated)."""
    for url in (locations.storage, locations.tracking_uri):
        db = sqlite_path(url)
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
