"""The MLflow client of a study, riding out tracking-server outages without losing or doubling data.

``ResilientClient`` wraps ``MlflowClient``: every call is retried with back-off while the server
does not answer (connection refused or reset, timeout, HTTP 429/502/503/504), for up to the
study's ``outage_window``; past it the call raises ``TrackingUnavailable`` (one line: the masked
URI, how long, the cause) and the trial that made it FAILs with that reason. Other errors (an
invalid request, a full disk on our side) are raised at once.

Retrying must not write twice. Metric batches keep the timestamps they were made with, so a
batch that reached the server before the connection dropped is sent again unchanged and MLflow's
store drops the points it already holds (same key, step, timestamp and value). Params of the same
value, tags, run status and artifacts (same path) are overwritten with themselves. ``create_run``,
``create_model_version`` and ``create_logged_model`` are not idempotent: after a failed attempt
the store is searched for what the attempt may have made (a run by its client-made token tag, a
version or a logged model by its run) before it is made again.

Every MLflow call of the platform goes through this client, artifact downloads by URI included
(``download``); a command a user waits on (``report``, ``ui``, ``predict``) gives up after
``COMMAND_WINDOW`` instead of a study's window.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from search.errors import StudyError
from search.locations import first_line, mask
from search.retry import DEFAULT_WINDOW, retry_within
from search.tracking.names import CREATE_TOKEN_TAG, token_filter

__all__ = ["COMMAND_WINDOW", "ResilientClient", "TrackingUnavailable", "is_transient"]

# Seconds the cleanup after Ctrl-C retries: the user wants out now; what it could not record,
# the next launch's recovery closes (a run left RUNNING is closed FAILED).
INTERRUPT_WINDOW = 5.0
# Seconds a command that a user waits on (report, ui, predict) rides out: a server restart, not
# a study's outage.
COMMAND_WINDOW = 30.0
# Set where the client is made, only where the user has not. MLflow's own HTTP retries (7, with
# back-off: ~4 min per call) and 120 s timeout would hide an outage inside one call; the window
# here replaces them. Its tqdm bar of artifact downloads (a final run's starting checkpoint, an
# export's) would print frames among our lines.
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
_TRANSIENT_STATUS = re.compile(r"error code (429|502|503|504)\b|too many (429|502|503|504) error")
_TRANSIENT_TYPES = ("ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "MaxRetryError")
_TRANSIENT_WORDS = (
    "connection refused",
    "connection reset",
    "connection aborted",
    "max retries exceeded",
    # a server whose own database restarts answers 500 with its driver's words
    "server closed the connection",
    "the database system is",
    "database is locked",
    # a server out of database connections (its pool, or the database's max_connections): it
    # answers 400 or 500 although the request itself was fine
    "queuepool limit",
    "too many clients",
    "remaining connection slots are reserved",
)


class TrackingUnavailable(StudyError):
    """The tracking server did not answer for the whole outage window."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it came from) says the server did not answer, rather than refused."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if isinstance(seen, ConnectionError | TimeoutError) or type(seen).__name__ in _TRANSIENT_TYPES:
            return True
        if _TRANSIENT_STATUS.search(text) or _environ_race(seen):
            return True
        if any(word in text for word in _TRANSIENT_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _environ_race(exc: BaseException) -> bool:
    """MLflow's telemetry thread sets and unsets ``_MLFLOW_TELEMETRY_*`` in ``os.environ`` while
    ``requests`` reads the environment for proxies: the request fails before it is sent."""
    if isinstance(exc, KeyError):
        return str(exc).strip("'\"").startswith("_MLFLOW_")
    return isinstance(exc, RuntimeError) and "changed size during iteration" in str(exc)


class ResilientClient:
    """An ``MlflowClient`` whose every method is retried across an outage of ``window`` seconds.

    ``reachable`` is False after a call gave up, until one succeeds: cleanup code skips the
    server then instead of waiting another window (recovery closes what it left open).
    """

    def __init__(
        self, tracking_uri: str, window: float = DEFAULT_WINDOW, registry_uri: str | None = None
    ) -> None:
        for name, value in MLFLOW_ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.window = window
        self.reachable = True

    def call(self, name: str, method: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)``, retried across an outage; ``name`` is for the error."""

        def give_up(exc: BaseException, waited: float) -> BaseException:
            self.reachable = False
            return TrackingUnavailable(
                f"MLflow tracking server {mask(self.tracking_uri)} unreachable for {waited:.0f}s "
                f"({name}): {first_line(exc)}"
            )

        result = retry_within(lambda: method(*args, **kwargs), self.window, is_transient, give_up)
        self.reachable = True
        return result

    @contextlib.contextmanager
    def impatient(self, window: float = INTERRUPT_WINDOW) -> Iterator[None]:
        """Calls in the block ride out at most ``window`` seconds (cleanup after an interrupt)."""
        saved, self.window = self.window, min(self.window, window)
        try:
            yield
        finally:
            self.window = saved

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        return lambda *args, **kwargs: self.call(name, attr, *args, **kwargs)

    def download(self, artifact_uri: str, dst: str | Path) -> str:
        """``mlflow.artifacts.download_artifacts`` of ``artifact_uri`` (``runs:/...``, an artifact
        location) into ``dst``, retried: a file downloaded again is overwritten with itself."""
        from mlflow.artifacts import download_artifacts

        def fetch() -> str:
            return download_artifacts(
                artifact_uri=artifact_uri,
                dst_path=str(dst),
                tracking_uri=self.tracking_uri,
                registry_uri=self.registry_uri,
            )

        return self.call("download_artifacts", fetch)

    def _once(self, name: str, make: Callable[[], Any], find: Callable[[], Any]) -> Any:
        """``make()``, retried; after a failed attempt ``find()`` first (what it made, or None)."""
        tried = False

        def attempt() -> Any:
            nonlocal tried
            if tried and (found := find()) is not None:
                return found
            tried = True
            return make()

        return self.call(name, attempt)

    def create_run(
        self, experiment_id: str, *args: Any, tags: dict[str, str] | None = None, **kwargs: Any
    ) -> Any:
        """A run, created once even when an attempt reached the server but its answer was lost."""
        token = uuid.uuid4().hex
        tags = {**(tags or {}), CREATE_TOKEN_TAG: token}

        def find() -> Any:
            found = self.client.search_runs([experiment_id], filter_string=token_filter(token), max_results=1)
            return found[0] if found else None

        return self._once(
            "create_run", lambda: self.client.create_run(experiment_id, *args, tags=tags, **kwargs), find
        )

    def create_model_version(self, name: str, source: str, run_id: str | None = None, **kwargs: Any) -> Any:
        """A version of ``name``, created once per ``run_id`` even when an answer was lost."""

        def find() -> Any:
            if run_id is None:
                return None
            found = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            return found[0] if found else None

        return self._once(
            "create_model_version",
            lambda: self.client.create_model_version(name, source, run_id=run_id, **kwargs),
            find,
        )

    def create_logged_model(self, experiment_id: str, source_run_id: str | None = None, **kwargs: Any) -> Any:
        """A logged model, created once per ``source_run_id`` even when an answer was lost."""

        def find() -> Any:
            if source_run_id is None:
                return None
            where = f"source_run_id = '{source_run_id}'"
            found = self.client.search_logged_models([experiment_id], filter_string=where, max_results=1)
            return found[0] if found else None

        return self._once(
            "create_logged_model",
            lambda: self.client.create_logged_model(experiment_id, source_run_id=source_run_id, **kwargs),
            find,
        )
